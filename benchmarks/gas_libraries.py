"""Gas of the SEV-SNP libraries Sha384, RsaPss, SnpReport and X509Lite on anvil's default hardfork (Osaka).

``measure(w3, deployer)`` deploys the test harnesses (contracts/test/*Harness.sol) and runs each library on
real AMD data from the vectors (snp/milan-vcek-v2-gosevguest: its report, its VCEK and the Milan ASK).
Every figure is the execution gas of the library call alone, measured inside the call with ``gasleft()``
(no 21,000 base, no calldata, no ABI decoding), the same convention as benchmarks/gas_p384.py:

* ``sha384_per_block``: the marginal cost of one more 128-byte block (hashing 100 + 16 x 128 bytes minus
  hashing 100 bytes, divided by 16);
* ``sha384_report``: SHA-384 of a report's 672 signed bytes (0x000..0x29F), padding included;
* ``rsapss4096_cert``: RsaPss.verify of the real VCEK's TBSCertificate with the real ASK's RSA-4096 key:
  SHA-384 of the TBS, the modexp precompile, MGF1-SHA-384 and the final SHA-384;
* ``parse_report``: SnpReport.parse of the real report;
* ``x509_parse_vcek``: X509Lite.parse and amdExtensions of the real VCEK; ``x509_parse_ark``: X509Lite.parse
  of the Milan ARK;
* ``rsapss4096_cert_tx``: for scale, the whole transaction (gasUsed of its receipt: 21,000, calldata and ABI
  decoding included) that runs the ``rsapss4096_cert`` check, below the 16,777,216 EIP-7825 cap.

Run through ``scripts/bench gas --json`` (benchmarks/gas.py merges every module's figures), or alone:
``python -m benchmarks.gas_libraries`` (starts its own anvil).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from web3 import Web3

from tests.conftest import vectors_root
from tests.support.evm import AnvilProcess, compile_contracts, deploy

KEYS = (
    "sha384_per_block",
    "sha384_report",
    "rsapss4096_cert",
    "parse_report",
    "x509_parse_vcek",
    "x509_parse_ark",
    "rsapss4096_cert_tx",
)
VECTOR = "snp/milan-vcek-v2-gosevguest"
EXTRA_BLOCKS = 16


def _certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    with warnings.catch_warnings():
        # Real VCEKs carry serial number 0, which cryptography warns about (see pyproject).
        warnings.simplefilter("ignore")
        if data.startswith(b"-----"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)


def _harness(w3: Web3, deployer: str, name: str) -> Any:
    return deploy(w3, compile_contracts([f"contracts/test/{name}.sol"])[name], sender=deployer)


def measure(w3: Web3, deployer: str) -> dict[str, int]:
    """Gas figures (see the module docstring) measured on the chain behind ``w3``."""
    directory = vectors_root() / VECTOR
    report = (directory / "report.bin").read_bytes()
    vcek = _certificate(directory / "vcek.der")
    ask = _certificate(vectors_root() / "amd-roots" / "milan" / "ask.pem")
    ark = _certificate(vectors_root() / "amd-roots" / "milan" / "ark.pem")

    sha: Any = _harness(w3, deployer, "Sha384Harness")
    base_gas, base_digest = sha.functions.measure(bytes(100)).call()
    long_gas, _ = sha.functions.measure(bytes(100 + 128 * EXTRA_BLOCKS)).call()
    report_gas, report_digest = sha.functions.measure(report[:0x2A0]).call()
    if base_digest != hashlib.sha384(bytes(100)).digest() or report_digest != hashlib.sha384(report[:0x2A0]).digest():
        raise AssertionError("Sha384 disagrees with hashlib")

    pss: Any = _harness(w3, deployer, "RsaPssHarness")
    key = ask.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise TypeError("the ASK does not hold an RSA key")
    numbers = key.public_numbers()
    args = (
        vcek.tbs_certificate_bytes,
        vcek.signature,
        numbers.n.to_bytes(512, "big"),
        numbers.e.to_bytes(3, "big"),
    )
    pss_gas, ok = pss.functions.measure(*args).call()
    if not ok:
        raise AssertionError(f"{VECTOR}: the VCEK's signature did not verify under the Milan ASK on chain")
    receipt = w3.eth.wait_for_transaction_receipt(pss.functions.measure(*args).transact({"from": deployer}))

    snp: Any = _harness(w3, deployer, "SnpReportHarness")
    parse_gas = snp.functions.measureParse(report).call()

    cert: Any = _harness(w3, deployer, "X509LiteHarness")
    vcek_gas = cert.functions.measureParse(vcek.public_bytes(Encoding.DER), True).call()
    ark_gas = cert.functions.measureParse(ark.public_bytes(Encoding.DER), False).call()

    return {
        "sha384_per_block": round((long_gas - base_gas) / EXTRA_BLOCKS),
        "sha384_report": report_gas,
        "rsapss4096_cert": pss_gas,
        "parse_report": parse_gas,
        "x509_parse_vcek": vcek_gas,
        "x509_parse_ark": ark_gas,
        "rsapss4096_cert_tx": int(receipt["gasUsed"]),
    }


def main() -> None:
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        print(json.dumps(measure(w3, w3.eth.accounts[0]), indent=2))


if __name__ == "__main__":
    main()
