"""image.gpt: the GPT written here reads back with util-linux's sfdisk, round-trips, and every
corruption is a typed ``image.disk.malformed``, never a crash."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image.gpt import SECTOR, GptEntry, GptHeader, layout_table, read_gpt
from offchain.errors import ParseError, Reason

SECTORS = 8192  # a 4 MiB disk
DISK_GUID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
ENTRIES = [
    GptEntry(uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"), uuid.UUID(int=1), 2048, 4095, 0, "esp"),
    GptEntry(uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"), uuid.UUID(int=2), 4096, 6143, 1 << 60, "root-x86-64"),
]


def disk_bytes(entries: list[GptEntry] = ENTRIES) -> bytearray:
    head, tail = layout_table(SECTORS, DISK_GUID, entries)
    disk = bytearray(SECTORS * SECTOR)
    disk[: len(head)] = head
    disk[-len(tail) :] = tail
    return disk


def read(disk: bytes | bytearray) -> list[tuple[int, GptEntry]]:
    data = bytes(disk)
    return list(read_gpt(lambda offset, length: data[offset : offset + length], len(data)).entries)


def test_entries_and_header_round_trip() -> None:
    for entry in ENTRIES:
        assert GptEntry.from_bytes(entry.to_bytes()) == entry
    block = bytes(disk_bytes()[SECTOR : 2 * SECTOR])
    assert GptHeader.from_bytes(block).to_bytes() == block


@settings(max_examples=200, deadline=None)
@given(st.uuids(), st.uuids(), st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 64) - 1),
       st.integers(0, (1 << 64) - 1), st.text(st.characters(min_codepoint=1, max_codepoint=0xD7FF), max_size=36))
def test_any_entry_round_trips(type_guid: uuid.UUID, guid: uuid.UUID, first: int, last: int, attributes: int,
                               name: str) -> None:
    entry = GptEntry(type_guid, guid, first, last, attributes, name)
    assert GptEntry.from_bytes(entry.to_bytes()) == entry


def test_written_table_reads_back_here_and_with_sfdisk(tmp_path: Path) -> None:
    assert read(disk_bytes()) == list(enumerate(ENTRIES, 1))
    sfdisk = shutil.which("sfdisk")
    if sfdisk is None:
        pytest.skip("sfdisk not installed (Debian package fdisk)")
    path = tmp_path / "disk.raw"
    path.write_bytes(disk_bytes())
    table = json.loads(subprocess.run([sfdisk, "--json", str(path)], capture_output=True, text=True, check=True).stdout)
    table = table["partitiontable"]
    assert (table["label"], table["id"].lower(), table["firstlba"], table["lastlba"]) == ("gpt", str(DISK_GUID), 34,
                                                                                          SECTORS - 34)
    assert [(p["start"], p["size"], p["type"].lower(), p["uuid"].lower(), p["name"]) for p in table["partitions"]] == [
        (e.first_lba, e.last_lba - e.first_lba + 1, str(e.type_guid), str(e.guid), e.name) for e in ENTRIES]
    assert [p.get("attrs") for p in table["partitions"]] == [None, "GUID:60"]
    verify = subprocess.run([sfdisk, "--verify", str(path)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0 and "No errors detected" in verify.stdout, verify.stdout + verify.stderr


def _fix_primary_crc(disk: bytearray) -> None:
    header = disk[SECTOR : SECTOR + 92]
    header[16:20] = bytes(4)
    disk[SECTOR + 16 : SECTOR + 20] = struct.pack("<I", zlib.crc32(header))


def _flip(offset: int, fix_crc: bool = False) -> Callable[[bytearray], None]:
    def corrupt(disk: bytearray) -> None:
        disk[offset] ^= 0x01
        if fix_crc:
            _fix_primary_crc(disk)
    return corrupt


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(_flip(510), id="mbr-signature"),
        pytest.param(_flip(446 + 4), id="mbr-not-protective"),
        pytest.param(_flip(SECTOR), id="primary-signature"),
        pytest.param(_flip(SECTOR + 60), id="primary-header-crc"),
        pytest.param(_flip(SECTOR + 20, fix_crc=True), id="primary-reserved"),
        pytest.param(_flip(SECTOR + 100), id="primary-block-tail"),
        pytest.param(_flip(SECTOR + 84, fix_crc=True), id="primary-entry-size"),
        pytest.param(_flip(2 * SECTOR + 40), id="primary-entry-array-crc"),
        pytest.param(_flip((SECTORS - 1) * SECTOR + 60), id="backup-header-crc"),
        pytest.param(_flip((SECTORS - 33) * SECTOR + 40), id="backup-entry-array-crc"),
        pytest.param(_flip(SECTOR + 56, fix_crc=True), id="disk-guid-differs"),
        pytest.param(_flip(SECTOR + 32, fix_crc=True), id="alternate-lba"),
    ],
)
def test_corruption_is_a_typed_reason(corrupt: Callable[[bytearray], None]) -> None:
    disk = disk_bytes()
    assert read(disk)  # the positive twin
    corrupt(disk)
    with pytest.raises(ParseError) as exc:
        read(disk)
    assert exc.value.reason is Reason.IMAGE_DISK_MALFORMED


def test_overlapping_or_outside_partitions_are_refused() -> None:
    overlapping = [ENTRIES[0], GptEntry(ENTRIES[1].type_guid, uuid.UUID(int=3), 4000, 6143, 0, "root-x86-64")]
    outside = [GptEntry(ENTRIES[1].type_guid, uuid.UUID(int=3), 4096, SECTORS - 2, 0, "root-x86-64")]
    for entries in (overlapping, outside):
        with pytest.raises(ParseError) as exc:
            layout_table(SECTORS, DISK_GUID, entries)
        assert exc.value.reason is Reason.IMAGE_DISK_MALFORMED


def test_a_truncated_disk_is_refused() -> None:
    disk = disk_bytes()
    with pytest.raises(ParseError) as exc:
        read(disk[: -SECTOR])
    assert exc.value.reason is Reason.IMAGE_DISK_MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=SECTOR * 80), st.integers(min_value=0, max_value=SECTOR * 80 - 1))
def test_random_bytes_never_crash(noise: bytes, at: int) -> None:
    disk = disk_bytes()
    head = bytes(disk[: 80 * SECTOR])
    mixed = (head[:at] + noise + head[at + len(noise) :])[: 80 * SECTOR]
    for candidate in (noise, mixed + bytes(disk[80 * SECTOR :])):
        try:
            read(candidate)
        except ParseError as exc:
            assert exc.reason is Reason.IMAGE_DISK_MALFORMED
