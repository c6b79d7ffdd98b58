"""image.formats: the VHD, VMDK and tar.gz of a raw disk are reproducible, and qemu-img (and GNU
tar's header layout) read them as the clouds expect."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image.formats import VHD_EPOCH, VhdFooter, vhd_geometry, write_gcp_tar, write_vhd, write_vmdk
from image.gpt import SECTOR, GptEntry, layout_table
from offchain.errors import ParseError, Reason, RequestError

EPOCH = 1_700_000_000
MIB = 1 << 20


def qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        pytest.skip("qemu-img not installed (Debian package qemu-utils)")
    return path


def qemu_info(path: Path, fmt: str) -> dict[str, object]:
    out = subprocess.run([qemu_img(), "info", "-f", fmt, "--output=json", str(path)], capture_output=True, text=True,
                         check=True).stdout
    info: dict[str, object] = json.loads(out)
    return info


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 MiB disk: a GPT with one partition holding patterned bytes, zeros elsewhere."""
    size = 6 * MIB
    entry = GptEntry(uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4"), uuid.UUID(int=5), 2048, 4095, 0, "data")
    head, tail = layout_table(size // SECTOR, uuid.UUID(int=7), [entry])
    path = tmp_path_factory.mktemp("formats") / "disk.raw"
    with path.open("wb") as disk:  # sparse, as assemble_disk writes it
        disk.truncate(size)
        disk.write(head)
        disk.seek(entry.offset)
        disk.write(hashlib.sha256(b"seed").digest() * (300_000 // 32))
        disk.seek(size - len(tail))
        disk.write(tail)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- VHD -----------------------------------------------------------------------------------------


def test_vhd_is_raw_plus_a_valid_footer_qemu_reads(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.vhd"
    footer = write_vhd(raw, out, source_date_epoch=EPOCH)
    data = out.read_bytes()
    assert data[:-512] == raw.read_bytes()
    assert out.stat().st_blocks * 512 < out.stat().st_size  # the raw disk's holes stay holes
    assert VhdFooter.from_bytes(data[-512:]) == footer
    assert footer.timestamp == EPOCH - VHD_EPOCH and footer.current_size == raw.stat().st_size
    info = qemu_info(out, "vpc")
    assert (info["format"], info["virtual-size"]) == ("vpc", raw.stat().st_size)
    again = tmp_path / "again.vhd"
    write_vhd(raw, again, source_date_epoch=EPOCH)
    assert sha256(again) == sha256(out)


def test_vhd_footer_agrees_with_qemu_img_force_size(raw: Path, tmp_path: Path) -> None:
    theirs_path = tmp_path / "qemu.vhd"
    subprocess.run([qemu_img(), "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", str(raw),
                    str(theirs_path)], check=True, capture_output=True)
    ours = VhdFooter.from_bytes(write_vhd(raw, tmp_path / "ours.vhd", source_date_epoch=EPOCH).to_bytes())
    theirs = VhdFooter.from_bytes(theirs_path.read_bytes()[-512:])  # its checksum and constants pass our parser
    # qemu stamps the current time and a random id, and with force_size writes the maximal geometry.
    same = ("creator_application", "creator_host", "original_size", "current_size")
    assert {f: getattr(ours, f) for f in same} == {f: getattr(theirs, f) for f in same}
    assert theirs.geometry == (65535, 16, 255)


@pytest.mark.parametrize("chs", [(180, 4, 17), (963, 8, 17), (1000, 16, 31), (2031, 16, 63), (20078, 16, 255)],
                         ids=lambda chs: "x".join(map(str, chs)))
def test_vhd_geometry_is_qemus_chs_calculation(tmp_path: Path, chs: tuple[int, int, int]) -> None:
    # qemu-img (block/vpc.c calculate_geometry) implements the same specification algorithm, but
    # then grows a disk until its geometry covers it; for a size its geometry covers exactly the
    # two agree, which checks the choice of heads and sectors per track in every branch.
    size = chs[0] * chs[1] * chs[2] * 512
    path = tmp_path / "chs.vhd"
    subprocess.run([qemu_img(), "create", "-q", "-f", "vpc", "-o", "subformat=fixed", str(path), str(size)],
                   check=True, capture_output=True)
    with path.open("rb") as f:
        f.seek(-512, 2)
        theirs = VhdFooter.from_bytes(f.read())
    assert (theirs.current_size, theirs.geometry) == (size, chs)
    assert vhd_geometry(size) == chs
    # The specification rounds down: one more sector keeps the geometry.
    assert vhd_geometry(size + 512) == chs


@pytest.mark.parametrize("offset", [0, 30, 64, 100, 500], ids=["cookie", "creator", "checksum", "unique-id",
                                                               "reserved"])
def test_a_corrupt_vhd_footer_is_refused(raw: Path, tmp_path: Path, offset: int) -> None:
    footer = bytearray(write_vhd(raw, tmp_path / "disk.vhd", source_date_epoch=EPOCH).to_bytes())
    footer[offset] ^= 0x01
    with pytest.raises(ParseError) as exc:
        VhdFooter.from_bytes(bytes(footer))
    assert exc.value.reason is Reason.IMAGE_DISK_MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFFFFFF), st.binary(min_size=4, max_size=4), st.integers(0, 0xFFFFFFFF),
       st.integers(0, (1 << 64) - 1), st.integers(0, 65535), st.integers(0, 255), st.integers(0, 255),
       st.uuids())
def test_vhd_footer_round_trips(timestamp: int, app: bytes, version: int, size: int, cylinders: int, heads: int,
                                sectors: int, unique_id: uuid.UUID) -> None:
    footer = VhdFooter(timestamp, app, version, b"Wi2k", size, size, (cylinders, heads, sectors), unique_id)
    assert VhdFooter.from_bytes(footer.to_bytes()) == footer


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=512, max_size=512))
def test_random_footers_never_crash(data: bytes) -> None:
    try:
        VhdFooter.from_bytes(b"conectix" + data[8:])
    except ParseError as exc:
        assert exc.reason is Reason.IMAGE_DISK_MALFORMED


def test_a_raw_disk_not_in_whole_mib_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "odd.raw"
    odd.write_bytes(bytes(MIB + 512))
    for write in (lambda: write_vhd(odd, tmp_path / "x.vhd", source_date_epoch=EPOCH),
                  lambda: write_gcp_tar(odd, tmp_path / "x.tar.gz", source_date_epoch=EPOCH)):
        with pytest.raises(RequestError) as exc:
            write()
        assert exc.value.reason is Reason.INPUT_INVALID


# --- VMDK ----------------------------------------------------------------------------------------


def test_vmdk_is_reproducible_stream_optimized_and_holds_the_raw_disk(raw: Path, tmp_path: Path) -> None:
    qemu_img()
    first, second = tmp_path / "a" / "disk.vmdk", tmp_path / "b" / "disk.vmdk"
    for out in (first, second):
        out.parent.mkdir()
        write_vmdk(raw, out)
    assert sha256(first) == sha256(second)
    info = qemu_info(first, "vmdk")
    assert info["virtual-size"] == raw.stat().st_size
    data = info["format-specific"]["data"]  # type: ignore[index]
    assert data["create-type"] == "streamOptimized"
    assert data["cid"] == int(hashlib.sha256(raw.read_bytes()).hexdigest()[:8], 16)
    subprocess.run([qemu_img(), "check", "-f", "vmdk", str(first)], check=True, capture_output=True)
    compare = subprocess.run([qemu_img(), "compare", "-f", "raw", "-F", "vmdk", str(raw), str(first)],
                             capture_output=True, text=True, check=False)
    assert compare.returncode == 0 and "Images are identical" in compare.stdout, compare.stdout + compare.stderr


def test_qemu_img_alone_is_not_reproducible(raw: Path, tmp_path: Path) -> None:
    """Why write_vmdk fixes the CID: two plain conversions differ by a random content id (the
    chance that two random 32-bit ids agree is 2^-32)."""
    outs = [tmp_path / "a.vmdk", tmp_path / "b.vmdk"]
    for out in outs:
        subprocess.run([qemu_img(), "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw),
                        str(tmp_path / "disk.vmdk")], check=True, capture_output=True)
        (tmp_path / "disk.vmdk").replace(out)
    cids = [qemu_info(out, "vmdk")["format-specific"]["data"]["cid"] for out in outs]  # type: ignore[index]
    assert cids[0] != cids[1] and sha256(outs[0]) != sha256(outs[1])


# --- GCP tar.gz ----------------------------------------------------------------------------------


def test_gcp_tar_has_the_single_member_disk_raw_with_fixed_headers(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.tar.gz"
    write_gcp_tar(raw, out, source_date_epoch=EPOCH)
    data = out.read_bytes()
    assert data[:4] == b"\x1f\x8b\x08\x00"  # gzip, deflate, no FNAME or other flags
    assert data[4:8] == bytes(4)  # MTIME 0
    with tarfile.open(out, "r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["disk.raw"]
        m = members[0]
        assert (m.size, m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) == (raw.stat().st_size, EPOCH, 0o644, 0, 0,
                                                                            "", "")
        extracted = tar.extractfile(m)
        assert extracted is not None and extracted.read() == raw.read_bytes()
    header = gzip.decompress(data)[:512]
    assert header[257:265] == b"ustar  \0"  # the old GNU magic (GNU tar --format=oldgnu / gnu)
    listing = subprocess.run(["tar", "-tvzf", str(out)], capture_output=True, text=True, check=True).stdout
    assert listing.split()[-1] == "disk.raw" and "0/0" in listing
    again = tmp_path / "again.tar.gz"
    write_gcp_tar(raw, again, source_date_epoch=EPOCH)
    assert sha256(again) == sha256(out)
