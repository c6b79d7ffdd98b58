"""Challenges the agent answered, each good for one use within a time window: the sealing challenges
of ``POST /secrets`` (agent.sealing) and the credential-activation challenges of
``POST /svsm/activate`` (agent.service). A challenge replayed, used twice or too old is refused."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

CHALLENGE_SECONDS = 600.0
MAX_CHALLENGES = 1024


class Challenges:
    """At most :data:`MAX_CHALLENGES` open challenges (the oldest is dropped), each for
    :data:`CHALLENGE_SECONDS`. Thread safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, seconds: float = CHALLENGE_SECONDS) -> None:
        self._clock = clock
        self._seconds = seconds
        self._open: OrderedDict[bytes, float] = OrderedDict()
        self.lock = threading.Lock()

    def issue(self, challenge: bytes) -> None:
        with self.lock:
            self._open.pop(challenge, None)
            self._open[challenge] = self._clock() + self._seconds
            while len(self._open) > MAX_CHALLENGES:
                self._open.popitem(last=False)

    def is_open(self, challenge: bytes) -> bool:
        """Whether ``challenge`` was issued, is unused and not expired (hold :attr:`lock` to act on it)."""
        expiry = self._open.get(challenge)
        return expiry is not None and expiry >= self._clock()

    def consume(self, challenge: bytes) -> None:
        """Close ``challenge`` (hold :attr:`lock`)."""
        self._open.pop(challenge, None)
