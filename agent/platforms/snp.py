"""A bare SEV-SNP guest: reports from the AMD firmware through Linux, certificates from the host.

Two kernel interfaces, tried in this order:

1. **configfs-tsm** (Linux 6.7+, ``Documentation/ABI/testing/configfs-tsm``): an entry directory
   under ``/sys/kernel/config/tsm/report``; write the 64-byte REPORT_DATA to ``inblob``, read the
   ATTESTATION_REPORT from ``outblob`` and the host's certificate table from ``auxblob``. The
   ``generation`` attribute counts writes to the entry: it is read before and after, and a
   difference other than our own writes means another process used the entry meanwhile (retry).
2. **/dev/sev-guest** ioctl ``SNP_GET_EXT_REPORT`` (``include/uapi/linux/sev-guest.h``): an
   MSG_REPORT_REQ (SEV-SNP ABI specification, Table 21) plus a page-aligned buffer for the
   certificate table; a ``certs_len`` too small is answered with the length needed.

The certificate table is the GHCB specification's (section 4.1.8.1, "SNP Extended Guest Request"):
entries of a 16-byte GUID, a u32 offset and a u32 length, ended by an all-zero entry; offsets
count from the start of the table. Certificates are DER. Their roles are read from the
certificates themselves (a VLEK's ASVK may sit under the ASK GUID).

``REPORT_DATA = SHA-256(AK TPMT_PUBLIC) || 32 zero bytes`` (the direct binding).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from offchain.abi.binding import REPORT_DATA_SIZE, direct_report_data
from offchain.abi.snp_report import REPORT_SIZE, SnpReport
from offchain.errors import CvmAttestError, ParseError, PlatformError, Reason
from offchain.evidence import Platform

from agent.platforms import AttestationPlatform, PlatformEvidence, certificates_by_role

VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
KNOWN_GUIDS = {VCEK_GUID: "vcek", VLEK_GUID: "vlek", ASK_GUID: "ask", ARK_GUID: "ark"}

ENTRY_SIZE = 24
ENTRY_NAME = "cvm-agent"
MAX_TABLE = 1 << 20
_ATTEMPTS = 3


# --- the GHCB certificate table ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertTableEntry:
    guid: uuid.UUID
    data: bytes


@dataclass(frozen=True, slots=True)
class CertTable:
    """The host-supplied certificate table (GHCB specification 4.1.8.1). GUIDs are stored in
    the little-endian (EFI) byte order, as ``uuid.UUID.bytes_le``."""

    entries: tuple[CertTableEntry, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse a table; an empty buffer (no certificates from the host) is an empty table."""
        if len(data) > MAX_TABLE:
            raise ParseError(Reason.INPUT_INVALID, "certificate table larger than 1 MiB")
        entries = []
        offset = 0
        while True:
            if offset + ENTRY_SIZE > len(data):
                if not data.strip(b"\x00"):
                    return cls(())
                raise ParseError(Reason.INPUT_INVALID, "certificate table has no terminating all-zero entry")
            raw = data[offset : offset + ENTRY_SIZE]
            if not any(raw):
                break
            guid = uuid.UUID(bytes_le=raw[:16])
            start = int.from_bytes(raw[16:20], "little")
            length = int.from_bytes(raw[20:24], "little")
            entries.append((guid, start, length))
            offset += ENTRY_SIZE
        header_end = offset + ENTRY_SIZE
        out = []
        for guid, start, length in entries:
            if start < header_end or start + length > len(data):
                raise ParseError(
                    Reason.INPUT_INVALID,
                    f"certificate {guid} at {start}+{length} lies outside the table",
                    guid=str(guid),
                )
            out.append(CertTableEntry(guid, data[start : start + length]))
        return cls(tuple(out))

    def to_bytes(self) -> bytes:
        header_end = ENTRY_SIZE * (len(self.entries) + 1)
        header = bytearray()
        body = bytearray()
        for entry in self.entries:
            header += entry.guid.bytes_le
            header += (header_end + len(body)).to_bytes(4, "little") + len(entry.data).to_bytes(4, "little")
            body += entry.data
        return bytes(header) + bytes(ENTRY_SIZE) + bytes(body)

    def certificates(self) -> dict[str, str]:
        """PEM by evidence role, for the entries with a known GUID."""
        return certificates_by_role([e.data for e in self.entries if e.guid in KNOWN_GUIDS])


# --- configfs-tsm ------------------------------------------------------------------------------


def read_attr(entry: Path, name: str, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of a configfs-tsm attribute (the caller checks the size)."""
    with open(entry / name, "rb") as f:
        return f.read(limit + 1)


def read_generation(entry: Path) -> int:
    """The entry's ``generation``: how many times its attributes were written."""
    text = read_attr(entry, "generation", 64).decode("ascii", "replace").strip()
    if not (text.isascii() and text.isdigit()):
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"configfs-tsm generation {text!r} is not a number")
    return int(text)


class ConfigfsTsm:
    """Reports through one configfs-tsm entry (``<root>/cvm-agent``), created when missing."""

    def __init__(self, root: Path, privlevel: int | None = None) -> None:
        self.root = root
        self.privlevel = privlevel

    def available(self) -> bool:
        return self.root.is_dir()

    def get_report(self, report_data: bytes) -> tuple[bytes, bytes]:
        """``(outblob, auxblob)`` for ``report_data``."""
        entry = self.root / ENTRY_NAME
        try:
            entry.mkdir(exist_ok=True)
            provider = read_attr(entry, "provider", 64).decode("ascii", "replace").strip()
            if provider != "sev_guest":
                raise PlatformError(
                    Reason.PLATFORM_UNAVAILABLE, f"configfs-tsm provider is {provider!r}, not sev_guest"
                )
            for _ in range(_ATTEMPTS):
                before = read_generation(entry)
                writes = 1
                if self.privlevel is not None:
                    (entry / "privlevel").write_text(str(self.privlevel))
                    writes += 1
                with open(entry / "inblob", "wb") as f:
                    f.write(report_data)
                report = read_attr(entry, "outblob", 1 << 16)
                aux = read_attr(entry, "auxblob", MAX_TABLE)
                if read_generation(entry) == before + writes:
                    return report, aux
        except OSError as exc:
            raise PlatformError(
                Reason.PLATFORM_UNAVAILABLE, f"configfs-tsm report failed: {exc.strerror or exc}", path=str(entry)
            ) from None
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "another process kept writing the configfs-tsm entry")


# --- /dev/sev-guest ------------------------------------------------------------------------------


class _ReportReq(ctypes.Structure):  # struct snp_report_req
    _fields_ = [("user_data", ctypes.c_uint8 * 64), ("vmpl", ctypes.c_uint32), ("rsvd", ctypes.c_uint8 * 28)]


class _ExtReportReq(ctypes.Structure):  # struct snp_ext_report_req
    _fields_ = [("data", _ReportReq), ("certs_address", ctypes.c_uint64), ("certs_len", ctypes.c_uint32)]


class _ReportResp(ctypes.Structure):  # struct snp_report_resp
    _fields_ = [("data", ctypes.c_uint8 * 4000)]


class GuestRequestIoctl(ctypes.Structure):  # struct snp_guest_request_ioctl
    _fields_ = [
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),
    ]


def _iowr(kind: str, nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | nr


SNP_GET_EXT_REPORT = _iowr("S", 0x2, ctypes.sizeof(GuestRequestIoctl))
SNP_GUEST_VMM_ERR_INVALID_LEN = 1
PAGE_SIZE = 4096
_RESPONSE_HEADER = 0x20  # MSG_REPORT_RSP: status u32, report_size u32, 24 reserved bytes

Ioctl = Callable[[int, int, Any], Any]


class SevGuestDevice:
    """``SNP_GET_EXT_REPORT`` on ``/dev/sev-guest``; ``ioctl`` is ``fcntl.ioctl`` unless replaced."""

    def __init__(self, path: Path, vmpl: int = 0, ioctl: Ioctl = fcntl.ioctl) -> None:
        self.path = path
        self.vmpl = vmpl
        self._ioctl = ioctl

    def available(self) -> bool:
        return self.path.exists()

    def get_report(self, report_data: bytes) -> tuple[bytes, bytes]:
        request = _ExtReportReq()
        ctypes.memmove(request.data.user_data, report_data, REPORT_DATA_SIZE)
        request.data.vmpl = self.vmpl
        response = _ReportResp()
        pages = 4
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError as exc:
            raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"cannot open {self.path}: {exc.strerror}") from None
        try:
            for _ in range(_ATTEMPTS):
                certs = ctypes.create_string_buffer(pages * PAGE_SIZE)
                request.certs_address = ctypes.addressof(certs)
                request.certs_len = pages * PAGE_SIZE
                guest = GuestRequestIoctl(
                    msg_version=1,
                    req_data=ctypes.addressof(request),
                    resp_data=ctypes.addressof(response),
                )
                try:
                    self._ioctl(fd, SNP_GET_EXT_REPORT, guest)
                except OSError as exc:
                    vmm_error = guest.exitinfo2 >> 32
                    if exc.errno == errno.EINVAL and vmm_error == SNP_GUEST_VMM_ERR_INVALID_LEN:
                        pages = max(pages + 1, -(-request.certs_len // PAGE_SIZE))
                        continue
                    raise PlatformError(
                        Reason.PLATFORM_UNAVAILABLE,
                        f"SNP_GET_EXT_REPORT failed: {exc.strerror or exc} (exitinfo2 {guest.exitinfo2:#x})",
                    ) from None
                return _report_from_response(bytes(response.data)), certs.raw[: request.certs_len]
        finally:
            os.close(fd)
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "the host kept asking for a larger certificate buffer")


def _report_from_response(data: bytes) -> bytes:
    """The ATTESTATION_REPORT inside MSG_REPORT_RSP (SEV-SNP ABI specification, Table 25)."""
    status = int.from_bytes(data[0:4], "little")
    size = int.from_bytes(data[4:8], "little")
    if status != 0:
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"the firmware answered status {status:#x}", status=status)
    if size != REPORT_SIZE:
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"the firmware answered a {size}-byte report")
    return data[_RESPONSE_HEADER : _RESPONSE_HEADER + size]


# --- the platform --------------------------------------------------------------------------------


class SnpPlatform(AttestationPlatform):
    """Reports from the firmware of a bare SEV-SNP guest (configfs-tsm, else /dev/sev-guest)."""

    platform = Platform.SNP

    def __init__(self, tsm: ConfigfsTsm, device: SevGuestDevice) -> None:
        self.tsm = tsm
        self.device = device
        self._cache: tuple[bytes, PlatformEvidence] | None = None
        if tsm.available():
            self.interface = "configfs-tsm"
        elif device.available():
            self.interface = "sev-guest"
        else:
            raise PlatformError(
                Reason.PLATFORM_UNAVAILABLE,
                f"no SEV-SNP guest interface: neither {tsm.root} (configfs-tsm; is configfs mounted?)"
                f" nor {device.path}",
            )

    def attest(self, ak_public: bytes) -> PlatformEvidence:
        """The firmware's report for this AK; fetched once per AK (its contents do not change)."""
        if self._cache is not None and self._cache[0] == ak_public:
            return self._cache[1]
        report_data = direct_report_data(ak_public)
        source = self.tsm if self.interface == "configfs-tsm" else self.device
        raw_report, table = source.get_report(report_data)
        try:
            report = SnpReport.from_bytes(raw_report[:REPORT_SIZE])
            certificates = CertTable.from_bytes(table).certificates()
        except CvmAttestError as exc:
            raise PlatformError(
                Reason.PLATFORM_UNAVAILABLE,
                f"the firmware's answer does not parse: {exc.detail}",
                cause=exc.reason.value,
            ) from None
        if report.report_data != report_data:
            raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "the firmware's report carries other REPORT_DATA")
        evidence = PlatformEvidence(snp_report=report, certificates=certificates)
        self._cache = (ak_public, evidence)
        return evidence

    def describe(self) -> dict[str, Any]:
        return {
            "platform": self.platform.value,
            "binding": self.binding.value,
            "development_root": False,
            "interface": self.interface,
            "path": str(self.tsm.root if self.interface == "configfs-tsm" else self.device.path),
        }
