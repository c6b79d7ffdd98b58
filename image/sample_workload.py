"""A small workload that really runs: a compose file and a local image tarball made from busybox-static.

The demo's image path, the image benchmark and the boot test build the CVM image of this workload.
The container image is a ``docker save`` (image spec v1.2) tarball written here, byte for byte the
same every time (sorted members, fixed owners and times): one layer holding Debian's static busybox
(``busybox-static`` at its locked version) as ``/bin/busybox`` and ``/bin/sh``. The container prints
:data:`GREETING` and its configuration file, then sleeps.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from image.packages import LOCK_FILE, PackageLock, fetch_busybox

IMAGE_NAME = "localhost/cvm-attest-hello:1"
GREETING = "cvm-attest sample workload: hello from a container"
CONFIG_TEXT = "greeting=hello\n"
_EPOCH = 315_532_800  # 1980-01-01, the image's own timestamps


def _tar(members: list[tuple[str, bytes, int] | tuple[str, str]]) -> bytes:
    """A tar of ``(name, data, mode)`` files (directories when the name ends in ``/``) and
    ``(name, target)`` symbolic links, in that order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member[0])
            info.mtime, info.uid, info.gid, info.uname, info.gname = _EPOCH, 0, 0, "root", "root"
            if len(member) == 2:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, member[1], 0o777
                tar.addfile(info)
            elif member[0].endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, member[2]
                tar.addfile(info)
            else:
                data, info.mode = member[1], member[2]
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def busybox_image_tarball(busybox: bytes, command: list[str]) -> tuple[bytes, bytes]:
    """A ``docker save`` tarball of :data:`IMAGE_NAME` running ``command``; returns the tarball and
    the image's digest (its config's SHA-256, which ``images.txt`` records)."""
    layer = _tar([("bin/", b"", 0o755), ("bin/busybox", busybox, 0o755), ("bin/sh", "busybox"),
                  ("etc/", b"", 0o755), ("tmp/", b"", 0o1777)])
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1980-01-01T00:00:00Z",
        "config": {"Cmd": command, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True).encode()
    digest = hashlib.sha256(config).digest()
    manifest = json.dumps([{"Config": f"{digest.hex()}.json", "RepoTags": [IMAGE_NAME],
                            "Layers": [f"{diff_id[7:]}/layer.tar"]}]).encode()
    tarball = _tar([("manifest.json", manifest, 0o644), (f"{digest.hex()}.json", config, 0o644),
                    (f"{diff_id[7:]}/", b"", 0o755), (f"{diff_id[7:]}/layer.tar", layer, 0o644)])
    return tarball, digest


def compose_file() -> str:
    """The compose file: one service from the local image, its config mounted read-only."""
    script = f"echo '{GREETING}'; cat /config/app.env; exec sleep 2147483647"
    return (
        "services:\n"
        "  hello:\n"
        f"    image: {IMAGE_NAME}\n"
        f"    command: {json.dumps(['/bin/sh', '-c', script])}\n"
        "    volumes:\n"
        "      - ./config:/config:ro\n"
    )


def write_sample_workload(directory: Path, *, apt_cache: Path, work: Path, lock_file: Path = LOCK_FILE) -> Path:
    """Write the sample workload into the new directory ``directory`` (busybox-static fetched into
    ``apt_cache`` and unpacked under ``work``); returns ``directory``."""
    busybox = fetch_busybox(PackageLock.read(lock_file), apt_cache, work / "busybox-static").read_bytes()
    tarball, _ = busybox_image_tarball(busybox, ["/bin/sh"])
    directory.mkdir(parents=True)
    (directory / "docker-compose.yml").write_text(compose_file())
    (directory / "config").mkdir()
    (directory / "config" / "app.env").write_text(CONFIG_TEXT)
    (directory / "images").mkdir()
    (directory / "images" / "hello.tar").write_bytes(tarball)
    return directory
