"""A small ``cvm-cli image build`` output directory for the deploy tests: real disk formats (a fixed
VHD with zero ranges, a streamOptimized VMDK, Compute Engine's disk.tar.gz) of a few MiB, and a
manifest listing them the way image.build writes it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from image.formats import write_gcp_tar, write_vhd, write_vmdk

MIB = 1 << 20
EPOCH = 1_700_000_000


def _entry(path: Path) -> dict[str, object]:
    return {"name": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "size": path.stat().st_size}


def make_image_dir(directory: Path, *, platform: str = "azure", mib: int = 4,
                   formats: tuple[str, ...] = ("vhd", "vmdk", "gcp")) -> Path:
    """``directory`` holding ``disk.raw`` of ``mib`` MiB (data in the first and third MiB, the rest
    zeros) and the requested formats, with ``manifest.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(mib * MIB)
        f.write(b"\xeb\x63\x90" + bytes(range(256)) * 4)
        f.seek(2 * MIB + 4096)
        f.write(b"cvm-attest" * 100)
    if "vhd" in formats:
        write_vhd(raw, directory / "disk.vhd", source_date_epoch=EPOCH)
    if "vmdk" in formats:
        write_vmdk(raw, directory / "disk.vmdk")
    if "gcp" in formats:
        write_gcp_tar(raw, directory / "disk.tar.gz", source_date_epoch=EPOCH)
    outputs = {p.name: _entry(p) for p in sorted(directory.iterdir()) if p.name.startswith("disk.")}
    manifest = {"version": 1, "platform": platform, "golden_id": "0x" + "ab" * 32, "outputs": outputs}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return directory
