"""``cvm-cli onchain``: the registry's verdict on evidence, before anyone spends gas on it.

::

    cvm-cli onchain verify snp --report R [--vcek LEAF] [--ask I] [--ark ROOT] [--golden G] [--at ISO8601]
    cvm-cli onchain verify azure --hcl-report H [--vcek ...] [--ask ...] [--ark ...]
                                 [--quote ATTEST --quote-sig SIG --pcrs PCRS.json --nonce HEX]
                                 [--golden G] [--at ISO8601]
    cvm-cli onchain verify evidence EVIDENCE.json --nonce HEX [--golden G] [--at ISO8601]

The inputs are those of ``cvm-cli verify`` (offchain/cli/verify.py), and so are ``--dev-root``,
``--kds``/``--cache-dir``/``--kds-url`` and the certificate sources. The verdict is the contract's:

* with ``--rpc URL --registry ADDR`` the deployed registry is asked (certificates it lacks are
  registered from ``--from`` ADDR, an unlocked account of that node; the golden measurement must be
  published there);
* without them an anvil is started on a free port (``--at`` sets its clock with ``--timestamp``), a
  registry is deployed pinned to AMD's roots (and ``--dev-root``), the certificates are registered
  and the golden measurement published, and anvil is stopped afterwards.

Then ``verifyReport`` (bare report, or Azure without a quote) or ``verifyEvidence`` runs as a call
and its gas is estimated. One JSON object is printed: ``{"ok", "reason", "gas", ...}``; exit codes
as offchain/cli/output.py (0 accepted, 1 rejected, 2 usage or unreadable input).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from web3 import Web3

from offchain.abi.hcl import HclReport
from offchain.abi.snp_report import SnpReport
from offchain.cli.verify import (
    azure_inputs,
    evidence_inputs,
    expected_extra_data,
    parse_hex_option,
    read_pcrs_file,
    require_quote_group,
    snp_inputs,
)
from offchain.cli.output import emit, fail
from offchain.errors import ChainError, CvmAttestError, ParseError, PolicyError, Reason, Violation
from offchain.evidence import EvidenceBundle
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import CertificateSet, parse_certificate, read_file
from offchain.trust.kds import KDS_BASE_URL, KdsClient, UrllibFetcher
from offchain.trust.resolve import ChainCertificates, resolve_chain
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, TrustRoots, spki_fingerprint
from onchain.anvil import AnvilProcess
from onchain.calldata import EvidenceCalldata, certificate_der, evidence_struct
from onchain.client import ZERO32, RegistryClient

PathArg = click.Path(dir_okay=False, path_type=Path)


@dataclass
class _Result:
    """What the command learnt, printed whatever the outcome."""

    gas: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Options:
    rpc: str | None
    registry: str | None
    sender: str | None
    at: datetime | None
    golden: GoldenMeasurement | None
    dev_root: x509.Certificate | None
    kds: KdsClient | None


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--rpc", metavar="URL", help="JSON-RPC of a chain with a deployed registry (with --registry)."),
        click.option("--registry", metavar="ADDR", help="Address of the deployed CvmRegistry (with --rpc)."),
        click.option("--from", "sender", metavar="ADDR", help="Unlocked account that registers missing certificates."),
        click.option("--at", "at", metavar="ISO8601", help="Chain time of the embedded anvil (default: now, UTC)."),
        click.option("--golden", type=PathArg, help="Golden measurement JSON (published if the chain is embedded)."),
        click.option("--dev-root", "dev_root", type=PathArg, help="Also pin this development ARK (PEM or DER)."),
        click.option("--kds", is_flag=True, help="Fetch missing AMD certificates from AMD KDS."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="On-disk KDS cache."),
        click.option("--kds-url", default=KDS_BASE_URL, show_default=True, help="KDS base URL (a mirror)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print one JSON object: the only output form, accepted like cvm-cli verify's."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ParseError(Reason.INPUT_INVALID, f"--at {text!r} is not an ISO 8601 time") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment






def _build_options(
    *,
    rpc: str | None,
    registry: str | None,
    sender: str | None,
    at: str | None,
    golden: Path | None,
    dev_root: Path | None,
    kds: bool,
    cache_dir: Path | None,
    kds_url: str,
    as_json: bool = True,
) -> _Options:
    if (rpc is None) != (registry is None):
        raise ParseError(Reason.INPUT_INVALID, "--rpc and --registry go together")
    if rpc is not None and at is not None:
        raise ParseError(Reason.INPUT_INVALID, "--at sets the embedded chain's clock; a chain at --rpc has its own")
    if rpc is None and sender is not None:
        raise ParseError(Reason.INPUT_INVALID, "--from names an account of the chain at --rpc")
    if cache_dir is not None and not kds:
        raise ParseError(Reason.INPUT_INVALID, "--cache-dir only makes sense with --kds")
    ark = None
    if dev_root is not None:
        try:
            ark = parse_certificate(read_file(dev_root))
            TrustRoots().with_dev_root(ark)
        except ParseError as exc:
            if exc.reason is Reason.INPUT_UNREADABLE:
                raise
            raise ParseError(Reason.INPUT_INVALID, f"--dev-root: {exc.detail}") from None
    return _Options(
        rpc=rpc,
        registry=registry,
        sender=sender,
        at=_parse_time(at),
        golden=None if golden is None else GoldenMeasurement.from_file(golden),
        dev_root=ark,
        kds=KdsClient(UrllibFetcher(), base_url=kds_url, cache_dir=cache_dir) if kds else None,
    )


@contextmanager
def _registry(options: _Options) -> Iterator[RegistryClient]:
    """The registry to ask: the deployed one at --rpc, or a fresh one on an embedded anvil."""
    if options.rpc is not None and options.registry is not None:
        w3 = Web3(Web3.HTTPProvider(options.rpc, request_kwargs={"timeout": 60}))
        try:
            Web3.to_checksum_address(options.registry)
        except ValueError:
            raise ParseError(Reason.INPUT_INVALID, f"--registry {options.registry!r} is not an address") from None
        yield RegistryClient(w3, options.registry, sender=options.sender)
        return
    timestamp = None if options.at is None else int(options.at.timestamp())
    with AnvilProcess(timestamp=timestamp) as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        owner = str(w3.eth.accounts[0])
        client = RegistryClient.deploy(w3, owner=owner, sender=owner)
        for product, key_hash in AMD_ARK_SPKI_SHA256.items():
            client.pin_root(product, key_hash)
        if options.dev_root is not None:
            dev = TrustRoots.empty().with_dev_root(options.dev_root)
            for root in dev:
                if root.fingerprint not in AMD_ARK_SPKI_SHA256.values():
                    client.pin_root(root.product, root.fingerprint)
        if options.golden is not None:
            client.publish_golden(options.golden)
        yield client


def _register(client: RegistryClient, chain: ChainCertificates, result: _Result) -> bytes:
    """Register the chain (what the registry already caches costs nothing) and return the leaf's id."""
    result.extra["root_key_hash"] = "0x" + spki_fingerprint(chain.ark).hex()
    return client.register_chain(
        certificate_der(chain.ark), certificate_der(chain.intermediate), certificate_der(chain.leaf)
    )


def _certificates(
    options: _Options, explicit: CertificateSet, fallback: CertificateSet | None = None
) -> CertificateSet:
    available = explicit if fallback is None else explicit.over(fallback)
    if options.dev_root is not None:
        available = available.over(CertificateSet(ark=options.dev_root))
    return available


def _golden_id(options: _Options, result: _Result) -> bytes:
    if options.golden is None:
        return ZERO32
    golden_id = options.golden.canonical_id()
    result.extra["golden_id"] = "0x" + golden_id.hex()
    return golden_id


def _run(result: _Result, body: Callable[[], None]) -> None:
    """Run ``body``; print ``{"ok", "reason", "gas", ...}`` and exit 0, 1 or 2."""
    try:
        body()
    except CvmAttestError as exc:
        payload: dict[str, Any] = {"ok": False, "reason": exc.reason.value, "detail": exc.detail, "gas": result.gas}
        if isinstance(exc, ChainError) and "error" in exc.context:
            payload["error"] = exc.context["error"]
        payload.update(result.extra)
        fail(exc, as_json=True, payload=payload)
    payload = {"ok": True, "reason": None, "gas": result.gas}
    payload.update(result.extra)
    emit(payload, as_json=True, human="")


def _verify_bare_report(
    client: RegistryClient,
    report: SnpReport,
    leaf_id: bytes,
    golden_id: bytes,
    runtime: bytes,
    options: _Options,
    result: _Result,
) -> None:
    """verifyReport: no quote, so no freshness (``fresh: false``); a golden that requires a quote
    refuses it here, since that rule lives in the document, not in the registry."""
    result.extra["fresh"] = False
    if options.golden is not None and options.golden.require_quote:
        raise PolicyError([Violation(Reason.POLICY_QUOTE_REQUIRED, "require_quote", True, False)])
    args = (report.to_bytes(), leaf_id, golden_id, runtime)
    result.gas = client.estimate_gas("verifyReport", *args)
    verdict = client.verify_report(*args)
    result.extra.update(product=verdict.product, signer=verdict.signer, report_hash="0x" + verdict.report_hash.hex())


def _verify_evidence(
    client: RegistryClient, golden_id: bytes, extra_data: bytes, evidence: EvidenceCalldata, result: _Result
) -> None:
    args = (golden_id, extra_data, evidence.as_tuple())
    result.gas = client.estimate_gas("verifyEvidence", *args)
    verdict = client.verify_evidence(golden_id, extra_data, evidence)
    result.extra.update(
        product=verdict.product,
        signer=verdict.signer,
        report_hash="0x" + verdict.report_hash.hex(),
        ak_hash="0x" + verdict.ak_hash.hex(),
    )


@click.group("onchain", context_settings={"help_option_names": ["-h", "--help"]})
def onchain() -> None:
    """The on-chain registry: its verdict on evidence (a dry run before spending gas)."""


@onchain.group("verify")
def verify() -> None:
    """Ask a CvmRegistry (deployed, or on an embedded anvil) whether evidence verifies."""


@verify.command("snp")
@snp_inputs
@_options
def verify_snp(report_path: Path, vcek: Path | None, ask: Path | None, ark: Path | None, **raw: Any) -> None:
    """A bare SEV-SNP report: verifyReport (chain, signature, leaf binding, golden report rules)."""
    result = _Result()

    def body() -> None:
        options = _build_options(**raw)
        report = SnpReport.from_bytes(read_file(report_path))
        explicit = CertificateSet.from_files([p for p in (vcek, ask, ark) if p is not None])
        chain = resolve_chain(_certificates(options, explicit), report, kds=options.kds)
        with _registry(options) as client:
            golden_id = _golden_id(options, result)
            leaf_id = _register(client, chain, result)
            _verify_bare_report(client, report, leaf_id, golden_id, b"", options, result)

    _run(result, body)


@verify.command("azure")
@azure_inputs
@_options
def verify_azure(
    hcl_path: Path,
    vcek: Path | None,
    ask: Path | None,
    ark: Path | None,
    quote_path: Path | None,
    sig_path: Path | None,
    pcrs_path: Path | None,
    nonce: str | None,
    **raw: Any,
) -> None:
    """An Azure CVM's HCL report, and its vTPM quote when given: verifyEvidence (or verifyReport without a quote)."""
    require_quote_group(quote_path, sig_path, pcrs_path, nonce, as_json=True)
    result = _Result()

    def body() -> None:
        options = _build_options(**raw)
        hcl = HclReport.from_bytes(read_file(hcl_path))
        explicit = CertificateSet.from_files([p for p in (vcek, ask, ark) if p is not None])
        chain = resolve_chain(_certificates(options, explicit), hcl.snp_report, kds=options.kds)
        evidence, expected = None, b""
        if quote_path is not None and sig_path is not None and pcrs_path is not None and nonce is not None:
            expected = parse_hex_option(nonce, "--nonce")
            evidence = evidence_struct(
                report=hcl.snp_report,
                leaf=chain.leaf,
                attest=read_file(quote_path),
                signature=read_file(sig_path),
                pcrs=read_pcrs_file(pcrs_path),
                hcl=hcl,
            )
        with _registry(options) as client:
            golden_id = _golden_id(options, result)
            leaf_id = _register(client, chain, result)
            if evidence is None:
                _verify_bare_report(client, hcl.snp_report, leaf_id, golden_id, hcl.runtime_data, options, result)
            else:
                result.extra["fresh"] = True
                _verify_evidence(client, golden_id, expected, evidence, result)

    _run(result, body)


@verify.command("evidence")
@evidence_inputs
@_options
def verify_evidence_cmd(
    evidence_path: Path,
    nonce: str | None,
    chain_id: int | None,
    block_hash: str | None,
    vcek: Path | None,
    ask: Path | None,
    ark: Path | None,
    **raw: Any,
) -> None:
    """A cvm-attest evidence bundle: verifyEvidence with the extraData of the form you name.

    --nonce HEX for off-chain evidence; --chain-id N --block-hash HEX for on-chain evidence, whose
    quote must bind the registry at --rpc/--registry (the one that would register it).
    """
    result = _Result()

    def body() -> None:
        options = _build_options(**raw)
        bundle = EvidenceBundle.from_file(evidence_path)
        explicit = CertificateSet.from_files([p for p in (vcek, ask, ark) if p is not None])
        available = _certificates(options, explicit, bundle.certificate_set())
        chain = resolve_chain(available, bundle.snp_report, kds=options.kds)
        expected = expected_extra_data(bundle, nonce=nonce, chain_id=chain_id, block_hash=block_hash,
                                       registry=raw["registry"] if chain_id is not None or block_hash is not None
                                       else None)
        evidence = evidence_struct(
            report=bundle.snp_report,
            leaf=chain.leaf,
            attest=bundle.quote_attest,
            signature=bundle.quote_signature,
            pcrs=bundle.pcrs,
            ak_public=bundle.ak_public,
            hcl=bundle.hcl_report,
        )
        with _registry(options) as client:
            golden_id = _golden_id(options, result)
            _register(client, chain, result)  # the evidence names the leaf by its id (keccak256 of its DER)
            result.extra["fresh"] = True
            _verify_evidence(client, golden_id, expected, evidence, result)

    _run(result, body)
