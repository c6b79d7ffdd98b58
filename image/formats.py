"""The raw disk in the formats clouds import: fixed VHD (Azure), streamOptimized VMDK (AWS), and
``disk.tar.gz`` holding ``disk.raw`` (GCP). Each is a function of the raw disk and
``source_date_epoch`` alone.

**VHD** (Microsoft "Virtual Hard Disk Image Format Specification" 1.0, "Hard Disk Footer Format"):
the raw bytes followed by a 512-byte big-endian footer::

    Cookie "conectix" (0, 8)   Features 2 (8, 4)        File Format Version 0x00010000 (12, 4)
    Data Offset all ones (16, 8: fixed disk)             Time Stamp, seconds since 2000-01-01 UTC (24, 4)
    Creator Application (28, 4)  Creator Version (32, 4) Creator Host OS "Wi2k" (36, 4)
    Original Size (40, 8)      Current Size (48, 8)     Disk Geometry: cylinders u16, heads u8, sectors u8 (56, 4)
    Disk Type 2 (60, 4: fixed) Checksum (64, 4)         Unique Id (68, 16)   Saved State (84, 1)  Reserved (85, 427)

The checksum is the one's complement of the sum of the footer's bytes without the checksum; the
geometry follows the specification's "CHS Calculation". Azure wants the size a whole number of
MiB (the raw disk is). The creator application is ``qem2``: QEMU's block/vpc.c takes a fixed disk's
size from Current Size only for creators it knows do so (``qem2`` is what ``qemu-img convert -o
force_size`` writes, as Azure's documentation has it run), and from the geometry otherwise, which
rounds the size down. The time stamp is ``source_date_epoch``; the unique id a UUIDv5 of the raw
disk's SHA-256.

**VMDK**: ``qemu-img convert -O vmdk -o subformat=streamOptimized`` (qemu-utils 7.2). QEMU writes
a random content id (``CID=``) into the embedded descriptor; it is replaced by the first 32 bits of
the raw disk's SHA-256, so the output is reproducible. The descriptor also names the extent after
the output file.

**tar.gz**: one member, ``disk.raw``, in GNU tar format (the header GNU tar's ``--format=oldgnu``
writes for a regular file), mode 0644, owner 0:0 without names, mtime ``source_date_epoch``;
gzip without a file name and with MTIME 0.
"""

from __future__ import annotations

import gzip
import re
import struct
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from image.commands import run_tool
from image.disk import MIB, copy_into, derived_uuid, sha256_file
from offchain.errors import BuildError, ParseError, Reason, RequestError

VHD_COOKIE = b"conectix"
VHD_FOOTER_SIZE = 512
VHD_EPOCH = 946_684_800  # 2000-01-01T00:00:00Z
VHD_FEATURES = 0x00000002
VHD_VERSION = 0x00010000
VHD_FIXED_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF
VHD_DISK_TYPE_FIXED = 2
VHD_CREATOR_APPLICATION = b"qem2"
VHD_CREATOR_VERSION = 0x00010000
VHD_CREATOR_HOST = b"Wi2k"
_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")
_CHECKSUM = slice(64, 68)
GCP_MEMBER = "disk.raw"


def vhd_geometry(size: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track) by the VHD specification's "CHS Calculation"."""
    total = min(size // 512, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        sectors, heads = 255, 16
        cylinders_times_heads = total // sectors
    else:
        sectors = 17
        cylinders_times_heads = total // sectors
        heads = max((cylinders_times_heads + 1023) // 1024, 4)
        if cylinders_times_heads >= heads * 1024 or heads > 16:
            sectors, heads = 31, 16
            cylinders_times_heads = total // sectors
        if cylinders_times_heads >= heads * 1024:
            sectors, heads = 63, 16
            cylinders_times_heads = total // sectors
    return cylinders_times_heads // heads, heads, sectors


def _vhd_checksum(footer: bytes) -> int:
    return ~sum(footer[: _CHECKSUM.start] + footer[_CHECKSUM.stop :]) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class VhdFooter:
    """The footer of a fixed VHD (the fields this writer sets; the rest are constants)."""

    timestamp: int  # seconds since 2000-01-01 UTC
    creator_application: bytes
    creator_version: int
    creator_host: bytes
    original_size: int
    current_size: int
    geometry: tuple[int, int, int]
    unique_id: uuid.UUID

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) != VHD_FOOTER_SIZE:
            raise ParseError(Reason.IMAGE_DISK_MALFORMED, f"a VHD footer is {VHD_FOOTER_SIZE} bytes, got {len(data)}")
        (cookie, features, version, data_offset, timestamp, app, app_version, host, original, current, cylinders,
         heads, sectors, disk_type, checksum, unique_id, saved_state, reserved) = _FOOTER.unpack(data)
        if cookie != VHD_COOKIE or version != VHD_VERSION or features not in (VHD_FEATURES, VHD_FEATURES | 1):
            raise ParseError(Reason.IMAGE_DISK_MALFORMED, "not a VHD 1.0 footer (cookie 'conectix', features 2)")
        if checksum != _vhd_checksum(data):
            raise ParseError(Reason.IMAGE_DISK_MALFORMED, "the VHD footer's checksum does not match")
        if disk_type != VHD_DISK_TYPE_FIXED or data_offset != VHD_FIXED_DATA_OFFSET:
            raise ParseError(Reason.IMAGE_DISK_MALFORMED, f"VHD disk type {disk_type} is not a fixed disk")
        if saved_state or any(reserved):
            raise ParseError(Reason.IMAGE_DISK_MALFORMED, "the VHD footer's saved state or reserved bytes are set")
        return cls(timestamp, app, app_version, host, original, current, (cylinders, heads, sectors),
                   uuid.UUID(bytes=unique_id))

    def to_bytes(self) -> bytes:
        unsigned = _FOOTER.pack(
            VHD_COOKIE, VHD_FEATURES, VHD_VERSION, VHD_FIXED_DATA_OFFSET, self.timestamp, self.creator_application,
            self.creator_version, self.creator_host, self.original_size, self.current_size, *self.geometry,
            VHD_DISK_TYPE_FIXED, 0, self.unique_id.bytes, 0, bytes(427),
        )
        return unsigned[: _CHECKSUM.start] + struct.pack(">I", _vhd_checksum(unsigned)) + unsigned[_CHECKSUM.stop :]


def _raw_size(raw: Path) -> int:
    size = raw.stat().st_size
    if not size or size % MIB:
        raise RequestError(Reason.INPUT_INVALID, f"the raw disk is {size} bytes, not a whole number of MiB")
    return size


def write_vhd(raw: Path, out: Path, *, source_date_epoch: int) -> VhdFooter:
    """``out``: a fixed VHD of ``raw`` (its bytes, then the footer)."""
    size = _raw_size(raw)
    if not VHD_EPOCH <= source_date_epoch <= VHD_EPOCH + 0xFFFFFFFF:
        raise RequestError(Reason.INPUT_INVALID, f"a VHD time stamp counts from 2000-01-01, got {source_date_epoch}")
    footer = VhdFooter(
        timestamp=source_date_epoch - VHD_EPOCH, creator_application=VHD_CREATOR_APPLICATION,
        creator_version=VHD_CREATOR_VERSION, creator_host=VHD_CREATOR_HOST, original_size=size, current_size=size,
        geometry=vhd_geometry(size), unique_id=derived_uuid("vhd", sha256_file(raw)),
    )
    with out.open("wb") as target:
        target.truncate(size)
        copy_into(raw, target, 0)
        target.seek(size)
        target.write(footer.to_bytes())
    return footer


#: VMDK SparseExtentHeader (VMware "Virtual Disk Format 1.1"): magic "KDMV", then little-endian
#: version, flags, capacity, grainSize, descriptorOffset, descriptorSize (sectors).
_VMDK_HEADER = struct.Struct("<4sIIQQQQ")
_CID = re.compile(rb"^CID=[0-9a-fA-F]+$", re.M)


def write_vmdk(raw: Path, out: Path) -> None:
    """``out``: a streamOptimized VMDK of ``raw``, with a content id derived from ``raw``."""
    _raw_size(raw)
    cid = sha256_file(raw)[:4].hex().encode()
    with tempfile.TemporaryDirectory(prefix="cvm-attest-vmdk-", dir=out.parent) as tmp:
        converted = Path(tmp) / out.name
        run_tool(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, converted])
        with converted.open("r+b") as f:
            magic, _, _, _, _, offset, sectors = _VMDK_HEADER.unpack(f.read(_VMDK_HEADER.size))
            if magic != b"KDMV" or not offset or not sectors:
                raise BuildError(Reason.IMAGE_TOOL_FAILED, "qemu-img wrote a VMDK without an embedded descriptor")
            f.seek(offset * 512)
            area = f.read(sectors * 512)
            text = area.split(b"\0", 1)[0]
            patched, count = _CID.subn(b"CID=" + cid, text)
            if count != 1 or len(patched) >= len(area):
                raise BuildError(Reason.IMAGE_TOOL_FAILED, "the VMDK descriptor has no single CID line to fix")
            f.seek(offset * 512)
            f.write(patched.ljust(len(area), b"\0"))
        converted.replace(out)


def write_gcp_tar(raw: Path, out: Path, *, source_date_epoch: int) -> None:
    """``out``: ``disk.tar.gz`` with the single member ``disk.raw`` (Compute Engine's image import)."""
    size = _raw_size(raw)
    member = tarfile.TarInfo(GCP_MEMBER)
    member.size, member.mtime, member.mode = size, source_date_epoch, 0o644
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    with out.open("wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar, raw.open("rb") as source:
            tar.addfile(member, source)
