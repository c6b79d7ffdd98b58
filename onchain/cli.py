"""``cvm-cli onchain``: the registry's verdict on evidence, before anyone spends gas on it.

::

    cvm-cli onchain verify snp --report R [--vcek LEAF] [--ask I] [--ark ROOT] [--golden G] [--at ISO8601]
    cvm-cli onchain verify azure --hcl-report H [--vcek ...] [--ask ...] [--ark ...]
                                 [--quote ATTEST --quote-sig SIG --pcrs PCRS.json --nonce HEX]
                                 [--golden G] [--at ISO8601]
    cvm-cli onchain verify evidence EVIDENCE.json --nonce HEX [--golden G] [--at ISO8601]
        (all three: [--rpc URL --registry ADDR [--key SOURCE | --from ADDR] [--yes]] [--crl FILE | --kds-crl]
                    [--dev-root ARK.pem] [--kds [--cache-dir D] [--kds-url U]] [--json])

The inputs are those of ``cvm-cli verify`` (offchain/cli/verify.py), and so are ``--dev-root``,
``--kds``/``--cache-dir``/``--kds-url``, ``--crl``/``--kds-crl`` and the certificate sources. The
verdict is the contract's, and asking for it never writes to a chain you name:

* with ``--rpc URL --registry ADDR`` the deployed registry is asked with ``eth_call``. The
  registry verifies a report only under a leaf certificate it has cached; when it lacks one of the
  chain's certificates, they are registered on a **throwaway fork** of that chain (anvil
  ``--fork-url``, stopped afterwards) and the verdict is the fork's: the same contract, the same
  state, nothing sent to the chain at ``--rpc``. Only ``--key SOURCE`` (or ``--from ADDR``, an
  unlocked account of that node) registers them on the chain itself, which is a transaction that
  costs gas: the command says so and asks, or takes ``--yes``. The golden measurement must be
  published there.
* without them an anvil is started on a free port (``--at`` sets its clock with ``--timestamp``), a
  registry is deployed pinned to AMD's roots (and ``--dev-root``), the certificates are registered
  and the golden measurement published, and anvil is stopped afterwards.

Then ``verifyReport`` (bare report, or Azure without a quote) or ``verifyEvidence`` runs as a call
and its gas is estimated. ``--crl``/``--kds-crl`` check the chain against the ARK's revocation list
off chain first (the registry knows a revocation only once its owner records it with ``cvm-cli
contract certificate revoke``). The output is ``cvm-cli verify``'s (offchain/cli/output.py):
``{"ok", "reason", "product", "signer", "report", ...}`` with ``--json`` (product and signer by
name), plus ``gas``, ``chain`` (``embedded``, ``rpc`` or ``fork``) and ``certificates``
(``cached``, ``registered`` or ``registered-on-fork``); a short summary without it. Exit codes as
every command's (0 accepted, 1 rejected, 2 unreadable or malformed input, 3 transient failure).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.abi.hcl import HclReport
from offchain.abi.keccak import keccak256
from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.cli.output import emit, fail, verdict
from offchain.cli.params import INPUT_FILE
from offchain.cli.verify import (
    azure_inputs,
    evidence_inputs,
    expected_extra_data,
    parse_hex_option,
    read_pcrs_file,
    require_quote_group,
    snp_inputs,
)
from offchain.errors import ChainError, CvmAttestError, ParseError, PolicyError, Reason, RequestError, Violation
from offchain.evidence import EvidenceBundle
from offchain.inputs import read_binary
from offchain.policy.golden import PRODUCT_BITS, SIGNER_BITS, GoldenMeasurement
from offchain.trust.certs import CertificateSet, parse_certificate, read_file
from offchain.trust.kds import KDS_BASE_URL, KdsClient, UrllibFetcher
from offchain.trust.resolve import ChainCertificates, resolve_chain
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, TrustRoots, spki_fingerprint
from offchain.verify.chain import verify_chain
from offchain.verify.revocation import CrlSource, check_revocation, crl_from_file, crl_from_kds
from onchain.anvil import AnvilProcess
from onchain.calldata import EvidenceCalldata, certificate_der, evidence_struct
from onchain.client import ZERO32, CertKind, RegistryClient, checked_address, require_contract
from onchain.keys import load_account
from onchain.rpc import connect

PathArg = INPUT_FILE
_PRODUCTS = {code: product for product, code in PRODUCT_BITS.items()}
_SIGNERS = {code: signer for signer, code in SIGNER_BITS.items()}


@dataclass
class _Result:
    """What the command learnt, printed whatever the outcome."""

    gas: int | None = None
    report: SnpReport | None = None
    product: Product | None = None
    signer: SignerKind | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Options:
    rpc: str | None
    registry: str | None
    sender: str | None
    account: LocalAccount | None
    yes: bool
    at: datetime | None
    golden: GoldenMeasurement | None
    dev_root: x509.Certificate | None
    kds: KdsClient | None
    revocation: CrlSource | None


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--rpc", metavar="URL", help="JSON-RPC of a chain with a deployed registry (with --registry)."),
        click.option("--registry", metavar="ADDR", help="Address of the deployed CvmRegistry (with --rpc)."),
        click.option("--key", "key_source", metavar="SOURCE",
                     help="Register missing certificates on the chain at --rpc from this key (a transaction: asks"
                     " first, or --yes). Without it, or --from, a throwaway fork registers them."),
        click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="File holding the --key keystore's password (otherwise prompted)."),
        click.option("--from", "sender", metavar="ADDR",
                     help="Like --key, from an unlocked account of the node at --rpc."),
        click.option("--yes", is_flag=True, help="Register missing certificates with --key/--from without asking."),
        click.option("--at", "at", metavar="ISO8601", help="Chain time of the embedded anvil (default: now, UTC)."),
        click.option("--golden", type=PathArg, help="Golden measurement JSON (published if the chain is embedded)."),
        click.option("--dev-root", "dev_root", type=PathArg, help="Also pin this development ARK (PEM or DER)."),
        click.option("--kds", is_flag=True, help="Fetch missing AMD certificates from AMD KDS."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="On-disk KDS cache."),
        click.option("--kds-url", default=KDS_BASE_URL, show_default=True, help="KDS base URL (a mirror)."),
        click.option("--crl", "crl_path", type=PathArg, help="Check the chain against this ARK CRL first (off chain)."),
        click.option("--kds-crl", is_flag=True, help="Check the chain against the ARK's current CRL from KDS first."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object (cvm-cli verify's schema)."),
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
    key_source: str | None,
    password_file: Path | None,
    sender: str | None,
    yes: bool,
    at: str | None,
    golden: Path | None,
    dev_root: Path | None,
    kds: bool,
    cache_dir: Path | None,
    kds_url: str,
    crl_path: Path | None,
    kds_crl: bool,
    as_json: bool,
) -> _Options:
    if (rpc is None) != (registry is None):
        raise ParseError(Reason.INPUT_INVALID, "--rpc and --registry go together")
    if rpc is not None and at is not None:
        raise ParseError(Reason.INPUT_INVALID, "--at sets the embedded chain's clock; a chain at --rpc has its own")
    if rpc is None and (sender is not None or key_source is not None):
        raise ParseError(Reason.INPUT_INVALID, "--key and --from register certificates on the chain at --rpc;"
                         " the embedded chain needs neither")
    if sender is not None and key_source is not None:
        raise ParseError(Reason.INPUT_INVALID, "--key and --from are alternatives: give one")
    if cache_dir is not None and not (kds or kds_crl):
        raise ParseError(Reason.INPUT_INVALID, "--cache-dir only makes sense with --kds or --kds-crl")
    if crl_path is not None and kds_crl:
        raise ParseError(Reason.INPUT_INVALID, "--crl and --kds-crl are alternatives: give one")
    if registry is not None:
        checked_address(registry, "--registry")
    if sender is not None:
        checked_address(sender, "--from")
    ark = None
    if dev_root is not None:
        try:
            ark = parse_certificate(read_file(dev_root))
            TrustRoots().with_dev_root(ark)
        except ParseError as exc:
            if exc.reason is Reason.INPUT_UNREADABLE:
                raise
            raise ParseError(Reason.INPUT_INVALID, f"--dev-root: {exc.detail}") from None
    client = KdsClient(UrllibFetcher(), base_url=kds_url, cache_dir=cache_dir) if kds or kds_crl else None
    revocation = None
    if crl_path is not None:
        revocation = crl_from_file(crl_path)
    elif kds_crl and client is not None:
        revocation = crl_from_kds(client)
    return _Options(
        rpc=rpc,
        registry=registry,
        sender=sender,
        account=None if key_source is None else load_account(key_source, password_file),
        yes=yes,
        at=_parse_time(at),
        golden=None if golden is None else GoldenMeasurement.from_file(golden),
        dev_root=ark,
        kds=client if kds else None,
        revocation=revocation,
    )


def _missing(client: RegistryClient, chain: ChainCertificates) -> list[str]:
    """The subjects of the chain's certificates the registry has not cached (ARK first)."""
    return [
        cert.subject.rfc4514_string()
        for cert in (chain.ark, chain.intermediate, chain.leaf)
        if client.certificate_of(keccak256(certificate_der(cert))).kind is CertKind.NONE
    ]


def _confirm_write(options: _Options, missing: list[str], who: str) -> None:
    """Say loudly that registering is a transaction on the chain at --rpc; ask unless --yes."""
    click.echo(f"WARNING: the registry at {options.registry} lacks {len(missing)} certificate(s) of this chain"
               f" ({'; '.join(missing)}); registering them is a transaction from {who} on {options.rpc} that costs"
               " gas. Without --key/--from a throwaway fork would register them instead.", err=True)
    if options.yes:
        return
    if not sys.stdin.isatty():
        raise RequestError(Reason.INPUT_INVALID, "registering certificates on the chain needs confirmation: give"
                           " --yes, or leave out --key/--from to verify on a throwaway fork")
    if not click.confirm("Send the transaction(s)?", default=False, err=True):
        raise RequestError(Reason.INPUT_INVALID, "not confirmed: nothing was sent")


@contextmanager
def _registry(options: _Options, chain: ChainCertificates, result: _Result) -> Iterator[RegistryClient]:
    """The registry to ask, with the chain's certificates registered: the deployed one at --rpc (or a
    throwaway fork of it when certificates are missing and no sender is named), or a fresh one on an
    embedded anvil."""
    if options.rpc is not None and options.registry is not None:
        w3 = connect(options.rpc)
        require_contract(w3, options.registry)
        client = RegistryClient(w3, options.registry, sender=options.sender, account=options.account)
        missing = _missing(client, chain)
        if not missing:
            result.extra.update(chain="rpc", certificates="cached")
            yield client
            return
        if client.sender is not None:
            _confirm_write(options, missing, client.sender)
            result.extra.update(chain="rpc", certificates="registered")
            yield client
            return
        with AnvilProcess(extra_args=("--fork-url", options.rpc)) as fork:
            fork_w3 = connect(fork.url)
            result.extra.update(chain="fork", certificates="registered-on-fork",
                                fork_block=int(fork_w3.eth.block_number))
            yield RegistryClient(fork_w3, options.registry, sender=str(fork_w3.eth.accounts[0]))
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
        result.extra.update(chain="embedded", certificates="registered")
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


def _check_revocation(options: _Options, chain: ChainCertificates, result: _Result) -> None:
    """With --crl/--kds-crl: the chain verified off chain and checked against the ARK's CRL."""
    if options.revocation is None:
        return
    roots = TrustRoots() if options.dev_root is None else TrustRoots().with_dev_root(options.dev_root)
    now = options.at or datetime.now(timezone.utc)
    verified = verify_chain(chain.leaf, chain.intermediate, chain.ark, roots=roots, now=now)
    check_revocation(verified, options.revocation(verified, now), now)
    result.extra["revocation"] = "checked"


def _golden_id(options: _Options, result: _Result) -> bytes:
    if options.golden is None:
        return ZERO32
    golden_id = options.golden.canonical_id()
    result.extra["golden_id"] = "0x" + golden_id.hex()
    return golden_id


def _run(result: _Result, as_json: bool, body: Callable[[], None]) -> None:
    """Run ``body``; print cvm-cli verify's verdict (with ``gas`` and where it was asked) and exit."""
    try:
        body()
    except CvmAttestError as exc:
        extra: dict[str, Any] = {"gas": result.gas, **result.extra}
        if isinstance(exc, ChainError) and "error" in exc.context:
            extra["error"] = exc.context["error"]
        payload = verdict(ok=False, error=exc, product=result.product, report=result.report,
                          signer=None if result.signer is None else result.signer.value, extra=extra)
        fail(exc, as_json=as_json, payload=payload)
    payload = verdict(ok=True, product=result.product, signer=None if result.signer is None else result.signer.value,
                      report=result.report, extra={"gas": result.gas, **result.extra})
    emit(payload, as_json=as_json, human=_human(result))


def _human(result: _Result) -> str:
    where = {"embedded": "a registry on a throwaway local chain", "rpc": "the registry at --rpc",
             "fork": "the registry at --rpc, on a throwaway fork"}[result.extra["chain"]]
    product = result.product.value if result.product else "?"
    signer = result.signer.value.upper() if result.signer else "?"
    lines = [f"ACCEPTED by {where}: genuine AMD SEV-SNP evidence ({product}, {signer})", f"  gas          {result.gas}"]
    if result.extra["certificates"] == "registered-on-fork":
        lines.append(f"  certificates registered on the fork (block {result.extra['fork_block']}); nothing was sent")
    if "golden_id" in result.extra:
        lines.append(f"  golden       {result.extra['golden_id']}")
    if not result.extra.get("fresh", False):
        lines.append("  freshness    none: a bare report proves no freshness")
    if "revocation" in result.extra:
        lines.append("  revocation   neither the intermediate nor the leaf is on the ARK's current CRL")
    return "\n".join(lines)


def _record(result: _Result, product: int, signer: int, report_hash: bytes) -> None:
    result.product, result.signer = _PRODUCTS[product], _SIGNERS[signer]
    result.extra["report_hash"] = "0x" + report_hash.hex()


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
    found = client.verify_report(*args)
    _record(result, found.product, found.signer, found.report_hash)


def _verify_evidence(
    client: RegistryClient, golden_id: bytes, extra_data: bytes, evidence: EvidenceCalldata, result: _Result
) -> None:
    args = (golden_id, extra_data, evidence.as_tuple())
    result.gas = client.estimate_gas("verifyEvidence", *args)
    found = client.verify_evidence(golden_id, extra_data, evidence)
    _record(result, found.product, found.signer, found.report_hash)
    result.extra["ak_key_keccak"] = "0x" + found.ak_key_keccak.hex()


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
        result.report = report = SnpReport.from_bytes(read_binary(report_path, "--report"))
        explicit = CertificateSet.from_files([p for p in (vcek, ask, ark) if p is not None])
        chain = resolve_chain(_certificates(options, explicit), report, kds=options.kds)
        _check_revocation(options, chain, result)
        with _registry(options, chain, result) as client:
            golden_id = _golden_id(options, result)
            leaf_id = _register(client, chain, result)
            _verify_bare_report(client, report, leaf_id, golden_id, b"", options, result)

    _run(result, bool(raw["as_json"]), body)


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
    require_quote_group(quote_path, sig_path, pcrs_path, nonce, as_json=bool(raw["as_json"]))
    result = _Result()

    def body() -> None:
        options = _build_options(**raw)
        hcl = HclReport.from_bytes(read_binary(hcl_path, "--hcl-report"))
        result.report = hcl.snp_report
        explicit = CertificateSet.from_files([p for p in (vcek, ask, ark) if p is not None])
        chain = resolve_chain(_certificates(options, explicit), hcl.snp_report, kds=options.kds)
        evidence, expected = None, b""
        if quote_path is not None and sig_path is not None and pcrs_path is not None and nonce is not None:
            expected = parse_hex_option(nonce, "--nonce")
            evidence = evidence_struct(
                report=hcl.snp_report,
                leaf=chain.leaf,
                attest=read_binary(quote_path, "--quote"),
                signature=read_binary(sig_path, "--quote-sig"),
                pcrs=read_pcrs_file(pcrs_path),
                hcl=hcl,
            )
        _check_revocation(options, chain, result)
        with _registry(options, chain, result) as client:
            golden_id = _golden_id(options, result)
            leaf_id = _register(client, chain, result)
            if evidence is None:
                _verify_bare_report(client, hcl.snp_report, leaf_id, golden_id, hcl.runtime_data, options, result)
            else:
                result.extra["fresh"] = True
                _verify_evidence(client, golden_id, expected, evidence, result)

    _run(result, bool(raw["as_json"]), body)


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
        result.report = bundle.snp_report
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
        _check_revocation(options, chain, result)
        with _registry(options, chain, result) as client:
            golden_id = _golden_id(options, result)
            _register(client, chain, result)  # the evidence names the leaf by its id (keccak256 of its DER)
            result.extra["fresh"] = True
            _verify_evidence(client, golden_id, expected, evidence, result)

    _run(result, bool(raw["as_json"]), body)
