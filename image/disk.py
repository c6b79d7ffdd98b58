"""The CVM's disk, assembled reproducibly from prepared inputs, and read back.

The order of the build follows from what measures what: the root hash of the root filesystem must
be in the UKI's ``.cmdline`` (measured into PCR11), and the UKI lives on the ESP. So:

1. :func:`build_root`: the root filesystem (EROFS) and its dm-verity hash device; gives the root
   hash and the command-line fragment ``roothash=HEX`` (:attr:`RootImage.cmdline`);
2. the caller builds the UKI with that fragment in its command line (``image.uki.build_uki``);
3. :func:`build_workload`: the workload partition (EROFS) from a workload directory, never ``secrets/``;
4. :func:`assemble_disk`: the ESP holding the UKI, then the GPT and the four partitions.

:func:`build_disk` runs the four steps. Every identifier is derived from the inputs (docs/image.md,
"The disk"), so two builds of the same inputs with the same ``source_date_epoch`` are
byte-identical. :func:`inspect_disk` reads a disk back: the GPT, the UKI on the ESP and its
command line, a ``veritysetup verify`` of the root against the root hash, and the workload's PCR23.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from image.authenticode import authenticode_digest
from image.erofs import extract_erofs, make_erofs
from image.esp import esp_size, make_esp, read_boot_loader
from image.gpt import ATTRIBUTE_READ_ONLY, SECTOR, GptEntry, PartitionTable, layout_table, read_gpt
from image.uki import Uki
from image.verity import VerityTree, format_verity, superblock, verify_verity
from offchain.abi.workload import (
    COMPOSE_FILE,
    CONFIG_DIR,
    IMAGES_DIR,
    IMAGES_FILE,
    SECRETS_DIR,
    WorkloadEvent,
    measure_directory,
    replay,
)
from offchain.errors import ParseError, Reason, RequestError, VerificationError
from workload.archive import merge_image_tarballs
from workload.compose import ComposeRules, check_workload_dir

log = logging.getLogger(__name__)

MIB = 1 << 20
#: The namespace of every UUIDv5 the build derives (a random UUID, fixed once for cvm-attest).
NAMESPACE = uuid.UUID("1df83126-a08d-4a3c-9ba7-394b46e1a480")
SALT_DOMAIN = b"cvm-attest/image/verity-salt/v1"
ESP_VOLUME_DOMAIN = b"cvm-attest/image/esp-volume-id/v1"

#: Partition type GUIDs: UEFI 2.10, 5.3.3 (the ESP); the Discoverable Partitions Specification
#: (root and root verity for x86-64, generic Linux data).
ESP_TYPE = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
ROOT_X86_64_TYPE = uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
ROOT_X86_64_VERITY_TYPE = uuid.UUID("2c7357ed-ebd2-46d9-aec1-23d437ec2bf5")
LINUX_DATA_TYPE = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")

#: Partition names (GPT PartitionName, seen as PARTLABEL), in disk order, with their types.
ESP_NAME, ROOT_NAME, VERITY_NAME, WORKLOAD_NAME = "esp", "root-x86-64", "root-x86-64-verity", "workload"
PARTITION_TYPES = {ESP_NAME: ESP_TYPE, ROOT_NAME: ROOT_X86_64_TYPE, VERITY_NAME: ROOT_X86_64_VERITY_TYPE,
                   WORKLOAD_NAME: LINUX_DATA_TYPE}

#: FAT keeps dates from 1980; the COFF and VHD timestamps are u32.
MIN_EPOCH, MAX_EPOCH = 315_532_800, 0xFFFFFFFF
_COPY_CHUNK = 4 * MIB


def derived_uuid(purpose: str, digest: bytes) -> uuid.UUID:
    """UUIDv5 (RFC 9562) in :data:`NAMESPACE` of ``"<purpose>:<hex digest>"``."""
    return uuid.uuid5(NAMESPACE, f"{purpose}:{digest.hex()}")


def sha256_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_COPY_CHUNK), b""):
            digest.update(chunk)
    return digest.digest()


def tree_digest(root: Path) -> bytes:
    """SHA-256 of a directory tree as far as an EROFS image built with ``--all-root`` and one
    timestamp keeps it, extended attributes aside: per entry in sorted path order,
    ``path NUL type mode NUL payload NUL``, where the payload is the SHA-256 of a file, the target
    of a symbolic link, the device number of a device."""
    digest = hashlib.sha256()

    def walk(directory: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name.encode("utf-8", "surrogateescape")):
            rel = f"{prefix}{entry.name}"
            st = entry.stat(follow_symlinks=False)
            kind, payload = "?", b""
            if stat.S_ISDIR(st.st_mode):
                kind = "d"
            elif stat.S_ISREG(st.st_mode):
                kind, payload = "f", sha256_file(Path(entry.path))
            elif stat.S_ISLNK(st.st_mode):
                kind, payload = "l", os.fsencode(os.readlink(entry.path))
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                kind, payload = "c" if stat.S_ISCHR(st.st_mode) else "b", str(st.st_rdev).encode()
            elif stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                kind = "p" if stat.S_ISFIFO(st.st_mode) else "s"
            digest.update(os.fsencode(rel) + b"\0" + f"{kind}{stat.S_IMODE(st.st_mode):04o}".encode() + b"\0"
                          + payload + b"\0")
            if kind == "d":
                walk(Path(entry.path), f"{rel}/")

    walk(root, "")
    return digest.digest()


def check_epoch(source_date_epoch: int) -> None:
    if not MIN_EPOCH <= source_date_epoch <= MAX_EPOCH:
        raise RequestError(Reason.INPUT_INVALID, f"source_date_epoch must lie in 1980..2106 (FAT, u32 timestamps), "
                           f"got {source_date_epoch}")


def _align(value: int, alignment: int = MIB) -> int:
    return -(-value // alignment) * alignment


# --- the root filesystem and its hash tree --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RootImage:
    """The root filesystem image and its dm-verity hash device, as files in a work directory."""

    filesystem: Path
    hash_device: Path
    filesystem_uuid: uuid.UUID
    verity: VerityTree

    @property
    def cmdline(self) -> str:
        """The kernel command-line fragment the UKI must carry (systemd-veritysetup-generator's and
        the image's initramfs's ``roothash=``)."""
        return f"roothash={self.verity.root_hash.hex()}"


def build_root(rootfs_dir: Path, work: Path, *, source_date_epoch: int) -> RootImage:
    """``work/root.erofs`` from ``rootfs_dir`` and ``work/root.verity``, its hash device.

    The filesystem UUID is derived from the tree (:func:`tree_digest`); the verity salt and UUID
    from the SHA-256 of the filesystem image, so that they exist before the root hash does.
    """
    check_epoch(source_date_epoch)
    if not rootfs_dir.is_dir():
        raise RequestError(Reason.INPUT_INVALID, f"the root filesystem directory {rootfs_dir} does not exist")
    filesystem, hash_device = work / "root.erofs", work / "root.verity"
    filesystem_uuid = derived_uuid("root-filesystem", tree_digest(rootfs_dir))
    make_erofs(rootfs_dir, filesystem, filesystem_uuid=filesystem_uuid, timestamp=source_date_epoch, xattrs=True)
    image_digest = sha256_file(filesystem)
    salt = hashlib.sha256(SALT_DOMAIN + image_digest).digest()
    tree = format_verity(filesystem, hash_device, salt=salt, verity_uuid=derived_uuid("root-verity", image_digest))
    return RootImage(filesystem, hash_device, filesystem_uuid, tree)


# --- the workload partition ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkloadImage:
    """The workload partition's filesystem image, and what was left out of it."""

    filesystem: Path
    filesystem_uuid: uuid.UUID
    digest: bytes  # tree_digest of the staged workload
    left_out: tuple[str, ...]


def _unsafe(path: str, why: str) -> RequestError:
    return RequestError(Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH, f"{path}: {why}", entry=path)


def _stage_file(source: Path, target: Path, rel: str) -> None:
    if not stat.S_ISREG(source.lstat().st_mode):
        raise _unsafe(rel, "not a regular file (symbolic links and special files never go into an image)")
    shutil.copyfile(source, target, follow_symlinks=False)
    target.chmod(0o644)


def _stage_tree(source: Path, target: Path, rel: str) -> None:
    if not stat.S_ISDIR(source.lstat().st_mode):
        raise _unsafe(rel, "not a directory")
    target.mkdir()
    target.chmod(0o755)
    for entry in sorted(source.iterdir()):
        child = f"{rel}/{entry.name}"
        if stat.S_ISDIR(entry.lstat().st_mode):
            _stage_tree(entry, target / entry.name, child)
        else:
            _stage_file(entry, target / entry.name, child)


def stage_workload(workload_dir: Path, staging: Path) -> tuple[str, ...]:
    """Copy the workload layout (``docker-compose.yml``, ``config/``, ``images.txt``,
    ``images/*.tar``) of ``workload_dir`` into the empty directory ``staging``, files mode 0644 and
    directories 0755. Returns, sorted, what was left out: ``secrets/`` always, anything else outside
    the layout. A symbolic link or special file inside the layout is refused."""
    if not (workload_dir / COMPOSE_FILE).is_file():
        raise RequestError(Reason.WORKLOAD_ARCHIVE_INVALID, f"{workload_dir} has no {COMPOSE_FILE}")
    staging.chmod(0o755)
    left_out = []
    for entry in sorted(workload_dir.iterdir()):
        name = entry.name
        if name in (COMPOSE_FILE, IMAGES_FILE):
            _stage_file(entry, staging / name, name)
        elif name == CONFIG_DIR:
            _stage_tree(entry, staging / name, name)
        elif name == IMAGES_DIR:
            if not stat.S_ISDIR(entry.lstat().st_mode):
                raise _unsafe(name, "not a directory")
            (staging / name).mkdir()
            (staging / name).chmod(0o755)
            for image in sorted(entry.iterdir()):
                rel = f"{name}/{image.name}"
                if image.name.endswith(".tar"):
                    _stage_file(image, staging / rel, rel)
                else:
                    left_out.append(rel)
                    log.warning("left out of the workload partition: %s (only images/*.tar is copied)", rel)
        elif name == SECRETS_DIR:
            left_out.append(f"{name}/")
            log.warning("left out of the workload partition: %s/ (secrets never go into an image)", name)
        else:
            left_out.append(name)
            log.warning("left out of the workload partition: %s (not part of the workload layout)", name)
    return tuple(sorted(left_out))


def build_workload(workload_dir: Path, work: Path, *, source_date_epoch: int) -> WorkloadImage:
    """``work/workload.erofs``: the staged workload (:func:`stage_workload`), the images of its
    ``images/*.tar`` added to ``images.txt`` (``workload.archive.merge_image_tarballs``), without
    extended attributes; its filesystem UUID is derived from the staged tree. A compose file that gives a
    container the TPM, the host's namespaces or the agent's state is refused first
    (``workload.compose_forbidden``, the rules the agent applies)."""
    check_epoch(source_date_epoch)
    staging = work / "workload"
    staging.mkdir()
    left_out = stage_workload(workload_dir, staging)
    # What the agent in the image will refuse at start is refused before it is built (workload.compose).
    check_workload_dir(staging, ComposeRules())
    # PCR23 measures images.txt: the tarballs' images are listed there, as an uploaded workload's are.
    merge_image_tarballs(staging)
    digest = tree_digest(staging)
    filesystem = work / "workload.erofs"
    filesystem_uuid = derived_uuid("workload-filesystem", digest)
    make_erofs(staging, filesystem, filesystem_uuid=filesystem_uuid, timestamp=source_date_epoch, xattrs=False)
    return WorkloadImage(filesystem, filesystem_uuid, digest, left_out)


# --- the disk ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiskLayout:
    """What :func:`assemble_disk` wrote: the GPT, the root hash and the identifiers it chose."""

    size: int
    disk_guid: uuid.UUID
    partitions: tuple[GptEntry, ...]  # in disk order: esp, root, root verity, workload
    root_hash: bytes
    salt: bytes
    verity_uuid: uuid.UUID
    root_filesystem_uuid: uuid.UUID
    workload_filesystem_uuid: uuid.UUID
    esp_volume_id: int
    workload_digest: bytes
    left_out: tuple[str, ...]

    @property
    def cmdline(self) -> str:
        return f"roothash={self.root_hash.hex()}"

    def partition(self, name: str) -> GptEntry:
        return {p.name: p for p in self.partitions}[name]

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "disk_guid": str(self.disk_guid),
            "partitions": [
                {"name": p.name, "type": str(p.type_guid), "guid": str(p.guid), "offset": p.offset, "size": p.size,
                 "attributes": p.attributes}
                for p in self.partitions
            ],
            "root_hash": self.root_hash.hex(),
            "salt": self.salt.hex(),
            "verity_uuid": str(self.verity_uuid),
            "root_filesystem_uuid": str(self.root_filesystem_uuid),
            "workload_filesystem_uuid": str(self.workload_filesystem_uuid),
            "esp_volume_id": f"{self.esp_volume_id:08x}",
            "workload_digest": self.workload_digest.hex(),
            "left_out": list(self.left_out),
            "cmdline": self.cmdline,
        }


def _cmdline_of(uki: Uki) -> str:
    return uki.sections.get(".cmdline", b"").split(b"\0", 1)[0].decode("ascii", "replace")


def _root_hashes(cmdline: str) -> list[str]:
    return [word.removeprefix("roothash=") for word in cmdline.split() if word.startswith("roothash=")]


def copy_into(source: Path, target: BinaryIO, offset: int) -> None:
    """Write ``source`` into ``target`` at ``offset``, skipping its holes (``SEEK_DATA``/``SEEK_HOLE``):
    a target made with ``truncate`` then stays as sparse as the source, and reads the same."""
    with source.open("rb") as f:
        fd, position, end = f.fileno(), 0, os.fstat(f.fileno()).st_size
        while position < end:
            try:
                data = os.lseek(fd, position, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                return
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            f.seek(data)
            target.seek(offset + data)
            for _ in range(data, hole, _COPY_CHUNK):
                target.write(f.read(min(_COPY_CHUNK, hole - f.tell())))
            position = hole


def _copy_out(disk: BinaryIO, entry: GptEntry, target: Path) -> None:
    disk.seek(entry.offset)
    remaining = entry.size
    with target.open("wb") as out:
        while remaining:
            chunk = disk.read(min(remaining, _COPY_CHUNK))
            if not chunk:
                raise ParseError(Reason.IMAGE_DISK_MALFORMED, f"partition {entry.name!r} runs past the end of the disk")
            out.write(chunk)
            remaining -= len(chunk)


def assemble_disk(
    out: Path, *, root: RootImage, uki: bytes, workload: WorkloadImage, source_date_epoch: int
) -> DiskLayout:
    """Write the raw disk ``out``: GPT, ESP (the UKI), root, root verity, workload, each partition
    starting on a MiB boundary and padded with zeros to whole MiB.

    The UKI must carry ``roothash=`` of ``root`` in its ``.cmdline`` and no other root hash. The
    GPT's identifiers are derived from the root hash alone: the root and verity partition GUIDs are
    its first and last 128 bits (what systemd-veritysetup-generator looks for), the disk, ESP and
    workload GUIDs UUIDv5s of it, so the workload's contents never change the GPT.
    """
    check_epoch(source_date_epoch)
    root_hash = root.verity.root_hash
    found = _root_hashes(_cmdline_of(Uki.from_bytes(uki)))
    if found != [root_hash.hex()]:
        raise RequestError(Reason.IMAGE_ROOT_HASH_MISMATCH,
                           f"the UKI's .cmdline must carry {root.cmdline} and no other root hash; it has {found}",
                           expected=root_hash.hex(), found=found)
    esp_volume_id = int.from_bytes(hashlib.sha256(ESP_VOLUME_DOMAIN + hashlib.sha256(uki).digest()).digest()[:4], "big")
    guids = {
        ESP_NAME: derived_uuid("esp-partition", root_hash),
        ROOT_NAME: uuid.UUID(bytes=root_hash[:16]),
        VERITY_NAME: uuid.UUID(bytes=root_hash[16:]),
        WORKLOAD_NAME: derived_uuid("workload-partition", root_hash),
    }
    with tempfile.TemporaryDirectory(prefix="cvm-attest-disk-", dir=out.parent) as tmp:
        esp = Path(tmp) / "esp.vfat"
        make_esp(esp, uki, size=esp_size(len(uki)), volume_id=esp_volume_id, source_date_epoch=source_date_epoch)
        contents = {ESP_NAME: esp, ROOT_NAME: root.filesystem, VERITY_NAME: root.hash_device,
                    WORKLOAD_NAME: workload.filesystem}
        entries, start = [], MIB
        for name, source in contents.items():
            size = _align(source.stat().st_size)
            attributes = 0 if name == ESP_NAME else ATTRIBUTE_READ_ONLY
            entries.append(GptEntry(PARTITION_TYPES[name], guids[name], start // SECTOR, (start + size) // SECTOR - 1,
                                    attributes, name))
            start += size
        size = start + MIB  # the backup GPT (33 blocks) in the last MiB
        head, tail = layout_table(size // SECTOR, derived_uuid("disk", root_hash), entries)
        with out.open("wb") as disk:
            disk.truncate(size)
            disk.write(head)
            for entry, source in zip(entries, contents.values()):
                copy_into(source, disk, entry.offset)
            disk.seek(size - len(tail))
            disk.write(tail)
    return DiskLayout(
        size=size, disk_guid=derived_uuid("disk", root_hash), partitions=tuple(entries), root_hash=root_hash,
        salt=root.verity.salt, verity_uuid=root.verity.uuid, root_filesystem_uuid=root.filesystem_uuid,
        workload_filesystem_uuid=workload.filesystem_uuid, esp_volume_id=esp_volume_id,
        workload_digest=workload.digest, left_out=workload.left_out,
    )


def build_disk(
    out: Path, *, make_uki: Callable[[str], bytes], rootfs_dir: Path, workload_dir: Path, source_date_epoch: int
) -> DiskLayout:
    """The whole disk in the order the measurements impose: the root and its hash tree, then the
    UKI (``make_uki`` receives the command-line fragment ``roothash=HEX`` it must carry), the
    workload partition, and the ESP and GPT."""
    with tempfile.TemporaryDirectory(prefix="cvm-attest-build-", dir=out.parent) as tmp:
        work = Path(tmp)
        root = build_root(rootfs_dir, work, source_date_epoch=source_date_epoch)
        uki = make_uki(root.cmdline)
        workload = build_workload(workload_dir, work, source_date_epoch=source_date_epoch)
        return assemble_disk(out, root=root, uki=uki, workload=workload, source_date_epoch=source_date_epoch)


# --- reading a disk back -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiskReport:
    """A disk read back by :func:`inspect_disk`; it exists only once the root has verified."""

    size: int
    table: PartitionTable
    cmdline: str
    root_hash: bytes
    salt: bytes
    verity_uuid: uuid.UUID
    uki_sha256: bytes
    uki_authenticode: bytes
    workload_digest: bytes
    workload_events: tuple[WorkloadEvent, ...]

    @property
    def workload_pcr23(self) -> bytes:
        """PCR23 after the agent measures this workload (``offchain.abi.workload``)."""
        return replay(self.workload_events)

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "disk_guid": str(self.table.disk_guid),
            "partitions": [
                {"number": n, "name": e.name, "type": str(e.type_guid), "guid": str(e.guid), "offset": e.offset,
                 "size": e.size}
                for n, e in self.table.entries
            ],
            "cmdline": self.cmdline,
            "root_hash": self.root_hash.hex(),
            "salt": self.salt.hex(),
            "verity_uuid": str(self.verity_uuid),
            "verity": "verified",
            "uki_sha256": self.uki_sha256.hex(),
            "uki_authenticode_sha256": self.uki_authenticode.hex(),
            "workload_digest": self.workload_digest.hex(),
            "workload_pcr23": self.workload_pcr23.hex(),
        }


def _only(table: PartitionTable, name: str) -> GptEntry:
    type_guid = PARTITION_TYPES[name]
    found = table.by_type(type_guid)
    if not found:
        raise ParseError(Reason.IMAGE_PARTITION_MISSING, f"no {name} partition (type {type_guid})", partition=name)
    if len(found) > 1:
        raise ParseError(Reason.IMAGE_DISK_MALFORMED, f"{len(found)} partitions of type {type_guid} ({name})",
                         partition=name)
    return found[0][1]


def _root_hash_of(cmdline: str, root: GptEntry, verity: GptEntry) -> bytes:
    found = _root_hashes(cmdline)
    if len(found) != 1:
        raise VerificationError(Reason.IMAGE_ROOT_HASH_MISMATCH, f"the UKI's command line carries {len(found)} "
                                f"roothash= words, not one: {cmdline!r}")
    try:
        root_hash = bytes.fromhex(found[0])
    except ValueError:
        root_hash = b""
    if len(root_hash) != 32:
        raise VerificationError(Reason.IMAGE_ROOT_HASH_MISMATCH, f"roothash={found[0]} is not a SHA-256 in hex")
    if (root.guid, verity.guid) != (uuid.UUID(bytes=root_hash[:16]), uuid.UUID(bytes=root_hash[16:])):
        raise VerificationError(
            Reason.IMAGE_ROOT_HASH_MISMATCH,
            "the root and verity partition GUIDs are not the two halves of the command line's root hash: "
            "the boot would not find them", root_guid=str(root.guid), verity_guid=str(verity.guid),
        )
    return root_hash


def inspect_disk(path: Path) -> DiskReport:
    """Read ``path`` back: GPT (both copies, CRCs), the four partitions by type, the UKI on the ESP
    and its command line's root hash, ``veritysetup verify`` of the root partition against the
    verity partition and that root hash, and the workload partition's tree digest and PCR23 events."""
    size = path.stat().st_size
    with path.open("rb") as disk, tempfile.TemporaryDirectory(prefix="cvm-attest-inspect-") as tmp:
        work = Path(tmp)

        def read_at(offset: int, length: int) -> bytes:
            disk.seek(offset)
            data = disk.read(length)
            if len(data) != length:
                raise ParseError(Reason.IMAGE_DISK_MALFORMED, f"the disk ends before byte {offset + length}")
            return data

        table = read_gpt(read_at, size)
        esp, root, verity, workload = (_only(table, name) for name in (ESP_NAME, ROOT_NAME, VERITY_NAME, WORKLOAD_NAME))
        uki_bytes = read_boot_loader(path, esp.offset)
        uki = Uki.from_bytes(uki_bytes)
        cmdline = _cmdline_of(uki)
        root_hash = _root_hash_of(cmdline, root, verity)
        for entry, name in ((root, "root"), (verity, "verity"), (workload, "workload.erofs")):
            _copy_out(disk, entry, work / name)
        verify_verity(work / "root", work / "verity", root_hash)
        fields = superblock(work / "verity")
        extract_erofs(work / "workload.erofs", work / "workload")
        return DiskReport(
            size=size, table=table, cmdline=cmdline, root_hash=root_hash, salt=bytes.fromhex(fields["Salt"]),
            verity_uuid=uuid.UUID(fields["UUID"]), uki_sha256=hashlib.sha256(uki_bytes).digest(),
            uki_authenticode=authenticode_digest(uki.pe), workload_digest=tree_digest(work / "workload"),
            workload_events=tuple(measure_directory(work / "workload")),
        )
