"""benchmarks/p384_profile.py: the opcode-class profile charges each step exactly what it cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from benchmarks.gas_p384 import VECTOR, signature_inputs
from benchmarks.p384_profile import CLASSES, charge, opcode_class, profile
from tests.support.evm import compile_contracts, deploy


def _step(op: str, gas: int, depth: int = 1) -> dict[str, Any]:
    return {"op": op, "gas": gas, "depth": depth}


def test_each_step_is_charged_the_gas_left_before_it_minus_before_the_next() -> None:
    # a call step's own gasCost would be the gas it forwards; the difference is what it used
    trace = [
        _step("CALLDATALOAD", 1_000),
        _step("GAS", 990),
        _step("PUSH1", 988),
        _step("DUP2", 985),
        _step("STATICCALL", 982),
        _step("MULMOD", 250),
        _step("GAS", 242),
        _step("SWAP1", 240),
    ]
    result = charge(trace)
    assert result.gas == 990 - 242
    assert result.gas_by_class["precompile"] == 982 - 250
    assert result.gas_by_class["alu"] == 8
    assert result.gas_by_class["push"] == 3
    assert result.gas_by_class["dup"] == 3
    assert result.gas_by_class["other"] == 2  # the first GAS; the last one is outside the region
    assert result.gas_by_class["swap"] == 0
    assert sum(result.gas_by_class.values()) == result.gas
    assert result.steps_by_class["precompile"] == 1
    assert result.gas_by_opcode["STATICCALL"] == 732


def test_a_trace_without_a_measured_region_is_refused() -> None:
    with pytest.raises(ValueError, match="no gasleft"):
        charge([_step("GAS", 100), _step("ADD", 98)])


def test_a_step_that_enters_contract_code_is_refused() -> None:
    trace = [_step("GAS", 100), _step("CALL", 98), _step("PUSH1", 50, depth=2), _step("GAS", 40)]
    with pytest.raises(ValueError, match="enters another frame"):
        charge(trace)


@pytest.mark.parametrize(
    ("op", "cls"),
    [("MULMOD", "alu"), ("CLZ", "alu"), ("PUSH0", "push"), ("PUSH32", "push"), ("DUP16", "dup"), ("SWAP1", "swap"),
     ("POP", "pop"), ("JUMPDEST", "control"), ("MCOPY", "memory"), ("CALLDATACOPY", "memory"), ("STATICCALL", "precompile"), ("GAS", "other")],
)
def test_opcode_classes(op: str, cls: str) -> None:
    assert opcode_class(op) == cls
    assert cls in CLASSES


def test_the_profile_of_a_real_verification_adds_up_to_the_measured_gas(w3: Web3, vectors: Path) -> None:
    harness: Any = deploy(w3, compile_contracts(["P384Harness"])["P384Harness"])
    digest, r, s, qx, qy = signature_inputs(vectors / VECTOR)
    table, _ = harness.functions.measurePrecompute(qx, qy).call()
    # profile() itself raises when the classes do not add up to the harness's own gasleft() figure
    result = profile(w3, harness, "measureVerifyPrecomputed", [digest, r, s, table])
    assert sum(result.gas_by_class.values()) == result.gas
    # s^-1 mod n and the two products u1 = e s^-1, u2 = r s^-1: three modexp calls, at least 500 gas each
    assert result.steps_by_class["precompile"] == 3
    assert result.gas_by_class["precompile"] >= 1_500
    # the loop's field arithmetic is there: MULMOD is only used by the field and scalar products
    assert result.gas_by_opcode["MULMOD"] % 8 == 0 and result.gas_by_opcode["MULMOD"] > 0
    assert result.as_json()["stack_moves_per_alu_op"] > 0
