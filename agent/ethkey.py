"""The CVM's Ethereum key: created fresh in memory at every start, never written anywhere.

Its address is what on-chain attestation binds (PROTOCOL.md, "Evidence binding" step 2: the
on-chain quote's extraData includes ``cvmAddress``), so only code inside this CVM, through the
agent's internal listener, can act as the attested CVM. The private key is not exposed by any
route; the workload asks the agent to sign EIP-191 messages and transactions. The agent itself
signs one raw digest: its consent to a golden measurement (:meth:`CvmKey.sign_digest`), which no
route lets a caller choose.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct

from offchain.abi.binding import parse_address
from offchain.errors import Reason, RequestError

_MAX_MESSAGE = 1 << 16


def _hex(value: Any) -> str:
    text = value.hex() if hasattr(value, "hex") else str(value)
    return text if text.startswith("0x") else "0x" + text


class CvmKey:
    """A secp256k1 key held in this process only."""

    def __init__(self) -> None:
        self._account = Account.create()

    @property
    def address(self) -> str:
        """EIP-55 checksummed address."""
        return str(self._account.address)

    @property
    def address_bytes(self) -> bytes:
        return parse_address(self.address)

    def sign_digest(self, digest: bytes) -> bytes:
        """``r || s || v`` (65 bytes, low ``s``, ``v`` 27 or 28) over the 32-byte ``digest`` as it is,
        without the EIP-191 prefix: what ``ECDSA.recover(digest, signature)`` takes on chain.

        Only for digests the agent computes itself under its own domain tag
        (:func:`offchain.abi.binding.golden_consent_digest`): signing a caller's digest would let it
        obtain this key's signature over anything, a transaction hash included.
        """
        if len(digest) != 32:
            raise RequestError(Reason.INPUT_INVALID, "a digest to sign is 32 bytes")
        signed = self._account.unsafe_sign_hash(digest)
        return bytes(signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v]))

    def sign_message(self, *, text: str | None = None, data: bytes | None = None) -> dict[str, Any]:
        """EIP-191 version 0x45 (``personal_sign``) over UTF-8 ``text`` or raw ``data``."""
        if (text is None) == (data is None):
            raise RequestError(Reason.INPUT_INVALID, "give exactly one of 'text' and 'hex'")
        payload = text.encode("utf-8") if text is not None else data
        assert payload is not None  # one of the two is set, checked above
        if len(payload) > _MAX_MESSAGE:
            raise RequestError(Reason.INPUT_INVALID, f"a message is at most {_MAX_MESSAGE} bytes")
        signed = self._account.sign_message(encode_defunct(primitive=payload))
        return {
            "address": self.address,
            "message_hash": _hex(signed.message_hash),
            "signature": _hex(signed.signature),
            "v": signed.v,
            "r": hex(signed.r),
            "s": hex(signed.s),
        }

    def sign_transaction(self, transaction: dict[str, Any]) -> dict[str, Any]:
        """Sign a legacy, EIP-2930 or EIP-1559 transaction dict (eth-account's field names)."""
        if "from" in transaction and parse_address(str(transaction["from"])) != self.address_bytes:
            raise RequestError(Reason.INPUT_INVALID, "'from' is not this CVM's address")
        fields = {k: v for k, v in transaction.items() if k != "from"}
        if "chainId" not in fields:
            raise RequestError(Reason.INPUT_INVALID, "'chainId' is required (EIP-155 replay protection)")
        try:
            signed = self._account.sign_transaction(fields)
        except Exception as exc:  # eth-account, eth-utils and rlp each raise their own types for bad fields
            raise RequestError(Reason.INPUT_INVALID, f"not a signable transaction: {exc}") from None
        return {
            "address": self.address,
            "raw_transaction": _hex(signed.raw_transaction),
            "hash": _hex(signed.hash),
            "v": signed.v,
            "r": hex(signed.r),
            "s": hex(signed.s),
        }
