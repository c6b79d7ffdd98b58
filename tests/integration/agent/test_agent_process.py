"""The agent as it runs: ``cvm-agent`` (uvicorn, two listeners) on swtpm, checked from outside with
``cvm-cli verify evidence`` and with an independent TPM (tpm2-tools on a second swtpm)."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import ipaddress
import ssl
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from offchain.abi.workload import WorkloadEvent, diff_events, replay
from offchain.devamd import DevAmdChain
from tests.support.agent_process import TOKEN, AgentProcess, cvm_cli, start_agent
from tests.support.agent import TPM_COMPOSE, WORKLOAD, make_zip, tree_digest
from tests.support.swtpm import Swtpm, running_swtpm, tpm2_tool

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/zip"}


def _at(agent: AgentProcess) -> list[str]:
    """``--at`` inside the development chain's validity: it starts when the agent generated it, so
    "now" could fall before it on a clock that steps backwards."""
    start = DevAmdChain.load(agent.state_dir / "sim").leaf.not_valid_before_utc
    return ["--at", (start + dt.timedelta(hours=1)).isoformat()]


def _verify(agent: AgentProcess, evidence: Path, nonce: str, *extra: str) -> tuple[int, dict[str, Any]]:
    return cvm_cli("verify", "evidence", str(evidence), "--nonce", nonce, *_at(agent), *extra)


def _evidence(agent: AgentProcess, nonce: str, path: Path) -> Path:
    status, _, raw = agent.request("GET", f"/collaterals/{nonce}")
    assert status == 200
    path.write_bytes(raw)
    return path


def test_evidence_verifies_with_the_dev_root_only(agent: AgentProcess, tmp_path: Path) -> None:
    evidence = _evidence(agent, "a1b2c3", tmp_path / "evidence.json")
    dev_root = str(agent.state_dir / "sim" / "ark.pem")
    code, verdict = _verify(agent, evidence, "a1b2c3", "--dev-root", dev_root)
    assert (code, verdict["ok"], verdict["product"], verdict["signer"]) == (0, True, "genoa", "vcek")
    # Nothing trusts the simulated root unless told to.
    code, verdict = _verify(agent, evidence, "a1b2c3")
    assert (code, verdict["reason"]) == (1, "snp.chain.root_not_pinned")
    # Another nonce is another quote.
    code, verdict = _verify(agent, evidence, "a1b2c4", "--dev-root", dev_root)
    assert (code, verdict["reason"]) == (1, "tpm.quote.nonce_mismatch")


def test_golden_measurement_from_the_agent_accepts_its_evidence(agent: AgentProcess, tmp_path: Path) -> None:
    status, _, golden = agent.request("GET", "/golden-measurement")
    assert status == 200
    (tmp_path / "golden.json").write_bytes(golden)
    evidence = _evidence(agent, "00", tmp_path / "evidence.json")
    code, verdict = _verify(agent, evidence, "00", "--golden",
                            str(tmp_path / "golden.json"), "--dev-root", str(agent.state_dir / "sim" / "ark.pem"))
    assert (code, verdict["ok"], verdict["reason"]) == (0, True, None)


def test_pcr23_matches_an_independent_tpm(agent: AgentProcess) -> None:
    """Replay the agent's event log with tpm2_pcrextend on a second swtpm, and with hashlib."""
    status, log, _ = agent.request("GET", "/event-log")
    assert status == 200 and len(log) == 3
    _, evidence, _ = agent.request("GET", "/collaterals/ff")
    quoted = bytes.fromhex(evidence["pcrs"]["sha256"]["23"])
    with running_swtpm() as independent:
        for entry in log:
            tpm2_tool(independent, "tpm2_pcrextend", f"23:sha256={entry['event_digest']}")
        tpm2_tool(independent, "tpm2_pcrread", "sha256:23", "-o", str(independent.state_dir / "pcr23.bin"))
        independent_value = (independent.state_dir / "pcr23.bin").read_bytes()
    assert independent_value == quoted
    assert replay(WorkloadEvent.from_json(e) for e in log) == quoted
    assert [e["event_digest"] for e in log] == [WorkloadEvent.from_json(e).digest.hex() for e in log]


def test_internal_only_routes(agent: AgentProcess) -> None:
    status, body, _ = agent.request("POST", "/sign-message", b'{"text": "hi"}', {"Content-Type": "application/json"})
    assert (status, body["reason"]) == (404, "http.not_found")
    status, body, _ = agent.request("POST", "/sign-message", b'{"text": "hi"}', {"Content-Type": "application/json"},
                                    internal=True)
    assert status == 200 and body["address"] == agent.request("GET", "/identity")[1]["cvm_address"]


NEW_CONFIG = b"[app]\nmode = 'staging'\n"


def test_update_changes_pcr23_and_the_old_golden_names_what_changed(swtpm: Swtpm, tmp_path: Path) -> None:
    agent = start_agent(swtpm, tmp_path)
    try:
        dev_root = str(agent.state_dir / "sim" / "ark.pem")
        _, golden, golden_raw = agent.request("GET", "/golden-measurement")
        (tmp_path / "old-golden.json").write_bytes(golden_raw)
        _, old_log, _ = agent.request("GET", "/event-log")
        old_pcr23 = agent.request("GET", "/healthz")[1]["pcr23"]
        assert agent.runner_log.read_text().splitlines() == [str(agent.workload_dir)]

        archive = make_zip({**WORKLOAD, "config/app.toml": NEW_CONFIG})
        status, result, _ = agent.request("POST", "/update-workload", archive, AUTH)
        assert status == 200, result
        _, new_log, _ = agent.request("GET", "/event-log")
        new_pcr23 = agent.request("GET", "/healthz")[1]["pcr23"]
        assert new_pcr23 == result["pcr23"] != old_pcr23
        assert new_log[: len(old_log)] == old_log and new_log[len(old_log):] == result["events"]
        assert (agent.workload_dir / "config/app.toml").read_bytes() == NEW_CONFIG
        assert agent.runner_log.read_text().splitlines() == [str(agent.workload_dir)] * 2

        evidence = _evidence(agent, "beef", tmp_path / "evidence.json")
        code, verdict = _verify(agent, evidence, "beef", "--dev-root", dev_root)
        assert code == 0  # genuine evidence ...
        code, verdict = _verify(agent, evidence, "beef", "--dev-root", dev_root,
                                "--golden", str(tmp_path / "old-golden.json"))
        assert code == 1  # ... but not the workload the old golden measurement describes
        violations = {(v["reason"], v["field"]): v for v in verdict["violations"]}
        assert ("policy.pcr_mismatch", "pcrs.23") in violations
        assert violations[("policy.pcr_mismatch", "pcrs.23")]["actual"] == new_pcr23
        expected_diff = diff_events([WorkloadEvent.from_json(e) for e in golden["pcr23_events"]],
                                    [WorkloadEvent.from_json(e) for e in new_log])
        named = [v["actual"] for v in verdict["violations"] if v["reason"] == "policy.workload_mismatch"]
        assert named == expected_diff and len(named) == 1
        changed = WorkloadEvent("config", "config/app.toml", hashlib.sha256(NEW_CONFIG).digest())
        assert changed.to_json() == new_log[-2]
    finally:
        agent.stop()


def test_the_predicted_golden_measurement_of_an_update_is_the_agents(swtpm: Swtpm, tmp_path: Path) -> None:
    # An owner predicts the golden measurement of an update from the archive alone (cvm-cli golden
    # predict), before the agent applies it; afterwards the agent describes itself identically and
    # its fresh evidence verifies against the prediction.
    agent = start_agent(swtpm, tmp_path)
    try:
        _, _, golden_raw = agent.request("GET", "/golden-measurement")
        (tmp_path / "base.json").write_bytes(golden_raw)
        archive = make_zip({**WORKLOAD, "config/app.toml": NEW_CONFIG, "config/extra.env": b"A=1\n"})
        (tmp_path / "update.zip").write_bytes(archive)
        code, predicted = cvm_cli("golden", "predict", "--base", str(tmp_path / "base.json"),
                                  "--update", str(tmp_path / "update.zip"), "--out", str(tmp_path / "next.json"))
        assert code == 0, predicted

        status, result, _ = agent.request("POST", "/update-workload", archive, AUTH)
        assert status == 200, result
        assert result["pcr23"] == predicted["pcr23"]
        _, after, _ = agent.request("GET", "/golden-measurement")
        assert after["pcrs"] == predicted["golden"]["pcrs"]
        assert after["pcr23_events"] == predicted["golden"]["pcr23_events"]
        evidence = _evidence(agent, "cafe", tmp_path / "evidence.json")
        code, verdict = _verify(agent, evidence, "cafe", "--dev-root", str(agent.state_dir / "sim" / "ark.pem"),
                                "--golden", str(tmp_path / "next.json"))
        assert (code, verdict["golden_id"]) == (0, predicted["golden_id"])
    finally:
        agent.stop()


def test_rejected_updates_change_nothing(swtpm: Swtpm, tmp_path: Path) -> None:
    agent = start_agent(swtpm, tmp_path)
    try:
        before = (tree_digest(agent.workload_dir), agent.request("GET", "/healthz")[1]["pcr23"],
                  agent.request("GET", "/event-log")[1])
        link = zipfile.ZipInfo("config/link")
        link.create_system, link.external_attr = 3, (0o120777 << 16)
        attempts = [
            (make_zip({**WORKLOAD, "config/../../../escape": b"x"}), AUTH, 400, "workload.archive.unsafe_path"),
            (make_zip([*WORKLOAD.items(), (link, b"/etc/shadow")]), AUTH, 400, "workload.archive.unsafe_path"),
            (b"PK\x05\x06" + bytes(18), AUTH, 400, "workload.archive.invalid"),
            (make_zip({**WORKLOAD, "docker-compose.yml": TPM_COMPOSE}), AUTH, 400, "workload.compose_forbidden"),
            (make_zip(WORKLOAD), {"Content-Type": "application/zip"}, 401, "auth.required"),
            (make_zip(WORKLOAD), {**AUTH, "Authorization": "Bearer not-the-token-0000"}, 401, "auth.invalid"),
        ]
        for body, headers, status, reason in attempts:
            got, error, _ = agent.request("POST", "/update-workload", body, headers)
            assert (got, error["reason"]) == (status, reason)
        after = (tree_digest(agent.workload_dir), agent.request("GET", "/healthz")[1]["pcr23"],
                 agent.request("GET", "/event-log")[1])
        assert after == before
        assert not (tmp_path / "escape").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.log", "run", "runner.log", "state", "token", "workload"]
    finally:
        agent.stop()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    # Valid from a day ago for a week: the handshake below happens now, inside that window.
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "tls.pem", tmp_path / "tls.key"


def test_external_listener_with_tls_and_ecc_ak(swtpm: Swtpm, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    agent = start_agent(swtpm, tmp_path / "agent", "--ak", "ecc", tls=(cert, key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        status, evidence, raw = agent.request("GET", "/collaterals/0a0b", context=context)
        assert status == 200 and evidence["platform"] == "sim"
        (tmp_path / "evidence.json").write_bytes(raw)
        code, verdict = _verify(agent, tmp_path / "evidence.json", "0a0b",
                                "--dev-root", str(agent.state_dir / "sim" / "ark.pem"))
        assert (code, verdict["ok"]) == (0, True)
        agent.scheme = "http"
        with pytest.raises((OSError, http.client.HTTPException)):  # no plain HTTP on the TLS listener
            agent.request("GET", "/healthz")
    finally:
        agent.stop()
