"""The svsm platform end to end on the local stack: ``cvm-agent --platform sim --sim-svsm`` (the svsm
platform's code path on a simulated configfs-tsm entry, VMPL0 reports over swtpm's endorsement key)
and ``cvm-cli verify svsm`` as a user runs it, with the negatives of issue 15 each naming its reason."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offchain.abi.binding import offchain_extra_data
from offchain.credential import make_credential
from offchain.errors import ParseError
from offchain.evidence import EvidenceBundle
from tests.support.agent_process import AgentProcess, cvm_cli, start_agent
from tests.support.swtpm import Swtpm

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def svsm_agent(module_swtpm: Swtpm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = start_agent(module_swtpm, tmp_path_factory.mktemp("svsm"), "--sim-svsm")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def golden(svsm_agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    status, body, _ = svsm_agent.request("GET", "/golden-measurement")
    assert status == 200 and body["binding"] == "svsm" and body["vmpl"] == 0
    path = tmp_path_factory.mktemp("golden") / "golden.json"
    path.write_text(json.dumps(body))
    return path


def _verify(agent: AgentProcess, golden: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    return cvm_cli("verify", "svsm", f"http://{agent.external}", "--golden", str(golden),
                   "--dev-root", str(agent.state_dir / "sim" / "ark.pem"), *extra)


def test_an_svsm_agent_verifies_with_a_credential_activation(svsm_agent: AgentProcess, golden: Path) -> None:
    code, verdict = _verify(svsm_agent, golden)
    assert (code, verdict["ok"], verdict["reason"]) == (0, True, None)
    assert verdict["binding"] == "svsm" and verdict["activated"] is True and verdict["report"]["vmpl"] == 0
    entry = svsm_agent.state_dir / "sim" / "tsm" / "cvm-agent-svsm"
    assert (entry / "service_provider").read_text().strip() == "svsm"
    assert (entry / "service_guid").read_text().strip() == "c476f1eb-0123-45a5-9641-b4e7dde5bfe3"


def _evidence(agent: AgentProcess) -> tuple[EvidenceBundle, bytes]:
    nonce = secrets.token_bytes(32)
    status, body, _ = agent.request("GET", f"/collaterals/{nonce.hex()}")
    assert status == 200
    return EvidenceBundle.from_json(body), offchain_extra_data(nonce)


def _activate(agent: AgentProcess, challenge: bytes, blob: bytes, secret: bytes) -> tuple[int, Any]:
    status, body, _ = agent.request("POST", "/svsm/activate", json.dumps({
        "challenge": challenge.hex(), "credential_blob": blob.hex(), "secret": secret.hex()}).encode(),
        {"Content-Type": "application/json"})
    return status, body


def test_an_activation_is_single_use_and_needs_a_served_challenge(svsm_agent: AgentProcess) -> None:
    bundle, challenge = _evidence(svsm_agent)
    assert bundle.svsm is not None
    credential = secrets.token_bytes(32)
    made = make_credential(bundle.svsm.ek, bundle.ak.name(), credential)
    assert _activate(svsm_agent, challenge, made.credential_blob, made.secret) == (200, {"credential": credential.hex()})
    status, body = _activate(svsm_agent, challenge, made.credential_blob, made.secret)  # replayed
    assert (status, body["reason"]) == (400, "svsm.challenge_unknown")
    status, body = _activate(svsm_agent, secrets.token_bytes(32), made.credential_blob, made.secret)  # never served
    assert (status, body["reason"]) == (400, "svsm.challenge_unknown")


def test_a_credential_for_another_aks_name_is_refused_by_the_vtpm(svsm_agent: AgentProcess) -> None:
    """The verifier's credential names one AK; the vTPM releases it only for that object."""
    bundle, challenge = _evidence(svsm_agent)
    assert bundle.svsm is not None
    other_name = bundle.ak.name()[:2] + bytes(32)
    made = make_credential(bundle.svsm.ek, other_name, secrets.token_bytes(32))
    status, body = _activate(svsm_agent, challenge, made.credential_blob, made.secret)
    assert (status, body["reason"]) == (400, "svsm.activation_failed")


def test_a_golden_of_another_binding_refuses_svsm_evidence(svsm_agent: AgentProcess, golden: Path,
                                                           tmp_path: Path) -> None:
    document = json.loads(golden.read_text())
    document["binding"] = "direct"
    direct = tmp_path / "direct.json"
    direct.write_text(json.dumps(document))
    code, verdict = _verify(svsm_agent, direct)
    assert code == 1 and verdict["reason"] == "policy.binding_not_allowed"


def test_the_snp_on_svsm_path_is_refused_for_the_svsm_golden(swtpm: Swtpm, golden: Path, tmp_path: Path) -> None:
    """A guest that binds an AK of its own choosing through its own report (direct binding) is not
    an svsm CVM, whatever its measurement."""
    guest = start_agent(swtpm, tmp_path / "guest")
    try:
        code, verdict = _verify(guest, golden)
    finally:
        guest.stop()
    assert code == 1 and verdict["reason"] == "binding.mode_mismatch"


def test_without_the_dev_root_nothing_verifies(svsm_agent: AgentProcess, golden: Path) -> None:
    code, verdict = cvm_cli("verify", "svsm", f"http://{svsm_agent.external}", "--golden", str(golden))
    assert code == 1 and verdict["reason"] == "snp.chain.root_not_pinned"


@pytest.mark.parametrize(
    ("change", "reason"),
    [(lambda b: b.pop("svsm"), "evidence.malformed"),
     (lambda b: b["svsm"].update(manifest="00" * 10), "svsm.manifest_malformed"),
     (lambda b: b["svsm"].update(nonce="00" * 63), "evidence.malformed"),
     (lambda b: b.update(platform="sim", binding="direct"), "evidence.malformed")],
    ids=["no-svsm", "manifest-not-tpmt-public", "short-nonce", "svsm-on-direct"],
)
def test_malformed_svsm_evidence_is_refused_when_parsed(svsm_agent: AgentProcess, change: Any, reason: str) -> None:
    status, body, _ = svsm_agent.request("GET", f"/collaterals/{secrets.token_hex(16)}")
    assert status == 200
    change(body)
    with pytest.raises(ParseError) as caught:
        EvidenceBundle.from_json(body)
    assert caught.value.reason.value == reason
