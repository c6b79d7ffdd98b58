"""The root filesystem directory: a minimal Debian bookworm from mmdebstrap, every package at its locked
version, with cvm-agent installed from this repository's wheel and started by systemd.

:func:`build_rootfs` runs ``mmdebstrap --variant=minbase`` with an exact ``name=version`` for every
package of ``image/packages.lock`` (``image.packages``) but the kernel and busybox, which never enter
the root. Inside mmdebstrap's customize step (its hooks run with ``/proc``, ``/sys`` and ``/dev``
mounted in the new root) the root's own Python makes the agent's virtual environment and installs
cvm-agent and its dependencies from wheels built on the host (:func:`build_agent_wheels`), with
``--no-index``: nothing is fetched from PyPI inside the root. Then the build checks that the root
holds exactly the locked packages, adds the kernel's modules, and removes or fixes what would make
two builds differ (docs/image.md, "The root filesystem and its lock").
"""

from __future__ import annotations

import itertools
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from image.commands import run_tool
from image.packages import BOOT_PACKAGES, LOCK_FILE, Kernel, PackageLock, unavailable_package
from offchain.errors import BuildError, Reason, RequestError
from workload.compose import ComposeRules

SUITE = "bookworm"
#: The persistent apt cache of the build (git-ignored .cache/): a second build downloads nothing.
DEFAULT_APT_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "image" / "apt"
#: The archive this machine's apt uses (/etc/apt/sources.list.d/debian.sources).
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
#: What the image needs besides minbase's essential set; the lock adds their dependencies.
#: The libtss2 libraries are those tpm2-pytss links (esys, fapi, mu, rc, sys, tctildr) and the
#: device TCTI that tctildr loads for /dev/tpmrm0; cryptsetup-bin provides the initramfs's veritysetup;
#: netavark, aardvark-dns and iptables are podman's network backend and its firewall (podman only
#: recommends them; without them podman-compose cannot create the project's network); kmod's
#: modprobe is what the kernel runs to load a module on demand (overlay for podman's storage, the
#: bridge, veth and netfilter modules for its network), and what podman runs itself.
ROOT_PACKAGES = (
    "systemd", "systemd-sysv", "systemd-resolved", "podman", "podman-compose", "netavark", "aardvark-dns",
    "iptables", "kmod", "python3", "python3-venv",
    "ca-certificates", "cryptsetup-bin",
    "libtss2-esys-3.0.2-0", "libtss2-fapi1", "libtss2-mu0", "libtss2-rc0", "libtss2-sys1", "libtss2-tctildr0",
    "libtss2-tcti-device0",
)
#: The agent's platforms (agent.config.PlatformName; a test keeps the two equal).
PLATFORMS = ("snp", "azure", "sim", "svsm")
#: The root's Python (bookworm's python3.11): the host's wheels must be built for the same.
ROOT_PYTHON = (3, 11)
AGENT_VENV = "/opt/cvm-agent"
#: Where the initramfs mounts the workload partition, read-only. It exists in the root. The agent
#: copies it into :data:`AGENT_WORKLOAD` (memory) at start and runs that copy: updates and sealed
#: secrets go there, never to the disk, and the bytes it measures are the bytes that run.
WORKLOAD_MOUNT = "/srv/cvm-workload"
#: The agent's workload directory: its default (STATE_DIR/workload), on the /var/lib/cvm-agent tmpfs.
AGENT_WORKLOAD = str(ComposeRules().workload_dir)
#: The root is read-only; the initramfs mounts a tmpfs on each of these (they exist in the root).
#: The agent's state (agent.config.DEFAULT_STATE_DIR) and podman's storage are among them.
WRITABLE_DIRS = ("/run", "/tmp", "/var/tmp", "/var/log", "/var/lib/systemd", "/var/lib/containers",
                 "/var/lib/cvm-agent")
#: systemd 252's PCR11 phase words from userspace: masked, so PCR11 stays what systemd-stub
#: measured (docs/image.md, "What the boot measures").
MASKED_UNITS = ("systemd-pcrphase-sysinit.service", "systemd-pcrphase.service",
                "systemd-pcrphase-initrd.service")
ENABLED_UNITS = ("cvm-agent.service", "systemd-networkd.service", "systemd-resolved.service")


#: Where the image keeps the SHA-256 of the agent's API token (``--api-token-sha256``).
TOKEN_FILE = "/etc/cvm-agent/token"


def agent_unit(platform: str, *, token: bool = False) -> str:
    """``cvm-agent.service``: the agent for ``platform``, running the workload partition's content
    copied into memory (:data:`AGENT_WORKLOAD`); with ``token``, its token-guarded routes (workload update, golden consents) check
    :data:`TOKEN_FILE`, else they stay disabled."""
    if platform not in PLATFORMS:
        raise RequestError(Reason.INPUT_INVALID, f"platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
    token_option = f" --token-file {TOKEN_FILE}" if token else ""
    return (
        "[Unit]\n"
        "Description=cvm-attest agent: attestation evidence and the measured workload\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={AGENT_VENV}/bin/cvm-agent --platform {platform} --workload-dir {AGENT_WORKLOAD} "
        f"--workload-from {WORKLOAD_MOUNT}{token_option}\n"
        "Restart=on-failure\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


#: A test image (``--platform sim``) forwards the journal to the serial console, so that the
#: workload's output and the agent's log can be read there. Never in a real CVM's image: the
#: serial console is the host's to read.
JOURNAL_TO_CONSOLE = "[Journal]\nForwardToConsole=yes\nMaxLevelConsole=info\n"

#: podman keeps its network definitions in /etc/containers/networks, which is read-only here; they
#: are made at run time (the project's network by podman-compose), so they live in /run.
CONTAINERS_CONF = '[network]\nnetwork_config_dir = "/run/containers/networks"\n'

#: DHCP on every Ethernet interface (the clouds' and QEMU's virtual NICs), by systemd-networkd.
NETWORK_UNIT = "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n"


#: What the cvm-attest wheel is built from (pyproject.toml's packages and the files it names).
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE")
SOURCE_PACKAGES = ("offchain", "onchain", "agent", "workload", "image", "localstack", "demos")


def build_agent_wheels(source: Path, constraints: Path, out: Path, *, source_date_epoch: int | None = None) -> list[Path]:
    """Wheels of cvm-attest from ``source`` (``pip wheel --no-deps``) and of everything its
    ``agent`` extra needs at the versions of ``constraints``, into ``out``; the host's Python must
    be the root's (:data:`ROOT_PYTHON`), since compiled wheels are chosen for it. With
    ``source_date_epoch`` the cvm-attest wheel's member times are that (``wheel`` honours
    ``SOURCE_DATE_EPOCH``), so its digest does not depend on the checkout's file times."""
    if sys.version_info[:2] != ROOT_PYTHON:
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"the agent's wheels must be built with Python "
                         f"{ROOT_PYTHON[0]}.{ROOT_PYTHON[1]}, the root's; this is {sys.version.split()[0]}")
    out.mkdir(parents=True, exist_ok=True)
    pip: list[str | Path] = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                            "--wheel-dir", out]
    with tempfile.TemporaryDirectory(prefix="cvm-attest-wheel-") as tmp:
        # A clean copy of the sources: setuptools' build/ in the checkout keeps files deleted since.
        clean = Path(tmp) / "src"
        clean.mkdir()
        for name in SOURCE_FILES:
            shutil.copy2(source / name, clean / name)
        for name in SOURCE_PACKAGES:
            shutil.copytree(source / name, clean / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        run_tool([*pip, "--no-deps", clean], source_date_epoch=source_date_epoch)
    wheels = sorted(out.glob("cvm_attest-*.whl"))
    if len(wheels) != 1:
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"expected one cvm_attest wheel in {out}, found {len(wheels)}")
    run_tool([*pip, "--constraint", constraints, f"{wheels[0]}[agent]"])
    return sorted(out.glob("*.whl"))


def _customize_script(constraints: str, platform: str) -> str:
    """What runs inside the new root (``chroot``, environment cleared) before mmdebstrap cleans up."""
    pip = (f"{AGENT_VENV}/bin/python -m pip install --no-index --find-links /tmp/cvm-stage/wheels "
           f"--constraint /tmp/cvm-stage/{constraints} --no-cache-dir --disable-pip-version-check --quiet")
    return "\n".join([
        "set -eu",
        f"python3 -m venv {AGENT_VENV}",
        f"{pip} 'cvm-attest[agent]'",
        "install -m 0644 /tmp/cvm-stage/cvm-agent.service /etc/systemd/system/cvm-agent.service",
        "install -m 0644 /tmp/cvm-stage/80-ethernet.network /etc/systemd/network/80-ethernet.network",
        *(["install -D -m 0644 /tmp/cvm-stage/journal-console.conf /etc/systemd/journald.conf.d/console.conf"]
          if platform == "sim" else []),
        "install -D -m 0644 /tmp/cvm-stage/containers.conf /etc/containers/containers.conf.d/cvm-attest.conf",
        f"if [ -f /tmp/cvm-stage/token ]; then install -D -m 0600 /tmp/cvm-stage/token {TOKEN_FILE}; fi",
        f"systemctl enable {' '.join(ENABLED_UNITS)}",
        f"systemctl mask {' '.join(MASKED_UNITS)}",
        f"mkdir -p {' '.join(WRITABLE_DIRS)} {WORKLOAD_MOUNT}",
        "",
    ])


@dataclass(frozen=True, slots=True)
class RootFilesystem:
    """A built root directory and the packages it holds (name to version, exactly the lock's)."""

    path: Path
    packages: dict[str, str]
    kernel_release: str


def installed_packages(root: Path) -> dict[str, str]:
    """The packages dpkg installed in ``root``, read from its own database."""
    out = run_tool(["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "--show",
                    "--showformat=${db:Status-Status} ${Package} ${Version}\\n"]).stdout
    return dict(sorted((name, version) for status, name, version in
                       (line.split(" ", 2) for line in out.splitlines()) if status == "installed"))


def check_against_lock(installed: dict[str, str], lock: PackageLock) -> None:
    """The root must hold exactly the lock's root packages: one it does not name is
    ``image.package_unlocked``; one at another version, ``image.package_unavailable``."""
    unlocked = sorted(set(installed) - set(lock.versions))
    if unlocked:
        raise BuildError(Reason.IMAGE_PACKAGE_UNLOCKED,
                         f"the root holds packages image/packages.lock does not name: {', '.join(unlocked)}",
                         package=unlocked[0], packages=unlocked)
    moved = sorted(name for name, version in installed.items() if lock.versions[name] != version)
    if moved:
        raise BuildError(Reason.IMAGE_PACKAGE_UNAVAILABLE,
                         "installed at other versions than locked: "
                         + ", ".join(f"{name} {installed[name]} (locked {lock.versions[name]})" for name in moved),
                         package=moved[0], packages=moved)
    missing = sorted(set(lock.versions) - set(installed) - set(BOOT_PACKAGES))
    if missing:
        raise BuildError(Reason.IMAGE_PACKAGE_UNAVAILABLE,
                         f"locked packages the root does not hold: {', '.join(missing)}",
                         package=missing[0], packages=missing)


def _mmdebstrap(include: Iterable[str], apt_cache: Path) -> list[str | Path]:
    """mmdebstrap with ``include`` and the persistent apt cache: synchronised into the new root
    before apt runs and back out before mmdebstrap empties it, so a second build downloads nothing."""
    cache = shlex.quote(str(apt_cache))
    return [
        "mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory", "--architectures=amd64",
        "--quiet", f"--include={','.join(include)}",
        # The essential set's packages stay in the cache until the rest is installed (so sync-out keeps them).
        "--skip=essential/unlink",
        "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
        f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
        f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
    ]


def mmdebstrap_arguments(root: Path, *, lock: PackageLock, stage: Path, apt_cache: Path) -> list[str | Path]:
    """mmdebstrap's command line: every locked root package pinned, the persistent apt cache
    synchronised in and out, and the customize hooks that install the agent."""
    for name in ROOT_PACKAGES:
        lock.version(name)
    pins = lock.pins(name for name in lock.versions if name not in BOOT_PACKAGES)
    return [
        *_mmdebstrap(pins, apt_cache),
        f"--customize-hook=cp -a {shlex.quote(str(stage))} \"$1\"/tmp/cvm-stage",
        "--customize-hook=chroot \"$1\" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "
        "SOURCE_DATE_EPOCH=\"$SOURCE_DATE_EPOCH\" sh /tmp/cvm-stage/customize.sh",
        "--customize-hook=rm -rf \"$1\"/tmp/cvm-stage",
        SUITE, root, *MIRRORS,
    ]


def resolve_lock(apt_cache: Path) -> PackageLock:
    """A lock of the archive as it is today: :data:`ROOT_PACKAGES` and every package apt installs
    with them (a throwaway mmdebstrap run without pins), and the versions the host's apt would
    fetch of :data:`image.packages.BOOT_PACKAGES`. ``image/packages.lock`` is written from this."""
    apt_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cvm-attest-lock-") as tmp:
        root = Path(tmp) / "root"
        run_tool([*_mmdebstrap(ROOT_PACKAGES, apt_cache), SUITE, root, *MIRRORS])
        versions = installed_packages(root)
    for name in BOOT_PACKAGES:
        policy = run_tool(["apt-cache", "policy", name]).stdout
        candidate = [line.split(":", 1)[1].strip() for line in policy.splitlines()
                     if line.strip().startswith("Candidate:")]
        if not candidate or candidate[0] == "(none)":
            raise BuildError(Reason.IMAGE_PACKAGE_UNAVAILABLE, f"the host's apt has no {name}", package=name)
        versions[name] = candidate[0]
    return PackageLock(versions=dict(sorted(versions.items())))


def update_lock(apt_cache: Path = DEFAULT_APT_CACHE, path: Path = LOCK_FILE) -> PackageLock:
    """Rewrite the lock at ``path`` from :func:`resolve_lock`, keeping its leading comment."""
    header = "\n".join(line.removeprefix("#").removeprefix(" ") for line in
                       itertools.takewhile(lambda line: line.startswith("#"), path.read_text().splitlines()))
    lock = resolve_lock(apt_cache)
    path.write_text(lock.to_text(header))
    return lock


def build_rootfs(
    root: Path, *, lock: PackageLock, wheels: list[Path], constraints: Path, platform: str, kernel: Kernel,
    apt_cache: Path, source_date_epoch: int, token_sha256: bytes | None = None,
) -> RootFilesystem:
    """Build the root directory ``root`` (absent or empty) for ``platform``; with ``token_sha256``
    the agent accepts the API token whose SHA-256 it is (only the hash is in the image)."""
    if token_sha256 is not None and len(token_sha256) != 32:
        raise RequestError(Reason.INPUT_INVALID, "the API token's SHA-256 is 32 bytes (64 hex digits)")
    unit = agent_unit(platform, token=token_sha256 is not None)
    apt_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cvm-attest-rootfs-") as tmp:
        stage = Path(tmp) / "stage"
        (stage / "wheels").mkdir(parents=True)
        for wheel in wheels:
            shutil.copy2(wheel, stage / "wheels" / wheel.name)
        shutil.copy2(constraints, stage / constraints.name)
        (stage / "cvm-agent.service").write_text(unit)
        (stage / "80-ethernet.network").write_text(NETWORK_UNIT)
        (stage / "journal-console.conf").write_text(JOURNAL_TO_CONSOLE)
        (stage / "containers.conf").write_text(CONTAINERS_CONF)
        if token_sha256 is not None:
            (stage / "token").write_text(f"sha256:{token_sha256.hex()}\n")
        (stage / "customize.sh").write_text(_customize_script(constraints.name, platform))
        args = mmdebstrap_arguments(root, lock=lock, stage=stage, apt_cache=apt_cache)
        done = run_tool(args, source_date_epoch=source_date_epoch, check=False)
    if done.returncode != 0:
        missing = unavailable_package(done.stderr + done.stdout, lock)
        if missing is not None:
            raise missing
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"mmdebstrap failed: {done.stderr.strip()[-4000:]}",
                         tool="mmdebstrap", returncode=done.returncode)
    packages = installed_packages(root)
    check_against_lock(packages, lock)
    install_modules(root, kernel)
    make_reproducible(root)
    return RootFilesystem(path=root, packages=packages, kernel_release=kernel.release)


def install_modules(root: Path, kernel: Kernel) -> None:
    """The kernel's modules and depmod's index under ``/usr/lib/modules/<release>``, for udev to
    load drivers (the TPM's, the NIC's) by alias: the kernel package itself is never installed."""
    target = root / "usr" / "lib" / "modules" / kernel.release
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(kernel.modules, target, symlinks=True)
    for link in ("build", "source"):
        (target / link).unlink(missing_ok=True)


#: Files that record when or on which machine the build ran, never read by the booted image.
_BUILD_RECORDS = ("var/cache/ldconfig/aux-cache", "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin",
                  "var/lib/dbus/machine-id", "etc/hostname")


def make_reproducible(root: Path) -> None:
    """Remove what differs from build to build: logs, apt's and debconf's caches and backups,
    the machine id (left empty: systemd creates one at boot, and on a read-only ``/etc`` mounts it
    over the empty file), and regenerate ``/etc/ld.so.cache`` from the final library set."""
    for directory in ("var/log", "var/cache/apt", "var/lib/apt/lists", "tmp", "var/tmp"):
        base = root / directory
        if base.is_dir():
            for path in sorted(base.rglob("*"), reverse=True):
                if path.is_file() or path.is_symlink():
                    path.unlink()
                elif directory != "var/log":
                    path.rmdir()
    for pattern in ("var/cache/debconf/*-old", "var/lib/dpkg/*-old"):
        for path in root.glob(pattern):
            path.unlink()
    for record in _BUILD_RECORDS:
        (root / record).unlink(missing_ok=True)
    resolv = root / "etc" / "resolv.conf"
    if not resolv.is_symlink():  # the build host's, copied in; systemd-resolved's link stays
        resolv.unlink(missing_ok=True)
    (root / "etc" / "machine-id").write_text("")
    run_tool(["ldconfig", "-r", root])
    (root / "var/cache/ldconfig/aux-cache").unlink(missing_ok=True)
