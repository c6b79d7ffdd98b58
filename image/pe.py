"""PE/COFF image headers, as UEFI firmware and systemd-stub read them (structure only).

Reference: Microsoft "PE Format" (the PE/COFF specification): 2 "Overview" (MS-DOS stub, the
``e_lfanew`` pointer at 0x3C, the ``PE\\0\\0`` signature), 3.3 "COFF File Header", 3.4 "Optional
Header" (3.4.1 standard fields, 3.4.2 Windows-specific fields, 3.4.3 data directories), 4 "Section
Table", 5.7 "The Attribute Certificate Table" (data directory 4, whose "RVA" is a file offset).

Offsets into the optional header (from its start)::

    field                     PE32    PE32+
    Magic                     0x00    0x00      0x10B / 0x20B
    ImageBase                 0x1C    0x18      u32 / u64
    SectionAlignment          0x20    0x20
    MajorImageVersion         0x2C    0x2C
    SizeOfHeaders             0x3C    0x3C
    CheckSum                  0x40    0x40
    Subsystem                 0x44    0x44
    NumberOfRvaAndSizes       0x5C    0x6C
    DataDirectory[0]          0x60    0x70      8 bytes each: RVA u32, Size u32

:class:`PeImage` checks what a digest over the file needs to be well defined: the headers, the
section table and every section's raw data lie inside the file, and the attribute certificate
table, when present, ends the file. It never judges a value (machine, subsystem, timestamp).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Self

from offchain.errors import ParseError, Reason

DOS_MAGIC = b"MZ"
PE_SIGNATURE = b"PE\0\0"
E_LFANEW = 0x3C
COFF_HEADER_SIZE = 20
SECTION_HEADER_SIZE = 40
PE32_MAGIC = 0x10B
PE32_PLUS_MAGIC = 0x20B
MACHINE_X64 = 0x8664
SUBSYSTEM_EFI_APPLICATION = 10
CERTIFICATE_TABLE = 4  # index of the data directory that locates the attribute certificate table
MAX_DATA_DIRECTORIES = 16

# Optional-header layout that differs between PE32 and PE32+: (NumberOfRvaAndSizes, DataDirectory).
_DIRECTORY_LAYOUT = {PE32_MAGIC: (0x5C, 0x60), PE32_PLUS_MAGIC: (0x6C, 0x70)}
_IMAGE_BASE = {PE32_MAGIC: (0x1C, "<I"), PE32_PLUS_MAGIC: (0x18, "<Q")}
SECTION_ALIGNMENT = 0x20
MAJOR_IMAGE_VERSION = 0x2C
SIZE_OF_HEADERS = 0x3C
CHECKSUM = 0x40
SUBSYSTEM = 0x44


def _fail(detail: str, **context: object) -> ParseError:
    return ParseError(Reason.IMAGE_PE_MALFORMED, detail, **context)


def _u16(data: bytes, offset: int, field: str) -> int:
    if offset + 2 > len(data):
        raise _fail(f"file ends before {field} at offset {offset:#x}", field=field, offset=offset)
    return int(struct.unpack_from("<H", data, offset)[0])


def _u32(data: bytes, offset: int, field: str) -> int:
    if offset + 4 > len(data):
        raise _fail(f"file ends before {field} at offset {offset:#x}", field=field, offset=offset)
    return int(struct.unpack_from("<I", data, offset)[0])


@dataclass(frozen=True, slots=True)
class SectionHeader:
    """One 40-byte entry of the section table (PE Format, 4 "Section Table")."""

    name: bytes  # 8 bytes, NUL padded; longer names are "/offset" into the COFF string table
    virtual_size: int
    virtual_address: int
    size_of_raw_data: int
    pointer_to_raw_data: int
    pointer_to_relocations: int
    pointer_to_linenumbers: int
    number_of_relocations: int
    number_of_linenumbers: int
    characteristics: int

    _FORMAT = struct.Struct("<8sIIIIIIHHI")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) != SECTION_HEADER_SIZE:
            raise _fail(f"a section header is {SECTION_HEADER_SIZE} bytes, got {len(data)}")
        return cls(*cls._FORMAT.unpack(data))

    def to_bytes(self) -> bytes:
        return self._FORMAT.pack(
            self.name, self.virtual_size, self.virtual_address, self.size_of_raw_data,
            self.pointer_to_raw_data, self.pointer_to_relocations, self.pointer_to_linenumbers,
            self.number_of_relocations, self.number_of_linenumbers, self.characteristics,
        )

    @property
    def display_name(self) -> str:
        return self.name.rstrip(b"\0").decode("latin-1")


@dataclass(frozen=True, slots=True)
class PeImage:
    """A PE/COFF file's headers and section table, with the file's bytes they describe."""

    data: bytes
    pe_offset: int
    machine: int
    timestamp: int
    optional_header_offset: int
    magic: int
    image_base: int
    section_alignment: int
    major_image_version: int
    size_of_headers: int
    checksum: int
    subsystem: int
    data_directories: tuple[tuple[int, int], ...]
    sections: tuple[SectionHeader, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = bytes(data)
        if len(data) < E_LFANEW + 4 or data[:2] != DOS_MAGIC:
            raise _fail("no MS-DOS header (an image starts with 'MZ' and is at least 64 bytes)")
        pe_offset = _u32(data, E_LFANEW, "e_lfanew")
        if data[pe_offset : pe_offset + 4] != PE_SIGNATURE:
            raise _fail(f"no 'PE\\0\\0' signature at e_lfanew {pe_offset:#x}", offset=pe_offset)
        coff = pe_offset + 4
        machine = _u16(data, coff, "Machine")
        number_of_sections = _u16(data, coff + 2, "NumberOfSections")
        timestamp = _u32(data, coff + 4, "TimeDateStamp")
        size_of_optional_header = _u16(data, coff + 16, "SizeOfOptionalHeader")
        optional = coff + COFF_HEADER_SIZE
        if optional + size_of_optional_header > len(data):
            raise _fail("the optional header runs past the end of the file", offset=optional)
        magic = _u16(data, optional, "Magic") if size_of_optional_header >= 2 else 0
        if magic not in _DIRECTORY_LAYOUT:
            raise _fail(f"optional header magic {magic:#x} is neither PE32 nor PE32+", magic=magic)
        count_at, directories_at = _DIRECTORY_LAYOUT[magic]
        if size_of_optional_header < directories_at:
            raise _fail(f"SizeOfOptionalHeader {size_of_optional_header:#x} is too small for its magic")
        count = _u32(data, optional + count_at, "NumberOfRvaAndSizes")
        if count > MAX_DATA_DIRECTORIES or directories_at + 8 * count > size_of_optional_header:
            raise _fail(f"{count} data directories do not fit the optional header", directories=count)
        directories = tuple(
            (_u32(data, optional + directories_at + 8 * i, "RVA"), _u32(data, optional + directories_at + 8 * i + 4, "Size"))
            for i in range(count)
        )
        size_of_headers = _u32(data, optional + SIZE_OF_HEADERS, "SizeOfHeaders")
        table = optional + size_of_optional_header
        table_end = table + SECTION_HEADER_SIZE * number_of_sections
        if table_end > len(data):
            raise _fail(
                f"the section table ({number_of_sections} entries at {table:#x}) runs past the end of the file",
                offset=table, sections=number_of_sections,
            )
        if not table_end <= size_of_headers <= len(data):
            raise _fail(
                f"SizeOfHeaders {size_of_headers:#x} must cover the section table (ends {table_end:#x}) "
                "and lie inside the file",
                size_of_headers=size_of_headers,
            )
        sections = tuple(
            SectionHeader.from_bytes(data[table + SECTION_HEADER_SIZE * i : table + SECTION_HEADER_SIZE * (i + 1)])
            for i in range(number_of_sections)
        )
        for section in sections:
            if section.size_of_raw_data and section.pointer_to_raw_data + section.size_of_raw_data > len(data):
                raise _fail(f"section {section.display_name!r} runs past the end of the file", section=section.display_name)
        image = cls(
            data=data, pe_offset=pe_offset, machine=machine, timestamp=timestamp,
            optional_header_offset=optional, magic=magic,
            image_base=int(struct.unpack_from(_IMAGE_BASE[magic][1], data, optional + _IMAGE_BASE[magic][0])[0]),
            section_alignment=_u32(data, optional + SECTION_ALIGNMENT, "SectionAlignment"),
            major_image_version=_u16(data, optional + MAJOR_IMAGE_VERSION, "MajorImageVersion"),
            size_of_headers=size_of_headers, checksum=_u32(data, optional + CHECKSUM, "CheckSum"),
            subsystem=_u16(data, optional + SUBSYSTEM, "Subsystem"),
            data_directories=directories, sections=sections,
        )
        offset, size = image.certificate_table
        if size and (offset < size_of_headers or offset + size != len(data)):
            raise _fail(
                f"the attribute certificate table ({size} bytes at {offset:#x}) must end the file",
                offset=offset, size=size,
            )
        return image

    def to_bytes(self) -> bytes:
        return self.data

    @property
    def timestamp_offset(self) -> int:
        """File offset of the COFF header's TimeDateStamp."""
        return self.pe_offset + 4 + 4

    @property
    def checksum_offset(self) -> int:
        """File offset of the optional header's CheckSum."""
        return self.optional_header_offset + CHECKSUM

    @property
    def certificate_directory_offset(self) -> int | None:
        """File offset of data directory 4 (the Certificate Table entry), when the header has one."""
        if len(self.data_directories) <= CERTIFICATE_TABLE:
            return None
        return self.optional_header_offset + _DIRECTORY_LAYOUT[self.magic][1] + 8 * CERTIFICATE_TABLE

    @property
    def certificate_table(self) -> tuple[int, int]:
        """(file offset, size) of the attribute certificate table; (0, 0) when the image is unsigned."""
        if len(self.data_directories) <= CERTIFICATE_TABLE:
            return (0, 0)
        return self.data_directories[CERTIFICATE_TABLE]

    def loaded_section(self, section: SectionHeader) -> bytes:
        """The ``VirtualSize`` bytes a UEFI loader puts at the section's address: its raw data,
        cut to ``VirtualSize`` or zero-filled up to it (edk2 PeCoffLoaderLoadImage)."""
        copied = min(section.virtual_size, section.size_of_raw_data)
        start = section.pointer_to_raw_data
        return self.data[start : start + copied] + bytes(section.virtual_size - copied)


def pe_checksum(data: bytes, checksum_offset: int) -> int:
    """The optional header's CheckSum as Windows' ``CheckSumMappedFile`` computes it: the 16-bit
    one's-complement-style sum of the file (CheckSum field taken as zero, an odd last byte padded
    with zero) folded to 16 bits, plus the file length."""
    padded = data[:checksum_offset] + bytes(4) + data[checksum_offset + 4 :]
    if len(padded) % 2:
        padded += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("<H", padded):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return (((total & 0xFFFF) + (total >> 16)) + len(data)) & 0xFFFFFFFF


def with_timestamp(data: bytes, timestamp: int) -> bytes:
    """The image with its COFF TimeDateStamp set to ``timestamp`` and CheckSum recomputed."""
    if not 0 <= timestamp <= 0xFFFFFFFF:
        raise ParseError(Reason.INPUT_INVALID, f"a COFF timestamp is a u32, got {timestamp}")
    image = PeImage.from_bytes(data)
    out = bytearray(image.data)
    struct.pack_into("<I", out, image.timestamp_offset, timestamp)
    struct.pack_into("<I", out, image.checksum_offset, pe_checksum(bytes(out), image.checksum_offset))
    return bytes(out)
