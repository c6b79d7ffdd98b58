"""The binding digests (offchain/abi/binding.py) and the PCR23 workload measurement
(offchain/abi/workload.py), each cross-checked once against an independent tool: ``sha256sum``,
``eth_abi`` + ``eth_hash`` for the ABI encoding, and a real TPM (swtpm + ``tpm2_pcrextend``) for
the PCR23 replay.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from eth_abi import encode as abi_encode
from eth_hash.auto import keccak as eth_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.abi.binding import (
    NONCE_MAX_BYTES,
    check_nonce,
    direct_report_data,
    offchain_extra_data,
    onchain_extra_data,
    parse_address,
)
from offchain.abi.tpm import TpmtPublic
from offchain.abi.workload import (
    WorkloadEvent,
    check_replay,
    diff_events,
    dump_event_log,
    event_digest,
    extend,
    measure_directory,
    parse_event_log,
    replay,
)
from offchain.errors import ParseError, Reason, VerificationError
from tests.unit.offchain.abi.swtpm_process import Swtpm, missing_tools, running_swtpm

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CVM = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BLOCK_HASH = bytes.fromhex("8f5bab218b6bb34476f51ca588e9f4553a3a7ce5e13a66c660a5283e97e9a85a")


def sha256sum(path: Path) -> bytes:
    """SHA-256 by the coreutils tool, not by Python."""
    if shutil.which("sha256sum") is None:
        pytest.skip("sha256sum not installed")
    out = subprocess.run(["sha256sum", "--binary", str(path)], capture_output=True, check=True, text=True)
    return bytes.fromhex(out.stdout.split()[0])


# --- REPORT_DATA (direct binding) ------------------------------------------------------------


def test_direct_report_data_is_sha256_of_the_public_area_then_zeros(tmp_path: Path) -> None:
    area = TpmtPublic.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).to_bytes()
    (tmp_path / "ak.tpmt").write_bytes(area)
    data = direct_report_data(area)
    assert len(data) == 64
    assert data[:32] == sha256sum(tmp_path / "ak.tpmt")
    assert data[32:] == bytes(32)


def test_direct_report_data_depends_on_every_byte_of_the_area() -> None:
    area = TpmtPublic.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).to_bytes()
    changed = area[:-1] + bytes((area[-1] ^ 1,))
    assert direct_report_data(changed) != direct_report_data(area)


# --- quote extraData, off chain --------------------------------------------------------------


@pytest.mark.parametrize("nonce", [b"\x00", b"challenge", bytes(range(64))], ids=["1-byte", "9-bytes", "64-bytes"])
def test_offchain_extra_data_matches_sha256sum(tmp_path: Path, nonce: bytes) -> None:
    preimage = tmp_path / "preimage"
    preimage.write_bytes(b"cvm-attest/offchain/v1" + nonce)
    assert offchain_extra_data(nonce) == sha256sum(preimage)


def test_offchain_extra_data_is_domain_separated() -> None:
    nonce = b"challenge"
    assert offchain_extra_data(nonce) != hashlib.sha256(nonce).digest()
    assert offchain_extra_data(nonce) != offchain_extra_data(b"challengf")


@pytest.mark.parametrize("length", [0, NONCE_MAX_BYTES + 1, 1000])
def test_nonce_length_outside_1_to_64_is_rejected(length: int) -> None:
    with pytest.raises(ParseError) as exc:
        offchain_extra_data(bytes(length))
    assert exc.value.reason is Reason.INPUT_INVALID
    with pytest.raises(ParseError) as exc:
        check_nonce(bytes(length))
    assert exc.value.reason is Reason.INPUT_INVALID


@pytest.mark.parametrize("length", [1, NONCE_MAX_BYTES])
def test_nonce_length_at_the_bounds_is_accepted(length: int) -> None:
    assert check_nonce(bytes(length)) == bytes(length)


# --- quote extraData, on chain ---------------------------------------------------------------


def reference_onchain(chain_id: int, registry: str, cvm: str, block_hash: bytes) -> bytes:
    """The same value built with eth_abi and eth_hash, independent of offchain.abi."""
    typehash = eth_keccak(b"cvm-attest.quote.v1")
    encoded = abi_encode(
        ["bytes32", "uint256", "address", "address", "bytes32"], [typehash, chain_id, registry, cvm, block_hash]
    )
    return eth_keccak(encoded)


@pytest.mark.parametrize("chain_id", [1, 31337, 2**256 - 1])
def test_onchain_extra_data_matches_eth_abi(chain_id: int) -> None:
    assert onchain_extra_data(chain_id, REGISTRY, CVM, BLOCK_HASH) == reference_onchain(
        chain_id, REGISTRY, CVM, BLOCK_HASH
    )


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(
    chain_id=st.integers(0, 2**256 - 1),
    registry=st.binary(min_size=20, max_size=20),
    cvm=st.binary(min_size=20, max_size=20),
    block_hash=st.binary(min_size=32, max_size=32),
)
def test_onchain_extra_data_matches_eth_abi_for_any_input(
    chain_id: int, registry: bytes, cvm: bytes, block_hash: bytes
) -> None:
    registry_hex, cvm_hex = "0x" + registry.hex(), "0x" + cvm.hex()
    want = reference_onchain(chain_id, registry_hex, cvm_hex, block_hash)
    assert onchain_extra_data(chain_id, registry_hex, cvm_hex, block_hash) == want
    assert onchain_extra_data(chain_id, registry, cvm, block_hash) == want


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 1},
        {"registry": CVM},
        {"cvm_address": REGISTRY},
        {"block_hash": bytes(32)},
    ],
    ids=["chain-id", "registry", "cvm", "block-hash"],
)
def test_onchain_extra_data_binds_every_input(change: dict[str, object]) -> None:
    args: dict[str, object] = {"chain_id": 31337, "registry": REGISTRY, "cvm_address": CVM, "block_hash": BLOCK_HASH}
    base = onchain_extra_data(**args)  # type: ignore[arg-type]
    assert onchain_extra_data(**{**args, **change}) != base  # type: ignore[arg-type]


def test_address_case_does_not_matter() -> None:
    assert onchain_extra_data(1, REGISTRY.lower(), CVM.upper().replace("0X", "0x"), BLOCK_HASH) == onchain_extra_data(
        1, REGISTRY, CVM, BLOCK_HASH
    )


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((-1, REGISTRY, CVM, BLOCK_HASH), id="negative-chain-id"),
        pytest.param((2**256, REGISTRY, CVM, BLOCK_HASH), id="chain-id-over-uint256"),
        pytest.param((1, "0x1234", CVM, BLOCK_HASH), id="short-registry"),
        pytest.param((1, REGISTRY, "0xzz" + CVM[4:], BLOCK_HASH), id="non-hex-cvm"),
        pytest.param((1, REGISTRY, bytes(21), BLOCK_HASH), id="21-byte-cvm"),
        pytest.param((1, REGISTRY, CVM, bytes(31)), id="31-byte-block-hash"),
    ],
)
def test_onchain_extra_data_rejects_bad_inputs(args: tuple[object, ...]) -> None:
    with pytest.raises(ParseError) as exc:
        onchain_extra_data(*args)  # type: ignore[arg-type]
    assert exc.value.reason is Reason.INPUT_INVALID


@pytest.mark.parametrize("text", [CVM, CVM.lower(), "0X" + CVM[2:], CVM[2:]])
def test_parse_address_forms(text: str) -> None:
    assert parse_address(text) == bytes.fromhex(CVM[2:])


# --- workload event digest -------------------------------------------------------------------


def reference_event_digest(kind: str, name: str, content: bytes) -> bytes:
    name_bytes = name.encode()
    preimage = (
        b"cvm-attest/workload/v1"
        + struct.pack(">B", len(kind))
        + kind.encode()
        + struct.pack(">H", len(name_bytes))
        + name_bytes
        + content
    )
    return hashlib.sha256(preimage).digest()


@pytest.mark.parametrize(
    ("kind", "name"),
    [("image", "ghcr.io/acme/app"), ("compose", "docker-compose.yml"), ("config", "config/ünïcode.toml")],
)
def test_event_digest_layout(kind: str, name: str) -> None:
    content = hashlib.sha256(name.encode()).digest()
    assert event_digest(kind, name, content) == reference_event_digest(kind, name, content)


def test_event_digest_separates_kind_and_name() -> None:
    content = bytes(32)
    assert event_digest("config", "a", content) != event_digest("compose", "a", content)
    assert event_digest("config", "ab", content) != event_digest("config", "a", content)


@pytest.mark.parametrize(
    ("kind", "name", "content"),
    [
        pytest.param("secret", "x", bytes(32), id="unknown-kind"),
        pytest.param("config", "x", bytes(31), id="short-digest"),
        pytest.param("config", "x" * 65536, bytes(32), id="name-over-65535-bytes"),
    ],
)
def test_event_digest_rejects_bad_items(kind: str, name: str, content: bytes) -> None:
    with pytest.raises(ParseError) as exc:
        event_digest(kind, name, content)
    assert exc.value.reason is Reason.EVENT_LOG_MALFORMED


# --- PCR23 replay against a real TPM ---------------------------------------------------------


@pytest.fixture(scope="module")
def tpm() -> Iterator[Swtpm]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"swtpm / tpm2-tools not installed: {', '.join(missing)}")
    with running_swtpm() as started:
        yield started


def tpm_pcr23_after(tpm: Swtpm, events: list[WorkloadEvent]) -> bytes:
    tpm.run("tpm2_pcrreset", "23")
    for event in events:
        tpm.run("tpm2_pcrextend", f"23:sha256={event.digest.hex()}")
    tpm.run("tpm2_pcrread", "sha256:23", "-o", "pcr23.bin")
    return (tpm.workdir / "pcr23.bin").read_bytes()


def sample_events() -> list[WorkloadEvent]:
    return [
        WorkloadEvent("image", "ghcr.io/acme/api", hashlib.sha256(b"api layer").digest()),
        WorkloadEvent("image", "ghcr.io/acme/web", hashlib.sha256(b"web layer").digest()),
        WorkloadEvent("compose", "docker-compose.yml", hashlib.sha256(b"services: {}").digest()),
        WorkloadEvent("config", "config/app.toml", hashlib.sha256(b"debug = false").digest()),
    ]


@pytest.mark.integration
def test_replay_equals_what_a_real_tpm_computes(tpm: Swtpm) -> None:
    events = sample_events()
    assert replay(events) == tpm_pcr23_after(tpm, events)
    assert replay([]) == tpm_pcr23_after(tpm, []) == bytes(32)


@pytest.mark.integration
def test_reordered_events_give_another_pcr23_on_the_tpm_too(tpm: Swtpm) -> None:
    events = sample_events()
    swapped = [events[1], events[0], *events[2:]]
    on_tpm = tpm_pcr23_after(tpm, swapped)
    assert replay(swapped) == on_tpm
    assert replay(events) != on_tpm


def test_extend_is_sha256_of_pcr_then_digest() -> None:
    pcr, digest = bytes(range(32)), bytes(range(32, 64))
    assert extend(pcr, digest) == hashlib.sha256(pcr + digest).digest()


# --- measuring a workload directory ----------------------------------------------------------


def make_workload(root: Path) -> None:
    (root / "config" / "nested").mkdir(parents=True)
    (root / "secrets").mkdir()
    (root / "docker-compose.yml").write_text("services:\n  web:\n    image: ghcr.io/acme/web\n")
    (root / "config" / "b.toml").write_text("b = 2\n")
    (root / "config" / "a.toml").write_text("a = 1\n")
    (root / "config" / "nested" / "c.json").write_text('{"c": 3}\n')
    (root / "secrets" / "key").write_text("never measured")
    web, api = hashlib.sha256(b"web").hexdigest(), hashlib.sha256(b"api").hexdigest()
    (root / "images.txt").write_text(f"# images\nghcr.io/acme/web sha256:{web}\n\nghcr.io/acme/api@sha256:{api}\n")


def test_measure_directory_order_and_digests(tmp_path: Path) -> None:
    make_workload(tmp_path)
    events = measure_directory(tmp_path)
    assert [(e.kind, e.name) for e in events] == [
        ("image", "ghcr.io/acme/api"),
        ("image", "ghcr.io/acme/web"),
        ("compose", "docker-compose.yml"),
        ("config", "config/a.toml"),
        ("config", "config/b.toml"),
        ("config", "config/nested/c.json"),
    ]
    assert events[0].content_digest == hashlib.sha256(b"api").digest()
    for event in events[2:]:
        assert event.content_digest == sha256sum(tmp_path / event.name)
    assert all("secrets" not in e.name for e in events)


def test_a_changed_config_file_is_named_by_the_diff(tmp_path: Path) -> None:
    make_workload(tmp_path)
    golden = measure_directory(tmp_path)
    (tmp_path / "config" / "b.toml").write_text("b = 3\n")
    actual = measure_directory(tmp_path)
    assert replay(actual) != replay(golden)
    assert diff_events(golden, actual) == [
        f"config 'config/b.toml' changed: expected {golden[4].content_digest.hex()[:16]}…, "
        f"got {actual[4].content_digest.hex()[:16]}…"
    ]


def test_secrets_do_not_change_the_measurement(tmp_path: Path) -> None:
    make_workload(tmp_path)
    before = replay(measure_directory(tmp_path))
    (tmp_path / "secrets" / "key").write_text("rotated")
    assert replay(measure_directory(tmp_path)) == before


def test_symlink_under_config_is_refused(tmp_path: Path) -> None:
    make_workload(tmp_path)
    (tmp_path / "config" / "link").symlink_to(tmp_path / "secrets" / "key")
    with pytest.raises(ParseError) as exc:
        measure_directory(tmp_path)
    assert exc.value.reason is Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH


@pytest.mark.parametrize(
    "line",
    ["ghcr.io/acme/web", "ghcr.io/acme/web md5:00", "ghcr.io/acme/web sha256:abcd", "a b sha256:" + "00" * 32],
    ids=["no-digest", "not-sha256", "short-digest", "three-fields"],
)
def test_bad_images_line_is_rejected(tmp_path: Path, line: str) -> None:
    (tmp_path / "images.txt").write_text(line + "\n")
    with pytest.raises(ParseError) as exc:
        measure_directory(tmp_path)
    assert exc.value.reason is Reason.EVENT_LOG_MALFORMED


# --- event log -------------------------------------------------------------------------------

events_strategy = st.lists(
    st.builds(
        WorkloadEvent,
        kind=st.sampled_from(["image", "compose", "config"]),
        name=st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
        content_digest=st.binary(min_size=32, max_size=32),
    ),
    max_size=8,
)


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(events_strategy)
def test_event_log_round_trip(events: list[WorkloadEvent]) -> None:
    text = dump_event_log(events)
    assert parse_event_log(text) == events
    assert all(json.loads(line)["pcr"] == 23 for line in text.splitlines())


def test_event_log_accepts_blank_lines_and_upper_case_digests() -> None:
    event = sample_events()[0]
    line = json.dumps({**event.to_json(), "event_digest": event.digest.hex().upper()})
    assert parse_event_log(f"\n{line}\n\n") == [event]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[1]", id="not-an-object"),
        pytest.param('{"kind": "config", "name": "a"}', id="no-content-digest"),
        pytest.param('{"kind": "config", "name": "a", "content_digest": "zz"}', id="non-hex"),
        pytest.param('{"kind": "config", "name": 5, "content_digest": "' + "00" * 32 + '"}', id="name-not-string"),
        pytest.param('{"kind": "secret", "name": "a", "content_digest": "' + "00" * 32 + '"}', id="unknown-kind"),
        pytest.param('{"kind": "config", "name": "a", "content_digest": "' + "00" * 31 + '"}', id="short-digest"),
        pytest.param('{"pcr": 22, "kind": "config", "name": "a", "content_digest": "' + "00" * 32 + '"}', id="pcr-22"),
        pytest.param(
            '{"kind": "config", "name": "a", "content_digest": "' + "00" * 32 + '", "event_digest": "' + "00" * 32 + '"}',
            id="wrong-event-digest",
        ),
    ],
)
def test_bad_event_log_line_is_rejected(line: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse_event_log(line)
    assert exc.value.reason is Reason.EVENT_LOG_MALFORMED


def test_event_name_with_a_lone_surrogate_gives_a_typed_error() -> None:
    line = '{"kind": "config", "name": "\\ud800", "content_digest": "' + "00" * 32 + '"}'
    with pytest.raises(ParseError) as exc:
        replay(parse_event_log(line))
    assert exc.value.reason is Reason.EVENT_LOG_MALFORMED


# --- checking a replay -----------------------------------------------------------------------


def test_check_replay_accepts_the_matching_pcr() -> None:
    events = sample_events()
    check_replay(events, replay(events), expected=events)


def test_check_replay_rejects_another_pcr() -> None:
    events = sample_events()
    with pytest.raises(VerificationError) as exc:
        check_replay(events, replay(events[:-1]))
    assert exc.value.reason is Reason.EVENT_LOG_REPLAY_MISMATCH


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda ev: ev[:-1], "config 'config/app.toml' missing", id="missing"),
        pytest.param(
            lambda ev: [*ev, WorkloadEvent("config", "config/extra", bytes(32))], "config 'config/extra' added", id="added"
        ),
        pytest.param(lambda ev: [ev[1], ev[0], *ev[2:]], "same items measured in a different order", id="reordered"),
    ],
)
def test_check_replay_names_what_differs_from_the_expected_list(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    expected = sample_events()
    actual = mutate(expected)
    assert diff_events(expected, actual) == [message]
    with pytest.raises(VerificationError) as exc:
        check_replay(actual, replay(actual), expected=expected)
    assert exc.value.reason is Reason.EVENT_LOG_REPLAY_MISMATCH
    assert exc.value.context["differences"] == diff_events(expected, actual)
