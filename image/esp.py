"""The EFI system partition: a FAT32 image holding the UKI as ``\\EFI\\BOOT\\BOOTX64.EFI``, written
and read without mounting.

UEFI Specification 2.10, 13.3 "File System Format" (the ESP is FAT32 on fixed disks) and 3.5.1.1
"Removable Media Boot Behavior" (``\\EFI\\BOOT\\BOOTX64.EFI`` for x86-64, which firmware boots
without any boot variable). ``mkfs.vfat`` (dosfstools 4.2) formats with 512-byte sectors, a fixed
volume ID (``-i``) and ``--invariant`` (its other time- or random-based values are constants);
``mmd`` and ``mcopy`` (mtools 4.0) create the directories and the file, taking their FAT times
from ``SOURCE_DATE_EPOCH`` in UTC. All three names are 8.3 upper case: no long-name entries.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from image.commands import run_tool
from offchain.errors import ParseError, Reason

BOOT_LOADER = "::/EFI/BOOT/BOOTX64.EFI"
LABEL = "ESP"
#: FAT32 needs at least 65,525 clusters (33 MiB of 512-byte clusters); 64 MiB leaves room.
MIN_SIZE = 64 << 20


def esp_size(uki_size: int) -> int:
    """At least 64 MiB and room for two UKIs (a new one written next to the old), in whole MiB."""
    return max(MIN_SIZE, -(-2 * uki_size // (1 << 20)) << 20)


def make_esp(out: Path, uki: bytes, *, size: int, volume_id: int, source_date_epoch: int) -> None:
    """Write a FAT32 image of ``size`` bytes to ``out`` with ``uki`` as the removable-media boot loader."""
    with out.open("wb") as f:
        f.truncate(size)
    run_tool(["mkfs.vfat", "-F", "32", "-S", "512", "--invariant", "-i", f"{volume_id:08x}", "-n", LABEL, out])
    with tempfile.TemporaryDirectory(prefix="cvm-attest-esp-") as tmp:
        source = Path(tmp) / "BOOTX64.EFI"
        source.write_bytes(uki)
        run_tool(["mmd", "-i", out, "::/EFI", "::/EFI/BOOT"], source_date_epoch=source_date_epoch)
        run_tool(["mcopy", "-i", out, source, BOOT_LOADER], source_date_epoch=source_date_epoch)


def read_boot_loader(disk: Path, offset: int) -> bytes:
    """``\\EFI\\BOOT\\BOOTX64.EFI`` of the FAT filesystem at byte ``offset`` of ``disk``."""
    with tempfile.TemporaryDirectory(prefix="cvm-attest-esp-") as tmp:
        target = Path(tmp) / "BOOTX64.EFI"
        done = run_tool(["mcopy", "-n", "-i", f"{disk}@@{offset}", BOOT_LOADER, target], check=False)
        if done.returncode != 0 or not target.is_file():
            raise ParseError(
                Reason.IMAGE_DISK_MALFORMED,
                f"no \\EFI\\BOOT\\BOOTX64.EFI readable on the ESP at offset {offset}: {done.stderr.strip()}",
                offset=offset,
            )
        return target.read_bytes()


