"""A real ``cvm-agent`` process on a real swtpm (the internal listener on a Unix socket under the
test's directory, the external one on a free port), and ``cvm-cli`` as a subprocess: what the
agent's integration tests drive from outside."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.agent import WORKLOAD, write_tree
from tests.support.swtpm import Swtpm

CVM_AGENT = Path(sys.executable).parent / "cvm-agent"
CVM_CLI = Path(sys.executable).parent / "cvm-cli"
TOKEN = "integration-token-0123456789"
_READY_ATTEMPTS = 600


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (what ``curl --unix-socket`` does)."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.unix_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def unix_request(path: Path, method: str, route: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """One request over the Unix socket at ``path``: ``(status, JSON or None, raw body)``."""
    connection = UnixHTTPConnection(path)
    try:
        connection.request(method, route, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None, raw
    finally:
        connection.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AgentProcess:
    process: subprocess.Popen[bytes]
    root: Path
    #: ``--internal`` as given: ``unix:PATH`` or ``HOST:PORT``.
    internal: str
    external: str
    scheme: str = "http"

    @property
    def internal_socket(self) -> Path | None:
        return Path(self.internal.removeprefix("unix:")) if self.internal.startswith("unix:") else None

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def workload_dir(self) -> Path:
        return self.root / "workload"

    @property
    def runner_log(self) -> Path:
        return self.root / "runner.log"

    def url(self, path: str, *, internal: bool = False) -> str:
        host = self.internal if internal else self.external
        return f"{'http' if internal else self.scheme}://{host}{path}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                *, internal: bool = False, context: Any = None) -> tuple[int, Any, bytes]:
        """``(status, JSON or None, raw body)``; HTTP errors are returned, not raised."""
        if internal and self.internal_socket is not None:
            return unix_request(self.internal_socket, method, path, body, headers)
        req = urllib.request.Request(self.url(path, internal=internal), data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60, context=context) as response:
                raw = response.read()
                return response.status, json.loads(raw), raw
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw), raw

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_agent(tpm: Swtpm, root: Path, *extra: str, tls: tuple[Path, Path] | None = None,
                internal: str | None = None, runner: str | None = None) -> AgentProcess:
    """Start ``cvm-agent --platform sim`` with the test WORKLOAD and a runner that records its calls.

    The internal listener is ``unix:ROOT/run/internal.sock`` unless ``internal`` says otherwise
    (``HOST:PORT`` opts in to TCP); ``extra`` may add ``--consent-golden 0xID`` and any other option;
    ``runner`` replaces the recording runner (it runs in the workload directory).
    """
    write_tree(root / "workload", WORKLOAD)
    (root / "token").write_text(TOKEN + "\n")
    internal = internal or f"unix:{root / 'run' / 'internal.sock'}"
    external = f"127.0.0.1:{free_port()}"
    runner = runner or f"sh -c 'echo \"$PWD\" >> {root / 'runner.log'}'"
    args = [str(CVM_AGENT), "--platform", "sim", "--tpm", tpm.tcti, "--state-dir", str(root / "state"),
            "--workload-dir", str(root / "workload"), "--internal", internal, "--external", external,
            "--token-file", str(root / "token"), "--runner", runner, "--image-loader", "true", *extra]
    if tls is not None:
        args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    log = open(root / "agent.log", "wb")
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    agent = AgentProcess(process, root, internal, external, "https" if tls else "http")
    for _ in range(_READY_ATTEMPTS):  # bounded by attempts; speed is not what this measures
        if process.poll() is not None:
            raise AssertionError(f"cvm-agent exited {process.returncode}: {(root / 'agent.log').read_text()}")
        try:
            status, _, _ = agent.request("GET", "/healthz", internal=True)
            if status == 200:
                return agent
        except (OSError, http.client.HTTPException):
            pass
        try:
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
    agent.stop()
    raise AssertionError("cvm-agent did not become ready")


def cvm_cli(*args: str) -> tuple[int, dict[str, Any]]:
    """Run ``cvm-cli ... --json`` as a subprocess: exit status and its one JSON object."""
    done = subprocess.run([str(CVM_CLI), *args, "--json"], capture_output=True, timeout=120, check=False)
    return done.returncode, json.loads(done.stdout)
