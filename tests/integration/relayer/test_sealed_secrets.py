"""A dApp backend hands a CVM a secret without trusting the host or the relayer: the CVM's sealing key
published in the registry under its own signature (``cvm-cli secrets publish-key``), a box sealed to
it only while the CVM is attested (``cvm-cli secrets seal``), opened by the workload (``POST /unseal``).
Also ``cvm-cli upload --registry``: the registry's own verdict before anything is sent."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from localstack.swtpm import swtpm_available
from offchain.errors import ChainError, Reason
from onchain.client import AttestationStatus
from onchain.demo import http_json
from onchain.relayer.journal import Journal
from onchain.secrets_cli import secrets
from tests.support.agent import WORKLOAD, write_tree
from tests.support.stack import Chain, Stack, funded, make_relayer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not swtpm_available(), reason="swtpm is not installed (scripts/setup installs it)"),
]

SECRET = b"price-feed api key 7d1e"


def _invoke(args: list[str], env: dict[str, str], stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(secrets, args, env=env, input=stdin, catch_exceptions=False)


def _attest(stack: Stack, chain: Chain, tmp_path: Path) -> bytes:
    golden = stack.consented_golden()
    golden_id = chain.registry.publish_golden(golden)
    (result,) = make_relayer(chain, stack, Journal(tmp_path / "j.db"), golden).tick()
    assert result.action == "register", result.error
    return golden_id


def _unseal(stack: Stack, box: bytes) -> dict[str, object]:
    answer: dict[str, object] = http_json("POST", stack.agent.internal + "/unseal", box,
                                          {"Content-Type": "application/json"})
    return answer


def test_a_secret_sealed_through_the_registry_opens_only_in_the_cvm(stack: Stack, chain: Chain, tmp_path: Path) -> None:
    sender = funded(chain.w3)
    env = {"SENDER_KEY": sender.key.hex()}
    common = ["--rpc", chain.anvil.url, "--registry", chain.registry.address]
    cvm = stack.cvm()

    # Not attested yet: the registry refuses the key, and nothing can be sealed.
    early = _invoke(["publish-key", stack.agent.external, *common, "--key", "env:SENDER_KEY", "--json"], env)
    assert early.exit_code == 1 and json.loads(early.output)["reason"] == Reason.REGISTRY_NOT_ATTESTED.value
    golden_id = _attest(stack, chain, tmp_path)
    unpublished = _invoke(["seal", "--to", cvm, "--accept-host-vtpm", *common, "--json"], env, SECRET)
    assert unpublished.exit_code == 1 and json.loads(unpublished.output)["reason"] == Reason.SEAL_KEY_NOT_BOUND.value

    published = _invoke(["publish-key", stack.agent.external, *common, "--key", "env:SENDER_KEY", "--json"], env)
    assert published.exit_code == 0, published.output
    identity = http_json("GET", stack.agent.external + "/identity")
    assert json.loads(published.output)["sealing_key"] == "0x" + identity["sealing_key"]
    key, status = chain.registry.sealing_key_of(cvm)
    assert key.hex() == identity["sealing_key"] and status is AttestationStatus.ATTESTED

    # The sim's golden has the direct binding: its vTPM is swtpm on the host, so sealing needs consent.
    unprotected = _invoke(["seal", "--to", cvm, *common, "--json"], env, SECRET)
    assert unprotected.exit_code == 1
    assert json.loads(unprotected.output)["reason"] == Reason.SEAL_PLATFORM_UNPROTECTED.value
    sealed = _invoke(["seal", "--to", cvm, "--accept-host-vtpm", *common], env, SECRET)
    assert sealed.exit_code == 0, sealed.output
    assert SECRET not in sealed.stdout_bytes
    opened = _unseal(stack, sealed.stdout_bytes)
    assert base64.b64decode(str(opened["plaintext"])) == SECRET
    assert opened["context"] == {"purpose": "registry", "cvm_address": "0x" + bytes.fromhex(cvm[2:]).hex(),
                                 "chain_id": chain.w3.eth.chain_id, "registry": chain.registry.address.lower()}

    # Once the golden measurement is revoked the CVM is not attested: nothing is sealed to it.
    chain.registry.revoke_golden(golden_id)
    revoked = _invoke(["seal", "--to", cvm, "--accept-host-vtpm", *common, "--json"], env, SECRET)
    assert revoked.exit_code == 1 and json.loads(revoked.output)["reason"] == Reason.REGISTRY_NOT_ATTESTED.value


def test_a_sealing_key_signed_for_another_registry_is_refused(stack: Stack, chain: Chain, tmp_path: Path) -> None:
    """What a relayer or host could replay: the CVM's signature over its key for another registry."""
    _attest(stack, chain, tmp_path)
    query = urllib.parse.urlencode({"chain_id": chain.w3.eth.chain_id, "registry": "0x" + "ab" * 20})
    signed = http_json("GET", f"{stack.agent.external}/onchain/sealing-key?{query}")
    with pytest.raises(ChainError) as caught:
        chain.registry.publish_sealing_key(signed["cvm_address"], bytes.fromhex(signed["sealing_key"][2:]),
                                           bytes.fromhex(signed["signature"][2:]))
    assert caught.value.reason is Reason.SEAL_KEY_NOT_BOUND
    assert chain.registry.sealing_key_of(stack.cvm())[0] == bytes(32)


def test_upload_asks_the_registry_before_sending(stack: Stack, chain: Chain, tmp_path: Path) -> None:
    """cvm-cli upload --registry --golden-id: verifyEvidence (a view) with the sealing form's extraData
    must accept the CVM; for a golden id the registry does not hold, nothing is sent."""
    from offchain.cli.root import cli

    golden_id = _attest(stack, chain, tmp_path)
    token = (stack.state_dir / "token").read_text().strip()
    workload = write_tree(tmp_path / "workload", {**WORKLOAD, "config/app.toml": b"[app]\nmode = 'chain'\n"})
    common = ["upload", stack.agent.external, token, "--workload", str(workload), "--registry", chain.registry.address,
              "--rpc", chain.anvil.url, "--dev-root", str(stack.state_dir / "sim" / "ark.pem"), "--json"]
    refused = CliRunner().invoke(cli, [*common, "--golden-id", "0x" + "66" * 32], catch_exceptions=False)
    assert refused.exit_code == 1 and json.loads(refused.output)["reason"] == Reason.REGISTRY_GOLDEN_NOT_FOUND.value
    assert json.loads(refused.output)["sent"] is False
    accepted = CliRunner().invoke(cli, [*common, "--golden-id", "0x" + golden_id.hex()], catch_exceptions=False)
    assert accepted.exit_code == 0, accepted.output
    result = json.loads(accepted.output)
    assert result["onchain"]["golden_id"] == "0x" + golden_id.hex() and result["golden_id"] is None
    assert result["pcr23"] == http_json("GET", stack.agent.external + "/healthz")["pcr23"]
