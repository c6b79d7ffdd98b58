"""``cvm-cli upload <VM-IP|URL> <API-TOKEN> [--workload DIR]`` (deploy.upload), also as the seed's
``cvm-cli <VM-IP> <API-TOKEN>``: the root command line hands a first word that is an address to it."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from offchain.cli.output import EXIT_REJECTED, exit_code_for
from offchain.errors import CvmAttestError, ParseError, Reason, RequestError
from offchain.evidence import EvidenceBundle
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import CertificateSet, parse_certificate, read_file
from offchain.trust.kds import KDS_BASE_URL, KdsClient, UrllibFetcher
from offchain.trust.roots import TrustRoots

from deploy.upload import Verifier, upload

PathArg = click.Path(dir_okay=False, path_type=Path)


def _token(text: str) -> str:
    """The API token: as given, ``@FILE`` (read from a file), or ``env:NAME``; a token on the command
    line is visible to other users of this machine (``ps``), the other two are not."""
    if text.startswith("@"):
        try:
            value = Path(text[1:]).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ParseError(Reason.INPUT_UNREADABLE, f"cannot read the token file {text[1:]}: {exc}") from None
    elif text.startswith("env:"):
        value = os.environ.get(text[4:], "").strip()
        if not value:
            raise ParseError(Reason.INPUT_UNREADABLE, f"${text[4:]} is not set")
    else:
        value = text
    if not value:
        raise RequestError(Reason.INPUT_INVALID, "the API token is empty")
    return value


def _onchain_check(rpc: str, registry: str, golden_id: str, dev_root: CertificateSet,
                   kds: KdsClient | None) -> Callable[[EvidenceBundle, bytes], Mapping[str, Any]]:
    """The registry's ``verifyEvidence`` view (an ``eth_call``: nothing is written) for ``golden_id``,
    with the sealing form's extraData. The chain's certificates must already be registered there
    (they are once any CVM on that chip and TCB registered)."""
    from onchain.calldata import certificate_der, certificate_id, evidence_struct
    from onchain.client import RegistryClient, checked_address, require_contract
    from onchain.rpc import connect

    from offchain.trust.resolve import resolve_chain

    address = checked_address(registry)
    text = golden_id[2:] if golden_id.startswith("0x") else golden_id
    try:
        gid = bytes.fromhex(text)
    except ValueError:
        gid = b""
    if len(gid) != 32:
        raise RequestError(Reason.INPUT_INVALID, f"--golden-id {golden_id!r} is not 32 bytes of hex")

    def check(bundle: EvidenceBundle, expected: bytes) -> Mapping[str, Any]:
        w3 = connect(rpc)
        require_contract(w3, address)
        client = RegistryClient(w3, address)
        info = client.golden_of(gid)
        if not info.published or info.revoked:
            raise CvmAttestError(Reason.REGISTRY_GOLDEN_NOT_FOUND if not info.published else Reason.REGISTRY_GOLDEN_REVOKED,
                                 f"golden 0x{gid.hex()} is {'revoked' if info.published else 'not published'} on "
                                 f"{address}")
        chain = resolve_chain(bundle.certificate_set().over(dev_root), bundle.snp_report, kds=kds)
        evidence = evidence_struct(report=bundle.snp_report, leaf=certificate_id(certificate_der(chain.leaf)),
                                   attest=bundle.quote_attest, signature=bundle.quote_signature, pcrs=bundle.pcrs,
                                   ak_public=bundle.ak_public, hcl=bundle.hcl_report)
        verdict = client.verify_evidence(gid, expected, evidence)
        return {"registry": address, "golden_id": "0x" + gid.hex(), "report_hash": "0x" + verdict.report_hash.hex()}

    return check


@click.command("upload")
@click.argument("target", metavar="VM-IP|URL")
@click.argument("token", metavar="API-TOKEN")
@click.option("--workload", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The workload directory: docker-compose.yml, config/, images.txt, images/*.tar, secrets/.")
@click.option("--golden", type=PathArg, help="The golden measurement the CVM must meet now (JSON).")
@click.option("--registry", help="Also (or instead) require the registry's verifyEvidence view to accept the CVM.")
@click.option("--golden-id", help="With --registry: the golden id to verify under (default: --golden's id).")
@click.option("--rpc", default="http://127.0.0.1:8545", show_default=True, help="With --registry: JSON-RPC URL.")
@click.option("--dev-root", type=PathArg, help="Also trust this development ARK (the sim platform's); never AMD's.")
@click.option("--kds", is_flag=True, help="Fetch missing AMD certificates from AMD KDS.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="On-disk KDS cache.")
@click.option("--accept-host-vtpm", is_flag=True,
              help="Seal secrets/ even to a CVM with the direct binding, whose vTPM the host may emulate and whose "
              "quote it could then forge (AWS, Google Cloud): the host can read them (docs/trust-model.md).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def upload_command(target: str, token: str, workload: Path, golden: Path | None, registry: str | None,
                   golden_id: str | None, rpc: str, dev_root: Path | None, kds: bool, cache_dir: Path | None,
                   accept_host_vtpm: bool, as_json: bool) -> None:
    """Verify the CVM at VM-IP (port 8000) or URL, then send it the workload and its sealed secrets.

    The evidence is fetched with a fresh nonce and verified against --golden (and/or the registry's
    view for --golden-id) before anything is sent: an unverified machine gets nothing. secrets/ is
    sealed (HPKE) to the key the verified quote binds, never sent in the clear. Prints the new PCR23
    and the golden id the updated CVM will have (what cvm-cli golden predict --update gives).
    API-TOKEN: the token, @FILE or env:NAME. Exit 0 uploaded, 1 refused or failed, 2 unusable input.
    """
    def say(text: str) -> None:
        if not as_json:
            click.echo(f"      {text}", err=True)

    try:
        roots = TrustRoots()
        dev = CertificateSet()
        if dev_root is not None:
            ark = parse_certificate(read_file(dev_root))
            roots, dev = roots.with_dev_root(ark), CertificateSet(ark=ark)
        document = None if golden is None else GoldenMeasurement.from_file(golden)
        client = KdsClient(UrllibFetcher(), base_url=KDS_BASE_URL, cache_dir=cache_dir) if kds else None
        check = None
        if registry is not None:
            chosen = golden_id or (None if document is None else "0x" + document.canonical_id().hex())
            if chosen is None:
                raise RequestError(Reason.INPUT_INVALID, "--registry needs --golden-id or --golden")
            check = _onchain_check(rpc, registry, chosen, dev, client)
        elif golden_id is not None:
            raise RequestError(Reason.INPUT_INVALID, "--golden-id only makes sense with --registry")
        verifier = Verifier(roots=roots, golden=document, kds=client, check_onchain=check,
                            accept_host_vtpm=accept_host_vtpm)
        result = upload(target, _token(token), workload, verifier, progress=say, now=dt.datetime.now(dt.timezone.utc))
    except CvmAttestError as exc:
        _fail(exc, as_json)
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
        return
    click.echo(f"uploaded to {result.agent} (CVM {result.cvm_address}, {result.secrets} secret file(s) sealed)")
    click.echo(f"PCR23      {result.pcr23.hex()}")
    if result.golden_id is not None:
        click.echo(f"golden id  0x{result.golden_id.hex()} (publish it before registering the updated CVM)")
    else:
        click.echo("golden id  unknown without the golden document: cvm-cli golden predict --base G.json --update ...")


def _fail(error: CvmAttestError, as_json: bool) -> None:
    sent_nothing = error.reason is not Reason.UPLOAD_FAILED
    if as_json:
        click.echo(json.dumps({"ok": False, "reason": error.reason.value, "detail": error.detail,
                               "sent": not sent_nothing, "context": error.context}, sort_keys=True, default=str))
    else:
        click.echo(f"[{error.reason.value}] {error.detail}", err=True)
        for violation in error.context.get("violations", ()):
            click.echo(f"  [{violation['reason']}] {violation['field']}: expected {violation['expected']}, got "
                       f"{violation['actual']}", err=True)
        if sent_nothing:
            click.echo("nothing was sent to the CVM", err=True)
    raise SystemExit(exit_code_for(error) if error.reason is not Reason.UPLOAD_FAILED else EXIT_REJECTED)
