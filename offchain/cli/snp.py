"""``cvm-cli snp``: the snpguest / go-sev-guest command set, for users who know those tools.

::

    cvm-cli snp fetch ca   --product P [--endorser vcek|vlek] --out DIR     ark.pem and ask.pem (asvk.pem)
    cvm-cli snp fetch vcek --report R [--product P] --out DIR              vcek.der for the report's chip and TCB
    cvm-cli snp fetch vlek ...                                             refused: KDS gives VLEKs to cloud providers
    cvm-cli snp fetch crl  --product P [--endorser vcek|vlek] --out DIR    crl.der, the ARK's revocation list
            (all fetches: [--kds-url U] [--cache-dir D] [--json]; from AMD KDS, through the on-disk cache)
    cvm-cli snp verify certs DIR [--dev-root ARK.pem] [--at ISO8601] [--json]
    cvm-cli snp display report R [--product P] [--json]
    cvm-cli snp report --report-data HEX --out R [--certs DIR] [--tsm DIR | --device PATH]  (agent.snp_cli)

``fetch`` always asks KDS (what snpguest does), and checks what it got: a fetched ARK must be the
pinned key, a fetched VCEK must be issued for the report's chip. ``verify certs`` checks a directory
of certificates the way ``snpguest verify certs`` does (ARK pinned and self-signed, ASK/ASVK by the
ARK, VCEK/VLEK by the ASK/ASVK, all valid at ``--at``); an ASK/ASVK or ARK the directory lacks comes
from the copies shipped with the package (offchain.trust.amd_certs). ``display report`` decodes a
report without judging it: no signature, no policy (``cvm-cli verify snp`` judges). Exit codes as
every command's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.cli.output import EXIT_ACCEPTED, emit, guarded
from offchain.cli.params import INPUT_FILE, parse_time
from offchain.errors import ParseError, Reason, RequestError, VerificationError
from offchain.files import write_atomically
from offchain.inputs import read_binary
from offchain.trust.certs import CertificateSet, CertRole, classify, common_name, parse_certificate, parse_certificates
from offchain.trust.certs import read_file, to_pem
from offchain.trust.kds import KDS_BASE_URL, KdsClient, UrllibFetcher
from offchain.trust.resolve import complete_from_shipped
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, TrustRoots, spki_fingerprint
from offchain.verify.chain import verify_chain

_PRODUCT = click.Choice([p.value for p in Product], case_sensitive=False)
_ENDORSER = click.Choice([s.value for s in SignerKind], case_sensitive=False)
_OUT_DIR = click.Path(file_okay=False, path_type=Path)
_CERT_SUFFIXES = (".pem", ".der", ".crt", ".cer")


@click.group("snp", context_settings={"help_option_names": ["-h", "--help"]})
def snp() -> None:
    """snpguest-style tools: fetch AMD certificates, check a certificate directory, decode a report."""


# --- fetch -------------------------------------------------------------------------------------


def _kds_options(fn: Any) -> Any:
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)
    fn = click.option("--cache-dir", type=_OUT_DIR, help="On-disk KDS cache (answers reused until stale).")(fn)
    return click.option("--kds-url", default=KDS_BASE_URL, show_default=True, help="KDS base URL (a mirror).")(fn)


def _client(kds_url: str, cache_dir: Path | None) -> KdsClient:
    return KdsClient(UrllibFetcher(), base_url=kds_url, cache_dir=cache_dir)


def _write(out: Path, name: str, data: bytes) -> str:
    path = out / name
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise ParseError(Reason.INPUT_UNREADABLE, f"cannot write {path}: {exc.strerror or exc}") from None
    return str(path)


def _done(as_json: bool, written: list[str], **facts: Any) -> None:
    payload = {"ok": True, "reason": None, "written": written, **facts}
    emit(payload, as_json=as_json, human="\n".join(f"wrote {path}" for path in written))


@snp.group("fetch")
def fetch() -> None:
    """Fetch certificates and the CRL from AMD KDS (snpguest fetch)."""


@fetch.command("ca")
@click.option("--product", required=True, type=_PRODUCT, help="Product line: milan, genoa or turin.")
@click.option("--endorser", default="vcek", show_default=True, type=_ENDORSER,
              help="vcek: ASK and ARK; vlek: ASVK and ARK.")
@click.option("--out", required=True, type=_OUT_DIR, help="Directory to write ark.pem and ask.pem (asvk.pem) to.")
@_kds_options
@guarded()
def fetch_ca(product: str, endorser: str, out: Path, kds_url: str, cache_dir: Path | None, as_json: bool) -> None:
    """The ARK and the ASK (or ASVK) of a product line; the ARK must be the pinned key."""
    line, signer = Product(product.lower()), SignerKind(endorser.lower())
    intermediate, ark = _client(kds_url, cache_dir).fetch_cert_chain(line, signer)
    if spki_fingerprint(ark) != AMD_ARK_SPKI_SHA256[line]:
        raise VerificationError(Reason.CHAIN_ROOT_NOT_PINNED, f"{kds_url} answered an ARK-{line.display_name} whose"
                                " key is not AMD's pinned one: a mirror that is not AMD's")
    role = CertRole.intermediate_for(signer).value
    written = [_write(out, "ark.pem", to_pem(ark).encode()), _write(out, f"{role}.pem", to_pem(intermediate).encode())]
    _done(as_json, written, product=line.value, signer=signer.value)


@fetch.command("vcek")
@click.option("--report", "report_path", required=True, type=INPUT_FILE, help="The report whose chip and TCB name it.")
@click.option("--product", type=_PRODUCT, help="Product line (needed for a version-2 report, which has no CPUID).")
@click.option("--out", required=True, type=_OUT_DIR, help="Directory to write vcek.der to.")
@_kds_options
@guarded()
def fetch_vcek(report_path: Path, product: str | None, out: Path, kds_url: str, cache_dir: Path | None,
               as_json: bool) -> None:
    """The VCEK of the report's chip at the report's reported TCB."""
    report = SnpReport.from_bytes(read_binary(report_path, "--report"))
    line = Product(product.lower()) if product is not None else report.product_hint()
    if line is None:
        raise RequestError(Reason.INPUT_INVALID, f"a version-{report.version} report does not name its product line:"
                           " give --product milan|genoa|turin")
    if report.signing_key is SignerKind.VLEK:
        raise RequestError(Reason.INPUT_INVALID, "this report is signed by a VLEK, not a VCEK: its certificate comes"
                           " from the cloud provider (the extended report's certificate table), not from KDS")
    vcek = _client(kds_url, cache_dir).fetch_vcek(line, report.chip_id, report.tcb("reported", line))
    written = [_write(out, "vcek.der", vcek.public_bytes(serialization.Encoding.DER))]
    _done(as_json, written, product=line.value, signer="vcek")


@fetch.command("vlek", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded()
def fetch_vlek(as_json: bool) -> None:
    """Refused with the reason: AMD KDS issues VLEKs only to cloud providers."""
    raise RequestError(Reason.COLLATERAL_UNAVAILABLE,
                       "AMD KDS issues a VLEK only to the cloud provider that loaded it into the firmware; the guest"
                       " receives it in the extended report's certificate table (cvm-cli snp report --certs DIR)."
                       " Its chain: cvm-cli snp fetch ca --endorser vlek")


@fetch.command("crl")
@click.option("--product", required=True, type=_PRODUCT, help="Product line: milan, genoa or turin.")
@click.option("--endorser", default="vcek", show_default=True, type=_ENDORSER, help="The CRL of the VCEK or VLEK chain.")
@click.option("--out", required=True, type=_OUT_DIR, help="Directory to write crl.der to.")
@click.option("--at", "at", metavar="ISO8601", help="The time the CRL must be current at (default: now).")
@_kds_options
@guarded()
def fetch_crl(product: str, endorser: str, out: Path, at: str | None, kds_url: str, cache_dir: Path | None,
              as_json: bool) -> None:
    """The ARK's current certificate revocation list (DER), signed by the pinned ARK."""
    line, signer = Product(product.lower()), SignerKind(endorser.lower())
    client = _client(kds_url, cache_dir)
    now = parse_time(at)
    crl = client.fetch_crl(line, signer, now=now)
    intermediate, ark = client.fetch_cert_chain(line, signer)
    if spki_fingerprint(ark) != AMD_ARK_SPKI_SHA256[line] or not crl.is_signature_valid(ark.public_key()):  # type: ignore[arg-type]
        raise VerificationError(Reason.CRL_INVALID, f"the CRL from {kds_url} is not signed by AMD's pinned"
                                f" ARK-{line.display_name}")
    written = [_write(out, "crl.der", crl.public_bytes(serialization.Encoding.DER))]
    revoked = [f"{entry.serial_number:#x}" for entry in crl]
    _done(as_json, written, product=line.value, signer=signer.value, revoked_serials=revoked,
          next_update=crl.next_update_utc.isoformat() if crl.next_update_utc else None)


# --- verify certs --------------------------------------------------------------------------------


@snp.group("verify")
def verify_group() -> None:
    """Verify a certificate directory (snpguest verify certs)."""


def _directory_certificates(directory: Path) -> list[tuple[Path, x509.Certificate]]:
    if not directory.is_dir():
        raise ParseError(Reason.INPUT_UNREADABLE, f"{directory} is not a directory")
    found = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in _CERT_SUFFIXES and path.is_file():
            found += [(path, cert) for cert in parse_certificates(read_file(path))]
    if not found:
        raise ParseError(Reason.INPUT_UNREADABLE, f"{directory} holds no certificate (*.pem, *.der, *.crt, *.cer)")
    return found


@verify_group.command("certs")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dev-root", "dev_root", type=INPUT_FILE, help="Also trust this development ARK (PEM or DER).")
@click.option("--at", "at", metavar="ISO8601", help="Verification time (default: now). Naive times are UTC.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded()
def verify_certs(directory: Path, dev_root: Path | None, at: str | None, as_json: bool) -> None:
    """ARK -> ASK/ASVK -> VCEK/VLEK of DIRECTORY, to a pinned root (missing CA certificates: the shipped ones)."""
    now = parse_time(at)
    roots = TrustRoots()
    if dev_root is not None:
        roots = roots.with_dev_root(parse_certificate(read_file(dev_root)))
    files = _directory_certificates(directory)
    given = CertificateSet.of(cert for _, cert in files)
    source = {classify(cert): str(path) for path, cert in files}
    leaf_role = CertRole.VCEK if given.get(CertRole.VCEK) is not None else CertRole.VLEK
    leaf = given.get(leaf_role)
    if leaf is None:
        raise VerificationError(Reason.CHAIN_INCOMPLETE, f"{directory} holds no VCEK or VLEK", missing=["vcek"])
    signer = SignerKind.VCEK if leaf_role is CertRole.VCEK else SignerKind.VLEK
    inter_role = CertRole.intermediate_for(signer)
    intermediate, ark = given.get(inter_role), given.get(CertRole.ARK)
    if intermediate is None or ark is None:
        shipped = complete_from_shipped(leaf, signer, intermediate, ark)
        if shipped is None:
            missing = [r.value for r, c in ((inter_role, intermediate), (CertRole.ARK, ark)) if c is None]
            raise VerificationError(Reason.CHAIN_INCOMPLETE, f"{directory} lacks the {' and '.join(missing)}"
                                    " and the shipped AMD certificates did not issue its leaf", missing=missing)
        source.setdefault(inter_role, "shipped")
        source.setdefault(CertRole.ARK, "shipped")
        intermediate, ark = shipped
    chain = verify_chain(leaf, intermediate, ark, roots=roots, now=now)
    listed = [
        {"role": role.value, "subject": common_name(cert), "not_after": cert.not_valid_after_utc.isoformat(),
         "source": source[role]}
        for role, cert in ((CertRole.ARK, ark), (inter_role, intermediate), (leaf_role, leaf))
    ]
    payload = {"ok": True, "reason": None, "product": chain.product.value, "signer": chain.signer.value,
               "development_root": chain.root.development, "certificates": listed}
    human = [f"OK: {chain.product.value} {chain.signer.value.upper()} chain to a pinned"
             f" {'DEVELOPMENT ' if chain.root.development else ''}ARK"]
    human += [f"  {c['role']:<5} {c['subject']:<16} valid until {c['not_after']}  ({c['source']})" for c in listed]
    emit(payload, as_json=as_json, human="\n".join(human))


# --- display report -------------------------------------------------------------------------------


@snp.group("display")
def display() -> None:
    """Decode without judging (snpguest display)."""


@display.command("report")
@click.argument("report_path", type=INPUT_FILE, metavar="REPORT")
@click.option("--product", type=_PRODUCT, help="Decode the TCBs with this line's layout (default: the report's CPUID).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@guarded()
def display_report(report_path: Path, product: str | None, as_json: bool) -> None:
    """Every field of an ATTESTATION_REPORT (raw, hex or base64; - reads stdin). Nothing is verified."""
    report = SnpReport.from_bytes(read_binary(report_path, "REPORT"))
    line = Product(product.lower()) if product is not None else report.product_hint()
    fields = report.to_json(line)
    policy = report.guest_policy
    fields["guest_policy"] = {
        "abi": f"{policy.abi_major}.{policy.abi_minor}", "smt": policy.smt, "migrate_ma": policy.migrate_ma,
        "debug": policy.debug, "single_socket": policy.single_socket,
    }
    fields["signing_key"] = report.signing_key.value
    if as_json:
        emit({"ok": True, "reason": None, "verified": False, "report": fields}, as_json=True, human="")
    lines = ["SEV-SNP attestation report (decoded only: nothing here is verified)"]
    for name, value in fields.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        lines.append(f"  {name:<20} {value}")
    click.echo("\n".join(lines))
    raise SystemExit(EXIT_ACCEPTED)

