"""``cvm-cli relay``: a long-running relayer (alone or in a fleet), and its helpers.

::

    cvm-cli relay --rpc URL --registry ADDR [--agent URL ...] --golden G.json --key SOURCE
                  [--journal sqlite:///PATH | postgresql://...] [--relayer-id ID] [--lease-seconds S]
                  [--metrics HOST:PORT] [--min-balance-eth X]
                  [--dev-root ARK.pem] [--crl FILE | --kds-crl [--kds-url U]] [--once]
                  [--interval S] [--refresh-margin S] [--receipt-timeout S] [--replace-after-blocks N]
                  [--max-fee-gwei X] [--log-format text|json]
    cvm-cli relay status --journal J [--json]
    cvm-cli relay agents add|remove URL... --journal J [--json];  cvm-cli relay agents list --journal J [--json]
    cvm-cli relay fund --rpc URL --key FUNDER (--to ADDR ... | --journal J) --target-eth X [--json]

The journal (default: SQLite, ``~/.local/state/cvm-attest/relayer-<chain id>-<registry>.db``) makes
the relayer safe to kill at any moment: see onchain/relayer/journal.py. A PostgreSQL journal is
shared by a fleet: each relayer leases its share of the journal's agents. ``--agent`` URLs are added
to the journal's agents (``relay agents`` manages them at run time). A transaction unmined for
``--replace-after-blocks`` blocks is replaced with higher fees up to ``--max-fee-gwei``; past that it is
stuck, which ``relay status`` shows: see onchain/relayer/sender.py.

A golden the registry does not hold (or revoked) is refused at start. ``--once`` exits 1
(``relay.pass_failed``) when any agent of the pass was unreachable, rejected, failed or stuck, so cron
alerts; an account that cannot pay is ``chain.insufficient_funds``, not "unreachable". With
``--log-format json`` every line the relayer prints (logs, progress, errors) is one JSON object.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.cli.output import EXIT_REJECTED, exit_code_for, guarded
from offchain.errors import ChainError, CvmAttestError, Reason, RequestError
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import parse_certificate, read_file
from offchain.trust.kds import KDS_BASE_URL, KdsClient, UrllibFetcher
from offchain.trust.roots import TrustRoots
from offchain.verify.revocation import crl_from_file, crl_from_kds
from onchain.client import RegistryClient, checked_address, require_contract
from onchain.keys import key_options, load_account
from onchain.rpc import connect
from onchain.relayer.journal import Journal, SqlJournal, open_journal
from onchain.relayer.relayer import FleetPolicy, RelayPolicy, Relayer, TickResult, dumps_status
from onchain.relayer.sender import DEFAULT_MAX_FEE_WEI, GWEI, SendPolicy, TxSender, gwei

PathArg = click.Path(dir_okay=False, path_type=Path)
WEI_PER_ETH = 10**18
log = logging.getLogger("cvm_attest.relayer")


def default_journal(chain_id: int, registry: str) -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return state / "cvm-attest" / f"relayer-{chain_id}-{registry.lower()}.db"


#: Attributes a log call may pass with ``extra=`` that the JSON formatter copies into the line.
LOG_FIELDS = ("agent", "cvm", "tx", "action", "reason", "relayer", "balance_wei", "threshold_wei")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message, and the structured fields given."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in LOG_FIELDS:
            if hasattr(record, name):
                doc[name] = getattr(record, name)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


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
    if fmt == "json":
        # Every line JSON: what other libraries log (web3, urllib3) and Python warnings go through it too.
        logging.getLogger().handlers[:] = [handler]
        logging.captureWarnings(True)


#: What a pass did that leaves a CVM unattested or unrefreshed (``--once`` then exits 1).
FAILED_ACTIONS = frozenset({"unreachable", "rejected", "error", "reverted", "dropped", "stuck"})


def _progress(result: TickResult, fmt: str) -> None:
    """One line per agent and pass on the terminal (stdout): text, or with ``--log-format json`` an object."""
    if fmt == "json":
        click.echo(json.dumps({
            "ts": round(time.time(), 3), "event": "progress", "action": result.action, "agent": result.agent,
            "cvm": result.cvm_address, "tx": result.tx_hash, "gas_used": result.gas_used, "error": result.error,
        }))
        return
    stamp = time.strftime("%H:%M:%S")
    parts = [stamp, result.action.ljust(11), result.cvm_address or "-", result.agent]
    if result.tx_hash:
        parts.append(f"tx {result.tx_hash} gas {result.gas_used}")
    if result.error:
        parts.append(result.error)
    click.echo("  ".join(parts))


def _fail_json(error: CvmAttestError) -> None:
    """``relay``'s own error object (``--log-format json``) on stderr, and its exit code."""
    click.echo(json.dumps({"ts": round(time.time(), 3), "event": "error", "ok": False, "reason": error.reason.value,
                           "detail": error.detail}), err=True)
    sys.exit(exit_code_for(error))


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise RequestError(Reason.INPUT_INVALID, f"--metrics {text!r} is not HOST:PORT")
    return host, int(port)


@click.group("relay", invoke_without_command=True)
@click.option("--rpc", help="JSON-RPC URL of the chain.")
@click.option("--registry", help="CvmRegistry address.")
@click.option("--agent", "agents", multiple=True,
              help="Base URL of a cvm-agent (repeatable); added to the journal's agents (see relay agents).")
@click.option("--golden", type=PathArg, help="The golden measurement (JSON) the CVMs are attested under.")
@click.option("--dev-root", type=PathArg, help="Also trust this development ARK when checking evidence off chain.")
@click.option("--crl", "crl_path", type=PathArg, help="Refuse evidence whose ASK/ASVK this ARK CRL lists.")
@click.option("--kds-crl", is_flag=True, help="The same with AMD's current CRL from KDS (kept until its nextUpdate).")
@click.option("--kds-url", default=KDS_BASE_URL, show_default=True, help="KDS base URL (a mirror), for --kds-crl.")
@click.option("--journal", "journal_spec",
              help="sqlite:///PATH (or a path) or postgresql://... (a fleet's shared journal)."
                   " Default: a SQLite file per chain and registry.")
@click.option("--relayer-id", help="This relayer's id in the journal (default: its sender address).")
@click.option("--lease-seconds", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="An agent's lease lasts this long unless renewed; must exceed --receipt-timeout's share.")
@click.option("--metrics", "metrics_addr", help="Serve Prometheus metrics at HOST:PORT (/metrics).")
@click.option("--min-balance-eth", default=0.1, show_default=True, type=click.FloatRange(min=0),
              help="Alarm (metric and WARNING log) while the sender's balance is below this.")
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
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: every line printed (logs on stderr, progress on stdout, errors) is one JSON object.")
@key_options(required=False)
@click.pass_context
def relay(ctx: click.Context, rpc: str | None, registry: str | None, agents: tuple[str, ...], golden: Path | None,
          dev_root: Path | None, crl_path: Path | None, kds_crl: bool, kds_url: str, journal_spec: str | None,
          relayer_id: str | None, lease_seconds: float, metrics_addr: str | None, min_balance_eth: float,
          once: bool, interval: float, refresh_margin: int, receipt_timeout: float, replace_after_blocks: int,
          max_fee_gwei: float, log_format: str, key_source: str | None, password_file: Path | None) -> None:
    """Carry agents' evidence to the registry and keep their CVMs attested."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        _relay(rpc, registry, agents, golden, dev_root, crl_path, kds_crl, kds_url, journal_spec, relayer_id,
               lease_seconds, metrics_addr, min_balance_eth, once, interval, refresh_margin, receipt_timeout,
               replace_after_blocks, max_fee_gwei, log_format, key_source, password_file)
    except CvmAttestError as exc:
        if log_format == "json":
            _fail_json(exc)
        click.echo(f"[{exc.reason.value}] {exc.detail}", err=True)
        sys.exit(exit_code_for(exc))


def _relay(rpc: str | None, registry: str | None, agents: tuple[str, ...], golden: Path | None,
           dev_root: Path | None, crl_path: Path | None, kds_crl: bool, kds_url: str, journal_spec: str | None,
           relayer_id: str | None, lease_seconds: float, metrics_addr: str | None, min_balance_eth: float,
           once: bool, interval: float, refresh_margin: int, receipt_timeout: float, replace_after_blocks: int,
           max_fee_gwei: float, log_format: str, key_source: str | None, password_file: Path | None) -> None:
    missing = [name for name, value in (("--rpc", rpc), ("--registry", registry), ("--golden", golden),
                                        ("--key", key_source)) if not value]
    if missing:
        raise RequestError(Reason.INPUT_INVALID, f"relay needs {', '.join(missing)}")
    if crl_path is not None and kds_crl:
        raise RequestError(Reason.INPUT_INVALID, "--crl and --kds-crl are alternatives: give one")
    metrics_bind = _host_port(metrics_addr) if metrics_addr is not None else None
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
    store = open_journal(journal_spec or default_journal(w3.eth.chain_id, client.address))
    try:
        for url in agents:
            store.add_agent(url)
        if not store.agents():
            if once:
                raise RequestError(Reason.INPUT_INVALID, f"no agents: give --agent URL or add some to"
                                   f" {store.describe()} (cvm-cli relay agents add)")
            log.warning("no agents in %s yet: waiting for cvm-cli relay agents add", store.describe())
        fleet = FleetPolicy(relayer_id=relayer_id or account.address, lease_s=lease_seconds)
        store.join_fleet(fleet.relayer_id, account.address)
        sender = TxSender(w3, account, store, policy=send_policy(receipt_timeout, replace_after_blocks, max_fee_gwei),
                          decode_revert=lambda data: str(client.decode_revert(data)))
        if kds_crl:
            revocation = crl_from_kds(KdsClient(UrllibFetcher(), base_url=kds_url))
        document = GoldenMeasurement.from_file(golden)
        _require_published(client, document)
        relayer = Relayer(client=client, sender=sender, journal=store, golden=document, agents=[], roots=roots,
                          revocation=revocation, policy=RelayPolicy(refresh_margin_s=refresh_margin), fleet=fleet)
        with _metrics(fleet.relayer_id, metrics_bind) as metrics:
            _run(relayer, store, account, w3, metrics, once=once, interval=interval, log_format=log_format,
                 min_balance_wei=int(Decimal(repr(min_balance_eth)) * WEI_PER_ETH))
    finally:
        store.close()


@contextmanager
def _metrics(relayer_id: str, bind: tuple[str, int] | None) -> Iterator[Any]:
    """The relayer's metrics, served at ``bind`` if given (prometheus-client is imported only then)."""
    if bind is None:
        yield None
        return
    from onchain.relayer.metrics import RelayMetrics

    metrics = RelayMetrics(relayer_id)
    host, port = metrics.serve(*bind)
    log.info("metrics at http://%s:%d/metrics", host, port)
    try:
        yield metrics
    finally:
        metrics.close()


def _run(relayer: Relayer, store: SqlJournal, account: LocalAccount, w3: Web3, metrics: Any, *, once: bool,
         interval: float, log_format: str, min_balance_wei: int) -> None:
    failed: list[TickResult] = []
    seen: list[TickResult] = []

    def on_result(result: TickResult) -> None:
        _progress(result, log_format)
        seen.append(result)
        if metrics is not None:
            metrics.observe(result)
        if result.action in FAILED_ACTIONS:
            failed.append(result)

    def on_pass(results: list[TickResult]) -> None:
        _watch(store, account, w3, metrics, min_balance_wei)

    try:
        relayer.run(once=once, interval_s=interval, on_result=on_result, on_pass=on_pass)
    except KeyboardInterrupt:
        message = "relayer stopped; the journal keeps what was in flight"
        click.echo(json.dumps({"ts": round(time.time(), 3), "event": "stopped", "msg": message})
                   if log_format == "json" else message, err=True)
    finally:
        try:
            store.release_leases()
        except CvmAttestError as exc:
            log.warning("could not release the leases (they expire by themselves): %s", exc.detail)
    if once and failed:
        # cron and CI see a pass that did not keep every CVM attested.
        error = RequestError(Reason.RELAY_PASS_FAILED, f"{len(failed)} of {len(seen)} agents failed this pass: "
                             + "; ".join(f"{r.agent}: {r.error or r.action}" for r in failed))
        if log_format == "json":
            _fail_json(error)
        click.echo(f"[{error.reason.value}] {error.detail}", err=True)
        sys.exit(EXIT_REJECTED)


def _watch(store: SqlJournal, account: LocalAccount, w3: Web3, metrics: Any, min_balance_wei: int) -> None:
    """After each pass: the sender's balance (alarm below the threshold), leases, the soonest expiry."""
    try:
        balance = int(w3.eth.get_balance(account.address))
        chain_now = int(w3.eth.get_block("latest")["timestamp"])
    except Exception as exc:  # noqa: BLE001 - a node that fails here fails the next pass too, with its reason
        log.warning("cannot read the balance of %s: %s", account.address, exc)
        return
    low = balance < min_balance_wei
    if low:
        log.warning("[%s] the sender %s holds %s ETH, below %s ETH: fund it (cvm-cli relay fund)",
                    Reason.RELAY_BALANCE_LOW.value, account.address, Decimal(balance) / WEI_PER_ETH,
                    Decimal(min_balance_wei) / WEI_PER_ETH,
                    extra={"reason": Reason.RELAY_BALANCE_LOW.value, "balance_wei": balance,
                           "threshold_wei": min_balance_wei})
    if metrics is None:
        return
    metrics.passes.inc()
    metrics.balance.set(balance)
    metrics.balance_low.set(1 if low else 0)
    held = set(store.held())
    metrics.leases.set(len(held))
    try:
        expiries = [c.attested_until for c in store.cvms() if c.agent_url in held and c.attested_until]
    except CvmAttestError:
        return
    metrics.soonest_expiry.set(min(expiries) - chain_now if expiries else math.nan)


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


def _existing_journal(spec: str) -> SqlJournal:
    """A journal that must already exist (status, agents list): a SQLite file is not created by asking."""
    if not spec.startswith(("postgresql://", "postgres://")):
        path = Path(spec[len("sqlite:///"):] if spec.startswith("sqlite:///") else spec)
        if not path.is_file():
            raise RequestError(Reason.INPUT_UNREADABLE, f"no journal at {path}")
        return Journal(path)
    return open_journal(spec)


def _json_errors(fn: Any) -> Any:
    """Like ``guarded``, but with ``--json`` an error is this command group's own ``{"ok", "reason",
    "detail"}`` object (not the verify commands' schema)."""
    plain = guarded()(fn)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("as_json"):
            return plain(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except CvmAttestError as exc:
            click.echo(json.dumps({"ok": False, "reason": exc.reason.value, "detail": exc.detail}))
            sys.exit(exit_code_for(exc))

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@relay.command("status")
@click.option("--journal", "journal_spec", required=True, help="The relayer's journal (path, sqlite:///, postgresql://).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per CVM and line (agent, cvm_address, attested_until, last_block, last_tx,"
                   " last_error, updated_at, lease, in_flight).")
@_json_errors
def status(journal_spec: str, as_json: bool) -> None:
    """Per CVM: attested until, last transaction, last error, its lease, and what is in flight."""
    store = _existing_journal(journal_spec)
    try:
        leases = {a.url: a for a in store.agents()}
        if as_json:
            for line in dumps_status(store).splitlines():
                doc = json.loads(line)
                doc["in_flight"] = _in_flight(store, doc["agent"])
                lease = leases.get(doc["agent"])
                doc["lease"] = None if lease is None or lease.lease_owner is None else {
                    "owner": lease.lease_owner, "token": lease.lease_token, "expires_at": lease.lease_expires}
                click.echo(json.dumps(doc))
            return
        for s in store.cvms():
            until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.attested_until)) if s.attested_until else "-"
            click.echo(f"{s.cvm_address or '-'}  {s.agent_url}\n  attested until {until} UTC\n"
                       f"  last tx {s.last_tx or '-'}\n  last error {s.last_error or '-'}")
            lease = leases.get(s.agent_url)
            if lease is not None and lease.lease_owner is not None:
                click.echo(f"  lease {lease.lease_owner} (token {lease.lease_token}) until "
                           f"{time.strftime('%H:%M:%S', time.gmtime(lease.lease_expires))} UTC")
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


def _in_flight(store: SqlJournal, agent_url: str) -> list[dict[str, Any]]:
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


@relay.group("agents")
def agents_group() -> None:
    """The agents a journal's relayers serve, managed at run time (a fleet picks changes up next pass)."""


def _journal_option(fn: Any) -> Any:
    return click.option("--journal", "journal_spec", required=True,
                        help="The journal (path, sqlite:///PATH, postgresql://...).")(fn)


@agents_group.command("add")
@click.argument("urls", nargs=-1, required=True)
@_journal_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_json_errors
def agents_add(urls: tuple[str, ...], journal_spec: str, as_json: bool) -> None:
    """Add agents (base URLs); one already stored is left as it is."""
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise RequestError(Reason.INPUT_INVALID, f"{url!r} is not an http(s) URL of a cvm-agent")
    store = open_journal(journal_spec)
    try:
        added = [url for url in urls if store.add_agent(url)]
    finally:
        store.close()
    _agents_echo(as_json, {"ok": True, "added": added, "already": [u for u in urls if u not in added]},
                 [f"added {u}" for u in added] + [f"already there {u}" for u in urls if u not in added])


@agents_group.command("remove")
@click.argument("urls", nargs=-1, required=True)
@_journal_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@_json_errors
def agents_remove(urls: tuple[str, ...], journal_spec: str, as_json: bool) -> None:
    """Remove agents: whoever leases one stops relaying for it at its next turn. Exit 1 if one was unknown."""
    store = _existing_journal(journal_spec)
    try:
        removed = [url for url in urls if store.remove_agent(url)]
    finally:
        store.close()
    unknown = [u for u in urls if u not in removed]
    if unknown:
        raise RequestError(Reason.INPUT_INVALID, f"not in the journal: {', '.join(unknown)}", removed=removed)
    _agents_echo(as_json, {"ok": True, "removed": removed}, [f"removed {u}" for u in removed])


@agents_group.command("list")
@_journal_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object: agents with their leases, relayers.")
@_json_errors
def agents_list(journal_spec: str, as_json: bool) -> None:
    """The stored agents, who holds each lease (and until when), and the fleet's relayers."""
    store = _existing_journal(journal_spec)
    try:
        stored, relayers = store.agents(), store.relayers()
    finally:
        store.close()
    doc = {"ok": True, "agents": [
        {"url": a.url, "added_at": a.added_at, "lease_owner": a.lease_owner, "lease_token": a.lease_token,
         "lease_expires": a.lease_expires} for a in stored],
        "relayers": [{"id": r.id, "sender": r.sender, "last_seen": r.last_seen} for r in relayers]}
    lines = [f"{a.url}  {'lease ' + a.lease_owner + f' (token {a.lease_token})' if a.lease_owner else 'no lease'}"
             for a in stored]
    lines += [f"relayer {r.id}  sender {r.sender}  last seen "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r.last_seen))} UTC" for r in relayers]
    _agents_echo(as_json, doc, lines)


def _agents_echo(as_json: bool, doc: dict[str, Any], lines: list[str]) -> None:
    click.echo(json.dumps(doc) if as_json else "\n".join(lines))


@relay.command("fund")
@click.option("--rpc", required=True, help="JSON-RPC URL of the chain.")
@click.option("--to", "targets", multiple=True, help="A relayer's sender address (repeatable).")
@click.option("--journal", "journal_spec", help="Fund every relayer that has joined this journal's fleet.")
@click.option("--target-eth", required=True, type=click.FloatRange(min=0, min_open=True),
              help="Top each address up to this balance (an address already holding it gets nothing).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@key_options
@_json_errors
def fund(rpc: str, targets: tuple[str, ...], journal_spec: str | None, target_eth: float, as_json: bool,
         key_source: str, password_file: Path | None) -> None:
    """Top up relayers' sender accounts from one funding account (each relayer has its own key)."""
    addresses: list[str] = [checked_address(t, "--to") for t in targets]
    if journal_spec is not None:
        store = _existing_journal(journal_spec)
        try:
            addresses += [r.sender for r in store.relayers()]
        finally:
            store.close()
    checksummed = list(dict.fromkeys(Web3.to_checksum_address(a) for a in addresses))
    if not checksummed:
        raise RequestError(Reason.INPUT_INVALID, "nothing to fund: give --to ADDR or --journal J")
    w3 = connect(rpc)
    funder = load_account(key_source, password_file)
    target = int(Decimal(repr(target_eth)) * WEI_PER_ETH)
    transfers: list[dict[str, Any]] = []
    nonce = int(w3.eth.get_transaction_count(funder.address, "pending"))
    hashes = []
    for address in checksummed:
        balance = int(w3.eth.get_balance(address))
        amount = max(0, target - balance)
        tx_hash = None
        if amount:
            base = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
            tx: dict[str, Any] = {"type": 2, "chainId": w3.eth.chain_id, "nonce": nonce, "to": address, "value": amount,
                  "gas": 21_000, "maxFeePerGas": 2 * base + GWEI, "maxPriorityFeePerGas": GWEI}
            try:
                sent = w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction)
            except Exception as exc:  # noqa: BLE001 - the node's refusal, reported with its reason
                raise ChainError(Reason.CHAIN_INSUFFICIENT_FUNDS if "insufficient funds" in str(exc).lower()
                                 else Reason.CHAIN_TX_FAILED, f"funding {address}: {exc}") from None
            tx_hash = "0x" + bytes(sent).hex()
            hashes.append(sent)
            nonce += 1
        transfers.append({"address": address, "balance_wei": balance, "sent_wei": amount, "tx": tx_hash})
    for sent in hashes:
        if w3.eth.wait_for_transaction_receipt(sent, timeout=120)["status"] != 1:
            raise ChainError(Reason.CHAIN_TX_FAILED, f"transfer {sent.hex()} failed")
    doc = {"ok": True, "funder": funder.address, "target_wei": target, "transfers": transfers}
    click.echo(json.dumps(doc) if as_json else "\n".join(
        f"{t['address']}  had {Decimal(t['balance_wei']) / WEI_PER_ETH} ETH, sent "
        f"{Decimal(t['sent_wei']) / WEI_PER_ETH} ETH{'  tx ' + t['tx'] if t['tx'] else ''}" for t in transfers))
