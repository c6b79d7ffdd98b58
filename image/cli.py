"""``cvm-cli image``: read a built CVM image back and recompute what booting it measures.

::

    cvm-cli image inspect disk.raw [--json]
    cvm-cli image predict DIR|disk.raw [--golden golden.json] [--json]

``inspect`` prints the partitions, the UKI's command line and root hash, the dm-verity check of the
root against its hash partition, and the workload's digest and PCR23. ``predict`` recomputes PCRs
4, 9, 11, 12 and 23 from the disk alone (image.predict) and, given a golden measurement (default:
``DIR/golden.json`` when there is one), names every pinned PCR that differs and the workload items
behind PCR23: exit 0 when it reproduces, 1 (``image.prediction_mismatch``) when it does not, 2 for
unusable input. Exit codes and error lines: offchain.cli.output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from offchain.cli.output import guarded
from offchain.errors import Reason, VerificationError
from offchain.policy.golden import GoldenMeasurement

from image.disk import inspect_disk
from image.predict import compare, disk_of, predict_disk

PathArg = click.Path(path_type=Path)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _print(payload: dict[str, Any], as_json: bool, human: str) -> None:
    click.echo(json.dumps(payload, sort_keys=True) if as_json else human)


@click.group("image", context_settings={"help_option_names": ["-h", "--help"]})
def image() -> None:
    """Read a built CVM image back, and recompute its golden measurement's PCRs without booting it."""


@image.command("inspect")
@click.argument("disk", type=PathArg, metavar="DISK.raw")
@json_option
@guarded()
def inspect(disk: Path, as_json: bool) -> None:
    """Partitions, root hash, command line, verity check of the root, workload digest and PCR23."""
    report = inspect_disk(disk_of(disk))
    lines = [f"{disk}: {report.size} bytes, disk GUID {report.table.disk_guid}"]
    for number, entry in report.table.entries:
        lines.append(f"  {number}  {entry.name:<20} {entry.size:>12} bytes at {entry.offset:<10} {entry.guid}")
    lines += [
        f"  cmdline      {report.cmdline}",
        f"  root hash    {report.root_hash.hex()} (dm-verity: the root verifies against its hash partition)",
        f"  UKI          Authenticode SHA-256 {report.uki_authenticode.hex()}",
        f"  workload     digest {report.workload_digest.hex()}, {len(report.workload_events)} items, "
        f"PCR23 {report.workload_pcr23.hex()}",
    ]
    _print(report.to_json(), as_json, "\n".join(lines))


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
