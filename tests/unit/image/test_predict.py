"""image.predict and ``cvm-cli image predict|inspect`` on a small disk built with the real tools: the
prediction is the UKI's PCRs and the workload's PCR23, a golden measurement that pins them matches,
and each change (another workload file, another command line, a flipped root byte) is named."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from image.cli import image
from image.predict import BUILD_PCRS, compare, predict_disk
from image.uki import PLAIN_LAUNCH, build_uki, predict_pcrs
from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.abi.workload import WORKLOAD_PCR, replay
from offchain.devamd import DevAmdChain
from offchain.errors import Reason
from offchain.policy.golden import Binding, GoldenMeasurement
from tests.unit.image.test_disk import EPOCH, TOOLS, Built, build, expected_events, tool
from tests.unit.image.tools import as_kernel

CMDLINE_TAIL = "ro console=ttyS0"


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    for name in TOOLS:
        tool(name)


def _uki_maker(stub: bytes, tail: str = CMDLINE_TAIL):  # type: ignore[no-untyped-def]
    kernel = as_kernel(stub, 1)  # a PE the stub starts with LoadImage, as Debian's kernel

    def make(fragment: str) -> bytes:
        return build_uki(stub, linux=kernel, initrd=b"not an initrd\n" * 32,
                         cmdline=f"{fragment} {tail}", osrel=b"ID=debian\n", uname=None, timestamp=EPOCH)
    return make


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, stub: bytes) -> Built:
    return build(tmp_path_factory.mktemp("predict"), _uki_maker(stub))


@pytest.fixture(scope="module")
def golden_of(built: Built) -> GoldenMeasurement:
    """A golden measurement that pins what the build determines (the rest from a dev report)."""
    chain = DevAmdChain.generate(product=Product.GENOA, signer=SignerKind.VCEK)
    report = SnpReport.from_bytes(chain.sign(chain.report_template()).to_bytes())
    prediction = predict_disk(built.disk)
    events = expected_events(built.workload)
    return GoldenMeasurement.from_report(report, Product.GENOA, SignerKind.VCEK, Binding.DIRECT,
                                         pcrs=prediction.pcrs, events=events)


def test_the_prediction_is_the_ukis_pcrs_and_the_workloads(built: Built, stub: bytes) -> None:
    prediction = predict_disk(built.disk)
    assert sorted(prediction.pcrs) == list(BUILD_PCRS)
    uki = _uki_maker(stub)(built.layout.cmdline)
    expected = predict_pcrs(uki, PLAIN_LAUNCH)
    assert {i: prediction.pcrs[i] for i in (4, 9, 11, 12)} == {i: expected[i] for i in (4, 9, 11, 12)}
    assert prediction.pcrs[WORKLOAD_PCR] == replay(expected_events(built.workload))


def test_a_golden_that_pins_the_prediction_matches(built: Built, golden_of: GoldenMeasurement) -> None:
    assert compare(golden_of, predict_disk(built.disk)) == []


def test_another_workload_is_named_with_its_item(built: Built, golden_of: GoldenMeasurement, stub: bytes,
                                                 tmp_path: Path) -> None:
    other = build(tmp_path, _uki_maker(stub), config=b"greeting=bye!\n")
    (difference,) = compare(golden_of, predict_disk(other.disk))
    assert difference.pcr == WORKLOAD_PCR and any("config/app.conf" in item for item in difference.items)


def test_another_command_line_moves_the_uki_pcrs(built: Built, golden_of: GoldenMeasurement, stub: bytes,
                                                 tmp_path: Path) -> None:
    other = build(tmp_path, _uki_maker(stub, "ro console=ttyS0 init=/bin/sh"))
    assert sorted(d.pcr for d in compare(golden_of, predict_disk(other.disk))) == [4, 9, 11]


def _run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(image, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_predict_and_inspect(built: Built, golden_of: GoldenMeasurement, tmp_path: Path) -> None:
    directory = tmp_path / "out"
    directory.mkdir()
    shutil.copyfile(built.disk, directory / "disk.raw")
    (directory / "golden.json").write_text(golden_of.dumps())
    code, out, _ = _run("predict", directory, "--json")
    doc = json.loads(out)
    assert (code, doc["ok"], doc["differences"]) == (0, True, [])
    assert doc["pcrs"]["23"] == golden_of.pinned_pcrs()[23].hex()
    code, out, _ = _run("predict", directory)
    assert code == 0 and "every pinned PCR the build determines matches" in out
    # A golden.json that pins another PCR23: exit 1, the PCR named.
    wrong = dataclasses.replace(golden_of, pcrs={**golden_of.pinned_pcrs(), 23: bytes(32)}, pcr23_events=None)
    (directory / "golden.json").write_text(wrong.dumps())
    code, _, err = _run("predict", directory)
    assert code == 1 and err.startswith(f"[{Reason.IMAGE_PREDICTION_MISMATCH.value}]") and "PCR23" in err
    code, out, _ = _run("predict", directory, "--json")
    assert (code, json.loads(out)["reason"], json.loads(out)["differences"][0]["pcr"]) == (
        1, Reason.IMAGE_PREDICTION_MISMATCH.value, 23)
    code, out, _ = _run("inspect", directory / "disk.raw", "--json")
    assert code == 0 and json.loads(out)["verity"] == "verified"
    code, out, _ = _run("inspect", directory / "disk.raw")
    assert code == 0 and "dm-verity: the root verifies" in out and built.layout.cmdline in out


def test_cli_refusals(built: Built, tmp_path: Path) -> None:
    code, _, err = _run("predict", tmp_path)  # a directory without disk.raw
    assert code == 2 and err.startswith(f"[{Reason.INPUT_UNREADABLE.value}]")
    broken = tmp_path / "disk.raw"
    shutil.copyfile(built.disk, broken)
    root = built.layout.partition("root-x86-64")
    with broken.open("r+b") as f:
        f.seek(root.offset + 4096 + 17)
        byte = f.read(1)
        f.seek(root.offset + 4096 + 17)
        f.write(bytes([byte[0] ^ 1]))
    code, _, err = _run("inspect", broken)
    assert code == 1 and err.startswith(f"[{Reason.IMAGE_VERITY_MISMATCH.value}]")
    code, _, err = _run("predict", broken)
    assert code == 1 and err.startswith(f"[{Reason.IMAGE_VERITY_MISMATCH.value}]")


def test_a_workload_the_agent_would_refuse_is_not_built(stub: bytes, tmp_path: Path) -> None:
    # The compose rules of workload.compose run before the workload partition is built (issue 11, item 3).
    from image.disk import build_workload
    from offchain.errors import RequestError
    workload = tmp_path / "workload"
    workload.mkdir()
    (workload / "docker-compose.yml").write_text("services:\n  app:\n    image: app\n    privileged: true\n")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(RequestError) as exc:
        build_workload(workload, work, source_date_epoch=EPOCH)
    assert exc.value.reason is Reason.WORKLOAD_COMPOSE_FORBIDDEN and "privileged" in exc.value.detail
    assert not (work / "workload.erofs").exists()
    (workload / "docker-compose.yml").write_text("services:\n  app:\n    image: app\n")  # the safe twin
    work = tmp_path / "again"
    work.mkdir()
    assert build_workload(workload, work, source_date_epoch=EPOCH).filesystem.is_file()


# --- golden.json without a known launch measurement: cvm-cli image pin -----------------------------


def test_pin_keeps_the_references_firmware_pcrs_and_puts_in_the_builds(built: Built, golden_of: GoldenMeasurement,
                                                                        tmp_path: Path) -> None:
    directory = tmp_path / "out"
    directory.mkdir()
    shutil.copyfile(built.disk, directory / "disk.raw")
    firmware = {i: bytes([i]) * 32 for i in (0, 1, 2, 3, 5, 6, 7)}
    reference = dataclasses.replace(golden_of, pcrs=tuple(sorted({**firmware, **golden_of.pinned_pcrs()}.items())),
                                    name="reference VM")
    (tmp_path / "reference.json").write_text(reference.dumps())
    code, out, err = _run("pin", directory, "--from", tmp_path / "reference.json", "--json")
    assert code == 0, err
    pinned = GoldenMeasurement.from_file(directory / "golden.json")
    assert json.loads(out)["golden_id"] == "0x" + pinned.canonical_id().hex()
    assert pinned.measurement == reference.measurement and pinned.name == "reference VM"
    assert pinned.pinned_pcrs() == {**firmware, **predict_disk(built.disk).pcrs}
    # A reference that booted something else lends nothing: PCR23 named, golden.json unchanged.
    other = dataclasses.replace(reference, pcrs=tuple(sorted({**reference.pinned_pcrs(), 23: bytes(32)}.items())),
                                pcr23_events=None)
    (tmp_path / "other.json").write_text(other.dumps())
    before = (directory / "golden.json").read_bytes()
    code, _, err = _run("pin", directory, "--from", tmp_path / "other.json")
    assert code == 1 and err.startswith(f"[{Reason.IMAGE_PREDICTION_MISMATCH.value}]") and "PCR23" in err
    assert (directory / "golden.json").read_bytes() == before


def test_the_sim_golden_is_what_the_sim_platform_reports(built: Built, golden_of: GoldenMeasurement) -> None:
    """golden_of is from_report of a report the development chain signed with the sim's defaults."""
    from image.golden import sim_golden

    prediction = predict_disk(built.disk)
    predicted = sim_golden(prediction.pcrs, prediction.disk.workload_events, name=None)
    assert dataclasses.replace(predicted, measurement=golden_of.measurement) == golden_of


@pytest.mark.parametrize(
    ("args", "reason", "words"),
    [
        (["--format", "raw,qcow2"], Reason.INPUT_INVALID, "--format"),
        (["--platform", "tdx"], None, "tdx"),
        (["--api-token-sha256", "AB" * 32], Reason.INPUT_INVALID, "--api-token-sha256"),
        (["--source-date-epoch", "12"], Reason.INPUT_INVALID, "1980"),
    ],
    ids=["unknown-format", "unknown-platform", "uppercase-token-hash", "epoch-before-1980"],
)
def test_build_refuses_bad_options_before_building(tmp_path: Path, args: list[str], reason: Reason | None,
                                                   words: str | None) -> None:
    workload = tmp_path / "workload"
    workload.mkdir()
    (workload / "docker-compose.yml").write_text("services:\n  app:\n    image: app\n")
    code, _, err = _run("build", workload, "--out", tmp_path / "out", "--platform", "sim", *args)
    assert code == 2, err
    if reason is not None:
        assert err.startswith(f"[{reason.value}]")
    if words is not None:
        assert words in err
    assert not (tmp_path / "out" / "disk.raw").exists()


def test_build_refuses_a_directory_that_is_not_a_workload(tmp_path: Path) -> None:
    code, _, err = _run("build", tmp_path, "--out", tmp_path / "out")
    assert code == 2 and err.startswith(f"[{Reason.INPUT_INVALID.value}]") and "docker-compose.yml" in err


def test_build_as_another_user_than_root_says_so_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workload = tmp_path / "workload"
    workload.mkdir()
    (workload / "docker-compose.yml").write_text("services:\n  app:\n    image: app\n")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, _, err = _run("build", workload, "--out", tmp_path / "out", "--platform", "sim")
    assert code == 1 and err.startswith(f"[{Reason.IMAGE_TOOL_FAILED.value}]") and "needs root" in err
    assert not (tmp_path / "out").exists()
