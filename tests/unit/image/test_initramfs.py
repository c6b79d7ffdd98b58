"""image.initramfs: the cpio writer against GNU cpio and libarchive's bsdtar, the module order, the
real initramfs from Debian's kernel and busybox-static, and /init run with stub commands."""

from __future__ import annotations

import gzip
import os
import random
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from image.initramfs import (
    DRIVER_MODULES,
    INIT_SCRIPT,
    REQUIRED_MODULES,
    VERITYSETUP,
    CpioEntry,
    build_initramfs,
    compress,
    module_load_order,
    write_newc,
)
from image.packages import Kernel, PackageLock, fetch_busybox, fetch_kernel
from image.rootfs import DEFAULT_APT_CACHE, WORKLOAD_MOUNT, WRITABLE_DIRS
from offchain.errors import BuildError, CvmAttestError, Reason, RequestError

EPOCH = 1_700_000_000
ROOT_HASH = "ab" * 32
VERITY_FAILED = "cvm-attest: dm-verity verification of the root failed; refusing to boot"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {package})")
    return path


def run(*args: str | Path, stdin: bytes | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], input=stdin, capture_output=True, timeout=120, check=False, cwd=cwd)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


ENTRIES = [
    CpioEntry("usr", stat.S_IFDIR | 0o755),
    CpioEntry("usr/bin", stat.S_IFDIR | 0o755),
    CpioEntry("usr/bin/tool", stat.S_IFREG | 0o755, b"#!/bin/sh\necho tool\n"),
    CpioEntry("usr/bin/link", stat.S_IFLNK | 0o777, b"tool"),
    CpioEntry("init", stat.S_IFREG | 0o755, b"x" * 4097),
    CpioEntry("empty", stat.S_IFREG | 0o644),
    CpioEntry("dev", stat.S_IFDIR | 0o755),
    CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
]


class TestCpio:
    def test_same_entries_in_any_order_give_the_same_bytes(self) -> None:
        shuffled = ENTRIES[:]
        random.Random(7).shuffle(shuffled)
        assert write_newc(shuffled, mtime=EPOCH) == write_newc(ENTRIES, mtime=EPOCH)
        assert write_newc(ENTRIES, mtime=EPOCH) != write_newc(ENTRIES, mtime=EPOCH + 1)

    def test_gnu_cpio_lists_the_members_in_path_order_with_owner_and_time(self) -> None:
        cpio = tool("cpio", "cpio")
        archive = write_newc(ENTRIES, mtime=EPOCH)
        names = run(cpio, "-t", "--quiet", stdin=archive).split()
        assert names == sorted(e.path for e in ENTRIES)
        listing = run(cpio, "-tv", "--quiet", "--numeric-uid-gid", stdin=archive)
        console = next(line for line in listing.splitlines() if line.endswith("dev/console"))
        assert console.startswith("crw-------") and re.search(r"\s0\s+0\s+5,\s*1\s", console), console

    def test_bsdtar_extracts_contents_modes_and_links(self, tmp_path: Path) -> None:
        bsdtar = tool("bsdtar", "libarchive-tools")
        regular = [e for e in ENTRIES if not stat.S_ISCHR(e.mode)]
        (tmp_path / "a.cpio").write_bytes(write_newc(regular, mtime=EPOCH))
        run(bsdtar, "-xpf", tmp_path / "a.cpio", "-C", tmp_path, cwd=tmp_path)
        assert (tmp_path / "usr/bin/tool").read_bytes() == b"#!/bin/sh\necho tool\n"
        assert stat.S_IMODE((tmp_path / "usr/bin/tool").stat().st_mode) == 0o755
        assert (tmp_path / "usr/bin/link").readlink() == Path("tool")
        assert (tmp_path / "init").read_bytes() == b"x" * 4097
        assert (tmp_path / "init").stat().st_mtime == EPOCH
        numeric = run(bsdtar, "-tvf", tmp_path / "a.cpio", "--numeric-owner")
        assert all(re.match(r"\S+\s+\d+\s+0\s+0\s", line) for line in numeric.splitlines()), numeric

    def test_inodes_count_from_one_and_the_trailer_closes_the_archive(self) -> None:
        archive = write_newc(ENTRIES, mtime=EPOCH)
        headers = [archive[m.start():m.start() + 110] for m in re.finditer(b"070701", archive)]
        inodes = [int(h[6:14], 16) for h in headers]
        assert inodes == [*range(1, len(ENTRIES) + 1), 0]
        assert archive.endswith(b"TRAILER!!!\0" + b"\0" * (-(110 + 11) % 4))
        assert len(archive) % 4 == 0

    @pytest.mark.parametrize(
        "entry",
        [
            pytest.param(lambda: CpioEntry("/init", stat.S_IFREG | 0o755), id="absolute"),
            pytest.param(lambda: CpioEntry("usr/../init", stat.S_IFREG | 0o755), id="dot-dot"),
            pytest.param(lambda: CpioEntry("usr//bin", stat.S_IFDIR | 0o755), id="not-normalised"),
            pytest.param(lambda: CpioEntry("fifo", stat.S_IFIFO | 0o644), id="fifo"),
        ],
    )
    def test_unsafe_members_are_refused(self, entry: object) -> None:
        with pytest.raises(RequestError) as caught:
            entry()  # type: ignore[operator]
        assert caught.value.reason is Reason.INPUT_INVALID

    def test_a_path_given_twice_is_refused(self) -> None:
        with pytest.raises(RequestError) as caught:
            write_newc([*ENTRIES, CpioEntry("init", stat.S_IFREG | 0o644)], mtime=EPOCH)
        assert caught.value.reason is Reason.INPUT_INVALID

    def test_an_mtime_beyond_32_bits_is_refused(self) -> None:
        with pytest.raises(RequestError) as caught:
            write_newc(ENTRIES, mtime=1 << 32)
        assert caught.value.reason is Reason.INPUT_INVALID

    def test_gzip_carries_no_time_and_no_name(self) -> None:
        archive = write_newc(ENTRIES, mtime=EPOCH)
        packed = compress(archive)
        assert packed[:4] == b"\x1f\x8b\x08\x00"  # magic, deflate, FLG without FNAME
        assert packed[4:8] == b"\0\0\0\0"  # MTIME
        assert gzip.decompress(packed) == archive
        assert packed == compress(archive)


def fake_modules(tmp_path: Path) -> Path:
    modules = tmp_path / "lib/modules/6.1.0-test"
    modules.mkdir(parents=True)
    (modules / "modules.dep").write_text(
        "kernel/drivers/md/dm-mod.ko:\n"
        "kernel/drivers/md/dm-bufio.ko:\n"
        "kernel/drivers/md/dm-verity.ko: kernel/lib/reed_solomon.ko kernel/drivers/md/dm-bufio.ko "
        "kernel/drivers/md/dm-mod.ko\n"
        "kernel/lib/reed_solomon.ko:\n"
        "kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\n"
        "kernel/lib/libcrc32c.ko:\n"
    )
    (modules / "modules.builtin").write_text("kernel/drivers/nvme/host/nvme.ko\n")
    return modules


class TestModuleOrder:
    def test_dependencies_come_first_each_once(self, tmp_path: Path) -> None:
        order = module_load_order(fake_modules(tmp_path), ["dm_mod", "dm-verity", "erofs"])
        assert order == ["kernel/drivers/md/dm-mod.ko", "kernel/drivers/md/dm-bufio.ko", "kernel/lib/reed_solomon.ko",
                         "kernel/drivers/md/dm-verity.ko", "kernel/lib/libcrc32c.ko", "kernel/fs/erofs/erofs.ko"]

    def test_a_built_in_module_needs_nothing(self, tmp_path: Path) -> None:
        assert module_load_order(fake_modules(tmp_path), ["nvme"]) == []

    def test_a_module_the_kernel_lacks_fails_the_build(self, tmp_path: Path) -> None:
        with pytest.raises(BuildError) as caught:
            module_load_order(fake_modules(tmp_path), ["dm-verity", "virtio_blk"])
        assert caught.value.reason is Reason.IMAGE_TOOL_FAILED


# --- the real initramfs: Debian's kernel and busybox-static; veritysetup from a root ---------------


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> tuple[Kernel, Path]:
    for name, package in (("apt-get", "apt"), ("dpkg-deb", "dpkg"), ("depmod", "kmod"), ("readelf", "binutils")):
        if shutil.which(name) is None and not Path("/usr/sbin", name).exists():
            pytest.skip(f"{name} not installed (Debian package {package})")
    work = tmp_path_factory.mktemp("debian")
    lock = PackageLock.read()
    try:
        kernel = fetch_kernel(lock, DEFAULT_APT_CACHE, work / "kernel")
        busybox = fetch_busybox(lock, DEFAULT_APT_CACHE, work / "busybox")
    except CvmAttestError as exc:
        if exc.reason is Reason.IMAGE_TOOL_FAILED and "download" in exc.detail:
            pytest.skip(f"the Debian archive is unreachable: {exc.detail}")
        raise
    return kernel, busybox


@pytest.fixture(scope="module")
def host_root() -> Path:
    """The build host stands in for the image's root (both Debian bookworm): only veritysetup and its
    libraries are taken from it. The real root's initramfs is built in the boot test."""
    if not Path("/", VERITYSETUP).exists():
        pytest.skip("veritysetup not installed (Debian package cryptsetup-bin)")
    return Path("/")


@pytest.fixture(scope="module")
def initramfs(debian: tuple[Kernel, Path], host_root: Path) -> bytes:
    kernel, busybox = debian
    return build_initramfs(busybox=busybox, rootfs=host_root, kernel=kernel, source_date_epoch=EPOCH)


@pytest.fixture(scope="module")
def unpacked(initramfs: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    into = tmp_path_factory.mktemp("initramfs")
    run(tool("cpio", "cpio"), "-idm", "--quiet", "--no-absolute-filenames", stdin=gzip.decompress(initramfs), cwd=into)
    return into


def test_two_builds_are_byte_identical(initramfs: bytes, debian: tuple[Kernel, Path], host_root: Path) -> None:
    kernel, busybox = debian
    assert build_initramfs(busybox=busybox, rootfs=host_root, kernel=kernel, source_date_epoch=EPOCH) == initramfs


def test_the_initramfs_holds_busybox_static_from_the_archive(unpacked: Path, debian: tuple[Kernel, Path]) -> None:
    _, busybox = debian
    assert (unpacked / "usr/bin/busybox").read_bytes() == busybox.read_bytes()
    program = run(tool("readelf", "binutils"), "--program-headers", unpacked / "usr/bin/busybox")
    assert "INTERP" not in program  # statically linked: needs nothing from the initramfs
    assert os.readlink(unpacked / "bin") == "usr/bin" and os.readlink(unpacked / "usr/bin/switch_root") == "busybox"


def test_the_initramfs_holds_each_module_the_root_needs(unpacked: Path, debian: tuple[Kernel, Path]) -> None:
    kernel, _ = debian
    order = (unpacked / "usr/lib/modules/load-order").read_text().split()
    drivers = (unpacked / "usr/lib/modules/load-order.drivers").read_text().split()
    builtin = {Path(p).name.removesuffix(".ko") for p in (kernel.modules / "modules.builtin").read_text().split()}

    def names(paths: list[str]) -> set[str]:
        return {Path(p).name.removesuffix(".ko").replace("-", "_") for p in paths}

    for module in REQUIRED_MODULES:  # what must load; a failure stops the boot
        assert module.replace("-", "_") in names(order) | builtin, module
    for module in DRIVER_MODULES:  # what loads where the machine has the device
        assert module.replace("-", "_") in names(drivers) | builtin, module
    assert "hv_vmbus" in names(drivers) and not names(order) & names(drivers)
    for path in order + drivers:
        assert (unpacked / path.lstrip("/").replace("lib/", "usr/lib/", 1)).is_file(), path
    assert order.index(f"/lib/modules/{kernel.release}/kernel/drivers/md/dm-mod.ko") < order.index(
        f"/lib/modules/{kernel.release}/kernel/drivers/md/dm-verity.ko")


def test_veritysetup_and_busybox_run_from_the_initramfs_alone(unpacked: Path) -> None:
    """chroot into the unpacked initramfs: veritysetup finds every library it needs there, and
    busybox's own shell (the one the kernel starts /init with) accepts /init."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    chroot = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert chroot is not None
    assert run(chroot, unpacked, "/usr/sbin/veritysetup", "--version").startswith("veritysetup 2.")
    run(chroot, unpacked, "/bin/sh", "-n", "/init")


# --- /init -----------------------------------------------------------------------------------------


def test_init_is_valid_posix_shell() -> None:
    run(tool("sh", "dash"), "-n", INIT_SCRIPT)


def test_init_names_the_writable_directories_and_the_workload_mount_of_the_root() -> None:
    text = INIT_SCRIPT.read_text()
    assert re.search(r'^WRITABLE_DIRS="([^"]*)"$', text, re.M)[1].split() == list(WRITABLE_DIRS)  # type: ignore[index]
    assert f"WORKLOAD_MOUNT={WORKLOAD_MOUNT}\n" in text


def test_init_mounts_the_root_only_through_dm_verity() -> None:
    """Read the script's structure: the only erofs mounts are the mapped verity device and the
    workload; nothing mounts the root partition's device, and no command falls back with ``||``
    to anything but stopping the boot."""
    lines = [line.strip() for line in INIT_SCRIPT.read_text().splitlines() if not line.strip().startswith("#")]
    erofs = [line for line in lines if line.startswith("mount -t erofs")]
    assert erofs == [
        'mount -t erofs -o ro "/dev/mapper/$VERITY_DEVICE" "$NEWROOT" || stop_boot "cannot mount the verified root"',
        'mount -t erofs -o ro,nosuid,nodev "$1" "$NEWROOT$WORKLOAD_MOUNT" || stop_boot "cannot mount the workload '
        'partition"',
    ]
    # The one fallback that continues: a disk driver for hardware this machine lacks.
    driver = 'insmod "$module" 2>/dev/null || echo "cvm-attest: $module: not for this machine, skipped" >&2'
    fallbacks = [line for line in lines if "||" in line and line != driver]
    assert len(fallbacks) == len([line for line in lines if "||" in line]) - 1
    assert all(re.search(r"\|\| (stop_boot|return 1$|continue$)", line) for line in fallbacks), fallbacks
    assert not [line for line in lines if '"$data"' in line and "mount" in line]


class InitSandbox:
    """Runs functions of /init in the host's ``sh`` with ``PATH`` holding only stub commands, each
    of which records its arguments; the stubs named in ``failing`` exit 1."""

    STUBS = ("mount", "veritysetup", "cat", "mkdir", "chmod", "poweroff", "sleep", "insmod")

    def __init__(self, tmp_path: Path, failing: tuple[str, ...] = ()) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "calls.log"
        for name in self.STUBS:
            code = 1 if name in failing else 0
            script = self.bin / name
            script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.log}"\nexit {code}\n')
            script.chmod(0o755)
        self.sh = tool("sh", "dash")
        self.grep, self.sed = tool("grep", "grep"), tool("sed", "sed")

    def run(self, commands: str) -> subprocess.CompletedProcess[str]:
        for name, path in (("grep", self.grep), ("sed", self.sed)):
            if not (self.bin / name).exists():
                (self.bin / name).symlink_to(path)
        return subprocess.run([self.sh, "-c", f'. "{INIT_SCRIPT}"\n{commands}'], capture_output=True, text=True,
                              timeout=30, check=False, env={"PATH": str(self.bin)})

    def calls(self, name: str) -> list[str]:
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if line.split(" ", 1)[0] == name]


@pytest.mark.parametrize("failing", [("veritysetup",), ("cat",)], ids=["open-fails", "read-finds-corruption"])
def test_a_root_that_fails_verification_stops_the_boot_without_mounting(tmp_path: Path, failing: tuple[str]) -> None:
    sandbox = InitSandbox(tmp_path, failing)
    done = sandbox.run(f"open_root /dev/vda2 /dev/vda3 {ROOT_HASH}\nmount_root\necho after")
    assert done.returncode != 0
    assert VERITY_FAILED in done.stderr.splitlines()
    assert "after" not in done.stdout
    assert sandbox.calls("mount") == []
    assert sandbox.calls("poweroff") == ["poweroff -f"]


def test_a_verified_root_is_mounted_read_only_from_the_mapped_device(tmp_path: Path) -> None:
    sandbox = InitSandbox(tmp_path)
    done = sandbox.run(f"open_root /dev/vda2 /dev/vda3 {ROOT_HASH}\nmount_root\nmount_workload /dev/vda4")
    assert done.returncode == 0, done.stderr
    assert sandbox.calls("veritysetup") == [f"veritysetup open /dev/vda2 cvm-root /dev/vda3 {ROOT_HASH}"]
    assert sandbox.calls("cat") == ["cat /dev/mapper/cvm-root"]
    mounts = sandbox.calls("mount")
    assert mounts[0] == "mount -t erofs -o ro /dev/mapper/cvm-root /sysroot"
    assert mounts[-1] == f"mount -t erofs -o ro,nosuid,nodev /dev/vda4 /sysroot{WORKLOAD_MOUNT}"
    assert len(mounts) == 2 + len(WRITABLE_DIRS)
    assert sandbox.calls("poweroff") == []


@pytest.mark.parametrize(
    ("cmdline", "value"),
    [
        pytest.param(f"console=ttyS0 roothash={ROOT_HASH} ro", ROOT_HASH, id="one"),
        pytest.param("console=ttyS0 ro", None, id="absent"),
        pytest.param(f"roothash={ROOT_HASH} roothash={'cd' * 32}", None, id="twice"),
        pytest.param(f"xroothash={ROOT_HASH}", None, id="other-word"),
        pytest.param("roothash=*", "*", id="no-glob-expansion"),
    ],
)
def test_cmdline_value_takes_exactly_one_word(tmp_path: Path, cmdline: str, value: str | None) -> None:
    done = InitSandbox(tmp_path).run(f'cmdline_value roothash "{cmdline}"')
    assert (done.returncode == 0) is (value is not None)
    if value is not None:
        assert done.stdout == value + "\n"


@pytest.mark.parametrize(
    ("candidate", "ok"),
    [
        pytest.param(ROOT_HASH, True, id="sha256"),
        pytest.param(ROOT_HASH[:-1], False, id="63-digits"),
        pytest.param(ROOT_HASH + "a", False, id="65-digits"),
        pytest.param(ROOT_HASH.upper(), False, id="uppercase"),
        pytest.param("zz" * 32, False, id="not-hex"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_root_hash(tmp_path: Path, candidate: str, ok: bool) -> None:
    assert (InitSandbox(tmp_path).run(f'is_root_hash "{candidate}"').returncode == 0) is ok


def _block(tmp_path: Path, devices: dict[str, str]) -> Path:
    block = tmp_path / "block"
    for device, partname in devices.items():
        (block / device).mkdir(parents=True)
        (block / device / "uevent").write_text(f"MAJOR=254\nDEVNAME={device}\nDEVTYPE=partition\nPARTNAME={partname}\n")
    return block


@pytest.mark.parametrize(
    ("devices", "found"),
    [
        pytest.param({"vda2": "root-x86-64", "vda3": "root-x86-64-verity"}, "/dev/vda2", id="one"),
        pytest.param({"vda3": "root-x86-64-verity"}, None, id="none"),
        pytest.param({"vda2": "root-x86-64", "vdb2": "root-x86-64"}, None, id="two-disks"),
    ],
)
def test_partition_by_name_wants_exactly_one(tmp_path: Path, devices: dict[str, str], found: str | None) -> None:
    block = _block(tmp_path, devices)
    done = InitSandbox(tmp_path).run(f'SYSFS_BLOCK="{block}"\npartition_by_name root-x86-64')
    assert (done.returncode == 0) is (found is not None)
    if found is not None:
        assert done.stdout == found + "\n"
