"""``cvm-cli contract`` and ``cvm-cli golden``: what a registry's owner runs.

::

    cvm-cli contract deploy --rpc URL [--amd-roots | --no-amd-roots] [--dev-root ARK.pem] --key SOURCE [--json]
    cvm-cli golden publish --rpc URL --registry ADDR (--from-agent URL | --file G.json) --key SOURCE [--json]
    cvm-cli golden revoke ID --rpc URL --registry ADDR --key SOURCE [--json]
    cvm-cli golden show ID --rpc URL --registry ADDR [--json]

``--key`` is a keystore file (password from ``--password-file`` or a prompt) or ``env:NAME``; never
the key itself (see onchain/keys.py). Errors print ``[reason] message`` (or JSON with ``--json``)
and exit 1 (rejected or reverted) or 2 (usage, unreadable input).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from offchain.abi.jsontext import loads_bounded
from offchain.cli.output import guarded
from offchain.errors import ParseError, Reason, RequestError
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import parse_certificate, read_file
from onchain.client import RegistryClient
from onchain.deploy import deploy_registry
from onchain.keys import key_options, load_account
from onchain.rpc import connect

PathArg = click.Path(dir_okay=False, path_type=Path)
MAX_GOLDEN_BYTES = 1024 * 1024


def _print(payload: dict[str, Any], as_json: bool, human: str) -> None:
    click.echo(json.dumps(payload, sort_keys=True) if as_json else human)


def _golden_id(text: str) -> bytes:
    raw = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise ParseError(Reason.INPUT_INVALID, f"a golden id is 32 bytes of hex, got {text!r}")
    return value


rpc_option = click.option("--rpc", required=True, help="JSON-RPC URL of the chain.")
registry_option = click.option("--registry", required=True, help="CvmRegistry address.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.group("contract")
def contract() -> None:
    """Deploy and administer a CvmRegistry."""


@contract.command("deploy")
@rpc_option
@click.option("--amd-roots/--no-amd-roots", default=True, show_default=True,
              help="Pin AMD's ARKs for Milan, Genoa and Turin.")
@click.option("--dev-root", type=PathArg, help="Also pin this development ARK (the simulated platform's).")
@key_options
@json_option
@guarded()
def deploy(rpc: str, amd_roots: bool, dev_root: Path | None, key_source: str, password_file: Path | None,
           as_json: bool) -> None:
    """Deploy a registry owned by --key and pin its roots; prints its address."""
    if not amd_roots and dev_root is None:
        raise RequestError(Reason.INPUT_INVALID, "a registry with no pinned root can attest nothing: "
                                                 "keep --amd-roots or give --dev-root")
    ark = parse_certificate(read_file(dev_root)) if dev_root is not None else None
    account = load_account(key_source, password_file)
    client = deploy_registry(connect(rpc), account=account, amd_roots=amd_roots, dev_root=ark)
    _print({"address": client.address, "owner": account.address, "amd_roots": amd_roots,
            "dev_root": dev_root is not None}, as_json, f"CvmRegistry deployed at {client.address}")


@click.group("golden")
def golden() -> None:
    """Publish, revoke and show golden measurements."""


def _fetch_golden(agent: str) -> GoldenMeasurement:
    url = agent.rstrip("/") + "/golden-measurement"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (operator-given URL)
            body = response.read(MAX_GOLDEN_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise RequestError(Reason.RELAY_AGENT_UNREACHABLE, f"{url}: {exc}") from None
    if len(body) > MAX_GOLDEN_BYTES:
        raise ParseError(Reason.GOLDEN_MALFORMED, f"{url}: golden measurement larger than {MAX_GOLDEN_BYTES}")
    return GoldenMeasurement.from_json(loads_bounded(body, Reason.GOLDEN_MALFORMED))


@golden.command("publish")
@rpc_option
@registry_option
@click.option("--from-agent", "agent", help="Read the golden measurement from a trusted agent's /golden-measurement.")
@click.option("--file", "path", type=PathArg, help="Golden measurement document (JSON).")
@click.option("--save", type=PathArg, help="Also write the published document here (JSON).")
@key_options
@json_option
@guarded()
def publish(rpc: str, registry: str, agent: str | None, path: Path | None, save: Path | None, key_source: str,
            password_file: Path | None, as_json: bool) -> None:
    """Publish a golden measurement (owner only); prints its canonical id."""
    if (agent is None) == (path is None):
        raise RequestError(Reason.INPUT_INVALID, "give exactly one of --from-agent and --file")
    doc = _fetch_golden(agent) if agent is not None else GoldenMeasurement.from_file(path)  # type: ignore[arg-type]
    account = load_account(key_source, password_file)
    client = RegistryClient(connect(rpc), registry, account=account)
    golden_id = client.publish_golden(doc)
    if save is not None:
        save.write_text(json.dumps(doc.to_json(), indent=2, sort_keys=True) + "\n")
    tx = client.last_tx
    _print({"golden_id": "0x" + golden_id.hex(), "tx": tx.tx_hash if tx else None,
            "gas": tx.gas_used if tx else None},
           as_json, f"golden measurement 0x{golden_id.hex()} published")


@golden.command("revoke")
@click.argument("golden_id")
@rpc_option
@registry_option
@key_options
@json_option
@guarded()
def revoke(golden_id: str, rpc: str, registry: str, key_source: str, password_file: Path | None,
           as_json: bool) -> None:
    """Revoke a golden measurement (owner only): every CVM attested under it stops being attested."""
    gid = _golden_id(golden_id)
    client = RegistryClient(connect(rpc), registry, account=load_account(key_source, password_file))
    tx = client.revoke_golden(gid)
    _print({"golden_id": "0x" + gid.hex(), "tx": tx.tx_hash, "gas": tx.gas_used},
           as_json, f"golden measurement 0x{gid.hex()} revoked")


@golden.command("show")
@click.argument("golden_id")
@rpc_option
@registry_option
@json_option
@guarded()
def show(golden_id: str, rpc: str, registry: str, as_json: bool) -> None:
    """Show what the registry holds for a golden measurement."""
    gid = _golden_id(golden_id)
    info = RegistryClient(connect(rpc), registry).golden_of(gid)
    payload = {"golden_id": "0x" + gid.hex(), "published": info.published, "revoked": info.revoked,
               "lifetime_seconds": info.lifetime, "binding": info.binding, "pcr_mask": info.pcr_mask}
    state = "revoked" if info.revoked else ("published" if info.published else "unknown")
    _print(payload, as_json, f"0x{gid.hex()}: {state}, lifetime {info.lifetime}s, PCR mask {info.pcr_mask:#x}")
