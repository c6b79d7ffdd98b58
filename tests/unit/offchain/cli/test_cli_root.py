"""``cvm-cli`` on a base install (no ``[onchain]``, no ``[agent]``): ``verify`` works, and the commands
that need an extra say which one to install instead of printing a traceback (issue 14, defect 2).

The base install is simulated in a subprocess whose import system refuses the extras' packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from offchain.cli.root import extra_providing
from tests.support.snp_vectors import SNP_REPORT_VECTORS, load_vector

BASE_INSTALL = """
import importlib.abc, sys
EXTRAS = {"web3", "eth_account", "fastapi", "uvicorn", "tpm2_pytss"}
class RefuseExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in EXTRAS:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, RefuseExtras())
from offchain.cli.root import main
sys.argv = ["cvm-cli", *sys.argv[1:]]
main()
"""


def base_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BASE_INSTALL, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_verify_works_without_the_extras(vectors: Path) -> None:
    v = load_vector(vectors, SNP_REPORT_VECTORS[0])
    done = base_cli("verify", "snp", "--report", v.file("report.bin"), "--vcek", v.leaf_file,
                    "--ask", v.intermediate_file, "--ark", v.file("ark.pem"), "--at", v.now.isoformat(), "--json")
    assert done.returncode == 0 and '"ok": true' in done.stdout, done.stderr


@pytest.mark.parametrize("command", ["contract", "golden", "relay", "onchain"])
def test_an_onchain_command_names_the_extra(command: str) -> None:
    done = base_cli(command, "show")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("[input.unreadable] cvm-cli " + command) and "cvm-attest[onchain]" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_lists_every_command_without_importing_them() -> None:
    done = base_cli("--help")
    assert done.returncode == 0, done.stderr
    for command in ("verify", "contract", "golden", "relay", "onchain", "demo", "image"):
        assert f"  {command} " in done.stdout
    assert "cvm-attest[onchain]" in done.stdout  # the short help of an unavailable command says why


def test_the_extra_of_a_package() -> None:
    assert (extra_providing("web3"), extra_providing("tpm2_pytss.ESAPI"), extra_providing("fastapi")) == (
        "onchain", "agent", "agent")
    assert extra_providing("not-a-dependency") is None
    assert (extra_providing("eth_account", "onchain"), extra_providing("eth_account", "agent")) == ("onchain", "agent")
