"""Keccak-256 (Ethereum's keccak256) cross-checked against an independent implementation, eth_hash."""

from __future__ import annotations

import hashlib

import pytest
from eth_hash.auto import keccak as eth_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.abi.keccak import keccak256

RATE = 136


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
        (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        (b"transfer(address,uint256)", "a9059cbb2ab09eb219583f4a59a5d0623ade346d962bcd4e46b11da047c9049b"),
    ],
    ids=["empty", "abc", "erc20-transfer-selector"],
)
def test_known_answers(message: bytes, digest: str) -> None:
    assert keccak256(message).hex() == digest


def test_keccak_is_not_sha3_256() -> None:
    # Same permutation, different padding (0x01 vs 0x06): the two must never be confused.
    assert keccak256(b"") != hashlib.sha3_256(b"").digest()
    assert keccak256(b"abc") != hashlib.sha3_256(b"abc").digest()


@pytest.mark.parametrize("length", [0, 1, RATE - 2, RATE - 1, RATE, RATE + 1, 2 * RATE - 1, 2 * RATE, 2 * RATE + 1, 1000])
def test_padding_boundaries_match_eth_hash(length: int) -> None:
    message = bytes((i * 7 + 3) % 256 for i in range(length))
    assert keccak256(message) == eth_keccak(message)


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.binary(max_size=4 * RATE))
def test_random_inputs_match_eth_hash(message: bytes) -> None:
    assert keccak256(message) == eth_keccak(message)


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.binary(min_size=1, max_size=300), st.integers(0, 299), st.integers(1, 255))
def test_one_changed_byte_changes_the_digest(message: bytes, where: int, mask: int) -> None:
    changed = bytearray(message)
    changed[where % len(message)] ^= mask
    assert keccak256(bytes(changed)) != keccak256(message)
