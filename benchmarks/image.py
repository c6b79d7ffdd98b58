"""The CVM image: build, prediction and boot, on this machine: ``scripts/bench image [--json]``.

Builds the sample workload's image (image.sample_workload, ``--platform sim``) with
:func:`image.build.build_image` from the warm apt cache (``.cache/image/apt``; a first run fills
it), then:

* ``build_s``: the whole build (packages, agent wheels, mmdebstrap root, initramfs, disk, golden.json
  and manifest.json), wall-clock;
* ``predict_s``: ``image.predict.predict_disk`` of the built ``disk.raw`` (GPT, UKI, the root's
  dm-verity check, the workload partition), wall-clock;
* ``boot_to_agent_s``: from QEMU's start (q35, OVMF, swtpm, TCG: no KVM here) to the agent's first
  answer on ``/healthz`` through the forwarded port;
* ``disk_bytes``: the size of ``disk.raw``.

Aims on this machine: build <= 120 s, predict <= 5 s, boot to agent <= 90 s.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from image.build import BuildRequest, build_image
from image.predict import predict_disk
from image.rootfs import DEFAULT_APT_CACHE
from image.sample_workload import write_sample_workload
from localstack.qemu import booted_vm

KEYS = ("build_s", "predict_s", "boot_to_agent_s", "disk_bytes")
AIMS = {"build_s": 120, "predict_s": 5, "boot_to_agent_s": 90}
EPOCH = 1_700_000_000


def measure(work: Path) -> dict[str, Any]:
    workload = write_sample_workload(work / "workload", apt_cache=DEFAULT_APT_CACHE, work=work / "tools")
    start = time.monotonic()
    result = build_image(BuildRequest(workload, work / "out", platform="sim", source_date_epoch=EPOCH))
    build_s = time.monotonic() - start
    disk = result.files["disk.raw"]
    start = time.monotonic()
    predict_disk(disk)
    predict_s = time.monotonic() - start
    with booted_vm(disk, work / "vm") as vm:
        boot_s = vm.wait_for_agent(300)
    return {"build_s": round(build_s, 1), "predict_s": round(predict_s, 2), "boot_to_agent_s": round(boot_s, 1),
            "disk_bytes": disk.stat().st_size, "steps_s": {k: round(v, 1) for k, v in result.seconds.items()},
            "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench image", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cvm-attest-bench-image-") as tmp:
        result = measure(Path(tmp))
    if args.json:
        print(json.dumps({k: result[k] for k in KEYS}))
    else:
        for key in KEYS:
            aim = f"  (aim <= {AIMS[key]} s)" if key in AIMS else ""
            print(f"{key:<16} {result[key]}{aim}")
        print("steps: " + ", ".join(f"{k} {v} s" for k, v in result["steps_s"].items()) + f" ({result['cpus']} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
