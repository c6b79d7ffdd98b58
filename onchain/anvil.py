"""A local anvil chain on a free 127.0.0.1 port, started and always stopped by its owner.

PROTOCOL.md, "Local stack": the embedded chain is anvil from npm ``@foundry-rs/anvil`` on its default
hardfork (Osaka rules: P256VERIFY at 0x100, EIP-7883 modexp pricing), run with
``--enable-tx-gas-limit`` so the EIP-7825 cap of 16,777,216 gas per transaction is enforced and
nothing passes locally that mainnet would refuse. ``cvm-cli onchain verify``, the demo and the
contract tests all start it through :class:`AnvilProcess`.

The port is chosen at run time (bind to port 0, then hand it to anvil); when another process takes
it in between, anvil fails to start and the next free port is tried.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from offchain.errors import ChainError, Reason

#: EIP-7825: the most gas one transaction may use (Osaka).
TX_GAS_CAP = 16_777_216
HOST = "127.0.0.1"
_ROOT = Path(__file__).resolve().parent.parent
_START_ATTEMPTS = 3
_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 5.0


def anvil_executable() -> str:
    """The anvil binary: ``$CVM_ATTEST_ANVIL``, the native binary npm installed into ``.tools/``, or PATH.

    npm's ``.bin/anvil`` is a Node wrapper that spawns the native binary and, on SIGTERM, forwards the
    signal and exits at once, before anvil has closed its port or written its ``--state`` file (and a
    SIGKILL of the wrapper orphans anvil). So the platform package's binary is run directly.
    """
    explicit = os.environ.get("CVM_ATTEST_ANVIL")
    if explicit:
        return explicit
    native = sorted((_ROOT / ".tools" / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil"))
    for candidate in native:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("anvil")
    if found is None:
        raise ChainError(Reason.CHAIN_RPC_UNAVAILABLE, "anvil not found: run scripts/setup or set CVM_ATTEST_ANVIL")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _rpc(url: str, method: str, params: list[object] | None = None, timeout: float = 2.0) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (local URL we built)
        reply = json.loads(response.read())
    if "error" in reply:
        raise ChainError(Reason.CHAIN_RPC_UNAVAILABLE, f"{method}: {reply['error']}")
    return reply["result"]


class AnvilProcess:
    """One anvil child process listening on ``127.0.0.1:<free port>``.

    Use as a context manager (``with AnvilProcess() as anvil: ... anvil.url``) or call
    :meth:`start` and :meth:`stop` (idempotent). ``hardfork=None`` keeps anvil's default (Osaka);
    ``state`` is a file anvil loads at start and dumps at exit (``--state``); ``timestamp`` sets the
    genesis block time (``--timestamp``, unix seconds), for certificate validity checks at a pinned
    time. ``tx_gas_limit=True`` enforces the EIP-7825 per-transaction cap.
    """

    def __init__(
        self,
        *,
        hardfork: str | None = None,
        state: Path | None = None,
        timestamp: int | None = None,
        tx_gas_limit: bool = True,
        extra_args: tuple[str, ...] = (),
        executable: str | None = None,
    ) -> None:
        self.hardfork = hardfork
        self.state = state
        self.timestamp = timestamp
        self.tx_gas_limit = tx_gas_limit
        self.extra_args = extra_args
        self.executable = executable
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running chain."""
        if self.port is None:
            raise ChainError(Reason.CHAIN_RPC_UNAVAILABLE, "anvil is not running")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self, port: int) -> list[str]:
        """The anvil command line for ``port``."""
        cmd = [self.executable or anvil_executable(), "--host", HOST, "--port", str(port), "--silent"]
        if self.tx_gas_limit:
            cmd.append("--enable-tx-gas-limit")
        if self.hardfork is not None:
            cmd += ["--hardfork", self.hardfork]
        if self.state is not None:
            cmd += ["--state", str(self.state)]
        if self.timestamp is not None:
            cmd += ["--timestamp", str(self.timestamp)]
        cmd += list(self.extra_args)
        return cmd

    def start(self) -> Self:
        """Start anvil and wait until it answers JSON-RPC; raises ChainError if it never does."""
        if self.running:
            return self
        last_error = ""
        for _ in range(_START_ATTEMPTS):
            port = free_port()
            with tempfile.TemporaryFile() as errors:
                try:
                    process = subprocess.Popen(  # noqa: S603 (our own command line)
                        self.command(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                        start_new_session=True,  # its own process group: _terminate stops any helper it spawns
                    )
                except OSError as exc:
                    raise ChainError(Reason.CHAIN_RPC_UNAVAILABLE, f"anvil could not be run: {exc}") from None
                if self._wait_ready(process, port):
                    self._process, self.port = process, port
                    return self
                _terminate(process)
                errors.seek(0)
                last_error = errors.read().decode(errors="replace").strip()
        raise ChainError(Reason.CHAIN_RPC_UNAVAILABLE, f"anvil did not start: {last_error or 'no answer'}")

    @staticmethod
    def _wait_ready(process: subprocess.Popen[bytes], port: int) -> bool:
        url = f"http://{HOST}:{port}"
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                _rpc(url, "eth_chainId", timeout=1.0)
                return True
            except (OSError, urllib.error.URLError, ChainError):
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop anvil (SIGTERM, then SIGKILL after 5 s) and wait until its port is closed. Safe to call twice."""
        process, self._process = self._process, None
        port, self.port = self.port, None
        if process is not None:
            _terminate(process)
        if port is not None:
            _wait_port_closed(port, _STOP_TIMEOUT_S)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop anvil's process group: SIGTERM, up to 5 s to exit (and write ``--state``), then SIGKILL.

    Returns only when no live process of the group is left, so its port is closed: a wrapper given as
    the executable (``CVM_ATTEST_ANVIL``, PATH) may exit before the anvil it spawned.
    """
    pgid = process.pid
    if process.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if not _group_gone(pgid, _STOP_TIMEOUT_S):
        _signal_group(pgid, signal.SIGKILL)
        _group_gone(pgid, _STOP_TIMEOUT_S)


def _wait_port_closed(port: int, timeout: float) -> None:
    """Wait until nothing accepts connections on ``port`` (the kernel may still be closing the socket
    of the process that just exited), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex((HOST, port)) != 0:
                return
        time.sleep(0.02)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no live (non-zombie) process is in group ``pgid``; False if some still is at the deadline."""
    deadline = time.monotonic() + timeout
    while _group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _group_members(pgid: int) -> list[int]:
    """PIDs of the live processes in group ``pgid``, read from /proc (zombies left to init do not count)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process exited while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members
