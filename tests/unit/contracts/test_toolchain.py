"""The offline Solidity toolchain: the solc wrapper, the compile cache, anvil, the artifact builder."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.version import Version
from solcx import wrapper as solcx_wrapper
from web3 import Web3

from offchain.errors import ChainError, Reason
from onchain.anvil import anvil_executable
from tests.support.evm import (
    ROOT,
    SOLC,
    TX_GAS_CAP,
    AnvilProcess,
    CompileError,
    compile_contracts,
    deploy,
    solc_version,
)

OWNED = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
contract Owned is Ownable {
    constructor() Ownable(msg.sender) {}
    function answer() external pure returns (uint256) { return VALUE; }
}
"""


def _standard_json(sources: dict[str, dict[str, object]]) -> str:
    return json.dumps(
        {
            "language": "Solidity",
            "sources": sources,
            "settings": {"evmVersion": "osaka", "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}},
        }
    )


def _solc(args: list[str], stdin: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SOLC), *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=300)


def _errors(output: dict[str, object]) -> list[dict[str, str]]:
    return [e for e in output.get("errors", []) if e["severity"] == "error"]  # type: ignore[union-attr]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory inside the repository (git-ignored .cache/) for sources compile_contracts may read."""
    path = ROOT / ".cache" / "toolchain-tests" / uuid.uuid4().hex
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path)


def test_version_parses_like_native_solc() -> None:
    out = subprocess.run([str(SOLC), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "solc, the solidity compiler commandline interface"
    assert solcx_wrapper.get_solc_version(SOLC) == Version("0.8.33")
    assert solcx_wrapper.get_solc_version(SOLC, with_commit_hash=True).local is not None
    assert solc_version().startswith("0.8.33+commit.")


def test_py_solc_x_finds_the_wrapper_offline(tmp_path: Path) -> None:
    # py-solc-x and ape-solidity look for "solc-v<version>" in $SOLCX_BINARY_PATH.
    (tmp_path / "A.sol").write_text(OWNED.replace("VALUE", "42"))
    code = (
        "import json, solcx, sys\n"
        "assert [str(v) for v in solcx.get_installed_solc_versions()] == ['0.8.33']\n"
        "out = solcx.compile_standard(json.loads(sys.stdin.read()), solc_version='0.8.33',"
        f" base_path={str(tmp_path)!r}, allow_paths=[{str(tmp_path)!r}])\n"
        "print(sorted(out['contracts']))\n"
    )
    env = {**os.environ, "SOLCX_BINARY_PATH": str(SOLC.parent)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=_standard_json({"A.sol": {"urls": ["A.sol"]}}),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "A.sol" in proc.stdout and "@openzeppelin/contracts/access/Ownable.sol" in proc.stdout


def test_standard_json_resolves_openzeppelin_and_prints_only_json(tmp_path: Path) -> None:
    (tmp_path / "A.sol").write_text(OWNED.replace("VALUE", "42"))
    proc = _solc(["--standard-json", "--base-path", "."], _standard_json({"A.sol": {"urls": ["A.sol"]}}), tmp_path)
    assert proc.returncode == 0
    output = json.loads(proc.stdout)  # the whole stdout is one JSON document
    assert _errors(output) == []
    assert output["contracts"]["A.sol"]["Owned"]["evm"]["bytecode"]["object"]
    assert "@openzeppelin/contracts/access/Ownable.sol" in output["sources"]


def test_compile_errors_come_back_as_json(tmp_path: Path) -> None:
    source = OWNED.replace("VALUE", "undefinedName")
    proc = _solc(["--standard-json"], _standard_json({"A.sol": {"content": source}}), tmp_path)
    assert proc.returncode == 0
    errors = _errors(json.loads(proc.stdout))
    assert [e["type"] for e in errors] == ["DeclarationError"]


def test_malformed_input_is_a_json_error(tmp_path: Path) -> None:
    proc = _solc(["--standard-json"], "{not json", tmp_path)
    assert proc.returncode == 0
    assert [e["type"] for e in _errors(json.loads(proc.stdout))] == ["JSONError"]


def test_include_path_is_searched(tmp_path: Path) -> None:
    (tmp_path / "lib" / "dep").mkdir(parents=True)
    (tmp_path / "lib" / "dep" / "Dep.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\nlibrary Dep { uint256 internal constant X = 7; }\n"
    )
    (tmp_path / "src").mkdir()
    main = (
        '// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\nimport {Dep} from "dep/Dep.sol";\n'
        "contract M { function x() external pure returns (uint256) { return Dep.X; } }\n"
    )
    (tmp_path / "src" / "M.sol").write_text(main)
    request = _standard_json({"M.sol": {"urls": ["M.sol"]}})
    found = _solc(["--standard-json", "--base-path", "src", "--include-path", "lib"], request, tmp_path)
    assert _errors(json.loads(found.stdout)) == []
    missing = _solc(["--standard-json", "--base-path", "src"], request, tmp_path)
    assert [e["type"] for e in _errors(json.loads(missing.stdout))] == ["ParserError"]


def test_files_outside_allowed_paths_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "L.sol").write_text("// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\nlibrary L {}\n")
    (tmp_path / "base").mkdir()
    request = _standard_json({"L.sol": {"urls": [str(outside / "L.sol")]}})
    refused = _solc(["--standard-json", "--base-path", "base"], request, tmp_path)
    assert "outside of allowed directories" in refused.stdout
    allowed = _solc(["--standard-json", "--base-path", "base", "--allow-paths", str(outside)], request, tmp_path)
    assert _errors(json.loads(allowed.stdout)) == []


def test_unknown_option_fails_like_native_solc(tmp_path: Path) -> None:
    proc = _solc(["--no-such-flag"], "", tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("unrecognised option '--no-such-flag'")


def test_compile_contracts_is_cached_and_sees_source_changes(scratch: Path) -> None:
    source = scratch / "Owned.sol"
    source.write_text(OWNED.replace("VALUE", "42"))
    first = compile_contracts([source])
    assert compile_contracts([source]) == first
    source.write_text(OWNED.replace("VALUE", "43"))
    second = compile_contracts([source])
    assert second["Owned"]["bytecode"] != first["Owned"]["bytecode"]
    source.write_text(OWNED.replace("VALUE", "undefinedName"))
    with pytest.raises(CompileError):
        compile_contracts([source])


def test_anvil_default_hardfork_and_tx_gas_cap(scratch: Path) -> None:
    source = scratch / "Owned.sol"
    source.write_text(OWNED.replace("VALUE", "42"))
    artifact = compile_contracts([source])["Owned"]
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        assert w3.eth.chain_id == 31337
        owned = deploy(w3, artifact)
        assert owned.functions.answer().call() == 42
        assert owned.functions.owner().call() == w3.eth.accounts[0]
        # Osaka: the P256VERIFY precompile exists at 0x100 (RIP-7212 test vector from the EIP).
        assert w3.eth.call({"to": "0x" + "00" * 18 + "0100", "data": P256_VECTOR}) == (1).to_bytes(32, "big")
        # EIP-7825: one gas more than the cap is refused, the cap itself is accepted.
        tx = {"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": 1}
        w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({**tx, "gas": TX_GAS_CAP}))
        with pytest.raises(Exception, match="(?i)gas"):
            w3.eth.send_transaction({**tx, "gas": TX_GAS_CAP + 1})
        url = anvil.url
    with pytest.raises(Exception):
        Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 2})).eth.chain_id


# P256VERIFY input: hash ‖ r ‖ s ‖ x ‖ y (EIP-7951 / RIP-7212 test case "valid signature").
P256_VECTOR = (
    "0x4cee90eb86eaa050036147a12d49004b6b9c72bd725d39d4785011fe190f0b4d"
    "a73bd4903f0ce3b639bbbf6e8e80d16931ff4bcf5993d58468e8fb19086e8cac"
    "36dbcd03009df8c59286b162af3bd7fcc0450c9aa81be5d10d312af6c66b1d60"
    "4aebd3099c618202fcfe16ae7770b0c49ab5eadf74b754204a3bb6060e44eff3"
    "7618b065f9832de4ca6ca971a7a1adc826d0f7c00181a5fb2ddf79ae00b4e10e"
)


def _load_build_script() -> ModuleType:
    path = ROOT / "scripts" / "build-contracts"
    loader = importlib.machinery.SourceFileLoader("build_contracts", str(path))
    spec = importlib.util.spec_from_loader("build_contracts", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_shipped_artifacts_are_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-contracts"), "--check"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr


def test_stale_artifacts_are_detected(tmp_path: Path) -> None:
    build = _load_build_script()
    files = {"A.json": '{"a": 1}\n', "B.json": '{"b": 1}\n'}
    assert build.stale(tmp_path, files) == ["A.json", "B.json"]
    assert build.write(tmp_path, files) == ["A.json", "B.json"]
    assert build.stale(tmp_path, files) == []
    (tmp_path / "A.json").write_text('{"a": 2}\n')
    (tmp_path / "Old.json").write_text("{}\n")
    assert build.stale(tmp_path, files) == ["A.json", "Old.json"]
    assert build.write(tmp_path, files) == ["A.json", "Old.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.json", "B.json"]


def test_artifacts_are_deterministic_and_staleness_is_seen(scratch: Path, tmp_path: Path) -> None:
    build = _load_build_script()
    (scratch / "Owned.sol").write_text(OWNED.replace("VALUE", "42"))
    shipped = {"Owned": (scratch / "Owned.sol").relative_to(ROOT).as_posix()}
    files = build.render(shipped)
    assert build.render(shipped) == files  # byte-identical rebuild
    document = json.loads(files["Owned.json"])
    assert document["contractName"] == "Owned" and document["bytecode"].startswith("0x60")
    assert document["compiler"]["settings"]["evmVersion"] == "osaka"
    build.write(tmp_path, files)
    assert build.stale(tmp_path, files) == []
    (scratch / "Owned.sol").write_text(OWNED.replace("VALUE", "43"))
    assert build.stale(tmp_path, build.render(shipped)) == ["Owned.json"]
    with pytest.raises(SystemExit):
        build.render({"NoSuchContract": shipped["Owned"]})


def test_anvil_options_hardfork_timestamp_state(scratch: Path) -> None:
    p256 = {"to": "0x" + "00" * 18 + "0100", "data": P256_VECTOR}
    # Prague, the twin of the Osaka default: no P256VERIFY precompile (the call returns nothing).
    with AnvilProcess(hardfork="prague", timestamp=1_700_000_000) as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        assert w3.eth.call(p256) == b""
        assert w3.eth.get_block(0)["timestamp"] == 1_700_000_000
    state = scratch / "state.json"
    artifact = compile_contracts([_owned(scratch)])["Owned"]
    with AnvilProcess(state=state) as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        address = deploy(w3, artifact).address
    assert state.is_file()
    with AnvilProcess(state=state) as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        assert w3.eth.contract(address=address, abi=artifact["abi"]).functions.answer().call() == 42


def _owned(scratch: Path) -> Path:
    path = scratch / "Owned.sol"
    path.write_text(OWNED.replace("VALUE", "42"))
    return path


def _answers(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) == 0


def test_anvil_is_the_native_binary_and_its_port_is_closed_on_stop() -> None:
    # npm's .bin/anvil is a Node wrapper that exits on SIGTERM before anvil has closed its port.
    executable = Path(anvil_executable())
    assert executable.read_bytes()[:4] == b"\x7fELF", executable
    anvil = AnvilProcess().start()
    url = anvil.url
    assert _answers(url)
    anvil.stop()
    assert not _answers(url)


def test_anvil_behind_a_wrapper_leaves_nothing_running(scratch: Path) -> None:
    # A user's CVM_ATTEST_ANVIL may be a wrapper that spawns anvil; stopping it stops anvil too.
    wrapper = scratch / "anvil-wrapper"
    wrapper.write_text(f'#!/bin/sh\n"{anvil_executable()}" "$@" &\nwait\n')
    wrapper.chmod(0o755)
    anvil = AnvilProcess(executable=str(wrapper)).start()
    url = anvil.url
    assert _answers(url)
    anvil.stop()
    assert not _answers(url)


@pytest.mark.parametrize(
    "kwargs",
    [{"executable": "/nonexistent/anvil"}, {"extra_args": ("--no-such-flag",)}],
    ids=["missing-binary", "bad-flag"],
)
def test_anvil_that_cannot_start_is_a_typed_error(kwargs: dict[str, Any]) -> None:
    process = AnvilProcess(**kwargs)
    with pytest.raises(ChainError) as exc:
        process.start()
    assert exc.value.reason is Reason.CHAIN_RPC_UNAVAILABLE
    assert not process.running
