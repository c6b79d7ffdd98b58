"""A real software TPM (swtpm) on 127.0.0.1 for tests that cross-check against an independent TPM.

The swtpm TCTI of tpm2-tools talks to the command port and to the control port at port + 1, so
two consecutive free ports are chosen at run time. ``running_swtpm`` always stops the process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REQUIRED_TOOLS = ("swtpm", "tpm2_pcrextend", "tpm2_pcrread", "tpm2_createprimary", "tpm2_quote")


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def _consecutive_free_ports() -> int:
    for _ in range(100):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free TCP ports on 127.0.0.1")


class Swtpm:
    """A started swtpm and a ``run`` helper for tpm2-tools commands against it."""

    def __init__(self, port: int, workdir: Path, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.workdir = workdir
        self.process = process
        self.env = dict(os.environ, TPM2TOOLS_TCTI=f"swtpm:host=127.0.0.1,port={port}")

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Run one tpm2-tools command in the work directory; a failure fails the test loudly."""
        result = subprocess.run(args, cwd=self.workdir, env=self.env, capture_output=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
        return result

    def flush_transient(self) -> None:
        """swtpm has no resource manager: drop transient objects after each use."""
        self.run("tpm2_flushcontext", "-t")


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    # Bounded by the number of attempts, not by a timer the test measures.
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"swtpm exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.05):
                return
        except OSError:
            try:
                process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
    raise RuntimeError("swtpm did not start listening")


@contextmanager
def running_swtpm() -> Iterator[Swtpm]:
    """Start a fresh swtpm (new state directory, TPM2_Startup done) and stop it afterwards."""
    with tempfile.TemporaryDirectory(prefix="cvm-attest-swtpm-") as tmp:
        workdir = Path(tmp)
        port = _consecutive_free_ports()
        process = subprocess.Popen(
            [
                "swtpm",
                "socket",
                "--tpm2",
                "--tpmstate",
                f"dir={workdir}",
                "--server",
                f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl",
                f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--flags",
                "not-need-init,startup-clear",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_until_listening(port, process)
            yield Swtpm(port, workdir, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
