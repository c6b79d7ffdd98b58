"""Real AMD and Azure evidence through the registry: the on-chain verdict equals the off-chain verdict for every
vector and for tampered twins (report bit, quote signature, nonce, PCR, runtime JSON), and offsets that point
elsewhere are refused.

The registry pins AMD's real ARK keys (offchain.trust's fingerprints) and caches each vector's real chain. The
chain's clock is pinned inside each leaf's validity window (tests.support.snp_vectors: leaf notBefore + 1 day)
with evm_setTime, because several real VLEKs have expired and the verdict must not depend on the day tests run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from web3 import Web3

from offchain.abi.hcl import HclReport
from offchain.abi.snp_report import SignerKind
from offchain.errors import ChainError, CvmAttestError, Reason
from offchain.policy.check import check_policy
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, TrustRoots
from offchain.verify.binding import verify_azure_binding
from offchain.verify.chain import verify_chain
from offchain.verify.quote import verify_quote
from offchain.verify.report import verify_report
from onchain.calldata import EvidenceCalldata, certificate_der, evidence_struct
from onchain.client import RegistryClient
from tests.support.evm import AnvilProcess
from tests.support.registry import deploy_registry, mine, publish_once
from tests.support.snp_vectors import (
    AZURE_HCL_VECTORS,
    AZURE_REPORT_ONLY_VECTOR,
    NEGATIVE_VECTOR,
    SNP_REPORT_VECTORS,
    Vector,
    load_vector,
)

pytestmark = [pytest.mark.integration, pytest.mark.vectors]

Verdict = str | None  # None: accepted; else the reason


@pytest.fixture(scope="module")
def amd_chain() -> Iterator[Web3]:
    with AnvilProcess() as anvil:
        yield Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))


@pytest.fixture(scope="module")
def amd_registry(amd_chain: Web3) -> RegistryClient:
    owner = str(amd_chain.eth.accounts[0])
    registry = deploy_registry(amd_chain, owner)
    for product, key_hash in AMD_ARK_SPKI_SHA256.items():
        registry.pin_root(product, key_hash)
    return registry


def at(w3: Web3, moment: datetime) -> None:
    """Set the chain's clock (see the module docstring for why it is pinned)."""
    w3.provider.make_request("evm_setTime", [int(moment.timestamp())])  # type: ignore[arg-type]
    mine(w3)


def register_vector(registry: RegistryClient, vector: Vector) -> bytes:
    certs = vector.certificates
    intermediate = certs.ask or certs.asvk
    assert certs.ark is not None and intermediate is not None and certs.leaf is not None
    return registry.register_chain(
        certificate_der(certs.ark), certificate_der(intermediate), certificate_der(certs.leaf)
    )


def onchain(action: Callable[[], object]) -> Verdict:
    try:
        action()
    except ChainError as exc:
        return exc.reason.value
    return None


def offchain(action: Callable[[], object]) -> Verdict:
    try:
        action()
    except CvmAttestError as exc:
        return exc.reason.value
    return None


def _chain(vector: Vector):  # type: ignore[no-untyped-def]
    certs = vector.certificates
    return verify_chain(certs.leaf, certs.ask or certs.asvk, certs.ark, roots=TrustRoots(), now=vector.now)


# --- bare reports -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*SNP_REPORT_VECTORS, NEGATIVE_VECTOR], ids=lambda n: n.split("/")[1])
def test_bare_report_verdicts_agree(vectors: Path, amd_chain: Web3, amd_registry: RegistryClient, name: str) -> None:
    vector = load_vector(vectors, name)
    at(amd_chain, vector.now)
    leaf_id = register_vector(amd_registry, vector)
    report = vector.report
    expected_ok = vector.expected["signature_ok"] and vector.expected["chain_ok"]
    off = offchain(lambda: verify_report(report, _chain(vector)))
    on = onchain(lambda: amd_registry.verify_report(report.to_bytes(), leaf_id))
    assert on == off
    assert (on is None) == expected_ok
    # One flipped bit of the signed MEASUREMENT: both say the signature no longer verifies.
    flipped = bytearray(report.to_bytes())
    flipped[0x90] ^= 0x01
    assert onchain(lambda: amd_registry.verify_report(bytes(flipped), leaf_id)) == Reason.SNP_SIGNATURE_INVALID.value


def test_expired_leaf_is_refused_on_chain(vectors: Path, amd_chain: Web3, amd_registry: RegistryClient) -> None:
    vector = load_vector(vectors, "snp/milan-vlek-v2-aws-constellation-2023")
    at(amd_chain, vector.now)
    leaf_id = register_vector(amd_registry, vector)
    assert onchain(lambda: amd_registry.verify_report(vector.report.to_bytes(), leaf_id)) is None
    at(amd_chain, vector.not_after.replace(year=vector.not_after.year + 1))
    assert onchain(lambda: amd_registry.verify_report(vector.report.to_bytes(), leaf_id)) == (
        Reason.CHAIN_EXPIRED.value
    )


def test_report_with_another_chips_vcek(vectors: Path, amd_chain: Web3, amd_registry: RegistryClient) -> None:
    one = load_vector(vectors, "snp/milan-vcek-v2-virtee")
    other = load_vector(vectors, "snp/milan-vcek-v2-trustee")
    at(amd_chain, max(one.now, other.now))
    register_vector(amd_registry, one)
    other_leaf = register_vector(amd_registry, other)
    on = onchain(lambda: amd_registry.verify_report(one.report.to_bytes(), other_leaf))
    off = offchain(lambda: verify_report(one.report, _chain(other)))
    assert on == off == Reason.SNP_HWID_MISMATCH.value


# --- Azure: HCL report + vTPM quote with its raw nonce ---------------------------------------------------


@dataclasses.dataclass
class AzureCase:
    hcl: HclReport
    attest: bytes
    signature: bytes
    pcrs: dict[int, bytes]
    nonce: bytes


def _azure(vector: Vector) -> AzureCase:
    d = vector.directory
    pcrs = {int(k): bytes.fromhex(v) for k, v in json.loads((d / "tpm_pcrs_sha256.json").read_text()).items()}
    return AzureCase(
        hcl=HclReport.from_bytes((d / "hcl_report.bin").read_bytes()),
        attest=(d / "tpm_quote_attest.bin").read_bytes(),
        signature=(d / "tpm_quote_sig.bin").read_bytes(),
        pcrs=pcrs,
        nonce=(d / "tpm_nonce.bin").read_bytes(),
    )


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def _tamper(case: AzureCase, twin: str) -> AzureCase:
    if twin == "as-is":
        return case
    if twin == "report-bit":
        raw = _flip(case.hcl.to_bytes(), 0x20 + 0x90)
        return dataclasses.replace(case, hcl=HclReport.from_bytes(raw))
    if twin == "quote-signature":
        return dataclasses.replace(case, signature=_flip(case.signature, len(case.signature) - 1))
    if twin == "nonce":
        return dataclasses.replace(case, nonce=_flip(case.nonce, 0))
    if twin == "pcr":
        return dataclasses.replace(case, pcrs=case.pcrs | {7: _flip(case.pcrs[7], 31)})
    if twin == "runtime-json":
        raw = bytearray(case.hcl.to_bytes())
        start = raw.index(b'"vmUniqueId":"') + len(b'"vmUniqueId":"')
        raw[start] = ord("0") if raw[start] != ord("0") else ord("1")
        return dataclasses.replace(case, hcl=HclReport.from_bytes(bytes(raw)))
    raise AssertionError(twin)


def _golden(case: AzureCase, vector: Vector) -> GoldenMeasurement:
    chain = _chain(vector)
    return GoldenMeasurement.from_report(
        case.hcl.snp_report, chain.product, SignerKind.VCEK, Binding.AZURE, pcrs={i: case.pcrs[i] for i in (0, 7)}
    )


def _offchain_azure(case: AzureCase, vector: Vector, golden: GoldenMeasurement) -> Verdict:
    def run() -> None:
        chain = _chain(vector)
        report = case.hcl.snp_report
        verified = verify_report(report, chain)
        ak = case.hcl.ak_public_key()
        verify_azure_binding(report, case.hcl, ak)
        quote = verify_quote(case.attest, case.signature, ak, expected_extra_data=case.nonce, pcrs=case.pcrs)
        check_policy(
            golden, report, product=verified.product, signer=verified.signer, binding=Binding.AZURE, pcrs=quote.pcrs
        )

    return offchain(run)


def _evidence(case: AzureCase, leaf_id: bytes) -> EvidenceCalldata:
    return evidence_struct(
        report=case.hcl.snp_report,
        leaf=leaf_id,
        attest=case.attest,
        signature=case.signature,
        pcrs=case.pcrs,
        hcl=case.hcl,
    )


TWINS = ["as-is", "report-bit", "quote-signature", "nonce", "pcr", "runtime-json"]
TWIN_REASONS = {
    "as-is": None,
    "report-bit": Reason.SNP_SIGNATURE_INVALID.value,
    "quote-signature": Reason.TPM_QUOTE_SIGNATURE_INVALID.value,
    "nonce": Reason.TPM_QUOTE_NONCE_MISMATCH.value,
    "pcr": Reason.TPM_QUOTE_PCR_DIGEST_MISMATCH.value,
    "runtime-json": Reason.BINDING_RUNTIME_DATA_MISMATCH.value,
}


@pytest.mark.parametrize("name", AZURE_HCL_VECTORS, ids=lambda n: n.split("/")[1])
def test_azure_verdicts_agree_with_twins(
    vectors: Path, amd_chain: Web3, amd_registry: RegistryClient, name: str
) -> None:
    vector = load_vector(vectors, name)
    at(amd_chain, vector.now)
    leaf_id = register_vector(amd_registry, vector)
    case = _azure(vector)
    golden = _golden(case, vector)
    golden_id = publish_once(amd_registry, golden)  # ev0 and ev1 are the same VM: one golden measurement
    verdicts = {}
    for twin in TWINS:
        tampered = _tamper(case, twin)
        on = onchain(lambda: amd_registry.verify_evidence(golden_id, tampered.nonce, _evidence(tampered, leaf_id)))
        off = _offchain_azure(tampered, vector, golden)
        assert on == off, twin
        verdicts[twin] = on
    assert verdicts == TWIN_REASONS


@pytest.mark.parametrize("name", AZURE_HCL_VECTORS, ids=lambda n: n.split("/")[1])
def test_azure_offsets_pointing_elsewhere(
    vectors: Path, amd_chain: Web3, amd_registry: RegistryClient, name: str
) -> None:
    vector = load_vector(vectors, name)
    at(amd_chain, vector.now)
    leaf_id = register_vector(amd_registry, vector)
    case = _azure(vector)
    evidence = _evidence(case, leaf_id)
    runtime = evidence.runtime_data
    assert onchain(lambda: amd_registry.verify_evidence(b"\x00" * 32, case.nonce, evidence)) is None
    ek = runtime.index(b'{"kid":"HCLEkPub"')
    ek_modulus = runtime.index(b'"n":"', ek) + len(b'"n":"')
    elsewhere = [
        (evidence.ak_kid_offset + 1, evidence.ak_modulus_offset),
        (evidence.ak_kid_offset, evidence.ak_modulus_offset + 4),
        (ek, ek_modulus),
        (evidence.ak_kid_offset, ek_modulus),
    ]
    for kid, modulus in elsewhere:
        moved = dataclasses.replace(evidence, ak_kid_offset=kid, ak_modulus_offset=modulus)
        verdict = onchain(lambda: amd_registry.verify_evidence(b"\x00" * 32, case.nonce, moved))
        assert verdict == Reason.REGISTRY_JWK_OFFSETS_INVALID.value, (kid, modulus)


def test_azure_report_without_quote(vectors: Path, amd_chain: Web3, amd_registry: RegistryClient) -> None:
    vector = load_vector(vectors, AZURE_REPORT_ONLY_VECTOR)
    at(amd_chain, vector.now)
    leaf_id = register_vector(amd_registry, vector)
    runtime = (vector.directory / "runtime_data.json").read_bytes()
    report = vector.report.to_bytes()
    assert onchain(lambda: amd_registry.verify_report(report, leaf_id, b"\x00" * 32, runtime)) is None
    tampered = runtime.replace(b'"secure-boot":false', b'"secure-boot":true ')
    assert tampered != runtime
    assert onchain(lambda: amd_registry.verify_report(report, leaf_id, b"\x00" * 32, tampered)) == (
        Reason.BINDING_RUNTIME_DATA_MISMATCH.value
    )
