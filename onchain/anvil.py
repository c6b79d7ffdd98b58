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


def anvil_executable() -> str:
    """The anvil binary: ``$CVM_ATTEST_ANVIL``, the project's ``.tools/node_modules/.bin/anvil``, or PATH."""
    explicit = os.environ.get("CVM_ATTEST_ANVIL")
    if explicit:
        return explicit
    bundled = _ROOT / ".tools" / "node_modules" / ".bin" / "anvil"
    if bundled.is_file():
        return str(bundled)
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
                    process = subprocess.Popen(
                        self.command(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
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
        """Stop anvil (SIGTERM, then SIGKILL after 5 s). Safe to call more than once."""
        process, self._process = self._process, None
        self.port = None
        if process is not None:
            _terminate(process)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
