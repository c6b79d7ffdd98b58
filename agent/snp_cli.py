"""``cvm-cli snp report``: an SEV-SNP attestation report from inside the guest, without the agent.

::

    cvm-cli snp report --report-data HEX --out REPORT.bin [--certs DIR] [--tsm-root DIR | --device PATH]
                       [--vmpl N] [--json]

What ``snpguest report`` does: REPORT_DATA (up to 64 bytes, hex, zero-padded) goes to the firmware
through configfs-tsm (``/sys/kernel/config/tsm/report``, Linux 6.7+) or, when that is absent,
``/dev/sev-guest`` (``SNP_GET_EXT_REPORT``), both as agent.platforms.snp drives them. The raw
1184-byte report is written to ``--out`` (``-``: stdout, hex); the host's certificate table, when it
supplies one, is written to ``--certs DIR`` as ``vcek.pem``/``vlek.pem``/``ask.pem``/``ark.pem``, so
``cvm-cli verify snp --report REPORT.bin --vcek DIR/vcek.pem`` checks it. The report is checked to
carry the REPORT_DATA asked for; it is not verified (``cvm-cli verify snp`` does that).

This command lives in the agent package (it drives the guest interfaces) and joins ``cvm-cli snp``
through the ``snp.report`` entry point (offchain/cli/root.py, nested entry points).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from offchain.abi.binding import REPORT_DATA_SIZE
from offchain.abi.snp_report import REPORT_SIZE, SnpReport
from offchain.cli.output import guarded
from offchain.errors import CvmAttestError, ParseError, PlatformError, Reason
from offchain.files import write_atomically

from agent.config import DEFAULT_SEV_GUEST, DEFAULT_TSM_ROOT
from agent.platforms.snp import CertTable, ConfigfsTsm, SevGuestDevice


def parse_report_data(text: str) -> bytes:
    """``--report-data``: hex of at most 64 bytes (``0x`` allowed), zero-padded to 64."""
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        data = bytes.fromhex(body)
    except ValueError:
        raise ParseError(Reason.INPUT_INVALID, "--report-data is not hex") from None
    if len(data) > REPORT_DATA_SIZE:
        raise ParseError(Reason.INPUT_INVALID, f"--report-data is {len(data)} bytes; REPORT_DATA holds 64")
    return data.ljust(REPORT_DATA_SIZE, b"\x00")


@click.command("report")
@click.option("--report-data", required=True, metavar="HEX", help="Up to 64 bytes of hex, zero-padded to 64.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Where the raw report goes (- : stdout, as hex).")
@click.option("--certs", "certs_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the host's certificate table here (vcek.pem, vlek.pem, ask.pem, ark.pem).")
@click.option("--tsm-root", type=click.Path(path_type=Path), default=DEFAULT_TSM_ROOT, show_default=True,
              help="configfs-tsm report directory.")
@click.option("--device", type=click.Path(path_type=Path), default=DEFAULT_SEV_GUEST, show_default=True,
              help="The SEV guest device, used when configfs-tsm is absent.")
@click.option("--vmpl", type=click.IntRange(0, 3), help="VMPL to request the report at (configfs-tsm privlevel).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object describing what was written.")
@guarded()
def report(report_data: str, out: Path, certs_dir: Path | None, tsm_root: Path, device: Path, vmpl: int | None,
           as_json: bool) -> None:
    """Ask this guest's SEV-SNP firmware for an attestation report over REPORT_DATA."""
    wanted = parse_report_data(report_data)
    tsm = ConfigfsTsm(tsm_root, privlevel=vmpl)
    if tsm.available():
        interface, (raw, table) = "configfs-tsm", tsm.get_report(wanted)
    elif SevGuestDevice(device).available():
        interface, (raw, table) = "sev-guest", SevGuestDevice(device, vmpl=vmpl or 0).get_report(wanted)
    else:
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"not an SEV-SNP guest here: neither {tsm_root} (configfs-tsm;"
                            f" is configfs mounted?) nor {device}")
    try:
        parsed = SnpReport.from_bytes(raw[:REPORT_SIZE])
        certificates = CertTable.from_bytes(table).certificates()
    except CvmAttestError as exc:
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"the firmware's answer does not parse: {exc.detail}") from None
    if parsed.report_data != wanted:
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "the firmware's report carries other REPORT_DATA")
    written = []
    try:
        if str(out) != "-":
            write_atomically(out, parsed.to_bytes())
            written.append(str(out))
        if certs_dir is not None:
            for role, pem in certificates.items():
                write_atomically(certs_dir / f"{role}.pem", pem.encode("ascii"))
                written.append(str(certs_dir / f"{role}.pem"))
    except OSError as exc:
        raise ParseError(Reason.INPUT_UNREADABLE, f"cannot write: {exc.strerror or exc}") from None
    facts = {"ok": True, "reason": None, "interface": interface, "written": written, "certificates": sorted(certificates),
             "measurement": parsed.measurement.hex(), "vmpl": parsed.vmpl}
    if str(out) == "-":
        click.echo(parsed.to_bytes().hex())
        if as_json:
            click.echo(json.dumps(facts, sort_keys=True), err=True)
    elif as_json:
        click.echo(json.dumps(facts, sort_keys=True))
    else:
        click.echo(f"report written to {out} (via {interface}); host certificates: {', '.join(sorted(certificates)) or 'none'}")
