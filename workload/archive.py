"""Safe extraction of a workload update archive (POST /update-workload).

The archive is a zip (PKWARE APPNOTE 6.3) holding exactly the workload layout of PROTOCOL.md:

* ``docker-compose.yml`` (required),
* ``config/**`` (measured into PCR23),
* never ``secrets/``: secrets travel sealed to the agent's key (offchain.seal, ``POST /secrets``),
  so an archive with a ``secrets/`` entry is refused (``workload.archive.secrets_in_clear``),
* ``images.txt`` (optional: ``NAME sha256:HEX`` of images pulled by digest),
* ``images/NAME.tar`` (optional image tarballs: ``docker save`` or an OCI image layout).

Everything is checked before a byte is written: no absolute path, no ``..``, no backslash, no
empty or ``.`` component, no symbolic link or other special file, no duplicate, no encrypted
entry, nothing outside the layout, and the entry count, each file's size and the total size stay
within :class:`ArchiveLimits`. ``zipfile`` stops reading an entry at its declared
size and checks its CRC, so the declared sizes bound what is written. Files are created with
``O_EXCL | O_NOFOLLOW`` inside a fresh staging directory. :func:`measure_staged` then refuses a
``docker-compose.yml`` that breaks the rules of :mod:`workload.compose` before it writes anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from offchain.abi.workload import (
    COMPOSE_FILE,
    CONFIG_DIR,
    IMAGES_DIR,
    IMAGES_FILE,
    SECRETS_DIR,
    WorkloadEvent,
    measure_directory,
)
from offchain.errors import ParseError, Reason, RequestError, VerificationError

from workload.compose import ComposeRules, check_workload_dir

_COPY_CHUNK = 1 << 20
_ZIP_ENCRYPTED = 0x1
_MAX_JSON = 4 << 20
_OCI_MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
_IMAGE_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Bounds on an uploaded workload archive (POST /update-workload)."""

    max_upload_bytes: int = 1 << 30
    max_total_bytes: int = 2 << 30
    max_file_bytes: int = 1 << 30
    max_entries: int = 10_000


def _invalid(detail: str, **context: Any) -> RequestError:
    return RequestError(Reason.WORKLOAD_ARCHIVE_INVALID, detail, **context)


def _unsafe(name: str, why: str) -> RequestError:
    return RequestError(Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH, f"{name!r}: {why}", entry=name)


def _too_large(detail: str, **context: Any) -> RequestError:
    return RequestError(Reason.WORKLOAD_ARCHIVE_TOO_LARGE, detail, **context)


@dataclass(frozen=True, slots=True)
class ImageDigest:
    """A container image found in an uploaded tarball: its name and sha256 digest."""

    name: str
    digest: bytes
    tarball: str

    def images_line(self) -> str:
        return f"{self.name} sha256:{self.digest.hex()}"


def _check_name(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The entry's path components, or an unsafe-path error."""
    name = info.filename
    if not name or "\x00" in name:
        raise _unsafe(name, "empty name or NUL byte")
    if "\\" in name:
        raise _unsafe(name, "backslash in path")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _unsafe(name, "absolute path")
    parts = name.rstrip("/").split("/") if info.is_dir() else name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise _unsafe(name, "empty, '.' or '..' path component")
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # Unix attributes present (APPNOTE 4.4.2, 4.4.15)
        kind = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            raise _unsafe(name, "symbolic link")
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise _unsafe(name, "special file")
    return tuple(parts)


def _check_layout(parts: tuple[str, ...], is_dir: bool, name: str) -> None:
    top = parts[0]
    if len(parts) == 1 and not is_dir and top in (COMPOSE_FILE, IMAGES_FILE):
        return
    if top == CONFIG_DIR:
        return
    if top == SECRETS_DIR:
        raise RequestError(Reason.WORKLOAD_ARCHIVE_SECRETS_IN_CLEAR,
                           f"{name!r}: secrets never travel in the archive, in the clear; cvm-cli upload seals "
                           "secrets/ to the agent's attested key (POST /secrets)", entry=name)
    if top == IMAGES_DIR and (is_dir and len(parts) == 1 or len(parts) == 2 and parts[1].endswith(".tar")):
        return
    raise _invalid(
        f"{name!r} is outside the workload layout (docker-compose.yml, config/, images.txt, images/*.tar)",
        entry=name,
    )


def _open_zip(source: IO[bytes] | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise _invalid(f"not a readable zip archive: {exc}") from None


def check_archive(archive: zipfile.ZipFile, limits: ArchiveLimits) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every structural and size rule; returns the entries with their path components."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise _too_large(f"{len(infos)} entries, at most {limits.max_entries}", entries=len(infos))
    seen: dict[tuple[str, ...], bool] = {}
    total = 0
    checked = []
    for info in infos:
        parts = _check_name(info)
        is_dir = info.is_dir()
        _check_layout(parts, is_dir, info.filename)
        if info.flag_bits & _ZIP_ENCRYPTED:
            raise _invalid(f"{info.filename!r} is encrypted", entry=info.filename)
        if parts in seen:
            raise _invalid(f"{info.filename!r} appears twice", entry=info.filename)
        seen[parts] = is_dir
        if not is_dir:
            if info.file_size > limits.max_file_bytes:
                raise _too_large(
                    f"{info.filename!r} is {info.file_size} bytes, at most {limits.max_file_bytes}",
                    entry=info.filename,
                )
            total += info.file_size
            if total > limits.max_total_bytes:
                raise _too_large(f"the archive expands beyond {limits.max_total_bytes} bytes")
        checked.append((info, parts))
    for parts, is_dir in seen.items():
        for i in range(1, len(parts)):
            if seen.get(parts[:i]) is False:
                raise _invalid(f"{'/'.join(parts[:i])!r} is both a file and a directory")
    if seen.get((COMPOSE_FILE,)) is not False:
        raise _invalid(f"the archive has no {COMPOSE_FILE}")
    return checked


def _mkdirs(root: Path, parts: tuple[str, ...]) -> Path:
    path = root
    for part in parts:
        path = path / part
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if path.is_symlink() or not path.is_dir():
                raise _invalid(f"{'/'.join(parts)!r} collides with a file") from None
    return path


def extract_archive(source: IO[bytes] | Path, staging: Path, limits: ArchiveLimits) -> list[str]:
    """Check ``source`` and extract it into the empty directory ``staging``; returns the file names."""
    with _open_zip(source) as archive:
        entries = check_archive(archive, limits)
        written = []
        for info, parts in entries:
            if info.is_dir():
                _mkdirs(staging, parts)
                continue
            parent = _mkdirs(staging, parts[:-1])
            fd = os.open(parent / parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                with archive.open(info) as src, os.fdopen(fd, "wb") as dst:
                    while chunk := src.read(_COPY_CHUNK):
                        dst.write(chunk)
            except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
                raise _invalid(f"{info.filename!r} cannot be extracted: {exc}", entry=info.filename) from None
            written.append("/".join(parts))
    return written


# --- image tarballs ----------------------------------------------------------------------------


def _sha256_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    stream = tar.extractfile(member)
    if stream is None:
        raise _invalid(f"{member.name!r} is not a regular file")
    h = hashlib.sha256()
    while chunk := stream.read(_COPY_CHUNK):
        h.update(chunk)
    return h.digest()


def _json_member(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> Any:
    member = members.get(name)
    if member is None or not member.isreg():
        raise _invalid(f"{name} is missing")
    if member.size > _MAX_JSON:
        raise _invalid(f"{name} is larger than {_MAX_JSON} bytes")
    stream = tar.extractfile(member)
    assert stream is not None  # a regular member always has a stream
    try:
        return json.loads(stream.read())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise _invalid(f"{name} is not JSON") from None


def _blob_digest(descriptor: Any, what: str) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise _invalid(f"{what} has no sha256 digest")
    hex_digest = digest[len("sha256:"):]
    if len(hex_digest) != 64 or any(ch not in "0123456789abcdef" for ch in hex_digest):
        raise _invalid(f"{what} has a malformed sha256 digest")
    return hex_digest


def _check_blob(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], hex_digest: str, what: str) -> None:
    member = members.get(f"blobs/sha256/{hex_digest}")
    if member is None or not member.isreg():
        raise _invalid(f"{what} blob sha256:{hex_digest[:12]}… is missing")
    if _sha256_member(tar, member).hex() != hex_digest:
        raise _invalid(f"{what} blob does not match its digest sha256:{hex_digest[:12]}…")


def _oci_images(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], stem: str) -> list[tuple[str, bytes]]:
    """OCI image layout (image-spec image-layout.md): the image digest is the manifest's digest."""
    index = _json_member(tar, members, "index.json")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise _invalid("index.json lists no manifests")
    images = []
    for n, descriptor in enumerate(manifests):
        if not isinstance(descriptor, dict) or descriptor.get("mediaType") not in _OCI_MANIFEST_TYPES:
            raise _invalid("index.json entries must be single-platform image manifests")
        hex_digest = _blob_digest(descriptor, "a manifest")
        _check_blob(tar, members, hex_digest, "the manifest")
        manifest = _json_member(tar, members, f"blobs/sha256/{hex_digest}")
        if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
            raise _invalid("an image manifest has no layer list")
        _check_blob(tar, members, _blob_digest(manifest.get("config"), "the image config"), "the image config")
        for layer in manifest["layers"]:
            _check_blob(tar, members, _blob_digest(layer, "a layer"), "a layer")
        found = descriptor.get("annotations")
        annotations: dict[str, Any] = found if isinstance(found, dict) else {}
        name = next((annotations[k] for k in _IMAGE_NAME_ANNOTATIONS if isinstance(annotations.get(k), str)), None)
        images.append((name or (stem if len(manifests) == 1 else f"{stem}-{n}"), bytes.fromhex(hex_digest)))
    return images


def _docker_images(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], stem: str) -> list[tuple[str, bytes]]:
    """``docker save`` (image spec v1.2 tarball): the image digest is its config's digest (the image ID)."""
    manifest = _json_member(tar, members, "manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise _invalid("manifest.json lists no images")
    images = []
    for n, entry in enumerate(manifest):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise _invalid("a manifest.json entry has no Config")
        config_member = members.get(entry["Config"])
        if config_member is None or not config_member.isreg():
            raise _invalid(f"image config {entry['Config']!r} is missing")
        digest = _sha256_member(tar, config_member)
        named = PurePosixPath(entry["Config"]).name.removesuffix(".json")
        if len(named) == 64 and named != digest.hex():
            raise _invalid(f"image config {entry['Config']!r} does not match its name")
        config = _json_member(tar, members, entry["Config"])
        diff_ids = config.get("rootfs", {}).get("diff_ids") if isinstance(config, dict) else None
        layers = entry.get("Layers")
        if not isinstance(diff_ids, list) or not isinstance(layers, list) or len(diff_ids) != len(layers):
            raise _invalid("image layers do not match the config's rootfs.diff_ids")
        for layer_name, diff_id in zip(layers, diff_ids):
            member = members.get(layer_name) if isinstance(layer_name, str) else None
            if member is None or not member.isreg():
                raise _invalid(f"layer {layer_name!r} is missing")
            if not isinstance(diff_id, str) or f"sha256:{_sha256_member(tar, member).hex()}" != diff_id:
                raise _invalid(f"layer {layer_name!r} does not match its diff_id")
        tags = entry.get("RepoTags")
        name = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else None
        images.append((name or (stem if len(manifest) == 1 else f"{stem}-{n}"), digest))
    return images


def image_digests(tarball: Path) -> list[ImageDigest]:
    """The images of a ``docker save`` or OCI-layout tarball, each blob checked against its digest.

    OCI layout (``oci-layout`` + ``index.json``, also written by Docker 25+): the manifest digest,
    which is what ``NAME@sha256:…`` pulls. Older ``docker save``: the config digest (image ID).
    Names come from the ``io.containerd.image.name`` / ``org.opencontainers.image.ref.name``
    annotation or the first RepoTag, else the tarball's file name.
    """
    stem = tarball.name.removesuffix(".tar")
    try:
        with tarfile.open(tarball, mode="r:") as tar:
            members = {}
            for member in tar.getmembers():
                members[member.name.removeprefix("./")] = member
            if "index.json" in members and "oci-layout" in members:
                found = _oci_images(tar, members, stem)
            elif "manifest.json" in members:
                found = _docker_images(tar, members, stem)
            else:
                raise _invalid("neither an OCI image layout nor a docker save tarball")
    except RequestError as exc:
        exc.context.setdefault("tarball", tarball.name)
        exc.detail = f"{IMAGES_DIR}/{tarball.name}: {exc.detail}"
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise _invalid(
            f"{IMAGES_DIR}/{tarball.name} is not a readable tar archive: {exc}", tarball=tarball.name
        ) from None
    for name, _ in found:
        if not name or any(ch.isspace() for ch in name):
            raise _invalid(f"{IMAGES_DIR}/{tarball.name}: image name {name!r} is empty or has spaces")
    return [ImageDigest(name, digest, tarball.name) for name, digest in found]


def merge_image_tarballs(staging: Path) -> None:
    """Add the images of the uploaded ``images/*.tar`` to ``images.txt`` (names must be unique)."""
    images_dir = staging / IMAGES_DIR
    tarballs = sorted(images_dir.glob("*.tar")) if images_dir.is_dir() else []
    if not tarballs:
        return
    lines = []
    listed = staging / IMAGES_FILE
    if listed.is_file():
        lines = [line for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
    names = {line.split()[0].split("@")[0] for line in lines if not line.lstrip().startswith("#")}
    for tarball in tarballs:
        for image in image_digests(tarball):
            if image.name in names:
                raise RequestError(
                    Reason.WORKLOAD_ARCHIVE_INVALID, f"image {image.name!r} is listed twice", image=image.name
                )
            names.add(image.name)
            lines.append(image.images_line())
    listed.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def listed_images(directory: Path) -> dict[str, bytes]:
    """``images.txt`` of a workload directory as name -> digest: the images PCR23 measured."""
    return {e.name: e.content_digest for e in measure_directory(directory) if e.kind == "image"}


def check_tarball_listed(tarball: Path, listed: Mapping[str, bytes], shown_as: str) -> None:
    """Every image of ``tarball`` must be in ``listed`` (:func:`listed_images`) with its digest.

    PCR23 measures ``images.txt``, not the tarballs: a tarball changed after it was measured (on a
    disk the host can write) would otherwise load an image nobody measured. A mismatch is
    ``workload.image_unmeasured`` naming the image and the tarball."""
    for image in image_digests(tarball):
        if listed.get(image.name) != image.digest:
            raise VerificationError(
                Reason.WORKLOAD_IMAGE_UNMEASURED,
                f"{IMAGES_DIR}/{shown_as} holds {image.name} sha256:{image.digest.hex()}, which {IMAGES_FILE} (what "
                "PCR23 measured) does not list; it is not loaded",
                image=image.name, tarball=shown_as,
            )


def measure_staged(staging: Path, rules: ComposeRules) -> list[WorkloadEvent]:
    """The PCR23 events of an extracted update archive: its ``docker-compose.yml`` checked against
    ``rules`` before anything is written (:func:`workload.compose.check_workload_dir`), its image
    tarballs merged into ``images.txt``, then :func:`offchain.abi.workload.measure_directory` (what
    ``POST /update-workload`` extends)."""
    check_workload_dir(staging, rules)
    merge_image_tarballs(staging)
    try:
        return measure_directory(staging)
    except ParseError as exc:  # e.g. a malformed images.txt in the archive
        raise RequestError(Reason.WORKLOAD_ARCHIVE_INVALID, exc.detail, **exc.context) from None


def measure_archive(
    source: IO[bytes] | Path, limits: ArchiveLimits | None = None, rules: ComposeRules | None = None
) -> list[WorkloadEvent]:
    """The events an agent will extend into PCR23 for this update archive, computed without a TPM:
    checked and extracted into a temporary directory by the agent's own code, measured, deleted.
    ``limits`` and ``rules`` default to a real CVM's.

    The golden predictor (``cvm-cli golden predict --update``) uses it, so the golden measurement
    of an update can be published before the update is applied.
    """
    with tempfile.TemporaryDirectory(prefix="cvm-attest-measure-") as scratch:
        staging = Path(scratch) / "workload"
        staging.mkdir()
        extract_archive(source, staging, limits or ArchiveLimits())
        return measure_staged(staging, rules or ComposeRules())


@dataclass(frozen=True, slots=True)
class PackedWorkload:
    """A workload directory as ``cvm-cli upload`` sends it: the update archive (everything but
    ``secrets/``) and the files of ``secrets/`` (by name under it), to be sealed separately."""

    archive: bytes
    secrets: Mapping[str, bytes]


_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def pack_workload(directory: Path, limits: ArchiveLimits | None = None) -> PackedWorkload:
    """Pack ``directory`` (``docker-compose.yml``, ``config/``, ``images.txt``, ``images/*.tar``,
    ``secrets/``) the way the agent will accept it: the same archive for the same files (sorted
    entries, fixed time stamps), checked by :func:`check_archive` and the compose rules before it is
    returned, so nothing the agent would refuse leaves this machine. Symbolic links and anything
    outside the layout are refused."""
    limits = limits or ArchiveLimits()
    if not directory.is_dir():
        raise RequestError(Reason.INPUT_UNREADABLE, f"{directory} is not a directory")
    check_workload_dir(directory, ComposeRules())
    files: list[str] = []
    secrets: dict[str, bytes] = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_symlink():
            raise _unsafe(rel, "symbolic link")
        if not path.is_file():
            if not path.is_dir():
                raise _unsafe(rel, "special file")
            continue
        if rel.split("/")[0] == SECRETS_DIR:
            secrets[rel.split("/", 1)[1]] = path.read_bytes()
        else:
            files.append(rel)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel in files:
            info = zipfile.ZipInfo(rel, date_time=_ZIP_EPOCH)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (directory / rel).read_bytes())
    data = buffer.getvalue()
    if len(data) > limits.max_upload_bytes:
        raise _too_large(f"the workload archive is {len(data)} bytes, more than the agent's {limits.max_upload_bytes}")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        check_archive(archive, limits)
    return PackedWorkload(data, secrets)
