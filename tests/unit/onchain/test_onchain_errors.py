"""onchain.errors: every custom error in every shipped ABI has a stable reason, and revert data decodes to it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak
from web3.exceptions import ContractCustomError, ContractPanicError, Web3RPCError

from offchain.errors import ChainError, Reason
from onchain.errors import ERROR_REASONS, abi_errors, chain_error, decode_revert
from tests.support.evm import ROOT, compile_contracts
from tests.support.registry import registry_artifacts

ARTIFACTS = ROOT / "onchain" / "artifacts"


def shipped() -> dict[str, list[dict[str, Any]]]:
    return {p.stem: json.loads(p.read_text())["abi"] for p in sorted(ARTIFACTS.glob("*.json"))}


def all_abis() -> dict[str, list[dict[str, Any]]]:
    """The ABIs of what users and tests deploy (not of the libraries the compiler lists beside them)."""
    compiled = registry_artifacts()
    names = ("CvmRegistry", "SnpVerifier", "EcdsaVerifier", "CertificateVerifier", "AttestedPriceFeed")
    abis = {name: compiled[name]["abi"] for name in names}
    harness = compile_contracts(["contracts/test/TpmQuoteHarness.sol"])["TpmQuoteHarness"]
    return abis | {"TpmQuoteHarness": harness["abi"]} | shipped()


def test_registry_and_dapp_are_shipped() -> None:
    assert {"CvmRegistry", "AttestedPriceFeed"} <= set(shipped())


def test_every_custom_error_is_mapped() -> None:
    missing = {
        f"{contract}.{entry['name']}"
        for contract, abi in all_abis().items()
        for entry in abi
        if entry.get("type") == "error" and entry["name"] not in ERROR_REASONS
    }
    assert not missing, f"custom errors without a Reason: {sorted(missing)}"


def test_the_map_names_only_real_errors() -> None:
    names = {entry["name"] for abi in all_abis().values() for entry in abi if entry.get("type") == "error"}
    assert set(ERROR_REASONS) <= names, sorted(set(ERROR_REASONS) - names)


def test_selectors_are_unique_per_abi() -> None:
    for contract, abi in all_abis().items():
        errors = [e for e in abi if e.get("type") == "error"]
        assert len(abi_errors(abi)) == len({e["name"] for e in errors}), contract


def _revert(abi: list[dict[str, Any]], name: str, *args: Any) -> bytes:
    entry = next(e for e in abi if e.get("type") == "error" and e["name"] == name)
    types = [i["type"] for i in entry["inputs"]]
    selector = keccak(text=f"{name}({','.join(types)})")[:4]
    return selector + abi_encode(types, list(args))


@pytest.mark.parametrize(
    ("name", "args", "reason"),
    [
        ("RegistryGoldenNotFound", [b"\x01" * 32], Reason.REGISTRY_GOLDEN_NOT_FOUND),
        ("RegistryTcbTooLow", [3], Reason.POLICY_TCB_TOO_LOW),
        ("RegistryNonceReplayed", [12, 11], Reason.REGISTRY_NONCE_REPLAYED),
        ("OwnableUnauthorizedAccount", ["0x" + "11" * 20], Reason.REGISTRY_NOT_OWNER),
        ("TpmMalformed", [1, 7], Reason.TPM_ATTEST_MALFORMED),
        ("TpmMalformed", [2, 7], Reason.TPM_PUBLIC_MALFORMED),
        ("TpmMalformed", [3, 7], Reason.TPM_SIGNATURE_MALFORMED),
    ],
    ids=["golden", "tcb", "replay", "owner", "attest", "public", "signature"],
)
def test_decode_revert(name: str, args: list[Any], reason: Reason) -> None:
    abi = registry_artifacts()["CvmRegistry"]["abi"]
    error = decode_revert(_revert(abi, name, *args), abi)
    assert error.reason is reason
    assert error.context["error"] == name
    assert len(error.context["args"]) == len(args)


def test_unknown_or_malformed_revert_data_is_chain_reverted() -> None:
    abi = registry_artifacts()["CvmRegistry"]["abi"]
    assert decode_revert(b"", abi).reason is Reason.CHAIN_REVERTED
    assert decode_revert(b"\xde\xad\xbe\xef", abi).reason is Reason.CHAIN_REVERTED
    truncated = _revert(abi, "RegistryGoldenNotFound", b"\x01" * 32)[:20]
    assert decode_revert(truncated, abi).reason is Reason.CHAIN_REVERTED


def test_chain_error_translates_web3_exceptions() -> None:
    abi = registry_artifacts()["CvmRegistry"]["abi"]
    data = "0x" + _revert(abi, "RegistryStaleBlock", 5).hex()
    assert chain_error(ContractCustomError(data, data=data), abi).reason is Reason.REGISTRY_NONCE_STALE
    assert chain_error(ContractPanicError("Panic", data="0x4e487b71"), abi).reason is Reason.CHAIN_REVERTED
    assert chain_error(Web3RPCError("connection refused"), abi).reason is Reason.CHAIN_RPC_UNAVAILABLE
    assert chain_error(ConnectionError("down"), abi).reason is Reason.CHAIN_RPC_UNAVAILABLE
    original = ChainError(Reason.CHAIN_TX_FAILED, "x")
    assert chain_error(original, abi) is original
    assert chain_error(ValueError("odd"), abi).reason is Reason.CHAIN_TX_FAILED



@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_revert_data_decodes_to_a_typed_error(data: bytes) -> None:
    abi = registry_artifacts()["CvmRegistry"]["abi"]
    error = decode_revert(data, abi)
    assert isinstance(error, ChainError)
    if error.reason is not Reason.CHAIN_REVERTED:
        assert error.context["error"] in ERROR_REASONS
