"""Independent tools the image tests check against (binutils, pesign, osslsigncode), and test payloads.

Every tool is optional: a test that needs one skips, naming the Debian package that provides it
(scripts/setup installs them all).
"""

from __future__ import annotations

import datetime
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from image.uki import build_uki

#: Where each tool comes from, for the skip message.
PACKAGES = {
    "objcopy": "binutils",
    "objdump": "binutils",
    "pesign": "pesign",
    "osslsigncode": "osslsigncode",
    "/usr/lib/systemd/systemd-measure": "systemd",
}
EPOCH = 1_700_000_000


def tool_or_skip(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {PACKAGES[name]})")
    return path


def run(*args: str | Path) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{args[0]} failed: {done.stdout}{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class ObjdumpSection:
    name: str
    size: int
    vma: int
    file_offset: int


def objdump_sections(path: Path) -> list[ObjdumpSection]:
    """``objdump -h``: binutils' own reading of the section table."""
    out = run(tool_or_skip("objdump"), "-h", path)
    rows = re.findall(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+2\*\*\d+$", out, re.M)
    return [ObjdumpSection(name, int(size, 16), int(vma, 16), int(off, 16)) for name, size, vma, off in rows]


def objdump_private(path: Path) -> dict[str, str]:
    """``objdump -p``: the COFF and optional header fields, by name."""
    out = run(tool_or_skip("objdump"), "-p", path)
    return {m[0]: m[1].strip() for m in re.findall(r"^(\w+(?:/\w+)?)\t+(.*)$", out, re.M)}


def pesign_digest(path: Path) -> bytes:
    """pesign's Authenticode SHA-256 (``pesign -h``), an implementation independent of ours."""
    out = run(tool_or_skip("pesign"), "-h", "-d", "sha256", "-i", path)
    match = re.search(r"hash:\s*([0-9a-f]{64})", out)
    assert match, out
    return bytes.fromhex(match[1])


@dataclass(frozen=True)
class SigningKey:
    key: Path
    cert: Path


def signing_key(directory: Path) -> SigningKey:
    """A throwaway RSA key and self-signed certificate. Only the digest matters, never trust, so the
    validity window is fixed (2020-2040) instead of following the clock."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cvm-attest test signer")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
        .not_valid_after(datetime.datetime(2040, 1, 1, tzinfo=datetime.timezone.utc))
        .sign(key, hashes.SHA256())
    )
    out = SigningKey(directory / "key.pem", directory / "cert.pem")
    out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def osslsigncode_sign(unsigned: Path, signed: Path, key: SigningKey) -> None:
    run(tool_or_skip("osslsigncode"), "sign", "-certs", key.cert, "-key", key.key, "-h", "sha256",
        "-in", unsigned, "-out", signed)


def osslsigncode_digests(signed: Path) -> tuple[bytes, bytes]:
    """(digest the signature carries, digest osslsigncode calculates from the file)."""
    done = subprocess.run([tool_or_skip("osslsigncode"), "verify", "-in", str(signed)],
                          capture_output=True, text=True, timeout=120, check=False)
    out = done.stdout + done.stderr  # the self-signed chain does not verify: only the digests matter
    current = re.search(r"Current message digest\s*:\s*([0-9A-Fa-f]{64})", out)
    calculated = re.search(r"Calculated message digest\s*:\s*([0-9A-Fa-f]{64})", out)
    assert current and calculated, out
    return bytes.fromhex(current[1]), bytes.fromhex(calculated[1])


@dataclass(frozen=True)
class Payload:
    """What goes into a test UKI: a tiny kernel, initrd, command line, os-release."""

    linux: bytes = b"not a kernel, only bytes to measure\n" * 40
    initrd: bytes = b"070701 a tiny initrd\n" * 30
    cmdline: str = "root=/dev/vda ro"
    osrel: bytes = b'ID=debian\nVERSION_ID="12"\n'
    uname: str | None = "6.1.0-57-cloud-amd64"

    def build(self, stub: bytes, timestamp: int = EPOCH) -> bytes:
        return build_uki(stub, linux=self.linux, initrd=self.initrd, cmdline=self.cmdline, osrel=self.osrel,
                         uname=self.uname, timestamp=timestamp)


def as_kernel(pe: bytes, major_image_version: int) -> bytes:
    """A PE image standing in for the kernel: ``pe`` with its MajorImageVersion set, which is what
    decides whether systemd-stub 252 starts it with LoadImage (>= 1) or the EFI handover protocol."""
    out = bytearray(pe)
    optional = struct.unpack_from("<I", pe, 0x3C)[0] + 24
    struct.pack_into("<H", out, optional + 0x2C, major_image_version)
    return bytes(out)
