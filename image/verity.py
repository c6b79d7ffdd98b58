"""dm-verity hash trees of the root filesystem, made and checked with cryptsetup's ``veritysetup``.

``veritysetup format`` (cryptsetup 2.6, on plain files: no device-mapper needed) writes the hash
device: a 512-byte superblock in the first 4 KiB block (format 1, SHA-256, 4 KiB data and hash
blocks, the salt, the UUID, the number of data blocks) and the hash tree after it. The salt and the
UUID are the caller's, so the hash device and the root hash are functions of the data alone.
``veritysetup verify`` recomputes the whole tree from the data and compares it with the root hash
(the kernel does the same block by block at run time, against the root hash from the command line).
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from image.commands import run_tool
from offchain.errors import BuildError, Reason, RequestError, VerificationError

HASH_ALGORITHM = "sha256"
SALT_SIZE = 32
ROOT_HASH_SIZE = 32


@dataclass(frozen=True, slots=True)
class VerityTree:
    """What ``veritysetup format`` produced for one data image."""

    root_hash: bytes
    salt: bytes
    uuid: uuid.UUID


def format_verity(data: Path, hash_device: Path, *, salt: bytes, verity_uuid: uuid.UUID) -> VerityTree:
    """Write the hash device of ``data`` to ``hash_device`` and return its root hash."""
    if len(salt) != SALT_SIZE:
        raise RequestError(Reason.INPUT_INVALID, f"the verity salt is {SALT_SIZE} bytes, got {len(salt)}")
    with tempfile.TemporaryDirectory(prefix="cvm-attest-verity-") as tmp:
        root_hash_file = Path(tmp) / "root-hash"
        run_tool(["veritysetup", "format", f"--hash={HASH_ALGORITHM}", "--data-block-size=4096",
                  "--hash-block-size=4096", f"--salt={salt.hex()}", f"--uuid={verity_uuid}",
                  f"--root-hash-file={root_hash_file}", data, hash_device])
        text = root_hash_file.read_text().strip()
    try:
        root_hash = bytes.fromhex(text)
    except ValueError:
        root_hash = b""
    if len(root_hash) != ROOT_HASH_SIZE:
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"veritysetup wrote no SHA-256 root hash: {text!r}")
    return VerityTree(root_hash=root_hash, salt=salt, uuid=verity_uuid)


def verify_verity(data: Path, hash_device: Path, root_hash: bytes) -> None:
    """Raise ``image.verity.mismatch`` unless the hash tree on ``hash_device`` is that of ``data``
    and its root is ``root_hash``."""
    done = run_tool(["veritysetup", "verify", data, hash_device, root_hash.hex()], check=False)
    if done.returncode != 0:
        raise VerificationError(
            Reason.IMAGE_VERITY_MISMATCH,
            f"the root filesystem does not verify against its hash partition and root hash {root_hash.hex()}: "
            f"{(done.stderr or done.stdout).strip()}",
            root_hash=root_hash.hex(),
        )


def superblock(hash_device: Path) -> dict[str, str]:
    """``veritysetup dump``: the superblock's fields by name (``UUID``, ``Salt``, ``Data blocks``, ...)."""
    out = run_tool(["veritysetup", "dump", hash_device]).stdout
    fields = {}
    for line in out.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields
