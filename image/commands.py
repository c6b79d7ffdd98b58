"""Running the external tools the disk build uses (erofs-utils, cryptsetup, dosfstools, mtools, qemu-utils).

Every tool runs with a fixed environment: ``LC_ALL=C`` and ``TZ=UTC`` (mtools writes FAT times in
local time), ``SOURCE_DATE_EPOCH`` only when the caller passes one (so a value in the builder's own
environment never leaks into a build that did not ask for it), and no mtools configuration file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from offchain.errors import BuildError, Reason

#: The Debian package that provides each tool, for the error message when it is missing.
PACKAGES = {
    "mkfs.erofs": "erofs-utils",
    "fsck.erofs": "erofs-utils",
    "veritysetup": "cryptsetup-bin",
    "mkfs.vfat": "dosfstools",
    "mmd": "mtools",
    "mcopy": "mtools",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "dpkg-query": "dpkg",
    "depmod": "kmod",
    "ldconfig": "libc-bin",
    "readelf": "binutils",
}
TIMEOUT_S = 600


def tool_environment(source_date_epoch: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH" and not k.startswith("MTOOLS")}
    env.update({"LC_ALL": "C", "TZ": "UTC", "MTOOLSRC": os.devnull, "MTOOLS_SKIP_CHECK": "1"})
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(source_date_epoch)
    return env


def find_tool(name: str) -> str | None:
    """The tool's path on ``PATH`` or in ``/usr/sbin`` and ``/sbin`` (where Debian puts ``veritysetup``,
    ``mkfs.vfat`` and ``sfdisk``, outside an ordinary user's ``PATH``)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"]))


def run_tool(
    args: Sequence[str | Path], *, source_date_epoch: int | None = None, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (in ``cwd``, else the current directory); a missing tool, a time-out and (with
    ``check``) a non-zero exit are a :class:`BuildError` naming the tool and its standard error."""
    argv = [str(a) for a in args]
    tool = Path(argv[0]).name
    argv[0] = find_tool(argv[0]) or argv[0]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
            env=tool_environment(source_date_epoch), stdin=subprocess.DEVNULL, cwd=cwd,
        )
    except FileNotFoundError:
        package = PACKAGES.get(tool, "?")
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"{tool} not found (Debian package {package})", tool=tool) from None
    except subprocess.TimeoutExpired:
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"{tool} did not finish within {TIMEOUT_S} s", tool=tool) from None
    if check and done.returncode != 0:
        raise BuildError(
            Reason.IMAGE_TOOL_FAILED, f"{tool} failed: {(done.stderr or done.stdout).strip()}",
            tool=tool, returncode=done.returncode,
        )
    return done
