"""contracts/libraries/AzureBinding.sol: the HCLAkPub modulus at caller-supplied offsets, on real runtime data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from offchain.abi.hcl import HclReport
from onchain.calldata import jwk_offsets
from tests.support.evm import compile_contracts, deploy

AZURE = [
    "genoa-v3-hcl-trustee",
    "milan-v2-hcl-trustee",
    "milan-v3-hcl-trustee-ev0",
    "milan-v3-hcl-trustee-ev1",
    "milan-v3-hcl-trustee-ev2",
]


@pytest.fixture(scope="module")
def harness(w3: Web3, deployer: str) -> Any:
    artifact = compile_contracts(["contracts/test/RegistryAzureHarness.sol"])["RegistryAzureHarness"]
    return deploy(w3, artifact, sender=deployer)


def _vector(vectors: Path, name: str) -> tuple[bytes, bytes]:
    hcl = HclReport.from_bytes((vectors / "azure" / name / "hcl_report.bin").read_bytes())
    n, _ = hcl.ak_jwk()
    return hcl.runtime_data, n.to_bytes(256, "big")


@pytest.mark.vectors
@pytest.mark.parametrize("name", AZURE)
def test_real_runtime_data_and_its_twins(harness: Any, vectors: Path, name: str) -> None:
    runtime, modulus = _vector(vectors, name)
    kid, n = jwk_offsets(runtime)
    check = harness.functions.checkAkModulus
    assert check(runtime, kid, n, modulus).call() == [True, True]
    other = bytearray(modulus)
    other[100] ^= 1
    assert check(runtime, kid, n, bytes(other)).call() == [True, False]
    for bad_kid, bad_n in ((kid + 1, n), (kid, n + 1), (kid, n - 1), (kid - 1, n), (n, n), (kid, kid)):
        assert check(runtime, bad_kid, bad_n, modulus).call() == [False, False], (bad_kid, bad_n)
    ek = runtime.index(b'{"kid":"HCLEkPub"')
    ek_n = runtime.index(b'"n":"', ek) + 5
    assert check(runtime, kid, ek_n, modulus).call() == [False, False]  # n of another JWK object
    assert check(runtime, ek, ek_n, modulus).call() == [False, False]  # not the AK's kid
    assert check(runtime[: n + 100], kid, n, modulus).call() == [False, False]  # truncated


@pytest.mark.vectors
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kid=st.integers(0, 1300), n=st.integers(0, 1300))
def test_only_the_true_offsets_match(harness: Any, vectors: Path, kid: int, n: int) -> None:
    runtime, modulus = _vector(vectors, "milan-v3-hcl-trustee-ev2")
    true_offsets = jwk_offsets(runtime)
    shape, match = harness.functions.checkAkModulus(runtime, kid, n, modulus).call()
    assert (shape and match) == ((kid, n) == true_offsets)
