"""Building blocks for the agent's tests: workload directories, update archives, image tarballs,
configurations on a real swtpm, and the development AMD chain generated once per session."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from offchain.abi.snp_report import Product, SignerKind
from offchain.devamd import DevAmdChain

from agent.config import AgentConfig, AkKind, Listen, PlatformName, Tcti
from localstack.swtpm import Swtpm
from workload.archive import ArchiveLimits

COMPOSE = b"services:\n  app:\n    image: example/app@sha256:" + b"ab" * 32 + b"\n"
#: The same service given the TPM: what workload.compose refuses (PCR23 could be reset and replayed).
TPM_COMPOSE = COMPOSE + b"    devices: [/dev/tpmrm0]\n"

#: The golden id the unit tests' shared agent (tests/unit/agent/conftest.py) consents to.
CONSENTED_GOLDEN = bytes.fromhex("77" * 32)

#: A small workload: compose file, two config files (what an update archive holds; secrets travel
#: sealed, never in it).
WORKLOAD: dict[str, bytes] = {
    "docker-compose.yml": COMPOSE,
    "config/app.toml": b"[app]\nmode = 'production'\n",
    "config/nested/limits.json": b'{"max": 10}\n',
}
#: A secret as it sits in a workload directory (never measured).
SECRET = {"secrets/api-key": b"s3cr3t\n"}


def write_tree(root: Path, files: Mapping[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def tree_digest(root: Path) -> str:
    """SHA-256 over every path, mode and content below ``root`` (to prove nothing changed)."""
    h = hashlib.sha256()
    if not root.exists():
        return "absent"
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + oct(path.lstat().st_mode).encode() + b"\0")
        if path.is_file() and not path.is_symlink():
            h.update(path.read_bytes())
    return h.hexdigest()


def make_zip(files: Mapping[str, bytes] | Iterable[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    """A zip of ``files`` (names or ready-made ZipInfo objects for unusual entries)."""
    buf = io.BytesIO()
    items = files.items() if isinstance(files, Mapping) else files
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in items:
            z.writestr(name, data)
    return buf.getvalue()


def symlink_entry(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def _tar(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _layer(content: bytes) -> bytes:
    return _tar({"app/file.txt": content})


def oci_tarball(name: str, content: bytes = b"hello") -> tuple[bytes, bytes]:
    """An OCI image layout tarball with one image; returns ``(tar bytes, manifest digest)``."""
    layer = _layer(content)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}
                        ).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(), "size": len(layer)}],
    }).encode()
    manifest_digest = hashlib.sha256(manifest).digest()
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": "sha256:" + manifest_digest.hex(), "size": len(manifest),
                       "annotations": {"io.containerd.image.name": name}}],
    }).encode()
    blobs = {f"blobs/sha256/{hashlib.sha256(b).hexdigest()}": b for b in (layer, config, manifest)}
    return _tar({"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index, **blobs}), manifest_digest


def docker_tarball(tag: str, content: bytes = b"hello", tamper_layer: bool = False) -> tuple[bytes, bytes]:
    """A ``docker save`` (v1.2) tarball with one image; returns ``(tar bytes, config digest)``."""
    layer = _layer(content)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}
                        ).encode()
    config_digest = hashlib.sha256(config).digest()
    manifest = json.dumps([{"Config": f"{config_digest.hex()}.json", "RepoTags": [tag],
                            "Layers": ["layer0/layer.tar"]}]).encode()
    shipped_layer = _layer(content + b"!") if tamper_layer else layer
    return _tar({"manifest.json": manifest, f"{config_digest.hex()}.json": config,
                 "layer0/layer.tar": shipped_layer}), config_digest


def generate_sim_chain(directory: Path, product: Product = Product.GENOA) -> Path:
    """Generate the development chain once; agents get a copy in ``<state-dir>/sim``."""
    DevAmdChain.generate(product=product, signer=SignerKind.VCEK).save(directory)
    return directory


def agent_config(
    tpm: Swtpm,
    root: Path,
    sim_chain: Path | None,
    *,
    platform: PlatformName = PlatformName.SIM,
    ak: AkKind = AkKind.RSA,
    runner: tuple[str, ...] = ("true",),
    limits: ArchiveLimits | None = None,
    reset_pcr23: bool = True,
    **extra: object,
) -> AgentConfig:
    """A configuration for an agent on ``tpm`` with its state and workload under ``root``."""
    state = root / "state"
    if sim_chain is not None and not (state / "sim").exists():
        shutil.copytree(sim_chain, state / "sim")
    return AgentConfig(
        platform=platform,
        tcti=Tcti.parse(tpm.tcti),
        state_dir=state,
        workload_dir=root / "workload",
        internal=Listen("127.0.0.1", 0),
        external=Listen("127.0.0.1", 0),
        ak=ak,
        runner=runner,
        image_loader=("true",),
        reset_pcr23=reset_pcr23,
        limits=limits or ArchiveLimits(),
        **extra,  # type: ignore[arg-type]
    )
