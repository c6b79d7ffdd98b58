"""Compile contracts with the project's solc wrapper, run anvil, deploy: what contract tests share.

* :func:`compile_contracts` compiles Solidity files (by path, or by contract name found under
  ``contracts/``) with ``tools/solc/solc`` (solc-js behind a native-compatible CLI) and the project's
  compiler settings, :data:`SOLC_SETTINGS` (:data:`SIZE_BOUND_RUNS` lowers the optimizer runs of the
  sources that would not fit EIP-170 otherwise). Results are cached in memory for the session
  and on disk under ``.cache/solc/`` keyed by the request; a disk entry is reused only while every
  source file the compiler read (imports included) still has the content it had.
* :class:`AnvilProcess` (re-exported from :mod:`onchain.anvil`, product code: the CLI starts anvil
  too) runs a chain on a free 127.0.0.1 port with the EIP-7825 per-transaction cap enforced.
* :func:`deploy` deploys an artifact and returns a web3 contract bound to its address.

scripts/build-contracts uses :func:`compile_files` and :data:`SOLC_SETTINGS` from here too, so the
shipped artifacts and the tests are built the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

from onchain.anvil import TX_GAS_CAP, AnvilProcess

__all__ = [
    "ROOT",
    "SOLC",
    "SOLC_SETTINGS",
    "TX_GAS_CAP",
    "AnvilProcess",
    "CompileError",
    "compile_contracts",
    "compile_files",
    "custom_error",
    "deploy",
    "reverts_with",
    "solc_version",
]

ROOT = Path(__file__).resolve().parents[2]
SOLC = ROOT / "tools" / "solc" / "solc"
CONTRACTS = ROOT / "contracts"
CACHE_DIR = ROOT / ".cache" / "solc"

#: The compiler settings (solc 0.8.33): the tests, scripts/build-contracts and ape-config.yaml
#: compile with these, but for :data:`SIZE_BOUND_RUNS`. viaIR: the Yul optimizer inlines and simplifies the libraries'
#: assembly helpers (the legacy pipeline leaves inline assembly unoptimised). runs 10,000: these
#: contracts are deployed once and called often; at the default 200 the optimizer rebuilds 64- to
#: 192-bit constants from shifts in every use: Sha384 then costs 33,900 gas per block, not 24,369.
#: evmVersion "osaka", anvil's default hardfork.
SOLC_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 10_000},
    "viaIR": True,
    "evmVersion": "osaka",
}

#: Sources compiled with fewer optimizer runs than :data:`SOLC_SETTINGS` (a request of their own), because
#: at 10,000 runs their contract is over EIP-170's 24,576 bytes. CvmRegistry with registerCvmSvsm is 26,150
#: bytes at 2,000 runs, 25,030 at 1,000 and 23,138 at 500 (without it: 24,507 at 2,000); with the report checks
#: (publishGoldenWithChecks, reportChecksOf) 24,196 at 500. SnpVerifier, at 10,000, is 24,516 with them. Its hot paths are
#: storage and precompiles, which runs barely change: at 500 instead of 2,000, refreshCvm costs 141 gas more
#: (79,346 with an RSA AK, under its 80,000 target) and registerCvm 22,381 (benchmarks/gas_registry.py); the
#: libraries' arithmetic (SHA-384/512, P-384, RSA-PSS) lives in the verifier contracts and keeps 10,000.
SIZE_BOUND_RUNS: dict[str, int] = {"contracts/CvmRegistry.sol": 500}


def settings_for(unit: str) -> dict[str, Any]:
    """The compiler settings ``unit`` (a source unit name, e.g. ``contracts/CvmRegistry.sol``) is built with."""
    runs = SIZE_BOUND_RUNS.get(unit)
    if runs is None:
        return SOLC_SETTINGS
    return {**SOLC_SETTINGS, "optimizer": {**SOLC_SETTINGS["optimizer"], "runs": runs}}
_OUTPUT_SELECTION = {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}}

Artifact = dict[str, Any]


class CompileError(RuntimeError):
    """solc reported errors; ``errors`` holds its formatted messages."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


def solc_version() -> str:
    """The wrapper's ``--version`` line, e.g. ``0.8.33+commit.64118f21.Linux.g++``."""
    out = subprocess.run([str(SOLC), "--version"], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1].removeprefix("Version: ").strip()


def _unit_name(path: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return resolved.as_posix()


def _resolve(item: str | os.PathLike[str]) -> Path:
    """A path to a .sol file, or a contract name looked up as ``contracts/**/<Name>.sol``."""
    text = os.fspath(item)
    if text.endswith(".sol"):
        path = Path(text)
        path = path if path.is_absolute() else ROOT / path
        if not path.is_file():
            raise FileNotFoundError(path)
        return path
    matches = sorted(CONTRACTS.rglob(f"{text}.sol"))
    matches = [m for m in matches if ".cache" not in m.parts]
    if len(matches) != 1:
        raise FileNotFoundError(f"contract {text!r}: expected one contracts/**/{text}.sol, found {matches}")
    return matches[0]


def _source_path(unit: str) -> Path | None:
    for base in (ROOT, ROOT / ".tools" / "node_modules"):
        candidate = Path(unit) if Path(unit).is_absolute() else base / unit
        if candidate.is_file():
            return candidate
    return None


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_solc(units: list[str], settings: Mapping[str, Any]) -> dict[str, Any]:
    request = {
        "language": "Solidity",
        "sources": {unit: {"urls": [unit]} for unit in units},
        "settings": {**settings, "outputSelection": _OUTPUT_SELECTION},
    }
    proc = subprocess.run(
        [str(SOLC), "--standard-json", "--base-path", str(ROOT), "--allow-paths", str(ROOT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    output: dict[str, Any] = json.loads(proc.stdout)
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError(errors)
    return output


def compile_files(paths: Iterable[Path]) -> tuple[dict[str, Artifact], dict[str, str]]:
    """Compile ``paths`` (no cache). Returns artifacts by contract name and ``{source unit: sha256}``
    of every file the compiler read. Artifacts: ``{"abi", "bytecode", "deployedBytecode", "source"}``
    with ``0x``-prefixed hex. Raises :class:`CompileError` on compiler errors or duplicate names.

    Units with their own settings (:data:`SIZE_BOUND_RUNS`) are compiled in a request of their own;
    a contract's artifact comes from the request that named its source unit (the others may compile
    it too, as an import)."""
    units = sorted({_unit_name(p) for p in paths})
    groups: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for unit in units:
        settings = settings_for(unit)
        groups.setdefault(json.dumps(settings, sort_keys=True), (settings, []))[1].append(unit)
    artifacts: dict[str, Artifact] = {}
    named: set[str] = set()
    sources: dict[str, str] = {}
    for settings, group in groups.values():
        output = _run_solc(group, settings)
        for unit, contracts in sorted(output.get("contracts", {}).items()):
            for name, data in sorted(contracts.items()):
                artifact = {
                    "abi": data["abi"],
                    "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                    "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                    "source": unit,
                }
                if name in artifacts and artifacts[name]["source"] != unit:
                    raise CompileError([f"contract name {name} defined in {artifacts[name]['source']} and {unit}"])
                if unit in group:
                    artifacts[name] = artifact
                    named.add(name)
                elif name not in named:
                    artifacts.setdefault(name, artifact)
        for unit in output.get("sources", {}):
            path = _source_path(unit)
            if path is not None:
                sources[unit] = _digest(path)
    return artifacts, sources


_session_cache: dict[str, dict[str, Artifact]] = {}


def _request_key(paths: list[Path]) -> str:
    material = json.dumps(
        {"units": sorted(_unit_name(p) for p in paths), "settings": SOLC_SETTINGS, "size_bound": SIZE_BOUND_RUNS,
         "solc": _solc_stamp()},
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _solc_stamp() -> str:
    package = ROOT / ".tools" / "node_modules" / "solc" / "package.json"
    wrapper = SOLC.read_bytes()
    return hashlib.sha256(wrapper + (package.read_bytes() if package.is_file() else b"")).hexdigest()


def _sources_unchanged(sources: Mapping[str, str]) -> bool:
    for unit, digest in sources.items():
        path = _source_path(unit)
        if path is None or _digest(path) != digest:
            return False
    return True


def compile_contracts(items: Iterable[str | os.PathLike[str]]) -> dict[str, Artifact]:
    """Compile contracts given as paths (``contracts/test/Sha384Harness.sol``) or names
    (``"Sha384Harness"``) and return every contract the compilation produced, by name.

    Cached in memory per process and on disk (``.cache/solc/``) while the sources are unchanged.
    """
    paths = [_resolve(item) for item in items]
    key = _request_key(paths)
    cached = _session_cache.get(key)
    if cached is not None and _sources_unchanged(cached["__sources__"]):
        return {k: v for k, v in cached.items() if k != "__sources__"}
    disk = CACHE_DIR / f"{key}.json"
    if disk.is_file():
        try:
            entry = json.loads(disk.read_text())
        except ValueError:
            entry = None
        if entry is not None and _sources_unchanged(entry["sources"]):
            _session_cache[key] = {**entry["artifacts"], "__sources__": entry["sources"]}
            return dict(entry["artifacts"])
    artifacts, sources = compile_files(paths)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = disk.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"artifacts": artifacts, "sources": sources}, sort_keys=True))
    tmp.replace(disk)
    _session_cache[key] = {**artifacts, "__sources__": sources}
    return artifacts


def deploy(w3: Any, artifact: Artifact, *args: Any, sender: str | None = None, gas: int | None = None) -> Any:
    """Deploy ``artifact`` with constructor ``args`` from ``sender`` (default: the node's first account)
    and return the web3 contract at its address. Raises RuntimeError when the deployment reverts."""
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx: dict[str, Any] = {"from": sender or w3.eth.accounts[0]}
    if gas is not None:
        tx["gas"] = gas
    tx_hash = factory.constructor(*args).transact(tx)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise RuntimeError(f"deployment reverted: {receipt}")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def custom_error(abi: list[dict[str, Any]], data: str | bytes) -> tuple[str, tuple[Any, ...]]:
    """Decode revert ``data`` as one of the custom errors in ``abi``: ``(name, args)``.

    Raises LookupError when the selector is none of them (a panic, a string revert, another ABI's error).
    """
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [_abi_type(i) for i in item["inputs"]]
        if keccak(text=f"{item['name']}({','.join(types)})")[:4] == raw[:4]:
            return item["name"], tuple(abi_decode(types, raw[4:]))
    raise LookupError(f"revert data {raw[:4].hex()} is no custom error of this ABI")


def _abi_type(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + kind[len("tuple") :]
    return kind


def reverts_with(contract: Any, call: Callable[[], Any]) -> tuple[str, tuple[Any, ...]]:
    """Run ``call`` (e.g. ``lambda: c.functions.f(x).call()``), expect a revert and return the custom
    error it carries, decoded with ``contract``'s ABI. AssertionError when it does not revert or the
    revert is not a custom error."""
    from web3.exceptions import ContractCustomError, ContractLogicError

    try:
        call()
    except ContractCustomError as exc:
        return custom_error(contract.abi, str(exc.data))
    except ContractLogicError as exc:
        raise AssertionError(f"reverted without a custom error: {exc}") from exc
    raise AssertionError("call did not revert")
