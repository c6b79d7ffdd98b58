"""The Azure HCL report: what an Azure confidential VM's paravisor (HCL) stores in vTPM NV index
0x01400001, wrapping the SEV-SNP report whose REPORT_DATA binds the vTPM's attestation key.

Layout (little-endian; Microsoft's IGVM attestation request, "HCL report" / IGVM_REQUEST_DATA)::

    0x000  header (32 bytes)
           signature     [4]  "HCLA"
           version       u32  1 or 2
           report_size   u32  bytes that follow the NV index start and belong to the report
           request_type  u32
           status        u32
           reserved      [12] zero
    0x020  hardware report: the SEV-SNP ATTESTATION_REPORT (1184 bytes)
    0x4C0  IGVM_REQUEST_DATA header (20 bytes)
           data_size               u32  20 + variable_data_size
           version                 u32
           report_type             u32  2 = SEV-SNP
           report_data_hash_type   u32  1 = SHA-256, 2 = SHA-384, 3 = SHA-512
           variable_data_size      u32
    0x4D4  variable data: the runtime-data JSON, exactly as hashed into REPORT_DATA
           zero padding up to the size of the NV index

``report_size == 0x4C0 + data_size``. The runtime data is kept byte for byte: the binding hashes
these exact bytes, so they are never re-serialised.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric import rsa

from offchain.abi.snp_report import REPORT_SIZE, SnpReport
from offchain.abi.jsontext import loads_bounded
from offchain.errors import ParseError, Reason

HCL_SIGNATURE = b"HCLA"
HCL_VERSIONS = (1, 2)
HEADER_SIZE = 0x20
REPORT_OFFSET = HEADER_SIZE
IGVM_OFFSET = REPORT_OFFSET + REPORT_SIZE  # 0x4C0
IGVM_HEADER_SIZE = 20
RUNTIME_DATA_OFFSET = IGVM_OFFSET + IGVM_HEADER_SIZE  # 0x4D4
REPORT_TYPE_SNP = 2
HASH_TYPES = {1: "sha256", 2: "sha384", 3: "sha512"}
AK_KID = "HCLAkPub"
# The HCL report NV index on Azure is 2600 bytes; anything much larger is not an HCL report.
MAX_HCL_SIZE = 0x10000
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _malformed(detail: str, **context: Any) -> ParseError:
    return ParseError(Reason.HCL_REPORT_MALFORMED, detail, **context)


def _runtime_malformed(detail: str) -> ParseError:
    return ParseError(Reason.HCL_RUNTIME_DATA_MALFORMED, detail)


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _runtime_malformed("runtime data JSON repeats a key")
    return dict(pairs)


def _b64url_uint(value: Any, what: str) -> int:
    # RFC 7518, 6.3.1: base64url without padding; anything else is refused, not skipped.
    if not isinstance(value, str) or not _BASE64URL.fullmatch(value):
        raise _runtime_malformed(f"{AK_KID}.{what} must be an unpadded base64url string")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _runtime_malformed(f"{AK_KID}.{what} is not base64url") from None
    return int.from_bytes(raw, "big")


@dataclass(frozen=True, slots=True)
class HclReport:
    """A parsed Azure HCL report. ``padding`` counts the zero bytes after ``report_size``."""

    snp_report: SnpReport
    runtime_data: bytes
    version: int = 1
    request_type: int = 2
    status: int = 0
    igvm_version: int = 1
    report_type: int = REPORT_TYPE_SNP
    report_data_hash_type: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.snp_report, SnpReport):
            raise _malformed("snp_report must be an SnpReport")
        if not isinstance(self.runtime_data, bytes):
            raise _malformed("runtime_data must be bytes")
        if self.version not in HCL_VERSIONS:
            raise _malformed(f"HCL header version {self.version} is not one of {HCL_VERSIONS}", version=self.version)
        if self.report_type != REPORT_TYPE_SNP:
            raise _malformed(f"IGVM report_type {self.report_type} is not 2 (SEV-SNP)", report_type=self.report_type)
        for name in ("request_type", "status", "igvm_version", "report_data_hash_type"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 1 << 32:
                raise _malformed(f"{name} must be a u32", field=name)
        if self.padding < 0 or self.report_size + self.padding > MAX_HCL_SIZE:
            raise _malformed("HCL report larger than an NV index can hold", size=self.report_size + self.padding)

    @property
    def variable_data_size(self) -> int:
        return len(self.runtime_data)

    @property
    def data_size(self) -> int:
        """IGVM_REQUEST_DATA.data_size: its own 20-byte header plus the variable data."""
        return IGVM_HEADER_SIZE + len(self.runtime_data)

    @property
    def report_size(self) -> int:
        return IGVM_OFFSET + self.data_size

    @property
    def report_data_hash(self) -> str | None:
        """The hash the paravisor names for REPORT_DATA (``sha256``...), None if the code is unknown."""
        return HASH_TYPES.get(self.report_data_hash_type)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse an HCL report as read from the NV index (trailing zero padding allowed)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _malformed("an HCL report is bytes")
        data = bytes(data)
        if len(data) < RUNTIME_DATA_OFFSET:
            raise _malformed(f"an HCL report is at least {RUNTIME_DATA_OFFSET} bytes, got {len(data)}", length=len(data))
        if len(data) > MAX_HCL_SIZE:
            raise _malformed(f"{len(data)} bytes is too large for an HCL report", length=len(data))
        if data[0:4] != HCL_SIGNATURE:
            raise _malformed(f"signature {data[0:4]!r} is not 'HCLA'")
        if any(data[20:32]):
            raise _malformed("reserved header bytes 0x14..0x1F are not zero")
        report_size = _u32(data, 8)
        data_size, variable_data_size = _u32(data, IGVM_OFFSET), _u32(data, IGVM_OFFSET + 16)
        if data_size != IGVM_HEADER_SIZE + variable_data_size:
            raise _malformed(
                f"IGVM data_size {data_size} is not 20 + variable_data_size {variable_data_size}",
                data_size=data_size,
            )
        if report_size != IGVM_OFFSET + data_size:
            raise _malformed(
                f"report_size {report_size} is not 0x4C0 + data_size {data_size}", report_size=report_size
            )
        if report_size > len(data):
            raise _malformed(f"report_size {report_size} exceeds the {len(data)} bytes given", report_size=report_size)
        if any(data[report_size:]):
            raise _malformed("bytes after report_size are not zero padding", report_size=report_size)
        try:
            snp = SnpReport.from_bytes(data[REPORT_OFFSET:IGVM_OFFSET])
        except ParseError as exc:
            raise _malformed(f"embedded SNP report: {exc.detail}", snp_reason=exc.reason.value) from exc
        return cls(
            snp_report=snp,
            runtime_data=data[RUNTIME_DATA_OFFSET:report_size],
            version=_u32(data, 4),
            request_type=_u32(data, 12),
            status=_u32(data, 16),
            igvm_version=_u32(data, IGVM_OFFSET + 4),
            report_type=_u32(data, IGVM_OFFSET + 8),
            report_data_hash_type=_u32(data, IGVM_OFFSET + 12),
            padding=len(data) - report_size,
        )

    def to_bytes(self) -> bytes:
        header = HCL_SIGNATURE + b"".join(
            v.to_bytes(4, "little") for v in (self.version, self.report_size, self.request_type, self.status)
        )
        igvm = b"".join(
            v.to_bytes(4, "little")
            for v in (
                self.data_size,
                self.igvm_version,
                self.report_type,
                self.report_data_hash_type,
                self.variable_data_size,
            )
        )
        return header + bytes(12) + self.snp_report.to_bytes() + igvm + self.runtime_data + bytes(self.padding)

    def igvm_request_header(self) -> bytes:
        """The 20-byte IGVM_REQUEST_DATA header alone (what some tools ship after the SNP report)."""
        return self.to_bytes()[IGVM_OFFSET:RUNTIME_DATA_OFFSET]

    # --- runtime data -----------------------------------------------------------------------

    def runtime_json(self) -> dict[str, Any]:
        """The runtime data as JSON (trailing NUL bytes, which some paravisors leave, ignored)."""
        text = self.runtime_data.rstrip(b"\x00")
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError:
            raise _runtime_malformed("runtime data is not UTF-8 JSON") from None
        obj = loads_bounded(decoded, Reason.HCL_RUNTIME_DATA_MALFORMED, object_pairs_hook=_no_duplicate_keys)
        if not isinstance(obj, dict):
            raise _runtime_malformed("runtime data is not a JSON object")
        return obj

    def ak_jwk(self) -> tuple[int, int]:
        """``(n, e)`` of the RSA JWK whose ``kid`` is ``HCLAkPub``: the vTPM attestation key."""
        keys = self.runtime_json().get("keys")
        if not isinstance(keys, list):
            raise _runtime_malformed("runtime data has no 'keys' list")
        matches = [k for k in keys if isinstance(k, dict) and k.get("kid") == AK_KID]
        if len(matches) != 1:
            raise _runtime_malformed(f"runtime data must hold exactly one {AK_KID} key, found {len(matches)}")
        jwk = matches[0]
        if jwk.get("kty") != "RSA":
            raise _runtime_malformed(f"{AK_KID} is not an RSA key")
        return _b64url_uint(jwk.get("n"), "n"), _b64url_uint(jwk.get("e"), "e")

    def ak_public_key(self) -> rsa.RSAPublicKey:
        """The HCLAkPub JWK as a ``cryptography`` RSA public key."""
        n, e = self.ak_jwk()
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise _runtime_malformed(f"{AK_KID} is not a valid RSA key: {exc}") from None
