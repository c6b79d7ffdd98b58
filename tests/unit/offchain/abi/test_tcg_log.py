"""The firmware's TCG event log (offchain.abi.tcg_log): crypto-agile layout, replay, typed refusals.

The logs here are built field by field from PFP 1.05 section 10; the boot test
(tests/integration/image) parses a real one from OVMF and checks its replay against a TPM quote.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

from offchain.abi.tcg_log import (
    EV_NO_ACTION,
    SPEC_ID_SIGNATURE,
    STARTUP_LOCALITY_SIGNATURE,
    TPM_ALG_SHA1,
    TPM_ALG_SHA256,
    parse_tcg_log,
    replay,
)
from offchain.errors import ParseError, Reason
from tests.support.tcg_log import BANKS, EV_EFI_ACTION, EV_SEPARATOR, event, extend, spec_id

def test_replay_extends_the_sha256_bank_per_pcr_and_skips_no_action() -> None:
    log = parse_tcg_log(spec_id(BANKS) + event(4, EV_EFI_ACTION, b"Calling") + event(7, EV_SEPARATOR, bytes(4))
                        + event(4, EV_NO_ACTION, b"not extended") + event(4, EV_SEPARATOR, bytes(4)))
    assert [e.type_name for e in log.events] == ["EV_EFI_ACTION", "EV_SEPARATOR", "EV_NO_ACTION", "EV_SEPARATOR"]
    assert replay(log) == {4: extend(b"Calling", bytes(4)), 7: extend(bytes(4))}
    assert replay(log, [4, 5]) == {4: extend(b"Calling", bytes(4)), 5: bytes(32)}
    assert log.events[0].to_json()["sha256"] == hashlib.sha256(b"Calling").hexdigest()


def test_a_startup_locality_event_sets_pcr0s_start_value() -> None:
    locality = event(0, EV_NO_ACTION, STARTUP_LOCALITY_SIGNATURE + b"\x03", {TPM_ALG_SHA1: bytes(20),
                                                                            TPM_ALG_SHA256: bytes(32)})
    log = parse_tcg_log(spec_id(BANKS) + locality + event(0, EV_SEPARATOR, bytes(4)))
    assert replay(log)[0] == extend(bytes(4), start=bytes(31) + b"\x03")


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"", "firmware event log"),
        (struct.pack("<II", 0, 1) + bytes(24), "Spec ID"),
        (spec_id({TPM_ALG_SHA1: 20}), "no SHA-256 bank"),
        (spec_id(BANKS).replace(SPEC_ID_SIGNATURE, b"Spec ID Event02\0"), "crypto-agile"),
        (spec_id(BANKS) + event(24, EV_SEPARATOR, bytes(4)), "PCR 24"),
        (spec_id(BANKS) + event(4, EV_SEPARATOR, bytes(4), {0x0C: bytes(48)}), "does not declare"),
        (spec_id(BANKS) + event(4, EV_SEPARATOR, bytes(4))[:-2], "firmware event log"),
        (spec_id(BANKS) + struct.pack("<III", 4, EV_SEPARATOR, 0) + struct.pack("<I", 1 << 30), "bytes"),
    ],
    ids=["empty", "not-spec-id", "no-sha256", "sha1-only-log", "pcr-out-of-range", "undeclared-bank", "truncated",
         "huge-event"],
)
def test_malformed_logs_are_refused_with_a_typed_reason(data: bytes, detail: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_tcg_log(data)
    assert caught.value.reason is Reason.TCG_LOG_MALFORMED and detail in caught.value.detail


def test_an_extended_event_without_a_sha256_digest_cannot_be_replayed() -> None:
    log = parse_tcg_log(spec_id(BANKS) + event(4, EV_SEPARATOR, bytes(4), {TPM_ALG_SHA1: bytes(20)}))
    with pytest.raises(ParseError) as caught:
        replay(log)
    assert caught.value.reason is Reason.TCG_LOG_MALFORMED and caught.value.context == {"pcr": 4}
