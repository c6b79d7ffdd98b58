"""workload.archive: a workload archive is checked completely before anything is written, and image
tarballs yield digests only when every blob matches."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offchain.errors import CvmAttestError, Reason, RequestError
from tests.support.agent import WORKLOAD, docker_tarball, make_zip, oci_tarball, symlink_entry
from workload.archive import ArchiveLimits, extract_archive, image_digests

LIMITS = ArchiveLimits(max_upload_bytes=1 << 20, max_total_bytes=1 << 16, max_file_bytes=1 << 14, max_entries=20)
ARCHIVE_REASONS = {
    Reason.WORKLOAD_ARCHIVE_INVALID,
    Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH,
    Reason.WORKLOAD_ARCHIVE_TOO_LARGE,
    Reason.WORKLOAD_ARCHIVE_SECRETS_IN_CLEAR,
}


def _extract(data: bytes, tmp_path: Path, limits: ArchiveLimits = LIMITS) -> list[str]:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    return extract_archive(io.BytesIO(data), staging, limits)


def test_valid_archive_is_extracted(tmp_path: Path) -> None:
    names = _extract(make_zip(WORKLOAD), tmp_path)
    assert sorted(names) == sorted(WORKLOAD)
    staging = tmp_path / "staging"
    for name, data in WORKLOAD.items():
        assert (staging / name).read_bytes() == data
    assert stat.S_IMODE((staging / "config/app.toml").stat().st_mode) == 0o644


@pytest.mark.parametrize("entry", ["secrets/api-key", "secrets/", "secrets/db/password"])
def test_secrets_never_travel_in_the_archive(tmp_path: Path, entry: str) -> None:
    """Secrets go sealed to the agent's attested key (POST /secrets); an archive carrying them in
    the clear is refused whole, before anything is written."""
    with pytest.raises(RequestError) as caught:
        _extract(make_zip({**WORKLOAD, entry: b"" if entry.endswith("/") else b"s3cr3t"}), tmp_path)
    assert caught.value.reason is Reason.WORKLOAD_ARCHIVE_SECRETS_IN_CLEAR
    assert caught.value.context["entry"] == entry
    assert list((tmp_path / "staging").iterdir()) == []


def _with(extra: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    return make_zip(list(WORKLOAD.items()) + extra)


def _duplicate_archive() -> bytes:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)  # the point of this archive
        return make_zip([*WORKLOAD.items(), ("config/app.toml", b"again")])


def _mark_encrypted(archive: bytes, name: bytes) -> bytes:
    """Set the 'encrypted' general-purpose flag (APPNOTE 4.4.4, bit 0) of ``name`` in the local
    header and the central directory; ``zipfile`` cannot write encrypted entries itself."""
    data = bytearray(archive)
    for signature, flag_at, name_len_at, name_at in ((b"PK\x03\x04", 6, 26, 30), (b"PK\x01\x02", 8, 28, 46)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            length = int.from_bytes(data[at + name_len_at : at + name_len_at + 2], "little")
            if data[at + name_at : at + name_at + length] == name:
                data[at + flag_at] |= 0x1
            start = at + 4
    return bytes(data)


def _fifo_entry() -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo("config/fifo")
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info, b""


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (_with([("config/../../escape", b"x")]), Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (_with([("/etc/passwd", b"x")]), Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (_with([("config\\..\\x", b"x")]), Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (_with([("C:/x", b"x")]), Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (_with([("config//x", b"x")]), Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (_with([("config/./x", b"x")]), Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (_with([symlink_entry("config/link", "/etc/shadow")]), Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (_with([_fifo_entry()]), Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (_mark_encrypted(_with([("config/enc.txt", b"x")]), b"config/enc.txt"), Reason.WORKLOAD_ARCHIVE_INVALID),
        (_with([("run.sh", b"#!/bin/sh\n")]), Reason.WORKLOAD_ARCHIVE_INVALID),
        (_with([("images/nested/x.tar", b"")]), Reason.WORKLOAD_ARCHIVE_INVALID),
        (_with([("images/x.zip", b"")]), Reason.WORKLOAD_ARCHIVE_INVALID),
        (_duplicate_archive(), Reason.WORKLOAD_ARCHIVE_INVALID),
        (_with([("config/app.toml/inner", b"x")]), Reason.WORKLOAD_ARCHIVE_INVALID),
        (make_zip({"config/a": b"x"}), Reason.WORKLOAD_ARCHIVE_INVALID),
        (_with([(f"config/f{i}", b"") for i in range(20)]), Reason.WORKLOAD_ARCHIVE_TOO_LARGE),
        (_with([("config/big", bytes(LIMITS.max_file_bytes + 1))]), Reason.WORKLOAD_ARCHIVE_TOO_LARGE),
        (_with([(f"config/part{i}", bytes(LIMITS.max_file_bytes)) for i in range(5)]),
         Reason.WORKLOAD_ARCHIVE_TOO_LARGE),
        (b"PK\x03\x04 not really a zip", Reason.WORKLOAD_ARCHIVE_INVALID),
        (b"", Reason.WORKLOAD_ARCHIVE_INVALID),
    ],
    ids=[
        "traversal", "absolute", "backslash", "drive-letter", "empty-component", "dot-component", "symlink", "fifo",
        "encrypted", "outside-layout", "nested-image", "image-not-tar", "duplicate", "file-and-directory",
        "no-compose", "too-many-entries", "file-too-large", "total-too-large", "truncated", "empty",
    ],
)
def test_bad_archive_writes_nothing(archive: bytes, reason: Reason, tmp_path: Path) -> None:
    with pytest.raises(RequestError) as exc:
        _extract(archive, tmp_path)
    assert exc.value.reason is reason
    assert list((tmp_path / "staging").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staging"]


def test_corrupted_entry_is_invalid(tmp_path: Path) -> None:
    data = bytearray(make_zip({"docker-compose.yml": b"services: {}\n" * 50}))
    # Flip a byte of the deflated data: the CRC check must catch it while extracting.
    header_end = 30 + len("docker-compose.yml")
    data[header_end + 5] ^= 0xFF
    with pytest.raises(RequestError) as exc:
        _extract(bytes(data), tmp_path)
    assert exc.value.reason is Reason.WORKLOAD_ARCHIVE_INVALID


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_random_bytes_give_typed_errors(tmp_path: Path, data: bytes) -> None:
    staging = tmp_path / "rand"
    staging.mkdir(exist_ok=True)
    try:
        extract_archive(io.BytesIO(data), staging, LIMITS)
    except RequestError as exc:
        assert exc.reason in ARCHIVE_REASONS


_NAME_PART = st.sampled_from(["config", "secrets", "images", "..", ".", "", "a", "b.tar", "docker-compose.yml",
                              "\\", "/", "C:"])


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_NAME_PART, min_size=1, max_size=4).map("/".join), min_size=1, max_size=6))
def test_random_names_stay_inside_staging(tmp_path: Path, names: list[str]) -> None:
    """Whatever the names, either a typed error or every file lands inside the staging directory."""
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    staging = work / "staging"
    staging.mkdir()
    try:
        archive = make_zip([(name, b"x") for name in names] + [("docker-compose.yml", b"c")])
    except (ValueError, OSError, IndexError):
        return  # zipfile itself refuses to write some names (an empty one raises IndexError)
    try:
        written = extract_archive(io.BytesIO(archive), staging, LIMITS)
    except RequestError as exc:
        assert exc.reason in ARCHIVE_REASONS
        return
    for name in written:
        assert (staging / name).resolve().is_relative_to(staging.resolve())
    assert [p.name for p in work.iterdir()] == ["staging"]


# --- image tarballs ----------------------------------------------------------------------------------


def test_oci_layout_digest_is_the_manifest_digest(tmp_path: Path) -> None:
    tar, digest = oci_tarball("registry.example/app:1.0")
    (tmp_path / "app.tar").write_bytes(tar)
    [image] = image_digests(tmp_path / "app.tar")
    assert (image.name, image.digest) == ("registry.example/app:1.0", digest)
    assert image.images_line() == f"registry.example/app:1.0 sha256:{digest.hex()}"


def test_docker_save_digest_is_the_config_digest(tmp_path: Path) -> None:
    tar, digest = docker_tarball("example/db:2")
    (tmp_path / "db.tar").write_bytes(tar)
    [image] = image_digests(tmp_path / "db.tar")
    assert (image.name, image.digest) == ("example/db:2", digest)


def test_docker_save_with_a_swapped_layer_is_refused(tmp_path: Path) -> None:
    tar, _ = docker_tarball("example/db:2", tamper_layer=True)
    (tmp_path / "db.tar").write_bytes(tar)
    with pytest.raises(RequestError) as exc:
        image_digests(tmp_path / "db.tar")
    assert exc.value.reason is Reason.WORKLOAD_ARCHIVE_INVALID


def test_oci_layout_with_a_swapped_blob_is_refused(tmp_path: Path) -> None:
    tar, _ = oci_tarball("app:1")
    good_layer_tar, _ = oci_tarball("app:1", content=b"other")
    # Rebuild the tarball with one blob's content replaced but its name (digest) kept.
    src = tarfile.open(fileobj=io.BytesIO(tar))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.startswith("blobs/") and b"app/file.txt" in data:
                data = data.replace(b"hello", b"HELLO")
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    (tmp_path / "app.tar").write_bytes(out.getvalue())
    assert good_layer_tar != tar
    with pytest.raises(RequestError) as exc:
        image_digests(tmp_path / "app.tar")
    assert exc.value.reason is Reason.WORKLOAD_ARCHIVE_INVALID


@pytest.mark.parametrize("content", [b"", b"not a tar at all", bytes(1024)], ids=["empty", "garbage", "zeros"])
def test_not_an_image_tarball(content: bytes, tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(content)
    with pytest.raises(CvmAttestError) as exc:
        image_digests(tmp_path / "x.tar")
    assert exc.value.reason is Reason.WORKLOAD_ARCHIVE_INVALID


def test_image_tarball_in_an_archive_is_extracted(tmp_path: Path) -> None:
    tar, digest = oci_tarball("app:1")
    names = _extract(make_zip({**WORKLOAD, "images/app.tar": tar}), tmp_path, ArchiveLimits())
    assert "images/app.tar" in names
    assert hashlib.sha256((tmp_path / "staging/images/app.tar").read_bytes()).digest() == hashlib.sha256(tar).digest()
    assert image_digests(tmp_path / "staging/images/app.tar")[0].digest == digest
    assert not os.path.islink(tmp_path / "staging/images/app.tar")
