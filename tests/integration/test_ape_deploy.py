"""``ape run deploy`` as an Ape user runs it: ape compiles the contracts (ape-solidity, through the
solc-js wrapper), ape-foundry starts anvil on a free port and stops it, and the script deploys the
registry, pins AMD's roots and has the new registry verify a real report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_hash.auto import keccak

from offchain.abi.snp_report import Product
from offchain.trust.roots import AMD_ARK_SPKI_SHA256
from tests.support.snp_vectors import load_vector

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APE = Path(sys.executable).parent / "ape"


def _ape(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOLCX_BINARY_PATH": str(ROOT / "tools" / "solc"), "PYTHONPATH": str(ROOT),
           "PATH": f"{ROOT / '.tools' / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(APE), "run", "deploy", "--network", "ethereum:local:foundry", "--account", "TEST::0",
                           *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)


def test_ape_run_deploy_deploys_pins_and_verifies(vectors: Path) -> None:
    v = load_vector(vectors, "snp/milan-vcek-v5-gcp-teekit")
    done = _ape("--report", str(v.file("report.bin")), "--vcek", str(v.file("vcek.pem")))
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))  # ape logs to stdout too
    assert out["pinned"] == {"milan": 1, "genoa": 2, "turin": 4}
    assert out["verdict"]["product"] == 1 and out["verdict"]["signer"] == 1  # Milan, VCEK: the registry's verdict
    assert out["owner"].startswith("0x") and out["registry"].startswith("0x")


def test_ape_run_deploy_without_amd_roots_cannot_verify(vectors: Path) -> None:
    """The negative twin: a registry that pins no root refuses the same chain."""
    v = load_vector(vectors, "snp/milan-vcek-v5-gcp-teekit")
    done = _ape("--no-amd-roots", "--report", str(v.file("report.bin")), "--vcek", str(v.file("vcek.pem")))
    selector = keccak(b"RegistryRootNotPinned(bytes32)")[:4].hex()  # ICvmRegistry's custom error
    assert done.returncode == 1
    assert f"custom error 0x{selector}: {AMD_ARK_SPKI_SHA256[Product.MILAN].hex()}" in done.stdout
