"""Agent latency on swtpm: ``scripts/bench agent [--json]``.

Starts a fresh swtpm and a real ``cvm-agent --platform sim`` (uvicorn, RSA-2048 AK, the default
13-PCR selection, a three-item workload) in a temporary directory, then measures over HTTP on one
keep-alive connection to the external listener:

* ``collaterals_p50_ms`` / ``collaterals_p99_ms``: latency of ``GET /collaterals/{nonce}`` with a
  fresh random 32-byte nonce each time (TPM2_Quote, PCR reads, the cached signed report, JSON);
* ``quote_ms``: in the same run, on the same swtpm, the median of a bare TPM2_Quote with the same
  kind of AK over the same PCR selection through :class:`agent.tpm.AgentTpm` (measured before the
  agent connects: swtpm serves one connection at a time).

The difference between the two is what the agent adds to the TPM's own work.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from agent.config import DEFAULT_PCRS, AkKind, Tcti
from localstack.swtpm import running_swtpm
from agent.tpm import AgentTpm

KEYS = ("collaterals_p50_ms", "collaterals_p99_ms", "quote_ms")
WORKLOAD = {
    "docker-compose.yml": b"services:\n  app:\n    image: example/app@sha256:" + b"ab" * 32 + b"\n",
    "config/app.toml": b"[app]\nmode = 'production'\n",
    "config/limits.json": b'{"max": 10}\n',
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bare_quote_ms(tcti: str, rounds: int) -> float:
    tpm = AgentTpm.open(Tcti.parse(tcti))
    try:
        tpm.create_ak(AkKind.RSA)
        times = []
        for _ in range(rounds):
            extra = secrets.token_bytes(32)
            start = time.perf_counter()
            tpm.quote(extra, DEFAULT_PCRS)
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)
    finally:
        tpm.close()


def _start_agent(tcti: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    workload = root / "workload"
    for name, data in WORKLOAD.items():
        (workload / name).parent.mkdir(parents=True, exist_ok=True)
        (workload / name).write_bytes(data)
    internal, external = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    executable = Path(sys.executable).parent / "cvm-agent"
    command = [str(executable if executable.exists() else shutil.which("cvm-agent") or "cvm-agent"),
               "--platform", "sim", "--tpm", tcti, "--state-dir", str(root / "state"),
               "--workload-dir", str(workload), "--internal", internal, "--external", external,
               "--runner", "true", "--log-level", "warning"]
    log = open(root / "agent.log", "wb")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://{external}"
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"cvm-agent exited: {(root / 'agent.log').read_text()}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError("cvm-agent did not become ready")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(requests: int = 300, warmup: int = 20, quote_rounds: int = 100) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cvm-agent-bench-") as tmp, running_swtpm(Path(tmp) / "tpm") as tpm:
        quote_ms = bare_quote_ms(tpm.tcti, quote_rounds)
        process, base = _start_agent(tpm.tcti, Path(tmp))
        try:
            latencies = []
            with httpx.Client(base_url=base, timeout=30) as client:
                for i in range(warmup + requests):
                    nonce = secrets.token_hex(32)
                    start = time.perf_counter()
                    response = client.get(f"/collaterals/{nonce}")
                    elapsed = (time.perf_counter() - start) * 1000
                    if response.status_code != 200 or response.json()["nonce"]["value"] != nonce:
                        raise RuntimeError(f"GET /collaterals failed: {response.status_code} {response.text[:200]}")
                    if i >= warmup:
                        latencies.append(elapsed)
        finally:
            process.terminate()
            process.wait(timeout=15)
    return {
        "collaterals_p50_ms": round(_percentile(latencies, 0.50), 2),
        "collaterals_p99_ms": round(_percentile(latencies, 0.99), 2),
        "quote_ms": round(quote_ms, 2),
        "requests": requests,
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench agent", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--requests", type=int, default=300, help="timed requests (default 300)")
    args = parser.parse_args(argv)
    result = measure(requests=args.requests)
    if args.json:
        print(json.dumps({k: result[k] for k in KEYS}))
    else:
        print(f"GET /collaterals/{{nonce}} p50 : {result['collaterals_p50_ms']:>7.2f} ms  (target <= 40 ms)")
        print(f"GET /collaterals/{{nonce}} p99 : {result['collaterals_p99_ms']:>7.2f} ms")
        print(f"bare TPM2_Quote (RSA-2048)    : {result['quote_ms']:>7.2f} ms")
        print(f"({result['requests']} requests on swtpm, {result['cpus']} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
