"""agent.ethkey: the in-memory CVM key signs EIP-191 messages and transactions, and refuses the rest."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.typed_transactions import TypedTransaction
from eth_keys import keys
from hexbytes import HexBytes

from agent.ethkey import CvmKey
from offchain.errors import Reason, RequestError

TX = {
    "to": "0x" + "11" * 20,
    "value": 1,
    "gas": 21000,
    "maxFeePerGas": 2_000_000_000,
    "maxPriorityFeePerGas": 1_000_000_000,
    "nonce": 0,
    "chainId": 31337,
}


def test_each_start_has_a_fresh_key() -> None:
    assert CvmKey().address != CvmKey().address


def test_sign_text_message_recovers_to_the_address() -> None:
    key = CvmKey()
    signed = key.sign_message(text="hello")
    assert Account.recover_message(encode_defunct(text="hello"), signature=signed["signature"]) == key.address


def test_sign_raw_bytes_message() -> None:
    key = CvmKey()
    signed = key.sign_message(data=b"\x00\xff")
    assert Account.recover_message(encode_defunct(primitive=b"\x00\xff"), signature=signed["signature"]) == key.address


@pytest.mark.parametrize("kwargs", [{}, {"text": "a", "data": b"a"}, {"data": bytes(70_000)}],
                         ids=["neither", "both", "too-long"])
def test_sign_message_rejects(kwargs: dict[str, object]) -> None:
    with pytest.raises(RequestError) as exc:
        CvmKey().sign_message(**kwargs)  # type: ignore[arg-type]
    assert exc.value.reason is Reason.INPUT_INVALID


def test_sign_transaction_recovers_to_the_address() -> None:
    key = CvmKey()
    signed = key.sign_transaction(dict(TX, **{"from": key.address}))
    raw = bytes.fromhex(signed["raw_transaction"][2:])
    assert Account.recover_transaction(raw) == key.address
    assert TypedTransaction.from_bytes(HexBytes(raw)).as_dict()["chainId"] == 31337


@pytest.mark.parametrize(
    "changes",
    [{"chainId": None}, {"from": "0x" + "22" * 20}, {"gas": "lots"}, {"to": "not an address"}, {"nonce": -1}],
    ids=["no-chain-id", "other-from", "bad-gas", "bad-to", "negative-nonce"],
)
def test_sign_transaction_rejects(changes: dict[str, object]) -> None:
    tx = {k: v for k, v in {**TX, **changes}.items() if v is not None}
    with pytest.raises(RequestError) as exc:
        CvmKey().sign_transaction(tx)
    assert exc.value.reason is Reason.INPUT_INVALID


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_sign_digest_is_a_raw_low_s_signature_that_recovers_to_the_address() -> None:
    key = CvmKey()
    for n in range(32):  # about half of raw ECDSA signatures have a high s before normalisation
        digest = bytes([n]) * 32
        signature = key.sign_digest(digest)
        assert len(signature) == 65 and signature[64] in (27, 28)
        assert int.from_bytes(signature[32:64], "big") <= SECP256K1_N // 2
        r, s, v = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]
        public = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
        assert public.to_checksum_address() == key.address
        # No EIP-191 prefix: the personal_sign hash of the same bytes recovers to someone else.
        assert Account.recover_message(encode_defunct(primitive=digest), signature=signature) != key.address


@pytest.mark.parametrize("size", [0, 31, 33])
def test_sign_digest_takes_32_bytes_only(size: int) -> None:
    with pytest.raises(RequestError) as exc:
        CvmKey().sign_digest(bytes(size))
    assert exc.value.reason is Reason.INPUT_INVALID
