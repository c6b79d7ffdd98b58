"""``cvm-cli golden predict``: a workload's golden measurement computed offline from the base document."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from offchain.abi.snp_report import Product, SignerKind
from offchain.abi.workload import WORKLOAD_PCR, WorkloadEvent, measure_directory, replay
from offchain.errors import Reason, RequestError
from offchain.policy.golden import Binding, GoldenMeasurement
from onchain.admin_cli import golden
from tests.support.agent import TPM_COMPOSE, WORKLOAD, make_zip
from tests.support.evidence import EVENTS, make_parts
from workload.archive import measure_archive

NEW_CONFIG = b"[feed]\nsource = 'b'\n"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    parts = make_parts()
    doc = GoldenMeasurement.from_report(
        parts.report, Product.GENOA, SignerKind.VCEK, Binding.DIRECT,
        {0: parts.pcrs[0], WORKLOAD_PCR: parts.pcrs[WORKLOAD_PCR]}, EVENTS, 600, name="running",
    )
    path = tmp_path / "base.json"
    path.write_text(doc.dumps())
    return path


def _workload_dir(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _run(*args: str | Path) -> Result:
    return CliRunner(mix_stderr=False).invoke(golden, ["predict", *map(str, args), "--json"], catch_exceptions=False)


def _ok(*args: str | Path) -> dict[str, Any]:
    result = _run(*args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_with_workload_changes_pcr23_and_the_events_only(base: Path) -> None:
    doc = GoldenMeasurement.from_file(base)
    events = [WorkloadEvent("config", "config/app.toml", hashlib.sha256(NEW_CONFIG).digest())]
    predicted = doc.with_workload(events)
    assert predicted.pinned_pcrs() == {**doc.pinned_pcrs(), WORKLOAD_PCR: replay(events)}
    assert predicted.pcr23_events == tuple(events) and predicted.name == "running"
    unchanged = ("measurement", "policy", "min_tcb", "vmpl", "products", "signers", "binding", "lifetime_seconds")
    assert all(getattr(predicted, f) == getattr(doc, f) for f in unchanged)
    assert predicted.canonical_id() != doc.canonical_id()
    assert doc.with_workload(list(doc.pcr23_events or ())).canonical_id() == doc.canonical_id()
    assert doc.with_workload(events, name="next").name == "next"


def test_an_update_extends_the_base_events_and_a_directory_is_a_fresh_boot(base: Path, tmp_path: Path) -> None:
    files = {**WORKLOAD, "config/app.toml": NEW_CONFIG}
    archive = tmp_path / "update.zip"
    archive.write_bytes(make_zip(files))
    directory = _workload_dir(tmp_path / "workload", {k: v for k, v in files.items() if not k.startswith("secrets/")})
    items = measure_directory(directory)
    assert measure_archive(archive) == items  # secrets/ in the archive is never measured

    out = tmp_path / "predicted.json"
    updated = _ok("--base", base, "--update", archive, "--out", out, "--name", "v2")
    running = list(GoldenMeasurement.from_file(base).pcr23_events or ())
    assert updated["events"] == len(running) + len(items)  # PCR23 is not reset by an update
    assert updated["pcr23"] == replay([*running, *items]).hex()
    written = GoldenMeasurement.from_file(out)
    assert "0x" + written.canonical_id().hex() == updated["golden_id"] and written.name == "v2"
    assert written.to_json() == updated["golden"]

    booted = _ok("--base", base, "--workload", directory)
    assert (booted["events"], booted["pcr23"]) == (len(items), replay(items).hex())
    assert booted["golden_id"] != updated["golden_id"]


def test_an_update_needs_the_base_event_list(base: Path, tmp_path: Path) -> None:
    doc = GoldenMeasurement.from_file(base).to_json()
    del doc["pcr23_events"]
    (tmp_path / "no-events.json").write_text(json.dumps(doc))
    (tmp_path / "update.zip").write_bytes(make_zip(WORKLOAD))
    result = _run("--base", tmp_path / "no-events.json", "--update", tmp_path / "update.zip")
    assert (result.exit_code, json.loads(result.stdout)["reason"]) == (2, Reason.INPUT_INVALID.value)


def test_an_archive_the_agent_would_refuse_is_refused(base: Path, tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({**WORKLOAD, "../escape": b"x"}))
    result = _run("--base", base, "--update", archive)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reason"].startswith("workload.archive.")
    with pytest.raises(RequestError):
        measure_archive(archive)


@pytest.mark.parametrize(
    ("compose", "reason", "code"),
    [(TPM_COMPOSE, Reason.WORKLOAD_COMPOSE_FORBIDDEN, 1), (b"services: [app\n", Reason.WORKLOAD_COMPOSE_MALFORMED, 2)],
    ids=["gives-the-tpm", "malformed"],  # a compose file that does not parse is malformed input: exit 2 (issue 14, defect 8)
)
@pytest.mark.parametrize("source", ["--update", "--workload"])
def test_a_compose_the_agent_would_refuse_is_refused(
    base: Path, tmp_path: Path, source: str, compose: bytes, reason: Reason, code: int
) -> None:
    files = {**WORKLOAD, "docker-compose.yml": compose}
    (tmp_path / "update.zip").write_bytes(make_zip(files))
    _workload_dir(tmp_path / "workload", files)
    out = tmp_path / "predicted.json"
    path = tmp_path / ("update.zip" if source == "--update" else "workload")
    result = _run("--base", base, source, path, "--out", out)
    assert (result.exit_code, json.loads(result.stdout)["reason"]) == (code, reason.value)
    assert not out.exists()  # nothing to publish
    assert _ok("--base", base, source, _safe_twin(tmp_path, source))["events"] > 0


def _safe_twin(tmp_path: Path, source: str) -> Path:
    if source == "--update":
        (tmp_path / "safe.zip").write_bytes(make_zip(WORKLOAD))
        return tmp_path / "safe.zip"
    return _workload_dir(tmp_path / "safe", WORKLOAD)


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["--base", "{base}"], 2, Reason.INPUT_INVALID),
        (["--base", "{base}", "--update", "{tmp}/update.zip", "--workload", "{tmp}"], 2, Reason.INPUT_INVALID),
        (["--base", "{base}", "--workload", "{tmp}/missing"], 2, Reason.INPUT_UNREADABLE),
        (["--base", "{tmp}/bad.json", "--workload", "{tmp}"], 2, Reason.GOLDEN_MALFORMED),
        (["--base", "{base}", "--workload", "{tmp}", "--out", "{base}/under-a-file.json"], 2, Reason.INPUT_INVALID),
    ],
    ids=["no-source", "two-sources", "missing-directory", "bad-base", "unwritable-out"],
)
def test_bad_input_is_refused_with_a_reason(
    base: Path, tmp_path: Path, args: list[str], code: int, reason: Reason
) -> None:
    (tmp_path / "bad.json").write_text('{"version": 1}')
    result = _run(*(a.format(base=base, tmp=tmp_path) for a in args))
    assert (result.exit_code, json.loads(result.stdout)["reason"]) == (code, reason.value)
