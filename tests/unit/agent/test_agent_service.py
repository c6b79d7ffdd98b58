"""agent.service on a real swtpm: the evidence each platform produces verifies with the off-chain
verifier (pinning the development root), binds exactly the agent's nonce forms, and the golden
measurement the agent describes accepts it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from agent.config import AkKind, PlatformName
from agent.service import Agent
from eth_keys import keys

from offchain.abi.binding import golden_consent_digest, offchain_extra_data, onchain_extra_data
from offchain.abi.tpm import TpmsAttest, TpmtPublic
from offchain.abi.workload import replay
from offchain.devamd import DevAmdChain
from offchain.errors import CvmAttestError, PlatformError, Reason, RequestError, VerificationError
from offchain.evidence import (
    EvidenceBundle,
    offchain_expected_extra_data,
    onchain_expected_extra_data,
    verify_evidence,
)
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.trust.certs import CertificateSet
from offchain.trust.roots import TrustRoots
from tests.support.agent import CONSENTED_GOLDEN, WORKLOAD, agent_config, write_tree
from tests.support.fake_snp import FakeConfigfsTsm, azure_hcl_report
from tests.support.swtpm import Swtpm, provision_persistent_ak, write_nv

NONCE = bytes.fromhex("c0ffee")
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
REGISTRY = "0x" + "ab" * 20
BLOCK_HASH = bytes(range(32))


def _recover(digest: bytes, signature: bytes) -> str:
    """The address ECDSA recovery gives for a raw 32-byte digest (what OpenZeppelin's ECDSA.recover does)."""
    r, s, v = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]
    public = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    return str(public.to_checksum_address())


def _roots(chain_dir: Path) -> TrustRoots:
    return TrustRoots.amd().with_dev_root(DevAmdChain.load(chain_dir).ark)


def _now(chain_dir: Path) -> dt.datetime:
    # Pin the time inside the development certificates' validity (they start when generated).
    return DevAmdChain.load(chain_dir).leaf.not_valid_before_utc + dt.timedelta(days=1)


def _verify(bundle: EvidenceBundle, chain_dir: Path, nonce: bytes = NONCE, golden: GoldenMeasurement | None = None,
            roots: TrustRoots | None = None, certificates: CertificateSet | None = None) -> object:
    # The JSON round trip is what a verifier receives over HTTP.
    received = EvidenceBundle.from_json(json.dumps(bundle.to_json()))
    return verify_evidence(received, expected_extra_data=offchain_expected_extra_data(received, nonce), golden=golden,
                           roots=roots or _roots(chain_dir), now=_now(chain_dir), certificates=certificates)


def test_offchain_evidence_verifies(sim_agent: Agent, sim_chain: Path) -> None:
    bundle = sim_agent.collaterals(NONCE)
    verified = _verify(bundle, sim_chain)
    assert verified.product.value == "genoa"  # type: ignore[attr-defined]
    attest = TpmsAttest.from_bytes(bundle.quote_attest)
    assert attest.extra_data == offchain_extra_data(NONCE) != NONCE
    assert sorted(bundle.pcrs) == list(sim_agent.config.pcrs)
    assert list(bundle.event_log or ()) == sim_agent.workload.events()
    assert bundle.pcrs[23] == replay(sim_agent.workload.events())
    assert bundle.cvm_address == sim_agent.key.address_bytes
    assert bundle.certificates["ark"] == (sim_agent.config.sim_dir / "ark.pem").read_text()


def test_offchain_evidence_without_the_dev_root_is_rejected(sim_agent: Agent, sim_chain: Path) -> None:
    with pytest.raises(VerificationError) as exc:
        _verify(sim_agent.collaterals(NONCE), sim_chain, roots=TrustRoots.amd())
    assert exc.value.reason is Reason.CHAIN_ROOT_NOT_PINNED


def test_offchain_evidence_for_another_nonce_is_rejected(sim_agent: Agent, sim_chain: Path) -> None:
    with pytest.raises(VerificationError) as exc:
        _verify(sim_agent.collaterals(NONCE), sim_chain, nonce=b"\xc0\xff\xef")
    assert exc.value.reason is Reason.TPM_QUOTE_NONCE_MISMATCH


@pytest.mark.parametrize("nonce", [b"", bytes(65)], ids=["empty", "65-bytes"])
def test_nonce_length_is_checked(sim_agent: Agent, nonce: bytes) -> None:
    with pytest.raises(CvmAttestError) as exc:
        sim_agent.collaterals(nonce)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_golden_measurement_accepts_the_evidence(sim_agent: Agent, sim_chain: Path) -> None:
    golden = GoldenMeasurement.from_json(json.dumps(sim_agent.golden_measurement().to_json()))
    assert golden.measurement == sim_agent.config.sim_measurement
    assert golden.binding is Binding.DIRECT and golden.vmpl == 0 and not golden.policy.debug_allowed
    assert dict(golden.pcrs)[23] == replay(sim_agent.workload.events())
    assert list(golden.pcr23_events or ()) == sim_agent.workload.events()
    verified = _verify(sim_agent.collaterals(NONCE), sim_chain, golden=golden)
    assert verified.golden_id == golden.canonical_id()  # type: ignore[attr-defined]


def test_onchain_evidence_binds_the_agents_own_address(sim_agent: Agent, sim_chain: Path) -> None:
    bundle = sim_agent.onchain_collaterals(31337, REGISTRY, 12, BLOCK_HASH, CONSENTED_GOLDEN)
    attest = TpmsAttest.from_bytes(bundle.quote_attest)
    assert attest.extra_data == onchain_extra_data(31337, REGISTRY, sim_agent.key.address_bytes, BLOCK_HASH)
    received = EvidenceBundle.from_json(json.dumps(bundle.to_json()))
    verify_evidence(received, golden=None, roots=_roots(sim_chain), now=_now(sim_chain),
                    expected_extra_data=onchain_expected_extra_data(
                        received, chain_id=31337, registry=REGISTRY, block_hash=BLOCK_HASH))
    # Relabelling the bundle with another address cannot work: the quote binds the agent's.
    doc = bundle.to_json()
    doc["cvm_address"] = "0x" + "66" * 20
    forged = EvidenceBundle.from_json(doc)
    with pytest.raises(VerificationError) as exc:
        verify_evidence(forged, golden=None,
                        expected_extra_data=onchain_expected_extra_data(
                            forged, chain_id=31337, registry=REGISTRY, block_hash=BLOCK_HASH),
                        roots=_roots(sim_chain), now=_now(sim_chain))
    assert exc.value.reason is Reason.TPM_QUOTE_NONCE_MISMATCH


@pytest.mark.parametrize(
    ("chain_id", "registry", "block_hash"),
    [(1, "0x1234", BLOCK_HASH), (1, "0x" + "zz" * 20, BLOCK_HASH), (1, REGISTRY, bytes(31)),
     (1 << 256, REGISTRY, BLOCK_HASH)],
    ids=["short-registry", "non-hex-registry", "short-hash", "chain-id-overflow"],
)
def test_onchain_parameters_are_checked(sim_agent: Agent, chain_id: int, registry: str, block_hash: bytes) -> None:
    with pytest.raises(CvmAttestError) as exc:
        sim_agent.onchain_collaterals(chain_id, registry, 1, block_hash, CONSENTED_GOLDEN)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_onchain_evidence_carries_the_cvm_keys_consent(sim_agent: Agent) -> None:
    """The consent is r||s||v over golden_consent_digest, signed as a raw hash: ECDSA recovery (what
    registerCvm does) gives the CVM's address, and s is in the lower half of the curve order."""
    nonce = sim_agent.onchain_collaterals(31337, REGISTRY, 12, BLOCK_HASH, CONSENTED_GOLDEN).nonce
    assert nonce is not None and nonce.to_json()["form"] == "onchain"
    consent = nonce.consent  # type: ignore[union-attr]
    assert nonce.golden_id == CONSENTED_GOLDEN and len(consent) == 65  # type: ignore[union-attr]
    digest = golden_consent_digest(31337, REGISTRY, sim_agent.key.address_bytes, CONSENTED_GOLDEN)
    assert _recover(digest, consent) == sim_agent.key.address
    assert int.from_bytes(consent[32:64], "big") <= SECP256K1_N // 2 and consent[64] in (27, 28)
    # Over another chain, registry or golden the same signature names someone else.
    for other in (golden_consent_digest(1, REGISTRY, sim_agent.key.address_bytes, CONSENTED_GOLDEN),
                  golden_consent_digest(31337, REGISTRY, sim_agent.key.address_bytes, bytes(32))):
        assert _recover(other, consent) != sim_agent.key.address


def test_onchain_evidence_for_a_golden_not_consented_to_is_refused(sim_agent: Agent) -> None:
    other = bytes.fromhex("66" * 32)
    with pytest.raises(CvmAttestError) as exc:
        sim_agent.onchain_collaterals(31337, REGISTRY, 12, BLOCK_HASH, other)
    assert exc.value.reason is Reason.AGENT_GOLDEN_NOT_CONSENTED
    assert exc.value.context == {"golden_id": "0x" + other.hex()}


def test_offchain_verify_verdicts(sim_agent: Agent, sim_chain: Path) -> None:
    evidence = sim_agent.collaterals(NONCE).to_json()
    dev_root = DevAmdChain.load(sim_chain).ark.public_bytes(Encoding.PEM).decode()
    golden = sim_agent.golden_measurement().to_json()
    now = _now(sim_chain)
    ok = sim_agent.offchain_verify(evidence, NONCE, golden, dev_root, now=now)
    assert ok["ok"] is True and ok["golden_id"] == "0x" + sim_agent.golden_measurement().canonical_id().hex()
    assert sim_agent.offchain_verify(evidence, NONCE, None, None, now=now)["reason"] == "snp.chain.root_not_pinned"
    assert sim_agent.offchain_verify(evidence, b"\x01", None, dev_root, now=now)["reason"] == "tpm.quote.nonce_mismatch"
    assert sim_agent.offchain_verify({"version": 1}, NONCE, None, dev_root, now=now)["reason"] == "evidence.malformed"
    # The caller's own malformed inputs are refused, not judged: the route answers 422.
    for golden_doc, root in (({"version": 1}, dev_root), ({"version": 9}, dev_root), (None, "not a pem")):
        with pytest.raises(RequestError) as exc:
            sim_agent.offchain_verify(evidence, NONCE, golden_doc, root, now=now)
        assert exc.value.reason is Reason.INPUT_INVALID


def test_identity_and_platform(sim_agent: Agent) -> None:
    identity = sim_agent.identity()
    assert identity["ak_hash"] == hashlib.sha256(bytes.fromhex(identity["ak_public"])).hexdigest()
    assert identity["cvm_address"] == sim_agent.key.address and identity["platform"] == "sim"
    info = sim_agent.platform_info()
    assert info["development_root"] is True and info["ak"] == "rsa" and 23 in info["pcrs"]
    assert sim_agent.health()["pcr23"] == replay(sim_agent.workload.events()).hex()


# --- other platforms and AKs, each on its own swtpm --------------------------------------------------------


@pytest.fixture
def agent_root(tmp_path: Path) -> Path:
    write_tree(tmp_path / "workload", WORKLOAD)
    return tmp_path


def test_ecc_ak_evidence_verifies(swtpm: Swtpm, sim_chain: Path, agent_root: Path) -> None:
    agent = Agent.start(agent_config(swtpm, agent_root, sim_chain, ak=AkKind.ECC))
    try:
        assert TpmtPublic.from_bytes(agent.tpm.ak_public).type == 0x0023
        _verify(agent.collaterals(NONCE), sim_chain, golden=agent.golden_measurement())
    finally:
        agent.close()


@pytest.fixture
def fake_configfs(agent_root: Path, sim_chain: Path) -> Iterator[Path]:
    with FakeConfigfsTsm(agent_root / "tsm", DevAmdChain.load(sim_chain)):
        yield agent_root / "tsm"


def test_snp_platform_evidence_verifies(swtpm: Swtpm, sim_chain: Path, agent_root: Path, fake_configfs: Path) -> None:
    config = agent_config(swtpm, agent_root, None, platform=PlatformName.SNP, tsm_root=fake_configfs,
                          sev_guest=agent_root / "no-sev-guest")
    agent = Agent.start(config)
    try:
        bundle = agent.collaterals(NONCE)
        assert bundle.platform.value == "snp" and set(bundle.certificates) == {"vcek", "ask", "ark"}
        _verify(bundle, sim_chain, golden=agent.golden_measurement())
    finally:
        agent.close()


def test_azure_platform_evidence_verifies(swtpm: Swtpm, sim_chain: Path, agent_root: Path) -> None:
    """The Azure path end to end on swtpm: the AK persistent at 0x81000003, the HCL report (binding
    that AK, signed by the development chain as the paravisor's firmware would) in NV 0x01400001."""
    ak_public = provision_persistent_ak(swtpm, 0x81000003)
    chain = DevAmdChain.load(sim_chain)
    hcl = azure_hcl_report(chain, TpmtPublic.from_bytes(ak_public).public_key())  # type: ignore[arg-type]
    write_nv(swtpm, 0x01400001, hcl)
    agent = Agent.start(agent_config(swtpm, agent_root, None, platform=PlatformName.AZURE))
    try:
        assert agent.tpm.ak_public == ak_public
        bundle = agent.collaterals(NONCE)
        assert bundle.binding is Binding.AZURE and bundle.hcl_report is not None
        assert bundle.hcl_report.to_bytes() == hcl
        golden = agent.golden_measurement()
        assert golden.binding is Binding.AZURE
        assert bundle.certificates == {}  # Azure hands the guest no VCEK: the verifier brings it
        _verify(bundle, sim_chain, golden=golden, certificates=CertificateSet.of([chain.leaf, chain.ask, chain.ark]))
    finally:
        agent.close()


def test_azure_platform_refuses_an_hcl_report_for_another_ak(swtpm: Swtpm, sim_chain: Path, agent_root: Path) -> None:
    provision_persistent_ak(swtpm, 0x81000003)
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    write_nv(swtpm, 0x01400001, azure_hcl_report(DevAmdChain.load(sim_chain), other))
    with pytest.raises(VerificationError) as exc:
        Agent.start(agent_config(swtpm, agent_root, None, platform=PlatformName.AZURE))
    assert exc.value.reason is Reason.BINDING_AK_MISMATCH


def test_azure_platform_without_hcl_report(swtpm: Swtpm, agent_root: Path) -> None:
    provision_persistent_ak(swtpm, 0x81000003)
    with pytest.raises(PlatformError) as exc:
        Agent.start(agent_config(swtpm, agent_root, None, platform=PlatformName.AZURE))
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


def test_snp_platform_without_interface_stops_the_start(swtpm: Swtpm, agent_root: Path) -> None:
    config = agent_config(swtpm, agent_root, None, platform=PlatformName.SNP, tsm_root=agent_root / "none",
                          sev_guest=agent_root / "none-either")
    with pytest.raises(PlatformError) as exc:
        Agent.start(config)
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE
