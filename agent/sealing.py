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

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from offchain.errors import Reason, RequestError
from offchain.seal import SealedBox, open_box, public_bytes

CHALLENGE_SECONDS = 600.0
MAX_CHALLENGES = 1024


class SealingKey:
    """The X25519 key of this agent process, with the upload challenges it issued."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = X25519PrivateKey.generate()
        self.public = public_bytes(self._key.public_key())
        self._clock = clock
        self._challenges: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, nonce: bytes) -> None:
        """Remember ``nonce`` as a challenge this agent answered (the oldest is dropped past
        :data:`MAX_CHALLENGES`)."""
        with self._lock:
            self._challenges.pop(nonce, None)
            self._challenges[nonce] = self._clock() + CHALLENGE_SECONDS
            while len(self._challenges) > MAX_CHALLENGES:
                self._challenges.popitem(last=False)

    def open_upload(self, box: SealedBox, cvm_address: bytes) -> bytes:
        """The plaintext of an ``upload`` box sealed for a challenge this agent answered in the last
        :data:`CHALLENGE_SECONDS`; the challenge is used up once the box opened."""
        if box.context.purpose != "upload":
            raise RequestError(Reason.SEAL_CHALLENGE_UNKNOWN, f"POST /secrets takes boxes sealed for an upload, not "
                               f"for {box.context.purpose}")
        nonce = bytes.fromhex(str(box.context.fields["nonce"]))
        with self._lock:
            expiry = self._challenges.get(nonce)
            if expiry is None or expiry < self._clock():
                raise RequestError(Reason.SEAL_CHALLENGE_UNKNOWN, "the box answers no sealing challenge this agent "
                                   "issued in the last 10 minutes (replayed, already used, or too old): fetch "
                                   "GET /sealing/collaterals/{nonce} and seal again")
            plaintext = open_box(box, self._key, cvm_address)
            del self._challenges[nonce]
        return plaintext

    def open_registry(self, box: SealedBox, cvm_address: bytes) -> bytes:
        """The plaintext of a ``registry`` box (cvm-cli secrets seal): for the workload, over the
        internal listener."""
        if box.context.purpose != "registry":
            raise RequestError(Reason.SEAL_MALFORMED, f"POST /unseal takes boxes sealed to the registry's key, not "
                               f"for {box.context.purpose}")
        return open_box(box, self._key, cvm_address)
