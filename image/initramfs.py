"""The image's own initramfs: busybox, veritysetup, the modules the root needs, and ``/init``.

``/init`` (``image/initramfs-files/init``, a POSIX shell script) opens the root with dm-verity under
the root hash from the kernel command line and never mounts it otherwise (docs/image.md, "The
initramfs"). The archive is written here: cpio ``newc`` (the format the kernel unpacks,
Documentation/driver-api/early-userspace/buffer-format.rst), entries in path order, inode numbers
counted from 1, owner 0:0, every mtime ``source_date_epoch``; gzip with MTIME 0 and no file name.
The same inputs therefore give the same bytes, and the UKI's ``.initrd`` (PCR9, PCR11) with them.
"""

from __future__ import annotations

import gzip
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from image.commands import run_tool
from image.packages import Kernel
from offchain.errors import BuildError, Reason, RequestError

INIT_SCRIPT = Path(__file__).with_name("initramfs-files") / "init"
#: What the root needs before it can be mounted: device-mapper and dm-verity and EROFS, which must
#: load (``/lib/modules/load-order``), and the disk drivers of QEMU and the clouds (virtio-blk and
#: virtio-scsi, NVMe on AWS, Hyper-V storage on Azure, SCSI disks), of which only the machine's own
#: load (``/lib/modules/load-order.drivers``: Hyper-V's VMBus refuses to load outside Hyper-V).
#: A name the kernel has built in is skipped; one it has neither way fails the build.
REQUIRED_MODULES = ("dm-mod", "dm-verity", "erofs")
DRIVER_MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "nvme", "hv_storvsc")
MODULES = REQUIRED_MODULES + DRIVER_MODULES
#: The busybox applets /init runs (busybox-static 1.35: each is a link to /bin/busybox).
APPLETS = ("sh", "mount", "insmod", "mkdir", "cat", "grep", "sed", "sleep", "chmod", "poweroff", "switch_root")
VERITYSETUP = "usr/sbin/veritysetup"
#: glibc loads libgcc_s with dlopen when a thread is cancelled; readelf cannot see that.
DLOPENED = ("libgcc_s.so.1",)
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib64", "lib64", "usr/lib", "lib")
DIRECTORIES = ("dev", "proc", "sys", "run", "sysroot", "usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu",
               "usr/lib64")
#: Merged /usr, as in the root: the script and the libraries use either path.
LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_DIRECTORY_MODE = stat.S_IFDIR | 0o755


@dataclass(frozen=True, slots=True)
class CpioEntry:
    """One member: a directory, a regular file, a symbolic link (``data`` is its target) or a
    character device (``rdev`` its major and minor)."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        path = PurePosixPath(self.path)
        if path.is_absolute() or ".." in path.parts or not self.path or str(path) != self.path:
            raise RequestError(Reason.INPUT_INVALID, f"a cpio member needs a normalised relative path, got {self.path!r}")
        if stat.S_IFMT(self.mode) not in (stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK, stat.S_IFCHR):
            raise RequestError(Reason.INPUT_INVALID, f"{self.path}: unsupported file type {stat.S_IFMT(self.mode):o}")


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _newc_header(*, ino: int, mode: int, nlink: int, mtime: int, size: int, rdev: tuple[int, int],
                 name_size: int) -> bytes:
    # c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize c_devmajor c_devminor c_rdevmajor c_rdevminor
    # c_namesize c_check: thirteen 8-digit hexadecimal fields after the magic.
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], name_size, 0)
    return NEWC_MAGIC + b"".join(b"%08X" % value for value in fields)


def write_newc(entries: Iterable[CpioEntry], *, mtime: int) -> bytes:
    """The cpio ``newc`` archive of ``entries``, sorted by path, with the trailer. A path given
    twice is refused (the kernel would silently keep the last)."""
    ordered = sorted(entries, key=lambda e: e.path)
    paths = [e.path for e in ordered]
    if len(set(paths)) != len(paths):
        twice = sorted({p for p in paths if paths.count(p) > 1})
        raise RequestError(Reason.INPUT_INVALID, f"cpio members given twice: {', '.join(twice)}")
    if not 0 <= mtime <= 0xFFFFFFFF:
        raise RequestError(Reason.INPUT_INVALID, f"a cpio mtime is 32 bits, got {mtime}")
    out = bytearray()
    for ino, entry in enumerate(ordered, start=1):
        name = entry.path.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(entry.mode) else 1
        out += _newc_header(ino=ino, mode=entry.mode, nlink=nlink, mtime=mtime, size=len(entry.data),
                            rdev=entry.rdev, name_size=len(name))
        out += name + _pad4(110 + len(name))
        out += entry.data + _pad4(len(entry.data))
    name = TRAILER.encode() + b"\0"
    out += _newc_header(ino=0, mode=0, nlink=1, mtime=0, size=0, rdev=(0, 0), name_size=len(name))
    out += name + _pad4(110 + len(name))
    return bytes(out)


def compress(archive: bytes) -> bytes:
    """gzip (RFC 1952) with MTIME 0 and no file name, level 9."""
    return gzip.compress(archive, compresslevel=9, mtime=0)


def module_load_order(modules: Path, names: Iterable[str]) -> list[str]:
    """The modules to ``insmod`` for ``names``, dependencies first, each once, as paths relative to
    ``modules`` (``lib/modules/<release>``), read from depmod's ``modules.dep``. Names compare with
    ``-`` and ``_`` alike, as the kernel does; one built in (``modules.builtin``) needs nothing."""
    def key(path: str) -> str:
        return re.sub(r"\.ko(\.[a-z]+)?$", "", PurePosixPath(path).name).replace("-", "_")

    dependencies: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        module, sep, needs = line.partition(":")
        if sep:
            dependencies[module] = needs.split()
            by_name[key(module)] = module
    builtin = {key(line) for line in (modules / "modules.builtin").read_text().split()}
    order: list[str] = []

    def visit(module: str, chain: tuple[str, ...]) -> None:
        if module in order:
            return
        if module in chain:
            raise BuildError(Reason.IMAGE_TOOL_FAILED, f"modules.dep has a cycle: {' -> '.join((*chain, module))}")
        # modules.dep lists every dependency, direct or not, each before what needs it when reversed.
        for needed in reversed(dependencies.get(module, [])):
            visit(needed, (*chain, module))
        order.append(module)

    for name in names:
        wanted = name.replace("-", "_")
        if wanted in builtin:
            continue
        if wanted not in by_name:
            raise BuildError(Reason.IMAGE_TOOL_FAILED, f"the kernel has no module {name}, built in or loadable")
        visit(by_name[wanted], ())
    return order


def _needed(binary: Path) -> tuple[list[str], str | None]:
    """The ``DT_NEEDED`` sonames and the ``PT_INTERP`` path of an ELF file (binutils' readelf)."""
    dynamic = run_tool(["readelf", "--dynamic", "--wide", binary]).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    program = run_tool(["readelf", "--program-headers", "--wide", binary]).stdout
    interpreter = re.search(r"Requesting program interpreter: ([^\]]+)\]", program)
    return needed, interpreter[1] if interpreter else None


def _inside(root: Path, path: PurePosixPath, depth: int = 0) -> Path:
    """``path`` of the tree at ``root``, its symbolic links followed inside that tree, never out of it."""
    if depth > 40:
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"too many symbolic links resolving {path} in {root}")
    current = PurePosixPath("/")
    for part in path.parts[1:]:
        candidate = current / part
        real = root / candidate.relative_to("/")
        if real.is_symlink():
            target = PurePosixPath(str(real.readlink()))
            resolved = _inside(root, target if target.is_absolute() else current / target, depth + 1)
            current = PurePosixPath("/") / resolved.relative_to(root)
        else:
            current = candidate
    return root / current.relative_to("/")


def _in_usr(path: str) -> str:
    """``path`` (absolute) as a member name under ``usr/``: ``/lib64/x`` is ``usr/lib64/x``."""
    first, _, rest = path.lstrip("/").partition("/")
    return f"{LINKS[first]}/{rest}" if first in LINKS else path.lstrip("/")


def library_closure(root: Path, binary: str, extra: Iterable[str] = ()) -> dict[str, Path]:
    """Every shared library ``binary`` (a path in ``root``) needs, directly or not, plus the
    sonames in ``extra``, and its interpreter: path in the initramfs to the file in ``root``,
    found in ``root``'s library directories (never the build host's)."""
    files: dict[str, Path] = {}
    pending = [_inside(root, PurePosixPath("/") / binary)]
    wanted = list(extra)
    while pending or wanted:
        if pending:
            needed, interpreter = _needed(pending.pop())
            wanted += needed
            if interpreter is not None and _in_usr(interpreter) not in files:
                files[_in_usr(interpreter)] = _inside(root, PurePosixPath(interpreter))
            continue
        soname = wanted.pop()
        target = f"usr/lib/x86_64-linux-gnu/{soname}"
        if target in files:
            continue
        found = next((_inside(root, PurePosixPath("/") / d / soname) for d in LIBRARY_DIRS
                      if _inside(root, PurePosixPath("/") / d / soname).is_file()), None)
        if found is None:
            raise BuildError(Reason.IMAGE_TOOL_FAILED, f"{binary} needs {soname}, which the root does not have")
        files[target] = found
        pending.append(found)
    return files


def _file(path: str, source: Path, mode: int | None = None) -> CpioEntry:
    bits = stat.S_IMODE(source.stat().st_mode) if mode is None else mode
    return CpioEntry(path, stat.S_IFREG | bits, source.read_bytes())


def _with_parents(entries: Mapping[str, CpioEntry]) -> list[CpioEntry]:
    """``entries`` and a directory entry for every parent they lack (through the merged-/usr links)."""
    out = dict(entries)
    for path in list(entries):
        parent = PurePosixPath(path).parent
        while str(parent) != ".":
            key = str(parent)
            if key not in out:
                out[key] = CpioEntry(key, _DIRECTORY_MODE)
            parent = parent.parent
    return list(out.values())


def initramfs_entries(*, busybox: Path, rootfs: Path, kernel: Kernel, modules: Iterable[str] = REQUIRED_MODULES,
                      drivers: Iterable[str] = DRIVER_MODULES, init: Path = INIT_SCRIPT) -> list[CpioEntry]:
    """The members: ``/init``, busybox and its applet links, veritysetup and its libraries from the
    built root, the kernel modules of ``modules`` with their dependencies and ``/lib/modules/load-order``,
    ``/dev/console`` (the kernel opens it for /init's output before devtmpfs is mounted)."""
    entries: dict[str, CpioEntry] = {}

    def add(entry: CpioEntry) -> None:
        entries[entry.path] = entry

    for directory in DIRECTORIES:
        add(CpioEntry(directory, _DIRECTORY_MODE))
    for link, target in LINKS.items():
        add(CpioEntry(link, stat.S_IFLNK | 0o777, target.encode()))
    add(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    add(_file("init", init, 0o755))
    add(_file("usr/bin/busybox", busybox, 0o755))
    for applet in APPLETS:
        add(CpioEntry(f"usr/bin/{applet}", stat.S_IFLNK | 0o777, b"busybox"))
    add(_file(VERITYSETUP, _inside(rootfs, PurePosixPath("/") / VERITYSETUP), 0o755))
    for path, source in library_closure(rootfs, VERITYSETUP, DLOPENED).items():
        add(_file(path, source, 0o755))
    order = module_load_order(kernel.modules, modules)
    driver_order = [m for m in module_load_order(kernel.modules, drivers) if m not in order]
    base = f"usr/lib/modules/{kernel.release}"
    for module in order + driver_order:
        add(_file(f"{base}/{module}", kernel.modules / module, 0o644))
    for name, listed in (("load-order", order), ("load-order.drivers", driver_order)):
        add(CpioEntry(f"usr/lib/modules/{name}", stat.S_IFREG | 0o644,
                      "".join(f"/lib/modules/{kernel.release}/{module}\n" for module in listed).encode()))
    return _with_parents(entries)


def build_initramfs(*, busybox: Path, rootfs: Path, kernel: Kernel, source_date_epoch: int) -> bytes:
    """The gzip-compressed initramfs, byte-identical for the same inputs and ``source_date_epoch``."""
    entries = initramfs_entries(busybox=busybox, rootfs=rootfs, kernel=kernel)
    return compress(write_newc(entries, mtime=source_date_epoch))
