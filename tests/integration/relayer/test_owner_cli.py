"""cvm-cli contract deploy, golden publish/show/revoke and relay status, as an owner and a relayer run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from web3 import Web3

from localstack.swtpm import swtpm_available
from offchain.errors import Reason
from offchain.policy.golden import GoldenMeasurement
from onchain.admin_cli import contract, golden
from onchain.anvil import AnvilProcess
from onchain.client import RegistryClient
from onchain.relayer.cli import relay
from tests.support.stack import Stack, funded

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not swtpm_available(), reason="swtpm is not installed (scripts/setup installs it)"),
]


def _invoke(command, args: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(command, args, env=env, catch_exceptions=False)


def test_owner_deploys_publishes_shows_and_revokes(stack: Stack, tmp_path: Path) -> None:
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        owner, stranger = funded(w3), funded(w3)
        env = {"OWNER_KEY": owner.key.hex(), "STRANGER_KEY": stranger.key.hex()}
        ark = str(stack.state_dir / "sim" / "ark.pem")

        done = _invoke(contract, ["deploy", "--rpc", anvil.url, "--dev-root", ark, "--key", "env:OWNER_KEY",
                                  "--json"], env)
        assert done.exit_code == 0, done.output
        deployed = json.loads(done.output)
        registry = deployed["address"]
        assert deployed["owner"] == owner.address and deployed["amd_roots"] is True and deployed["dev_root"] is True
        assert RegistryClient(w3, registry).owner() == owner.address

        saved = tmp_path / "golden.json"
        common = ["--rpc", anvil.url, "--registry", registry]
        refused = _invoke(golden, ["publish", *common, "--from-agent", stack.agent.external,
                                   "--key", "env:STRANGER_KEY", "--json"], env)
        assert refused.exit_code == 1 and json.loads(refused.output)["reason"] == Reason.REGISTRY_NOT_OWNER.value

        published = _invoke(golden, ["publish", *common, "--from-agent", stack.agent.external, "--save", str(saved),
                                     "--key", "env:OWNER_KEY", "--json"], env)
        assert published.exit_code == 0, published.output
        golden_id = json.loads(published.output)["golden_id"]
        assert golden_id == "0x" + GoldenMeasurement.from_file(saved).canonical_id().hex()

        shown = json.loads(_invoke(golden, ["show", golden_id, *common, "--json"], env).output)
        assert shown["published"] is True and shown["revoked"] is False and shown["checks"] == {}

        # A version-2 document: its report checks go on chain with it, under an id that covers them.
        doc = json.loads(saved.read_text())
        doc.update(version=2, checks={"min_guest_svn": 1, "platform_info": {"smt_enabled": False}})
        (tmp_path / "checked.json").write_text(json.dumps(doc))
        checked = _invoke(golden, ["publish", *common, "--file", str(tmp_path / "checked.json"),
                                   "--key", "env:OWNER_KEY", "--json"], env)
        assert checked.exit_code == 0, checked.output
        checked_id = json.loads(checked.output)["golden_id"]
        assert checked_id == "0x" + GoldenMeasurement.from_json(doc).canonical_id().hex() != golden_id
        shown = _invoke(golden, ["show", checked_id, *common, "--json"], env)
        assert json.loads(shown.output)["checks"] == doc["checks"]
        text = _invoke(golden, ["show", checked_id, *common], env).output
        assert "report checks min_guest_svn, platform_info" in text

        dry = json.loads(_invoke(golden, ["revoke", golden_id, *common, "--key", "env:OWNER_KEY", "--dry-run", "--json"],
                                 env).output)
        assert (dry["dry_run"], dry["function"], dry["golden_id"]) == (True, "revokeGolden", golden_id)
        assert json.loads(_invoke(golden, ["show", golden_id, *common, "--json"], env).output)["revoked"] is False
        revoked = _invoke(golden, ["revoke", golden_id, *common, "--key", "env:OWNER_KEY", "--yes", "--json"], env)
        assert revoked.exit_code == 0, revoked.output
        assert json.loads(_invoke(golden, ["show", golden_id, *common, "--json"], env).output)["revoked"] is True


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["contract", "deploy", "--no-amd-roots"], Reason.INPUT_INVALID),
        (["contract", "deploy"], Reason.KEY_UNAVAILABLE),
        (["golden", "show", "0x12", "--registry", "0x" + "11" * 20], Reason.INPUT_INVALID),
        (["golden", "publish", "--registry", "0x" + "11" * 20], Reason.INPUT_INVALID),
    ],
    ids=["no-root-at-all", "key-env-unset", "short-golden-id", "publish-without-source"],
)
def test_owner_cli_refuses_with_a_reason(args: list[str], reason: Reason) -> None:
    command = contract if args[0] == "contract" else golden
    rest = [*args[1:], "--rpc", "http://127.0.0.1:9", "--json"]
    if args[:2] != ["golden", "show"]:
        rest += ["--key", "env:CVM_ATTEST_TEST_UNSET_KEY"]
    result = CliRunner().invoke(command, rest, env={"CVM_ATTEST_TEST_UNSET_KEY": ""})
    assert result.exit_code in (1, 2)
    assert json.loads(result.output)["reason"] == reason.value


def test_relay_status_reads_the_journal(stack: Stack, tmp_path: Path) -> None:
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        owner, relayer = funded(w3), funded(w3)
        env = {"OWNER_KEY": owner.key.hex(), "RELAYER_KEY": relayer.key.hex()}
        ark = str(stack.state_dir / "sim" / "ark.pem")
        registry = json.loads(_invoke(contract, ["deploy", "--rpc", anvil.url, "--no-amd-roots", "--dev-root", ark,
                                                 "--key", "env:OWNER_KEY", "--json"], env).output)["address"]
        saved = tmp_path / "golden.json"
        _invoke(golden, ["publish", "--rpc", anvil.url, "--registry", registry, "--from-agent", stack.agent.external,
                         "--save", str(saved), "--key", "env:OWNER_KEY"], env)
        stack.consent(GoldenMeasurement.from_file(saved))  # the CVM's operator, not the owner, consents
        journal = tmp_path / "relayer.db"
        ran = _invoke(relay, ["--rpc", anvil.url, "--registry", registry, "--agent", stack.agent.external,
                              "--golden", str(saved), "--dev-root", ark, "--journal", str(journal), "--once",
                              "--key", "env:RELAYER_KEY"], env)
        assert ran.exit_code == 0, ran.output
        assert "register" in ran.output
        status = _invoke(relay, ["status", "--journal", str(journal), "--json"], env)
        (line,) = status.output.splitlines()
        row = json.loads(line)
        assert row["agent"] == stack.agent.external and row["cvm_address"] == stack.cvm()
        assert row["attested_until"] > 0 and row["last_tx"].startswith("0x") and row["last_error"] is None


def test_relay_takes_one_crl_source(tmp_path: Path) -> None:
    (tmp_path / "golden.json").write_text("{}")
    (tmp_path / "garbage.crl").write_bytes(b"not a CRL")
    base = ["--rpc", "http://127.0.0.1:9", "--registry", "0x" + "11" * 20, "--agent", "http://127.0.0.1:9",
            "--golden", str(tmp_path / "golden.json"), "--key", "env:CVM_ATTEST_TEST_UNSET_KEY"]
    both = CliRunner().invoke(relay, [*base, "--crl", str(tmp_path / "garbage.crl"), "--kds-crl"])
    assert both.exit_code == 2 and "[input.invalid]" in both.output
    garbage = CliRunner().invoke(relay, [*base, "--crl", str(tmp_path / "garbage.crl")])
    assert garbage.exit_code == 2 and "[snp.crl.malformed]" in garbage.output


def test_relay_once_fails_loudly(stack: Stack, tmp_path: Path) -> None:
    """Issue 14, defect 5: an unpublished golden is found at start; a pass with an unreachable agent or an
    account that cannot pay exits 1 with the reason (funds, not "unreachable"), so cron alerts."""
    from eth_account import Account

    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        owner, relayer = funded(w3), funded(w3)
        broke = Account.create()
        env = {"OWNER_KEY": owner.key.hex(), "RELAYER_KEY": relayer.key.hex(), "BROKE_KEY": broke.key.hex()}
        ark = str(stack.state_dir / "sim" / "ark.pem")
        registry = json.loads(_invoke(contract, ["deploy", "--rpc", anvil.url, "--no-amd-roots", "--dev-root", ark,
                                                 "--key", "env:OWNER_KEY", "--json"], env).output)["address"]
        document = stack.golden()
        saved = tmp_path / "golden.json"
        saved.write_text(document.dumps())
        stack.consent(document)
        base = ["--rpc", anvil.url, "--registry", registry, "--golden", str(saved), "--dev-root", ark, "--once"]
        runner = CliRunner(mix_stderr=False)

        unpublished = runner.invoke(relay, [*base, "--agent", stack.agent.external, "--key", "env:RELAYER_KEY",
                                            "--journal", str(tmp_path / "a.db")], env=env)
        assert unpublished.exit_code == 1 and "is not published" in unpublished.stderr
        assert unpublished.stderr.startswith(f"[{Reason.REGISTRY_GOLDEN_NOT_FOUND.value}]")

        RegistryClient(w3, registry, account=owner).publish_golden(document)
        nobody = "http://127.0.0.1:9"
        unreachable = runner.invoke(relay, [*base, "--agent", nobody, "--key", "env:RELAYER_KEY",
                                            "--journal", str(tmp_path / "b.db")], env=env)
        assert unreachable.exit_code == 1, unreachable.output
        assert f"[{Reason.RELAY_PASS_FAILED.value}] 1 of 1 agents failed" in unreachable.stderr

        unfunded = runner.invoke(relay, [*base, "--agent", stack.agent.external, "--key", "env:BROKE_KEY",
                                         "--journal", str(tmp_path / "c.db")], env=env)
        assert unfunded.exit_code == 1
        assert Reason.CHAIN_INSUFFICIENT_FUNDS.value in unfunded.stdout + unfunded.stderr
        assert "unreachable" not in unfunded.stdout

        funded_pass = runner.invoke(relay, [*base, "--agent", stack.agent.external, "--key", "env:RELAYER_KEY",
                                            "--journal", str(tmp_path / "d.db")], env=env)
        assert funded_pass.exit_code == 0 and "register" in funded_pass.stdout, funded_pass.stderr
