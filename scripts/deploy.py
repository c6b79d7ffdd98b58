"""``ape run deploy``: deploy a CvmRegistry from an Ape account, pin AMD's roots, and use it once.

::

    ape run deploy --network ethereum:local:foundry --account TEST::0
    ape run deploy --network <your network> --account <alias> [--no-amd-roots] [--dev-root ARK.pem]
                   [--report REPORT.bin --vcek VCEK.pem]

Deploys EcdsaVerifier, CertificateVerifier, SnpVerifier and CvmRegistry (owned by the account),
pins the ARKs of Milan, Genoa and Turin by the key fingerprints offchain.trust.roots pins (and a
development ARK only when given), then reads every pin back. With ``--report`` and ``--vcek`` it
also registers that chip's chain (the ASK and ARK shipped with cvm-attest complete it) and asks the
registry's ``verifyReport`` view for its verdict. Prints one JSON object: the addresses, the pins,
and the verdict. The same contracts as ``cvm-cli contract deploy`` (docs/registry.md, "Ape").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from ape import project
from ape.api import AccountAPI
from ape.cli import ConnectedProviderCommand, account_option
from cryptography.hazmat.primitives.serialization import Encoding

from offchain.abi.snp_report import SnpReport
from offchain.policy.golden import PRODUCT_BITS
from offchain.trust.certs import CertificateSet, parse_certificate
from offchain.trust.resolve import resolve_chain
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, TrustRoots


@click.command(cls=ConnectedProviderCommand)
@account_option()
@click.option("--amd-roots/--no-amd-roots", default=True, show_default=True, help="Pin AMD's ARKs.")
@click.option("--dev-root", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also pin this development ARK (the simulated platform's).")
@click.option("--report", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An SNP report to have the new registry verify (with --vcek).")
@click.option("--vcek", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Its VCEK (PEM or DER).")
def cli(account: AccountAPI, amd_roots: bool, dev_root: Path | None, report: Path | None, vcek: Path | None) -> None:
    if (report is None) != (vcek is None):
        raise click.UsageError("--report and --vcek go together")
    ecdsa = account.deploy(project.EcdsaVerifier)
    certificates = account.deploy(project.CertificateVerifier)
    verifier = account.deploy(project.SnpVerifier, ecdsa.address, certificates.address)
    registry = account.deploy(project.CvmRegistry, account.address, verifier.address)
    pins = dict(AMD_ARK_SPKI_SHA256) if amd_roots else {}
    if dev_root is not None:
        for root in TrustRoots.empty().with_dev_root(parse_certificate(dev_root.read_bytes())):
            pins.setdefault(root.product, root.fingerprint)
    for product, key_hash in pins.items():
        registry.pinRoot(PRODUCT_BITS[product], key_hash, sender=account)
    out: dict[str, Any] = {
        "registry": registry.address,
        "owner": registry.owner(),
        "pinned": {product.value: int(registry.rootProduct(key_hash)) for product, key_hash in pins.items()},
    }
    if report is not None and vcek is not None:
        parsed = SnpReport.from_bytes(report.read_bytes())
        chain = resolve_chain(CertificateSet.of([parse_certificate(vcek.read_bytes())]), parsed)
        ark, intermediate, leaf = (c.public_bytes(Encoding.DER) for c in (chain.ark, chain.intermediate, chain.leaf))
        ark_id = registry.registerCertificate.call(ark, bytes(32))
        registry.registerCertificate(ark, bytes(32), sender=account)
        intermediate_id = registry.registerCertificate.call(intermediate, ark_id)
        registry.registerCertificate(intermediate, ark_id, sender=account)
        leaf_id = registry.registerCertificate.call(leaf, intermediate_id)
        registry.registerCertificate(leaf, intermediate_id, sender=account)
        verdict = registry.verifyReport(parsed.to_bytes(), leaf_id, bytes(32), b"")
        out["verdict"] = {"product": int(verdict.product), "signer": int(verdict.signer),
                          "report_hash": "0x" + bytes(verdict.reportHash).hex()}
    click.echo(json.dumps(out, sort_keys=True))
