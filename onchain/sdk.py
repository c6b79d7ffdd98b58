"""The SDK for dApp backends: is this address an attested CVM, and did this request come from one?

``Registry(web3, address)`` reads a deployed ``CvmRegistry``. A CVM proves a request is its own by
signing it with its attested key (the agent's ``POST /sign-message`` on the internal listener,
EIP-191); :meth:`Registry.verify_signed_request` recovers the signer and accepts it only while the
registry says it is attested (optionally for one golden measurement).

The signed message binds the method, path, body and a timestamp, so a captured signature cannot be
replayed on another endpoint, with another body, or after ``max_age_s`` seconds::

    cvm-attest request v1
    <METHOD>
    <PATH>
    <unix seconds>
    <hex SHA-256 of the body>

``onchain.gate.require_attested_cvm`` wraps this as a FastAPI dependency.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from web3 import Web3

from offchain.errors import ChainError, Reason, VerificationError
from onchain.client import ZERO32, Attestation, AttestationStatus, GoldenInfo, RegistryClient

REQUEST_DOMAIN = "cvm-attest request v1"
DEFAULT_MAX_AGE_S = 60
EVENT_NAMES = (
    "CvmRegistered", "CvmRefreshed", "GoldenPublished", "GoldenRevoked",
    "CertificateRegistered", "CertificateRevoked", "RootPinned", "RootUnpinned",
)


def request_message(method: str, path: str, timestamp: int, body: bytes) -> str:
    """The text a CVM signs (EIP-191) to vouch for one HTTP request."""
    return "\n".join(
        [REQUEST_DOMAIN, method.upper(), path, str(int(timestamp)), hashlib.sha256(body).hexdigest()]
    )


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """One registry event, decoded."""

    name: str
    block_number: int
    tx_hash: str
    args: dict[str, Any]


class Registry:
    """Read-only view of a deployed registry for dApp backends."""

    def __init__(self, w3: Web3, address: str, *, clock: Callable[[], float] = time.time) -> None:
        self.w3 = w3
        self.client = RegistryClient(w3, address)
        self._clock = clock

    @property
    def address(self) -> str:
        return self.client.address

    def is_attested(self, cvm: str, golden_id: bytes | None = None) -> bool:
        """True while ``cvm`` holds an unexpired attestation under a published, unrevoked golden measurement,
        under a leaf still valid whose chain has no revoked certificate and a pinned root."""
        if golden_id is None:
            return self.client.is_attested(cvm)
        return self.client.is_attested_for(cvm, golden_id)

    def attestation_status(self, cvm: str, golden_id: bytes | None = None) -> AttestationStatus:
        """Why ``cvm`` is or is not attested (under ``golden_id``, or any)."""
        return self.client.attestation_status(cvm, golden_id or ZERO32)

    def attestation_of(self, cvm: str) -> Attestation:
        return self.client.attestation_of(cvm)

    def golden(self, golden_id: bytes) -> GoldenInfo:
        return self.client.golden_of(golden_id)

    def events(self, from_block: int = 0, to_block: int | str = "latest",
               names: tuple[str, ...] = EVENT_NAMES) -> list[RegistryEvent]:
        """The registry's events in ``[from_block, to_block]``, oldest first."""
        out: list[RegistryEvent] = []
        for name in names:
            event = getattr(self.client.contract.events, name)
            for log in event.get_logs(from_block=from_block, to_block=to_block):
                out.append(RegistryEvent(name, log["blockNumber"], "0x" + bytes(log["transactionHash"]).hex(),
                                         dict(log["args"])))
        out.sort(key=lambda e: (e.block_number, e.tx_hash))
        return out

    def recover_signer(self, message: str | bytes, signature: bytes | str) -> str:
        """The address that signed ``message`` with EIP-191 (personal_sign)."""
        signable = encode_defunct(text=message) if isinstance(message, str) else encode_defunct(primitive=message)
        try:
            return str(Account.recover_message(signable, signature=signature))
        except (ValueError, TypeError, BadSignature):
            raise VerificationError(Reason.SIGNED_REQUEST_INVALID, "signature does not recover to an address") from None

    def verify_signed_message(self, message: str | bytes, signature: bytes | str,
                              golden_id: bytes | None = None) -> str:
        """The attested CVM that signed ``message``; ChainError(chain.cvm_not_attested) if it is not one."""
        return self._require_attested(self.recover_signer(message, signature), golden_id)

    def _require_attested(self, signer: str, golden_id: bytes | None) -> str:
        if golden_id == ZERO32:
            raise ChainError(Reason.REGISTRY_NOT_ATTESTED, "the zero golden id names no golden measurement", cvm=signer)
        status = self.attestation_status(signer, golden_id)
        if status is not AttestationStatus.ATTESTED:
            raise ChainError(Reason.REGISTRY_NOT_ATTESTED, f"{signer} is not an attested CVM ({status.name.lower()})",
                             cvm=signer, status=status.name.lower())
        return signer

    def verify_signed_request(self, *, method: str, path: str, body: bytes, timestamp: int, signature: str,
                              claimed_address: str | None = None, golden_id: bytes | None = None,
                              max_age_s: int = DEFAULT_MAX_AGE_S) -> str:
        """Check a request signed as :func:`request_message` describes; returns the attested CVM address."""
        if abs(self._clock() - timestamp) > max_age_s:
            raise VerificationError(Reason.SIGNED_REQUEST_STALE,
                                    f"request timestamp {timestamp} is more than {max_age_s}s from now")
        message = request_message(method, path, timestamp, body)
        signer = self.recover_signer(message, signature)
        if claimed_address is not None and Web3.to_checksum_address(claimed_address) != signer:
            raise VerificationError(Reason.SIGNED_REQUEST_INVALID, f"signed by {signer}, not {claimed_address}")
        return self._require_attested(signer, golden_id)
