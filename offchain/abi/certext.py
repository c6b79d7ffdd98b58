"""AMD's X.509 extensions on VCEK and VLEK certificates (AMD "Versioned Chip Endorsement Key (VCEK)
Certificate and KDS Interface Specification", Table 8 "VCEK Certificate Extensions"; the VLEK
specification reuses them and adds cspID).

Every extension value (the content of extnValue) is one DER item, except hwID, which AMD puts in
extnValue as the raw chip identifier bytes::

    1.3.6.1.4.1.3704.1.1    structVersion   INTEGER
    1.3.6.1.4.1.3704.1.2    productName     IA5String   ("Milan-B0", "Milan", "Genoa", "Turin")
    1.3.6.1.4.1.3704.1.3.1  blSPL           INTEGER     (boot loader)
    1.3.6.1.4.1.3704.1.3.2  teeSPL          INTEGER
    1.3.6.1.4.1.3704.1.3.3  snpSPL          INTEGER
    1.3.6.1.4.1.3704.1.3.4  spl_4 .. 3.7 spl_7  INTEGER (reserved SPLs; 3.4 absent on Turin)
    1.3.6.1.4.1.3704.1.3.8  ucodeSPL        INTEGER
    1.3.6.1.4.1.3704.1.3.9  fmcSPL          INTEGER     (Turin only)
    1.3.6.1.4.1.3704.1.4    hwID            raw bytes   (VCEK: 64 bytes, Turin 8 bytes; absent on VLEKs)
    1.3.6.1.4.1.3704.1.5    cspID           IA5String   (VLEK only, e.g. "CN=cc-us-east-2.amazonaws.com")

This module parses and encodes them; whether the SPLs match a report is the verifier's question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from cryptography import x509

from offchain.abi.snp_report import Product, TcbVersion
from offchain.errors import ParseError, Reason

AMD_OID_PREFIX = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.1")
OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.2")
OID_BL_SPL = x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.3.1")
OID_TEE_SPL = x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.3.2")
OID_SNP_SPL = x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.3.3")
OID_RESERVED_SPLS = tuple(x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.3.{i}") for i in (4, 5, 6, 7))
OID_UCODE_SPL = x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.3.8")
OID_FMC_SPL = x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.3.9")
OID_HWID = x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.4")
OID_CSP_ID = x509.ObjectIdentifier(f"{AMD_OID_PREFIX}.5")

HWID_SIZES = (8, 64)  # Turin VCEKs carry chip_id[0:8], Milan/Genoa VCEKs all 64 bytes

_TAG_INTEGER = 0x02
_TAG_IA5STRING = 0x16


def _fail(detail: str, **context: Any) -> ParseError:
    return ParseError(Reason.CERT_EXTENSION_MALFORMED, detail, **context)


def _der_item(data: bytes, tag: int, what: str) -> bytes:
    """The content of exactly one DER TLV with ``tag`` spanning all of ``data`` (X.690, 8.1 and 10.1)."""
    if len(data) < 2 or data[0] != tag:
        raise _fail(f"{what}: expected DER tag {tag:#04x}", extension=what)
    first = data[1]
    if first < 0x80:
        length, header = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 2 or len(data) < 2 + count:
            raise _fail(f"{what}: unsupported DER length encoding", extension=what)
        length = int.from_bytes(data[2 : 2 + count], "big")
        header = 2 + count
        if length < 0x80 or (count == 2 and length < 0x100):
            raise _fail(f"{what}: DER length not in its shortest form", extension=what)
    if header + length != len(data):
        raise _fail(f"{what}: DER length {length} does not span the value", extension=what)
    return data[header:]


def _der_header(tag: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((tag, length))
    if length < 0x100:
        return bytes((tag, 0x81, length))
    if length < 0x10000:
        return bytes((tag, 0x82)) + length.to_bytes(2, "big")
    raise ParseError(Reason.INPUT_INVALID, "DER values over 65535 bytes are not needed here")


def decode_der_uint(data: bytes, what: str) -> int:
    """A non-negative DER INTEGER in minimal two's-complement form."""
    content = _der_item(data, _TAG_INTEGER, what)
    if not content:
        raise _fail(f"{what}: empty INTEGER", extension=what)
    if len(content) > 1 and (
        (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise _fail(f"{what}: INTEGER not in minimal form", extension=what)
    if content[0] & 0x80:
        raise _fail(f"{what}: negative INTEGER", extension=what)
    return int.from_bytes(content, "big")


def encode_der_uint(value: int) -> bytes:
    """DER INTEGER for a non-negative int."""
    if value < 0:
        raise ParseError(Reason.INPUT_INVALID, "only non-negative integers are encoded here")
    content = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return _der_header(_TAG_INTEGER, len(content)) + content


def decode_der_ia5(data: bytes, what: str) -> str:
    content = _der_item(data, _TAG_IA5STRING, what)
    if any(b > 0x7F for b in content):
        raise _fail(f"{what}: IA5String holds a non-ASCII byte", extension=what)
    return content.decode("ascii")


def encode_der_ia5(text: str) -> bytes:
    try:
        content = text.encode("ascii")
    except UnicodeEncodeError:
        raise ParseError(Reason.INPUT_INVALID, f"IA5String must be ASCII: {text!r}") from None
    return _der_header(_TAG_IA5STRING, len(content)) + content


def _spl(value: bytes, what: str) -> int:
    spl = decode_der_uint(value, what)
    if spl > 0xFF:
        raise _fail(f"{what}: an SPL is 0..255, got {spl}", extension=what)
    return spl


@dataclass(frozen=True, slots=True)
class AmdCertExtensions:
    """The AMD extensions of one VCEK/VLEK certificate.

    ``fmc`` is None when the certificate has no fmcSPL (every product but Turin); ``hwid`` is None
    on VLEKs and ``csp_id`` None on VCEKs. ``reserved_spls`` keeps the spl_4..spl_7 values that are
    present, as ``(index, value)`` pairs in OID order, so a certificate re-encodes as it was.
    """

    struct_version: int
    product_name: str
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None
    hwid: bytes | None = None
    csp_id: str | None = None
    reserved_spls: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        for name in ("bootloader", "tee", "snp", "microcode"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 0xFF:
                raise _fail(f"{name} SPL must be 0..255, got {value!r}", extension=name)
        if self.fmc is not None and not 0 <= self.fmc <= 0xFF:
            raise _fail(f"fmc SPL must be 0..255, got {self.fmc!r}", extension="fmc")
        if self.hwid is not None and len(self.hwid) not in HWID_SIZES:
            raise _fail(f"hwID must be 8 or 64 bytes, got {len(self.hwid)}", extension="hwID")
        for index, value in self.reserved_spls:
            if index not in (4, 5, 6, 7) or not 0 <= value <= 0xFF:
                raise _fail(f"reserved SPL 3.{index} = {value} is out of range", extension=f"3.{index}")

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> Self:
        """Read the AMD extensions; the structVersion, productName and four TCB SPLs are required."""
        try:
            extensions = {ext.oid: ext for ext in cert.extensions}
        except (x509.DuplicateExtension, ValueError) as exc:
            raise _fail(f"certificate extensions do not parse: {exc}") from None

        def optional(oid: x509.ObjectIdentifier, what: str) -> bytes | None:
            ext = extensions.get(oid)
            if ext is None:
                return None
            if not isinstance(ext.value, x509.UnrecognizedExtension):
                raise _fail(f"{what}: unexpected extension type", extension=what)
            return ext.value.value

        def required(oid: x509.ObjectIdentifier, what: str) -> bytes:
            value = optional(oid, what)
            if value is None:
                raise _fail(f"the AMD {what} extension ({oid.dotted_string}) is missing", extension=what)
            return value

        fmc_raw = optional(OID_FMC_SPL, "fmcSPL")
        hwid = optional(OID_HWID, "hwID")
        csp_raw = optional(OID_CSP_ID, "cspID")
        reserved = []
        for index, oid in zip((4, 5, 6, 7), OID_RESERVED_SPLS):
            value = optional(oid, f"3.{index}")
            if value is not None:
                reserved.append((index, _spl(value, f"3.{index}")))
        if hwid is not None and len(hwid) not in HWID_SIZES:
            raise _fail(f"hwID must be 8 or 64 bytes, got {len(hwid)}", extension="hwID")
        return cls(
            struct_version=decode_der_uint(required(OID_STRUCT_VERSION, "structVersion"), "structVersion"),
            product_name=decode_der_ia5(required(OID_PRODUCT_NAME, "productName"), "productName"),
            bootloader=_spl(required(OID_BL_SPL, "blSPL"), "blSPL"),
            tee=_spl(required(OID_TEE_SPL, "teeSPL"), "teeSPL"),
            snp=_spl(required(OID_SNP_SPL, "snpSPL"), "snpSPL"),
            microcode=_spl(required(OID_UCODE_SPL, "ucodeSPL"), "ucodeSPL"),
            fmc=None if fmc_raw is None else _spl(fmc_raw, "fmcSPL"),
            hwid=hwid,
            csp_id=None if csp_raw is None else decode_der_ia5(csp_raw, "cspID"),
            reserved_spls=tuple(reserved),
        )

    @property
    def product(self) -> Product:
        """The product line named by productName (``Milan-B0`` -> MILAN)."""
        return Product.from_name(self.product_name)

    def tcb(self, product: Product) -> TcbVersion:
        """The certified TCB in ``product``'s layout; Turin certificates must carry fmcSPL."""
        if product is Product.TURIN and self.fmc is None:
            raise _fail("a Turin certificate must carry the fmcSPL extension", extension="fmcSPL")
        if product is not Product.TURIN and self.fmc:
            raise _fail(f"a {product.display_name} certificate cannot certify an FMC SPL", extension="fmcSPL")
        return TcbVersion(
            bootloader=self.bootloader,
            tee=self.tee,
            snp=self.snp,
            microcode=self.microcode,
            fmc=self.fmc or 0,
            product=product,
        )

    def to_extensions(self) -> list[x509.Extension[x509.UnrecognizedExtension]]:
        """The extensions in AMD's order, non-critical, ready for ``CertificateBuilder.add_extension``."""
        reserved = [(OID_RESERVED_SPLS[index - 4], encode_der_uint(value)) for index, value in self.reserved_spls]
        bl = (OID_BL_SPL, encode_der_uint(self.bootloader))
        tee = (OID_TEE_SPL, encode_der_uint(self.tee))
        snp = (OID_SNP_SPL, encode_der_uint(self.snp))
        items: list[tuple[x509.ObjectIdentifier, bytes]] = [
            (OID_STRUCT_VERSION, encode_der_uint(self.struct_version)),
            (OID_PRODUCT_NAME, encode_der_ia5(self.product_name)),
        ]
        if self.fmc is None:  # Milan/Genoa order: bl, tee, spl_4..spl_7, snp, ucode
            items += [bl, tee, *reserved, snp]
        else:  # Turin order: fmc, bl, tee, snp, spl_5..spl_7, ucode
            items += [(OID_FMC_SPL, encode_der_uint(self.fmc)), bl, tee, snp, *reserved]
        items.append((OID_UCODE_SPL, encode_der_uint(self.microcode)))
        if self.hwid is not None:
            items.append((OID_HWID, self.hwid))
        if self.csp_id is not None:
            items.append((OID_CSP_ID, encode_der_ia5(self.csp_id)))
        return [x509.Extension(oid, False, x509.UnrecognizedExtension(oid, value)) for oid, value in items]

    def to_json(self) -> dict[str, Any]:
        """The shape of expected.json's ``leaf_ext``: SPLs by name, reserved ones as ``"3.N"``."""
        out: dict[str, Any] = {
            "structVersion": self.struct_version,
            "productName": self.product_name,
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        out.update({f"3.{index}": value for index, value in self.reserved_spls})
        if self.fmc is not None:
            out["fmc"] = self.fmc
        if self.hwid is not None:
            out["hwID"] = self.hwid.hex()
        if self.csp_id is not None:
            out["cspID"] = self.csp_id
        return out
