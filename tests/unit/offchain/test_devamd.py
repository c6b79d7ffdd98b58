"""The development AMD hierarchy: certificates shaped like AMD's, reports signed like the firmware's.

The report-signature and chain checks are done raw with ``cryptography`` here on purpose: the
verifier (offchain/verify) is tested separately, and this file must show that the fake is faithful
on its own terms.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from offchain.abi.certext import AmdCertExtensions
from offchain.abi.snp_report import Product, SignerKind, SnpReport, TcbVersion
from offchain.devamd import DevAmdChain
from offchain.errors import ParseError, Reason

# Certificates get a fixed validity window so assertions on dates never depend on the clock.
NOT_BEFORE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
# DER of RSASSA-PSS-params' "[2] saltLength INTEGER 48" (RFC 4055, 3.1)
SALT_48_DER = b"\xa2\x03\x02\x01\x30"

CHAIN_KINDS: list[tuple[Product, SignerKind]] = [
    (Product.GENOA, SignerKind.VCEK),
    (Product.MILAN, SignerKind.VCEK),
    (Product.MILAN, SignerKind.VLEK),
    (Product.TURIN, SignerKind.VCEK),
]
KINDS = [pytest.param(kind, id=f"{kind[0].value}-{kind[1].value}") for kind in CHAIN_KINDS]


@pytest.fixture(scope="module")
def chains() -> dict[tuple[Product, SignerKind], DevAmdChain]:
    """One hierarchy per kind (two RSA-4096 keys each), shared by the whole module."""
    return {kind: DevAmdChain.generate(product=kind[0], signer=kind[1], not_before=NOT_BEFORE) for kind in CHAIN_KINDS}


@pytest.fixture(params=KINDS)
def chain(request: pytest.FixtureRequest, chains: dict[tuple[Product, SignerKind], DevAmdChain]) -> DevAmdChain:
    return chains[request.param]


def common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def verify_pss(child: x509.Certificate, issuer: x509.Certificate) -> None:
    key = issuer.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(child.signature, child.tbs_certificate_bytes, AMD_PSS, hashes.SHA384())


def verify_report(report: SnpReport, leaf: x509.Certificate) -> None:
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    key.verify(signature, report.signed_bytes(), ec.ECDSA(hashes.SHA384()))


# --- certificates ----------------------------------------------------------------------------


def test_every_certificate_is_signed_with_pss_sha384_salt_48(chain: DevAmdChain) -> None:
    for child, issuer in ((chain.ark, chain.ark), (chain.ask, chain.ark), (chain.leaf, chain.ask)):
        verify_pss(child, issuer)
        assert child.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
        assert isinstance(child.signature_hash_algorithm, hashes.SHA384)
        assert SALT_48_DER in child.public_bytes(serialization.Encoding.DER)


def test_chain_signatures_do_not_verify_across_links(chain: DevAmdChain) -> None:
    with pytest.raises(InvalidSignature):
        verify_pss(chain.leaf, chain.ark)  # the leaf is the ASK's, not the ARK's
    ask_key = chain.ask.public_key()
    assert isinstance(ask_key, rsa.RSAPublicKey)
    with pytest.raises(InvalidSignature):
        ask_key.verify(
            chain.leaf.signature,
            chain.leaf.tbs_certificate_bytes,
            padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=32),
            hashes.SHA384(),
        )


def test_names_keys_and_serials_follow_amd(chain: DevAmdChain) -> None:
    product, vlek = chain.product, chain.signer is SignerKind.VLEK
    title = product.value.capitalize()
    assert common_name(chain.ark.subject) == common_name(chain.ark.issuer) == f"ARK-{title}"
    assert common_name(chain.ask.subject) == (f"SEV-VLEK-{title}" if vlek else f"SEV-{title}")
    assert common_name(chain.leaf.subject) == ("SEV-VLEK" if vlek else "SEV-VCEK")
    assert chain.leaf.issuer == chain.ask.subject and chain.ask.issuer == chain.ark.subject
    for cert in (chain.ark, chain.ask, chain.leaf):
        assert "NOT AMD" in str(cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value)
    gen = {Product.MILAN: 1, Product.GENOA: 2, Product.TURIN: 3}[product] << 16
    assert chain.ark.serial_number == gen
    assert chain.ask.serial_number == gen | (0x101 if vlek else {Product.GENOA: 2}.get(product, 1))
    assert chain.leaf.serial_number == 0
    for cert in (chain.ark, chain.ask):
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096
    leaf_key = chain.leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey) and isinstance(leaf_key.curve, ec.SECP384R1)


def test_ca_constraints(chain: DevAmdChain) -> None:
    ark_bc = chain.ark.extensions.get_extension_for_class(x509.BasicConstraints)
    ask_bc = chain.ask.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ark_bc.critical and ark_bc.value.ca and ark_bc.value.path_length is None
    assert ask_bc.critical and ask_bc.value.ca and ask_bc.value.path_length == 0
    assert chain.ask.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    with pytest.raises(x509.ExtensionNotFound):
        chain.leaf.extensions.get_extension_for_class(x509.BasicConstraints)


def test_leaf_extensions_certify_the_chip_and_tcb(chain: DevAmdChain) -> None:
    ext = AmdCertExtensions.from_certificate(chain.leaf)
    assert ext.product is chain.product
    milan_vcek = chain.product is Product.MILAN and chain.signer is SignerKind.VCEK
    assert ext.product_name == ("Milan-B0" if milan_vcek else chain.product.value.capitalize())
    assert ext.tcb(chain.product) == chain.tcb
    if chain.signer is SignerKind.VLEK:
        assert ext.hwid is None and ext.csp_id and chain.chip_id == bytes(64)
    elif chain.product is Product.TURIN:
        assert ext.struct_version == 1 and ext.fmc is not None
        assert ext.hwid == chain.chip_id[:8] and not any(chain.chip_id[8:])
    else:
        assert ext.hwid == chain.chip_id and ext.csp_id is None


def test_validity_window(chain: DevAmdChain) -> None:
    years = 1 if chain.signer is SignerKind.VLEK else 7
    assert chain.leaf.not_valid_before_utc == NOT_BEFORE
    assert chain.leaf.not_valid_after_utc == NOT_BEFORE.replace(year=NOT_BEFORE.year + years)
    for ca in (chain.ark, chain.ask):
        assert ca.not_valid_before_utc == NOT_BEFORE
        assert ca.not_valid_after_utc == NOT_BEFORE.replace(year=NOT_BEFORE.year + 25)


def test_certificates_pem_uses_the_bundle_keys(chain: DevAmdChain) -> None:
    pems = chain.certificates_pem()
    expected = {"vlek", "asvk", "ark"} if chain.signer is SignerKind.VLEK else {"vcek", "ask", "ark"}
    assert set(pems) == expected
    assert x509.load_pem_x509_certificate(pems["ark"].encode()) == chain.ark


# --- signing reports -------------------------------------------------------------------------


def test_signed_report_verifies_with_the_leaf_key(chain: DevAmdChain) -> None:
    report = chain.sign(chain.report_template(report_data=b"\x42" * 64, measurement=b"\x11" * 48))
    verify_report(report, chain.leaf)
    parsed = SnpReport.from_bytes(report.to_bytes())
    verify_report(parsed, chain.leaf)
    assert parsed.report_data == b"\x42" * 64


def test_one_flipped_bit_breaks_the_signature(chain: DevAmdChain) -> None:
    report = chain.sign(chain.report_template())
    tampered = report.replace(measurement=b"\x01" + bytes(47))
    with pytest.raises(InvalidSignature):
        verify_report(tampered, chain.leaf)


def test_another_chips_key_does_not_verify(chains: dict[tuple[Product, SignerKind], DevAmdChain]) -> None:
    genoa, turin = chains[(Product.GENOA, SignerKind.VCEK)], chains[(Product.TURIN, SignerKind.VCEK)]
    report = genoa.sign(genoa.report_template())
    verify_report(report, genoa.leaf)
    with pytest.raises(InvalidSignature):
        verify_report(report, turin.leaf)


def test_sign_makes_chip_id_tcb_and_signing_key_consistent(chain: DevAmdChain) -> None:
    unsigned = SnpReport.build(version=5, vmpl=1, flags=0b01, reported_tcb=0, chip_id=b"\xee" * 64)
    signed = chain.sign(unsigned)
    assert signed.chip_id == chain.chip_id
    assert signed.tcb("reported", chain.product) == chain.tcb
    assert signed.signing_key is chain.signer
    assert signed.author_key_en and signed.vmpl == 1  # the caller's fields are kept
    verify_report(signed, chain.leaf)


def test_mask_chip_key_leaves_the_signature_zero(chain: DevAmdChain) -> None:
    signed = chain.sign(chain.report_template(flags=0b10, signature_r=5, signature_s=6))
    assert signed.mask_chip_key and (signed.signature_r, signed.signature_s) == (0, 0)
    unmasked = chain.sign(chain.report_template())
    assert unmasked.signature_r and unmasked.signature_s


def test_report_template_matches_the_product(chain: DevAmdChain) -> None:
    report = chain.report_template()
    assert report.product_hint() is chain.product
    for name in ("current", "reported", "committed", "launch"):
        assert report.tcb(name, chain.product) == chain.tcb


# --- issuing more leaves ---------------------------------------------------------------------


def test_issue_leaf_for_another_chip_and_tcb(chains: dict[tuple[Product, SignerKind], DevAmdChain]) -> None:
    genoa = chains[(Product.GENOA, SignerKind.VCEK)]
    tcb = TcbVersion(bootloader=11, tee=1, snp=26, microcode=85)
    other = genoa.issue_leaf(chip_id=b"\x07" * 64, tcb=tcb, not_before=NOT_BEFORE)
    verify_pss(other.leaf, genoa.ask)
    assert other.ark == genoa.ark and other.chip_id == b"\x07" * 64
    assert AmdCertExtensions.from_certificate(other.leaf).tcb(Product.GENOA) == tcb
    verify_report(other.sign(other.report_template()), other.leaf)
    with pytest.raises(InvalidSignature):
        verify_report(other.sign(other.report_template()), genoa.leaf)


@pytest.mark.parametrize(
    ("kind", "chip_id"),
    [
        pytest.param((Product.GENOA, SignerKind.VCEK), bytes(63), id="63-bytes"),
        pytest.param((Product.TURIN, SignerKind.VCEK), b"\x01" * 64, id="turin-non-zero-tail"),
    ],
)
def test_issue_leaf_rejects_a_bad_chip_id(
    chains: dict[tuple[Product, SignerKind], DevAmdChain], kind: tuple[Product, SignerKind], chip_id: bytes
) -> None:
    with pytest.raises(ParseError) as exc:
        chains[kind].issue_leaf(chip_id=chip_id, not_before=NOT_BEFORE)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_issue_leaf_rejects_fmc_outside_turin_and_naive_times(
    chains: dict[tuple[Product, SignerKind], DevAmdChain],
) -> None:
    genoa = chains[(Product.GENOA, SignerKind.VCEK)]
    with pytest.raises(ParseError) as exc:
        genoa.issue_leaf(tcb=TcbVersion(1, 0, 1, 1, fmc=2), not_before=NOT_BEFORE)
    assert exc.value.reason is Reason.INPUT_INVALID
    with pytest.raises(ParseError) as exc:
        genoa.issue_leaf(not_before=dt.datetime(2026, 1, 1))
    assert exc.value.reason is Reason.INPUT_INVALID


# --- files -----------------------------------------------------------------------------------


def test_save_and_load_round_trip(chain: DevAmdChain, tmp_path: Path) -> None:
    chain.save(tmp_path)
    leaf_name = chain.signer.value
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"ark.pem", f"{chain.intermediate_name}.pem", f"{leaf_name}.pem", f"{leaf_name}.key", "cert_chain.pem"}
    assert stat.S_IMODE(os.stat(tmp_path / f"{leaf_name}.key").st_mode) == 0o600
    chain_pem = (tmp_path / "cert_chain.pem").read_bytes()
    assert x509.load_pem_x509_certificates(chain_pem) == [chain.ask, chain.ark]
    loaded = DevAmdChain.load(tmp_path)
    assert (loaded.product, loaded.signer, loaded.chip_id, loaded.tcb) == (
        chain.product,
        chain.signer,
        chain.chip_id,
        chain.tcb,
    )
    assert (loaded.ark, loaded.ask, loaded.leaf) == (chain.ark, chain.ask, chain.leaf)
    assert loaded.leaf_key.public_key().public_numbers() == chain.leaf_key.public_key().public_numbers()
    assert loaded.ask_key is None and loaded.csp_id == chain.csp_id
    verify_report(loaded.sign(loaded.report_template()), chain.leaf)
    with pytest.raises(ParseError) as exc:
        loaded.issue_leaf(not_before=NOT_BEFORE)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_save_with_ca_keys_lets_a_loaded_chain_issue_leaves(
    chains: dict[tuple[Product, SignerKind], DevAmdChain], tmp_path: Path
) -> None:
    milan = chains[(Product.MILAN, SignerKind.VLEK)]
    milan.save(tmp_path, include_ca_keys=True)
    for key_file in ("ark.key", "asvk.key", "vlek.key"):
        assert stat.S_IMODE(os.stat(tmp_path / key_file).st_mode) == 0o600
    loaded = DevAmdChain.load(tmp_path)
    fresh = loaded.issue_leaf(not_before=NOT_BEFORE)
    verify_pss(fresh.leaf, milan.ask)
    assert AmdCertExtensions.from_certificate(fresh.leaf).csp_id == milan.csp_id


def test_load_rejects_incomplete_or_mismatched_directories(
    chains: dict[tuple[Product, SignerKind], DevAmdChain], tmp_path: Path
) -> None:
    with pytest.raises(ParseError) as exc:
        DevAmdChain.load(tmp_path)
    assert exc.value.reason is Reason.INPUT_UNREADABLE

    genoa, turin = chains[(Product.GENOA, SignerKind.VCEK)], chains[(Product.TURIN, SignerKind.VCEK)]
    genoa.save(tmp_path / "genoa")
    turin.save(tmp_path / "turin")

    (tmp_path / "genoa" / "vcek.key").write_bytes((tmp_path / "turin" / "vcek.key").read_bytes())
    with pytest.raises(ParseError) as exc:
        DevAmdChain.load(tmp_path / "genoa")
    assert exc.value.reason is Reason.INPUT_INVALID

    turin_dir = tmp_path / "turin"
    (turin_dir / "vlek.pem").write_bytes((turin_dir / "vcek.pem").read_bytes())
    with pytest.raises(ParseError) as exc:
        DevAmdChain.load(turin_dir)
    assert exc.value.reason is Reason.INPUT_UNREADABLE
    (turin_dir / "vlek.pem").unlink()

    (turin_dir / "ask.pem").write_text("not a certificate")
    with pytest.raises(ParseError) as exc:
        DevAmdChain.load(turin_dir)
    assert exc.value.reason is Reason.CERT_MALFORMED

    (turin_dir / "ask.pem").unlink()
    with pytest.raises(ParseError) as exc:
        DevAmdChain.load(turin_dir)
    assert exc.value.reason is Reason.INPUT_UNREADABLE
