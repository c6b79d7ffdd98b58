"""The workload next to the agent: its measurement into PCR23, the event log, updates, the runner.

Measurement (PROTOCOL.md, "Workload measured into PCR23"; docs/formats.md): every item that
:func:`offchain.abi.workload.measure_directory` yields (images by digest, ``docker-compose.yml``,
every file under ``config/``; never ``secrets/``) is extended into PCR23 with its
:func:`~offchain.abi.workload.event_digest`, and each extend is appended to the event log (JSON
lines, ``<state-dir>/event-log.jsonl``) right after the TPM accepted it, so the log always replays
to PCR23.

At start (:meth:`Workload.start`):

* with ``reset_pcr23`` (development, swtpm, the simulated platform: the agent owns PCR23) the
  agent resets PCR23, truncates the log and measures the workload directory;
* otherwise (a real CVM, where the image's boot step measured the workload with the same function
  before anything ran) the agent checks that the log replays to PCR23 and only appends from then
  on; when both are still empty, nothing was measured yet and the agent measures the workload
  before starting it. A log that does not replay to PCR23 stops the agent.

Both at start and on an update, a ``docker-compose.yml`` that gives a container the TPM, the SEV
guest device, the host's namespaces or the agent's state is refused (:mod:`workload.compose`):
such a container could reset PCR23 and replay the golden events.

An update (:meth:`Workload.apply_update`) is checked and extracted into a staging directory next
to the workload directory, its compose file checked, measured there, swapped in with one ``renameat2(RENAME_EXCHANGE)``,
extended into PCR23 and logged, and only then started through the runner. Any failure before the
swap leaves the running workload, PCR23 and the log untouched. The current ``secrets/`` moves into
the new workload: an update archive never carries secrets (workload.archive).

Secrets (:meth:`Workload.install_secrets`) arrive sealed (agent.sealing) and are written into
``secrets/`` only when the workload directory is in memory (tmpfs or ramfs): never onto a disk the
host can read. They are staged, then swapped in whole, so the workload sees the old set or the new.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hmac
import logging
import os
import secrets as secrets_module
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from offchain.abi.workload import (
    IMAGES_DIR,
    SECRETS_DIR,
    WORKLOAD_PCR,
    WorkloadEvent,
    dump_event_log,
    measure_directory,
    parse_event_log,
    replay,
)
from offchain.errors import CvmAttestError, ParseError, PlatformError, Reason, VerificationError

from agent.tpm import AgentTpm
from workload.archive import ArchiveLimits, check_tarball_listed, extract_archive, listed_images, measure_staged
from workload.compose import ComposeRules, check_workload_dir

log = logging.getLogger("cvm_agent.workload")

_RENAME_EXCHANGE = 1 << 1
_OUTPUT_TAIL = 2000
#: statfs f_type of the file systems that keep their files in memory (linux/magic.h).
_IN_MEMORY_FILESYSTEMS = {0x01021994: "tmpfs", 0x858458F6: "ramfs"}


def filesystem_type(path: Path) -> int:
    """statfs(2)'s ``f_type`` of the file system holding ``path`` (the first field of struct statfs)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    buffer = ctypes.create_string_buffer(256)
    if libc.statfs(os.fsencode(path), buffer) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return int.from_bytes(buffer.raw[: ctypes.sizeof(ctypes.c_long)], sys.byteorder)


class EventLog:
    """The PCR23 event log on disk: JSON lines, appended and fsync'ed one extend at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[WorkloadEvent]:
        """Every logged event; an absent file is an empty log."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise ParseError(Reason.EVENT_LOG_MALFORMED, f"cannot read {self.path}: {exc}") from None
        return parse_event_log(text)

    def truncate(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as f:
            f.flush()
            os.fsync(f.fileno())

    def append(self, event: WorkloadEvent) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(dump_event_log([event]))
            f.flush()
            os.fsync(f.fileno())


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What an update measured and where PCR23 ended up."""

    events: tuple[WorkloadEvent, ...]
    pcr23: bytes
    files: tuple[str, ...]


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    at_fdcwd = -100
    result = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def swap_directories(current: Path, staged: Path) -> None:
    """Make ``staged`` the content of ``current``; the old content ends up at ``staged``.

    One atomic exchange where the kernel and file system support it; otherwise two renames, with
    a moment in which ``current`` does not exist.
    """
    if not current.exists():
        os.rename(staged, current)
        return
    try:
        _exchange(current, staged)
    except (OSError, AttributeError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        aside = staged.with_name(staged.name + ".old")
        os.rename(current, aside)
        os.rename(staged, current)
        os.rename(aside, staged)


def seed_workload(source: Path, directory: Path) -> bool:
    """Copy ``source`` into ``directory`` when ``directory`` does not exist (True), else leave it as
    it is (False: it holds the workload an earlier run of this boot installed, maybe updated, with
    its secrets). Copied into a staging directory and renamed into place, so a crash leaves no half
    copy; symbolic links are copied as links, and measurement refuses them under config/."""
    if directory.exists():
        return False
    if not source.is_dir():
        raise ParseError(Reason.INPUT_UNREADABLE, f"--workload-from {source} is not a directory", path=str(source))
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.seed-{secrets_module.token_hex(8)}")
    try:
        shutil.copytree(source, staging, symlinks=True)
        os.rename(staging, directory)
    except OSError as exc:
        raise PlatformError(Reason.INPUT_UNREADABLE, f"cannot copy the workload from {source} into {directory}: "
                            f"{exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("workload copied from %s into %s", source, directory)
    return True


class Runner:
    """Loads image tarballs and (re)starts the workload with the configured commands."""

    def __init__(self, command: tuple[str, ...], image_loader: tuple[str, ...], timeout: float) -> None:
        self.command = command
        self.image_loader = image_loader
        self.timeout = timeout

    def _run(self, argv: list[str], cwd: Path) -> None:
        try:
            done = subprocess.run(
                argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PlatformError(
                Reason.WORKLOAD_RUNNER_FAILED, f"{argv[0]} could not run: {exc}", command=argv
            ) from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout)[-_OUTPUT_TAIL:].decode(errors="replace")
            raise PlatformError(
                Reason.WORKLOAD_RUNNER_FAILED,
                f"{' '.join(argv)} exited with {done.returncode}",
                command=argv,
                exit_code=done.returncode,
                output=tail,
            )

    def start(self, workload_dir: Path) -> None:
        """Load each ``images/*.tar``, then run the runner, in ``workload_dir``.

        Each tarball is first copied into a private temporary file (in the CVM's memory on the
        image: ``/tmp`` is a tmpfs), checked there against ``images.txt`` (what PCR23 measured:
        :func:`workload.archive.check_tarball_listed`) and loaded from that same copy, so the bytes
        loaded are the bytes checked even when the workload's disk can be written by the host."""
        images = workload_dir / IMAGES_DIR
        tarballs = sorted(images.glob("*.tar")) if images.is_dir() else []
        if tarballs:
            listed = listed_images(workload_dir)
            for tarball in tarballs:
                with tempfile.NamedTemporaryFile(prefix="cvm-agent-image-", suffix=".tar") as copy:
                    with tarball.open("rb") as source:
                        shutil.copyfileobj(source, copy)
                    copy.flush()
                    check_tarball_listed(Path(copy.name), listed, tarball.name)
                    self._run([*self.image_loader, copy.name], workload_dir)
        self._run(list(self.command), workload_dir)


class Workload:
    """The measured workload: directory, PCR23, event log and updates. Thread safe."""

    def __init__(
        self,
        tpm: AgentTpm,
        directory: Path,
        event_log: EventLog,
        runner: Runner,
        limits: ArchiveLimits,
        rules: ComposeRules,
    ) -> None:
        self.tpm = tpm
        self.directory = directory
        self.log = event_log
        self.runner = runner
        self.limits = limits
        self.rules = rules
        self._events: list[WorkloadEvent] = []
        self._update_lock = threading.Lock()
        self.status = "not started"

    # --- measurement ---------------------------------------------------------------------------

    def events(self) -> list[WorkloadEvent]:
        """The events extended so far (a copy); consistent with PCR23 under ``tpm.exclusive()``."""
        with self.tpm.exclusive():
            return list(self._events)

    def _extend(self, events: list[WorkloadEvent]) -> bytes:
        with self.tpm.exclusive():
            for event in events:
                self.tpm.extend_pcr(WORKLOAD_PCR, event.digest)
                self._events.append(event)
                self.log.append(event)
            return self.tpm.read_pcrs([WORKLOAD_PCR])[WORKLOAD_PCR]

    def start(self, *, reset_pcr23: bool) -> bool:
        """Bring PCR23, the log and the directory into agreement (module docstring).

        Returns True when this call measured the workload (the agent then starts it). A workload
        whose ``docker-compose.yml`` breaks the rules (workload.compose) stops the agent before
        PCR23 or the log is touched.
        """
        if self.directory.is_dir():
            check_workload_dir(self.directory, self.rules)
        with self.tpm.exclusive():
            if reset_pcr23:
                self.tpm.reset_pcr(WORKLOAD_PCR)
                self.log.truncate()
            logged = self.log.read()
            pcr23 = self.tpm.read_pcrs([WORKLOAD_PCR])[WORKLOAD_PCR]
            replayed = replay(logged)
            if not hmac.compare_digest(replayed, pcr23):
                raise VerificationError(
                    Reason.EVENT_LOG_REPLAY_MISMATCH,
                    f"{self.log.path} does not replay to PCR23: another process extended PCR23, or the log is not"
                    " the boot step's",
                    pcr23=pcr23.hex(),
                    replayed=replayed.hex(),
                )
            self._events = logged
            if logged:
                self.status = "measured at boot"
                return False
            events = measure_directory(self.directory) if self.directory.is_dir() else []
            self._extend(events)
            self.status = "measured"
            return True

    def run(self) -> None:
        """Start the workload through the runner; a failure is logged and kept in ``status``."""
        if not self.directory.is_dir():
            self.status = "no workload"
            return
        try:
            self.runner.start(self.directory)
        except CvmAttestError as exc:
            self.status = "runner failed"
            output = exc.context.get("output")
            log.error("the workload did not start: %s%s", exc, f"\n{output}" if output else "")
            return
        self.status = "running"

    # --- updates -------------------------------------------------------------------------------

    def apply_update(self, archive: IO[bytes] | Path) -> UpdateResult:
        """Check, stage, measure, swap in, extend and log, then run (module docstring).

        Raises RequestError (``workload.archive.*``, ``workload.compose_forbidden``) or ParseError
        (``workload.compose_malformed``) with nothing changed for a bad archive, and PlatformError ``workload.runner_failed`` when the new workload is installed and measured
        but the runner failed.
        """
        with self._update_lock:
            parent = self.directory.parent
            parent.mkdir(parents=True, exist_ok=True)
            staging = parent / f".{self.directory.name}.staging-{secrets_module.token_hex(8)}"
            staging.mkdir(mode=0o755)
            try:
                files = extract_archive(archive, staging, self.limits)
                events = measure_staged(staging, self.rules)
                secrets = self.directory / SECRETS_DIR
                if secrets.is_dir():
                    os.rename(secrets, staging / SECRETS_DIR)
                try:
                    swap_directories(self.directory, staging)
                except OSError:
                    if (staging / SECRETS_DIR).is_dir():
                        os.rename(staging / SECRETS_DIR, secrets)
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            pcr23 = self._extend(events)
            log.info("workload updated: %d items measured, PCR23 %s", len(events), pcr23.hex())
            try:
                self.runner.start(self.directory)
            except CvmAttestError:
                self.status = "runner failed"
                raise
            self.status = "running"
            return UpdateResult(tuple(events), pcr23, tuple(files))

    # --- secrets -------------------------------------------------------------------------------

    def check_secrets_in_memory(self) -> None:
        """``secrets.not_in_memory`` unless the workload directory is on tmpfs or ramfs."""
        self.directory.mkdir(parents=True, exist_ok=True)
        kind = filesystem_type(self.directory)
        if kind not in _IN_MEMORY_FILESYSTEMS:
            raise PlatformError(
                Reason.SECRETS_NOT_IN_MEMORY,
                f"{self.directory} is not on tmpfs or ramfs (file system type {kind:#x}): secrets are written only "
                "to memory, never to a disk the host can read; run the agent with its --workload-dir in memory "
                "(the image does: /var/lib/cvm-agent is a tmpfs)",
            )

    def install_secrets(self, files: dict[str, bytes]) -> tuple[str, ...]:
        """Replace ``secrets/`` with ``files`` (names checked by offchain.seal.unpack_secrets), each
        mode 0600, the directory 0700; ``secrets.not_in_memory`` (nothing written) when the workload
        directory is not on tmpfs or ramfs. Returns the names written. Never measured, never logged
        but as a count."""
        with self._update_lock:
            self.check_secrets_in_memory()
            staging = self.directory / f".{SECRETS_DIR}.staging-{secrets_module.token_hex(8)}"
            staging.mkdir(mode=0o700)
            try:
                for name, content in sorted(files.items()):
                    target = staging / name
                    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(content)
                swap_directories(self.directory / SECRETS_DIR, staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            log.info("secrets installed: %d files", len(files))
            return tuple(sorted(files))
