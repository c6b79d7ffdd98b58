"""``cvm-cli image``: build the CVM image, read it back, and recompute what booting it measures.

::

    cvm-cli image build WORKLOAD_DIR --out DIR [--format raw,vhd,vmdk,gcp] [--platform snp|azure|sim]
                        [--source-date-epoch N] [--base GOLDEN.json] [--name NAME]
                        [--api-token-sha256 HEX] [--json]
    cvm-cli image inspect disk.raw [--json]
    cvm-cli image predict DIR|disk.raw [--golden golden.json] [--json]
    cvm-cli image pin DIR --from REFERENCE.json [--name NAME] [--json]

``build`` runs image.build (progress per step on standard error when it is a terminal) and writes
``DIR/disk.raw`` and the other formats asked for, ``DIR/manifest.json``, and ``DIR/golden.json``
where the launch measurement is known (``--platform sim``, or ``--base``: image.golden). ``pin``
writes ``DIR/golden.json`` from a reference golden measurement read from a VM that booted this
image, after checking that the reference's build PCRs equal the prediction.

``inspect`` prints the partitions, the UKI's command line and root hash, the dm-verity check of the
root against its hash partition, and the workload's digest and PCR23. ``predict`` recomputes PCRs
4, 9, 11, 12 and 23 from the disk alone (image.predict) and, given a golden measurement (default:
``DIR/golden.json`` when there is one), names every pinned PCR that differs and the workload items
behind PCR23: exit 0 when it reproduces, 1 (``image.prediction_mismatch``) when it does not, 2 for
unusable input. Exit codes and error lines: offchain.cli.output.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from offchain.cli.output import guarded
from offchain.errors import Reason, RequestError, VerificationError
from offchain.policy.golden import GoldenMeasurement

from image.build import FORMATS, STEPS, BuildRequest, build_image, parse_formats, platform_of
from image.disk import MIN_EPOCH, inspect_disk
from image.golden import FIRMWARE_PCRS, pin_from_reference
from image.predict import compare, disk_of, predict_disk
from image.rootfs import PLATFORMS
from offchain.files import write_atomically

PathArg = click.Path(path_type=Path)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _print(payload: dict[str, Any], as_json: bool, human: str) -> None:
    click.echo(json.dumps(payload, sort_keys=True) if as_json else human)


@click.group("image", context_settings={"help_option_names": ["-h", "--help"]})
def image() -> None:
    """Build the CVM image of a workload, read it back, and recompute its golden measurement."""


def _epoch_default() -> int:
    text = os.environ.get("SOURCE_DATE_EPOCH")
    if text is None:
        return MIN_EPOCH
    try:
        return int(text)
    except ValueError:
        raise RequestError(Reason.INPUT_INVALID, f"SOURCE_DATE_EPOCH={text!r} is not a number") from None


def _sha256_hex(text: str) -> bytes:
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise RequestError(Reason.INPUT_INVALID, "--api-token-sha256 is 64 lowercase hex digits "
                           "(printf %s \"$TOKEN\" | sha256sum)")
    return bytes.fromhex(text)


@image.command("build")
@click.argument("workload_dir", type=click.Path(file_okay=False, path_type=Path), metavar="WORKLOAD_DIR")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The build directory: disk.raw, the other formats, golden.json, manifest.json.")
@click.option("--format", "formats", default="raw", show_default=True, metavar="LIST",
              help=f"Comma-separated, of {', '.join(FORMATS)} (disk.raw is always written).")
@click.option("--platform", type=click.Choice(PLATFORMS), default="snp", show_default=True,
              help="The agent's platform in the image (sim only for test images).")
@click.option("--source-date-epoch", type=int, default=None,
              help="Every timestamp in the image (default: $SOURCE_DATE_EPOCH, else 1980-01-01).")
@click.option("--base", type=click.Path(dir_okay=False, path_type=Path),
              help="A golden measurement of a reference CVM whose measurement, rules and firmware PCRs to keep.")
@click.option("--name", help="The golden measurement's name.")
@click.option("--api-token-sha256", "token_sha256", metavar="HEX",
              help="SHA-256 of the agent's API token (workload update, golden consents); without it they are "
              "disabled. Only the hash goes into the image.")
@json_option
@guarded()
def build(workload_dir: Path, out: Path, formats: str, platform: str, source_date_epoch: int | None,
          base: Path | None, name: str | None, token_sha256: str | None, as_json: bool) -> None:
    """Build the CVM image of WORKLOAD_DIR into --out, and predict its golden measurement."""
    request = BuildRequest(
        workload_dir=workload_dir, out=out, platform=platform, formats=parse_formats(formats),
        source_date_epoch=_epoch_default() if source_date_epoch is None else source_date_epoch,
        base=None if base is None else GoldenMeasurement.from_file(base), name=name,
        api_token_sha256=None if token_sha256 is None else _sha256_hex(token_sha256),
    )
    terminal = sys.stderr.isatty()

    def progress(step: str, detail: str) -> None:
        if terminal:
            click.echo(f"[{STEPS.index(step) + 1}/{len(STEPS)}] {step:<10} {detail}", err=True)

    result = build_image(request, progress)
    lines = [f"{path}" for path in result.files.values()]
    lines.append(f"root hash {result.layout.root_hash.hex()}")
    lines += [f"PCR{i:<3} {v.hex()}" for i, v in result.prediction.pcrs.items()]
    if result.golden is None:
        lines.append(f"no golden.json: on --platform {platform} the launch measurement and PCRs "
                     f"{','.join(map(str, FIRMWARE_PCRS))} are the platform's; boot the image once and run "
                     f"cvm-cli image pin {out} --from REFERENCE.json (or build with --base)")
    else:
        lines.append(f"golden id 0x{result.golden.canonical_id().hex()}")
    _print(result.to_json(), as_json, "\n".join(lines))


@image.command("pin")
@click.argument("build_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR")
@click.option("--from", "reference", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The golden measurement of a VM that booted this image (its agent's /golden-measurement).")
@click.option("--name", help="The golden measurement's name (default: the reference's).")
@json_option
@guarded()
def pin(build_dir: Path, reference: Path, name: str | None, as_json: bool) -> None:
    """Write DIR/golden.json: the reference's measurement, rules and firmware PCRs, the build's own PCRs."""
    prediction = predict_disk(disk_of(build_dir))
    golden = pin_from_reference(prediction.pcrs, prediction.disk.workload_events,
                                GoldenMeasurement.from_file(reference), name=name)
    write_atomically(build_dir / "golden.json", golden.dumps().encode())
    gid = "0x" + golden.canonical_id().hex()
    _print({"ok": True, "golden": str(build_dir / "golden.json"), "golden_id": gid}, as_json,
           f"{build_dir / 'golden.json'}: golden id {gid}")


@image.command("inspect")
@click.argument("disk", type=PathArg, metavar="DISK.raw")
@json_option
@guarded()
def inspect(disk: Path, as_json: bool) -> None:
    """Partitions, root hash, command line, verity check of the root, workload digest and PCR23."""
    report = inspect_disk(disk_of(disk))
    platform = platform_of(report.cmdline)
    lines = [f"{disk}: {report.size} bytes, disk GUID {report.table.disk_guid}"]
    if platform == "sim":
        lines.append(click.style("  TEST IMAGE: its agent runs --platform sim, whose attestation is simulated "
                                 "(a development AMD chain); never deploy it", fg="red", bold=True))
    else:
        lines.append(f"  platform     {platform or 'not named on the command line'}")
    for number, entry in report.table.entries:
        lines.append(f"  {number}  {entry.name:<20} {entry.size:>12} bytes at {entry.offset:<10} {entry.guid}")
    lines += [
        f"  cmdline      {report.cmdline}",
        f"  root hash    {report.root_hash.hex()} (dm-verity: the root verifies against its hash partition)",
        f"  UKI          Authenticode SHA-256 {report.uki_authenticode.hex()}",
        f"  workload     digest {report.workload_digest.hex()}, {len(report.workload_events)} items, "
        f"PCR23 {report.workload_pcr23.hex()}",
    ]
    _print({**report.to_json(), "platform": platform, "test_image": platform == "sim"}, as_json, "\n".join(lines))


@image.command("predict")
@click.argument("source", type=PathArg, metavar="DIR|DISK.raw")
@click.option("--golden", type=click.Path(dir_okay=False, path_type=Path),
              help="The golden measurement to compare with (default: DIR/golden.json when it exists).")
@json_option
@guarded()
def predict(source: Path, golden: Path | None, as_json: bool) -> None:
    """Recompute PCRs 4, 9, 11, 12 and 23 from the disk and name what differs from the golden measurement."""
    prediction = predict_disk(disk_of(source))
    if golden is None and source.is_dir() and (source / "golden.json").is_file():
        golden = source / "golden.json"
    payload: dict[str, Any] = {"pcrs": {str(i): v.hex() for i, v in prediction.pcrs.items()},
                               "root_hash": prediction.disk.root_hash.hex()}
    lines = [f"PCR{i:<3} {v.hex()}" for i, v in prediction.pcrs.items()]
    if golden is not None:
        document = GoldenMeasurement.from_file(golden)
        differences = compare(document, prediction)
        payload["golden"] = str(golden)
        payload["differences"] = [
            {"pcr": d.pcr, "golden": d.golden.hex(), "predicted": d.predicted.hex(), "items": list(d.items)}
            for d in differences
        ]
        if differences:
            if as_json:
                _print({**payload, "ok": False, "reason": Reason.IMAGE_PREDICTION_MISMATCH.value}, True, "")
                raise SystemExit(1)
            raise VerificationError(
                Reason.IMAGE_PREDICTION_MISMATCH,
                f"{golden} is not what {source} measures:\n  " + "\n  ".join(d.describe() for d in differences),
            )
        lines.append(f"{golden}: every pinned PCR the build determines matches")
    _print({**payload, "ok": True, "reason": None}, as_json, "\n".join(lines))
