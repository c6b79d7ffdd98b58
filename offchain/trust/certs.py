"""Loading AMD certificates from files, directories, PEM bundles and evidence (PROTOCOL.md, "Trust roots").

AMD's hierarchy (SEV-SNP ABI specification, chapter "VCEK/VLEK certificates"; AMD "Versioned Chip
Endorsement Key (VCEK) Certificate and KDS Interface Specification"):

=========  ===================  =====================================================
role       subject CN           signed by
=========  ===================  =====================================================
ARK        ``ARK-<Product>``    itself (RSA-4096, RSASSA-PSS SHA-384)
ASK        ``SEV-<Product>``    the ARK; issues VCEKs
ASVK       ``SEV-VLEK-<Product>``  the ARK; issues VLEKs
VCEK       ``SEV-VCEK``         the ASK (EC P-384), one per chip and TCB
VLEK       ``SEV-VLEK``         the ASVK (EC P-384), one per cloud provider
=========  ===================  =====================================================

Real VCEK/VLEK certificates carry serial number 0, which ``cryptography`` parses with a
deprecation warning; the loader silences exactly that warning (the pinned ``cryptography`` version
and ``tests/unit/offchain/test_real_vcek_serial.py`` guard the day it becomes an error).
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from offchain.abi.snp_report import SignerKind
from offchain.errors import ParseError, Reason
from offchain.inputs import read_input

PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
PEM_END = b"-----END CERTIFICATE-----"
#: File suffixes a certificate directory is searched for.
CERTIFICATE_SUFFIXES = (".pem", ".der", ".crt", ".cer", ".cert")
#: No AMD certificate or bundle comes near this; larger input is refused before parsing.
MAX_CERTIFICATE_FILE = 1 << 20


class CertRole(str, enum.Enum):
    """Where a certificate sits in AMD's hierarchy, from its subject common name."""

    ARK = "ark"
    ASK = "ask"
    ASVK = "asvk"
    VCEK = "vcek"
    VLEK = "vlek"

    @property
    def signer(self) -> SignerKind | None:
        """The signing-key kind of a leaf role, ``None`` for roots and intermediates."""
        return {CertRole.VCEK: SignerKind.VCEK, CertRole.VLEK: SignerKind.VLEK}.get(self)

    @classmethod
    def intermediate_for(cls, signer: SignerKind) -> CertRole:
        """The intermediate that issues a leaf of this kind: ASK for VCEK, ASVK for VLEK."""
        return cls.ASK if signer is SignerKind.VCEK else cls.ASVK


def common_name(cert: x509.Certificate) -> str:
    """The subject's first common name, or ``""``."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def classify(cert: x509.Certificate) -> CertRole:
    """The role of an AMD SEV-SNP certificate; ParseError(cert.malformed) for anything else."""
    cn = common_name(cert)
    if cn.startswith("ARK-"):
        return CertRole.ARK
    if cn == "SEV-VCEK":
        return CertRole.VCEK
    if cn == "SEV-VLEK":
        return CertRole.VLEK
    if cn.startswith("SEV-VLEK-"):
        return CertRole.ASVK
    if cn.startswith("SEV-"):
        return CertRole.ASK
    raise ParseError(Reason.CERT_MALFORMED, f"not an AMD SEV-SNP certificate (CN={cn!r})", common_name=cn)


def _checked(load: Callable[[bytes], x509.Certificate], data: bytes) -> x509.Certificate:
    """Load and touch every field a verifier reads: ``cryptography`` parses some lazily."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Parsed a serial number which wasn't positive", category=CryptographyDeprecationWarning
        )
        try:
            cert = load(data)
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            _ = (cert.version, cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc,
                 cert.signature_algorithm_oid)
            list(cert.extensions)
            cert.public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension, x509.InvalidVersion) as exc:
            raise ParseError(Reason.CERT_MALFORMED, f"not a well-formed X.509 certificate: {_plain(data, exc)}",
                             library=str(exc)) from None
    return cert


def _der_length(der: bytes) -> int | None:
    """The total length the outer DER element declares (X.690 8.1.3), or None if unreadable."""
    if len(der) < 2:
        return None
    first = der[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if not 1 <= count <= 4 or len(der) < 2 + count:
        return None
    return 2 + count + int.from_bytes(der[2 : 2 + count], "big")


def _plain(data: bytes, exc: Exception) -> str:
    """What is wrong, in words (the library's own message, a Rust structure dump, goes into the context)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return "the PEM block does not hold a readable certificate (truncated or damaged base64)"
    if not data or data[0] != 0x30:
        return "the input is neither PEM nor DER (a DER certificate starts with an ASN.1 SEQUENCE, byte 0x30)"
    declared = _der_length(data)
    if declared is not None and declared > len(data):
        return f"truncated: the DER certificate declares {declared} bytes, the input has {len(data)}"
    if declared is not None and declared < len(data):
        return f"{len(data) - declared} bytes follow the DER certificate"
    if isinstance(exc, UnsupportedAlgorithm):
        return "it uses a signature or key algorithm this verifier does not support"
    return "its ASN.1 structure does not parse as a certificate"


def _load_der(der: bytes) -> x509.Certificate:
    return _checked(x509.load_der_x509_certificate, der)


def parse_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in ``data``: one DER certificate, or one or more PEM blocks (a bundle).

    Text around PEM blocks is ignored (KDS and ``openssl`` output add none, humans add comments).
    """
    if len(data) > MAX_CERTIFICATE_FILE:
        raise ParseError(Reason.CERT_MALFORMED, f"certificate input of {len(data)} bytes is too large")
    if PEM_BEGIN not in data:
        if not data:
            raise ParseError(Reason.CERT_MALFORMED, "empty certificate input")
        return [_load_der(data)]
    out = []
    rest = data
    while (start := rest.find(PEM_BEGIN)) >= 0:
        end = rest.find(PEM_END, start)
        if end < 0:
            raise ParseError(Reason.CERT_MALFORMED, "PEM block without an END line")
        block = rest[start : end + len(PEM_END)]
        rest = rest[end + len(PEM_END) :]
        out.append(_checked(x509.load_pem_x509_certificate, block + b"\n"))
    return out


def parse_certificate(data: bytes) -> x509.Certificate:
    """Exactly one certificate (DER or a single PEM block)."""
    certs = parse_certificates(data)
    if len(certs) != 1:
        raise ParseError(Reason.CERT_MALFORMED, f"expected one certificate, found {len(certs)}")
    return certs[0]


def read_file(path: Path, limit: int = MAX_CERTIFICATE_FILE) -> bytes:
    """Read a whole input file (``-``: standard input); INPUT_UNREADABLE when it cannot be read or is
    larger than ``limit``."""
    return read_input(path, limit)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """The certificates in a file (DER, PEM, or a PEM bundle such as KDS's ``cert_chain``)."""
    return parse_certificates(read_file(path))


def to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def to_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True, slots=True)
class CertificateSet:
    """The AMD certificates at hand, one per role, any of them absent.

    Built from files, a directory, an evidence bundle or KDS, then layered with :meth:`over` so
    that what the caller names explicitly wins over what the evidence carries, which wins over
    what KDS serves.
    """

    ark: x509.Certificate | None = None
    ask: x509.Certificate | None = None
    asvk: x509.Certificate | None = None
    vcek: x509.Certificate | None = None
    vlek: x509.Certificate | None = None

    @classmethod
    def of(cls, certificates: Iterable[x509.Certificate]) -> CertificateSet:
        """Sort certificates into roles. Two different certificates for one role are ambiguous."""
        found: dict[str, x509.Certificate] = {}
        for cert in certificates:
            role = classify(cert).value
            if role in found and to_der(found[role]) != to_der(cert):
                raise ParseError(
                    Reason.INPUT_INVALID, f"two different {role.upper()} certificates given", role=role
                )
            found[role] = cert
        return cls(**found)

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> CertificateSet:
        certs: list[x509.Certificate] = []
        for path in paths:
            certs.extend(load_certificates(path))
        return cls.of(certs)

    @classmethod
    def from_directory(cls, directory: Path) -> CertificateSet:
        """Every certificate file directly in ``directory`` (suffixes in CERTIFICATE_SUFFIXES)."""
        try:
            paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in CERTIFICATE_SUFFIXES and p.is_file())
        except OSError as exc:
            raise ParseError(
                Reason.INPUT_UNREADABLE, f"cannot list {directory}: {exc.strerror or exc}", path=str(directory)
            ) from None
        return cls.from_files(paths)

    def get(self, role: CertRole) -> x509.Certificate | None:
        value: x509.Certificate | None = getattr(self, role.value)
        return value

    def over(self, fallback: CertificateSet) -> CertificateSet:
        """This set, with the roles it lacks taken from ``fallback``."""
        return replace(
            fallback, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        )

    @property
    def leaf(self) -> x509.Certificate | None:
        """The one leaf present (VCEK or VLEK); ambiguous when both are."""
        if self.vcek is not None and self.vlek is not None:
            raise ParseError(Reason.INPUT_INVALID, "both a VCEK and a VLEK given; pass one leaf")
        return self.vcek if self.vcek is not None else self.vlek

    def roles(self) -> list[CertRole]:
        return [role for role in CertRole if self.get(role) is not None]


#: AMD's CRLs are a few kilobytes; a larger input is not one.
MAX_CRL_BYTES = 1024 * 1024


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from DER or PEM bytes, every field a verifier reads parsed now (``snp.crl.malformed`` otherwise)."""
    if len(data) > MAX_CRL_BYTES:
        raise ParseError(Reason.CRL_MALFORMED, f"a CRL of {len(data)} bytes is larger than {MAX_CRL_BYTES}")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
        crl.issuer.rfc4514_string()
        _ = (crl.last_update_utc, crl.next_update_utc, crl.signature_algorithm_oid, crl.signature,
             crl.tbs_certlist_bytes)
        list(crl.extensions)
        for entry in crl:
            _ = (entry.serial_number, entry.revocation_date_utc)
            list(entry.extensions)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.DuplicateExtension, x509.InvalidVersion) as exc:
        raise ParseError(Reason.CRL_MALFORMED, f"not a well-formed X.509 CRL: {exc}") from None
    return crl
