"""The report against its leaf: every real report verifies, and one changed bit anywhere is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from offchain.abi.snp_report import REPORT_SIZE, SIGNED_SIZE, Product, SignerKind, SnpReport, TcbVersion
from offchain.errors import CvmAttestError, ParseError, Reason, VerificationError
from offchain.trust.roots import TrustRoots
from offchain.verify.chain import VerifiedChain, verify_chain
from offchain.verify.report import verify_report
from tests.support.evidence import DEV_NOT_BEFORE, DEV_NOW, dev_chain
from tests.support.snp_vectors import (
    AZURE_HCL_VECTORS,
    AZURE_REPORT_ONLY_VECTOR,
    NEGATIVE_VECTOR,
    SNP_REPORT_VECTORS,
    Vector,
    load_vector,
)

POSITIVE = SNP_REPORT_VECTORS + AZURE_HCL_VECTORS + (AZURE_REPORT_ONLY_VECTOR,)
MEASUREMENT_OFFSET = 0x90
R_OFFSET, S_OFFSET = 0x2A0, 0x2E8


def _chain(v: Vector) -> VerifiedChain:
    certs = v.certificates
    inter = certs.ask if certs.vcek is not None else certs.asvk
    return verify_chain(certs.leaf, inter, certs.ark, roots=TrustRoots(), now=v.now)


def _flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


@pytest.mark.parametrize("name", POSITIVE)
def test_every_real_report_verifies(vectors: Path, name: str) -> None:
    v = load_vector(vectors, name)
    verified = verify_report(v.report, _chain(v))
    exp = v.expected["report"]
    assert verified.report.measurement.hex() == exp["measurement"]
    assert verified.reported_tcb.to_json() == exp["reported_tcb"]
    assert verified.signer.value == ("vcek" if exp["signing_key"] == 0 else "vlek")


def test_the_negative_vector_is_rejected(vectors: Path) -> None:
    v = load_vector(vectors, NEGATIVE_VECTOR)
    assert v.expected["signature_ok"] is False
    with pytest.raises(VerificationError) as exc:
        verify_report(v.report, _chain(v))
    assert exc.value.reason is Reason.SNP_SIGNATURE_INVALID


@pytest.mark.parametrize(
    ("offset", "what"),
    [
        (MEASUREMENT_OFFSET, "measurement"),
        (0x50, "report_data"),
        (0x08, "policy abi_minor"),
        (0x04, "guest_svn"),
        (0x1E8, "current firmware build"),
        (SIGNED_SIZE - 1, "last signed byte (reserved)"),
        (R_OFFSET, "r"),
        (R_OFFSET + 47, "r high byte"),
        (S_OFFSET, "s"),
        (S_OFFSET + 20, "s middle"),
    ],
    ids=lambda x: x if isinstance(x, str) else hex(x),
)
@pytest.mark.parametrize("name", ["snp/milan-vcek-v2-virtee", "snp/turin-vcek-v5-oak", "snp/milan-vlek-v3-vmpl1-trustee"])
def test_one_flipped_bit_breaks_the_signature(vectors: Path, name: str, offset: int, what: str) -> None:
    v = load_vector(vectors, name)
    chain = _chain(v)
    raw = (v.directory / "report.bin").read_bytes()
    try:
        tampered = SnpReport.from_bytes(_flip(raw, offset))
    except ParseError as exc:  # the flip landed in a reserved byte: rejected before crypto
        assert exc.reason is Reason.SNP_REPORT_RESERVED, what
        return
    with pytest.raises(VerificationError) as err:
        verify_report(tampered, chain)
    assert err.value.reason is Reason.SNP_SIGNATURE_INVALID, what


def test_a_leaf_from_another_chip(vectors: Path) -> None:
    report = load_vector(vectors, "snp/milan-vcek-v2-virtee").report
    other = load_vector(vectors, "snp/milan-vcek-v2-trustee")  # same TCB, another chip
    with pytest.raises(VerificationError) as exc:
        verify_report(report, _chain(other))
    assert exc.value.reason is Reason.SNP_HWID_MISMATCH


def test_leaf_spls_must_equal_the_reported_tcb(vectors: Path) -> None:
    # Same chip, VCEK for the same TCB: then one report field claims another TCB.
    v = load_vector(vectors, "snp/milan-vcek-v2-gosevguest")
    tcb = TcbVersion.from_raw(v.report.reported_tcb, Product.MILAN)
    higher = TcbVersion(tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode + 1, product=Product.MILAN)
    with pytest.raises(VerificationError) as exc:
        verify_report(v.report.replace(reported_tcb=higher.to_raw()), _chain(v))
    assert exc.value.reason is Reason.SNP_TCB_MISMATCH


def test_the_signing_key_field_must_name_the_leaf_kind(vectors: Path) -> None:
    v = load_vector(vectors, "snp/milan-vlek-v3-vmpl1-trustee")
    as_vcek = v.report.replace(flags=v.report.flags & ~0b11100)
    with pytest.raises(VerificationError) as exc:
        verify_report(as_vcek, _chain(v))
    assert exc.value.reason is Reason.SNP_SIGNER_MISMATCH


def test_the_cpuid_product_must_match_the_chain() -> None:
    chain = dev_chain(Product.GENOA, SignerKind.VCEK)
    verified = verify_chain(chain.leaf, chain.ask, chain.ark, roots=TrustRoots().with_dev_root(chain.ark), now=DEV_NOW)
    good = chain.sign(chain.report_template())
    assert verify_report(good, verified).product is Product.GENOA
    milan_cpuid = chain.sign(chain.report_template(cpuid_mod_id=0x01))
    with pytest.raises(VerificationError) as exc:
        verify_report(milan_cpuid, verified)
    assert exc.value.reason is Reason.CHAIN_PRODUCT_MISMATCH


def test_turin_compares_the_first_eight_chip_id_bytes() -> None:
    chain = dev_chain(Product.TURIN, SignerKind.VCEK)
    verified = verify_chain(chain.leaf, chain.ask, chain.ark, roots=TrustRoots().with_dev_root(chain.ark), now=DEV_NOW)
    report = chain.sign(chain.report_template())
    assert verify_report(report, verified).reported_tcb.product is Product.TURIN
    other_chip = chain.issue_leaf(not_before=DEV_NOT_BEFORE, chip_id=bytes(range(1, 9)) + bytes(56))
    other_verified = verify_chain(
        other_chip.leaf, other_chip.ask, other_chip.ark, roots=TrustRoots().with_dev_root(chain.ark), now=DEV_NOW
    )
    with pytest.raises(VerificationError) as exc:
        verify_report(report, other_verified)
    assert exc.value.reason is Reason.SNP_HWID_MISMATCH


@pytest.mark.parametrize("length", [0, REPORT_SIZE - 1, REPORT_SIZE + 1, 2 * REPORT_SIZE], ids=str)
def test_truncated_or_oversized_reports(vectors: Path, length: int) -> None:
    raw = (vectors / "snp/milan-vcek-v2-virtee/report.bin").read_bytes()
    data = (raw * 2)[:length]
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(data)
    assert exc.value.reason is Reason.SNP_REPORT_LENGTH


@pytest.mark.parametrize("offset", [0x0C + 0x10 * 0 + 0x40, 0x1A0 - 1, 0x4A0 - 1], ids=hex)
def test_nonzero_reserved_bytes(vectors: Path, offset: int) -> None:
    raw = (vectors / "snp/milan-vcek-v2-virtee/report.bin").read_bytes()
    assert raw[offset] == 0
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(_flip(raw, offset))
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_reports_give_only_typed_rejections(vectors: Path, data: st.DataObject) -> None:
    v = load_vector(vectors, "snp/genoa-vcek-v5-oak")
    chain = _chain(v)
    original = (v.directory / "report.bin").read_bytes()
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    assume(bytes(raw) != original)
    with pytest.raises(CvmAttestError):
        verify_report(SnpReport.from_bytes(bytes(raw)), chain)
