"""The Debian packages of the image, each at the version ``image/packages.lock`` names.

The lock is a text file of ``name=version`` lines (``#`` starts a comment). It names every package
the root filesystem holds, dependencies included, and the two the boot path takes from the archive
without installing them (:data:`KERNEL_PACKAGE`, :data:`BUSYBOX_PACKAGE`, :data:`STUB_PACKAGE`). A package the build
asks for that the lock does not name is ``image.package_unlocked``; a locked version the archive no
longer has is ``image.package_unavailable``, both naming the package (docs/image.md, "The root
filesystem and its lock").

Single packages are fetched with ``apt-get download NAME=VERSION`` into a cache directory (apt
checks each against the archive's signed index) and unpacked with ``dpkg-deb -x``, never installed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from image.commands import run_tool
from offchain.errors import BuildError, ParseError, Reason

LOCK_FILE = Path(__file__).with_name("packages.lock")
#: The signed kernel (Debian's linux-signed-amd64): its ``vmlinuz`` goes into the UKI, its modules
#: into the initramfs and the root. Debian's ``linux-image-cloud-amd64`` depends on it.
KERNEL_PACKAGE = "linux-image-6.1.0-57-cloud-amd64"
#: The initramfs's shell and tools: a static busybox, from the archive rather than the build host.
BUSYBOX_PACKAGE = "busybox-static"
#: systemd's EFI stub (``linuxx64.efi.stub``), the UKI's base: from the same systemd release as the root.
STUB_PACKAGE = "systemd-boot-efi"
STUB_PATH = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
BOOT_PACKAGES = (KERNEL_PACKAGE, BUSYBOX_PACKAGE, STUB_PACKAGE)

#: Debian Policy 5.6.1 (package names) and 5.6.12 (versions: [epoch:]upstream[-revision]).
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
#: What apt says when an archive lacks a version or a package (apt 2.6).
_APT_MISSING = (
    re.compile(r"Version '(?P<version>[^']+)' for '(?P<name>[^']+)' was not found"),
    re.compile(r"Unable to locate package (?P<name>\S+)"),
)


@dataclass(frozen=True, slots=True)
class PackageLock:
    """The parsed lock: package name to exact Debian version."""

    versions: Mapping[str, str]

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse the lock's text; a line that is not ``name=version`` or a name given twice is
        ``image.lock.malformed`` with its line number."""
        versions: dict[str, str] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = (part.strip() for part in line.partition("="))
            if not sep or not _NAME.fullmatch(name) or not _VERSION.fullmatch(version):
                raise ParseError(Reason.IMAGE_LOCK_MALFORMED, f"line {number} is not name=version: {raw!r}",
                                 line=number)
            if name in versions:
                raise ParseError(Reason.IMAGE_LOCK_MALFORMED, f"line {number} locks {name} a second time",
                                 line=number, package=name)
            versions[name] = version
        return cls(versions=dict(sorted(versions.items())))

    @classmethod
    def read(cls, path: Path = LOCK_FILE) -> Self:
        return cls.parse(path.read_text())

    def version(self, name: str) -> str:
        """The locked version of ``name``; ``image.package_unlocked`` naming it when there is none."""
        try:
            return self.versions[name]
        except KeyError:
            raise BuildError(Reason.IMAGE_PACKAGE_UNLOCKED, f"{name} has no locked version in {LOCK_FILE.name}",
                             package=name) from None

    def pins(self, names: Iterable[str]) -> list[str]:
        """``name=version`` for each of ``names``, in order (what apt takes to install exactly that)."""
        return [f"{name}={self.version(name)}" for name in names]

    def to_text(self, header: str) -> str:
        """The lock file's text: ``header`` as comment lines, then one sorted ``name=version`` a line."""
        comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
        return comments + "".join(f"{name}={version}\n" for name, version in sorted(self.versions.items()))


def unavailable_package(output: str, lock: PackageLock) -> BuildError | None:
    """``image.package_unavailable`` naming the package when apt's ``output`` says the archive lacks
    a package or a version it was asked for, else None."""
    for pattern in _APT_MISSING:
        match = pattern.search(output)
        if match:
            name = match["name"]
            version = lock.versions.get(name, "")
            return BuildError(Reason.IMAGE_PACKAGE_UNAVAILABLE,
                              f"the archive has no {name} {version}".rstrip() + " (update image/packages.lock)",
                              package=name, version=version)
    return None


def deb_file_name(name: str, version: str, architecture: str) -> str:
    """The file name apt gives a downloaded package (``:`` of an epoch written ``%3a``)."""
    return f"{name}_{version.replace(':', '%3a')}_{architecture}.deb"


def deb_fields(deb: Path) -> dict[str, str]:
    """Package, Version and Architecture from the package's control file."""
    out = run_tool(["dpkg-deb", "--show", "--showformat=${Package}\\n${Version}\\n${Architecture}\\n", deb]).stdout
    package, version, architecture = out.splitlines()[:3]
    return {"Package": package, "Version": version, "Architecture": architecture}


def fetch_deb(name: str, lock: PackageLock, cache: Path) -> Path:
    """The ``.deb`` of ``name`` at its locked version, from ``cache`` or downloaded into it."""
    version = lock.version(name)
    cache.mkdir(parents=True, exist_ok=True)
    for architecture in ("amd64", "all"):
        cached = cache / deb_file_name(name, version, architecture)
        if cached.is_file() and deb_fields(cached) == {"Package": name, "Version": version, "Architecture": architecture}:
            return cached
    done = run_tool(["apt-get", "download", f"{name}={version}"], cwd=cache, check=False)
    if done.returncode != 0:
        missing = unavailable_package(done.stderr + done.stdout, lock)
        if missing is not None:
            raise missing
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"apt-get download {name}={version} failed: {done.stderr.strip()}",
                         tool="apt-get", package=name)
    for architecture in ("amd64", "all"):
        fetched = cache / deb_file_name(name, version, architecture)
        if fetched.is_file():
            return fetched
    raise BuildError(Reason.IMAGE_TOOL_FAILED, f"apt-get download left no package file for {name}={version}",
                     tool="apt-get", package=name)


def extract_deb(deb: Path, into: Path) -> Path:
    """Unpack the files of ``deb`` (no maintainer scripts run) into the new directory ``into``."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    run_tool(["dpkg-deb", "--extract", deb, into])
    return into


@dataclass(frozen=True, slots=True)
class Kernel:
    """The signed kernel package, unpacked: ``vmlinuz`` and ``lib/modules/<release>`` with the
    ``modules.dep`` that ``depmod`` wrote (Debian's package leaves that to its postinst)."""

    release: str
    vmlinuz: Path
    modules: Path
    deb: Path


def fetch_kernel(lock: PackageLock, cache: Path, into: Path) -> Kernel:
    """Fetch and unpack :data:`KERNEL_PACKAGE` into ``into`` and index its modules."""
    deb = fetch_deb(KERNEL_PACKAGE, lock, cache)
    extract_deb(deb, into)
    releases = sorted(p.name for p in (into / "lib" / "modules").iterdir())
    if len(releases) != 1:
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"{deb.name} holds modules of {releases}, not one kernel release")
    release = releases[0]
    vmlinuz = into / "boot" / f"vmlinuz-{release}"
    if not vmlinuz.is_file():
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"{deb.name} has no boot/vmlinuz-{release}")
    run_tool(["depmod", "--basedir", into, release])
    return Kernel(release=release, vmlinuz=vmlinuz, modules=into / "lib" / "modules" / release, deb=deb)


def fetch_busybox(lock: PackageLock, cache: Path, into: Path) -> Path:
    """The static ``busybox`` binary of :data:`BUSYBOX_PACKAGE`, unpacked into ``into``."""
    extract_deb(fetch_deb(BUSYBOX_PACKAGE, lock, cache), into)
    busybox = into / "bin" / "busybox"
    if not busybox.is_file():
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"{BUSYBOX_PACKAGE} has no bin/busybox")
    return busybox


def fetch_stub(lock: PackageLock, cache: Path, into: Path) -> Path:
    """systemd's EFI stub of :data:`STUB_PACKAGE`, unpacked into ``into``."""
    extract_deb(fetch_deb(STUB_PACKAGE, lock, cache), into)
    stub = into / STUB_PATH
    if not stub.is_file():
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"{STUB_PACKAGE} has no {STUB_PATH}")
    return stub
