"""``cvm-cli upload`` end to end on the local stack: a real agent process (sim platform, swtpm) with
its workload directory in memory (/dev/shm), the command line as a user runs it, and a host in the
middle (an HTTP proxy) that swaps the agent's sealing key or replays older evidence."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent import SECRET, WORKLOAD, tree_digest, write_tree
from tests.support.agent_process import CVM_CLI, TOKEN, AgentProcess, start_agent
from tests.support.swtpm import Swtpm
from workload.archive import pack_workload

pytestmark = pytest.mark.integration

NEW_CONFIG = b"[app]\nmode = 'uploaded'\n"


@pytest.fixture
def memory_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="cvm-upload-test-", dir="/dev/shm"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def agent(swtpm: Swtpm, memory_root: Path) -> Iterator[AgentProcess]:
    """The agent, whose runner copies what the workload sees in its secrets/ out for the test."""
    seen = memory_root / "seen"
    runner = f"sh -c 'mkdir -p {seen} && cp -r secrets/. {seen}/ 2>/dev/null; cp config/app.toml {seen}/app.toml'"
    process = start_agent(swtpm, memory_root / "cvm", runner=runner)
    yield process
    process.stop()


@pytest.fixture
def golden(agent: AgentProcess, tmp_path: Path) -> Path:
    """The golden measurement an owner published for this CVM as it runs now."""
    status, body, _ = agent.request("GET", "/golden-measurement")
    assert status == 200
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(body))
    return path


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    """The operator's workload directory: a changed config and a secret."""
    return write_tree(tmp_path / "my-workload", {**WORKLOAD, "config/app.toml": NEW_CONFIG, **SECRET})


def _upload(target: str, *args: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run([str(CVM_CLI), "upload", target, TOKEN, *args, "--json"], capture_output=True, timeout=180,
                          check=False)
    return done.returncode, json.loads(done.stdout), done.stderr.decode()


def _dev_root(agent: AgentProcess) -> str:
    return str(agent.state_dir / "sim" / "ark.pem")


def test_upload_verifies_then_sends_the_workload_and_seals_the_secrets(
    agent: AgentProcess, golden: Path, workload: Path, tmp_path: Path
) -> None:
    code, result, stderr = _upload(agent.external, "--workload", str(workload), "--golden", str(golden),
                                   "--dev-root", _dev_root(agent))
    assert code == 0, stderr
    assert result["ok"] is True and result["secrets_installed"] == 1
    # The workload saw its secret in its secrets/ (in memory) and its new config.
    seen = agent.root.parent / "seen"
    assert (seen / "api-key").read_bytes() == SECRET["secrets/api-key"]
    assert (seen / "app.toml").read_bytes() == NEW_CONFIG
    # PCR23 is what was predicted, and the predicted golden id is golden predict's.
    status, health, _ = agent.request("GET", "/healthz")
    assert status == 200 and health["pcr23"] == result["pcr23"]
    archive = tmp_path / "update.zip"
    archive.write_bytes(pack_workload(workload).archive)
    predicted = subprocess.run([str(CVM_CLI), "golden", "predict", "--base", str(golden), "--update", str(archive),
                                "--json"], capture_output=True, timeout=120, check=True)
    assert json.loads(predicted.stdout)["golden_id"] == result["golden_id"]
    assert json.loads(predicted.stdout)["pcr23"] == result["pcr23"]
    # The secret is in no log and not measured.
    secret = SECRET["secrets/api-key"].strip()
    for path in (agent.root / "agent.log", agent.state_dir / "event-log.jsonl"):
        assert secret not in path.read_bytes()
    _, events, _ = agent.request("GET", "/event-log")
    assert not [e for e in events if "secret" in e["name"]]


@pytest.mark.parametrize("wrong", ["golden", "dev-root"])
def test_an_unverified_cvm_gets_nothing(agent: AgentProcess, golden: Path, workload: Path, tmp_path: Path,
                                        wrong: str) -> None:
    before = tree_digest(agent.workload_dir)
    args = ["--workload", str(workload)]
    if wrong == "golden":
        document = json.loads(golden.read_text())
        document["measurement"] = "00" * 48
        other = tmp_path / "other-golden.json"
        other.write_text(json.dumps(document))
        args += ["--golden", str(other), "--dev-root", _dev_root(agent)]
        expected = "policy.measurement_mismatch"
    else:
        args += ["--golden", str(golden)]
        expected = "snp.chain.root_not_pinned"
    code, result, _ = _upload(agent.external, *args)
    assert code == 1 and result["reason"] == expected and result["sent"] is False
    # As a user reads it (the seed's form, without the word upload).
    human = subprocess.run([str(CVM_CLI), agent.external, TOKEN, *args], capture_output=True, timeout=180,
                           check=False)
    assert human.returncode == 1
    assert f"[{expected}]" in human.stderr.decode() and "nothing was sent to the CVM" in human.stderr.decode()
    assert tree_digest(agent.workload_dir) == before
    assert not (agent.workload_dir / "secrets").exists()


class _Host(BaseHTTPRequestHandler):
    """The host between the user and the agent: forwards everything, and tampers with the sealing
    evidence as ``server.mode`` says ("swap": its own key; "replay": an answer recorded earlier)."""

    server: Any

    def log_message(self, *args: object) -> None:
        return

    def _forward(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        self.server.seen.append((method, self.path))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
        request = urllib.request.Request(self.server.agent + self.path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        if self.path.startswith("/sealing/collaterals/") and status == 200:
            data = self.server.tamper(data)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._forward("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._forward("POST")


@pytest.fixture
def host(agent: AgentProcess) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Host)
    server.agent = f"http://{agent.external}"  # type: ignore[attr-defined]
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("mode", ["swap", "replay"])
def test_a_host_that_swaps_the_key_or_replays_evidence_gets_nothing(
    agent: AgentProcess, golden: Path, workload: Path, host: ThreadingHTTPServer, mode: str
) -> None:
    status, recorded, _ = agent.request("GET", "/sealing/collaterals/" + "ee" * 32)
    assert status == 200

    def tamper(data: bytes) -> bytes:
        if mode == "replay":
            return json.dumps(recorded).encode()
        bundle = json.loads(data)
        bundle["nonce"]["sealing_key"] = "42" * 32
        return json.dumps(bundle).encode()

    host.tamper = tamper  # type: ignore[attr-defined]
    before = tree_digest(agent.workload_dir)
    code, result, stderr = _upload(f"127.0.0.1:{host.server_address[1]}", "--workload", str(workload),
                                   "--golden", str(golden), "--dev-root", _dev_root(agent))
    assert code == 1, stderr
    assert result["reason"] == "tpm.quote.nonce_mismatch" and result["sent"] is False
    assert [m for m, _ in host.seen] == ["GET"]  # type: ignore[attr-defined]
    assert tree_digest(agent.workload_dir) == before
