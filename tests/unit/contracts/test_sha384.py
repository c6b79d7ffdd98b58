"""Sha384.sol against hashlib: FIPS 180-4 SHA-384 and SHA-512 on chain, any length, memory-safe, bounds-checked."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from tests.support.evm import compile_contracts, deploy, reverts_with

# Around every padding boundary: 111/112 bytes (one vs two final blocks), 127/128/129 (block edge).
LENGTHS = [0, 1, 3, 55, 56, 63, 64, 110, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257, 672, 1184, 2000]


@pytest.fixture(scope="module")
def sha(w3: Web3) -> Any:
    return deploy(w3, compile_contracts(["Sha384Harness"])["Sha384Harness"])


def _message(length: int) -> bytes:
    return bytes((i * 131 + 7) & 0xFF for i in range(length))


@pytest.mark.parametrize("length", LENGTHS, ids=[f"len{n}" for n in LENGTHS])
def test_digest_matches_hashlib(sha: Any, length: int) -> None:
    message = _message(length)
    assert sha.functions.digest(message).call() == hashlib.sha384(message).digest()


@pytest.mark.parametrize("length", [1, 111, 112, 128, 672], ids=lambda n: f"len{n}")
def test_one_flipped_bit_changes_the_digest(sha: Any, length: int) -> None:
    message = bytearray(_message(length))
    message[length // 2] ^= 0x10
    got = sha.functions.digest(bytes(message)).call()
    assert got == hashlib.sha384(bytes(message)).digest()
    assert got != hashlib.sha384(_message(length)).digest()


def test_fips_180_4_example_abc(sha: Any) -> None:
    # FIPS 180-4 / NIST CSRC example value for SHA-384("abc").
    expected = bytes.fromhex(
        "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
    )
    assert sha.functions.digest(b"abc").call() == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=st.binary(min_size=0, max_size=2000))
def test_random_messages_match_hashlib(sha: Any, message: bytes) -> None:
    assert sha.functions.digest(message).call() == hashlib.sha384(message).digest()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_slices_match_hashlib(sha: Any, data: st.DataObject) -> None:
    message = data.draw(st.binary(min_size=0, max_size=700))
    offset = data.draw(st.integers(0, len(message)))
    length = data.draw(st.integers(0, len(message) - offset))
    got = sha.functions.digestSlice(message, offset, length).call()
    assert got == hashlib.sha384(message[offset : offset + length]).digest()


@pytest.mark.parametrize(
    ("size", "offset", "length"),
    [(10, 0, 11), (10, 11, 0), (10, 5, 6), (0, 0, 1), (10, 2**256 - 1, 2), (10, 1, 2**256 - 1)],
    ids=["length-past-end", "offset-past-end", "slice-past-end", "empty-input", "offset-overflow", "length-overflow"],
)
def test_slice_outside_input_reverts(sha: Any, size: int, offset: int, length: int) -> None:
    name, args = reverts_with(sha, lambda: sha.functions.digestSlice(bytes(size), offset, length).call())
    assert (name, args) == ("Sha384OutOfBounds", (offset, length, size))


@pytest.mark.parametrize("length", [0, 111, 112, 300], ids=lambda n: f"len{n}")
def test_allocated_memory_is_left_alone(sha: Any, length: int) -> None:
    message = _message(length)
    digest, after, canary = sha.functions.digestKeepsMemory(message).call()
    assert digest == hashlib.sha384(message).digest()
    assert after == message
    assert canary == Web3.keccak(message)


# --- SHA-512: the same compression from its own initial value (the SVSM's REPORT_DATA) -------------------


@pytest.mark.parametrize("length", LENGTHS, ids=[f"len{n}" for n in LENGTHS])
def test_sha512_matches_hashlib(sha: Any, length: int) -> None:
    message = _message(length)
    assert sha.functions.digest512(message).call() == hashlib.sha512(message).digest()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            b"abc",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
        (
            b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
            b"mnopqrstnopqrstu",
            "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
            "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
        ),
        (
            b"",
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
            "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
        ),
    ],
    ids=["abc", "two-block-896-bit", "empty"],
)
def test_sha512_fips_180_4_examples(sha: Any, message: bytes, expected: str) -> None:
    # FIPS 180-4 / NIST CSRC example values for SHA-512 (one block, two blocks) and the empty string.
    assert sha.functions.digest512(message).call() == bytes.fromhex(expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=st.binary(min_size=0, max_size=700))
def test_sha512_random_messages_match_hashlib_and_differ_from_sha384(sha: Any, message: bytes) -> None:
    got = sha.functions.digest512(message).call()
    assert got == hashlib.sha512(message).digest()
    assert got[:48] != sha.functions.digest(message).call()  # another initial value, not a longer SHA-384
