"""The relayer: carries each CVM's evidence from its agent to the registry, and keeps it attested.

For every agent, one :meth:`Relayer.tick`:

1. ``GET /identity``: the CVM's address (the agent binds only its own).
2. Reads the CVM's attestation on chain; decides *register* (not attested, or under another golden
   measurement), *refresh* (attested, expiring within ``refresh_margin_s``) or nothing.
3. Picks the latest block and fetches ``GET /onchain/collaterals`` for this chain, registry, block
   number and hash: the quote binds exactly them and the agent's own address.
4. Verifies the evidence off chain first (``offchain.evidence.verify_evidence`` at the chain's time,
   against the golden measurement, and against AMD's CRL when given one). Evidence that would
   revert, or whose AMD chain is revoked, is never sent; its reason is recorded in the journal and
   logged.
5. Registers the certificates the registry does not have yet, then sends ``registerCvm`` or
   ``refreshCvm`` through the journaled :class:`~onchain.relayer.sender.TxSender`.

An agent on the svsm platform: in step 4 the relayer runs the credential activation itself
(offchain.svsm) before verifying, and in step 5 registers with ``registerCvmSvsm``, signing the
activation statement with its own key; the registry accepts it only when its owner named that key
an activator (``cvm-cli contract activator add``), else the relayer records why and sends nothing.
A refresh is ``refreshCvm`` as for any CVM.

An unreachable agent is retried with exponential backoff; other agents go on meanwhile.

**In a fleet** (:class:`FleetPolicy`, a journal shared by several relayers), a pass relays only for
the agents this relayer holds a lease on (``SqlJournal.acquire_leases``: its fair share of the
journal's agents, renewed every pass and before each agent); it first settles what is in flight for
them, whoever sent it. A write refused because the lease was taken meanwhile (``relay.lease_lost``:
this process was paused or cut off past the lease) ends the agent's turn without recording
anything; a journal that is unreachable (``relay.journal_unavailable``) is retried next pass.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from web3 import Web3

from offchain.abi.binding import golden_consent_digest
from offchain.abi.jsontext import loads_bounded
from offchain.errors import ChainError, CvmAttestError, Reason, RequestError
from offchain.evidence import EvidenceBundle, OnchainNonce, onchain_expected_extra_data, verify_evidence
from offchain.svsm import activate
from offchain.verify.revocation import CrlSource
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import CertRole, to_der
from offchain.trust.roots import TrustRoots
from onchain.activation import activation_statement, svsm_evidence
from onchain.calldata import azure_ak_public, evidence_struct
from onchain.client import RegistryClient
from onchain.relayer.journal import SqlJournal
from onchain.relayer.sender import Outcome, TxSender

log = logging.getLogger("cvm_attest.relayer")

MAX_AGENT_RESPONSE = 4 * 1024 * 1024
#: Order of secp256k1's group: a consent's ``s`` must be at most half of it (EIP-2), as registerCvm requires.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: Failures worth retrying later with backoff; anything else is recorded and the next pass tries afresh.
TRANSIENT = frozenset({Reason.RELAY_AGENT_UNREACHABLE, Reason.CHAIN_RPC_UNAVAILABLE, Reason.CHAIN_TX_FAILED,
                       Reason.RELAY_JOURNAL_UNAVAILABLE})
#: Failures that leave nothing to record: the journal is unreachable, or it refuses this relayer's writes.
UNRECORDABLE = frozenset({Reason.RELAY_JOURNAL_UNAVAILABLE, Reason.RELAY_LEASE_LOST})


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    """When to act and how long to wait between tries."""

    refresh_margin_s: int = 600
    agent_timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0


@dataclass(frozen=True, slots=True)
class FleetPolicy:
    """Membership of a fleet sharing one journal: who this relayer is and how long its leases last."""

    #: This relayer's id in the journal (``--relayer-id``; default: its sender address, one key per process).
    relayer_id: str
    #: A lease not renewed for this long is free for another relayer (``--lease-seconds``). It must exceed
    #: the longest a relayer spends on one agent (the receipt timeout included), or a slow relayer loses it.
    lease_s: float = 60.0


@dataclass(slots=True)
class _AgentState:
    failures: int = 0
    next_try: float = 0.0


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one pass did for one agent."""

    agent: str
    #: "register", "refresh", "none", "rejected" (failed off-chain verification, not sent), "unreachable"
    #: (will back off), "backoff" (waiting), "reverted", "dropped", "stuck" (its transaction is at the fee
    #: cap; nothing new is fetched or sent for it), "pending" (still in flight after this pass), "error"
    #: (anything else; retried next pass), "lease_lost" (another relayer holds this agent now: nothing recorded)
    action: str
    cvm_address: str | None = None
    tx_hash: str | None = None
    gas_used: int | None = None
    error: str | None = None


@dataclass
class Relayer:
    """One relayer account relaying for a set of agents to one registry under one golden measurement."""

    client: RegistryClient
    sender: TxSender
    journal: SqlJournal
    golden: GoldenMeasurement
    #: The agents to relay for; in a fleet, those of the journal this relayer holds leases on instead.
    agents: Sequence[str]
    roots: TrustRoots = field(default_factory=TrustRoots.amd)
    #: AMD's CRL for a chain (``offchain.verify.revocation``); None: no CRL is consulted.
    revocation: CrlSource | None = None
    policy: RelayPolicy = field(default_factory=RelayPolicy)
    clock: Callable[[], float] = time.monotonic
    fleet: FleetPolicy | None = None
    _state: dict[str, _AgentState] = field(default_factory=dict)

    @property
    def w3(self) -> Web3:
        return self.client.w3

    # --- the loop ------------------------------------------------------------------------------
    def recover(self, agents: Sequence[str] | None = None) -> list[Outcome]:
        """Settle what a previous run left in flight (see TxSender.recover), only ``agents``' if given."""
        outcomes = self.sender.recover(agents)
        for outcome in outcomes:
            log.info("recovered submission %d: %s %s", outcome.submission_id, outcome.state, outcome.tx_hash or "")
            submission = self.journal.submission(outcome.submission_id)
            if submission is not None:
                self._record(submission.agent_url, submission.cvm_address, submission.kind, outcome)
        return outcomes

    def run(self, *, once: bool = False, interval_s: float = 15.0,
            on_result: Callable[[TickResult], None] = lambda r: None,
            on_pass: Callable[[list[TickResult]], None] = lambda rs: None) -> None:
        """Relay until interrupted (or one pass with ``once``)."""
        if self.fleet is None:
            self.recover()  # a fleet member settles its agents' submissions once it holds their leases
        while True:
            try:
                results = self.tick()
            except CvmAttestError as exc:
                if exc.reason is not Reason.RELAY_JOURNAL_UNAVAILABLE:
                    raise
                log.warning("the journal is unavailable (%s); retrying next pass", exc.detail,
                            extra={"reason": exc.reason.value})
                results = []
            for result in results:
                on_result(result)
            on_pass(results)
            if once:
                return
            time.sleep(interval_s)

    def current_agents(self) -> list[str]:
        """The agents of this pass: every configured one, or in a fleet those this relayer now leases."""
        if self.fleet is None:
            return list(self.agents)
        return [lease.agent_url for lease in self.journal.acquire_leases(self.fleet.lease_s)]

    def tick(self) -> list[TickResult]:
        """One pass over every agent, after settling anything still in flight (one proof at a time)."""
        agents = self.current_agents()
        if self.journal.pending(agents=agents):
            try:
                self.recover(agents)
            except CvmAttestError as exc:
                log.warning("a previous transaction is still unsettled (%s); skipping this pass", exc.detail,
                            extra={"reason": exc.reason.value})
                return []
        return [self.tick_agent(agent) for agent in agents]

    def tick_agent(self, agent: str) -> TickResult:
        state = self._state.setdefault(agent, _AgentState())
        if self.clock() < state.next_try:
            return TickResult(agent, "backoff")
        try:
            if self.fleet is not None:
                self.journal.renew_lease(agent, self.fleet.lease_s)
            result = self._relay(agent)
        except CvmAttestError as exc:
            error = f"[{exc.reason.value}] {exc.detail}"
            if exc.reason is Reason.RELAY_LEASE_LOST:
                log.warning("agent %s: %s", agent, error, extra={"agent": agent, "reason": exc.reason.value})
                return TickResult(agent, "lease_lost", error=error)
            if exc.reason not in UNRECORDABLE:
                try:
                    self.journal.upsert_cvm(agent, last_error=error)
                except CvmAttestError as journal_exc:
                    log.warning("agent %s: could not record the error: %s", agent, journal_exc.detail)
            if exc.reason not in TRANSIENT:
                log.warning("agent %s: %s", agent, error, extra={"agent": agent, "reason": exc.reason.value})
                return TickResult(agent, "error", error=error)
            state.failures += 1
            delay = min(self.policy.backoff_initial_s * 2 ** (state.failures - 1), self.policy.backoff_max_s)
            state.next_try = self.clock() + delay
            log.warning("agent %s: %s; retrying in %.1fs", agent, error, delay,
                        extra={"agent": agent, "reason": exc.reason.value})
            return TickResult(agent, "unreachable", error=exc.reason.value)
        state.failures, state.next_try = 0, 0.0
        return result

    # --- one agent -----------------------------------------------------------------------------
    def _relay(self, agent: str) -> TickResult:
        in_flight = self.journal.pending(agent)
        if in_flight:
            # One proof per CVM at a time: while one is unsettled (e.g. stuck at the fee cap), a fresh quote
            # would be fetched and verified only for the journal to refuse its submission.
            waiting = in_flight[0]
            return TickResult(agent, waiting.state, waiting.cvm_address, error=waiting.error)
        identity = self._get(agent, "/identity")
        cvm = Web3.to_checksum_address(str(identity["cvm_address"]))
        self.journal.upsert_cvm(agent, cvm_address=cvm)
        action = self._action_for(cvm)
        if action == "none":
            return TickResult(agent, "none", cvm)

        block = self.w3.eth.get_block("latest")
        block_number, block_hash = int(block["number"]), bytes(block["hash"])
        golden_id = self.golden.canonical_id()
        query = urllib.parse.urlencode({
            "chain_id": self.w3.eth.chain_id, "registry": self.client.address,
            "block_number": block_number, "block_hash": "0x" + block_hash.hex(), "golden_id": "0x" + golden_id.hex(),
        })
        bundle = EvidenceBundle.from_json(self._get(agent, f"/onchain/collaterals?{query}"))
        if bundle.cvm_address is None or Web3.to_checksum_address("0x" + bundle.cvm_address.hex()) != cvm:
            return self._rejected(agent, cvm, "evidence binds another address than the agent's identity")
        nonce = bundle.nonce
        if not isinstance(nonce, OnchainNonce) or nonce.golden_id != golden_id:
            return self._rejected(agent, cvm, f"evidence does not carry the CVM's consent to golden 0x{golden_id.hex()}")
        digest = golden_consent_digest(self.w3.eth.chain_id, self.client.address, cvm, golden_id)
        if consent_signer(digest, nonce.consent) != cvm:
            return self._rejected(agent, cvm, "the consent in the evidence is not the CVM key's signature")
        try:
            expected = onchain_expected_extra_data(
                bundle, chain_id=self.w3.eth.chain_id, registry=self.client.address, block_hash=block_hash)
            activation = activate(agent, bundle, expected) if bundle.svsm is not None else None
            verify_evidence(
                bundle,
                expected_extra_data=expected,
                golden=self.golden,
                roots=self.roots,
                now=datetime.fromtimestamp(int(block["timestamp"]), UTC),
                revocation=self.revocation,
                svsm_activation=activation,
            )
            if action == "register" and activation is not None and not self.client.is_activator(
                    self.sender.account.address):
                raise ChainError(Reason.REGISTRY_ACTIVATOR_UNKNOWN, f"registering an svsm CVM needs an activator's "
                                 f"statement; this relayer's key {self.sender.account.address} is none (cvm-cli "
                                 "contract activator add)")
        except CvmAttestError as exc:
            return self._rejected(agent, cvm, f"[{exc.reason.value}] {exc.detail}")

        if action == "register" and bundle.svsm is not None:
            leaf_id = self._register_certificates(bundle)
            expiry, statement = activation_statement(self.sender.account, self.w3.eth.chain_id, self.client.address,
                                                     bundle, now=int(block["timestamp"]))
            data = self.client.calldata("registerCvmSvsm", golden_id, cvm, block_number,
                                        svsm_evidence(bundle, leaf_id).as_tuple(), expiry, statement, nonce.consent)
        elif action == "register":
            leaf_id = self._register_certificates(bundle)
            evidence = evidence_struct(
                report=bundle.snp_report, leaf=leaf_id, attest=bundle.quote_attest,
                signature=bundle.quote_signature, pcrs=bundle.pcrs, ak_public=bundle.ak_public,
                hcl=bundle.hcl_report)
            data = self.client.calldata("registerCvm", golden_id, cvm, block_number, evidence.as_tuple(),
                                        nonce.consent)
        else:
            ak_public = azure_ak_public(bundle.hcl_report) if bundle.hcl_report else bundle.ak_public
            data = self.client.refresh_calldata(cvm, block_number, ak_public, bundle.quote_attest,
                                                bundle.quote_signature)
        submission = self.journal.begin_submission(agent, cvm, action, block_number)
        outcome = self.sender.send(submission, self.client.address, data)
        return self._record(agent, cvm, action, outcome)

    def _action_for(self, cvm: str) -> str:
        attestation = self.client.attestation_of(cvm)
        if attestation.golden_id != self.golden.canonical_id() or not attestation.attested:
            return "register"  # never registered, expired, or its golden, leaf or chain revoked
        now = int(self.w3.eth.get_block("latest")["timestamp"])
        return "refresh" if attestation.expiry - now <= self.policy.refresh_margin_s else "none"

    def _register_certificates(self, bundle: EvidenceBundle) -> bytes:
        certs = bundle.certificate_set()
        leaf = certs.leaf
        intermediate = certs.get(CertRole.ASK) or certs.get(CertRole.ASVK)
        ark = certs.get(CertRole.ARK)
        if leaf is None or intermediate is None or ark is None:
            raise ChainError(Reason.CHAIN_INCOMPLETE, "the agent's evidence lacks ARK, ASK/ASVK or VCEK/VLEK")
        return self.client.register_chain(to_der(ark), to_der(intermediate), to_der(leaf))

    def _rejected(self, agent: str, cvm: str, error: str) -> TickResult:
        log.warning("not submitting for %s (%s): %s", cvm, agent, error)
        self.journal.upsert_cvm(agent, last_error=error)
        return TickResult(agent, "rejected", cvm, error=error)

    def _record(self, agent: str, cvm: str, action: str, outcome: Outcome) -> TickResult:
        if outcome.state == "mined":
            attestation = self.client.attestation_of(cvm)
            self.journal.upsert_cvm(agent, attested_until=attestation.expiry, last_block=outcome.block_number,
                                    last_tx=outcome.tx_hash, last_error=None)
            log.info("%s %s in %s (gas %s)", action, cvm, outcome.tx_hash, outcome.gas_used,
                     extra={"agent": agent, "cvm": cvm, "tx": outcome.tx_hash, "action": action})
            return TickResult(agent, action, cvm, outcome.tx_hash, outcome.gas_used)
        self.journal.upsert_cvm(agent, last_tx=outcome.tx_hash, last_error=outcome.error)
        log.warning("%s of %s %s: %s", action, cvm, outcome.state, outcome.error)
        return TickResult(agent, outcome.state, cvm, outcome.tx_hash, outcome.gas_used, outcome.error)

    # --- the agent's HTTP API --------------------------------------------------------------------
    def _get(self, agent: str, path: str) -> dict[str, Any]:
        url = agent.rstrip("/") + path
        try:
            with urllib.request.urlopen(url, timeout=self.policy.agent_timeout_s) as response:  # noqa: S310
                body = response.read(MAX_AGENT_RESPONSE + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(4096).decode(errors="replace")
            if exc.code >= 500:
                raise RequestError(Reason.RELAY_AGENT_UNREACHABLE, f"{url}: HTTP {exc.code} {detail}") from None
            raise RequestError(Reason.RELAY_EVIDENCE_REJECTED, f"{url}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RequestError(Reason.RELAY_AGENT_UNREACHABLE, f"{url}: {exc}") from None
        if len(body) > MAX_AGENT_RESPONSE:
            raise RequestError(Reason.RELAY_EVIDENCE_REJECTED, f"{url}: response larger than {MAX_AGENT_RESPONSE}")
        doc = loads_bounded(body, Reason.EVIDENCE_MALFORMED)
        if not isinstance(doc, dict):
            raise RequestError(Reason.RELAY_EVIDENCE_REJECTED, f"{url}: not a JSON object")
        return doc


def consent_signer(digest: bytes, signature: bytes) -> str | None:
    """The address whose key made the 65-byte ``r || s || v`` ``signature`` over the raw ``digest``,
    under the rules registerCvm applies (OpenZeppelin ECDSA: ``v`` 27 or 28, low ``s``); None otherwise."""
    if len(signature) != 65 or signature[64] not in (27, 28):
        return None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
        return None
    try:
        public = Signature(vrs=(signature[64] - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except (BadSignature, ValueError):
        return None
    return str(public.to_checksum_address())


def dumps_status(journal: SqlJournal) -> str:
    """Per CVM: attested until, last transaction, last error, as JSON lines."""
    return "".join(
        json.dumps({
            "agent": s.agent_url, "cvm_address": s.cvm_address, "attested_until": s.attested_until,
            "last_block": s.last_block, "last_tx": s.last_tx, "last_error": s.last_error,
            "updated_at": s.updated_at,
        }) + "\n"
        for s in journal.cvms()
    )
