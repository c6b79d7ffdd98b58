"""``cvm-cli secrets``: seal a secret to a CVM the registry attests, without trusting the host or the
relayer (offchain.seal).

    cvm-cli secrets publish-key AGENT-URL --rpc URL --registry ADDR --key KEY [--json]
    cvm-cli secrets seal --to CVM-ADDRESS --rpc URL --registry ADDR [--in FILE|-] [--out FILE|-] [--json]

``publish-key`` carries the agent's sealing key, signed by the CVM's own key, into the registry
(``publishSealingKey``; anyone may send it, the registry checks the signature against the attested
CVM). ``seal`` reads that key from the registry, refuses a CVM that is not attested now, and writes
a sealed box the CVM's workload opens with the agent's ``POST /unseal``.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
from pathlib import Path

import click

from offchain.abi.binding import parse_address
from offchain.errors import ChainError, ParseError, Reason
from offchain.files import write_atomically
from offchain.seal import MAX_SEALED_BYTES, SealContext, seal
from offchain.policy.golden import Binding
from onchain.admin_cli import _client, _print, _tx_payload, owner_tx, reader
from onchain.calldata import BINDING_CODES
from onchain.client import AttestationStatus, checked_address
from onchain.demo import http_json
from onchain.keys import load_account

ZERO_KEY = bytes(32)


@click.group("secrets")
def secrets() -> None:
    """Seal secrets to a CVM the registry attests (publish its key, then seal)."""


@secrets.command("publish-key")
@click.argument("agent_url", metavar="AGENT-URL")
@owner_tx
def publish_key(agent_url: str, rpc: str, registry: str, key_source: str, password_file: Path | None,
                as_json: bool) -> None:
    """Record the agent's sealing key in the registry, signed by its attested CVM key (one transaction
    from --key, which needs no role: the registry checks the CVM's signature)."""
    client = _client(rpc, registry, account=load_account(key_source, password_file))
    query = urllib.parse.urlencode({"chain_id": client.w3.eth.chain_id, "registry": client.address})
    try:
        signed = http_json("GET", f"{agent_url.rstrip('/')}/onchain/sealing-key?{query}")
        cvm = str(signed["cvm_address"])
        sealing_key = bytes.fromhex(str(signed["sealing_key"]).removeprefix("0x"))
        signature = bytes.fromhex(str(signed["signature"]).removeprefix("0x"))
    except (OSError, ValueError, KeyError, TypeError, urllib.error.URLError) as exc:
        raise ChainError(Reason.RELAY_AGENT_UNREACHABLE, f"no sealing key from {agent_url}: {exc}") from None
    tx = client.publish_sealing_key(cvm, sealing_key, signature)
    _print(_tx_payload(tx, cvm_address=cvm, sealing_key="0x" + sealing_key.hex()), as_json,
           f"sealing key 0x{sealing_key.hex()} of {cvm} published (gas {tx.gas_used})")


def _read_input(path: str) -> bytes:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_SEALED_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_SEALED_BYTES + 1)
    except OSError as exc:
        raise ParseError(Reason.INPUT_UNREADABLE, f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SEALED_BYTES:
        raise ParseError(Reason.INPUT_INVALID, f"{path} is larger than the {MAX_SEALED_BYTES} bytes a box can hold")
    return data


@secrets.command("seal")
@click.option("--to", "cvm", required=True, help="The CVM's address (attested by the registry).")
@click.option("--accept-host-vtpm", is_flag=True,
              help="Seal even to a CVM attested under a golden measurement with the direct binding, whose vTPM the "
              "host may emulate (AWS, Google Cloud) and whose address attestation it could then forge.")
@click.option("--in", "source", default="-", show_default=True, help="The secret to seal: a file, or - for stdin.")
@click.option("--out", "target", default="-", show_default=True, help="Where the sealed box goes: a file, or -.")
@reader
def seal_command(cvm: str, accept_host_vtpm: bool, source: str, target: str, rpc: str, registry: str,
                 as_json: bool) -> None:
    """Seal --in to the sealing key the registry holds for --to, only while --to is attested, and (unless
    --accept-host-vtpm) only under a golden measurement with the Azure binding, whose vTPM the host cannot
    reach. The box names this chain and registry; the workload opens it with the agent's POST /unseal."""
    address = checked_address(cvm, "--to")
    client = _client(rpc, registry)
    sealing_key, status = client.sealing_key_of(address)
    if status is not AttestationStatus.ATTESTED:
        raise ChainError(Reason.REGISTRY_NOT_ATTESTED, f"{address} is not attested by {client.address} "
                         f"({status.name.lower().replace('_', ' ')}): nothing was sealed", status=status.name)
    golden = client.golden_of(client.attestation_of(address).golden_id)
    if golden.binding != BINDING_CODES[Binding.AZURE] and not accept_host_vtpm:
        raise ChainError(Reason.SEAL_PLATFORM_UNPROTECTED, f"{address} is attested under a golden measurement with "
                         "the direct binding: its vTPM may be the host's, which could have attested an address of its "
                         "own; nothing was sealed (--accept-host-vtpm to accept that; docs/trust-model.md)")
    if sealing_key == ZERO_KEY:
        raise ChainError(Reason.SEAL_KEY_NOT_BOUND, f"{address} has published no sealing key in {client.address}: "
                         "cvm-cli secrets publish-key AGENT-URL first")
    plaintext = _read_input(source)
    context = SealContext.registry(parse_address(address), client.w3.eth.chain_id, parse_address(client.address))
    box = seal(plaintext, sealing_key, context).dumps()
    if target == "-":
        click.echo(box, nl=False)
        return
    try:
        write_atomically(Path(target), box.encode())
    except OSError as exc:
        raise ParseError(Reason.INPUT_INVALID, f"cannot write {target}: {exc.strerror or exc}") from None
    _print({"cvm_address": address, "sealing_key": "0x" + sealing_key.hex(), "out": target, "bytes": len(plaintext)},
           as_json, f"{len(plaintext)} bytes sealed to {address}'s key 0x{sealing_key.hex()}, written to {target}")
