"""cvm-agent's command line: option parsing, and clear startup errors (exit 2, ``[reason] message``)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.main import main
from localstack.swtpm import consecutive_free_ports
from tests.support.swtpm import Swtpm

CVM_AGENT = Path(sys.executable).parent / "cvm-agent"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(*args: str) -> tuple[int, str | None]:
    """Run cvm-agent to its startup error; returns the exit status and the ``[reason]`` it printed."""
    done = subprocess.run([str(CVM_AGENT), *args], capture_output=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)
    found = re.search(r"^\[([a-z0-9_.]+)\] ", done.stderr.decode(), re.MULTILINE)
    return done.returncode, found.group(1) if found else None


def _listeners() -> list[str]:
    return ["--internal", f"127.0.0.1:{_free_port()}", "--external", "off"]


@pytest.mark.parametrize(
    "args",
    [["--pcrs", "0-24"], ["--sim-measurement", "zz"], ["--internal", "nowhere"], ["--tpm", "tabrmd:x"],
     ["--platform", "tdx"], ["--tls-cert", "c.pem"], ["--internal", "unix:relative.sock"],
     ["--internal", "127.0.0.1:1", "--internal-group", "0"], ["--internal-group", "no-such-group-cvm-attest"],
     ["--consent-golden", "0x12"], ["--consent-file", "{tmp}/absent"], ["--consent-file", "{tmp}/workload/c"],
     ["--sim-debug"], ["--internal", "0.0.0.0:7999"], ["--internal", "[::]:7999"], ["--internal", "10.0.0.5:7999"]],
    ids=["pcrs", "measurement", "listener", "tcti", "platform", "tls-half", "relative-socket", "group-on-tcp",
         "unknown-group", "short-golden-id", "absent-consent-file", "consent-file-in-workload", "sim-debug-on-snp",
         "internal-any-v4", "internal-any-v6", "internal-lan"],
)
def test_usage_errors(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "workload").mkdir()
    (tmp_path / "workload" / "c").write_text("0x" + "11" * 32 + "\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(main, ["--state-dir", str(tmp_path), *args])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_symlink_at_the_socket_path_stops_the_start(swtpm: Swtpm, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "internal.sock").symlink_to(tmp_path / "elsewhere")
    code, reason = _start("--platform", "sim", "--tpm", swtpm.tcti, "--state-dir", str(tmp_path / "state"),
                          "--internal", f"unix:{tmp_path / 'run' / 'internal.sock'}", "--external", "off")
    assert (code, reason) == (2, "agent.socket.symlink")
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "state" / "event-log.jsonl").exists()


def test_no_tpm(tmp_path: Path) -> None:
    """Issue 14, defect 3: the one [reason] line, without tpm2-tss's own ERROR:tcti lines before it."""
    port = consecutive_free_ports()
    done = subprocess.run([str(CVM_AGENT), "--platform", "sim", "--tpm", f"swtpm:host=127.0.0.1,port={port}",
                           "--state-dir", str(tmp_path), "--internal", f"unix:{tmp_path / 'internal.sock'}",
                           "--external", "off"], capture_output=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL, env={k: v for k, v in os.environ.items() if k != "TSS2_LOG"})
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"[tpm.unavailable] cannot open the TPM at swtpm:host=127.0.0.1,port={port}: tcti:IO failure"]


def test_a_state_directory_that_cannot_be_created(swtpm: Swtpm, tmp_path: Path) -> None:
    """Issue 14, defect 3: a reason and exit 2, not a traceback."""
    (tmp_path / "file").write_text("")
    code, reason = _start("--platform", "sim", "--tpm", swtpm.tcti, "--state-dir", str(tmp_path / "file" / "state"),
                          *_listeners())
    assert (code, reason) == (2, "input.unreadable")


def test_port_taken(swtpm: Swtpm, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, reason = _start("--platform", "sim", "--tpm", swtpm.tcti, "--state-dir", str(tmp_path),
                              "--internal", f"127.0.0.1:{port}", "--external", "off")
    assert (code, reason) == (2, "platform.unavailable")
    assert not (tmp_path / "event-log.jsonl").exists()  # nothing was measured or started


def test_no_configfs_tsm(swtpm: Swtpm, tmp_path: Path) -> None:
    code, reason = _start("--platform", "snp", "--tpm", swtpm.tcti, "--state-dir", str(tmp_path),
                          "--tsm-root", str(tmp_path / "no-tsm"), "--sev-guest", str(tmp_path / "no-dev"),
                          *_listeners())
    assert (code, reason) == (2, "platform.unavailable")


def test_weak_token_file(swtpm: Swtpm, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("short\n")
    code, reason = _start("--platform", "sim", "--tpm", swtpm.tcti, "--state-dir", str(tmp_path),
                          "--token-file", str(tmp_path / "token"), *_listeners())
    assert (code, reason) == (2, "input.invalid")


def test_a_remote_internal_listener_needs_its_flag(tmp_path: Path) -> None:
    """Issue 14, defect 4: the signing API on a non-loopback address is refused with a reason, and the
    explicit flag lets it through to the next check (here: a port nobody may bind, so it stops there)."""
    refused = CliRunner(mix_stderr=False).invoke(main, ["--state-dir", str(tmp_path), "--internal", "0.0.0.0:7999"])
    assert refused.exit_code == 2 and "--internal-remote" in refused.stderr and "/sign-transaction" in refused.stderr
    from agent.main import _internal
    assert str(_internal("0.0.0.0:7999", True)) == "0.0.0.0:7999"
    assert str(_internal("127.0.0.1:7999", False)) == "127.0.0.1:7999" and str(_internal("[::1]:1", False)) == "[::1]:1"
