"""image.authenticode: the digest is pesign's and osslsigncode's for the real stub, a built UKI and
signed images; it covers exactly the bytes the Authenticode specification says it covers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from image.authenticode import authenticode_digest
from image.pe import PeImage
from tests.unit.image.tools import (
    SigningKey,
    osslsigncode_digests,
    osslsigncode_sign,
    pesign_digest,
    signing_key,
)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return signing_key(tmp_path_factory.mktemp("signer"))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_stub_digest_is_pesigns(stub: bytes, tmp_path: Path) -> None:
    assert authenticode_digest(stub) == pesign_digest(_write(tmp_path, "stub.efi", stub))


def test_uki_digest_is_pesigns(uki: bytes, tmp_path: Path) -> None:
    assert authenticode_digest(uki) == pesign_digest(_write(tmp_path, "uki.efi", uki))


def test_signing_the_uki_keeps_its_digest(uki: bytes, tmp_path: Path, key: SigningKey) -> None:
    """A built UKI is 8-byte aligned, so a signer appends its certificate table without padding: the
    digest osslsigncode signs, the one it recalculates, pesign's and ours all equal the unsigned one."""
    signed = tmp_path / "uki.signed.efi"
    osslsigncode_sign(_write(tmp_path, "uki.efi", uki), signed, key)
    data = signed.read_bytes()
    assert PeImage.from_bytes(data).certificate_table[1] > 0
    carried, calculated = osslsigncode_digests(signed)
    assert carried == calculated == pesign_digest(signed) == authenticode_digest(data) == authenticode_digest(uki)


def test_signing_an_unaligned_image_changes_its_digest(stub: bytes, tmp_path: Path, key: SigningKey) -> None:
    """The twin: the stub's length is not a multiple of 8, the signer pads it, and the padding is hashed."""
    assert len(stub) % 8
    signed = tmp_path / "stub.signed.efi"
    osslsigncode_sign(_write(tmp_path, "stub.efi", stub), signed, key)
    data = signed.read_bytes()
    carried, calculated = osslsigncode_digests(signed)
    assert carried == calculated == pesign_digest(signed) == authenticode_digest(data) != authenticode_digest(stub)


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def test_excluded_bytes_do_not_change_the_digest(uki: bytes, tmp_path: Path, key: SigningKey) -> None:
    pe = PeImage.from_bytes(uki)
    digest = authenticode_digest(uki)
    assert authenticode_digest(_flip(uki, pe.checksum_offset)) == digest
    signed = tmp_path / "uki.signed.efi"
    osslsigncode_sign(_write(tmp_path, "uki.efi", uki), signed, key)
    data = signed.read_bytes()
    offset, size = PeImage.from_bytes(data).certificate_table
    assert authenticode_digest(_flip(data, offset + size // 2)) == digest  # inside the signature


def _last_section_end(pe: PeImage) -> int:
    return max(h.pointer_to_raw_data + h.size_of_raw_data for h in pe.sections)


@pytest.mark.parametrize(
    "where",
    ["dos_stub", "timestamp", "size_of_image", "section_table", "first_section", "last_section", "trailing_data"],
)
def test_every_other_byte_changes_the_digest(uki: bytes, where: str) -> None:
    pe = PeImage.from_bytes(uki)
    table = pe.optional_header_offset + struct.unpack_from("<H", uki, pe.pe_offset + 20)[0]
    offsets = {
        "dos_stub": 0x40,
        "timestamp": pe.timestamp_offset,
        "size_of_image": pe.optional_header_offset + 0x38,
        "section_table": table + 12,
        "first_section": min(h.pointer_to_raw_data for h in pe.sections),
        "last_section": _last_section_end(pe) - 1,
        "trailing_data": len(uki) - 1,
    }
    assert _last_section_end(pe) < len(uki), "the stub carries a COFF symbol table after its sections"
    assert authenticode_digest(_flip(uki, offsets[where])) != authenticode_digest(uki)


def test_the_digest_of_a_parsed_image_is_the_digest_of_its_bytes(uki: bytes) -> None:
    assert authenticode_digest(PeImage.from_bytes(uki)) == authenticode_digest(uki)
