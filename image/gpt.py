"""The GUID Partition Table: written and read here, with 512-byte logical blocks.

Reference: UEFI Specification 2.10, 5.2.3 "Protective MBR", 5.3.2 "GPT Header", 5.3.3 "GPT
Partition Entry Array". GUIDs are stored in the
mixed-endian form (``uuid.UUID.bytes_le``). The layout this module writes::

    LBA 0                 protective MBR: one partition of type 0xEE from LBA 1 to the end
    LBA 1                 primary header (92 bytes, zero to the end of the block)
    LBA 2 .. 33           primary entry array: 128 entries of 128 bytes
    LBA 34 .. N-34        usable (partitions)
    LBA N-33 .. N-2       backup entry array
    LBA N-1               backup header (MyLBA and AlternateLBA swapped, PartitionEntryLBA N-33)

Header fields (offset, size): Signature "EFI PART" (0, 8), Revision 0x00010000 (8, 4), HeaderSize
92 (12, 4), HeaderCRC32 over HeaderSize bytes with itself zero (16, 4), Reserved zero (20, 4),
MyLBA (24, 8), AlternateLBA (32, 8), FirstUsableLBA (40, 8), LastUsableLBA (48, 8), DiskGUID (56, 16),
PartitionEntryLBA (72, 8), NumberOfPartitionEntries (80, 4), SizeOfPartitionEntry (84, 4),
PartitionEntryArrayCRC32 (88, 4). Entry fields: PartitionTypeGUID (0, 16), UniquePartitionGUID
(16, 16), StartingLBA (32, 8), EndingLBA (40, 8, inclusive), Attributes (48, 8), PartitionName
(56, 72, UTF-16LE, NUL padded).

:func:`read_gpt` checks structure only: both headers and both entry arrays, their CRCs, that they
agree, and that every partition lies in the usable range without overlapping another.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Self

from offchain.errors import ParseError, Reason

SECTOR = 512
SIGNATURE = b"EFI PART"
REVISION = 0x00010000
HEADER_SIZE = 92
ENTRY_SIZE = 128
ENTRY_COUNT = 128
ENTRY_ARRAY_SECTORS = ENTRY_COUNT * ENTRY_SIZE // SECTOR
NAME_UNITS = 36
MBR_TYPE_PROTECTIVE = 0xEE
MBR_SIGNATURE = b"\x55\xaa"
#: Bit 60 of the attributes: read-only (Discoverable Partitions Specification; systemd honours it).
ATTRIBUTE_READ_ONLY = 1 << 60

_HEADER = struct.Struct("<8sIIII QQQQ 16s QIII")
_ENTRY = struct.Struct("<16s16sQQQ72s")


def _malformed(detail: str, **context: object) -> ParseError:
    return ParseError(Reason.IMAGE_DISK_MALFORMED, detail, **context)


@dataclass(frozen=True, slots=True)
class GptEntry:
    """One used entry of the partition entry array (5.3.3)."""

    type_guid: uuid.UUID
    guid: uuid.UUID
    first_lba: int
    last_lba: int  # inclusive
    attributes: int
    name: str

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) != ENTRY_SIZE:
            raise _malformed(f"a partition entry is {ENTRY_SIZE} bytes, got {len(data)}")
        type_guid, guid, first, last, attributes, name = _ENTRY.unpack(data)
        try:
            text = name.decode("utf-16-le").split("\0", 1)[0]
        except UnicodeDecodeError:
            raise _malformed("a partition name is not UTF-16") from None
        return cls(uuid.UUID(bytes_le=type_guid), uuid.UUID(bytes_le=guid), first, last, attributes, text)

    def to_bytes(self) -> bytes:
        name = self.name.encode("utf-16-le")
        if len(name) > 2 * NAME_UNITS:
            raise ParseError(Reason.INPUT_INVALID, f"a partition name has at most {NAME_UNITS} UTF-16 units: {self.name!r}")
        return _ENTRY.pack(self.type_guid.bytes_le, self.guid.bytes_le, self.first_lba, self.last_lba,
                           self.attributes, name.ljust(72, b"\0"))

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


@dataclass(frozen=True, slots=True)
class GptHeader:
    """A GPT header (5.3.2), primary or backup; the CRCs are computed by :meth:`to_bytes`."""

    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: uuid.UUID
    entry_lba: int
    entry_count: int
    entry_size: int
    entries_crc32: int

    @classmethod
    def from_bytes(cls, block: bytes) -> Self:
        if len(block) != SECTOR:
            raise _malformed(f"a GPT header block is {SECTOR} bytes, got {len(block)}")
        (signature, revision, header_size, crc, reserved, my_lba, alternate, first, last, disk_guid,
         entry_lba, count, size, entries_crc) = _HEADER.unpack_from(block)
        if signature != SIGNATURE:
            raise _malformed(f"no 'EFI PART' signature: {signature!r}")
        if revision != REVISION or header_size != HEADER_SIZE:
            raise _malformed(f"GPT revision {revision:#x} with header size {header_size} is not 1.0 with 92",
                             revision=revision, header_size=header_size)
        if zlib.crc32(block[:16] + bytes(4) + block[20:HEADER_SIZE]) != crc:
            raise _malformed("the GPT header's CRC32 does not match", lba=my_lba)
        if reserved or any(block[HEADER_SIZE:]):
            raise _malformed("the GPT header's reserved bytes are not zero", lba=my_lba)
        if size != ENTRY_SIZE or not 0 < count <= 4096:
            raise _malformed(f"{count} partition entries of {size} bytes: expected entries of {ENTRY_SIZE}")
        return cls(my_lba, alternate, first, last, uuid.UUID(bytes_le=disk_guid), entry_lba, count, size, entries_crc)

    def to_bytes(self) -> bytes:
        fields = [SIGNATURE, REVISION, HEADER_SIZE, 0, 0, self.my_lba, self.alternate_lba, self.first_usable_lba,
                  self.last_usable_lba, self.disk_guid.bytes_le, self.entry_lba, self.entry_count, self.entry_size,
                  self.entries_crc32]
        unsigned = _HEADER.pack(*fields)
        fields[3] = zlib.crc32(unsigned)
        return _HEADER.pack(*fields).ljust(SECTOR, b"\0")


@dataclass(frozen=True, slots=True)
class PartitionTable:
    """A disk's GPT as both copies agree on it: the disk GUID and the used entries, by number."""

    disk_sectors: int
    disk_guid: uuid.UUID
    first_usable_lba: int
    last_usable_lba: int
    entries: tuple[tuple[int, GptEntry], ...]  # (1-based partition number, entry)

    def by_type(self, type_guid: uuid.UUID) -> list[tuple[int, GptEntry]]:
        return [(n, e) for n, e in self.entries if e.type_guid == type_guid]


def protective_mbr(disk_sectors: int) -> bytes:
    """LBA 0 (5.2.3): one record, type 0xEE, from LBA 1 over the whole disk (capped at 2^32-1)."""
    record = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", MBR_TYPE_PROTECTIVE, b"\xff\xff\xff", 1,
                         min(disk_sectors - 1, 0xFFFFFFFF))
    return bytes(446) + record + bytes(48) + MBR_SIGNATURE


def layout_table(disk_sectors: int, disk_guid: uuid.UUID, entries: Sequence[GptEntry]) -> tuple[bytes, bytes]:
    """The GPT of a disk of ``disk_sectors`` blocks: (LBA 0..33, the last 33 blocks)."""
    if len(entries) > ENTRY_COUNT:
        raise ParseError(Reason.INPUT_INVALID, f"at most {ENTRY_COUNT} partitions")
    array = b"".join(e.to_bytes() for e in entries).ljust(ENTRY_COUNT * ENTRY_SIZE, b"\0")
    first, last = 2 + ENTRY_ARRAY_SECTORS, disk_sectors - 2 - ENTRY_ARRAY_SECTORS
    crc = zlib.crc32(array)
    primary = GptHeader(1, disk_sectors - 1, first, last, disk_guid, 2, ENTRY_COUNT, ENTRY_SIZE, crc)
    backup = GptHeader(disk_sectors - 1, 1, first, last, disk_guid, last + 1, ENTRY_COUNT, ENTRY_SIZE, crc)
    table = PartitionTable(disk_sectors, disk_guid, first, last, tuple(enumerate(entries, 1)))
    _check_entries(table)
    return protective_mbr(disk_sectors) + primary.to_bytes() + array, array + backup.to_bytes()


ReadAt = Callable[[int, int], bytes]  # (offset, length) -> bytes


def _entry_array(read_at: ReadAt, header: GptHeader, disk_sectors: int) -> bytes:
    length = header.entry_count * header.entry_size
    if not 2 <= header.entry_lba or header.entry_lba * SECTOR + length > disk_sectors * SECTOR:
        raise _malformed(f"the entry array at LBA {header.entry_lba} lies outside the disk", lba=header.my_lba)
    array = read_at(header.entry_lba * SECTOR, length)
    if zlib.crc32(array) != header.entries_crc32:
        raise _malformed("the partition entry array's CRC32 does not match", lba=header.my_lba)
    return array


def _check_entries(table: PartitionTable) -> None:
    spans = []
    for number, entry in table.entries:
        if not table.first_usable_lba <= entry.first_lba <= entry.last_lba <= table.last_usable_lba:
            raise _malformed(f"partition {number} (LBA {entry.first_lba}..{entry.last_lba}) lies outside the usable "
                             f"range {table.first_usable_lba}..{table.last_usable_lba}", partition=number)
        spans.append((entry.first_lba, entry.last_lba, number))
    for (_, end, a), (start, _, b) in zip(sorted(spans), sorted(spans)[1:]):
        if start <= end:
            raise _malformed(f"partitions {a} and {b} overlap", partitions=[a, b])


def read_gpt(read_at: ReadAt, disk_bytes: int) -> PartitionTable:
    """The partition table of a disk of ``disk_bytes`` bytes read through ``read_at``."""
    if disk_bytes % SECTOR or disk_bytes < (3 + 2 * ENTRY_ARRAY_SECTORS) * SECTOR:
        raise _malformed(f"a disk of {disk_bytes} bytes cannot hold a GPT of 512-byte blocks", size=disk_bytes)
    sectors = disk_bytes // SECTOR
    mbr = read_at(0, SECTOR)
    if mbr[510:] != MBR_SIGNATURE or mbr[446 + 4] != MBR_TYPE_PROTECTIVE:
        raise _malformed("LBA 0 is not a protective MBR (signature 55AA, a partition of type 0xEE)")
    primary = GptHeader.from_bytes(read_at(SECTOR, SECTOR))
    if primary.my_lba != 1 or primary.alternate_lba != sectors - 1:
        raise _malformed(f"the primary header says it is at LBA {primary.my_lba} with its backup at "
                         f"{primary.alternate_lba}; the disk's last LBA is {sectors - 1}")
    backup = GptHeader.from_bytes(read_at((sectors - 1) * SECTOR, SECTOR))
    if (backup.my_lba, backup.alternate_lba) != (sectors - 1, 1):
        raise _malformed("the backup header does not point back at the primary")
    array = _entry_array(read_at, primary, sectors)
    same = (primary.disk_guid, primary.first_usable_lba, primary.last_usable_lba, primary.entry_count) == (
        backup.disk_guid, backup.first_usable_lba, backup.last_usable_lba, backup.entry_count)
    if not same or _entry_array(read_at, backup, sectors) != array:
        raise _malformed("the primary and backup GPT differ")
    array_sectors = -(-len(array) // SECTOR)
    if not (primary.entry_lba + array_sectors <= primary.first_usable_lba <= primary.last_usable_lba
            < backup.entry_lba):
        raise _malformed("the usable range overlaps a GPT structure")
    entries = []
    for i in range(primary.entry_count):
        raw = array[i * ENTRY_SIZE : (i + 1) * ENTRY_SIZE]
        if any(raw[:16]):  # a zero type GUID marks an unused entry (5.3.3)
            entries.append((i + 1, GptEntry.from_bytes(raw)))
    table = PartitionTable(sectors, primary.disk_guid, primary.first_usable_lba, primary.last_usable_lba, tuple(entries))
    _check_entries(table)
    return table
