"""A software TPM 2.0 (swtpm) on 127.0.0.1, for development, the demo and tests.

swtpm is a real TPM 2.0 implementation (libtpms) behind a TCP socket. The tpm2-tss ``swtpm``
TCTI talks to the command port and to the control port at ``port + 1``, so :func:`start_swtpm`
picks two consecutive free ports at run time and retries when another process wins the race for
one of them. swtpm has no resource manager: whoever talks to it must flush transient objects.

Usage::

    with running_swtpm() as tpm:
        agent_config.tcti = tpm.tcti      # "swtpm:host=127.0.0.1,port=N"
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from offchain.errors import PlatformError, Reason

HOST = "127.0.0.1"
_START_ATTEMPTS = 5
_CONNECT_ATTEMPTS = 400
_POLL_SECONDS = 0.025
_STOP_SECONDS = 10


def swtpm_available() -> bool:
    """Whether the ``swtpm`` binary is on PATH."""
    return shutil.which("swtpm") is not None


def consecutive_free_ports() -> int:
    """A port P on 127.0.0.1 such that P and P + 1 are both free right now."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind((HOST, 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind((HOST, port + 1))
                except OSError:
                    continue
                return port
    raise PlatformError(Reason.TPM_UNAVAILABLE, "no two consecutive free TCP ports on 127.0.0.1")


class Swtpm:
    """A running swtpm process: its ports, state directory and TCTI string."""

    def __init__(self, port: int, state_dir: Path, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.ctrl_port = port + 1
        self.state_dir = state_dir
        self.process = process

    @property
    def tcti(self) -> str:
        """The agent's ``--tpm`` value (and TPM2TOOLS_TCTI) for this TPM."""
        return f"swtpm:host={HOST},port={self.port}"

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL if it does not exit) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _command(port: int, state_dir: Path) -> list[str]:
    return [
        "swtpm",
        "socket",
        "--tpm2",
        "--server",
        f"type=tcp,port={port},bindaddr={HOST}",
        "--ctrl",
        f"type=tcp,port={port + 1},bindaddr={HOST}",
        "--flags",
        "not-need-init,startup-clear",
        "--tpmstate",
        f"dir={state_dir}",
    ]


def _wait_listening(tpm: Swtpm) -> bool:
    """True once both ports accept connections; False if the process exited first."""
    for _ in range(_CONNECT_ATTEMPTS):
        if tpm.process.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, tpm.ctrl_port), timeout=_POLL_SECONDS):
                pass
            with socket.create_connection((HOST, tpm.port), timeout=_POLL_SECONDS):
                return True
        except OSError:
            try:
                tpm.process.wait(timeout=_POLL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
    return False


def start_swtpm(state_dir: Path) -> Swtpm:
    """Start swtpm with its state in ``state_dir`` (kept across restarts) on fresh ports.

    Raises ``tpm.unavailable`` when swtpm is missing or does not come up.
    """
    if not swtpm_available():
        raise PlatformError(Reason.TPM_UNAVAILABLE, "swtpm is not installed (Debian package 'swtpm')")
    state_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(_START_ATTEMPTS):
        port = consecutive_free_ports()
        process = subprocess.Popen(
            _command(port, state_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tpm = Swtpm(port, state_dir, process)
        if _wait_listening(tpm):
            return tpm
        tpm.stop()  # lost the port race or failed: try other ports
    raise PlatformError(Reason.TPM_UNAVAILABLE, "swtpm did not start listening")


@contextmanager
def running_swtpm(state_dir: Path | None = None) -> Iterator[Swtpm]:
    """A started swtpm, always stopped afterwards; a temporary state directory unless given one."""
    if state_dir is not None:
        tpm = start_swtpm(state_dir)
        try:
            yield tpm
        finally:
            tpm.stop()
        return
    with tempfile.TemporaryDirectory(prefix="cvm-attest-swtpm-") as tmp:
        tpm = start_swtpm(Path(tmp))
        try:
            yield tpm
        finally:
            tpm.stop()
