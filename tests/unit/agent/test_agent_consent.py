"""agent.consent: the golden ids a CVM consents to, configured or added at run time, persisted in
the state directory atomically, and a damaged store refused with a typed reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import MAX_CONSENTS
from agent.consent import GoldenConsents
from offchain.errors import CvmAttestError, Reason

A, B, C = (bytes([n]) * 32 for n in (0xA1, 0xB2, 0xC3))


def test_configured_and_runtime_consents(tmp_path: Path) -> None:
    path = tmp_path / "golden-consents.json"
    consents = GoldenConsents([A, A], path)
    assert consents.allows(A) and not consents.allows(B)
    assert not path.exists()  # nothing to keep until something is added at run time
    assert consents.add(A) is False and not path.exists()
    assert consents.add(B) is True and consents.add(B) is False
    assert consents.allows(B)
    assert consents.entries() == [{"golden_id": "0x" + A.hex(), "source": "configured"},
                                  {"golden_id": "0x" + B.hex(), "source": "runtime"}]
    assert json.loads(path.read_text()) == {"version": 1, "golden_ids": ["0x" + B.hex()]}
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden-consents.json"]  # no temporary left


def test_runtime_consents_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "golden-consents.json"
    GoldenConsents([], path).add(B)
    again = GoldenConsents([C], path)
    assert again.allows(B) and again.allows(C) and not again.allows(A)
    # An id configured now and added earlier is listed once, as configured.
    both = GoldenConsents([B], path)
    assert both.entries() == [{"golden_id": "0x" + B.hex(), "source": "configured"}]


def test_at_most_max_consents(tmp_path: Path) -> None:
    consents = GoldenConsents([i.to_bytes(32, "big") for i in range(MAX_CONSENTS - 1)], tmp_path / "c.json")
    assert consents.add(A)
    with pytest.raises(CvmAttestError) as exc:
        consents.add(B)
    assert exc.value.reason is Reason.INPUT_INVALID and not consents.allows(B)


@pytest.mark.parametrize(
    "content",
    [b"{", b"[]", b'{"version": 2, "golden_ids": []}', b'{"version": 1}', b'{"version": 1, "golden_ids": ["0x12"]}',
     b'{"version": 1, "golden_ids": [1]}', b'{"version": 1, "golden_ids": [], "extra": 0}', b"\xff",
     b" " * (65 << 10)],
    ids=["truncated", "list", "version", "no-ids", "short-id", "number", "extra-key", "not-utf8", "oversize"],
)
def test_a_damaged_store_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "golden-consents.json"
    path.write_bytes(content)
    with pytest.raises(CvmAttestError) as exc:
        GoldenConsents([], path)
    assert exc.value.reason is Reason.INPUT_INVALID and exc.value.context["path"] == str(path)
    assert path.read_bytes() == content


def test_a_store_that_cannot_be_written_is_a_typed_error(tmp_path: Path) -> None:
    consents = GoldenConsents([], tmp_path / "gone" / "golden-consents.json")
    with pytest.raises(CvmAttestError) as exc:
        consents.add(A)
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE and not consents.allows(A)
