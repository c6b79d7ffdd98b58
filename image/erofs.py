"""Read-only EROFS filesystem images, built from a directory without mounting (erofs-utils 1.5).

``mkfs.erofs`` is run so that the image is a function of the directory's names, contents, modes
and extended attributes only: ``-U`` a fixed filesystem UUID, ``-T`` one fixed timestamp for every
inode (erofs-utils 1.5: ``-T`` sets the build time and every file's mtime to it), ``--all-root``
(every file owned by 0:0, whoever runs the build), no compression. Directories are laid out in
name order whatever order ``readdir`` returns (EROFS looks names up by binary search). The block
size is 4 KiB, the page size: the image length is a multiple of the dm-verity data block.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from image.commands import run_tool

BLOCK = 4096


def make_erofs(source: Path, out: Path, *, filesystem_uuid: uuid.UUID, timestamp: int, xattrs: bool) -> None:
    """Write the EROFS image of directory ``source`` to ``out``. ``xattrs=False`` stores none
    (``-x -1``): the host's labels (``security.selinux``) then never reach the image."""
    args: list[str | Path] = ["mkfs.erofs", "--quiet", f"-U{filesystem_uuid}", f"-T{timestamp}", "--all-root"]
    if not xattrs:
        args.append("-x-1")
    run_tool([*args, out, source])


def extract_erofs(image: Path, into: Path) -> None:
    """Unpack ``image`` into the new directory ``into`` with ``fsck.erofs --extract``, which also
    checks that every file decodes."""
    run_tool(["fsck.erofs", f"--extract={into}", image])
