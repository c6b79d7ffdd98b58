"""image.packages and image.rootfs: the package lock and its enforcement, the agent's unit, and (with
mmdebstrap, as root, from a warm apt cache in about a minute) a real root filesystem built from it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.config import DEFAULT_STATE_DIR, PlatformName
from image.packages import BOOT_PACKAGES, BUSYBOX_PACKAGE, LOCK_FILE, PackageLock, fetch_deb, unavailable_package
from image.rootfs import (
    AGENT_VENV,
    DEFAULT_APT_CACHE,
    ROOT_PACKAGES,
    AGENT_WORKLOAD,
    WORKLOAD_MOUNT,
    WRITABLE_DIRS,
    RootFilesystem,
    agent_unit,
    check_against_lock,
    mmdebstrap_arguments,
)
from offchain.errors import BuildError, ParseError, Reason, RequestError

ROOT = Path(__file__).resolve().parents[3]
EPOCH = 1_700_000_000
LOCK_TEXT = """\
# a comment
systemd=252.39-1~deb12u2   # trailing comment

busybox-static=1:1.35.0-4+deb12u1+b1
"""


def test_lock_parses_names_versions_and_comments() -> None:
    lock = PackageLock.parse(LOCK_TEXT)
    assert lock.versions == {"busybox-static": "1:1.35.0-4+deb12u1+b1", "systemd": "252.39-1~deb12u2"}
    assert lock.pins(["systemd"]) == ["systemd=252.39-1~deb12u2"]
    assert PackageLock.parse(lock.to_text("header\nsecond line")) == lock


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("systemd\n", 1, id="no-version"),
        pytest.param("# ok\nsystemd=\n", 2, id="empty-version"),
        pytest.param("=252.39-1\n", 1, id="empty-name"),
        pytest.param("Systemd=252.39-1\n", 1, id="uppercase-name"),
        pytest.param("systemd=v252\n", 1, id="version-not-starting-with-a-digit"),
        pytest.param("systemd=252 39\n", 1, id="space-in-version"),
        pytest.param("systemd=252.39-1\nsystemd=252.38-1\n", 2, id="locked-twice"),
    ],
)
def test_malformed_lock_names_the_line(text: str, line: int) -> None:
    with pytest.raises(ParseError) as caught:
        PackageLock.parse(text)
    assert caught.value.reason is Reason.IMAGE_LOCK_MALFORMED
    assert caught.value.context["line"] == line


def test_a_package_without_a_locked_version_is_named() -> None:
    lock = PackageLock.parse(LOCK_TEXT)
    with pytest.raises(BuildError) as caught:
        lock.pins(["systemd", "podman"])
    assert caught.value.reason is Reason.IMAGE_PACKAGE_UNLOCKED
    assert caught.value.context["package"] == "podman"


def test_the_repository_lock_covers_every_package_the_build_asks_for() -> None:
    lock = PackageLock.read()
    for name in (*ROOT_PACKAGES, *BOOT_PACKAGES):
        assert lock.version(name)
    assert LOCK_FILE.read_text() == lock.to_text(
        "\n".join(line.removeprefix("# ").removeprefix("#") for line in LOCK_FILE.read_text().splitlines()
                  if line.startswith("#")))


def test_mmdebstrap_gets_every_locked_root_package_pinned_and_no_boot_package(tmp_path: Path) -> None:
    lock = PackageLock.read()
    args = mmdebstrap_arguments(tmp_path / "root", lock=lock, stage=tmp_path / "stage", apt_cache=tmp_path / "apt")
    (include,) = [str(a).removeprefix("--include=") for a in args if str(a).startswith("--include=")]
    pins = include.split(",")
    assert sorted(pins) == sorted(f"{n}={v}" for n, v in lock.versions.items() if n not in BOOT_PACKAGES)
    assert "--variant=minbase" in args


def test_mmdebstrap_is_not_started_when_a_requested_package_is_unlocked(tmp_path: Path) -> None:
    lock = PackageLock.read()
    without = PackageLock(versions={n: v for n, v in lock.versions.items() if n != "podman-compose"})
    with pytest.raises(BuildError) as caught:
        mmdebstrap_arguments(tmp_path / "root", lock=without, stage=tmp_path, apt_cache=tmp_path)
    assert caught.value.reason is Reason.IMAGE_PACKAGE_UNLOCKED
    assert caught.value.context["package"] == "podman-compose"


@pytest.mark.parametrize(
    ("output", "package"),
    [
        pytest.param("E: Version '9.9-1' for 'podman' was not found\n", "podman", id="version"),
        pytest.param("E: Unable to locate package podman-compose\n", "podman-compose", id="package"),
    ],
)
def test_apt_saying_the_archive_lacks_a_version_names_the_package(output: str, package: str) -> None:
    error = unavailable_package("W: something else\n" + output, PackageLock.read())
    assert error is not None
    assert error.reason is Reason.IMAGE_PACKAGE_UNAVAILABLE
    assert error.context["package"] == package


def test_other_apt_failures_are_not_called_unavailable() -> None:
    assert unavailable_package("E: Could not get lock /var/lib/dpkg/lock-frontend\n", PackageLock.read()) is None


class TestCheckAgainstLock:
    LOCK = PackageLock(versions={"a": "1", "b": "2", BUSYBOX_PACKAGE: "1:1"})

    def test_exactly_the_lock_passes(self) -> None:
        check_against_lock({"a": "1", "b": "2"}, self.LOCK)

    @pytest.mark.parametrize(
        ("installed", "reason", "package"),
        [
            pytest.param({"a": "1", "b": "2", "c": "3"}, Reason.IMAGE_PACKAGE_UNLOCKED, "c", id="extra-package"),
            pytest.param({"a": "1", "b": "3"}, Reason.IMAGE_PACKAGE_UNAVAILABLE, "b", id="other-version"),
            pytest.param({"a": "1"}, Reason.IMAGE_PACKAGE_UNAVAILABLE, "b", id="missing-package"),
        ],
    )
    def test_anything_else_is_named(self, installed: dict[str, str], reason: Reason, package: str) -> None:
        with pytest.raises(BuildError) as caught:
            check_against_lock(installed, self.LOCK)
        assert caught.value.reason is reason
        assert caught.value.context["package"] == package


def test_fetching_a_version_the_archive_lacks_names_the_package(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get not installed")
    lock = PackageLock(versions={BUSYBOX_PACKAGE: "0.0.1-0"})
    with pytest.raises(BuildError) as caught:
        fetch_deb(BUSYBOX_PACKAGE, lock, tmp_path)
    assert caught.value.reason is Reason.IMAGE_PACKAGE_UNAVAILABLE
    assert caught.value.context == {"package": BUSYBOX_PACKAGE, "version": "0.0.1-0"}


def test_platforms_are_the_agents() -> None:
    from image.rootfs import PLATFORMS

    assert PLATFORMS == tuple(p.value for p in PlatformName)


@pytest.mark.parametrize("platform", ["snp", "azure", "sim"])
def test_agent_unit_starts_the_agent_for_the_platform_on_the_workload_partition(platform: str) -> None:
    unit = agent_unit(platform)
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == (f"ExecStart={AGENT_VENV}/bin/cvm-agent --platform {platform} --workload-dir "
                          f"{AGENT_WORKLOAD} --workload-from {WORKLOAD_MOUNT}")
    assert "WantedBy=multi-user.target" in unit.splitlines()


def test_agent_unit_refuses_an_unknown_platform() -> None:
    with pytest.raises(RequestError) as caught:
        agent_unit("tdx")
    assert caught.value.reason is Reason.INPUT_INVALID


def test_the_agents_state_directory_is_writable_in_the_image() -> None:
    assert str(DEFAULT_STATE_DIR) in WRITABLE_DIRS


# --- a real build ----------------------------------------------------------------------------------


def _can_build() -> None:
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap --mode=root needs root")
    for tool in ("mmdebstrap", "apt-get", "dpkg-deb", "depmod", "readelf"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists() and not Path("/sbin", tool).exists():
            pytest.skip(f"{tool} not installed (scripts/setup installs it)")


def build_once(work: Path) -> RootFilesystem:
    """Wheels, kernel and root as ``cvm-cli image build`` would make them, with the repository's
    persistent apt cache (the first run downloads about 120 MB from the archive)."""
    from image.packages import fetch_kernel
    from image.rootfs import build_agent_wheels, build_rootfs

    lock = PackageLock.read()
    kernel = fetch_kernel(lock, DEFAULT_APT_CACHE, work / "kernel")
    wheels = build_agent_wheels(ROOT, ROOT / "constraints.txt", work / "wheels")
    return build_rootfs(work / "root", lock=lock, wheels=wheels, constraints=ROOT / "constraints.txt",
                        platform="sim", kernel=kernel, apt_cache=DEFAULT_APT_CACHE, source_date_epoch=EPOCH)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> RootFilesystem:
    _can_build()
    return build_once(tmp_path_factory.mktemp("rootfs"))


@pytest.mark.integration
def test_built_root_holds_exactly_the_locked_packages(rootfs: RootFilesystem) -> None:
    lock = PackageLock.read()
    assert rootfs.packages == {n: v for n, v in lock.versions.items() if n not in BOOT_PACKAGES}
    assert not (rootfs.path / "boot").exists() or not any((rootfs.path / "boot").iterdir())
    assert (rootfs.path / "usr/lib/modules" / rootfs.kernel_release / "modules.dep").is_file()


@pytest.mark.integration
def test_built_root_runs_the_agent_from_its_own_python(rootfs: RootFilesystem) -> None:
    done = subprocess.run(
        ["chroot", rootfs.path, f"{AGENT_VENV}/bin/python", "-c",
         "import agent.main, tpm2_pytss, fastapi; print(tpm2_pytss.__name__)"],
        capture_output=True, text=True, timeout=120, check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert (rootfs.path / "etc/systemd/system/cvm-agent.service").read_text() == agent_unit("sim")
    wants = rootfs.path / "etc/systemd/system/multi-user.target.wants/cvm-agent.service"
    assert wants.is_symlink()
    assert (rootfs.path / "etc/systemd/system/systemd-pcrphase.service").readlink() == Path("/dev/null")


@pytest.mark.integration
def test_built_root_carries_nothing_of_the_build(rootfs: RootFilesystem) -> None:
    root = rootfs.path
    assert (root / "etc/machine-id").read_bytes() == b""
    assert not [p for p in (root / "var/log").rglob("*") if p.is_file()]
    assert not any((root / "var/cache/apt").iterdir())
    assert not any((root / "var/lib/apt/lists").iterdir())
    assert not (root / "var/cache/ldconfig/aux-cache").exists()
    assert (root / "etc/ld.so.cache").is_file()
    for directory in WRITABLE_DIRS:
        assert (root / directory.lstrip("/")).is_dir(), directory


@pytest.mark.slow
def test_two_builds_give_the_same_tree(rootfs: RootFilesystem, tmp_path: Path) -> None:
    from image.disk import tree_digest

    again = build_once(tmp_path)
    assert tree_digest(again.path) == tree_digest(rootfs.path)
