"""The agent's sealing key and the challenges it answered: how secrets reach the workload.

The key is X25519, created in memory at every start and never written anywhere (like the CVM's
Ethereum key, agent.ethkey); its public half is bound into evidence of the sealing form
(``GET /sealing/collaterals/{nonce}``) and, signed by the CVM key, published on chain
(``GET /onchain/sealing-key``). A sender seals to it (offchain.seal) only after checking that
evidence, so a host that puts its own key in the evidence gets a quote no verifier accepts.

Each sealing challenge (the sender's nonce) is remembered for :data:`CHALLENGE_SECONDS` and opens
one upload box: a box recorded by the host and sent again, or sealed without asking this agent
first, is refused (``seal.challenge_unknown``), so old secrets cannot be put back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from offchain.errors import Reason, RequestError
from offchain.seal import SealedBox, open_box, public_bytes

from agent.challenges import CHALLENGE_SECONDS, Challenges


class SealingKey:
    """The X25519 key of this agent process, with the upload challenges it issued."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = X25519PrivateKey.generate()
        self.public = public_bytes(self._key.public_key())
        self._challenges = Challenges(clock=clock)

    def issue(self, nonce: bytes) -> None:
        """Remember ``nonce`` as a challenge this agent answered."""
        self._challenges.issue(nonce)

    def open_upload(self, box: SealedBox, cvm_address: bytes) -> bytes:
        """The plaintext of an ``upload`` box sealed for a challenge this agent answered in the last
        :data:`CHALLENGE_SECONDS`; the challenge is used up once the box opened."""
        if box.context.purpose != "upload":
            raise RequestError(Reason.SEAL_CHALLENGE_UNKNOWN, f"POST /secrets takes boxes sealed for an upload, not "
                               f"for {box.context.purpose}")
        nonce = bytes.fromhex(str(box.context.fields["nonce"]))
        with self._challenges.lock:
            if not self._challenges.is_open(nonce):
                raise RequestError(Reason.SEAL_CHALLENGE_UNKNOWN, "the box answers no sealing challenge this agent "
                                   f"issued in the last {CHALLENGE_SECONDS / 60:.0f} minutes (replayed, already used, or "
                                   "too old): fetch GET /sealing/collaterals/{nonce} and seal again")
            plaintext = open_box(box, self._key, cvm_address)
            self._challenges.consume(nonce)
        return plaintext

    def open_registry(self, box: SealedBox, cvm_address: bytes) -> bytes:
        """The plaintext of a ``registry`` box (cvm-cli secrets seal): for the workload, over the
        internal listener."""
        if box.context.purpose != "registry":
            raise RequestError(Reason.SEAL_MALFORMED, f"POST /unseal takes boxes sealed to the registry's key, not "
                               f"for {box.context.purpose}")
        return open_box(box, self._key, cvm_address)
