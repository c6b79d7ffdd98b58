"""RsaPss.sol: RSASSA-PSS (SHA-384, MGF1-SHA-384, salt 48) against `cryptography` and real AMD certificates.

Valid signatures come from `cryptography` and from a hand-built EMSA-PSS encoder (RFC 8017, 9.1.1) signed
with the raw RSA private operation, so every check of EMSA-PSS-VERIFY (9.1.2) gets a twin that breaks
exactly that check.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from tests.support.evm import compile_contracts, deploy, reverts_with

PSS48 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


@dataclass(frozen=True)
class RawKey:
    """An RSA key as numbers: what the contract takes (big-endian n, e) and the raw private operation."""

    n: int
    e: int
    d: int

    @property
    def k(self) -> int:
        return (self.n.bit_length() + 7) // 8

    @property
    def modulus(self) -> bytes:
        return self.n.to_bytes(self.k, "big")

    @property
    def exponent(self) -> bytes:
        return self.e.to_bytes((self.e.bit_length() + 7) // 8, "big")

    def sign_em(self, em: bytes) -> bytes:
        """RSASP1 on the encoded message: what a signer with this key produces for EM."""
        return pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(self.k, "big")

    @classmethod
    def of(cls, key: rsa.RSAPrivateKey) -> RawKey:
        numbers = key.private_numbers()
        return cls(numbers.public_numbers.n, numbers.public_numbers.e, numbers.d)


def _is_probable_prime(n: int) -> bool:
    if n < 2 or n % 2 == 0:
        return n == 2
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(32):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % q for q in range(3, int(p**0.5) + 1, 2))]


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if all(candidate % p for p in _SMALL_PRIMES) and _is_probable_prime(candidate):
            return candidate


def _key_with_bits(bits: int, e: int = 65537) -> RawKey:
    """A raw RSA key whose modulus has exactly `bits` bits (cryptography only makes whole-byte sizes)."""
    while True:
        p, q = _prime(bits // 2), _prime(bits - bits // 2)  # top two bits set: n has exactly `bits` bits
        n = p * q
        phi = (p - 1) * (q - 1)
        if n.bit_length() == bits and phi % e:
            return RawKey(n, e, pow(e, -1, phi))


def mgf1_sha384(seed: bytes, length: int) -> bytes:
    """RFC 8017 B.2.1 with SHA-384."""
    out = b"".join(hashlib.sha384(seed + i.to_bytes(4, "big")).digest() for i in range((length + 47) // 48))
    return out[:length]


def pss_encode(
    message: bytes,
    em_bits: int,
    *,
    salt: bytes | None = None,
    trailer: int = 0xBC,
    separator: int = 0x01,
    padding_byte: int = 0,
    set_top_bit: bool = False,
    h_message: bytes | None = None,
) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 9.1.1) with SHA-384 and MGF1-SHA-384, with knobs to break one step."""
    salt = secrets.token_bytes(48) if salt is None else salt
    m_hash = hashlib.sha384(message).digest()
    em_len = (em_bits + 7) // 8
    h = hashlib.sha384(bytes(8) + m_hash + (salt if h_message is None else h_message)).digest()
    ps = bytearray(em_len - len(salt) - 48 - 2)
    if padding_byte and ps:
        ps[len(ps) // 2] = padding_byte
    db = bytes(ps) + bytes([separator]) + salt
    masked = bytearray(a ^ b for a, b in zip(db, mgf1_sha384(h, len(db))))
    masked[0] &= 0xFF >> (8 * em_len - em_bits)
    if set_top_bit:
        masked[0] |= 0x80
    return bytes(masked) + h + bytes([trailer])


@pytest.fixture(scope="session")
def rsa4096_keys() -> list[rsa.RSAPrivateKey]:
    """Two RSA-4096 keys (AMD's size), generated once per session."""
    return [rsa.generate_private_key(65537, 4096) for _ in range(2)]


@pytest.fixture(scope="module")
def pss(w3: Web3) -> Any:
    return deploy(w3, compile_contracts(["RsaPssHarness"])["RsaPssHarness"])


def _verify(pss: Any, message: bytes, signature: bytes, key: RawKey) -> bool:
    return bool(pss.functions.verify(message, signature, key.modulus, key.exponent).call())


# --- signatures made by `cryptography` ----------------------------------------------------------------


def test_cryptography_signatures_verify(pss: Any, rsa4096_keys: list[rsa.RSAPrivateKey]) -> None:
    for key in rsa4096_keys:
        message = secrets.token_bytes(700)
        assert _verify(pss, message, key.sign(message, PSS48, hashes.SHA384()), RawKey.of(key))


@pytest.mark.parametrize(
    "tamper",
    ["message", "signature", "key", "salt32", "sha256", "pkcs1v15", "short", "long", "s_equals_n", "s_above_n"],
)
def test_twins_do_not_verify(pss: Any, rsa4096_keys: list[rsa.RSAPrivateKey], tamper: str) -> None:
    key, other = rsa4096_keys
    raw = RawKey.of(key)
    message = b"AMD SEV-SNP certificate TBS stand-in" * 20
    signature = key.sign(message, PSS48, hashes.SHA384())
    assert _verify(pss, message, signature, raw)
    if tamper == "message":
        message = message[:-1] + bytes([message[-1] ^ 1])
    elif tamper == "signature":
        signature = signature[:100] + bytes([signature[100] ^ 0x40]) + signature[101:]
    elif tamper == "key":
        raw = RawKey.of(other)
    elif tamper == "salt32":
        signature = key.sign(message, padding.PSS(padding.MGF1(hashes.SHA384()), 32), hashes.SHA384())
    elif tamper == "sha256":
        signature = key.sign(message, padding.PSS(padding.MGF1(hashes.SHA256()), 48), hashes.SHA256())
    elif tamper == "pkcs1v15":
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA384())
    elif tamper == "short":
        signature = signature[1:]
    elif tamper == "long":
        signature = b"\x00" + signature
    elif tamper == "s_equals_n":
        signature = raw.modulus
    elif tamper == "s_above_n":
        signature = (raw.n + 1).to_bytes(raw.k, "big")
    assert not _verify(pss, message, signature, raw)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=st.binary(max_size=1500), flip=st.integers(0, 4095))
def test_random_messages_and_flipped_signature_bits(
    pss: Any, rsa4096_keys: list[rsa.RSAPrivateKey], message: bytes, flip: int
) -> None:
    key = rsa4096_keys[0]
    raw = RawKey.of(key)
    signature = key.sign(message, PSS48, hashes.SHA384())
    assert _verify(pss, message, signature, raw)
    flipped = (int.from_bytes(signature, "big") ^ (1 << flip)).to_bytes(raw.k, "big")
    assert not _verify(pss, message, flipped, raw)


def test_digest_entry_point(pss: Any, rsa4096_keys: list[rsa.RSAPrivateKey]) -> None:
    key = rsa4096_keys[0]
    raw = RawKey.of(key)
    message = b"digest entry point"
    digest = hashlib.sha384(message).digest()
    signature = key.sign(message, PSS48, hashes.SHA384())
    assert pss.functions.verifyDigest(digest[:32], digest[32:], signature, raw.modulus, raw.exponent).call()
    other = hashlib.sha384(message + b"!").digest()
    assert not pss.functions.verifyDigest(other[:32], other[32:], signature, raw.modulus, raw.exponent).call()


# --- hand-built encodings: one twin per EMSA-PSS-VERIFY check -----------------------------------------

ENCODING_TWINS = {
    "step4-trailer": {"trailer": 0xBD},
    "step6-top-bits": {"set_top_bit": True},
    "step10-padding-byte": {"padding_byte": 0x01},
    "step10-separator": {"separator": 0x02},
    "step14-hash": {"h_message": bytes(48)},
}


@pytest.fixture(scope="module")
def odd_keys() -> dict[str, RawKey]:
    """Moduli whose bit length is not a multiple of 8, including 8 (k - 1) + 1 (emLen = k - 1)."""
    return {"2049": _key_with_bits(2049), "2047e3": _key_with_bits(2047, e=3)}


def test_encoder_agrees_with_cryptography(rsa4096_keys: list[rsa.RSAPrivateKey]) -> None:
    # The test's own encoder makes signatures `cryptography` accepts: it is the right reference.
    key = rsa4096_keys[0]
    raw = RawKey.of(key)
    signature = raw.sign_em(pss_encode(b"reference", raw.n.bit_length() - 1))
    key.public_key().verify(signature, b"reference", PSS48, hashes.SHA384())


@pytest.mark.parametrize("bits", ["4096", "2049", "2047e3"])
def test_hand_built_encodings_verify(
    pss: Any, rsa4096_keys: list[rsa.RSAPrivateKey], odd_keys: dict[str, RawKey], bits: str
) -> None:
    raw = RawKey.of(rsa4096_keys[0]) if bits == "4096" else odd_keys[bits]
    message = b"hand-built PSS encoding"
    assert _verify(pss, message, raw.sign_em(pss_encode(message, raw.n.bit_length() - 1)), raw)


@pytest.mark.parametrize("twin", sorted(ENCODING_TWINS))
@pytest.mark.parametrize("bits", ["4096", "2049"])
def test_each_encoding_check_has_a_twin(
    pss: Any, rsa4096_keys: list[rsa.RSAPrivateKey], odd_keys: dict[str, RawKey], bits: str, twin: str
) -> None:
    raw = RawKey.of(rsa4096_keys[0]) if bits == "4096" else odd_keys[bits]
    message = b"hand-built PSS encoding"
    knobs = ENCODING_TWINS[twin]
    if bits == "2049" and twin == "step6-top-bits":
        # emBits = 2048 is a whole number of bytes: there are no top bits; the twin is a non-zero
        # leading byte of m instead (I2OSP(m, emLen) fails, RFC 8017 8.1.2 step 2c).
        em = b"\x01" + pss_encode(message, raw.n.bit_length() - 1)
        while int.from_bytes(em, "big") >= raw.n:  # keep m < n so only the leading byte is wrong
            em = b"\x01" + pss_encode(message, raw.n.bit_length() - 1)
        signature = raw.sign_em(em)
    else:
        signature = raw.sign_em(pss_encode(message, raw.n.bit_length() - 1, **knobs))
    assert not _verify(pss, message, signature, raw)


def test_salt_must_be_48_bytes(pss: Any, rsa4096_keys: list[rsa.RSAPrivateKey]) -> None:
    raw = RawKey.of(rsa4096_keys[0])
    message = b"salt length"
    good = raw.sign_em(pss_encode(message, raw.n.bit_length() - 1, salt=bytes(range(48))))
    short = raw.sign_em(pss_encode(message, raw.n.bit_length() - 1, salt=bytes(range(47))))
    assert _verify(pss, message, good, raw)
    assert not _verify(pss, message, short, raw)


# --- keys the library refuses --------------------------------------------------------------------------


def test_leading_zero_bytes_of_the_modulus_are_ignored(pss: Any, rsa4096_keys: list[rsa.RSAPrivateKey]) -> None:
    key = rsa4096_keys[0]
    raw = RawKey.of(key)
    message = b"DER INTEGER with a sign byte"
    signature = key.sign(message, PSS48, hashes.SHA384())
    assert pss.functions.verify(message, signature, b"\x00" + raw.modulus, raw.exponent).call()


@pytest.mark.parametrize(
    ("modulus_len", "exponent", "expected"),
    [(97, b"\x01\x00\x01", (97, 3)), (512, b"", (512, 0)), (1025, b"\x03", (1025, 1)), (0, b"\x03", (0, 1))],
    ids=["modulus-too-short", "empty-exponent", "modulus-too-long", "zero-modulus"],
)
def test_unusable_keys_revert(pss: Any, modulus_len: int, exponent: bytes, expected: tuple[int, int]) -> None:
    modulus = (b"\xc5" * modulus_len) if modulus_len else bytes(4)
    name, args = reverts_with(pss, lambda: pss.functions.verify(b"m", bytes(modulus_len), modulus, exponent).call())
    assert (name, args) == ("RsaPssInvalidKey", expected)


# --- real AMD certificates ----------------------------------------------------------------------------


def test_real_amd_certificate_signature(pss: Any, vectors: Path, amd_signed_cert: Any) -> None:
    cert, issuer = amd_signed_cert.load()
    numbers = issuer.public_key().public_numbers()  # type: ignore[union-attr]
    raw = RawKey(numbers.n, numbers.e, 0)
    assert _verify(pss, cert.tbs_certificate_bytes, cert.signature, raw)
    # Twins: one flipped TBS byte; the signature checked with another product's ARK.
    tbs = bytearray(cert.tbs_certificate_bytes)
    tbs[len(tbs) // 2] ^= 0x01
    assert not _verify(pss, bytes(tbs), cert.signature, raw)
    product = next(p for p in ("milan", "genoa", "turin") if p in amd_signed_cert.id)
    other = _load_ark(vectors, "genoa" if product != "genoa" else "milan").public_key().public_numbers()  # type: ignore[union-attr]
    assert not _verify(pss, cert.tbs_certificate_bytes, cert.signature, RawKey(other.n, other.e, 0))


def _load_ark(vectors: Path, product: str) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate((vectors / "amd-roots" / product / "ark.pem").read_bytes())
