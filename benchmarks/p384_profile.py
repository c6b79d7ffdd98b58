"""Where the gas of one ECDSA P-384 verification goes, by opcode class, from an execution trace.

``profile(w3, harness, function, args)`` runs one ``measure*`` function of contracts/test/P384Harness.sol
through ``debug_traceCall`` and charges every step of the library call (from the harness's first
``gasleft()`` to its last) with what it cost: the difference between the gas left before it and
before the next step. That is exact for every opcode, memory expansion and the precompile calls
included (a call step's own ``gasCost`` is the gas it forwards, not what it used). The sum equals
the ``gasUsed`` the harness reports, and :func:`profile` checks that it does.

Classes: ``alu`` (arithmetic, comparison and bit opcodes: the work itself), ``push`` (constants,
and the jump targets of internal calls), ``dup``, ``swap``, ``pop`` (moving values on the stack),
``control`` (JUMP, JUMPI, JUMPDEST), ``memory`` (loads, stores and copies into memory), ``precompile``
(the modexp calls, inversion and products mod n) and ``other``.

The verify figure read this way is what docs/p384.md uses to bound what any schedule of this
arithmetic can cost. Run through ``scripts/bench p384_profile [--json]`` (starts its own anvil).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from web3 import Web3

from benchmarks.gas_p384 import VECTOR, signature_inputs
from tests.conftest import vectors_root
from tests.support.evm import AnvilProcess, compile_contracts, deploy

ALU = frozenset(
    "ADD MUL SUB DIV SDIV MOD SMOD ADDMOD MULMOD EXP SIGNEXTEND LT GT SLT SGT EQ ISZERO AND OR XOR NOT BYTE "
    "SHL SHR SAR CLZ".split()
)
CONTROL = frozenset({"JUMP", "JUMPI", "JUMPDEST"})
MEMORY = frozenset({"MLOAD", "MSTORE", "MSTORE8", "MCOPY", "CALLDATACOPY", "CODECOPY", "RETURNDATACOPY"})
CALLS = frozenset({"STATICCALL", "CALL", "DELEGATECALL", "CALLCODE"})
CLASSES = ("alu", "push", "dup", "swap", "pop", "control", "memory", "precompile", "other")


def opcode_class(op: str) -> str:
    """The class (see the module docstring) of one opcode mnemonic as anvil's tracer names it."""
    if op in ALU:
        return "alu"
    if op.startswith("PUSH"):
        return "push"
    if op.startswith("DUP"):
        return "dup"
    if op.startswith("SWAP"):
        return "swap"
    if op == "POP":
        return "pop"
    if op in CONTROL:
        return "control"
    if op in MEMORY:
        return "memory"
    if op in CALLS:
        return "precompile"
    return "other"


@dataclass(frozen=True, slots=True)
class Profile:
    """Gas and step counts of one library call, by class and by opcode."""

    gas: int
    gas_by_class: dict[str, int]
    steps_by_class: dict[str, int]
    gas_by_opcode: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        alu_steps = self.steps_by_class["alu"]
        moves = self.steps_by_class["dup"] + self.steps_by_class["swap"] + self.steps_by_class["pop"]
        return {
            "gas": self.gas,
            "gas_by_class": self.gas_by_class,
            "steps_by_class": self.steps_by_class,
            "stack_moves_per_alu_op": round(moves / alu_steps, 3) if alu_steps else None,
            "gas_by_opcode": dict(sorted(self.gas_by_opcode.items(), key=lambda item: -item[1])),
        }


def charge(struct_logs: list[dict[str, Any]]) -> Profile:
    """The profile of the steps between the first and the last GAS of the outermost frame.

    Raises ValueError when the trace has no such region.
    """
    top = [i for i, step in enumerate(struct_logs) if step["depth"] == 1 and step["op"] == "GAS"]
    if len(top) < 2:
        raise ValueError("the trace has no gasleft() ... gasleft() region in its outermost frame")
    first, last = top[0], top[-1]
    gas_by_class: Counter[str] = Counter({name: 0 for name in CLASSES})
    steps_by_class: Counter[str] = Counter({name: 0 for name in CLASSES})
    gas_by_opcode: Counter[str] = Counter()
    for i in range(first, last):
        step, following = struct_logs[i], struct_logs[i + 1]
        if following["depth"] != step["depth"]:
            raise ValueError(f"step {i} ({step['op']}) enters another frame: only precompiles are expected")
        cost = step["gas"] - following["gas"]
        name = opcode_class(step["op"])
        gas_by_class[name] += cost
        steps_by_class[name] += 1
        gas_by_opcode[step["op"]] += cost
    total = struct_logs[first]["gas"] - struct_logs[last]["gas"]
    return Profile(total, dict(gas_by_class), dict(steps_by_class), dict(gas_by_opcode))


def profile(w3: Web3, harness: Any, function: str, args: list[Any]) -> Profile:
    """Trace ``harness.function(*args)`` (a ``measure*`` function) and profile its library call.

    Raises AssertionError when the profile does not add up to the gas the harness measured itself.
    """
    data = harness.encode_abi(function, args)
    call = {"to": harness.address, "data": data, "gas": hex(30_000_000)}
    options = {"disableStack": True, "disableMemory": True, "disableStorage": True}
    response = w3.provider.make_request("debug_traceCall", [call, "latest", options])  # type: ignore[arg-type]
    if "error" in response:
        raise RuntimeError(f"debug_traceCall failed: {response['error']}")
    result = charge(response["result"]["structLogs"])
    _, measured = getattr(harness.functions, function)(*args).call({"gas": 30_000_000})
    if result.gas != measured or sum(result.gas_by_class.values()) != measured:
        raise AssertionError(f"{function}: the trace charges {result.gas} gas, the harness measured {measured}")
    return result


def measure(w3: Web3, deployer: str) -> dict[str, dict[str, Any]]:
    """Profiles of P384.verify and P384.verifyPrecomputed on the real report signature of ``VECTOR``."""
    harness: Any = deploy(w3, compile_contracts(["contracts/test/P384Harness.sol"])["P384Harness"], sender=deployer)
    digest, r, s, qx, qy = signature_inputs(vectors_root() / VECTOR)
    table, _ = harness.functions.measurePrecompute(qx, qy).call({"gas": 30_000_000})
    return {
        "p384_verify": profile(w3, harness, "measureVerify", [digest, r, s, qx, qy]).as_json(),
        "p384_verify_precomputed": profile(w3, harness, "measureVerifyPrecomputed", [digest, r, s, table]).as_json(),
    }


def _print_table(results: dict[str, dict[str, Any]]) -> None:
    for name, result in results.items():
        print(f"{name}: {result['gas']:,} gas, {result['stack_moves_per_alu_op']} stack moves per ALU op")
        for cls in CLASSES:
            gas = result["gas_by_class"][cls]
            print(f"  {cls:<10} {gas:>11,} gas {result['steps_by_class'][cls]:>9,} steps  {gas / result['gas']:6.1%}")


def main(argv: list[str]) -> None:
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 600}))
        results = measure(w3, w3.eth.accounts[0])
    if "--json" in argv:
        print(json.dumps(results, indent=2))
    else:
        _print_table(results)


if __name__ == "__main__":
    main(sys.argv[1:])
