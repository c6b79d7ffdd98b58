"""agent.workload on a real swtpm: PCR23 and the event log agree at start and after updates; a bad
update changes nothing; the runner sees the new workload."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AkKind, Tcti
from agent.tpm import AgentTpm
from agent.workload import EventLog, Runner, Workload, seed_workload, swap_directories
from offchain.abi.workload import WorkloadEvent, measure_directory, parse_event_log, replay
from offchain.errors import CvmAttestError, ParseError, PlatformError, Reason, RequestError, VerificationError
from tests.support.agent import TPM_COMPOSE, WORKLOAD, make_zip, oci_tarball, symlink_entry, tree_digest, write_tree
from tests.support.swtpm import Swtpm
from workload.archive import ArchiveLimits
from workload.compose import ComposeRules


class Recorder:
    """Runner and image-loader commands that append their arguments and directory to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def command(self, label: str, exit_code: int = 0) -> tuple[str, ...]:
        return ("sh", "-c", f'echo "{label} $PWD $*" >> {self.path}; exit {exit_code}', label)

    def loader(self) -> tuple[str, ...]:
        """An image loader that records the SHA-256 of the file it was given (a private copy)."""
        return ("sh", "-c", f'echo "load $PWD $(sha256sum < "$1" | cut -d" " -f1)" >> {self.path}', "load")

    def calls(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []


@pytest.fixture
def tpm(swtpm: Swtpm) -> Iterator[AgentTpm]:
    opened = AgentTpm.open(Tcti.parse(swtpm.tcti))
    opened.create_ak(AkKind.ECC)
    yield opened
    opened.close()


def _workload(tpm: AgentTpm, root: Path, recorder: Recorder, runner_exit: int = 0) -> Workload:
    runner = Runner(recorder.command("run", runner_exit), recorder.loader(), timeout=60)
    return Workload(
        tpm, root / "workload", EventLog(root / "state/event-log.jsonl"), runner, ArchiveLimits(), ComposeRules()
    )


@pytest.fixture
def recorder(tmp_path: Path) -> Recorder:
    return Recorder(tmp_path / "calls.txt")


def test_start_measures_and_logs(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    workload = _workload(tpm, tmp_path, recorder)
    assert workload.start(reset_pcr23=True) is True
    expected = measure_directory(tmp_path / "workload")
    assert [(e.kind, e.name) for e in expected] == [
        ("compose", "docker-compose.yml"), ("config", "config/app.toml"), ("config", "config/nested/limits.json")
    ]
    assert workload.events() == expected
    assert parse_event_log(workload.log.path.read_text()) == expected
    assert tpm.read_pcrs([23])[23] == replay(expected)
    workload.run()
    assert workload.status == "running"
    assert recorder.calls() == [f"run {tmp_path / 'workload'} "]


def _boot_step(tpm: AgentTpm, root: Path, events: list[WorkloadEvent]) -> None:
    """What the image's boot step does before the agent starts: extend, log."""
    tpm.reset_pcr(23)
    log = EventLog(root / "state/event-log.jsonl")
    log.truncate()
    for event in events:
        tpm.extend_pcr(23, event.digest)
        log.append(event)


def test_agent_adopts_the_boot_steps_measurement(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    events = measure_directory(tmp_path / "workload")
    _boot_step(tpm, tmp_path, events)
    workload = _workload(tpm, tmp_path, recorder)
    assert workload.start(reset_pcr23=False) is False
    assert workload.events() == events
    assert tpm.read_pcrs([23])[23] == replay(events)


def test_log_that_does_not_replay_stops_the_start(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    events = measure_directory(tmp_path / "workload")
    _boot_step(tpm, tmp_path, events)
    tpm.extend_pcr(23, bytes(32))  # someone extended PCR23 without logging it
    with pytest.raises(VerificationError) as exc:
        _workload(tpm, tmp_path, recorder).start(reset_pcr23=False)
    assert exc.value.reason is Reason.EVENT_LOG_REPLAY_MISMATCH


def test_nothing_measured_yet_means_the_agent_measures(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    tpm.reset_pcr(23)
    workload = _workload(tpm, tmp_path, recorder)
    assert workload.start(reset_pcr23=False) is True
    assert tpm.read_pcrs([23])[23] == replay(measure_directory(tmp_path / "workload"))


def test_missing_workload_directory_measures_nothing(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    workload = _workload(tpm, tmp_path, recorder)
    assert workload.start(reset_pcr23=True) is True
    assert workload.events() == []
    assert tpm.read_pcrs([23])[23] == bytes(32)
    workload.run()
    assert workload.status == "no workload"
    assert recorder.calls() == []


NEW_WORKLOAD = {
    "docker-compose.yml": WORKLOAD["docker-compose.yml"],
    "config/app.toml": b"[app]\nmode = 'staging'\n",
}


def test_update_swaps_measures_and_runs(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    workload = _workload(tpm, tmp_path, recorder)
    workload.start(reset_pcr23=True)
    before = workload.events()
    image, digest = oci_tarball("registry.example/app:2")
    result = workload.apply_update(io.BytesIO(make_zip({**NEW_WORKLOAD, "images/app.tar": image})))

    root = tmp_path / "workload"
    assert (root / "config/app.toml").read_bytes() == NEW_WORKLOAD["config/app.toml"]
    assert not (root / "config/nested").exists()
    assert (root / "images.txt").read_text() == f"registry.example/app:2 sha256:{digest.hex()}\n"
    assert [(e.kind, e.name) for e in result.events] == [
        ("image", "registry.example/app:2"), ("compose", "docker-compose.yml"), ("config", "config/app.toml")
    ]
    assert result.events[0].content_digest == digest
    assert all(not e.name.startswith("secrets") for e in result.events)
    assert workload.events() == before + list(result.events)
    assert parse_event_log(workload.log.path.read_text()) == before + list(result.events)
    assert result.pcr23 == tpm.read_pcrs([23])[23] == replay(before + list(result.events))
    assert recorder.calls() == [f"load {root} {hashlib.sha256(image).hexdigest()}", f"run {root} "]
    assert workload.status == "running"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.txt", "state", "workload"]  # no staging left


def test_a_tarball_changed_after_it_was_measured_is_not_loaded(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    """PCR23 measures images.txt; the host could swap a tarball on the workload's disk afterwards."""
    write_tree(tmp_path / "workload", WORKLOAD)
    workload = _workload(tpm, tmp_path, recorder)
    workload.start(reset_pcr23=True)
    image, _ = oci_tarball("registry.example/app:2")
    workload.apply_update(io.BytesIO(make_zip({**NEW_WORKLOAD, "images/app.tar": image})))
    root = tmp_path / "workload"
    other, other_digest = oci_tarball("registry.example/app:2", content=b"not what was measured")
    (root / "images/app.tar").write_bytes(other)
    calls = len(recorder.calls())
    with pytest.raises(VerificationError) as caught:
        workload.runner.start(root)
    assert caught.value.reason is Reason.WORKLOAD_IMAGE_UNMEASURED
    assert caught.value.context == {"image": "registry.example/app:2", "tarball": "app.tar"}
    assert other_digest.hex() in caught.value.detail
    assert len(recorder.calls()) == calls  # neither loaded nor run


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (make_zip({**NEW_WORKLOAD, "config/../../x": b"x"}), Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (make_zip([*NEW_WORKLOAD.items(), symlink_entry("config/passwd", "/etc/passwd")]),
         Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH),
        (make_zip({**NEW_WORKLOAD, "images/app.tar": b"not a tarball"}), Reason.WORKLOAD_ARCHIVE_INVALID),
        (make_zip({**NEW_WORKLOAD, "images.txt": b"broken line\n"}), Reason.WORKLOAD_ARCHIVE_INVALID),
        (make_zip({**NEW_WORKLOAD, "images.txt": b"registry.example/app:2 sha256:" + b"00" * 32 + b"\n",
                   "images/app.tar": oci_tarball("registry.example/app:2")[0]}), Reason.WORKLOAD_ARCHIVE_INVALID),
        (b"garbage", Reason.WORKLOAD_ARCHIVE_INVALID),
        # The TPM in a container could reset PCR23 and replay the old events: refused before it is measured.
        (make_zip({**NEW_WORKLOAD, "docker-compose.yml": TPM_COMPOSE}), Reason.WORKLOAD_COMPOSE_FORBIDDEN),
        (make_zip({**NEW_WORKLOAD, "docker-compose.yml": TPM_COMPOSE,
                   "images/app.tar": oci_tarball("registry.example/app:2")[0]}), Reason.WORKLOAD_COMPOSE_FORBIDDEN),
        (make_zip({**NEW_WORKLOAD, "docker-compose.yml": b"services: [app\n"}), Reason.WORKLOAD_COMPOSE_MALFORMED),
    ],
    ids=["traversal", "symlink", "bad-image", "bad-images-txt", "image-listed-twice", "not-a-zip",
         "compose-gives-the-tpm", "compose-gives-the-tpm-with-images", "compose-malformed"],
)
def test_rejected_update_changes_nothing(
    tpm: AgentTpm, tmp_path: Path, recorder: Recorder, archive: bytes, reason: Reason
) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    workload = _workload(tpm, tmp_path, recorder)
    workload.start(reset_pcr23=True)
    tree, pcr23, log_text = tree_digest(tmp_path / "workload"), tpm.read_pcrs([23])[23], workload.log.path.read_text()
    with pytest.raises(CvmAttestError) as exc:
        workload.apply_update(io.BytesIO(archive))
    assert exc.value.reason is reason
    assert tree_digest(tmp_path / "workload") == tree
    assert tpm.read_pcrs([23])[23] == pcr23
    assert workload.log.path.read_text() == log_text
    assert recorder.calls() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "workload"]


@pytest.mark.parametrize("reset_pcr23", [True, False], ids=["reset", "measured-at-boot"])
def test_a_forbidden_workload_stops_the_start(
    tpm: AgentTpm, tmp_path: Path, recorder: Recorder, reset_pcr23: bool
) -> None:
    write_tree(tmp_path / "workload", {**WORKLOAD, "docker-compose.yml": TPM_COMPOSE})
    tpm.extend_pcr(23, b"\x01" * 32)  # so a reset would show
    (tmp_path / "state").mkdir()
    (tmp_path / "state/event-log.jsonl").write_text("")
    pcr23 = tpm.read_pcrs([23])[23]
    workload = _workload(tpm, tmp_path, recorder)
    with pytest.raises(RequestError) as exc:
        workload.start(reset_pcr23=reset_pcr23)
    assert exc.value.reason is Reason.WORKLOAD_COMPOSE_FORBIDDEN
    assert [(v["service"], v["key"]) for v in exc.value.context["violations"]] == [("app", "devices")]
    assert tpm.read_pcrs([23])[23] == pcr23
    assert (tmp_path / "state/event-log.jsonl").read_text() == ""
    assert workload.events() == [] and recorder.calls() == []


def test_runner_failure_after_install(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    workload = _workload(tpm, tmp_path, recorder, runner_exit=3)
    workload.start(reset_pcr23=True)
    before = workload.events()
    with pytest.raises(PlatformError) as exc:
        workload.apply_update(io.BytesIO(make_zip(NEW_WORKLOAD)))
    assert exc.value.reason is Reason.WORKLOAD_RUNNER_FAILED
    assert exc.value.context["exit_code"] == 3
    assert workload.status == "runner failed"
    # Installed and measured: PCR23 describes what is on disk and what the runner was asked to start.
    assert (tmp_path / "workload/config/app.toml").read_bytes() == NEW_WORKLOAD["config/app.toml"]
    assert tpm.read_pcrs([23])[23] == replay(workload.events()) != replay(before)


def test_runner_that_cannot_run(tpm: AgentTpm, tmp_path: Path) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    runner = Runner(("/nonexistent/podman-compose", "up"), ("true",), timeout=60)
    workload = Workload(
        tpm, tmp_path / "workload", EventLog(tmp_path / "log.jsonl"), runner, ArchiveLimits(), ComposeRules()
    )
    workload.start(reset_pcr23=True)
    workload.run()
    assert workload.status == "runner failed"
    with pytest.raises(CvmAttestError) as exc:
        runner.start(tmp_path / "workload")
    assert exc.value.reason is Reason.WORKLOAD_RUNNER_FAILED


def test_swap_directories(tmp_path: Path) -> None:
    current, staged = write_tree(tmp_path / "cur", {"a": b"old"}), write_tree(tmp_path / "new", {"a": b"new"})
    swap_directories(current, staged)
    assert (current / "a").read_bytes() == b"new" and (staged / "a").read_bytes() == b"old"
    fresh = write_tree(tmp_path / "fresh", {"b": b"1"})
    swap_directories(tmp_path / "absent", fresh)
    assert (tmp_path / "absent/b").read_bytes() == b"1" and not fresh.exists()


def test_event_log_file_is_json_lines(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    workload = _workload(tpm, tmp_path, recorder)
    workload.start(reset_pcr23=True)
    lines = workload.log.path.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert set(first) == {"pcr", "kind", "name", "content_digest", "event_digest"} and first["pcr"] == 23


def test_corrupt_event_log_is_a_typed_error(tpm: AgentTpm, tmp_path: Path, recorder: Recorder) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state/event-log.jsonl").write_text("{not json\n")
    with pytest.raises(CvmAttestError) as exc:
        _workload(tpm, tmp_path, recorder).start(reset_pcr23=False)
    assert exc.value.reason is Reason.EVENT_LOG_MALFORMED


def test_the_workload_is_seeded_into_memory_once(tmp_path: Path) -> None:
    """The image's agent copies the read-only workload partition into its in-memory workload
    directory at its first start of a boot, and keeps what is there on a restart (an update and its
    secrets)."""
    partition = write_tree(tmp_path / "partition", WORKLOAD)
    target = tmp_path / "state" / "workload"
    assert seed_workload(partition, target) is True
    assert measure_directory(target) == measure_directory(partition)
    assert sorted(p.name for p in target.parent.iterdir()) == ["workload"]  # no staging left
    (target / "config" / "app.toml").write_bytes(b"updated since")
    assert seed_workload(partition, target) is False
    assert (target / "config" / "app.toml").read_bytes() == b"updated since"
    with pytest.raises(ParseError) as caught:
        seed_workload(tmp_path / "absent", tmp_path / "other")
    assert caught.value.reason is Reason.INPUT_UNREADABLE
    assert not (tmp_path / "other").exists()
