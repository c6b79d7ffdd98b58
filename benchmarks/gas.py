"""``scripts/bench gas [--json]``: every gas figure of the on-chain verifier, on anvil's default hardfork (Osaka).

One anvil (``--enable-tx-gas-limit``: nothing may exceed the EIP-7825 cap of 16,777,216 gas per
transaction) serves three modules, each documenting how it measures:

* benchmarks/gas_libraries.py: SHA-384, RSA-PSS-4096, report and certificate parsing (library execution gas);
* benchmarks/gas_p384.py: one ECDSA P-384 verification from a bare key, and with a precomputed table;
* benchmarks/gas_registry.py: whole CvmRegistry transactions (receipt gasUsed: base, calldata and all).

Keys of the JSON object: ``sha384_per_block``, ``sha384_report``, ``p384_verify``, ``rsapss4096_cert``,
``parse_report``, ``parse_quote``, ``register_certificate_vcek``, ``register_cvm``, ``refresh_cvm_rsa``,
``refresh_cvm_p256``, ``publish_golden``, and a few more each module explains.
"""

from __future__ import annotations

import argparse
import json

from web3 import Web3

from benchmarks import gas_libraries, gas_p384, gas_registry
from onchain.anvil import AnvilProcess

#: The targets of issues 4 and 5 (gas), printed next to the figures without --json.
TARGETS = {
    "sha384_per_block": 25_000,
    "p384_verify": 2_000_000,
    "rsapss4096_cert": 750_000,
    "register_cvm": 2_500_000,
    "refresh_cvm_rsa": 80_000,
    "refresh_cvm_p256": 80_000,
}


def measure() -> dict[str, int]:
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 300}))
        deployer = str(w3.eth.accounts[0])
        figures: dict[str, int] = {}
        for module in (gas_libraries, gas_p384, gas_registry):
            figures.update(module.measure(w3, deployer))
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench gas", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = measure()
    if args.json:
        print(json.dumps(figures, sort_keys=True))
        return
    for key in sorted(figures):
        target = TARGETS.get(key)
        verdict = "" if target is None else f"  (target <= {target:,}: {'met' if figures[key] <= target else 'MISSED'})"
        print(f"{key:<28} {figures[key]:>12,}{verdict}")


if __name__ == "__main__":
    main()
