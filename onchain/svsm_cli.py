"""``cvm-cli svsm register``: the activator's side of an SVSM attestation on chain.

    cvm-cli svsm register AGENT-URL --rpc URL --registry ADDR --golden G.json --key ACTIVATOR
                          [--dev-root ARK.pem] [--lifetime SECONDS] [--json]

A contract cannot keep a credential's secret, so the registry takes the credential activation as a
statement signed by an activator the owner named (docs/registry.md, ``registerCvmSvsm``). This
command is that activator: it fetches the agent's on-chain evidence for a recent block, runs the
activation itself (offchain.svsm: MakeCredential for the AK under the SVSM's EK, ``POST
/svsm/activate``), verifies the whole evidence off chain against the golden measurement, then signs
``svsm_activation_digest`` for the EK's and the AK's names with ``--key`` and sends
``registerCvmSvsm`` (registering the chain's certificates first, as the relayer does).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from pathlib import Path

import click
from cryptography import x509

from offchain.cli.output import guarded
from offchain.errors import ChainError, ParseError, Reason, VerificationError
from offchain.evidence import EvidenceBundle, OnchainNonce, onchain_expected_extra_data, verify_evidence
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.svsm import activate, agent_request
from offchain.trust.certs import CertRole, parse_certificate, read_file, to_der
from offchain.trust.roots import TrustRoots
from onchain.admin_cli import _client, _print
from onchain.activation import activation_statement, svsm_evidence
from onchain.keys import key_options, load_account

PathArg = click.Path(dir_okay=False, path_type=Path)


@click.group("svsm")
def svsm() -> None:
    """SVSM vTPM attestations on chain (the activator's commands)."""


@svsm.command("register")
@click.argument("agent_url", metavar="AGENT-URL")
@click.option("--rpc", required=True, help="JSON-RPC URL of the chain.")
@click.option("--registry", required=True, help="CvmRegistry address.")
@click.option("--golden", type=PathArg, required=True, help="The svsm golden measurement the CVM registers under.")
@click.option("--dev-root", type=PathArg, help="Also trust this development ARK off chain (the sim's).")
@click.option("--lifetime", type=click.IntRange(min=60, max=86400), default=600, show_default=True,
              help="Seconds the activation statement stays valid.")
@key_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded()
def register(agent_url: str, rpc: str, registry: str, golden: Path, dev_root: Path | None, lifetime: int,
             key_source: str, password_file: Path | None, as_json: bool) -> None:
    """Run the credential activation against AGENT-URL, vouch for it with --key (an activator the
    registry's owner named) and register the CVM with registerCvmSvsm."""
    account = load_account(key_source, password_file)
    client = _client(rpc, registry, account=account)
    if not client.is_activator(account.address):
        raise ChainError(Reason.REGISTRY_ACTIVATOR_UNKNOWN, f"{account.address} is not an activator of {client.address}: "
                         "its owner names one with cvm-cli contract activator add")
    document = GoldenMeasurement.from_file(golden)
    if document.binding is not Binding.SVSM:
        raise ParseError(Reason.INPUT_INVALID, f"--golden has the {document.binding.value} binding; registerCvmSvsm "
                         "takes an svsm golden measurement")
    golden_id = document.canonical_id()
    chain_id = client.w3.eth.chain_id
    block = client.w3.eth.get_block("latest")
    number, block_hash = int(block["number"]), bytes(block["hash"])
    query = urllib.parse.urlencode({"chain_id": chain_id, "registry": client.address, "block_number": number,
                                    "block_hash": "0x" + block_hash.hex(), "golden_id": "0x" + golden_id.hex()})
    bundle = EvidenceBundle.from_json(agent_request(f"{agent_url.rstrip('/')}/onchain/collaterals?{query}"))
    expected = onchain_expected_extra_data(bundle, chain_id=chain_id, registry=client.address, block_hash=block_hash)
    activation = activate(agent_url, bundle, expected)
    roots = TrustRoots()
    if dev_root is not None:
        roots = roots.with_dev_root(parse_certificate(read_file(dev_root)))
    verify_evidence(bundle, expected_extra_data=expected, golden=document, roots=roots,
                    now=dt.datetime.now(dt.timezone.utc), svsm_activation=activation)
    if bundle.svsm is None or bundle.cvm_address is None or not isinstance(bundle.nonce, OnchainNonce):
        raise VerificationError(Reason.EVIDENCE_MALFORMED, "not on-chain svsm evidence")
    certs = bundle.certificate_set()
    chain = [certs.get(CertRole.ARK), certs.get(CertRole.ASK) or certs.get(CertRole.ASVK), certs.leaf]
    if any(c is None for c in chain):
        raise ChainError(Reason.CHAIN_INCOMPLETE, "the agent's evidence lacks ARK, ASK/ASVK or VCEK/VLEK")
    ark, intermediate, leaf = (c for c in chain if isinstance(c, x509.Certificate))
    leaf_id = client.register_chain(to_der(ark), to_der(intermediate), to_der(leaf))
    expiry, signature = activation_statement(account, chain_id, client.address, bundle, lifetime_s=lifetime)
    evidence = svsm_evidence(bundle, leaf_id)
    cvm = "0x" + bundle.cvm_address.hex()
    tx = client.register_cvm_svsm(golden_id, cvm, number, evidence, expiry, signature, bundle.nonce.consent)
    _print({"cvm_address": cvm, "golden_id": "0x" + golden_id.hex(), "tx": tx.tx_hash, "gas": tx.gas_used,
            "activation_expiry": expiry}, as_json,
           f"{cvm} registered under svsm golden 0x{golden_id.hex()} (activated by {account.address}, gas {tx.gas_used})")
