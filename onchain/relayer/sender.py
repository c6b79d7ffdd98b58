"""Sending the relayer's transactions: EIP-1559 fees, gas estimation, journaling before broadcast,
replacement of stuck transactions, and recovery after a restart.

Every signed transaction goes into the :class:`~onchain.relayer.journal.Journal` *before* it is
broadcast. After a crash, :meth:`TxSender.recover` finds each pending submission's outcome (a
receipt for any of its versions) or re-broadcasts its newest signed bytes unchanged, so the same
proof is never built and paid for twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from offchain.errors import ChainError, Reason
from onchain.relayer.journal import Journal, JournalTx, Submission

log = logging.getLogger("cvm_attest.relayer")

TX_GAS_CAP = 16_777_216  # EIP-7825: no transaction may use more
GAS_HEADROOM = 1.25
REPLACEMENT_BUMP = 1.125  # nodes require at least +10% on both fee fields to replace


@dataclass(frozen=True, slots=True)
class SendPolicy:
    """How patiently to wait and how to bump fees."""

    receipt_timeout_s: float = 60.0
    poll_interval_s: float = 0.2
    max_replacements: int = 3
    dropped_after_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a submission."""

    submission_id: int
    state: str  # "mined" or "reverted" or "dropped"
    tx_hash: str | None
    gas_used: int | None
    block_number: int | None
    error: str | None = None


RevertDecoder = Callable[[bytes], str]


class TxSender:
    """Signs with the relayer's key and sends, one submission at a time."""

    def __init__(self, w3: Web3, account: LocalAccount, journal: Journal, *, policy: SendPolicy = SendPolicy(),
                 decode_revert: RevertDecoder = lambda data: "0x" + data.hex()) -> None:
        self.w3 = w3
        self.account = account
        self.journal = journal
        self.policy = policy
        self.decode_revert = decode_revert

    # --- fees --------------------------------------------------------------------------------
    def _fees(self) -> tuple[int, int]:
        base = self.w3.eth.get_block("latest").get("baseFeePerGas") or 0
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except (Web3RPCError, ValueError):
            priority = Web3.to_wei(1, "gwei")
        return 2 * int(base) + priority, priority

    # --- sending -------------------------------------------------------------------------------
    def send(self, submission: Submission, to: str, data: bytes) -> Outcome:
        """Estimate, sign, journal, broadcast; replace with higher fees while it stays unmined."""
        to = Web3.to_checksum_address(to)
        call = {"from": self.account.address, "to": to, "data": data}
        try:
            # Against the pending block: the one this transaction joins, where the relayer's chosen
            # block (often the latest) is already history and its blockhash readable.
            estimate = self.w3.eth.estimate_gas(call, "pending")  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            reason = self._revert_text(exc)
            self.journal.finish_submission(submission.id, "reverted", error=reason)
            return Outcome(submission.id, "reverted", None, None, None, reason)
        gas = min(int(estimate * GAS_HEADROOM), TX_GAS_CAP)
        nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
        max_fee, priority = self._fees()
        chain_id = self.w3.eth.chain_id
        for attempt in range(self.policy.max_replacements + 1):
            tx: dict[str, Any] = {
                "type": 2, "chainId": chain_id, "nonce": nonce, "to": to, "data": data, "gas": gas,
                "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority, "value": 0,
            }
            signed = self.account.sign_transaction(tx)
            tx_hash = "0x" + bytes(signed.hash).hex()
            self.journal.record_tx(submission.id, tx_hash, nonce, bytes(signed.raw_transaction), max_fee, priority)
            self._broadcast(bytes(signed.raw_transaction))
            log.info("sent %s for %s (nonce %d, attempt %d)", tx_hash, submission.cvm_address, nonce, attempt)
            outcome = self._await(submission, self.journal.txs(submission.id), self.policy.receipt_timeout_s)
            if outcome is not None:
                return outcome
            max_fee = int(max_fee * REPLACEMENT_BUMP) + 1
            priority = int(priority * REPLACEMENT_BUMP) + 1
        raise ChainError(Reason.CHAIN_TX_FAILED, f"not mined after {self.policy.max_replacements} replacements",
                         submission=submission.id)

    def _broadcast(self, raw: bytes) -> None:
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Web3RPCError as exc:
            message = str(exc).lower()
            # Already in the pool or already mined: the journal's receipt check settles it.
            if "already known" in message or "nonce too low" in message or "already imported" in message:
                return
            raise ChainError(Reason.CHAIN_TX_FAILED, f"broadcast refused: {exc}") from None

    def _await(self, submission: Submission, txs: list[JournalTx], timeout_s: float) -> Outcome | None:
        deadline = time.monotonic() + timeout_s
        consumed_since: float | None = None
        while True:
            outcome = self._receipt_outcome(submission, txs)
            if outcome is not None:
                return outcome
            now = time.monotonic()
            if txs and self.w3.eth.get_transaction_count(self.account.address, "latest") > txs[0].nonce:
                # The nonce is used up but none of our versions has a receipt. Nodes can count the
                # nonce a moment before they serve the receipt, so only a lasting absence means
                # that another transaction from this key took the nonce.
                consumed_since = consumed_since if consumed_since is not None else now
                if now - consumed_since >= self.policy.dropped_after_s:
                    error = "nonce consumed by another transaction from this key"
                    self.journal.finish_submission(submission.id, "dropped", error=error)
                    return Outcome(submission.id, "dropped", None, None, None, error)
            elif now >= deadline:
                return None
            time.sleep(self.policy.poll_interval_s)

    def _receipt_outcome(self, submission: Submission, txs: list[JournalTx]) -> Outcome | None:
        for tx in reversed(txs):
            try:
                receipt = self.w3.eth.get_transaction_receipt(tx.hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                continue
            if receipt["status"] == 1:
                self.journal.finish_submission(submission.id, "mined", tx_hash=tx.hash, gas_used=receipt["gasUsed"])
                return Outcome(submission.id, "mined", tx.hash, receipt["gasUsed"], receipt["blockNumber"])
            reason = self._replay_revert(tx, receipt)
            self.journal.finish_submission(submission.id, "reverted", tx_hash=tx.hash,
                                           gas_used=receipt["gasUsed"], error=reason)
            return Outcome(submission.id, "reverted", tx.hash, receipt["gasUsed"], receipt["blockNumber"], reason)
        return None

    def _replay_revert(self, tx: JournalTx, receipt: Any) -> str:
        """Decode why a mined transaction reverted by replaying it as a call at its block."""
        original = self.w3.eth.get_transaction(tx.hash)  # type: ignore[arg-type]
        call = {"from": original["from"], "to": original["to"], "data": original["input"], "gas": original["gas"]}
        try:
            self.w3.eth.call(call, block_identifier=receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            return self._revert_text(exc)
        return "reverted (no revert data)"

    def _revert_text(self, exc: ContractLogicError | Web3RPCError) -> str:
        data = _revert_data(exc)
        return self.decode_revert(data) if data else str(exc)

    # --- recovery ------------------------------------------------------------------------------
    def recover(self) -> list[Outcome]:
        """Settle every submission a previous run left pending; re-broadcast what is still unmined."""
        outcomes = []
        for submission in self.journal.pending():
            txs = self.journal.txs(submission.id)
            if not txs:
                # Killed after journaling the proof but before signing: nothing reached the chain.
                self.journal.finish_submission(submission.id, "dropped", error="never signed")
                outcomes.append(Outcome(submission.id, "dropped", None, None, None, "never signed"))
                continue
            outcome = self._receipt_outcome(submission, txs)
            if outcome is None:
                log.info("re-broadcasting %s for %s", txs[-1].hash, submission.cvm_address)
                self._broadcast(txs[-1].raw)
                outcome = self._await(submission, txs, self.policy.receipt_timeout_s)
            if outcome is None:
                raise ChainError(Reason.CHAIN_TX_FAILED, f"submission {submission.id} still unmined after restart")
            outcomes.append(outcome)
        return outcomes


def _revert_data(exc: ContractLogicError | Web3RPCError) -> bytes:
    """The revert bytes inside a JSON-RPC error, wherever the node put them."""
    candidates: list[Any] = [getattr(exc, "data", None)]
    rpc = getattr(exc, "rpc_response", None)
    if isinstance(rpc, dict):
        err = rpc.get("error") or {}
        candidates.append(err.get("data") if isinstance(err, dict) else None)
    for candidate in candidates:
        if isinstance(candidate, dict):
            candidate = candidate.get("data")
        if isinstance(candidate, str) and candidate.startswith("0x"):
            try:
                return bytes.fromhex(candidate[2:])
            except ValueError:
                continue
    return b""
