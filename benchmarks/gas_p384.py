"""Gas of one ECDSA P-384 verification (contracts/libraries/P384.sol) on anvil's default hardfork (Osaka).

``measure(w3, deployer)`` deploys contracts/test/P384Harness.sol and verifies the signature of a real
AMD SEV-SNP report (vectors snp/milan-vcek-v2-gosevguest: SHA-384 of bytes 0x000..0x29F, R and S from
the report as parsed by offchain.abi) with the P-384 key of its real VCEK. Figures are execution gas
of the library call alone, measured inside the call with ``gasleft()`` (no 21,000 base, calldata or
ABI decoding):

* ``p384_verify``: P384.verify from the public key (x, y);
* ``p384_precompute``: P384.precompute, the 9,216-byte table of the key (once per key);
* ``p384_verify_precomputed``: P384.verifyPrecomputed with that table.

Run through ``scripts/bench gas --json`` (benchmarks/gas.py merges every module's figures), or alone:
``python -m benchmarks.gas_p384`` (starts its own anvil).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from web3 import Web3

from offchain.abi.snp_report import SnpReport
from offchain.trust.certs import parse_certificate
from tests.conftest import vectors_root
from tests.support.evm import AnvilProcess, compile_contracts, deploy

KEYS = ("p384_verify", "p384_precompute", "p384_verify_precomputed")
VECTOR = "snp/milan-vcek-v2-gosevguest"


def _b48(value: int) -> bytes:
    return value.to_bytes(48, "big")


def signature_inputs(directory: Path) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """(digest, r, s, qx, qy) as 48-byte big-endian values for the report and VCEK in ``directory``."""
    report = SnpReport.from_bytes((directory / "report.bin").read_bytes())
    key = parse_certificate((directory / "vcek.der").read_bytes()).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TypeError(f"{directory}: the VCEK does not hold an EC key")
    numbers = key.public_numbers()
    digest = hashlib.sha384(report.signed_bytes()).digest()
    return digest, _b48(report.signature_r), _b48(report.signature_s), _b48(numbers.x), _b48(numbers.y)


def measure(w3: Web3, deployer: str) -> dict[str, int]:
    """Gas figures (see the module docstring) measured on the chain behind ``w3``."""
    harness: Any = deploy(w3, compile_contracts(["contracts/test/P384Harness.sol"])["P384Harness"], sender=deployer)
    digest, r, s, qx, qy = signature_inputs(vectors_root() / VECTOR)
    ok, verify_gas = harness.functions.measureVerify(digest, r, s, qx, qy).call()
    table, precompute_gas = harness.functions.measurePrecompute(qx, qy).call()
    ok_precomputed, precomputed_gas = harness.functions.measureVerifyPrecomputed(digest, r, s, table).call()
    if not (ok and ok_precomputed):
        raise AssertionError(f"{VECTOR}: the real report signature did not verify on chain")
    return {
        "p384_verify": verify_gas,
        "p384_precompute": precompute_gas,
        "p384_verify_precomputed": precomputed_gas,
    }


def main() -> None:
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        print(json.dumps(measure(w3, w3.eth.accounts[0]), indent=2))


if __name__ == "__main__":
    main()
