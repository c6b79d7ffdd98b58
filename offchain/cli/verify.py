"""``cvm-cli verify``: the off-chain verifier on the command line.

::

    cvm-cli verify snp --report R [--vcek LEAF] [--ask INTERMEDIATE] [--ark ROOT] [--at ISO8601] [--golden G] [--json]
    cvm-cli verify azure --hcl-report H [--vcek LEAF] [--ask ...] [--ark ...]
                         [--quote ATTEST --quote-sig SIG --pcrs PCRS.json --nonce HEX] [--at ISO8601] [--golden G] [--json]
    cvm-cli verify evidence EVIDENCE.json (--nonce HEX | --chain-id N --registry ADDR --block-hash HEX)
                           [--golden G] [--dev-root ARK.pem] [--at ISO8601] [--json]

The caller, not the evidence, says which nonce form it expects: ``--nonce`` for evidence the agent
gave for a raw nonce (GET /collaterals/{nonce}), ``--chain-id --registry --block-hash`` for on-chain
evidence (GET /onchain/collaterals). A bundle of the other form is ``evidence.nonce_form_mismatch``.

Every command also takes ``--dev-root ARK.pem`` (trust a development ARK, e.g. the simulated
platform's), ``--kds`` with ``--cache-dir DIR`` (let missing certificates come from AMD KDS),
``--crl FILE`` or ``--kds-crl`` (check the chain against the ARK's revocation list, from a file or
from KDS), ``--allow-debug-golden`` (accept a golden measurement that allows debug guests: development
only, refused by default because the host can read a debug guest's memory) and ``--at`` (the
verification time; default: now, UTC). Certificates come from ``--vcek``/``--ask``/
``--ark`` when given, else from the evidence, else from KDS only with ``--kds``; anything still
missing is ``snp.chain.incomplete``. Exit codes and output: offchain.cli.output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from offchain.abi.hcl import HclReport
from offchain.abi.jsontext import loads_bounded
from offchain.abi.snp_report import Product, SnpReport
from offchain.abi.tpm import TpmtSignature
from offchain.svsm import verify_svsm_agent
from offchain.cli.output import emit, fail, stacked, usage_error, verdict
from offchain.cli.params import INPUT_FILE, parse_time
from offchain.errors import CvmAttestError, ParseError, PolicyError, Reason, RequestError
from offchain.inputs import read_binary
from offchain.abi.binding import parse_address
from offchain.evidence import (
    EvidenceBundle,
    offchain_expected_extra_data,
    onchain_expected_extra_data,
    verify_evidence,
)
from offchain.policy.check import check_policy
from offchain.policy.checks import PLATFORM_INFO_BITS, FirmwareMinimum, ReportChecks, report_check_violations
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.trust.certs import (
    CertificateSet,
    CertRole,
    classify,
    common_name,
    load_certificates,
    parse_certificate,
    read_file,
)
from offchain.trust.kds import KDS_BASE_URL, KdsClient, UrllibFetcher
from offchain.trust.resolve import resolve_chain
from offchain.trust.roots import TrustRoots
from offchain.verify.binding import verify_azure_binding
from offchain.verify.chain import VerifiedChain, verify_chain
from offchain.verify.quote import verify_quote
from offchain.verify.report import VerifiedReport, verify_report
from offchain.verify.revocation import CrlSource, check_revocation, crl_from_file, crl_from_kds

PathArg = INPUT_FILE
_REVOCATION_LINE = "  revocation   neither the intermediate nor the leaf is on the ARK's current CRL"
_NOT_FRESH_LINE = ("  freshness    none: a bare report proves no freshness (it may be of any age); a quote over your"
                   " nonce does")


def _freshness(progress: _Progress, fresh: bool) -> None:
    """``fresh`` in the verdict, and a line saying so when it is false."""
    progress.extra["fresh"] = fresh
    if not fresh:
        progress.lines.append(_NOT_FRESH_LINE)


@dataclass
class _Progress:
    """What is known so far, so a rejection can still show the report and the verified product."""

    report: SnpReport | None = None
    product: Product | None = None
    signer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Common:
    as_json: bool
    now: datetime
    roots: TrustRoots
    dev_root: CertificateSet
    golden: GoldenMeasurement | None
    kds: KdsClient | None
    revocation: CrlSource | None
    allow_debug_golden: bool
    #: The report checks of the flags; already merged into ``golden`` when there is one.
    checks: ReportChecks


#: The report-check flags (offchain.policy.checks), by parameter name: the golden's ``checks`` key.
_CHECK_FLAGS = [
    click.option("--report-data", "check_report_data", metavar="HEX",
                 help="REPORT_DATA must be this (up to 64 bytes, zero-padded): a bare report's nonce."),
    click.option("--host-data", "check_host_data", metavar="HEX", help="HOST_DATA must be these 32 bytes."),
    click.option("--id-key-digest", "check_id_key_digest", metavar="HEX", help="ID_KEY_DIGEST must be these 48 bytes."),
    click.option("--author-key-digest", "check_author_key_digest", metavar="HEX",
                 help="AUTHOR_KEY_DIGEST must be these 48 bytes."),
    click.option("--family-id", "check_family_id", metavar="HEX", help="FAMILY_ID must be these 16 bytes."),
    click.option("--image-id", "check_image_id", metavar="HEX", help="IMAGE_ID must be these 16 bytes."),
    click.option("--min-guest-svn", "check_min_guest_svn", type=click.IntRange(0, 0xFFFFFFFF),
                 help="GUEST_SVN must be at least this."),
    click.option("--chip-id", "check_chip_ids", metavar="HEX", multiple=True,
                 help="CHIP_ID must be one of these (64 bytes each; repeat the option)."),
    click.option("--platform-info", "check_platform_info", metavar="BIT=0|1", multiple=True,
                 help=f"A PLATFORM_INFO bit must be set (1) or clear (0): {', '.join(PLATFORM_INFO_BITS)}."),
    click.option("--min-firmware", "check_min_firmware", metavar="MAJOR.MINOR[.BUILD]",
                 help="The firmware's CURRENT API version (and build) must be at least this."),
]


def _flag_checks(raw: dict[str, Any]) -> ReportChecks:
    """The report checks the flags in ``raw`` name (removed from it); ``input.invalid`` for a bad value."""
    values = {key: raw.pop(key) for key in list(raw) if key.startswith("check_")}
    out: dict[str, Any] = {}
    sizes = {"report_data": 64, "host_data": 32, "id_key_digest": 48, "author_key_digest": 48, "family_id": 16,
             "image_id": 16}
    for key, size in sizes.items():
        text = values.get(f"check_{key}")
        if text is not None:
            data = parse_hex_option(text, "--" + key.replace("_", "-"))
            if len(data) > size or (key != "report_data" and len(data) != size):
                raise ParseError(Reason.INPUT_INVALID, f"--{key.replace('_', '-')} is {len(data)} bytes, not {size}")
            out[key] = data.ljust(size, b"\x00")
    if values.get("check_min_guest_svn") is not None:
        out["min_guest_svn"] = values["check_min_guest_svn"]
    if values.get("check_chip_ids"):
        chips = tuple(parse_hex_option(c, "--chip-id") for c in values["check_chip_ids"])
        if any(len(c) != 64 for c in chips):
            raise ParseError(Reason.INPUT_INVALID, "--chip-id is 64 bytes (128 hex digits)")
        out["chip_ids"] = chips
    bits: dict[str, bool] = {}
    for item in values.get("check_platform_info") or ():
        name, _, state = item.partition("=")
        if name not in PLATFORM_INFO_BITS or state not in ("0", "1"):
            raise ParseError(Reason.INPUT_INVALID, f"--platform-info {item!r} is not BIT=0|1 with BIT one of"
                             f" {', '.join(PLATFORM_INFO_BITS)}")
        bits[name] = state == "1"
    if bits:
        out["platform_info"] = tuple(sorted(bits.items(), key=lambda kv: PLATFORM_INFO_BITS[kv[0]]))
    firmware = values.get("check_min_firmware")
    if firmware is not None:
        parts = firmware.split(".")
        if not 2 <= len(parts) <= 3 or not all(p.isdigit() and int(p) < 256 for p in parts):
            raise ParseError(Reason.INPUT_INVALID, f"--min-firmware {firmware!r} is not MAJOR.MINOR[.BUILD]")
        out["min_firmware"] = FirmwareMinimum(*(int(p) for p in parts))
    return ReportChecks(**out)


def standalone_checks(common: _Common, report: SnpReport) -> None:
    """Without a golden measurement, the flags' report checks on their own (PolicyError if broken)."""
    if common.golden is None and not common.checks.is_empty():
        violations = report_check_violations(common.checks, report)
        if violations:
            raise PolicyError(violations)


def _common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--at", "at", metavar="ISO8601", help="Verification time (default: now). Naive times are UTC."),
        click.option("--golden", type=PathArg, help="Golden measurement JSON to validate against."),
        click.option("--dev-root", "dev_root", type=PathArg, help="Also trust this development ARK (PEM or DER)."),
        click.option("--kds", is_flag=True, help="Fetch missing AMD certificates from AMD KDS."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="On-disk KDS cache."),
        click.option("--kds-url", default=KDS_BASE_URL, show_default=True, help="KDS base URL (a mirror)."),
        click.option("--crl", "crl_path", type=PathArg, help="Check the chain against this ARK CRL (DER or PEM)."),
        click.option("--kds-crl", is_flag=True, help="Check the chain against the ARK's CRL fetched from AMD KDS."),
        click.option(
            "--allow-debug-golden",
            is_flag=True,
            help="Accept a golden measurement that allows debug guests (development only: the host can read their memory).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
        *_CHECK_FLAGS,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def parse_hex_option(text: str, option: str) -> bytes:
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise ParseError(Reason.INPUT_INVALID, f"{option} is not hex") from None


def expected_extra_data(
    bundle: EvidenceBundle, *, nonce: str | None, chain_id: int | None, registry: str | None, block_hash: str | None
) -> bytes:
    """The extraData the verifier expects, in the nonce form its options name (never the bundle's).

    ``--nonce`` alone: the off-chain form. ``--chain-id``, ``--registry`` and ``--block-hash``
    together: the on-chain form. Anything else is a usage error naming what is missing.
    """
    onchain = {"--chain-id": chain_id, "--registry": registry, "--block-hash": block_hash}
    given = [name for name, value in onchain.items() if value is not None]
    if nonce is not None:
        if given:
            raise ParseError(Reason.INPUT_INVALID, f"--nonce is for off-chain evidence; {', '.join(given)} for"
                             " on-chain evidence: give one form")
        return offchain_expected_extra_data(bundle, parse_hex_option(nonce, "--nonce"))
    missing = [name for name, value in onchain.items() if value is None]
    if not given:
        raise ParseError(Reason.INPUT_INVALID, "say which evidence you expect: --nonce HEX (off-chain) or"
                         " --chain-id N --registry ADDR --block-hash HEX (on-chain)")
    if missing:
        raise ParseError(Reason.INPUT_INVALID, f"on-chain evidence also needs {', '.join(missing)}")
    assert chain_id is not None and registry is not None and block_hash is not None
    try:
        registry_bytes = parse_address(registry)
    except CvmAttestError:
        raise ParseError(Reason.INPUT_INVALID, f"--registry {registry!r} is not an address") from None
    return onchain_expected_extra_data(
        bundle, chain_id=chain_id, registry=registry_bytes, block_hash=parse_hex_option(block_hash, "--block-hash")
    )


def _common(
    *, at: str | None, golden: Path | None, dev_root: Path | None, kds: bool, cache_dir: Path | None, kds_url: str,
    crl_path: Path | None, kds_crl: bool, allow_debug_golden: bool, as_json: bool, **flags: Any,
) -> _Common:
    if cache_dir is not None and not (kds or kds_crl):
        raise ParseError(Reason.INPUT_INVALID, "--cache-dir only makes sense with --kds or --kds-crl")
    if crl_path is not None and kds_crl:
        raise ParseError(Reason.INPUT_INVALID, "--crl and --kds-crl are alternatives: give one")
    roots = TrustRoots()
    dev = CertificateSet()
    if dev_root is not None:
        try:
            ark = parse_certificate(read_file(dev_root))
            roots = roots.with_dev_root(ark)
        except ParseError as exc:
            if exc.reason is Reason.INPUT_UNREADABLE:
                raise
            raise ParseError(Reason.INPUT_INVALID, f"--dev-root: {exc.detail}") from None
        dev = CertificateSet(ark=ark)
    now = parse_time(at)
    client = KdsClient(UrllibFetcher(), base_url=kds_url, cache_dir=cache_dir) if kds or kds_crl else None
    revocation = None
    if crl_path is not None:
        revocation = crl_from_file(crl_path)
    elif kds_crl and client is not None:
        revocation = crl_from_kds(client)
    checks = _flag_checks(flags)
    document = None if golden is None else GoldenMeasurement.from_file(golden)
    if document is not None and not checks.is_empty():
        document = replace(document, checks=document.checks.merged(checks))
    return _Common(
        as_json=as_json,
        now=now,
        roots=roots,
        dev_root=dev,
        golden=document,
        kds=client if kds else None,
        revocation=revocation,
        allow_debug_golden=allow_debug_golden,
        checks=checks,
    )


#: What each certificate option must hold (first) and what may come with it in the same file (the
#: certificates above it, as AMD's cert_chain.pem holds the ASK and the ARK).
_OPTION_ROLES = {
    "--vcek": ((CertRole.VCEK, CertRole.VLEK), (CertRole.ASK, CertRole.ASVK, CertRole.ARK)),
    "--ask": ((CertRole.ASK, CertRole.ASVK), (CertRole.ARK,)),
    "--ark": ((CertRole.ARK,), ()),
}


def _explicit_certificates(vcek: Path | None, ask: Path | None, ark: Path | None) -> CertificateSet:
    """The certificates of ``--vcek``, ``--ask`` and ``--ark``; an option whose file holds the wrong
    kind (``--ask ark.pem --ark ask.pem``) is ``input.invalid`` naming it, not sorted out silently."""
    certificates = []
    for option, path in (("--vcek", vcek), ("--ask", ask), ("--ark", ark)):
        if path is None:
            continue
        wanted, above = _OPTION_ROLES[option]
        found = load_certificates(path)
        roles = [classify(cert) for cert in found]
        stray = [(cert, role) for cert, role in zip(found, roles) if role not in wanted + above]
        if stray or not any(role in wanted for role in roles):
            cert, role = (stray or list(zip(found, roles)))[0]
            names = " or ".join(r.value.upper() for r in wanted)
            raise RequestError(Reason.INPUT_INVALID, f"{option} {path} holds the {role.value.upper()} certificate "
                               f"(CN={common_name(cert)}), not the {names}: are two options swapped?",
                               option=option, role=role.value)
        certificates += found
    return CertificateSet.of(certificates)


def _run(as_json: bool, progress: _Progress, body: Callable[[], None]) -> None:
    """Run ``body``; print the verdict (accepted, or the error with whatever was learnt before it)."""
    try:
        body()
    except CvmAttestError as exc:
        if progress.product is None and isinstance(exc.context.get("product"), str):
            progress.product = Product(exc.context["product"])
            progress.signer = exc.context.get("signer")
        payload = verdict(
            ok=False, error=exc, product=progress.product, signer=progress.signer, report=progress.report
        )
        fail(exc, as_json=as_json, payload=payload)
    payload = verdict(
        ok=True, product=progress.product, signer=progress.signer, report=progress.report, extra=progress.extra
    )
    emit(payload, as_json=as_json, human=_human(progress))


def _human(progress: _Progress) -> str:
    report = progress.report
    head = f"ACCEPTED: genuine AMD SEV-SNP evidence ({progress.product.value if progress.product else '?'}, "
    head += f"{(progress.signer or '?').upper()})"
    lines = [head]
    if report is not None:
        lines += [
            f"  report       version {report.version}, VMPL {report.vmpl}, policy {report.policy:#x}",
            f"  measurement  {report.measurement.hex()}",
            f"  report_data  {report.report_data.hex()}",
            f"  chip_id      {report.chip_id.hex()}",
        ]
        if progress.product is not None:
            tcb = report.tcb("reported", progress.product)
            fmc = f" fmc {tcb.fmc}" if progress.product is Product.TURIN else ""
            lines.append(f"  reported TCB bootloader {tcb.bootloader} tee {tcb.tee} snp {tcb.snp} microcode {tcb.microcode}{fmc}")
    return "\n".join(lines + progress.lines)


def _verify_report(
    report: SnpReport, explicit: CertificateSet, common: _Common, progress: _Progress
) -> VerifiedReport:
    available = explicit.over(common.dev_root)
    found = resolve_chain(available, report, kds=common.kds)
    chain = verify_chain(found.leaf, found.intermediate, found.ark, roots=common.roots, now=common.now)
    progress.product, progress.signer = chain.product, chain.signer.value
    if chain.root.development:
        progress.lines.append("  root         DEVELOPMENT ARK (trusted because of --dev-root)")
    _check_revocation(chain, common, progress)
    return verify_report(report, chain)


def _check_revocation(chain: VerifiedChain, common: _Common, progress: _Progress) -> None:
    if common.revocation is None:
        return
    check_revocation(chain, common.revocation(chain, common.now), common.now)
    progress.extra["revocation"] = "checked"
    progress.lines.append(_REVOCATION_LINE)


def _golden_line(golden: GoldenMeasurement, progress: _Progress) -> None:
    progress.extra["golden_id"] = "0x" + golden.canonical_id().hex()
    progress.lines.append(f"  golden       {golden.name or ''} 0x{golden.canonical_id().hex()}: every rule holds")
    if golden.policy.debug_allowed:
        progress.extra["golden_allows_debug"] = True
        progress.lines.append(
            "  golden       ALLOWS DEBUG GUESTS (accepted because of --allow-debug-golden): the host can read their memory"
        )


@click.group("verify", context_settings={"help_option_names": ["-h", "--help"]})
def verify() -> None:
    """Verify AMD SEV-SNP evidence off chain.

    A file option may be - (standard input, for one option); a binary input (report, HCL report,
    quote, signature) may be raw, hex or base64.
    """


#: The inputs of `verify snp`, `verify azure` and `verify evidence`; `cvm-cli onchain verify` takes the same.
snp_inputs = stacked(
    click.option("--report", "report_path", type=PathArg, required=True, help="ATTESTATION_REPORT (1184 bytes: raw, hex or base64; - reads stdin)."),
    click.option("--vcek", type=PathArg, help="The VCEK or VLEK (DER or PEM)."),
    click.option("--ask", type=PathArg, help="The ASK or ASVK (DER or PEM; a KDS cert_chain bundle works too)."),
    click.option("--ark", type=PathArg, help="The ARK (must be AMD's pinned root, or --dev-root)."),
)
azure_inputs = stacked(
    click.option("--hcl-report", "hcl_path", type=PathArg, required=True, help="Azure HCL report (vTPM NV 0x01400001; raw, hex or base64)."),
    click.option("--vcek", type=PathArg, help="The VCEK (DER or PEM)."),
    click.option("--ask", type=PathArg, help="The ASK (DER or PEM)."),
    click.option("--ark", type=PathArg, help="The ARK."),
    click.option("--quote", "quote_path", type=PathArg, help="TPMS_ATTEST of a vTPM quote (raw, hex or base64)."),
    click.option("--quote-sig", "sig_path", type=PathArg, help="Its signature: TPMT_SIGNATURE or raw RSA PKCS#1 v1.5."),
    click.option("--pcrs", "pcrs_path", type=PathArg, help="JSON {index: hex} of the quoted SHA-256 PCRs."),
    click.option("--nonce", help="Hex extraData the quote must carry (third-party evidence: the raw nonce)."),
)


def require_quote_group(
    quote_path: Path | None, sig_path: Path | None, pcrs_path: Path | None, nonce: str | None, *, as_json: bool
) -> None:
    """``--quote``, ``--quote-sig``, ``--pcrs`` and ``--nonce`` of :data:`azure_inputs`: all or none (exit 2)."""
    given = [value is not None for value in (quote_path, sig_path, pcrs_path, nonce)]
    if any(given) and not all(given):
        usage_error("--quote, --quote-sig, --pcrs and --nonce go together", as_json=as_json)


evidence_inputs = stacked(
    click.argument("evidence_path", type=PathArg, metavar="EVIDENCE.json"),
    click.option("--nonce", help="Off-chain evidence: the hex nonce given to the agent."),
    click.option("--chain-id", type=int, help="On-chain evidence: the chain id its quote must bind."),
    click.option("--block-hash", help="On-chain evidence: the hex hash of the block the challenge named."),
    click.option("--vcek", type=PathArg, help="Override the evidence's VCEK/VLEK."),
    click.option("--ask", type=PathArg, help="Override the evidence's ASK/ASVK."),
    click.option("--ark", type=PathArg, help="Override the evidence's ARK."),
)

@verify.command("snp")
@snp_inputs
@_common_options
def verify_snp(report_path: Path, vcek: Path | None, ask: Path | None, ark: Path | None, **options: Any) -> None:
    """A bare SEV-SNP attestation report against the AMD chain (and a golden measurement)."""
    as_json = bool(options["as_json"])
    progress = _Progress()

    def body() -> None:
        common = _common(**options)
        progress.report = SnpReport.from_bytes(read_binary(report_path, "--report"))
        explicit = _explicit_certificates(vcek, ask, ark)
        verified = _verify_report(progress.report, explicit, common, progress)
        _freshness(progress, False)
        standalone_checks(common, progress.report)
        if common.golden is not None:
            check_policy(
                common.golden,
                progress.report,
                product=verified.product,
                signer=verified.signer,
                binding=None,
                pcrs=None,
                allow_debug_golden=common.allow_debug_golden,
            )
            _golden_line(common.golden, progress)

    _run(as_json, progress, body)


def read_pcrs_file(path: Path) -> dict[int, bytes]:
    doc = loads_bounded(read_file(path), Reason.INPUT_INVALID)
    if isinstance(doc, dict) and set(doc) == {"sha256"}:
        doc = doc["sha256"]
    if not isinstance(doc, dict):
        raise ParseError(Reason.INPUT_INVALID, f"{path}: expected {{index: hex}}")
    pcrs: dict[int, bytes] = {}
    for key, value in doc.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and int(key) < 24 and isinstance(value, str)):
            raise ParseError(Reason.INPUT_INVALID, f"{path}: PCR {key!r} is not an index 0..23 with a hex value")
        pcrs[int(key)] = parse_hex_option(value, f"PCR {key}")
    return pcrs


@verify.command("azure")
@azure_inputs
@_common_options
def verify_azure(
    hcl_path: Path,
    vcek: Path | None,
    ask: Path | None,
    ark: Path | None,
    quote_path: Path | None,
    sig_path: Path | None,
    pcrs_path: Path | None,
    nonce: str | None,
    **options: Any,
) -> None:
    """An Azure CVM's HCL report (SNP report + runtime data with the vTPM AK), and optionally its quote."""
    as_json = bool(options["as_json"])
    require_quote_group(quote_path, sig_path, pcrs_path, nonce, as_json=as_json)
    progress = _Progress()

    def body() -> None:
        common = _common(**options)
        hcl = HclReport.from_bytes(read_binary(hcl_path, "--hcl-report"))
        progress.report = hcl.snp_report
        explicit = _explicit_certificates(vcek, ask, ark)
        verified = _verify_report(hcl.snp_report, explicit, common, progress)
        ak = hcl.ak_public_key()
        verify_azure_binding(hcl.snp_report, hcl, ak)
        progress.extra["binding"] = Binding.AZURE.value
        progress.lines.append("  binding      azure: REPORT_DATA = SHA-256(runtime data), HCLAkPub is the AK")
        pcrs = None
        if quote_path is not None and sig_path is not None and pcrs_path is not None and nonce is not None:
            expected = parse_hex_option(nonce, "--nonce")
            raw_sig = read_binary(sig_path, "--quote-sig")
            signature: TpmtSignature | bytes = (
                raw_sig if len(raw_sig) == ak.key_size // 8 else TpmtSignature.from_bytes(raw_sig)
            )
            quote = verify_quote(
                read_binary(quote_path, "--quote"), signature, ak, expected_extra_data=expected, pcrs=read_pcrs_file(pcrs_path)
            )
            pcrs = dict(quote.pcrs)
            progress.extra["quote"] = {"extra_data": quote.attest.extra_data.hex(), "pcrs": sorted(pcrs)}
            progress.lines.append(f"  quote        signed by the AK, nonce matches, PCRs {sorted(pcrs)}")
        _freshness(progress, pcrs is not None)
        standalone_checks(common, hcl.snp_report)
        if common.golden is not None:
            check_policy(
                common.golden,
                hcl.snp_report,
                product=verified.product,
                signer=verified.signer,
                binding=Binding.AZURE,
                pcrs=pcrs,
                allow_debug_golden=common.allow_debug_golden,
            )
            _golden_line(common.golden, progress)

    _run(as_json, progress, body)


@verify.command("evidence")
@evidence_inputs
@click.option("--registry", help="On-chain evidence: the registry address its quote must bind.")
@_common_options
def verify_evidence_cmd(
    evidence_path: Path,
    nonce: str | None,
    chain_id: int | None,
    block_hash: str | None,
    registry: str | None,
    vcek: Path | None,
    ask: Path | None,
    ark: Path | None,
    **options: Any,
) -> None:
    """A cvm-attest evidence bundle (GET /collaterals/{nonce}) against a nonce and a golden measurement."""
    as_json = bool(options["as_json"])
    progress = _Progress()

    def body() -> None:
        common = _common(**options)
        explicit = _explicit_certificates(vcek, ask, ark)
        bundle = EvidenceBundle.from_file(evidence_path)
        progress.report = bundle.snp_report
        expected = expected_extra_data(bundle, nonce=nonce, chain_id=chain_id, registry=registry,
                                       block_hash=block_hash)
        overrides = None
        if explicit.roles() or common.dev_root.ark is not None:
            overrides = explicit.over(bundle.certificate_set()).over(common.dev_root)
        verified = verify_evidence(
            bundle,
            expected_extra_data=expected,
            golden=common.golden,
            roots=common.roots,
            now=common.now,
            certificates=overrides,
            fetcher=common.kds,
            revocation=common.revocation,
            allow_debug_golden=common.allow_debug_golden,
        )
        progress.product, progress.signer = verified.product, verified.signer.value
        standalone_checks(common, bundle.snp_report)
        progress.extra.update(
            binding=bundle.binding.value,
            platform=bundle.platform.value,
            quote={"extra_data": verified.quote.attest.extra_data.hex(), "pcrs": sorted(verified.pcrs)},
            fresh=True,
        )
        if bundle.cvm_address is not None:
            progress.extra["cvm_address"] = "0x" + bundle.cvm_address.hex()
        if verified.chain.root.development:
            progress.lines.append("  root         DEVELOPMENT ARK (trusted because of --dev-root)")
        if common.revocation is not None:
            progress.extra["revocation"] = "checked"
            progress.lines.append(_REVOCATION_LINE)
        progress.lines.append(
            f"  binding      {bundle.binding.value}; quote signed by the AK over the nonce, PCRs {sorted(verified.pcrs)}"
        )
        if bundle.event_log is not None:
            progress.lines.append(f"  workload     {len(bundle.event_log)} items replay to PCR23")
        if common.golden is not None:
            _golden_line(common.golden, progress)

    _run(as_json, progress, body)


@verify.command("svsm")
@click.argument("agent_url", metavar="AGENT-URL")
@_common_options
def verify_svsm_cmd(agent_url: str, **options: Any) -> None:
    """An agent on the svsm platform, online: its evidence for a fresh nonce, and a credential
    activation (TPM2_MakeCredential for its AK under the EK of the SVSM's VMPL0 report) that proves
    the AK lives in the SVSM's vTPM (docs/trust-model.md, "SVSM vTPM")."""
    as_json = bool(options["as_json"])
    progress = _Progress()

    def body() -> None:
        common = _common(**options)
        verified = verify_svsm_agent(agent_url, golden=common.golden, roots=common.roots, now=common.now,
                                     kds=common.kds, revocation=common.revocation,
                                     allow_debug_golden=common.allow_debug_golden)
        progress.report = verified.report
        progress.product, progress.signer = verified.product, verified.signer.value
        progress.extra.update(binding=verified.binding.value, platform=verified.bundle.platform.value,
                              quote={"extra_data": verified.quote.attest.extra_data.hex(), "pcrs": sorted(verified.pcrs)},
                              fresh=True, activated=True)
        if verified.chain.root.development:
            progress.lines.append("  root         DEVELOPMENT ARK (trusted because of --dev-root)")
        progress.lines.append("  binding      svsm: the SVSM's VMPL0 report carries the vTPM's EK, and the AK activated "
                              "a fresh credential under it")
        if common.golden is not None:
            _golden_line(common.golden, progress)

    _run(as_json, progress, body)
