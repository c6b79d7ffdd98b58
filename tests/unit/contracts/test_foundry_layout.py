"""The Foundry packaging (foundry.toml, remappings.txt): forge is not installed here, so what can be
checked without it is: the settings agree with the other builds, and a dApp project laid out the
way ``forge install`` lays it out compiles against the remappings with solc-js."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import yaml

from tests.support.evm import ROOT, SIZE_BOUND_RUNS, SOLC, SOLC_SETTINGS

OZ = ROOT / ".tools" / "node_modules" / "@openzeppelin" / "contracts"

CONSUMER = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;
import {CvmGated} from "cvm-attest/CvmGated.sol";
import {ICvmRegistry} from "cvm-attest/interfaces/ICvmRegistry.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
contract Feed is CvmGated, Ownable {
    uint256 public value;
    constructor(ICvmRegistry registry) CvmGated(registry) Ownable(msg.sender) {}
    function report(uint256 v) external onlyAttestedCvm { value = v; }
}
"""


def _remappings() -> dict[str, str]:
    lines = (ROOT / "remappings.txt").read_text().split()
    return dict(line.split("=", 1) for line in lines)


def test_foundry_settings_agree_with_the_other_builds() -> None:
    profile = tomllib.loads((ROOT / "foundry.toml").read_text())["profile"]["default"]
    ape = yaml.safe_load((ROOT / "ape-config.yaml").read_text())["solidity"]
    assert profile["solc_version"] == ape["version"]
    assert (SOLC.parent / f"solc-v{profile['solc_version']}").exists()  # the wrapper forge/ape would be pointed at
    assert profile["evm_version"] == ape["evm_version"] == SOLC_SETTINGS["evmVersion"]
    assert profile["via_ir"] is ape["via_ir"] is SOLC_SETTINGS["viaIR"] is True
    # The runs scripts/build-contracts gives CvmRegistry: under EIP-170 for it.
    assert profile["optimizer_runs"] == ape["optimization_runs"] == SIZE_BOUND_RUNS["contracts/CvmRegistry.sol"]
    assert profile["src"] == ape.get("contracts_folder", "contracts") == "contracts"


def test_the_remappings_resolve_in_a_forge_layout(tmp_path: Path) -> None:
    """A dApp project after `forge install <cvm-attest>` and `forge install OpenZeppelin/openzeppelin-contracts`:
    lib/cvm-attest is this repository, lib/openzeppelin-contracts/contracts the OpenZeppelin sources. Forge
    prefixes a dependency's own remappings with its directory; the OpenZeppelin one is the project's."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cvm-attest").symlink_to(ROOT)
    (tmp_path / "lib" / "openzeppelin-contracts").mkdir()
    (tmp_path / "lib" / "openzeppelin-contracts" / "contracts").symlink_to(OZ)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Feed.sol").write_text(CONSUMER)
    remappings = []
    for prefix, target in _remappings().items():
        resolved = target if target.startswith("lib/") else f"lib/cvm-attest/{target}"
        assert (tmp_path / resolved).is_dir(), f"{prefix} -> {resolved} does not exist"
        remappings.append(f"{prefix}={resolved}")
    request = {"language": "Solidity", "sources": {"src/Feed.sol": {"urls": ["src/Feed.sol"]}},
               "settings": {"remappings": remappings, "evmVersion": "osaka",
                            "outputSelection": {"*": {"*": ["abi"]}}}}
    done = subprocess.run([str(SOLC), "--standard-json", "--base-path", str(tmp_path), "--allow-paths",
                           f"{ROOT},{OZ}"], input=json.dumps(request), capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    out = json.loads(done.stdout)
    errors = [e["formattedMessage"] for e in out.get("errors", []) if e["severity"] == "error"]
    assert errors == []
    assert {"Feed"} == set(out["contracts"]["src/Feed.sol"])
    sources = set(out["sources"])
    assert {"lib/cvm-attest/contracts/CvmGated.sol", "lib/openzeppelin-contracts/contracts/access/Ownable.sol"} <= sources


def test_a_broken_remapping_is_caught(tmp_path: Path) -> None:
    """The negative twin: without the OpenZeppelin dependency the same project does not compile."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "cvm-attest").symlink_to(ROOT)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Feed.sol").write_text(CONSUMER)
    request = {"language": "Solidity", "sources": {"src/Feed.sol": {"urls": ["src/Feed.sol"]}},
               "settings": {"remappings": ["cvm-attest/=lib/cvm-attest/contracts/",
                                           "@openzeppelin/contracts/=lib/openzeppelin-contracts/contracts/"],
                            "outputSelection": {"*": {"*": ["abi"]}}}}
    done = subprocess.run([str(SOLC), "--standard-json", "--base-path", str(tmp_path), "--allow-paths", str(ROOT)],
                          input=json.dumps(request), capture_output=True, text=True, cwd=tmp_path, timeout=300)
    errors = [e for e in json.loads(done.stdout).get("errors", []) if e["severity"] == "error"]
    assert errors and any("openzeppelin" in e["formattedMessage"].lower() for e in errors)
