"""``cvm-cli relay``: a long-running relayer, and ``cvm-cli relay status``.

::

    cvm-cli relay --rpc URL --registry ADDR --agent URL [--agent URL ...] --golden G.json --key SOURCE
                  [--dev-root ARK.pem] [--crl FILE | --kds-crl [--kds-url U]] [--journal FILE] [--once]
                  [--interval S] [--refresh-margin S] [--receipt-timeout S] [--replace-after-blocks N]
                  [--max-fee-gwei X] [--log-format text|json]
    cvm-cli relay status [--journal FILE] [--json]

The journal (SQLite, default ``~/.local/state/cvm-attest/relayer-<chain id>-<registry>.db``) makes
the relayer safe to kill at any moment: see onchain/relayer/journal.py. A transaction unmined for
``--replace-after-blocks`` blocks is replaced with higher fees up to ``--max-fee-gwei``; past that it is
stuck, which ``relay status`` shows: see onchain/relayer/sender.py.

A golden the registry does not hold (or revoked) is refused at start. ``--once`` exits 1
(``relay.pass_failed``) when any agent of the pass was unreachable, rejected, failed or stuck, so cron
alerts; an account that cannot pay is ``chain.insufficient_funds``, not "unreachable".
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from web3 import Web3

from offchain.cli.output import EXIT_REJECTED, guarded
from offchain.errors import ChainError, Reason, RequestError
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import parse_certificate, read_file
from offchain.trust.kds import KDS_BASE_URL, KdsClient, UrllibFetcher
from offchain.trust.roots import TrustRoots
from offchain.verify.revocation import crl_from_file, crl_from_kds
from onchain.client import RegistryClient, checked_address, require_contract
from onchain.keys import key_options, load_account
from onchain.rpc import connect
from onchain.relayer.journal import Journal
from onchain.relayer.relayer import RelayPolicy, Relayer, TickResult, dumps_status
from onchain.relayer.sender import DEFAULT_MAX_FEE_WEI, GWEI, SendPolicy, TxSender, gwei

PathArg = click.Path(dir_okay=False, path_type=Path)


def default_journal(chain_id: int, registry: str) -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return state / "cvm-attest" / f"relayer-{chain_id}-{registry.lower()}.db"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({
            "ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        })


def send_policy(receipt_timeout: float, replace_after_blocks: int, max_fee_gwei: float) -> SendPolicy:
    """The sender's policy from the command line (the cap given in gwei, kept in wei)."""
    return SendPolicy(receipt_timeout_s=receipt_timeout, replace_after_blocks=replace_after_blocks,
                      max_fee_wei=int(Decimal(repr(max_fee_gwei)) * GWEI))


def _setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("cvm_attest")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


#: What a pass did that leaves a CVM unattested or unrefreshed (``--once`` then exits 1).
FAILED_ACTIONS = frozenset({"unreachable", "rejected", "error", "reverted", "dropped", "stuck"})


def _progress(result: TickResult) -> None:
    """One line per agent and pass on the terminal (stdout), whatever the log format."""
    stamp = time.strftime("%H:%M:%S")
    parts = [stamp, result.action.ljust(11), result.cvm_address or "-", result.agent]
    if result.tx_hash:
        parts.append(f"tx {result.tx_hash} gas {result.gas_used}")
    if result.error:
        parts.append(result.error)
    click.echo("  ".join(parts))


@click.group("relay", invoke_without_command=True)
@click.option("--rpc", help="JSON-RPC URL of the chain.")
@click.option("--registry", help="CvmRegistry address.")
@click.option("--agent", "agents", multiple=True, help="Base URL of a cvm-agent (repeatable).")
@click.option("--golden", type=PathArg, help="The golden measurement (JSON) the CVMs are attested under.")
@click.option("--dev-root", type=PathArg, help="Also trust this development ARK when checking evidence off chain.")
@click.option("--crl", "crl_path", type=PathArg, help="Refuse evidence whose ASK/ASVK this ARK CRL lists.")
@click.option("--kds-crl", is_flag=True, help="The same with AMD's current CRL from KDS (kept until its nextUpdate).")
@click.option("--kds-url", default=KDS_BASE_URL, show_default=True, help="KDS base URL (a mirror), for --kds-crl.")
@click.option("--journal", type=PathArg, help="The relayer's SQLite journal (default: per chain and registry).")
@click.option("--once", is_flag=True, help="One pass over every agent, then exit (cron-style).")
@click.option("--interval", default=15.0, show_default=True, help="Seconds between passes.")
@click.option("--refresh-margin", default=600, show_default=True,
              help="Refresh an attestation this many seconds before it expires.")
@click.option("--receipt-timeout", default=180.0, show_default=True,
              help="Seconds one pass waits for a transaction to be mined before leaving it to the next pass.")
@click.option("--replace-after-blocks", default=3, show_default=True, type=click.IntRange(min=1),
              help="Replace a transaction still unmined after this many blocks: same nonce, fees +12.5 % or the"
                   " market's.")
@click.option("--max-fee-gwei", default=float(gwei(DEFAULT_MAX_FEE_WEI)), show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Never offer more than this maxFeePerGas; a transaction unmined at it is stuck (relay status).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@key_options(required=False)
@click.pass_context
@guarded()
def relay(ctx: click.Context, rpc: str | None, registry: str | None, agents: tuple[str, ...], golden: Path | None,
          dev_root: Path | None, crl_path: Path | None, kds_crl: bool, kds_url: str, journal: Path | None, once: bool,
          interval: float, refresh_margin: int, receipt_timeout: float, replace_after_blocks: int,
          max_fee_gwei: float, log_format: str, key_source: str | None, password_file: Path | None) -> None:
    """Carry agents' evidence to the registry and keep their CVMs attested."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [name for name, value in (("--rpc", rpc), ("--registry", registry), ("--agent", agents),
                                        ("--golden", golden), ("--key", key_source)) if not value]
    if missing:
        raise RequestError(Reason.INPUT_INVALID, f"relay needs {', '.join(missing)}")
    if crl_path is not None and kds_crl:
        raise RequestError(Reason.INPUT_INVALID, "--crl and --kds-crl are alternatives: give one")
    revocation = crl_from_file(crl_path) if crl_path is not None else None
    assert rpc is not None and registry is not None and golden is not None and key_source is not None
    checked_address(registry, "--registry")
    _setup_logging(log_format)
    w3 = connect(rpc)
    require_contract(w3, registry)
    roots = TrustRoots.amd()
    if dev_root is not None:
        roots = roots.with_dev_root(parse_certificate(read_file(dev_root)))
    account = load_account(key_source, password_file)
    client = RegistryClient(w3, Web3.to_checksum_address(registry), account=account)
    store = Journal(journal or default_journal(w3.eth.chain_id, client.address))
    sender = TxSender(w3, account, store, policy=send_policy(receipt_timeout, replace_after_blocks, max_fee_gwei),
                      decode_revert=lambda data: str(client.decode_revert(data)))
    if kds_crl:
        revocation = crl_from_kds(KdsClient(UrllibFetcher(), base_url=kds_url))
    document = GoldenMeasurement.from_file(golden)
    _require_published(client, document)
    relayer = Relayer(client=client, sender=sender, journal=store, golden=document,
                      agents=list(agents), roots=roots, revocation=revocation,
                      policy=RelayPolicy(refresh_margin_s=refresh_margin))
    failed: list[TickResult] = []

    def on_result(result: TickResult) -> None:
        _progress(result)
        if result.action in FAILED_ACTIONS:
            failed.append(result)

    try:
        relayer.run(once=once, interval_s=interval, on_result=on_result)
    except KeyboardInterrupt:
        click.echo("relayer stopped; the journal keeps what was in flight", err=True)
    finally:
        store.close()
    if once and failed:
        # cron and CI see a pass that did not keep every CVM attested.
        click.echo(f"[{Reason.RELAY_PASS_FAILED.value}] {len(failed)} of {len(agents)} agents failed this pass: "
                   + "; ".join(f"{r.agent}: {r.error or r.action}" for r in failed), err=True)
        sys.exit(EXIT_REJECTED)


def _require_published(client: RegistryClient, golden: GoldenMeasurement) -> None:
    """A relayer for a golden the registry does not hold (or revoked) could only fail every register."""
    golden_id = golden.canonical_id()
    info = client.golden_of(golden_id)
    if not info.published:
        raise ChainError(Reason.REGISTRY_GOLDEN_NOT_FOUND,
                         f"golden 0x{golden_id.hex()} is not published on {client.address}: publish it first "
                         "(cvm-cli golden publish)", golden_id="0x" + golden_id.hex())
    if info.revoked:
        raise ChainError(Reason.REGISTRY_GOLDEN_REVOKED, f"golden 0x{golden_id.hex()} is revoked on {client.address}",
                         golden_id="0x" + golden_id.hex())


@relay.command("status")
@click.option("--journal", type=PathArg, required=True, help="The relayer's SQLite journal.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one per CVM.")
@guarded()
def status(journal: Path, as_json: bool) -> None:
    """Per CVM: attested until, last transaction, last error, and what is in flight (pending or stuck)."""
    if not journal.is_file():
        raise RequestError(Reason.INPUT_UNREADABLE, f"no journal at {journal}")
    store = Journal(journal)
    try:
        if as_json:
            for line in dumps_status(store).splitlines():
                doc = json.loads(line)
                doc["in_flight"] = _in_flight(store, doc["agent"])
                click.echo(json.dumps(doc))
            return
        for s in store.cvms():
            until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.attested_until)) if s.attested_until else "-"
            click.echo(f"{s.cvm_address or '-'}  {s.agent_url}\n  attested until {until} UTC\n"
                       f"  last tx {s.last_tx or '-'}\n  last error {s.last_error or '-'}")
            for flight in _in_flight(store, s.agent_url):
                click.echo(_flight_text(flight))
    finally:
        store.close()


def _flight_text(flight: dict[str, Any]) -> str:
    text = f"  in flight: {flight['kind']} (submission {flight['submission']}) {flight['state']}"
    if flight["tx"] is None:
        text += ", not signed yet"
    else:
        text += (f", nonce {flight['nonce']}, {flight['versions']} version(s), newest {flight['tx']} at max fee"
                 f" {gwei(flight['max_fee_wei'])} gwei, signed at block {flight['sent_block']}")
    return text + (f"\n    {flight['error']}" if flight["error"] else "")


def _in_flight(store: Journal, agent_url: str) -> list[dict[str, Any]]:
    """The agent's submissions still in flight, each with its newest signed version."""
    flights = []
    for submission in store.pending(agent_url):
        txs = store.txs(submission.id)
        newest = txs[-1] if txs else None
        flights.append({
            "submission": submission.id, "kind": submission.kind, "state": submission.state,
            "error": submission.error, "versions": len(txs),
            "nonce": newest.nonce if newest else None, "tx": newest.hash if newest else None,
            "max_fee_wei": newest.max_fee if newest else None,
            "priority_fee_wei": newest.priority_fee if newest else None,
            "sent_block": newest.sent_block if newest else None,
        })
    return flights
