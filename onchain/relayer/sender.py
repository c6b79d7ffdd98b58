"""Sending the relayer's transactions: EIP-1559 fees, gas estimation, journaling before broadcast,
replacement of stuck transactions, and recovery after a restart.

Every signed transaction goes into the :class:`~onchain.relayer.journal.Journal` *before* it is
broadcast. A version still unmined :attr:`SendPolicy.replace_after_blocks` blocks after it was signed
is replaced: same nonce, same call, both fee fields raised by 12.5 % (nodes replace a pooled
transaction only for at least +10 % on both) or to the market's, whichever is higher, and never
above :attr:`SendPolicy.max_fee_wei`. When the cap leaves no room for another replacement, the
submission is *stuck* (``relay.fee_cap_reached``, logged at WARNING): it stays journaled, its newest
version is broadcast again on every pass (a node may have dropped it while it was priced out), and the
relayer goes on with its other agents. A receipt for any version settles a submission, so a proof is
never built and paid for twice.

After a crash, :meth:`TxSender.recover` settles each submission a previous run left in flight the
same way: a receipt for any version ends it; otherwise the newest signed bytes are broadcast again,
and replaced once they have stayed unmined for the configured number of blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from offchain.errors import ChainError, Reason, RequestError
from onchain.relayer.journal import JournalTx, SqlJournal, Submission

log = logging.getLogger("cvm_attest.relayer")

TX_GAS_CAP = 16_777_216  # EIP-7825: no transaction may use more
GAS_HEADROOM = 1.25
GWEI = 10**9
#: The default fee cap: maxFeePerGas of any version never exceeds it (``--max-fee-gwei``).
DEFAULT_MAX_FEE_WEI = 100 * GWEI
#: What a node's refusal says when a transaction is priced out (below the base fee, or not enough above
#: the version it holds). Such a version stays journaled; the next replacement outbids it.
_PRICED_OUT = ("underpriced", "less than block base fee", "fee too low", "feetoolow")
#: What a node's refusal says when it already has the transaction, or its nonce is used: receipts settle it.
_ALREADY_SEEN = ("already known", "already imported", "nonce too low")


@dataclass(frozen=True, slots=True)
class SendPolicy:
    """When to replace a transaction, how much the relayer may pay, and how long it waits."""

    #: Replace a version still unmined this many blocks after it was signed (``--replace-after-blocks``).
    replace_after_blocks: int = 3
    #: The operator's cap on maxFeePerGas, in wei (``--max-fee-gwei``).
    max_fee_wei: int = DEFAULT_MAX_FEE_WEI
    #: How long one send, or one recovery, waits for a submission to settle before leaving it to the
    #: next pass (``--receipt-timeout``). Replacements are counted in blocks, not in seconds.
    receipt_timeout_s: float = 180.0
    poll_interval_s: float = 0.2
    dropped_after_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a submission."""

    submission_id: int
    #: "mined", "reverted", "dropped", or "stuck" (still in flight at the fee cap; tx_hash is its newest version)
    state: str
    tx_hash: str | None
    gas_used: int | None
    block_number: int | None
    error: str | None = None


RevertDecoder = Callable[[bytes], str]


def bumped(fee: int) -> int:
    """``fee`` raised by 12.5 % (rounded up, and by at least 1 wei)."""
    return fee + max(1, -(-fee // 8))


def least_replacement(fee: int) -> int:
    """The lowest fee a node accepts to replace a pooled transaction offering ``fee``: +10 %, and more than ``fee``."""
    return fee + max(1, -(-fee // 10))


def initial_fees(market_max_fee: int, market_priority: int, cap: int) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) of a first version: the market's, within the cap."""
    max_fee = min(market_max_fee, cap)
    return max_fee, min(market_priority, max_fee)


def replacement_fees(last_max_fee: int, last_priority: int, market_max_fee: int, market_priority: int,
                     cap: int) -> tuple[int, int] | None:
    """The fees of the version that replaces one offering ``last_max_fee`` and ``last_priority``: each
    bumped by 12.5 % or the market's, whichever is higher, within ``cap``; None when the cap leaves
    less than a node's +10 % on either field (the submission is stuck)."""
    max_fee = min(max(bumped(last_max_fee), market_max_fee), cap)
    priority = min(max(bumped(last_priority), market_priority), max_fee)
    if max_fee < least_replacement(last_max_fee) or priority < least_replacement(last_priority):
        return None
    return max_fee, priority


def gwei(wei: int) -> str:
    """``wei`` in gwei, exactly, for logs and messages."""
    return format(Decimal(wei) / GWEI, "f")


class TxSender:
    """Signs with the relayer's key and sends, one submission at a time."""

    def __init__(self, w3: Web3, account: LocalAccount, journal: SqlJournal, *, policy: SendPolicy = SendPolicy(),
                 decode_revert: RevertDecoder = lambda data: "0x" + data.hex()) -> None:
        self.w3 = w3
        self.account = account
        self.journal = journal
        self.policy = policy
        self.decode_revert = decode_revert

    # --- fees and nonces ---------------------------------------------------------------------------
    def _base_fee(self) -> int:
        return int(self.w3.eth.get_block("latest").get("baseFeePerGas") or 0)

    def _market_fees(self) -> tuple[int, int]:
        """(2 x the latest base fee + tip, tip), uncapped."""
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except (Web3RPCError, ValueError):
            priority = Web3.to_wei(1, "gwei")
        return 2 * self._base_fee() + priority, priority

    def _next_nonce(self) -> int:
        """The node's pending nonce, but after every journaled submission still in flight: a node may have
        dropped a priced-out transaction from its pool, and its nonce stays that submission's."""
        pending = self.w3.eth.get_transaction_count(self.account.address, "pending")
        journaled = self.journal.highest_pending_nonce(self.account.address)
        return pending if journaled is None else max(pending, journaled + 1)

    # --- sending -------------------------------------------------------------------------------
    def send(self, submission: Submission, to: str, data: bytes) -> Outcome:
        """Estimate, sign, journal, broadcast; replace while it stays unmined, up to the fee cap.

        Returns once the submission is mined, reverted, dropped or stuck at the cap; raises
        ``chain.tx_failed`` when it is still in flight after ``receipt_timeout_s`` (the next
        :meth:`recover` goes on with it).
        """
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
        max_fee, priority = initial_fees(*self._market_fees(), self.policy.max_fee_wei)
        tx: dict[str, Any] = {
            "type": 2, "chainId": self.w3.eth.chain_id, "nonce": self._next_nonce(), "to": to, "data": data,
            "gas": min(int(estimate * GAS_HEADROOM), TX_GAS_CAP), "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority, "value": 0,
        }
        try:
            tx_hash = self._sign_journal_broadcast(submission, tx)
        except ChainError as exc:
            if exc.reason is Reason.CHAIN_INSUFFICIENT_FUNDS:  # never reached a pool: nothing is in flight
                self.journal.finish_submission(submission.id, "dropped", error=f"[{exc.reason.value}] {exc.detail}")
            raise
        log.info("sent %s for %s (nonce %d, max fee %s gwei, tip %s gwei)", tx_hash, submission.cvm_address,
                 tx["nonce"], gwei(max_fee), gwei(priority))
        outcome = self._drive(submission, time.monotonic() + self.policy.receipt_timeout_s)
        if outcome is None:
            raise ChainError(Reason.CHAIN_TX_FAILED, f"not mined within {self.policy.receipt_timeout_s:g} s;"
                             " the next pass goes on with it", submission=submission.id)
        return outcome

    def _sign_journal_broadcast(self, submission: Submission, tx: dict[str, Any]) -> str:
        signed = self.account.sign_transaction(tx)
        tx_hash = "0x" + bytes(signed.hash).hex()
        self.journal.record_tx(submission.id, tx_hash, tx["nonce"], bytes(signed.raw_transaction),
                               tx["maxFeePerGas"], tx["maxPriorityFeePerGas"], sent_block=self.w3.eth.block_number,
                               sender=self.account.address)
        self._broadcast(bytes(signed.raw_transaction), tx_hash)
        return tx_hash

    def _broadcast(self, raw: bytes, tx_hash: str) -> None:
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Web3RPCError as exc:
            message = str(exc).lower()
            if any(text in message for text in _ALREADY_SEEN):
                return
            if any(text in message for text in _PRICED_OUT):
                log.info("the node refused %s for now (%s); it is replaced after %d blocks unmined",
                         tx_hash, exc, self.policy.replace_after_blocks)
                return
            if "insufficient funds" in message:
                raise ChainError(Reason.CHAIN_INSUFFICIENT_FUNDS,
                                 f"the relayer's account {self.account.address} cannot pay for {tx_hash}: fund it "
                                 f"({exc})", account=self.account.address) from None
            raise ChainError(Reason.CHAIN_TX_FAILED, f"broadcast refused: {exc}") from None

    def _drive(self, submission: Submission, deadline: float) -> Outcome | None:
        """Watch a journaled submission until it settles or sticks, replacing its newest version each time
        it has stayed unmined for ``replace_after_blocks``; None when still in flight at ``deadline``."""
        consumed_since: float | None = None
        while True:
            txs = self.journal.txs(submission.id)
            outcome = self._receipt_outcome(submission, txs)
            if outcome is not None:
                return outcome
            newest = txs[-1]
            now = time.monotonic()
            # A version another fleet member signed (it died or lost its lease) is watched by its
            # signer's nonce; only that key could replace it, so it is re-broadcast, never bumped.
            signer = Web3.to_checksum_address(newest.sender) if newest.sender else self.account.address
            account_nonce = self.w3.eth.get_transaction_count(signer, "latest")
            if account_nonce > newest.nonce:
                # The nonce is used up but none of our versions has a receipt. Nodes can count the
                # nonce a moment before they serve the receipt, so only a lasting absence means
                # that another transaction from this key took the nonce.
                consumed_since = consumed_since if consumed_since is not None else now
                if now - consumed_since >= self.policy.dropped_after_s:
                    error = "nonce consumed by another transaction from this key"
                    self.journal.finish_submission(submission.id, "dropped", error=error)
                    return Outcome(submission.id, "dropped", None, None, None, error)
            else:
                if signer != self.account.address:
                    if self.w3.eth.block_number >= newest.sent_block + self.policy.replace_after_blocks:
                        self._broadcast(newest.raw, newest.hash)
                elif self.w3.eth.block_number >= newest.sent_block + self.policy.replace_after_blocks:
                    outcome = self._replace(submission, newest, account_nonce)
                    if outcome is not None:
                        return outcome
                if now >= deadline:
                    return None
            time.sleep(self.policy.poll_interval_s)

    def _replace(self, submission: Submission, newest: JournalTx, account_nonce: int) -> Outcome | None:
        """Sign, journal and broadcast a fee-bumped version of ``newest``; a stuck Outcome when none may be."""
        if account_nonce < newest.nonce:
            # An earlier transaction from this key holds the queue: higher fees would not help.
            blocker = self.journal.stuck_below(newest.nonce, self.account.address)
            if blocker is None:
                return None
            return self._stuck(submission, newest, f"nonce {newest.nonce} waits behind submission {blocker.id},"
                                                   " which is stuck at the fee cap")
        fees = replacement_fees(newest.max_fee, newest.priority_fee, *self._market_fees(), self.policy.max_fee_wei)
        if fees is None:
            return self._stuck(submission, newest, (
                f"nonce {newest.nonce} unmined for {self.policy.replace_after_blocks} blocks at max fee"
                f" {gwei(newest.max_fee)} gwei, tip {gwei(newest.priority_fee)} gwei; the cap is"
                f" {gwei(self.policy.max_fee_wei)} gwei, the base fee {gwei(self._base_fee())} gwei"))
        max_fee, priority = fees
        tx_hash = self._sign_journal_broadcast(submission, self._same_call(newest, max_fee, priority))
        log.info("replaced %s with %s for %s (nonce %d, max fee %s gwei, tip %s gwei)", newest.hash, tx_hash,
                 submission.cvm_address, newest.nonce, gwei(max_fee), gwei(priority))
        return None

    def _same_call(self, version: JournalTx, max_fee: int, priority: int) -> dict[str, Any]:
        """The journaled version's transaction with other fees. Only a version this key signed is taken
        from the journal: re-signing never authorizes a call the relayer did not already sign."""
        raw = HexBytes(version.raw)
        if Account.recover_transaction(raw) != self.account.address:
            raise RequestError(Reason.RELAY_JOURNAL_CORRUPT, f"journaled {version.hash} is not signed by this key",
                               submission=version.submission_id)
        fields = TypedTransaction.from_bytes(raw).as_dict()
        return {
            "type": 2, "chainId": fields["chainId"], "nonce": fields["nonce"], "to": Web3.to_checksum_address(
                fields["to"]), "data": bytes(fields["data"]), "gas": fields["gas"], "value": fields["value"],
            "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority,
        }

    def _stuck(self, submission: Submission, newest: JournalTx, detail: str) -> Outcome:
        error = f"[{Reason.RELAY_FEE_CAP_REACHED.value}] {detail}"
        current = self.journal.submission(submission.id)
        if current is None or current.state != "stuck":
            log.warning("the %s of %s (submission %d) is stuck: %s", submission.kind, submission.cvm_address,
                        submission.id, error)
        self.journal.mark_stuck(submission.id, error)
        return Outcome(submission.id, "stuck", newest.hash, None, None, error)

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
    def recover(self, agents: Collection[str] | None = None) -> list[Outcome]:
        """Settle every submission in flight (a previous run's, or stuck at the cap; only ``agents``' if
        given, as a fleet member settles those it holds leases on): broadcast its newest version again,
        replace it if it has stayed unmined long enough, and report what became of it.

        A version another relayer signed (it died, or its lease expired) is found by its hash and by its
        signer's nonce: its receipt settles the submission; else the same bytes are broadcast again (anyone
        may broadcast a signed transaction); a nonce of that signer used by another transaction drops it.
        Only then may a new proof be built: never the same proof twice, never a proof lost."""
        outcomes = []
        for submission in self.journal.pending(agents=agents):
            txs = self.journal.txs(submission.id)
            if not txs:
                # Killed after journaling the proof but before signing: nothing reached the chain.
                self.journal.finish_submission(submission.id, "dropped", error="never signed")
                outcomes.append(Outcome(submission.id, "dropped", None, None, None, "never signed"))
                continue
            outcome = self._receipt_outcome(submission, txs)
            if outcome is None:
                log.info("re-broadcasting %s for %s", txs[-1].hash, submission.cvm_address)
                self._broadcast(txs[-1].raw, txs[-1].hash)
                outcome = self._drive(submission, time.monotonic() + self.policy.receipt_timeout_s)
            if outcome is None:
                raise ChainError(Reason.CHAIN_TX_FAILED, f"submission {submission.id} still in flight after"
                                 f" {self.policy.receipt_timeout_s:g} s", submission=submission.id)
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
