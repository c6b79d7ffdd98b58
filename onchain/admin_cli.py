"""``cvm-cli contract`` and ``cvm-cli golden``: what a registry's owner runs.

::

    cvm-cli contract deploy --rpc URL [--amd-roots | --no-amd-roots] [--dev-root ARK.pem] --key SOURCE [--json]
    cvm-cli contract certificate show (ID | --cert FILE) --rpc URL --registry ADDR [--json]
    cvm-cli contract certificate revoke (ID | --cert FILE) --rpc URL --registry ADDR --key SOURCE [--json]
    cvm-cli contract root show|pin|unpin (--ark ARK.pem | --amd PRODUCT) --rpc URL --registry ADDR [--key SOURCE] [--json]
    cvm-cli contract owner show --rpc URL --registry ADDR [--json]
    cvm-cli contract owner transfer NEW_OWNER --rpc URL --registry ADDR --key SOURCE [--json]
    cvm-cli contract owner accept --rpc URL --registry ADDR --key SOURCE [--json]
    cvm-cli contract activator add|remove ADDR --rpc URL --registry ADDR --key SOURCE [--json]
    cvm-cli contract activator show ADDR --rpc URL --registry ADDR [--json]
    cvm-cli golden publish --rpc URL --registry ADDR (--from-agent URL | --file G.json) --key SOURCE [--json]
    cvm-cli golden revoke ID --rpc URL --registry ADDR --key SOURCE [--json]
    cvm-cli golden show ID --rpc URL --registry ADDR [--json]
    cvm-cli golden predict --base G.json (--update ARCHIVE.zip | --workload DIR) [--name N] [--out FILE] [--json]

``--key`` is a keystore file (password from ``--password-file`` or a prompt) or ``env:NAME``; never
the key itself (see onchain/keys.py). Errors print ``[reason] message`` (or JSON with ``--json``)
and exit 1 (rejected or reverted), 2 (usage, unreadable input) or 3 (the RPC node is down).

What cannot be undone (``certificate revoke``, ``root unpin``, ``owner transfer``, ``golden
revoke``) asks for confirmation on a terminal and, elsewhere, needs ``--yes``; ``--dry-run``
simulates the transaction from the key's address (``eth_estimateGas``: a revert is reported with its
reason) and sends nothing.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.abi.jsontext import loads_bounded
from offchain.cli.output import guarded, stacked
from offchain.errors import ChainError, ParseError, Reason, RequestError
from offchain.files import write_atomically
from offchain.abi.workload import WORKLOAD_PCR, measure_directory
from offchain.policy.golden import GoldenMeasurement
from offchain.abi.keccak import keccak256
from offchain.abi.snp_report import Product
from offchain.trust.certs import parse_certificate, read_file, to_der
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, PinnedRoot, TrustRoots
from onchain.calldata import PRODUCT_CODES
from onchain.client import CertKind, RegistryClient, TxResult, checked_address, require_contract
from onchain.deploy import deploy_registry
from onchain.keys import key_options, load_account
from onchain.rpc import connect
from workload.archive import measure_archive
from workload.compose import ComposeRules, check_workload_dir

PathArg = click.Path(dir_okay=False, path_type=Path)
MAX_GOLDEN_BYTES = 1024 * 1024


def _print(payload: dict[str, Any], as_json: bool, human: str) -> None:
    click.echo(json.dumps(payload, sort_keys=True) if as_json else human)


def _id32(text: str, what: str) -> bytes:
    raw = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise ParseError(Reason.INPUT_INVALID, f"a {what} id is 32 bytes of hex, got {text!r}")
    return value


def _golden_id(text: str) -> bytes:
    return _id32(text, "golden")


rpc_option = click.option("--rpc", required=True, help="JSON-RPC URL of the chain.")
registry_option = click.option("--registry", required=True, help="CvmRegistry address.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
confirm_options = stacked(
    click.option("--dry-run", is_flag=True, help="Simulate the transaction from the key's address; send nothing."),
    click.option("--yes", is_flag=True, help="Do not ask for confirmation (this cannot be undone)."),
)


def _confirmed(client: RegistryClient, fn: str, args: tuple[Any, ...], what: str, *, dry_run: bool, yes: bool,
               as_json: bool, **facts: Any) -> bool:
    """Whether to send ``fn(*args)``: ``--dry-run`` simulates it and prints what would happen (False);
    otherwise the owner confirms (a prompt on a terminal, ``--yes`` elsewhere)."""
    if dry_run:
        gas = client.estimate_gas(fn, *args)
        _print({"dry_run": True, "function": fn, "from": client.sender, "registry": client.address, "gas": gas,
                **facts}, as_json, f"dry run: {what} would succeed from {client.sender} (gas {gas}); nothing was sent")
        return False
    if yes:
        return True
    prompt = f"{what} on the registry {client.address} from {client.sender}: this cannot be undone. Send?"
    if not click.get_text_stream("stdin").isatty():
        raise RequestError(Reason.INPUT_INVALID, f"{what} cannot be undone: confirm with --yes (or see what would be"
                           " sent with --dry-run)")
    if not click.confirm(prompt, default=False, err=True):
        raise RequestError(Reason.INPUT_INVALID, "not confirmed: nothing was sent")
    return True


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
    ark = _certificate_file(dev_root, "--dev-root") if dev_root is not None else None
    account = load_account(key_source, password_file)
    client = deploy_registry(connect(rpc), account=account, amd_roots=amd_roots, dev_root=ark)
    _print({"address": client.address, "owner": account.address, "amd_roots": amd_roots,
            "dev_root": dev_root is not None}, as_json, f"CvmRegistry deployed at {client.address}")


#: The options of a command the owner signs, and of one anybody may read with.
owner_tx = stacked(rpc_option, registry_option, key_options, json_option, guarded())
reader = stacked(rpc_option, registry_option, json_option, guarded())


def _tx_payload(tx: TxResult, **fields: Any) -> dict[str, Any]:
    return {**fields, "tx": tx.tx_hash, "gas": tx.gas_used}


def _client(rpc: str, registry: str, *, account: LocalAccount | None = None) -> RegistryClient:
    """The registry at ``registry`` on ``rpc``: ``input.invalid`` (exit 2) for what is not an address,
    checked before anything connects; ``chain.no_contract`` if nothing is deployed there."""
    checked_address(registry, "--registry")
    w3 = connect(rpc)
    require_contract(w3, registry)
    return RegistryClient(w3, registry, account=account)


def _owner_client(rpc: str, registry: str, key_source: str, password_file: Path | None) -> RegistryClient:
    return _client(rpc, registry, account=load_account(key_source, password_file))


# --- certificates: what the registry caches, and revoking one (e.g. an ASK on AMD's CRL) ---------


@contract.group("certificate")
def certificate() -> None:
    """Show or revoke a certificate the registry has cached (by id, or from its file)."""


def _certificate_file(path: Path, option: str) -> x509.Certificate:
    """A certificate the operator named: unreadable stays unreadable, anything else is a usage error."""
    try:
        return parse_certificate(read_file(path))
    except ParseError as exc:
        if exc.reason is Reason.INPUT_UNREADABLE:
            raise
        raise ParseError(Reason.INPUT_INVALID, f"{option}: {exc.detail}") from None


def _certificate_id(cert_id: str | None, cert: Path | None) -> bytes:
    """The registry's id of a certificate: keccak256 of its DER (the id given, or computed from --cert)."""
    if (cert_id is None) == (cert is None):
        raise RequestError(Reason.INPUT_INVALID, "give exactly one of a certificate ID and --cert FILE")
    if cert is not None:
        return keccak256(to_der(_certificate_file(cert, "--cert")))
    return _id32(cert_id or "", "certificate")


certificate_source = stacked(
    click.argument("cert_id", required=False, metavar="[ID]"),
    click.option("--cert", type=PathArg, help="The certificate itself (DER or PEM) instead of its id."),
)


@certificate.command("show")
@certificate_source
@reader
def certificate_show(cert_id: str | None, cert: Path | None, rpc: str, registry: str, as_json: bool) -> None:
    """What the registry holds for a certificate: kind, product, validity, issuer, revoked."""
    cid = _certificate_id(cert_id, cert)
    info = _client(rpc, registry).certificate_of(cid)
    products = {code: product for product, code in PRODUCT_CODES.items()}
    product = products.get(info.product)
    payload = {"certificate_id": "0x" + cid.hex(), "kind": info.kind.name.lower(), "revoked": info.revoked,
               "product": product.value if product else None, "not_before": info.not_before,
               "not_after": info.not_after, "issuer": "0x" + info.issuer.hex()}
    if info.kind is CertKind.NONE:
        human = f"0x{cid.hex()}: not registered"
    else:
        state = "REVOKED" if info.revoked else "valid"
        human = (f"0x{cid.hex()}: {info.kind.name} ({payload['product']}), {state}, "
                 f"chain valid {info.not_before}..{info.not_after}, issuer 0x{info.issuer.hex()}")
    _print(payload, as_json, human)


@certificate.command("revoke")
@certificate_source
@confirm_options
@owner_tx
def certificate_revoke(cert_id: str | None, cert: Path | None, dry_run: bool, yes: bool, rpc: str, registry: str,
                       key_source: str, password_file: Path | None, as_json: bool) -> None:
    """Revoke a cached certificate (owner only): nothing under it verifies any more."""
    cid = _certificate_id(cert_id, cert)
    client = _owner_client(rpc, registry, key_source, password_file)
    if not _confirmed(client, "revokeCertificate", (cid,), f"revoking certificate 0x{cid.hex()}", dry_run=dry_run,
                      yes=yes, as_json=as_json, certificate_id="0x" + cid.hex()):
        return
    tx = client.revoke_certificate(cid)
    _print(_tx_payload(tx, certificate_id="0x" + cid.hex()), as_json, f"certificate 0x{cid.hex()} revoked")


# --- pinned roots ----------------------------------------------------------------------------------


@contract.group("root")
def root() -> None:
    """Show, pin or unpin an ARK (AMD's, by product, or a development ARK from its file)."""


root_source = stacked(
    click.option("--ark", type=PathArg, help="The ARK certificate (DER or PEM)."),
    click.option("--amd", type=click.Choice([p.value for p in Product]), help="AMD's ARK of this product line."),
)


def _root(ark: Path | None, amd: str | None) -> PinnedRoot:
    if (ark is None) == (amd is None):
        raise RequestError(Reason.INPUT_INVALID, "give exactly one of --ark FILE and --amd PRODUCT")
    if amd is not None:
        product = Product(amd)
        return PinnedRoot(AMD_ARK_SPKI_SHA256[product], product)
    certificate = _certificate_file(ark, "--ark")  # type: ignore[arg-type]
    pinned = TrustRoots().lookup(certificate)
    if pinned is not None:
        return pinned
    try:
        return next(iter(TrustRoots.empty().with_dev_root(certificate)))
    except ParseError as exc:
        raise ParseError(Reason.INPUT_INVALID, f"--ark: {exc.detail}") from None


@root.command("show")
@root_source
@reader
def root_show(ark: Path | None, amd: str | None, rpc: str, registry: str, as_json: bool) -> None:
    """Whether the registry has this ARK pinned (by its key hash)."""
    pin = _root(ark, amd)
    pinned = _client(rpc, registry).root_product(pin.fingerprint) != 0
    _print({"key_hash": "0x" + pin.fingerprint.hex(), "product": pin.product.value, "pinned": pinned}, as_json,
           f"ARK 0x{pin.fingerprint.hex()} ({pin.product.value}): {'pinned' if pinned else 'not pinned'}")


@root.command("pin")
@root_source
@owner_tx
def root_pin(ark: Path | None, amd: str | None, rpc: str, registry: str, key_source: str,
             password_file: Path | None, as_json: bool) -> None:
    """Pin an ARK (owner only): certificates under it can then be registered."""
    _change_root(_root(ark, amd), _owner_client(rpc, registry, key_source, password_file), as_json, pin=True)


@root.command("unpin")
@root_source
@confirm_options
@owner_tx
def root_unpin(ark: Path | None, amd: str | None, dry_run: bool, yes: bool, rpc: str, registry: str, key_source: str,
               password_file: Path | None, as_json: bool) -> None:
    """Unpin an ARK (owner only): nothing under it verifies any more."""
    pin = _root(ark, amd)
    client = _owner_client(rpc, registry, key_source, password_file)
    if _confirmed(client, "unpinRoot", (pin.fingerprint,), f"unpinning ARK 0x{pin.fingerprint.hex()} ({pin.product.value})",
                  dry_run=dry_run, yes=yes, as_json=as_json, key_hash="0x" + pin.fingerprint.hex()):
        _change_root(pin, client, as_json, pin=False)


def _change_root(root: PinnedRoot, client: RegistryClient, as_json: bool, *, pin: bool) -> None:
    tx = client.pin_root(root.product, root.fingerprint) if pin else client.unpin_root(root.fingerprint)
    _print(_tx_payload(tx, key_hash="0x" + root.fingerprint.hex(), product=root.product.value), as_json,
           f"ARK 0x{root.fingerprint.hex()} ({root.product.value}) {'pinned' if pin else 'unpinned'}")


# --- ownership (two steps: the new owner accepts, e.g. a multisig) ------------------------------------


@contract.group("owner")
def owner() -> None:
    """Show the registry's owner, or hand it over in two steps (transfer, then accept)."""


@owner.command("show")
@reader
def owner_show(rpc: str, registry: str, as_json: bool) -> None:
    """The current owner and the pending one (zero address when none)."""
    client = _client(rpc, registry)
    current, pending = client.owner(), client.pending_owner()
    _print({"owner": current, "pending_owner": pending}, as_json, f"owner {current}, pending {pending}")


@owner.command("transfer")
@click.argument("new_owner")
@confirm_options
@owner_tx
def owner_transfer(new_owner: str, dry_run: bool, yes: bool, rpc: str, registry: str, key_source: str,
                   password_file: Path | None, as_json: bool) -> None:
    """Offer ownership to NEW_OWNER (owner only); it takes effect when NEW_OWNER accepts."""
    if not Web3.is_address(new_owner):
        raise RequestError(Reason.INPUT_INVALID, f"{new_owner!r} is not an address")
    pending = Web3.to_checksum_address(new_owner)
    client = _owner_client(rpc, registry, key_source, password_file)
    if not _confirmed(client, "transferOwnership", (pending,), f"offering ownership to {pending}", dry_run=dry_run,
                      yes=yes, as_json=as_json, pending_owner=pending):
        return
    tx = client.transfer_ownership(new_owner)
    _print(_tx_payload(tx, pending_owner=pending), as_json, f"ownership offered to {pending}; it must accept")


@owner.command("accept")
@owner_tx
def owner_accept(rpc: str, registry: str, key_source: str, password_file: Path | None, as_json: bool) -> None:
    """Accept an offered ownership (run with the pending owner's key)."""
    client = _owner_client(rpc, registry, key_source, password_file)
    tx = client.accept_ownership()
    _print(_tx_payload(tx, owner=client.owner()), as_json, f"{client.owner()} now owns the registry")


# --- SVSM activators: the keys whose credential-activation statements registerCvmSvsm accepts ------


@contract.group("activator")
def activator() -> None:
    """Name, unname or show an activator (a signer of SVSM activation statements)."""


def _activator_address(text: str) -> str:
    if not Web3.is_address(text):
        raise RequestError(Reason.INPUT_INVALID, f"{text!r} is not an address")
    return str(Web3.to_checksum_address(text))


@activator.command("show")
@click.argument("address")
@reader
def activator_show(address: str, rpc: str, registry: str, as_json: bool) -> None:
    """Whether the owner named ADDRESS an activator."""
    checked = _activator_address(address)
    allowed = _client(rpc, registry).is_activator(checked)
    _print({"activator": checked, "allowed": allowed}, as_json, f"{checked} is {'' if allowed else 'not '}an activator")


def _set_activator(address: str, allowed: bool, rpc: str, registry: str, key_source: str,
                   password_file: Path | None, as_json: bool) -> None:
    checked = _activator_address(address)
    tx = _owner_client(rpc, registry, key_source, password_file).set_activator(checked, allowed)
    _print(_tx_payload(tx, activator=checked, allowed=allowed), as_json,
           f"{checked} {'named' if allowed else 'no longer'} an activator")


@activator.command("add")
@click.argument("address")
@owner_tx
def activator_add(address: str, rpc: str, registry: str, key_source: str, password_file: Path | None,
                  as_json: bool) -> None:
    """Name ADDRESS an activator (owner only): the registry trusts it to have run real credential activations."""
    _set_activator(address, True, rpc, registry, key_source, password_file, as_json)


@activator.command("remove")
@click.argument("address")
@owner_tx
def activator_remove(address: str, rpc: str, registry: str, key_source: str, password_file: Path | None,
                     as_json: bool) -> None:
    """Unname ADDRESS (owner only): its statements stop registering CVMs; attested ones stay until revoked."""
    _set_activator(address, False, rpc, registry, key_source, password_file, as_json)


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
    client = _client(rpc, registry, account=account)
    golden_id = client.publish_golden(doc)
    if save is not None:
        _write_document(save, doc)
    tx = client.last_tx
    _print({"golden_id": "0x" + golden_id.hex(), "tx": tx.tx_hash if tx else None,
            "gas": tx.gas_used if tx else None},
           as_json, f"golden measurement 0x{golden_id.hex()} published")


@golden.command("revoke")
@click.argument("golden_id")
@confirm_options
@rpc_option
@registry_option
@key_options
@json_option
@guarded()
def revoke(golden_id: str, dry_run: bool, yes: bool, rpc: str, registry: str, key_source: str,
           password_file: Path | None, as_json: bool) -> None:
    """Revoke a golden measurement (owner only): every CVM attested under it stops being attested."""
    gid = _golden_id(golden_id)
    client = _client(rpc, registry, account=load_account(key_source, password_file))
    if not _confirmed(client, "revokeGolden", (gid,), f"revoking golden measurement 0x{gid.hex()}", dry_run=dry_run,
                      yes=yes, as_json=as_json, golden_id="0x" + gid.hex()):
        return
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
    client = _client(rpc, registry)
    info = client.golden_of(gid)
    if not info.published:
        raise ChainError(Reason.REGISTRY_GOLDEN_NOT_FOUND, f"golden 0x{gid.hex()} is not published on {registry}",
                         golden_id="0x" + gid.hex())
    checks = client.report_checks_of(gid).to_json()
    payload = {"golden_id": "0x" + gid.hex(), "published": info.published, "revoked": info.revoked,
               "lifetime_seconds": info.lifetime, "binding": info.binding, "pcr_mask": info.pcr_mask,
               "checks": checks}
    state = "revoked" if info.revoked else "published"
    checked = f", report checks {', '.join(sorted(checks))}" if checks else ""
    _print(payload, as_json,
           f"0x{gid.hex()}: {state}, lifetime {info.lifetime}s, PCR mask {info.pcr_mask:#x}{checked}")


def _write_document(path: Path, doc: GoldenMeasurement) -> None:
    try:
        write_atomically(path, (json.dumps(doc.to_json(), indent=2, sort_keys=True) + "\n").encode())
    except OSError as exc:
        raise ParseError(Reason.INPUT_INVALID, f"cannot write {path}: {exc.strerror or exc}") from None


@golden.command("predict")
@click.option("--base", type=PathArg, required=True,
              help="The golden measurement of the image and platform (e.g. the one published now).")
@click.option("--update", "archive", type=PathArg, help="The archive you will POST to /update-workload.")
@click.option("--workload", type=click.Path(file_okay=False, path_type=Path),
              help="A workload directory (images.txt, docker-compose.yml, config/) as the agent measures it.")
@click.option("--name", help="Name of the predicted document (default: the base's).")
@click.option("--out", type=PathArg, help="Write the predicted golden measurement here (JSON).")
@json_option
@guarded()
def predict(base: Path, archive: Path | None, workload: Path | None, name: str | None, out: Path | None,
            as_json: bool) -> None:
    """Predict the golden measurement of a workload, offline, before it runs.

    Every rule of --base is kept; PCR23 and its event list are computed by the agent's own code, and
    a docker-compose.yml the agent would refuse (it gives a container the TPM, the SEV guest device,
    the host's namespaces or the agent's state; a real CVM's directories) is refused here too.
    --update: the CVM described by --base (with its PCR23 event list, as GET /golden-measurement
    serves it) after applying this archive: PCR23 is not reset by an update, so the archive's items
    extend the current list. --workload: a CVM that boots with this workload (PCR23 from zero).
    Publish the result before applying the update: the updated CVM can then be registered under it
    as soon as it is measured, and nobody relies on the updated CVM's own description.
    """
    if (archive is None) == (workload is None):
        raise RequestError(Reason.INPUT_INVALID, "give exactly one of --update ARCHIVE and --workload DIR")
    doc = GoldenMeasurement.from_file(base)
    if archive is not None:
        if doc.pcr23_events is None:
            raise ParseError(Reason.INPUT_INVALID, "--update needs a --base that lists the PCR23 events it extends"
                                                   " (GET /golden-measurement of the running CVM has them)")
        events = [*doc.pcr23_events, *measure_archive(archive)]
    else:
        if not workload.is_dir():  # type: ignore[union-attr]
            raise ParseError(Reason.INPUT_UNREADABLE, f"{workload} is not a directory", path=str(workload))
        check_workload_dir(workload, ComposeRules())  # type: ignore[arg-type]
        events = measure_directory(workload)  # type: ignore[arg-type]
    predicted = doc.with_workload(events, name=name)
    if out is not None:
        _write_document(out, predicted)
    golden_id = "0x" + predicted.canonical_id().hex()
    pcr23 = predicted.pinned_pcrs()[WORKLOAD_PCR].hex()
    payload = {"golden_id": golden_id, "pcr23": pcr23, "events": len(events), "golden": predicted.to_json()}
    _print(payload, as_json, f"predicted golden measurement {golden_id}: PCR23 {pcr23} after {len(events)} events"
           + (f", written to {out}" if out is not None else ""))
