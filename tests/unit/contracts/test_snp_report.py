"""SnpReport.sol against the off-chain parser (offchain/abi/snp_report.py) and the real reports' expected.json.

Every real report parses on chain to the same fields as off chain; every structural rule has a twin that
breaks it, and the on-chain error names the same `Reason` as the off-chain ParseError; hypothesis mutates
real reports and checks both parsers agree on every outcome.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from offchain.abi.snp_report import Product, SnpReport, TcbVersion
from offchain.errors import ParseError, Reason
from tests.conftest import vectors_root
from tests.support.evm import compile_contracts, custom_error, deploy, reverts_with

PRODUCT_BITS = {Product.MILAN: 1, Product.GENOA: 2, Product.TURIN: 4}
#: Each custom error of SnpReport.sol and the Reason the off-chain parser gives for the same problem.
ERROR_REASONS = {
    "SnpReportLength": Reason.SNP_REPORT_LENGTH,
    "SnpReportVersion": Reason.SNP_REPORT_VERSION,
    "SnpReportReserved": Reason.SNP_REPORT_RESERVED,
    "SnpReportSignatureAlgo": Reason.SNP_REPORT_SIG_ALGO,
    "SnpReportSigningKey": Reason.SNP_REPORT_MALFORMED,
    "SnpReportTcbReserved": Reason.SNP_REPORT_RESERVED,
}


def _report_paths() -> list[Path]:
    root = vectors_root()
    return sorted([*root.glob("snp/*/report.bin"), *root.glob("azure/*/report.bin")])


REPORTS = _report_paths()
REPORT_IDS = [f"{p.parent.parent.name}/{p.parent.name}" for p in REPORTS]


def _product(vector_id: str) -> Product:
    """The product line a vector directory is named after (`milan-vcek-v2-...`, `negative-milan-...`)."""
    return next(p for p in Product if p.value in vector_id.split("/")[1].split("-")[:2])


@pytest.fixture(scope="module")
def snp(w3: Web3) -> Any:
    return deploy(w3, compile_contracts(["SnpReportHarness"])["SnpReportHarness"])


def expected_tuple(report: SnpReport) -> tuple[Any, ...]:
    """The Solidity Report struct, field by field, from the off-chain parse."""
    return (
        report.version,
        report.guest_svn,
        report.policy,
        report.family_id,
        report.image_id,
        report.vmpl,
        report.signature_algo,
        report.current_tcb,
        report.platform_info,
        report.flags,
        report.author_key_en,
        report.mask_chip_key,
        (report.flags >> 2) & 7,
        report.report_data,
        report.measurement,
        report.host_data,
        report.id_key_digest,
        report.author_key_digest,
        report.report_id,
        report.report_id_ma,
        report.reported_tcb,
        report.cpuid_fam_id,
        report.cpuid_mod_id,
        report.cpuid_step,
        report.chip_id,
        report.committed_tcb,
        report.current_build,
        report.current_minor,
        report.current_major,
        report.committed_build,
        report.committed_minor,
        report.committed_major,
        report.launch_tcb,
        report.launch_mit_vector,
        report.current_mit_vector,
        report.signature_r.to_bytes(48, "big"),
        report.signature_s.to_bytes(48, "big"),
    )


def _tcb_tuple(tcb: TcbVersion) -> tuple[int, ...]:
    return (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode, tcb.fmc)


def _onchain_outcome(snp: Any, raw: bytes) -> tuple[str, Any]:
    """("ok", fields) or ("error", Reason) of the on-chain parse."""
    from web3.exceptions import ContractCustomError

    try:
        return "ok", tuple(snp.functions.parse(raw).call())
    except ContractCustomError as exc:
        name, _ = custom_error(snp.abi, str(exc.data))
        return "error", ERROR_REASONS[name]


def _offchain_outcome(raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", expected_tuple(SnpReport.from_bytes(raw))
    except ParseError as exc:
        return "error", exc.reason


# --- real reports ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", REPORTS, ids=REPORT_IDS)
def test_real_report_parses_like_offchain(snp: Any, vectors: Path, path: Path) -> None:
    raw = path.read_bytes()
    assert tuple(snp.functions.parse(raw).call()) == expected_tuple(SnpReport.from_bytes(raw))


@pytest.mark.parametrize("path", REPORTS, ids=REPORT_IDS)
def test_real_report_fields_match_expected_json(snp: Any, vectors: Path, path: Path) -> None:
    vector_id = f"{path.parent.parent.name}/{path.parent.name}"
    expected = json.loads((vectors / "expected.json").read_text())[vector_id]["report"]
    product = _product(vector_id)
    raw = path.read_bytes()
    r = snp.functions.parse(raw).call()
    assert (r[0], r[5], hex(r[2]), r[12]) == (
        expected["version"],
        expected["vmpl"],
        expected["policy"],
        expected["signing_key"],
    )
    assert (r[14].hex(), r[13].hex(), r[24].hex()) == (
        expected["measurement"],
        expected["report_data"],
        expected["chip_id"],
    )
    hint, tcbs = snp.functions.decode(raw, PRODUCT_BITS[product]).call()
    for name, tcb in zip(("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"), tcbs):
        want = expected[name]
        assert tuple(tcb) == (want["bootloader"], want["tee"], want["snp"], want["microcode"], want.get("fmc", 0))
    offchain_hint = SnpReport.from_bytes(raw).product_hint()
    assert hint == (PRODUCT_BITS[offchain_hint] if offchain_hint else 0)
    if expected["version"] >= 3:
        assert hint == PRODUCT_BITS[product]


@pytest.mark.parametrize("path", REPORTS, ids=REPORT_IDS)
def test_signed_digest_covers_bytes_0_to_0x29f(snp: Any, vectors: Path, path: Path) -> None:
    raw = path.read_bytes()
    assert snp.functions.signedDigest(raw).call() == hashlib.sha384(raw[:0x2A0]).digest()
    # Twin: a byte past the signed region does not change the digest, one inside does.
    after = raw[:0x2A0] + bytes([raw[0x2A0] ^ 1]) + raw[0x2A1:]
    inside = raw[:0x29F] + bytes([raw[0x29F] ^ 1]) + raw[0x2A0:]
    assert snp.functions.signedDigest(after).call() == hashlib.sha384(raw[:0x2A0]).digest()
    assert snp.functions.signedDigest(inside).call() != hashlib.sha384(raw[:0x2A0]).digest()


# --- one twin per structural rule --------------------------------------------------------------------


def _base() -> bytes:
    """A valid version-5 report built by the off-chain builder (real ones are version 2, 3 and 5)."""
    return SnpReport.build(
        version=5,
        policy=0x30000,
        flags=1 << 2,
        reported_tcb=0x4700000002000100,
        cpuid_fam_id=0x1A,
        cpuid_mod_id=0x02,
        signature_r=(1 << 383) | 5,
        signature_s=(1 << 380) | 7,
    ).to_bytes()


def _set(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


MUTATIONS = {
    "length-short": (lambda r: r[:-1], ("SnpReportLength", (1183,))),
    "length-long": (lambda r: r + b"\x00", ("SnpReportLength", (1185,))),
    "version-4": (lambda r: _set(r, 0, (4).to_bytes(4, "little")), ("SnpReportVersion", (4,))),
    "version-1": (lambda r: _set(r, 0, (1).to_bytes(4, "little")), ("SnpReportVersion", (1,))),
    "reserved-0x04c": (lambda r: _set(r, 0x04F, b"\x01"), ("SnpReportReserved", (0x04C, 0x050))),
    "reserved-0x18b": (lambda r: _set(r, 0x19F, b"\x80"), ("SnpReportReserved", (0x18B, 0x1A0))),
    "reserved-0x1eb": (lambda r: _set(r, 0x1EB, b"\x01"), ("SnpReportReserved", (0x1EB, 0x1EC))),
    "reserved-0x1ef": (lambda r: _set(r, 0x1EF, b"\x01"), ("SnpReportReserved", (0x1EF, 0x1F0))),
    "reserved-0x208": (lambda r: _set(r, 0x208, b"\x01"), ("SnpReportReserved", (0x208, 0x2A0))),
    "reserved-0x29f": (lambda r: _set(r, 0x29F, b"\x01"), ("SnpReportReserved", (0x208, 0x2A0))),
    "r-high-bytes": (lambda r: _set(r, 0x2D0, b"\x01"), ("SnpReportReserved", (0x2D0, 0x2E8))),
    "s-high-bytes": (lambda r: _set(r, 0x32F, b"\x01"), ("SnpReportReserved", (0x318, 0x330))),
    "signature-tail": (lambda r: _set(r, 0x49F, b"\x01"), ("SnpReportReserved", (0x330, 0x4A0))),
    "signature-algo-2": (lambda r: _set(r, 0x034, (2).to_bytes(4, "little")), ("SnpReportSignatureAlgo", (2,))),
    "flags-bit-5": (lambda r: _set(r, 0x048, (1 << 5 | 1 << 2).to_bytes(4, "little")), ("SnpReportReserved", (0x048, 0x04C))),
    "signing-key-2": (lambda r: _set(r, 0x048, (2 << 2).to_bytes(4, "little")), ("SnpReportSigningKey", (2,))),
    "signing-key-7": (lambda r: _set(r, 0x048, (7 << 2).to_bytes(4, "little")), ("SnpReportSigningKey", (7,))),
    "policy-bit-17-clear": (lambda r: _set(r, 0x008, (0x10000).to_bytes(8, "little")), ("SnpReportReserved", (0x008, 0x010))),
    "policy-bit-26": (lambda r: _set(r, 0x008, (0x30000 | 1 << 26).to_bytes(8, "little")), ("SnpReportReserved", (0x008, 0x010))),
    "policy-bit-63": (lambda r: _set(r, 0x008, (0x30000 | 1 << 63).to_bytes(8, "little")), ("SnpReportReserved", (0x008, 0x010))),
    "cpuid-in-v2": (lambda r: _set(_set(r, 0, (2).to_bytes(4, "little")), 0x1F8, bytes(16)), ("SnpReportReserved", (0x188, 0x18B))),
    "mit-vector-in-v3": (lambda r: _set(_set(r, 0, (3).to_bytes(4, "little")), 0x200, b"\x01"), ("SnpReportReserved", (0x1F8, 0x208))),
}


def test_base_report_parses(snp: Any) -> None:
    raw = _base()
    assert tuple(snp.functions.parse(raw).call()) == expected_tuple(SnpReport.from_bytes(raw))


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_rule_has_a_twin(snp: Any, mutation: str) -> None:
    mutate, expected = MUTATIONS[mutation]
    raw = mutate(_base())
    assert reverts_with(snp, lambda: snp.functions.parse(raw).call()) == expected
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(raw)
    assert exc.value.reason is ERROR_REASONS[expected[0]]


def test_version_2_and_3_without_the_newer_fields_parse(snp: Any) -> None:
    for version in (2, 3):
        raw = _set(_set(_base(), 0, version.to_bytes(4, "little")), 0x1F8, bytes(16))
        if version == 2:
            raw = _set(raw, 0x188, bytes(3))
        assert tuple(snp.functions.parse(raw).call()) == expected_tuple(SnpReport.from_bytes(raw))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_reports_agree_with_offchain(snp: Any, data: st.DataObject) -> None:
    sources = [p.read_bytes() for p in REPORTS] or [_base()]
    raw = bytearray(data.draw(st.sampled_from(sources)))
    for _ in range(data.draw(st.integers(1, 3))):
        offset = data.draw(st.integers(0, len(raw) - 1))
        raw[offset] = data.draw(st.sampled_from([0, 1, 2, 3, 5, 0x80, 0xFF, raw[offset] ^ 1]))
    raw = bytes(raw)
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))] if data.draw(st.booleans()) else raw + b"\x00"
    assert _onchain_outcome(snp, raw) == _offchain_outcome(raw)


# --- TCB_VERSION ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "product", "expected"),
    [
        (0x4405000000000002, Product.MILAN, (2, 0, 5, 0x44, 0)),
        (0xDB18000000000004, Product.GENOA, (4, 0, 0x18, 0xDB, 0)),
        (0x4700000002000100, Product.TURIN, (1, 0, 2, 0x47, 0)),
        (0x4700000002030105, Product.TURIN, (1, 3, 2, 0x47, 5)),
    ],
    ids=["milan", "genoa", "turin", "turin-fmc"],
)
def test_tcb_layouts(snp: Any, raw: int, product: Product, expected: tuple[int, ...]) -> None:
    assert tuple(snp.functions.decodeTcb(raw, PRODUCT_BITS[product]).call()) == expected
    assert _tcb_tuple(TcbVersion.from_raw(raw, product)) == expected


@pytest.mark.parametrize(
    ("raw", "product"),
    [(1 << 16, Product.MILAN), (1 << 47, Product.GENOA), (1 << 32, Product.TURIN), (1 << 55, Product.TURIN)],
    ids=["milan-byte2", "genoa-byte5", "turin-byte4", "turin-byte6"],
)
def test_tcb_reserved_bytes_revert(snp: Any, raw: int, product: Product) -> None:
    bit = PRODUCT_BITS[product]
    assert reverts_with(snp, lambda: snp.functions.decodeTcb(raw, bit).call()) == ("SnpReportTcbReserved", (raw, bit))
    with pytest.raises(ParseError) as exc:
        TcbVersion.from_raw(raw, product)
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


@pytest.mark.parametrize("product", [0, 3, 8], ids=lambda p: f"product{p}")
def test_unknown_product_reverts(snp: Any, product: int) -> None:
    assert reverts_with(snp, lambda: snp.functions.decodeTcb(0, product).call()) == (
        "SnpReportUnknownProduct",
        (product,),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.integers(0, 2**64 - 1), product=st.sampled_from(list(Product)))
def test_tcb_decoding_agrees_with_offchain(snp: Any, raw: int, product: Product) -> None:
    try:
        expected: tuple[str, Any] = ("ok", _tcb_tuple(TcbVersion.from_raw(raw, product)))
    except ParseError as exc:
        expected = ("error", exc.reason)
    from web3.exceptions import ContractCustomError

    try:
        got: tuple[str, Any] = ("ok", tuple(snp.functions.decodeTcb(raw, PRODUCT_BITS[product]).call()))
    except ContractCustomError as exc:
        got = ("error", ERROR_REASONS[custom_error(snp.abi, str(exc.data))[0]])
    assert got == expected
