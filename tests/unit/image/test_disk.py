"""image.disk: a small disk built with the real tools (erofs-utils, cryptsetup, dosfstools, mtools)
from a tiny root directory, a workload and a UKI from the real systemd stub is byte-identical across
builds, reads back with inspect_disk and with independent tools, never holds secrets/, and each
corruption is refused with its reason."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from image.commands import find_tool
from image.disk import (
    ESP_NAME,
    ROOT_NAME,
    VERITY_NAME,
    WORKLOAD_NAME,
    DiskLayout,
    assemble_disk,
    build_disk,
    build_root,
    build_workload,
    inspect_disk,
    tree_digest,
)
from image.gpt import SECTOR, GptEntry, layout_table
from image.uki import build_uki
from offchain.abi.workload import WorkloadEvent, measure_directory, replay
from offchain.errors import ParseError, Reason, RequestError, VerificationError
from tests.support.agent import oci_tarball

EPOCH = 1_700_000_000
SECRET = b"do-not-ship-this-secret-5f1c0b9e"
#: The tools the build and these tests run, with the Debian package of each (for the skip message).
TOOLS = {"mkfs.erofs": "erofs-utils", "fsck.erofs": "erofs-utils", "veritysetup": "cryptsetup-bin",
         "mkfs.vfat": "dosfstools", "fsck.vfat": "dosfstools", "mmd": "mtools", "mcopy": "mtools", "mdel": "mtools",
         "mdir": "mtools", "minfo": "mtools", "sfdisk": "fdisk"}

MakeUki = Callable[[str], bytes]


def tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {TOOLS[name]})")
    return path


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    for name in TOOLS:
        tool(name)


def make_rootfs(path: Path, *, reverse: bool = False, mtime: int = EPOCH) -> Path:
    files = [("etc/os-release", b'ID=debian\nVERSION_ID="12"\n', 0o644), ("usr/bin/agent", b"#!/bin/sh\necho hi\n", 0o755),
             ("usr/lib/empty", b"", 0o600), ("usr/lib/blob", bytes(range(256)) * 256, 0o644)]  # 16 data blocks
    for rel, content, mode in reversed(files) if reverse else files:
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
        os.utime(target, (mtime, mtime))
    (path / "bin").symlink_to("usr/bin")
    return path


LOCAL_IMAGE = "localhost/app:1"


def expected_events(workload: Path) -> list[WorkloadEvent]:
    """What PCR23 measures of :func:`make_workload`'s directory: its images.txt with the tarball's
    image added (sorted by name, first), then the compose file and config/."""
    source = measure_directory(workload)
    tarball = WorkloadEvent("image", LOCAL_IMAGE, oci_tarball(LOCAL_IMAGE)[1])
    images = sorted([e for e in source if e.kind == "image"] + [tarball], key=lambda e: e.name)
    return images + [e for e in source if e.kind != "image"]


def make_workload(path: Path, *, config: bytes = b"greeting=hello\n") -> Path:
    (path / "config" / "sub").mkdir(parents=True)
    (path / "docker-compose.yml").write_bytes(b"services:\n  app:\n    image: app@sha256:" + b"ab" * 32 + b"\n")
    (path / "config" / "app.conf").write_bytes(config)
    (path / "config" / "sub" / "more.conf").write_bytes(b"x=1\n")
    (path / "images.txt").write_text("app sha256:" + "ab" * 32 + "\n")
    (path / "images").mkdir()
    (path / "images" / "app.tar").write_bytes(oci_tarball(LOCAL_IMAGE)[0])
    (path / "images" / "notes.txt").write_text("not an image\n")
    (path / "secrets").mkdir()
    (path / "secrets" / "token").write_bytes(SECRET)
    (path / "README.md").write_text("not part of the workload\n")
    return path


@pytest.fixture(scope="module")
def make_uki(stub: bytes) -> MakeUki:
    def build(fragment: str) -> bytes:
        return build_uki(stub, linux=b"not a kernel\n" * 64, initrd=b"not an initrd\n" * 32,
                         cmdline=f"{fragment} ro console=ttyS0", osrel=b"ID=debian\n", uname=None, timestamp=EPOCH)
    return build


@dataclass(frozen=True)
class Built:
    disk: Path
    layout: DiskLayout
    rootfs: Path
    workload: Path


def build(tmp: Path, make_uki: MakeUki, *, epoch: int = EPOCH, config: bytes = b"greeting=hello\n",
          reverse: bool = False) -> Built:
    tmp.mkdir(parents=True, exist_ok=True)
    rootfs = make_rootfs(tmp / "rootfs", reverse=reverse, mtime=epoch + (7 if reverse else 0))
    workload = make_workload(tmp / "workload", config=config)
    disk = tmp / "disk.raw"
    layout = build_disk(disk, make_uki=make_uki, rootfs_dir=rootfs, workload_dir=workload, source_date_epoch=epoch)
    return Built(disk, layout, rootfs, workload)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, make_uki: MakeUki) -> Built:
    return build(tmp_path_factory.mktemp("disk"), make_uki)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy(built: Built, tmp_path: Path) -> Path:
    target = tmp_path / "disk.raw"
    shutil.copyfile(built.disk, target)
    return target


def patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


# --- reproducibility -------------------------------------------------------------------------------


def test_same_inputs_give_a_byte_identical_disk(built: Built, make_uki: MakeUki, tmp_path: Path) -> None:
    # Files created in the other order with other mtimes: neither reaches the disk.
    again = build(tmp_path, make_uki, reverse=True)
    assert sha256(again.disk) == sha256(built.disk)
    assert again.layout == built.layout


def test_another_workload_changes_only_the_workload_partition(built: Built, make_uki: MakeUki, tmp_path: Path) -> None:
    other = build(tmp_path, make_uki, config=b"greeting=bye!\n")
    assert sha256(other.disk) != sha256(built.disk)
    assert other.layout.workload_digest != built.layout.workload_digest
    # The GPT (PCR5 measures it) and the root are derived from the root hash alone.
    head = 34 * SECTOR
    assert other.disk.read_bytes()[:head] == built.disk.read_bytes()[:head]
    assert other.layout.root_hash == built.layout.root_hash


def test_another_epoch_changes_the_disk(built: Built, make_uki: MakeUki, tmp_path: Path) -> None:
    other = build(tmp_path, make_uki, epoch=EPOCH + 86_400)
    assert sha256(other.disk) != sha256(built.disk)


# --- the layout, read back -----------------------------------------------------------------------


def test_layout_is_aligned_and_derived_from_the_root_hash(built: Built) -> None:
    layout = built.layout
    assert [p.name for p in layout.partitions] == [ESP_NAME, ROOT_NAME, VERITY_NAME, WORKLOAD_NAME]
    assert all(p.offset % (1 << 20) == 0 and p.size % (1 << 20) == 0 for p in layout.partitions)
    assert layout.size % (1 << 20) == 0 and layout.size == built.disk.stat().st_size
    assert layout.partition(ROOT_NAME).guid.bytes == layout.root_hash[:16]
    assert layout.partition(VERITY_NAME).guid.bytes == layout.root_hash[16:]
    assert str(layout.partition(ROOT_NAME).type_guid) == "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
    assert str(layout.partition(VERITY_NAME).type_guid) == "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
    assert layout.cmdline == f"roothash={layout.root_hash.hex()}"
    assert json.loads(json.dumps(layout.to_json()))["root_hash"] == layout.root_hash.hex()


def test_inspect_finds_everything_and_the_root_verifies(built: Built, make_uki: MakeUki) -> None:
    report = inspect_disk(built.disk)
    layout = built.layout
    assert report.table.disk_guid == layout.disk_guid
    assert [e for _, e in report.table.entries] == list(layout.partitions)
    assert report.root_hash == layout.root_hash and report.salt == layout.salt
    assert report.verity_uuid == layout.verity_uuid
    uki = make_uki(layout.cmdline)
    assert report.uki_sha256 == hashlib.sha256(uki).digest()
    assert report.cmdline == f"{layout.cmdline} ro console=ttyS0"
    assert report.workload_digest == layout.workload_digest
    assert report.workload_pcr23 == replay(expected_events(built.workload))
    assert report.to_json()["verity"] == "verified"


def test_independent_tools_read_the_partitions(built: Built, tmp_path: Path) -> None:
    layout = built.layout
    table = json.loads(subprocess.run([tool("sfdisk"), "--json", str(built.disk)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    assert table["id"].lower() == str(layout.disk_guid)
    assert [(p["start"] * SECTOR, p["uuid"].lower(), p["name"]) for p in table["partitions"]] == [
        (p.offset, str(p.guid), p.name) for p in layout.partitions]
    parts = {}
    with built.disk.open("rb") as disk:
        for p in layout.partitions:
            disk.seek(p.offset)
            parts[p.name] = tmp_path / p.name
            parts[p.name].write_bytes(disk.read(p.size))
    fsck = subprocess.run([tool("fsck.vfat"), "-n", str(parts[ESP_NAME])], capture_output=True, text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    minfo = subprocess.run([tool("minfo"), "-i", str(parts[ESP_NAME]), "::"], capture_output=True, text=True, check=True,
                           env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert f"serial number: {layout.esp_volume_id:08X}" in minfo
    mdir = subprocess.run([tool("mdir"), "-i", str(parts[ESP_NAME]), "::/EFI/BOOT"], capture_output=True, text=True,
                          check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}).stdout
    assert re.search(r"^BOOTX64\s+EFI\s+\d[\d ]*\s+2023-11-14\s+22:13", mdir, re.M), mdir  # SOURCE_DATE_EPOCH
    dump = subprocess.run([tool("veritysetup"), "dump", str(parts[VERITY_NAME])], capture_output=True, text=True,
                          check=True).stdout
    assert str(layout.verity_uuid) in dump and layout.salt.hex() in dump
    subprocess.run([tool("veritysetup"), "verify", str(parts[ROOT_NAME]), str(parts[VERITY_NAME]), layout.root_hash.hex()],
                   check=True, capture_output=True)
    subprocess.run([tool("fsck.erofs"), f"--extract={tmp_path / 'root'}", str(parts[ROOT_NAME])], check=True,
                   capture_output=True)
    assert tree_digest(tmp_path / "root") == tree_digest(built.rootfs)
    assert (tmp_path / "root" / "usr/bin/agent").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "root" / "usr/bin/agent").stat().st_mtime == EPOCH


def test_tree_digest_covers_names_contents_modes_and_links_not_times(tmp_path: Path) -> None:
    def digest_after(change: Callable[[Path], object]) -> bytes:
        root = make_rootfs(tmp_path / uuid.uuid4().hex)
        change(root)
        return tree_digest(root)

    base = digest_after(lambda root: None)
    assert digest_after(lambda root: os.utime(root / "etc/os-release", (1, 1))) == base
    changed = [
        digest_after(lambda root: (root / "usr/bin/agent").chmod(0o700)),
        digest_after(lambda root: (root / "etc/os-release").write_bytes(b"ID=other\n")),
        digest_after(lambda root: (root / "etc/os-release").rename(root / "etc/os-releasf")),
        digest_after(lambda root: ((root / "bin").unlink(), (root / "bin").symlink_to("usr/lib"))),
        digest_after(lambda root: (root / "etc/new").mkdir()),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


# --- the workload: never secrets/ ------------------------------------------------------------------


def test_secrets_are_left_out_and_never_on_the_disk(built: Built, make_uki: MakeUki, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    assert SECRET in (built.workload / "secrets" / "token").read_bytes()
    assert SECRET not in built.disk.read_bytes()
    assert built.layout.left_out == ("README.md", "images/notes.txt", "secrets/")
    with caplog.at_level(logging.WARNING, logger="image.disk"):
        build_workload(built.workload, tmp_path, source_date_epoch=EPOCH)
    assert any("secrets/" in r.getMessage() for r in caplog.records)


def test_the_images_of_the_tarballs_are_listed_and_measured(built: Built) -> None:
    """PCR23 measures images.txt: the build lists each tarball's image there, as an upload does."""
    report = inspect_disk(built.disk)
    images = {e.name: e.content_digest for e in report.workload_events if e.kind == "image"}
    assert images == {"app": bytes.fromhex("ab" * 32), LOCAL_IMAGE: oci_tarball(LOCAL_IMAGE)[1]}



@pytest.mark.parametrize("where", ["config/link", "docker-compose.yml", "images", "images/app.tar"],
                         ids=["symlink-in-config", "symlinked-compose", "symlinked-images", "symlinked-tar"])
def test_symbolic_links_in_the_workload_are_refused(tmp_path: Path, where: str) -> None:
    workload = make_workload(tmp_path / "workload")
    if (workload / where).is_dir():
        shutil.rmtree(workload / where)
    (workload / where).unlink(missing_ok=True)
    (workload / where).symlink_to("/etc/passwd")
    (tmp_path / "work").mkdir()
    with pytest.raises(RequestError) as exc:
        build_workload(workload, tmp_path / "work", source_date_epoch=EPOCH)
    assert exc.value.reason is Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH
    assert exc.value.context["entry"] == where


def test_a_workload_without_compose_file_is_refused(tmp_path: Path) -> None:
    workload = make_workload(tmp_path / "workload")
    (workload / "docker-compose.yml").unlink()
    (tmp_path / "work").mkdir()
    with pytest.raises(RequestError) as exc:
        build_workload(workload, tmp_path / "work", source_date_epoch=EPOCH)
    assert exc.value.reason is Reason.WORKLOAD_ARCHIVE_INVALID


# --- the root hash and the UKI ---------------------------------------------------------------------


@pytest.mark.parametrize("fragment", ["", "roothash=" + "00" * 32, "{cmdline} roothash=" + "00" * 32],
                         ids=["no-roothash", "other-roothash", "two-roothashes"])
def test_a_uki_without_this_root_hash_is_refused(built: Built, make_uki: MakeUki, tmp_path: Path,
                                                 fragment: str) -> None:
    root = build_root(built.rootfs, tmp_path, source_date_epoch=EPOCH)
    workload = build_workload(built.workload, tmp_path, source_date_epoch=EPOCH)
    uki = make_uki(fragment.format(cmdline=root.cmdline) or "quiet")
    with pytest.raises(RequestError) as exc:
        assemble_disk(tmp_path / "disk.raw", root=root, uki=uki, workload=workload, source_date_epoch=EPOCH)
    assert exc.value.reason is Reason.IMAGE_ROOT_HASH_MISMATCH


@pytest.mark.parametrize("epoch", [0, 315_532_799, 1 << 32], ids=["zero", "before-1980", "past-u32"])
def test_an_epoch_fat_cannot_hold_is_refused(built: Built, tmp_path: Path, epoch: int) -> None:
    with pytest.raises(RequestError) as exc:
        build_root(built.rootfs, tmp_path, source_date_epoch=epoch)
    assert exc.value.reason is Reason.INPUT_INVALID


# --- corruptions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, at", [(ROOT_NAME, 1024 + 8), (ROOT_NAME, 4096 - 1), (VERITY_NAME, 4096 + 3),
                                      (VERITY_NAME, 0)],
                         ids=["root-superblock", "root-data", "verity-hash-block", "verity-superblock"])
def test_one_byte_flipped_fails_verity(built: Built, tmp_path: Path, name: str, at: int) -> None:
    disk = copy(built, tmp_path)
    offset = built.layout.partition(name).offset + at
    patch(disk, offset, bytes([disk.read_bytes()[offset] ^ 0x01]))
    with pytest.raises(VerificationError) as exc:
        inspect_disk(disk)
    assert exc.value.reason is Reason.IMAGE_VERITY_MISMATCH


def test_a_corrupt_gpt_header_is_malformed(built: Built, tmp_path: Path) -> None:
    disk = copy(built, tmp_path)
    patch(disk, SECTOR + 24, b"\x07")  # MyLBA, without fixing the CRC
    with pytest.raises(ParseError) as exc:
        inspect_disk(disk)
    assert exc.value.reason is Reason.IMAGE_DISK_MALFORMED


def _rewrite_gpt(built: Built, disk: Path, entries: list[GptEntry]) -> None:
    head, tail = layout_table(built.layout.size // SECTOR, built.layout.disk_guid, entries)
    patch(disk, 0, head)
    patch(disk, built.layout.size - len(tail), tail)


def test_a_missing_partition_is_named(built: Built, tmp_path: Path) -> None:
    disk = copy(built, tmp_path)
    _rewrite_gpt(built, disk, [p for p in built.layout.partitions if p.name != WORKLOAD_NAME])
    with pytest.raises(ParseError) as exc:
        inspect_disk(disk)
    assert exc.value.reason is Reason.IMAGE_PARTITION_MISSING
    assert exc.value.context["partition"] == WORKLOAD_NAME


def test_a_root_partition_guid_not_from_the_root_hash_is_refused(built: Built, tmp_path: Path) -> None:
    disk = copy(built, tmp_path)
    _rewrite_gpt(built, disk, [GptEntry(p.type_guid, uuid.UUID(int=9), p.first_lba, p.last_lba, p.attributes, p.name)
                               if p.name == ROOT_NAME else p for p in built.layout.partitions])
    with pytest.raises(VerificationError) as exc:
        inspect_disk(disk)
    assert exc.value.reason is Reason.IMAGE_ROOT_HASH_MISMATCH


def test_an_esp_without_the_uki_is_malformed(built: Built, tmp_path: Path) -> None:
    disk = copy(built, tmp_path)
    esp = built.layout.partition(ESP_NAME).offset
    subprocess.run([tool("mdel"), "-i", f"{disk}@@{esp}", "::/EFI/BOOT/BOOTX64.EFI"], check=True, capture_output=True,
                   env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    with pytest.raises(ParseError) as exc:
        inspect_disk(disk)
    assert exc.value.reason is Reason.IMAGE_DISK_MALFORMED
