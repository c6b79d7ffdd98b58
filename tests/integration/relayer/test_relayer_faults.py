"""The relayer against faults, with a real anvil, swtpm and cvm-agent (sim platform).

Killed between sending and the receipt; anvil restarted with its state; the agent unreachable;
evidence that fails off-chain verification; a transaction that would revert.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from web3 import Web3

from localstack.swtpm import swtpm_available
from offchain.abi.snp_report import Product
from offchain.trust.certs import load_certificates, to_der
from onchain.anvil import AnvilProcess
from onchain.client import RegistryClient
from onchain.demo import AgentProcess
from onchain.relayer.journal import Journal
from onchain.relayer.relayer import RelayPolicy

from tests.support.evidence import DEV_NOW, dev_chain
from tests.support.stack import Chain, Stack, make_chain, make_relayer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not swtpm_available(), reason="swtpm is not installed (scripts/setup installs it)"),
]


def _registered_events(chain: Chain, cvm: str) -> int:
    logs = chain.registry.contract.events.CvmRegistered.get_logs(from_block=0)
    return sum(1 for log in logs if log["args"]["cvm"] == cvm)


def test_evidence_failing_offchain_verification_is_not_submitted(stack: Stack, chain: Chain, tmp_path: Path) -> None:
    golden = stack.consented_golden()
    wrong = dataclasses.replace(golden, measurement=bytes(48))
    chain.registry.publish_golden(wrong)
    stack.consent(wrong)  # the operator consents, so the agent quotes; the relayer's own check must refuse
    journal = Journal(tmp_path / "j.db")
    (result,) = make_relayer(chain, stack, journal, wrong).tick()
    assert result.action == "rejected"
    assert result.error is not None and "policy.measurement_mismatch" in result.error
    assert list(journal.submissions()) == []
    status = journal.cvm(stack.agent.external)
    assert status is not None and status.last_error == result.error
    assert not chain.registry.is_attested(stack.cvm())


def test_a_golden_the_cvm_did_not_consent_to_is_not_submitted(stack: Stack, chain: Chain, tmp_path: Path) -> None:
    # A golden the CVM's operator never consented to: the agent refuses to quote for it (nobody can
    # move the CVM under it), and the relayer records why without sending anything.
    golden = dataclasses.replace(stack.golden(), name="not consented", lifetime_seconds=1234)
    chain.registry.publish_golden(golden)
    journal = Journal(tmp_path / "j.db")
    (result,) = make_relayer(chain, stack, journal, golden).tick()
    assert result.action == "error"
    assert result.error is not None and "agent.golden_not_consented" in result.error
    assert list(journal.submissions()) == [] and _registered_events(chain, stack.cvm()) == 0


def test_evidence_whose_amd_chain_fails_the_crl_check_is_not_submitted(
    stack: Stack, chain: Chain, tmp_path: Path
) -> None:
    # The sim ARK's key never leaves the agent, so no CRL can list its ASK here: a CRL of another
    # ARK stands in (snp.crl.invalid). check_revocation's verdicts are unit-tested with dev chains.
    golden = stack.consented_golden()
    chain.registry.publish_golden(golden)
    other = dev_chain(Product.TURIN)
    crl = other.issue_crl(this_update=DEV_NOW, next_update=DEV_NOW + dt.timedelta(days=3650))
    journal = Journal(tmp_path / "j.db")
    relayer = dataclasses.replace(make_relayer(chain, stack, journal, golden), revocation=lambda _chain, _now: crl)
    (result,) = relayer.tick()
    assert result.action == "rejected"
    assert result.error is not None and result.error.startswith("[snp.crl.invalid]")
    assert list(journal.submissions()) == []
    assert not chain.registry.is_attested(stack.cvm())


def test_a_transaction_that_would_revert_is_decoded_and_not_sent(stack: Stack, chain: Chain, tmp_path: Path) -> None:
    golden = stack.consented_golden()  # never published on this registry: registerCvm reverts RegistryGoldenNotFound
    journal = Journal(tmp_path / "j.db")
    start_nonce = chain.w3.eth.get_transaction_count(chain.relayer_key.address)
    (result,) = make_relayer(chain, stack, journal, golden).tick()
    assert result.action == "reverted"
    assert result.error is not None and "RegistryGoldenNotFound" in result.error
    assert result.tx_hash is None
    # Only the certificate registrations (idempotent, cached by hash) were sent; no registerCvm.
    assert [s.state for s in journal.submissions()] == ["reverted"]
    assert _registered_events(chain, stack.cvm()) == 0
    assert chain.w3.eth.get_transaction_count(chain.relayer_key.address) - start_nonce == 3


def test_unreachable_agent_backs_off_then_recovers(stack: Stack, chain: Chain, tmp_path: Path) -> None:
    golden = stack.consented_golden()
    chain.registry.publish_golden(golden)
    now = [1000.0]
    relayer = make_relayer(chain, stack, Journal(tmp_path / "j.db"), golden, clock=lambda: now[0])
    stack.agent.stop()
    try:
        assert [r.action for r in relayer.tick()] == ["unreachable"]
        assert [r.action for r in relayer.tick()] == ["backoff"]  # within 5 s: not even tried
        now[0] += 6
        assert [r.action for r in relayer.tick()] == ["unreachable"]  # second failure: 10 s now
        now[0] += 6
        assert [r.action for r in relayer.tick()] == ["backoff"]
    finally:
        stack.agent = AgentProcess(stack.tpm.tcti, stack.state_dir, token="t" * 32, ports=stack.agent.ports)
        stack.agent.wait_ready()
    now[0] += 6
    # The restarted agent has a new CVM key; its workload, and so its golden measurement, is the same.
    assert stack.golden().canonical_id() == golden.canonical_id()
    (result,) = relayer.tick()
    assert result.action == "register", result.error
    assert chain.registry.is_attested(stack.cvm())


def _relay_cli(chain: Chain, stack: Stack, golden_file: Path, journal: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, RELAYER_KEY=chain.relayer_key.key.hex(), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "cvm-cli"), "relay", "--rpc", chain.anvil.url,
         "--registry", chain.registry.address, "--agent", stack.agent.external, "--golden", str(golden_file),
         "--dev-root", str(stack.state_dir / "sim" / "ark.pem"), "--journal", str(journal), "--once",
         "--key", "env:RELAYER_KEY", "--receipt-timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def test_relayer_killed_between_send_and_receipt_loses_nothing_and_sends_once(
        stack: Stack, chain: Chain, tmp_path: Path) -> None:
    golden = stack.consented_golden()
    chain.registry.publish_golden(golden)
    golden_file = tmp_path / "golden.json"
    golden_file.write_text(json.dumps(golden.to_json()))
    # Certificates first (idempotent, and their sender waits for receipts), then stop mining.
    bundle_certs = [load_certificates(stack.state_dir / "sim" / name)[0] for name in ("ark.pem", "ask.pem", "vcek.pem")]
    RegistryClient(chain.w3, chain.registry.address, account=chain.relayer_key).register_chain(
        *(to_der(c) for c in bundle_certs))
    chain.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    journal_path = tmp_path / "relayer.db"
    first = _relay_cli(chain, stack, golden_file, journal_path)
    try:
        deadline = time.monotonic() + 120
        watcher = Journal(journal_path) if journal_path.exists() else None
        while time.monotonic() < deadline:
            if watcher is None and journal_path.exists():
                watcher = Journal(journal_path)
            if watcher is not None and any(watcher.txs(s.id) for s in watcher.submissions()):
                break
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            time.sleep(0.1)
        else:
            pytest.fail("the relayer never journaled a transaction")
        time.sleep(0.5)  # let it broadcast (or not: both must end the same way)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert watcher is not None
    (pending,) = watcher.pending()
    watcher.close()
    chain.w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    second = _relay_cli(chain, stack, golden_file, journal_path)
    output, _ = second.communicate(timeout=180)
    assert second.returncode == 0, output
    journal = Journal(journal_path)
    assert [s.state for s in journal.submissions()] == ["mined"]
    assert journal.pending() == [] and pending.kind == "register"
    assert _registered_events(chain, stack.cvm()) == 1
    assert chain.registry.is_attested(stack.cvm())
    status = journal.cvm(stack.agent.external)
    assert status is not None and status.attested_until and status.last_error is None


def test_anvil_restarted_with_its_state(stack: Stack, tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    journal = Journal(tmp_path / "j.db")
    with AnvilProcess(state=state) as anvil:
        chain = make_chain(stack, anvil)
        golden = stack.consented_golden()
        chain.registry.publish_golden(golden)
        (result,) = make_relayer(chain, stack, journal, golden).tick()
        assert result.action == "register", result.error
    assert state.is_file()
    with AnvilProcess(state=state) as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        restarted = Chain(anvil, w3, chain.owner, chain.relayer_key, RegistryClient(w3, chain.registry.address))
        assert restarted.registry.is_attested(stack.cvm())
        # anvil restores state and blocks, but the hash it reports for the last restored block is not the
        # one BLOCKHASH returns; a block mined after the restart is consistent again.
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        relayer = make_relayer(restarted, stack, journal, golden)
        relayer.policy = RelayPolicy(refresh_margin_s=golden.lifetime_seconds + 1)  # refresh now
        (result,) = relayer.tick()
        assert result.action == "refresh", result.error
        assert restarted.registry.is_attested(stack.cvm())
