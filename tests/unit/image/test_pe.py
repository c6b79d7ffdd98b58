"""image.pe: the headers of the real systemd stub read as binutils reads them; malformed images are
a typed ``image.pe.malformed``; the CheckSum is the one binutils and the linker write."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image.authenticode import authenticode_digest
from image.pe import SECTION_HEADER_SIZE, PeImage, SectionHeader, pe_checksum, with_timestamp
from offchain.errors import ParseError, Reason
from tests.unit.image.tools import EPOCH, objdump_private, objdump_sections, run, tool_or_skip


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_stub_headers_are_what_objdump_reads(stub: bytes, tmp_path: Path) -> None:
    path = _write(tmp_path, "stub.efi", stub)
    pe = PeImage.from_bytes(stub)
    theirs = objdump_sections(path)
    assert [s.name for s in theirs] == [h.display_name for h in pe.sections]
    for header, section in zip(pe.sections, theirs):
        assert section.vma == pe.image_base + header.virtual_address
        assert section.size == min(header.virtual_size, header.size_of_raw_data)
        assert section.file_offset == header.pointer_to_raw_data
    fields = objdump_private(path)
    assert int(fields["CheckSum"], 16) == pe.checksum
    assert int(fields["SizeOfHeaders"], 16) == pe.size_of_headers
    assert int(fields["MajorImageVersion"]) == pe.major_image_version
    assert int(fields["ImageBase"], 16) == pe.image_base
    assert int(fields["SectionAlignment"], 16) == pe.section_alignment
    assert fields["Magic"].startswith(f"{pe.magic:04x}")
    assert pe.certificate_table == (0, 0)


def test_checksum_is_the_one_the_linker_and_objcopy_write(stub: bytes, tmp_path: Path) -> None:
    pe = PeImage.from_bytes(stub)
    assert pe_checksum(stub, pe.checksum_offset) == pe.checksum  # written by ld when the stub was linked
    # objcopy rewrites the image (and stamps the current time); binutils computes the checksum anew.
    copied = tmp_path / "copy.efi"
    run(tool_or_skip("objcopy"), _write(tmp_path, "stub.efi", stub), copied)
    data = copied.read_bytes()
    rewritten = PeImage.from_bytes(data)
    assert pe_checksum(data, rewritten.checksum_offset) == rewritten.checksum


def test_checksum_of_an_odd_length_file_pads_the_last_byte(stub: bytes) -> None:
    pe = PeImage.from_bytes(stub)
    even = stub if len(stub) % 2 == 0 else stub + b"\0"
    assert pe_checksum(even + b"\x07", pe.checksum_offset) == pe_checksum(even + b"\x07\0", pe.checksum_offset) - 1


def test_with_timestamp_sets_the_coff_timestamp_and_a_valid_checksum(stub: bytes, tmp_path: Path) -> None:
    stamped = with_timestamp(stub, EPOCH)
    pe = PeImage.from_bytes(stamped)
    assert pe.timestamp == EPOCH
    assert pe_checksum(stamped, pe.checksum_offset) == pe.checksum != PeImage.from_bytes(stub).checksum
    assert objdump_private(_write(tmp_path, "stamped.efi", stamped))["Time/Date"] == time.ctime(EPOCH)  # both local time
    changed = [i for i, (a, b) in enumerate(zip(stub, stamped)) if a != b]
    assert all(pe.timestamp_offset <= i < pe.timestamp_offset + 4 or pe.checksum_offset <= i < pe.checksum_offset + 4
               for i in changed)


@pytest.mark.parametrize("timestamp", [-1, 1 << 32], ids=["negative", "past_u32"])
def test_with_timestamp_refuses_what_a_u32_cannot_hold(stub: bytes, timestamp: int) -> None:
    with pytest.raises(ParseError) as exc:
        with_timestamp(stub, timestamp)
    assert exc.value.reason is Reason.INPUT_INVALID


# --- malformed images: every structural flaw is image.pe.malformed ---------------------------------


def _pe_offset(data: bytes) -> int:
    return int(struct.unpack_from("<I", data, 0x3C)[0])


def _patched(offset: Callable[[bytes], int], fmt: str, value: int) -> Callable[[bytes], bytes]:
    def patch(data: bytes) -> bytes:
        out = bytearray(data)
        struct.pack_into(fmt, out, offset(data), value)
        return bytes(out)

    return patch


def _optional(delta: int) -> Callable[[bytes], int]:
    return lambda data: _pe_offset(data) + 24 + delta


def _section_table(data: bytes) -> int:
    return _pe_offset(data) + 24 + int(struct.unpack_from("<H", data, _pe_offset(data) + 20)[0])


def _data_section_cut(data: bytes) -> bytes:
    pe = PeImage.from_bytes(data)
    last = max(pe.sections, key=lambda h: h.pointer_to_raw_data)
    return data[: last.pointer_to_raw_data + last.size_of_raw_data // 2]


MALFORMED: dict[str, Callable[[bytes], bytes]] = {
    "truncated_dos_header": lambda d: d[:63],
    "truncated_coff_header": lambda d: d[: _pe_offset(d) + 10],
    "truncated_optional_header": lambda d: d[: _pe_offset(d) + 60],
    "truncated_section_table": lambda d: d[: _section_table(d) + SECTION_HEADER_SIZE + 7],
    "truncated_section_data": _data_section_cut,
    "bad_mz": lambda d: b"MX" + d[2:],
    "bad_pe_signature": lambda d: d[: _pe_offset(d)] + b"PE\0\1" + d[_pe_offset(d) + 4 :],
    "e_lfanew_past_end": _patched(lambda d: 0x3C, "<I", 0xFFFFFF00),
    "section_table_outside_file": _patched(lambda d: _pe_offset(d) + 6, "<H", 0xFFFF),
    "size_of_headers_before_section_table_end": _patched(_optional(0x3C), "<I", 0x100),
    "size_of_headers_past_end": _patched(_optional(0x3C), "<I", 0x7FFFFFFF),
    "unknown_optional_magic": _patched(_optional(0), "<H", 0x30B),
    "optional_header_too_small": _patched(lambda d: _pe_offset(d) + 20, "<H", 0x40),
    "seventeen_data_directories": _patched(_optional(0x6C), "<I", 17),
    "certificate_table_not_at_the_end": _patched(_optional(0x70 + 8 * 4), "<Q", (8 << 32) | 0x400),
    "certificate_table_past_the_end": _patched(_optional(0x70 + 8 * 4), "<Q", (0x1000 << 32) | 0x400),
    "certificate_table_inside_the_headers": _patched(_optional(0x70 + 8 * 4), "<Q", (16 << 32) | 0x10),
}


def test_the_unmodified_stub_parses(stub: bytes) -> None:
    assert PeImage.from_bytes(stub).to_bytes() == stub


@pytest.mark.parametrize("mutate", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_image_is_a_typed_parse_error(stub: bytes, mutate: Callable[[bytes], bytes]) -> None:
    with pytest.raises(ParseError) as exc:
        authenticode_digest(mutate(stub))
    assert exc.value.reason is Reason.IMAGE_PE_MALFORMED


def test_certificate_table_at_the_end_is_accepted(stub: bytes) -> None:
    # the twin of certificate_table_not_at_the_end: the same entry, pointing at the file's last 8 bytes
    signed_shape = _patched(_optional(0x70 + 8 * 4), "<Q", (8 << 32) | (len(stub) - 8))(stub)
    assert PeImage.from_bytes(signed_shape).certificate_table == (len(stub) - 8, 8)


def test_a_section_header_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ParseError) as exc:
        SectionHeader.from_bytes(bytes(39))
    assert exc.value.reason is Reason.IMAGE_PE_MALFORMED


# --- hypothesis -------------------------------------------------------------------------------------


@given(st.binary(min_size=SECTION_HEADER_SIZE, max_size=SECTION_HEADER_SIZE))
def test_section_header_round_trips(data: bytes) -> None:
    assert SectionHeader.from_bytes(data).to_bytes() == data


@given(st.binary(max_size=600))
def test_random_bytes_parse_or_raise_a_typed_error(data: bytes) -> None:
    try:
        PeImage.from_bytes(data)
    except ParseError as exc:
        assert exc.reason is Reason.IMAGE_PE_MALFORMED


@settings(max_examples=200)
@given(edits=st.lists(st.tuples(st.integers(0, 0x3FF), st.integers(0, 255)), min_size=1, max_size=4))
def test_damaged_stub_headers_hash_or_raise_a_typed_error(stub: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(stub)
    for offset, value in edits:
        data[offset] = value
    try:
        assert len(authenticode_digest(bytes(data))) == 32
    except ParseError as exc:
        assert exc.reason is Reason.IMAGE_PE_MALFORMED
