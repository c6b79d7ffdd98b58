"""Gas of the registry's transactions on anvil (default hardfork: Osaka pricing, EIP-7825 cap enforced).

``measure(w3, deployer)`` deploys the shipped CvmRegistry (onchain/artifacts), trusts a freshly made
development AMD chain (offchain.devamd: RSA-4096 ARK/ASK and a P-384 VCEK, signed exactly like
AMD's) and a simulated CVM (a report that chain signed, software RSA-2048 and P-256 AKs quoting 24
SHA-256 PCRs), and returns gas figures. Every figure except ``parse_quote`` is the ``gasUsed`` of a
whole mined transaction (21,000 base and calldata included), what a relayer pays:

* ``register_certificate_vcek``: registerCertificate of the VCEK under the cached ASK (RSA-PSS-4096
  over the TBS with its SHA-384 hashing, X.509 parsing, caching the leaf);
* ``register_cvm``: registerCvm with the cached VCEK and an RSA-2048 AK (direct binding, golden
  measurement pinning PCRs 0 and 23);
* ``register_cvm_svsm``: registerCvmSvsm with the cached VCEK, an RSA-2048 EK in the SVSM's VMPL0 report
  (SHA-512 of nonce and manifest through the SnpVerifier), an activator's statement recovered through the
  EcdsaVerifier and an RSA-2048 AK's quote (golden measurement pinning PCRs 0 and 23);
* ``register_cvm_checks``: ``register_cvm`` against a golden measurement with report checks (HOST_DATA,
  ID_KEY_DIGEST, minimum GUEST_SVN, a chip allow-list of four, two PLATFORM_INFO bits, minimum firmware),
  which SnpVerifier.checkReport runs after the golden rules;
* ``refresh_cvm_rsa`` / ``refresh_cvm_p256``: refreshCvm with an RSA-2048 / P-256 AK;
* ``publish_golden``: publishGolden pinning PCRs 0 and 23;
* ``publish_golden_checks``: publishGoldenWithChecks of that golden measurement with those checks (stored
  as a contract's code);
* ``publish_sealing_key``: publishSealingKey of the attested CVM (its secp256k1 signature recovered
  through the EcdsaVerifier, its attestation status read, the key stored);
* ``is_attested``: a CvmGated check as a dApp's gated function pays it, for the attested CVM: the
  registry's ``attestationStatus`` with cold storage, measured with ``gasleft()`` inside an
  ``eth_call`` (contracts/test/CvmGatedHarness.sol; the gate reverts if the CVM is not attested);
* ``is_attested_after_revocation``: the same after a certificate of another chain was revoked, so
  the registry walks the CVM's chain (the slow path until the CVM's next refresh);
* ``parse_quote``: execution gas of TpmQuote.parseQuote on a 24-PCR quote, measured inside the call
  with ``gasleft()`` (contracts/test/TpmQuoteHarness.sol); as a transaction of its own it would pay
  EIP-7623's calldata floor, which hides it.

Run through ``scripts/bench gas --json`` (benchmarks/gas.py starts anvil and merges every module's
figures), or alone: ``python -m benchmarks.gas_registry``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from eth_account import Account
from web3 import Web3

from offchain.abi.snp_report import Product, SignerKind
from offchain.devamd import DevAmdChain
from offchain.policy.checks import FirmwareMinimum, ReportChecks
from offchain.trust.roots import spki_fingerprint
from onchain.calldata import certificate_der
from onchain.client import RegistryClient
from tests.support.evm import compile_contracts, deploy
from tests.support.registry import (
    ISSUED,
    SoftAk,
    ek_public,
    fresh_nonce,
    new_cvm,
    pcr_bank,
    publish_once,
    register_cvm,
    register_cvm_svsm,
    sealing_key_signature,
    sim_cvm,
    svsm_cvm,
    trust_dev_chain,
)

KEYS = (
    "register_certificate_vcek",
    "register_cvm",
    "register_cvm_svsm",
    "register_cvm_checks",
    "refresh_cvm_rsa",
    "refresh_cvm_p256",
    "publish_golden",
    "publish_golden_checks",
    "publish_sealing_key",
    "is_attested",
    "is_attested_after_revocation",
    "parse_quote",
)


def _gas_used(client: RegistryClient) -> int:
    assert client.last_tx is not None
    return client.last_tx.gas_used


def measure(w3: Web3, deployer: str) -> dict[str, int]:
    """Gas figures (see the module docstring) measured on the chain behind ``w3``."""
    out: dict[str, int] = {}
    chain = DevAmdChain.generate(product=Product.GENOA, signer=SignerKind.VCEK, not_before=ISSUED)
    registry = RegistryClient.deploy(w3, owner=deployer, sender=deployer)
    registry.pin_root(chain.product, spki_fingerprint(chain.ark))
    ark_id = registry.register_certificate(certificate_der(chain.ark))
    ask_id = registry.register_certificate(certificate_der(chain.ask), ark_id)
    registry.register_certificate(certificate_der(chain.leaf), ask_id)
    out["register_certificate_vcek"] = _gas_used(registry)

    for kind in ("rsa", "p256"):
        cvm = sim_cvm(chain, SoftAk(kind), pcrs=pcr_bank())
        # Both CVMs run the same image: one golden measurement, published once.
        golden_id = publish_once(registry, cvm.golden(pinned=(0, 23)))
        if kind == "rsa":
            out["publish_golden"] = _gas_used(registry)
        address = new_cvm()
        number, extra = fresh_nonce(w3, registry, address)
        register_cvm(registry, golden_id, address, number, cvm.evidence(cvm.quote(extra)))
        if kind == "rsa":
            out["register_cvm"] = _gas_used(registry)
        number, extra = fresh_nonce(w3, registry, address)
        quote = cvm.quote(extra)
        registry.refresh_cvm(address, number, cvm.ak.public, quote.attest, quote.signature)
        out[f"refresh_cvm_{kind}"] = _gas_used(registry)
        if kind == "rsa":
            gated = address
            key = bytes(range(32))
            registry.publish_sealing_key(address, key, sealing_key_signature(registry, address, key))
            out["publish_sealing_key"] = _gas_used(registry)

    svsm = svsm_cvm(chain, SoftAk("rsa"), ek_public("rsa"))
    golden_id = publish_once(registry, svsm.golden(pinned=(0, 23)))
    activator = Account.create()
    registry.set_activator(activator.address, True)
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    expiry = int(w3.eth.get_block("latest")["timestamp"]) + 600
    register_cvm_svsm(registry, golden_id, address, number, svsm.evidence(svsm.quote(extra)), activator, expiry)
    out["register_cvm_svsm"] = _gas_used(registry)

    host_data, id_key = hashlib.sha256(b"host data").digest(), hashlib.sha384(b"id key").digest()
    checked = sim_cvm(chain, SoftAk("rsa"), pcrs=pcr_bank(), host_data=host_data, id_key_digest=id_key, guest_svn=2)
    report = checked.report
    checks = ReportChecks(
        host_data=host_data, id_key_digest=id_key, min_guest_svn=2,
        chip_ids=(*(bytes([i]) * 64 for i in range(1, 4)), report.chip_id),
        platform_info=(("smt_enabled", True), ("tsme_enabled", False)),
        min_firmware=FirmwareMinimum(report.current_major, report.current_minor, report.current_build),
    )
    golden_id = publish_once(registry, dataclasses.replace(checked.golden(pinned=(0, 23)), checks=checks))
    out["publish_golden_checks"] = _gas_used(registry)
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    register_cvm(registry, golden_id, address, number, checked.evidence(checked.quote(extra)))
    out["register_cvm_checks"] = _gas_used(registry)

    harness = deploy(w3, compile_contracts(["contracts/test/CvmGatedHarness.sol"])["CvmGatedHarness"],
                     registry.address, sender=deployer)
    out["is_attested"] = int(harness.functions.gateGas().call({"from": gated}))
    other = DevAmdChain.generate(product=Product.GENOA, signer=SignerKind.VCEK, not_before=ISSUED)
    registry.revoke_certificate(trust_dev_chain(registry, other))
    out["is_attested_after_revocation"] = int(harness.functions.gateGas().call({"from": gated}))

    harness = deploy(w3, compile_contracts(["contracts/test/TpmQuoteHarness.sol"])["TpmQuoteHarness"], sender=deployer)
    attest = SoftAk("rsa").quote(b"\x11" * 32, pcr_bank()).attest
    out["parse_quote"] = int(harness.functions.parseQuoteGas(attest).call()[0])
    return {key: out[key] for key in KEYS}


def main() -> None:
    from onchain.anvil import AnvilProcess

    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        result: dict[str, Any] = measure(w3, str(w3.eth.accounts[0]))
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
