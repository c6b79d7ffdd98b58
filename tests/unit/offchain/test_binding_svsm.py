"""The SVSM digests of offchain.abi.binding, recomputed independently (hashlib, eth_abi, eth_hash) and their
refusals: the SVSM's REPORT_DATA, TPM names, and the activation statement an activator signs."""

from __future__ import annotations

import hashlib

import pytest
from eth_abi import encode
from eth_hash.auto import keccak

from offchain.abi.binding import svsm_activation_digest, svsm_report_data, tpm_name_digest
from offchain.abi.tpm import TPM_ALG_SHA1, TpmtPublic
from offchain.errors import ParseError, Reason
from tests.support.registry import SoftAk, ek_public

REGISTRY = "0x" + "ab" * 20


def test_svsm_report_data_is_sha512_of_nonce_and_manifest() -> None:
    nonce, manifest = bytes(range(64)), ek_public("rsa").to_bytes()
    assert svsm_report_data(nonce, manifest) == hashlib.sha512(nonce + manifest).digest()
    assert len(svsm_report_data(nonce, manifest)) == 64


@pytest.mark.parametrize("size", [0, 32, 63, 65], ids=lambda n: f"nonce{n}")
def test_svsm_report_data_needs_a_64_byte_nonce(size: int) -> None:
    with pytest.raises(ParseError) as info:
        svsm_report_data(bytes(size), b"manifest")
    assert info.value.reason is Reason.INPUT_INVALID


@pytest.mark.parametrize("kind", ["ek-rsa", "ek-p256", "ak-rsa", "ak-p256"])
def test_name_digest_is_the_sha256_part_of_the_tpm_name(kind: str) -> None:
    role, alg = kind.split("-")
    area = ek_public(alg).to_bytes() if role == "ek" else SoftAk("rsa" if alg == "rsa" else "p256").public_bytes
    name = TpmtPublic.from_bytes(area).name()
    assert name[:2] == b"\x00\x0b" and tpm_name_digest(area) == name[2:] == hashlib.sha256(area).digest()


def test_name_digest_refuses_another_name_alg() -> None:
    sha1_ak = TpmtPublic.from_bytes(SoftAk("p256").public_bytes)
    area = TpmtPublic(**{**{f: getattr(sha1_ak, f) for f in sha1_ak.__slots__}, "name_alg": TPM_ALG_SHA1}).to_bytes()
    for bad in (area, area[:3], b""):
        with pytest.raises(ParseError) as info:
            tpm_name_digest(bad)
        assert info.value.reason is Reason.TPM_PUBLIC_MALFORMED


def test_activation_digest_is_the_abi_encoded_statement() -> None:
    ek_name, ak_name, expiry = b"\x01" * 32, b"\x02" * 32, 1_900_000_000
    expected = keccak(
        encode(
            ["bytes32", "uint256", "address", "bytes32", "bytes32", "uint64"],
            [keccak(b"cvm-attest.svsm-activation.v1"), 31337, REGISTRY, ek_name, ak_name, expiry],
        )
    )
    assert svsm_activation_digest(31337, REGISTRY, ek_name, ak_name, expiry) == expected
    # Every field is bound: swapping the names, another chain or another expiry is another digest.
    assert svsm_activation_digest(31337, REGISTRY, ak_name, ek_name, expiry) != expected
    assert svsm_activation_digest(1, REGISTRY, ek_name, ak_name, expiry) != expected
    assert svsm_activation_digest(31337, REGISTRY, ek_name, ak_name, expiry + 1) != expected


@pytest.mark.parametrize(
    ("ek_name", "expiry"),
    [(b"\x01" * 31, 1), (b"\x01" * 32, 1 << 64), (b"\x01" * 32, -1)],
    ids=["short-name", "expiry-past-uint64", "negative-expiry"],
)
def test_activation_digest_refuses_what_abi_cannot_encode(ek_name: bytes, expiry: int) -> None:
    with pytest.raises(ParseError) as info:
        svsm_activation_digest(31337, REGISTRY, ek_name, b"\x02" * 32, expiry)
    assert info.value.reason is Reason.INPUT_INVALID
