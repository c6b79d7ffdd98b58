"""A development AMD key hierarchy: ARK -> ASK (or ASVK) -> VCEK (or VLEK), made with ``cryptography``.

No AMD hardware exists here, so the simulated platform and the verifier tests need a faithful
stand-in for AMD's key distribution: certificates shaped like AMD's (VCEK and KDS Interface
Specification, "Certificate Chain" and Table 8) and reports signed as the firmware signs them
(SEV-SNP ABI specification, 7.3 "Attestation" and Table 23):

* ARK: self-signed RSA-4096, CN ``ARK-<Product>``, serial ``<gen>0000`` as AMD numbers them.
* ASK (CN ``SEV-<Product>``) or, for VLEKs, ASVK (CN ``SEV-VLEK-<Product>``): RSA-4096, issued
  by the ARK, path length 0.
* VCEK (CN ``SEV-VCEK``) or VLEK (CN ``SEV-VLEK``): EC P-384, serial number 0 like every real
  one, carrying AMD's extensions (productName, SPLs equal to the TCB, hwID for a VCEK = the chip
  id, 8 bytes on Turin; cspID for a VLEK).
* Every certificate is signed with RSASSA-PSS, SHA-384, MGF1-SHA-384, salt length 48.
* Reports are signed with ECDSA P-384 over SHA-384 of bytes 0x000..0x29F.

The organisation of every certificate says it is a cvm-attest development root and NOT AMD.
Nothing trusts this hierarchy unless a caller pins its ARK explicitly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from offchain.abi.certext import AmdCertExtensions
from offchain.abi.snp_report import (
    SIGNING_KEY_MASK,
    SIGNING_KEY_SHIFT,
    Product,
    SignerKind,
    SnpReport,
    TcbVersion,
)
from offchain.errors import ParseError, Reason

DEV_ORGANIZATION = "cvm-attest development root, NOT AMD"
DEV_ORGANIZATIONAL_UNIT = "cvm-attest development"
DEFAULT_VLEK_CSP_ID = "CN=dev.cvm-attest.invalid"
CA_KEY_BITS = 4096
CA_LIFETIME_YEARS = 25  # AMD's ARK/ASK/ASVK
LEAF_LIFETIME_YEARS = {SignerKind.VCEK: 7, SignerKind.VLEK: 1}  # KDS VCEKs; the VLEKs AWS carries

# AMD's serial numbers: ARK <gen>0000, ASK <gen>0001 (Genoa <gen>0002), ASVK <gen>0101.
_GENERATION = {Product.MILAN: 1, Product.GENOA: 2, Product.TURIN: 3}
_ASK_SERIAL_LOW = {Product.MILAN: 1, Product.GENOA: 2, Product.TURIN: 1}
_ASVK_SERIAL_LOW = 0x101

# A plausible TCB of each product line (values seen in real reports) for when none is given.
DEFAULT_TCB = {
    Product.MILAN: TcbVersion(bootloader=4, tee=0, snp=24, microcode=219, product=Product.MILAN),
    Product.GENOA: TcbVersion(bootloader=10, tee=0, snp=25, microcode=84, product=Product.GENOA),
    Product.TURIN: TcbVersion(bootloader=1, tee=0, snp=2, microcode=71, fmc=0, product=Product.TURIN),
}
#: What the simulated platform's firmware reports (agent.platforms.sim) unless told otherwise: guest
#: policy 0x30000 (SMT allowed, reserved bit 17; debug and migration forbidden), bit 19 for a debug
#: guest, VMPL 0, a Genoa chip, and a launch MEASUREMENT that is SHA-384 of a fixed label, so it
#: is recognisable and never all zero. Both the agent and the image build (which predicts a sim
#: image's golden measurement) read them here.
SIM_POLICY = 0x30000
SIM_POLICY_DEBUG = 1 << 19
SIM_VMPL = 0
SIM_PRODUCT = Product.GENOA
DEFAULT_SIM_MEASUREMENT = hashlib.sha384(b"cvm-attest/sim/measurement/v1").digest()
# CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP of a version-3+ report, per product (ABI spec Table 23).
CPUID = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x01),
}
# CURRENT/COMMITTED firmware major.minor.build of a plausible recent SEV firmware.
DEFAULT_FIRMWARE = {Product.MILAN: (1, 55, 29), Product.GENOA: (1, 55, 43), Product.TURIN: (1, 55, 61)}

_CERT_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)

_FILES = {
    SignerKind.VCEK: ("ask.pem", "vcek.pem", "vcek.key", "ask.key"),
    SignerKind.VLEK: ("asvk.pem", "vlek.pem", "vlek.key", "asvk.key"),
}
ARK_FILE = "ark.pem"
ARK_KEY_FILE = "ark.key"
CHAIN_FILE = "cert_chain.pem"


def _name(common_name: str) -> x509.Name:
    # AMD's attribute order (OU, C, L, ST, O, CN), with the organisation saying what this is.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, DEV_ORGANIZATIONAL_UNIT),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _utc_seconds(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ParseError(Reason.INPUT_INVALID, "certificate times must be timezone-aware")
    return when.astimezone(dt.timezone.utc).replace(microsecond=0)


def _plus_years(when: dt.datetime, years: int) -> dt.datetime:
    """The same calendar date ``years`` later (29 February becomes 28 February)."""
    try:
        return when.replace(year=when.year + years)
    except ValueError:
        return when.replace(year=when.year + years, day=28)


def _product_name(product: Product, signer: SignerKind) -> str:
    """productName as AMD writes it: Milan VCEKs say ``Milan-B0``, everything else the bare name."""
    if product is Product.MILAN and signer is SignerKind.VCEK:
        return "Milan-B0"
    return product.display_name


def _der_tlv(data: bytes, offset: int) -> tuple[int, int]:
    """``(header_length, content_length)`` of the DER item at ``offset`` (definite lengths only)."""
    first = data[offset + 1]
    if first < 0x80:
        return 2, first
    count = first & 0x7F
    return 2 + count, int.from_bytes(data[offset + 2 : offset + 2 + count], "big")


def _der(tag: int, content: bytes) -> bytes:
    """One DER item with a definite length (X.690, 8.1.3)."""
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + content


def _with_serial_zero(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> x509.Certificate:
    """Re-issue ``cert`` (built with serial 1) with serial 0, which CertificateBuilder refuses.

    Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
    (RFC 5280, 4.1). In the TBS, ``[0] version`` (a0 03 02 01 02) is followed by the serial
    INTEGER ``02 01 01``; the byte after it becomes 0 and the TBS is signed again.
    """
    der = cert.public_bytes(serialization.Encoding.DER)
    outer_header, _ = _der_tlv(der, 0)
    tbs = bytearray(cert.tbs_certificate_bytes)
    tbs_header, _ = _der_tlv(cert.tbs_certificate_bytes, 0)
    serial_at = tbs_header + 5
    if bytes(tbs[tbs_header:serial_at]) != b"\xa0\x03\x02\x01\x02" or bytes(tbs[serial_at : serial_at + 3]) != b"\x02\x01\x01":
        raise ParseError(Reason.CERT_MALFORMED, "unexpected TBS layout while setting serial number 0")
    tbs[serial_at + 2] = 0
    alg_at = outer_header + len(cert.tbs_certificate_bytes)
    alg_header, alg_length = _der_tlv(der, alg_at)
    algorithm = der[alg_at : alg_at + alg_header + alg_length]
    signature = issuer_key.sign(bytes(tbs), _CERT_PSS, hashes.SHA384())
    bit_string = _der(0x03, b"\x00" + signature)  # BIT STRING, no unused bits
    return x509.load_der_x509_certificate(_der(0x30, bytes(tbs) + algorithm + bit_string))  # SEQUENCE


def _ca_certificate(
    *,
    subject: str,
    issuer: x509.Certificate | None,
    key: rsa.RSAPrivateKey,
    issuer_key: rsa.RSAPrivateKey,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=issuer is None,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=_CERT_PSS)


def _leaf_certificate(
    *,
    signer: SignerKind,
    issuer: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    key: ec.EllipticCurvePrivateKey,
    extensions: AmdCertExtensions,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(f"SEV-{signer.value.upper()}"))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for ext in extensions.to_extensions():
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return _with_serial_zero(builder.sign(issuer_key, hashes.SHA384(), rsa_padding=_CERT_PSS), issuer_key)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, key: Any) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ParseError(Reason.INPUT_UNREADABLE, f"cannot read {path}: {exc.strerror}", path=str(path)) from None


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError:
        raise ParseError(Reason.CERT_MALFORMED, f"{path} is not a PEM certificate", path=str(path)) from None


def _read_private_key(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError):
        raise ParseError(Reason.INPUT_INVALID, f"{path} is not an unencrypted PEM private key", path=str(path)) from None


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        raise ParseError(Reason.CERT_MALFORMED, "a certificate name must have exactly one CN")
    return str(values[0].value)


@dataclass(frozen=True, slots=True)
class DevAmdChain:
    """One development ARK/ASK(ASVK)/VCEK(VLEK) hierarchy and the leaf's private key.

    ``chip_id`` is the 64-byte CHIP_ID the simulated firmware reports (all zero for a VLEK; on
    Turin only the first 8 bytes are non-zero, as on real parts). ``ark_key``/``ask_key`` are
    present when the hierarchy was generated here or saved with ``include_ca_keys``; they are
    needed only to issue another leaf (:meth:`issue_leaf`).
    """

    product: Product
    signer: SignerKind
    chip_id: bytes
    tcb: TcbVersion
    ark: x509.Certificate
    ask: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey = field(repr=False)
    ark_key: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    ask_key: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    csp_id: str | None = None

    # --- making one -------------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        product: Product = Product.GENOA,
        signer: SignerKind = SignerKind.VCEK,
        chip_id: bytes | None = None,
        tcb: TcbVersion | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        csp_id: str = DEFAULT_VLEK_CSP_ID,
    ) -> Self:
        """A new hierarchy. Generates two RSA-4096 keys: seconds of work, so share the result.

        ``not_before`` defaults to the current time (the only clock read, at this edge);
        ``not_after`` bounds the leaf (default 7 years for a VCEK, 1 year for a VLEK); the ARK and
        ASK are valid 25 years from ``not_before``, or longer when the leaf outlives that.
        """
        start = _utc_seconds(not_before or dt.datetime.now(dt.timezone.utc))
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_BITS)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_BITS)
        leaf_end = _utc_seconds(not_after) if not_after else _plus_years(start, LEAF_LIFETIME_YEARS[signer])
        ca_end = max(_plus_years(start, CA_LIFETIME_YEARS), leaf_end)
        gen = _GENERATION[product] << 16
        ark = _ca_certificate(
            subject=f"ARK-{product.display_name}",
            issuer=None,
            key=ark_key,
            issuer_key=ark_key,
            serial=gen,
            not_before=start,
            not_after=ca_end,
        )
        if signer is SignerKind.VCEK:
            ask_name, ask_serial = f"SEV-{product.display_name}", gen | _ASK_SERIAL_LOW[product]
        else:
            ask_name, ask_serial = f"SEV-VLEK-{product.display_name}", gen | _ASVK_SERIAL_LOW
        ask = _ca_certificate(
            subject=ask_name,
            issuer=ark,
            key=ask_key,
            issuer_key=ark_key,
            serial=ask_serial,
            not_before=start,
            not_after=ca_end,
        )
        return cls._with_leaf(
            product=product,
            signer=signer,
            ark=ark,
            ask=ask,
            ark_key=ark_key,
            ask_key=ask_key,
            csp_id=csp_id if signer is SignerKind.VLEK else None,
            chip_id=chip_id,
            tcb=tcb,
            not_before=start,
            not_after=leaf_end,
        )

    def issue_leaf(
        self,
        *,
        chip_id: bytes | None = None,
        tcb: TcbVersion | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Self:
        """A new VCEK/VLEK (new key) under the same ARK and ASK/ASVK: another chip, or the same
        chip at another TCB. Needs the ASK's private key."""
        if self.ask_key is None:
            raise ParseError(
                Reason.INPUT_INVALID, "issuing a leaf needs the ASK/ASVK private key (save with include_ca_keys)"
            )
        start = _utc_seconds(not_before or dt.datetime.now(dt.timezone.utc))
        return self._with_leaf(
            product=self.product,
            signer=self.signer,
            ark=self.ark,
            ask=self.ask,
            ark_key=self.ark_key,
            ask_key=self.ask_key,
            csp_id=self.csp_id,
            chip_id=chip_id,
            tcb=tcb,
            not_before=start,
            not_after=_utc_seconds(not_after) if not_after else _plus_years(start, LEAF_LIFETIME_YEARS[self.signer]),
        )

    @classmethod
    def _with_leaf(
        cls,
        *,
        product: Product,
        signer: SignerKind,
        ark: x509.Certificate,
        ask: x509.Certificate,
        ark_key: rsa.RSAPrivateKey | None,
        ask_key: rsa.RSAPrivateKey,
        csp_id: str | None,
        chip_id: bytes | None,
        tcb: TcbVersion | None,
        not_before: dt.datetime,
        not_after: dt.datetime,
    ) -> Self:
        if chip_id is None:
            if signer is SignerKind.VLEK:
                chip_id = bytes(64)
            elif product is Product.TURIN:
                chip_id = secrets.token_bytes(8) + bytes(56)
            else:
                chip_id = secrets.token_bytes(64)
        if len(chip_id) != 64:
            raise ParseError(Reason.INPUT_INVALID, f"chip_id is 64 bytes, got {len(chip_id)}")
        if product is Product.TURIN and any(chip_id[8:]):
            raise ParseError(Reason.INPUT_INVALID, "a Turin CHIP_ID has only 8 significant bytes; the rest is zero")
        given = tcb or DEFAULT_TCB[product]
        tcb = TcbVersion(given.bootloader, given.tee, given.snp, given.microcode, given.fmc, product=product)
        turin = product is Product.TURIN
        extensions = AmdCertExtensions(
            struct_version=1 if turin else 0,
            product_name=_product_name(product, signer),
            bootloader=tcb.bootloader,
            tee=tcb.tee,
            snp=tcb.snp,
            microcode=tcb.microcode,
            fmc=tcb.fmc if turin else None,
            hwid=None if signer is SignerKind.VLEK else chip_id[:8] if turin else chip_id,
            csp_id=csp_id if signer is SignerKind.VLEK else None,
            # AMD's leaves carry the reserved SPLs as zero: 3.5-3.7 on Turin, 3.4-3.7 before.
            reserved_spls=((5, 0), (6, 0), (7, 0)) if turin else ((4, 0), (5, 0), (6, 0), (7, 0)),
        )
        leaf_key = ec.generate_private_key(ec.SECP384R1())
        leaf = _leaf_certificate(
            signer=signer,
            issuer=ask,
            issuer_key=ask_key,
            key=leaf_key,
            extensions=extensions,
            not_before=not_before,
            not_after=not_after,
        )
        return cls(
            product=product,
            signer=signer,
            chip_id=chip_id,
            tcb=tcb,
            ark=ark,
            ask=ask,
            leaf=leaf,
            leaf_key=leaf_key,
            ark_key=ark_key,
            ask_key=ask_key,
            csp_id=csp_id,
        )

    def issue_crl(
        self,
        *,
        revoked: tuple[int, ...] = (),
        this_update: dt.datetime,
        next_update: dt.datetime,
    ) -> x509.CertificateRevocationList:
        """The ARK's CRL as KDS serves it (``/{vcek|vlek}/v1/{Product}/crl``): issued by the ARK,
        RSASSA-PSS SHA-384, listing the serials in ``revoked``. Needs the ARK's private key."""
        if self.ark_key is None:
            raise ParseError(Reason.INPUT_INVALID, "issuing a CRL needs the ARK's private key")
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ark.subject)
            .last_update(_utc_seconds(this_update))
            .next_update(_utc_seconds(next_update))
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(_utc_seconds(this_update))
                .build()
            )
        return builder.sign(self.ark_key, hashes.SHA384(), rsa_padding=_CERT_PSS)

    # --- signing reports ---------------------------------------------------------------------

    def report_template(self, **fields: Any) -> SnpReport:
        """A version-5 report as this chip's firmware would lay it out before signing: CPUID of the
        product, all four TCBs equal to the leaf's, firmware version, CHIP_ID and SIGNING_KEY.
        ``fields`` override anything (e.g. ``report_data``, ``measurement``, ``policy``)."""
        fam, mod, step = CPUID[self.product]
        major, minor, build = DEFAULT_FIRMWARE[self.product]
        raw_tcb = self.tcb.to_raw()
        base: dict[str, Any] = dict(
            version=5,
            cpuid_fam_id=fam,
            cpuid_mod_id=mod,
            cpuid_step=step,
            current_tcb=raw_tcb,
            reported_tcb=raw_tcb,
            committed_tcb=raw_tcb,
            launch_tcb=raw_tcb,
            current_major=major,
            current_minor=minor,
            current_build=build,
            committed_major=major,
            committed_minor=minor,
            committed_build=build,
            platform_info=0x25,
            chip_id=self.chip_id,
            flags=self._signing_key_code() << SIGNING_KEY_SHIFT,
        )
        base.update(fields)
        return SnpReport.build(**base)

    def _signing_key_code(self) -> int:
        return 0 if self.signer is SignerKind.VCEK else 1

    def sign(self, report: SnpReport) -> SnpReport:
        """Sign ``report`` as the firmware does: ECDSA P-384 over SHA-384 of bytes 0x000..0x29F.

        Before signing, the fields the firmware fills from its own key set are made consistent
        with this leaf: CHIP_ID, REPORTED_TCB (the TCB the VCEK/VLEK certifies) and the
        SIGNING_KEY bits of the flags. CURRENT/COMMITTED/LAUNCH TCB, CPUID and firmware versions
        are the caller's (see :meth:`report_template`). With MASK_CHIP_KEY set the firmware does
        not sign, so the signature stays zero.
        """
        flags = (report.flags & ~SIGNING_KEY_MASK) | self._signing_key_code() << SIGNING_KEY_SHIFT
        unsigned = report.replace(
            chip_id=self.chip_id,
            reported_tcb=self.tcb.to_raw(),
            flags=flags,
            signature_r=0,
            signature_s=0,
        )
        if unsigned.mask_chip_key:
            return unsigned
        der = self.leaf_key.sign(unsigned.signed_bytes(), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return unsigned.replace(signature_r=r, signature_s=s)

    # --- files -------------------------------------------------------------------------------

    @property
    def intermediate_name(self) -> str:
        """``ask`` or ``asvk``: the evidence bundle's key for the intermediate certificate."""
        return "ask" if self.signer is SignerKind.VCEK else "asvk"

    def certificates_pem(self) -> dict[str, str]:
        """``{"vcek"|"vlek": PEM, "ask"|"asvk": PEM, "ark": PEM}``, as the evidence bundle carries them."""
        return {
            self.signer.value: _pem(self.leaf).decode(),
            self.intermediate_name: _pem(self.ask).decode(),
            "ark": _pem(self.ark).decode(),
        }

    def save(self, directory: Path | str, *, include_ca_keys: bool = False) -> Path:
        """Write ark.pem, ask.pem/asvk.pem, vcek.pem/vlek.pem, cert_chain.pem (ASK then ARK, the
        KDS layout) and the leaf's private key (mode 0600); the CA keys only when asked."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        ask_file, leaf_file, leaf_key_file, ask_key_file = _FILES[self.signer]
        (directory / ARK_FILE).write_bytes(_pem(self.ark))
        (directory / ask_file).write_bytes(_pem(self.ask))
        (directory / leaf_file).write_bytes(_pem(self.leaf))
        (directory / CHAIN_FILE).write_bytes(_pem(self.ask) + _pem(self.ark))
        _write_private(directory / leaf_key_file, self.leaf_key)
        if include_ca_keys:
            if self.ark_key is None or self.ask_key is None:
                raise ParseError(Reason.INPUT_INVALID, "this hierarchy has no CA private keys to save")
            _write_private(directory / ARK_KEY_FILE, self.ark_key)
            _write_private(directory / ask_key_file, self.ask_key)
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> Self:
        """Read a hierarchy written by :meth:`save`; product, signer, chip id and TCB come from the
        certificates, and the leaf key must match the leaf certificate."""
        directory = Path(directory)
        present = [kind for kind in SignerKind if (directory / _FILES[kind][1]).is_file()]
        if len(present) != 1:
            raise ParseError(
                Reason.INPUT_UNREADABLE, f"{directory} must hold exactly one of vcek.pem and vlek.pem", path=str(directory)
            )
        signer = present[0]
        ask_file, leaf_file, leaf_key_file, ask_key_file = _FILES[signer]
        ark = _read_certificate(directory / ARK_FILE)
        ask = _read_certificate(directory / ask_file)
        leaf = _read_certificate(directory / leaf_file)
        product = Product.from_name(_common_name(ark.subject))
        extensions = AmdCertExtensions.from_certificate(leaf)
        leaf_key = _read_private_key(directory / leaf_key_file)
        if not isinstance(leaf_key, ec.EllipticCurvePrivateKey) or leaf_key.public_key().public_numbers() != (
            leaf.public_key().public_numbers()  # type: ignore[union-attr]
        ):
            raise ParseError(Reason.INPUT_INVALID, f"{leaf_key_file} is not the key of {leaf_file}")
        hwid = extensions.hwid or b""
        ark_key = _read_private_key(directory / ARK_KEY_FILE) if (directory / ARK_KEY_FILE).is_file() else None
        ask_key = _read_private_key(directory / ask_key_file) if (directory / ask_key_file).is_file() else None
        for name, key in (("ark", ark_key), ("ask", ask_key)):
            if key is not None and not isinstance(key, rsa.RSAPrivateKey):
                raise ParseError(Reason.INPUT_INVALID, f"the {name} key is not an RSA key")
        return cls(
            product=product,
            signer=signer,
            chip_id=hwid + bytes(64 - len(hwid)),
            tcb=extensions.tcb(product),
            ark=ark,
            ask=ask,
            leaf=leaf,
            leaf_key=leaf_key,
            ark_key=ark_key,
            ask_key=ask_key,
            csp_id=extensions.csp_id,
        )
