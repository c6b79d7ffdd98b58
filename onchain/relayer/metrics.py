"""The relayer's Prometheus metrics (``cvm-cli relay --metrics HOST:PORT``), on prometheus-client.

Each relayer process serves its own registry (not the library's global one) at ``/metrics``:

=========================================== ===========================================================
``cvm_relayer_attestations_total{action}``  attestations mined (``register``, ``refresh``)
``cvm_relayer_failures_total{reason}``      agent turns that failed, by stable reason (or action)
``cvm_relayer_leases``                      agents this relayer holds leases on (all of them when alone)
``cvm_relayer_soonest_expiry_seconds``      seconds until the soonest attestation of those agents expires
``cvm_relayer_gas_used_total``              gas of the journaled transactions mined (not certificates)
``cvm_relayer_balance_wei``                 the sender account's balance
``cvm_relayer_balance_low``                 1 while that balance is below ``--min-balance-eth``
``cvm_relayer_passes_total``                passes made
=========================================== ===========================================================
"""

from __future__ import annotations

import re
from wsgiref.simple_server import WSGIServer
from threading import Thread

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from onchain.relayer.relayer import TickResult

#: A TickResult's action for which no failure is counted.
_FINE = frozenset({"register", "refresh", "none", "backoff", "pending", "lease_lost"})
_REASON = re.compile(r"^\[([a-z0-9_.]+)\]")


def failure_reason(result: TickResult) -> str | None:
    """The stable reason a failed turn carries (``[reason] ...``, or a bare reason), else its action."""
    if result.action in _FINE:
        return None
    if result.error:
        match = _REASON.match(result.error)
        if match:
            return match.group(1)
        if re.fullmatch(r"[a-z0-9_.]+", result.error):
            return result.error
    return result.action


class RelayMetrics:
    """Counters and gauges of one relayer; :meth:`serve` exposes them over HTTP."""

    def __init__(self, relayer_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.attestations = Counter("cvm_relayer_attestations", "Attestations mined", ["action"],
                                    registry=self.registry)
        self.failures = Counter("cvm_relayer_failures", "Agent turns that failed, by reason", ["reason"],
                                registry=self.registry)
        self.leases = Gauge("cvm_relayer_leases", "Agents this relayer holds leases on", registry=self.registry)
        self.soonest_expiry = Gauge("cvm_relayer_soonest_expiry_seconds",
                                    "Seconds until the soonest attestation of this relayer's agents expires",
                                    registry=self.registry)
        self.gas = Counter("cvm_relayer_gas_used", "Gas of mined journaled transactions", registry=self.registry)
        self.balance = Gauge("cvm_relayer_balance_wei", "Balance of the sender account", registry=self.registry)
        self.balance_low = Gauge("cvm_relayer_balance_low", "1 while the balance is below the alarm threshold",
                                 registry=self.registry)
        self.passes = Counter("cvm_relayer_passes", "Passes made", registry=self.registry)
        self.info = Gauge("cvm_relayer_info", "This relayer's id", ["relayer"], registry=self.registry)
        self.info.labels(relayer=relayer_id).set(1)
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    def observe(self, result: TickResult) -> None:
        if result.action in ("register", "refresh"):
            self.attestations.labels(action=result.action).inc()
        if result.gas_used:
            self.gas.inc(result.gas_used)
        reason = failure_reason(result)
        if reason is not None:
            self.failures.labels(reason=reason).inc()

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` (port 0: any free one) in a daemon thread; the bound address."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._thread = server, thread
        bound = server.server_address
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
