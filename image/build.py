"""``cvm-cli image build``: the whole CVM image from a workload directory, and what it will measure.

:func:`build_image` runs the steps in the order the measurements impose (docs/image.md):

1. ``packages``: the kernel, busybox-static and systemd's EFI stub at their locked versions;
2. ``wheels``: cvm-attest and its ``agent`` dependencies as wheels (``constraints.txt``);
3. ``rootfs``: the root directory with mmdebstrap (``image.rootfs``);
4. ``initramfs``: our own initramfs from busybox, the root's veritysetup and the kernel's modules;
5. ``disk``: the EROFS root and its dm-verity tree, the UKI carrying the root hash, the workload
   partition, the ESP and the GPT (``image.disk``), written to ``disk.raw``;
6. ``formats``: ``disk.vhd`` (Azure), ``disk.vmdk`` (AWS), ``disk.tar.gz`` (GCP) as asked;
7. ``predict``: the disk read back (``image.predict``): PCRs 4, 9, 11, 12 and 23, and ``golden.json``
   (``image.golden``) where the launch measurement is known;
8. ``manifest``: ``manifest.json``, every input with its digest and every identifier chosen.

Everything is written in a work directory inside ``--out`` and moved into place only when every
step has succeeded, so a failed build leaves what ``--out`` held before (and no partial file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offchain.errors import BuildError, Reason, RequestError
from offchain.policy.golden import GoldenMeasurement

from image.disk import MIN_EPOCH, DiskLayout, build_disk, check_epoch, sha256_file
from image.formats import write_gcp_tar, write_vhd, write_vmdk
from image.golden import sim_golden, with_build_pcrs
from image.initramfs import build_initramfs
from image.packages import (
    BUSYBOX_PACKAGE,
    KERNEL_PACKAGE,
    LOCK_FILE,
    STUB_PACKAGE,
    PackageLock,
    fetch_busybox,
    fetch_kernel,
    fetch_stub,
)
from image.predict import Prediction, predict_disk
from image.rootfs import DEFAULT_APT_CACHE, PLATFORMS, build_agent_wheels, build_rootfs
from image.uki import build_uki

log = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPOSITORY / "constraints.txt"
MANIFEST_VERSION = 1
#: ``--format`` names and the file each writes (the names the deploy steps expect).
FORMATS = {"raw": "disk.raw", "vhd": "disk.vhd", "vmdk": "disk.vmdk", "gcp": "disk.tar.gz"}
#: The kernel command line besides ``roothash=``: the serial console, which every cloud's serial
#: log and QEMU's ``-serial`` read.
KERNEL_ARGUMENTS = "console=ttyS0,115200"
#: Names the agent's platform on the kernel command line (measured into PCR11 with it), for
#: ``cvm-cli image inspect`` to read back; nothing in the boot reads it.
PLATFORM_ARGUMENT = "cvm-attest.platform"
STEPS = ("packages", "wheels", "rootfs", "initramfs", "disk", "formats", "predict", "manifest")

Progress = Callable[[str, str], None]


def _quiet(step: str, detail: str) -> None:
    log.info("%s: %s", step, detail)


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """What ``cvm-cli image build`` was asked for."""

    workload_dir: Path
    out: Path
    platform: str = "snp"
    formats: tuple[str, ...] = ("raw",)
    source_date_epoch: int = MIN_EPOCH
    base: GoldenMeasurement | None = None
    name: str | None = None
    api_token_sha256: bytes | None = None
    kernel_arguments: str = KERNEL_ARGUMENTS
    apt_cache: Path = DEFAULT_APT_CACHE
    lock_file: Path = LOCK_FILE

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise RequestError(Reason.INPUT_INVALID,
                               f"--platform must be one of {', '.join(PLATFORMS)}, got {self.platform!r}")
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise RequestError(Reason.INPUT_INVALID, f"--format takes a list of {', '.join(FORMATS)}, got "
                               f"{','.join(self.formats) or 'nothing'}")
        if not (self.workload_dir / "docker-compose.yml").is_file():
            raise RequestError(Reason.INPUT_INVALID,
                               f"{self.workload_dir} is not a workload directory (it has no docker-compose.yml)")
        check_epoch(self.source_date_epoch)
        if self.out.exists() and not self.out.is_dir():
            raise RequestError(Reason.INPUT_INVALID, f"--out {self.out} exists and is not a directory")


@dataclass(slots=True)
class BuildResult:
    """What :func:`build_image` wrote, and how long each step took."""

    out: Path
    files: dict[str, Path]
    layout: DiskLayout
    prediction: Prediction
    golden: GoldenMeasurement | None
    manifest: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "files": {name: str(path) for name, path in self.files.items()},
            "root_hash": self.layout.root_hash.hex(),
            "pcrs": {str(i): v.hex() for i, v in self.prediction.pcrs.items()},
            "golden_id": None if self.golden is None else "0x" + self.golden.canonical_id().hex(),
            "seconds": {step: round(s, 2) for step, s in self.seconds.items()},
        }


def _file_entry(path: Path) -> dict[str, Any]:
    return {"name": path.name, "sha256": sha256_file(path).hex(), "size": path.stat().st_size}


def build_image(request: BuildRequest, progress: Progress = _quiet) -> BuildResult:
    """Build the image ``request`` describes into ``request.out`` (module docstring)."""
    if os.geteuid() != 0:
        raise BuildError(Reason.IMAGE_TOOL_FAILED, "the root filesystem is built with mmdebstrap --mode=root, which "
                         "needs root: run the build as root or through sudo")
    lock = PackageLock.read(request.lock_file)
    request.out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=".build-", dir=request.out) as tmp:
        work = Path(tmp)
        started = time.monotonic()

        def done(step: str, detail: str) -> None:
            nonlocal started
            now = time.monotonic()
            seconds[step] = now - started
            started = now
            progress(step, f"{detail} ({seconds[step]:.1f} s)")

        epoch = request.source_date_epoch
        kernel = fetch_kernel(lock, request.apt_cache, work / "kernel")
        busybox = fetch_busybox(lock, request.apt_cache, work / "busybox")
        stub = fetch_stub(lock, request.apt_cache, work / "stub")
        done("packages", f"kernel {kernel.release}, {BUSYBOX_PACKAGE}, {STUB_PACKAGE}")

        wheels = build_agent_wheels(REPOSITORY, CONSTRAINTS, work / "wheels", source_date_epoch=epoch)
        done("wheels", f"{len(wheels)} wheels")

        rootfs = build_rootfs(
            work / "rootfs", lock=lock, wheels=wheels, constraints=CONSTRAINTS, platform=request.platform,
            kernel=kernel, apt_cache=request.apt_cache, source_date_epoch=epoch, token_sha256=request.api_token_sha256,
        )
        done("rootfs", f"{len(rootfs.packages)} packages at their locked versions, cvm-agent --platform "
             f"{request.platform}")

        initrd = build_initramfs(busybox=busybox, rootfs=rootfs.path, kernel=kernel, source_date_epoch=epoch)
        done("initramfs", f"{len(initrd)} bytes")

        osrel = (rootfs.path / "usr" / "lib" / "os-release").read_bytes()
        parts: dict[str, bytes] = {}

        def make_uki(root_fragment: str) -> bytes:
            cmdline = f"{request.kernel_arguments} {PLATFORM_ARGUMENT}={request.platform} {root_fragment}".strip()
            parts["cmdline"] = cmdline.encode()
            parts["uki"] = build_uki(stub.read_bytes(), linux=kernel.vmlinuz.read_bytes(), initrd=initrd,
                                     cmdline=cmdline, osrel=osrel, uname=kernel.release, timestamp=epoch)
            return parts["uki"]

        outputs = work / "out"
        outputs.mkdir()
        raw = outputs / FORMATS["raw"]
        layout = build_disk(raw, make_uki=make_uki, rootfs_dir=rootfs.path, workload_dir=request.workload_dir,
                            source_date_epoch=epoch)
        shutil.rmtree(rootfs.path)
        done("disk", f"{layout.size} bytes, root hash {layout.root_hash.hex()}")

        for name in request.formats:
            target = outputs / FORMATS[name]
            if name == "vhd":
                write_vhd(raw, target, source_date_epoch=epoch)
            elif name == "vmdk":
                write_vmdk(raw, target)
            elif name == "gcp":
                write_gcp_tar(raw, target, source_date_epoch=epoch)
        done("formats", ", ".join(FORMATS[f] for f in request.formats if f != "raw") or "raw only")

        prediction = predict_disk(raw)
        events = prediction.disk.workload_events
        golden: GoldenMeasurement | None
        if request.base is not None:
            golden = with_build_pcrs(request.base, prediction.pcrs, events, name=request.name)
        elif request.platform == "sim":
            golden = sim_golden(prediction.pcrs, events, name=request.name)
        else:
            golden = None
        if golden is not None:
            (outputs / "golden.json").write_text(golden.dumps())
        done("predict", "golden.json written" if golden is not None else
             "no golden.json: the launch measurement is the platform's (cvm-cli image pin)")

        manifest = {
            "version": MANIFEST_VERSION,
            "platform": request.platform,
            "api_token_sha256": None if request.api_token_sha256 is None else request.api_token_sha256.hex(),
            "source_date_epoch": epoch,
            "lock": {"file": request.lock_file.name, "sha256": sha256_file(request.lock_file).hex()},
            "packages": rootfs.packages,
            "kernel": {"package": KERNEL_PACKAGE, "version": lock.version(KERNEL_PACKAGE), "release": kernel.release,
                       "deb": _file_entry(kernel.deb), "vmlinuz_sha256": sha256_file(kernel.vmlinuz).hex()},
            "busybox": {"package": BUSYBOX_PACKAGE, "version": lock.version(BUSYBOX_PACKAGE),
                        "sha256": sha256_file(busybox).hex()},
            "stub": {"package": STUB_PACKAGE, "version": lock.version(STUB_PACKAGE),
                     "sha256": sha256_file(stub).hex()},
            "agent": {"constraints_sha256": sha256_file(CONSTRAINTS).hex(),
                      "wheels": [_file_entry(w) for w in wheels]},
            "workload": {"digest": layout.workload_digest.hex(), "left_out": list(layout.left_out),
                         "events": [e.to_json() for e in events]},
            "initramfs_sha256": hashlib.sha256(initrd).hexdigest(),
            "uki": {"sha256": prediction.disk.uki_sha256.hex(),
                    "authenticode_sha256": prediction.disk.uki_authenticode.hex(),
                    "cmdline": parts["cmdline"].decode()},
            "disk": layout.to_json(),
            "pcrs": {str(i): v.hex() for i, v in prediction.pcrs.items()},
            "golden_id": None if golden is None else "0x" + golden.canonical_id().hex(),
            "outputs": {name: _file_entry(path) for name, path in sorted((p.name, p) for p in outputs.iterdir())},
        }
        (outputs / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        done("manifest", "manifest.json")

        files: dict[str, Path] = {}
        stale = [request.out / n for n in (*FORMATS.values(), "golden.json", "manifest.json")]
        for path in stale:
            if path.exists() and not (outputs / path.name).exists():
                path.unlink()
        for path in sorted(outputs.iterdir()):
            os.replace(path, request.out / path.name)
            files[path.name] = request.out / path.name
    return BuildResult(out=request.out, files=files, layout=layout, prediction=prediction, golden=golden,
                       manifest=manifest, seconds=seconds)


def platform_of(cmdline: str) -> str | None:
    """The agent's platform a built image names on its kernel command line (:data:`PLATFORM_ARGUMENT`)."""
    found = [w.split("=", 1)[1] for w in cmdline.split() if w.startswith(f"{PLATFORM_ARGUMENT}=")]
    return found[0] if len(found) == 1 else None


def parse_formats(text: str) -> tuple[str, ...]:
    """``raw,vhd,vmdk,gcp`` to a tuple; ``raw`` is always written (the others are made from it)."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    return names if "raw" in names else ("raw", *names)
