"""cvm-cli contract certificate / root / owner: what a registry's owner runs after deployment, on anvil."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from web3 import Web3

from offchain.abi.keccak import keccak256
from offchain.abi.snp_report import Product
from offchain.errors import ParseError, Reason
from offchain.trust.certs import to_der, to_pem
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, spki_fingerprint
from onchain.admin_cli import contract
from onchain.anvil import AnvilProcess
from onchain.client import RegistryClient
from onchain.deploy import deploy_registry
from tests.support.evidence import dev_chain
from tests.support.stack import funded

pytestmark = pytest.mark.integration

ZERO_ADDRESS = "0x" + "00" * 20


def _run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(contract, [*args, "--json"], env=env, catch_exceptions=False)


def _ok(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = _run(env, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def _refused(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = _run(env, *args)
    return result.exit_code, json.loads(result.output)["reason"]


def test_owner_revokes_certificates_manages_roots_and_hands_over(tmp_path: Path) -> None:
    dev = dev_chain(Product.GENOA)
    for name, cert in (("ark", dev.ark), ("ask", dev.ask), ("vcek", dev.leaf)):
        (tmp_path / f"{name}.pem").write_text(to_pem(cert))
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        owner, successor = funded(w3), funded(w3)
        env = {"OWNER_KEY": owner.key.hex(), "SUCCESSOR_KEY": successor.key.hex()}
        client = deploy_registry(w3, account=owner, amd_roots=True, dev_root=dev.ark)
        client.register_chain(to_der(dev.ark), to_der(dev.ask), to_der(dev.leaf))
        at = ["--rpc", anvil.url, "--registry", client.address]
        as_owner = [*at, "--key", "env:OWNER_KEY"]
        ask = str(tmp_path / "ask.pem")

        # certificates: by file or by id, shown, revoked by the owner only, once
        ask_id = "0x" + keccak256(to_der(dev.ask)).hex()
        shown = _ok(env, "certificate", "show", "--cert", ask, *at)
        assert shown == _ok(env, "certificate", "show", ask_id, *at)
        assert (shown["certificate_id"], shown["kind"], shown["product"], shown["revoked"]) == (
            ask_id, "ask", "genoa", False
        )
        assert shown["issuer"] == "0x" + keccak256(to_der(dev.ark)).hex()
        assert _refused(env, "certificate", "revoke", "--cert", ask, *at, "--key", "env:SUCCESSOR_KEY", "--yes") == (
            1, Reason.REGISTRY_NOT_OWNER.value
        )
        # What cannot be undone: refused without --yes off a terminal, simulated with --dry-run, nothing sent.
        block = w3.eth.block_number
        assert _refused(env, "certificate", "revoke", "--cert", ask, *as_owner) == (2, Reason.INPUT_INVALID.value)
        dry = _ok(env, "certificate", "revoke", "--cert", ask, *as_owner, "--dry-run")
        assert (dry["dry_run"], dry["function"], dry["from"], dry["certificate_id"]) == (
            True, "revokeCertificate", owner.address, ask_id) and dry["gas"] > 0
        assert _refused(env, "certificate", "revoke", "--cert", ask, *at, "--key", "env:SUCCESSOR_KEY",
                        "--dry-run") == (1, Reason.REGISTRY_NOT_OWNER.value)  # a dry run names the revert too
        assert w3.eth.block_number == block and client.certificate_of(bytes.fromhex(ask_id[2:])).revoked is False
        revoked = _ok(env, "certificate", "revoke", "--cert", ask, *as_owner, "--yes")
        assert revoked["certificate_id"] == ask_id and revoked["gas"] > 0
        assert _ok(env, "certificate", "show", ask_id, *at)["revoked"] is True
        assert client.certificate_of(bytes.fromhex(ask_id[2:])).revoked is True
        assert _refused(env, "certificate", "revoke", ask_id, *as_owner, "--yes") == (
            1, Reason.REGISTRY_CERTIFICATE_REVOKED.value
        )
        unknown = "0x" + "ab" * 32
        assert _ok(env, "certificate", "show", unknown, *at)["kind"] == "none"
        assert _refused(env, "certificate", "revoke", unknown, *as_owner, "--yes") == (
            1, Reason.REGISTRY_CERTIFICATE_UNKNOWN.value
        )

        # roots: AMD's by product, a development ARK by file
        milan = "0x" + AMD_ARK_SPKI_SHA256[Product.MILAN].hex()
        assert _ok(env, "root", "show", "--amd", "milan", *at) == {"key_hash": milan, "product": "milan",
                                                                    "pinned": True}
        assert _ok(env, "root", "unpin", "--amd", "milan", *as_owner, "--dry-run")["function"] == "unpinRoot"
        assert _ok(env, "root", "show", "--amd", "milan", *at)["pinned"] is True
        assert _ok(env, "root", "unpin", "--amd", "milan", *as_owner, "--yes")["key_hash"] == milan
        assert _ok(env, "root", "show", "--amd", "milan", *at)["pinned"] is False
        assert _ok(env, "root", "pin", "--amd", "milan", *as_owner)["product"] == "milan"
        assert _refused(env, "root", "pin", "--amd", "milan", *as_owner) == (
            1, Reason.REGISTRY_ROOT_ALREADY_PINNED.value
        )
        dev_root = _ok(env, "root", "show", "--ark", str(tmp_path / "ark.pem"), *at)
        assert dev_root == {"key_hash": "0x" + spki_fingerprint(dev.ark).hex(), "product": "genoa", "pinned": True}

        # ownership in two steps: offered, accepted by the successor, the old owner is out
        assert _refused(env, "owner", "transfer", successor.address, *as_owner) == (2, Reason.INPUT_INVALID.value)
        assert _ok(env, "owner", "transfer", successor.address, *as_owner, "--dry-run")["pending_owner"] == \
            successor.address
        assert _ok(env, "owner", "show", *at)["pending_owner"] == ZERO_ADDRESS
        _ok(env, "owner", "transfer", successor.address, *as_owner, "--yes")
        assert _ok(env, "owner", "show", *at) == {"owner": owner.address, "pending_owner": successor.address}
        assert _ok(env, "owner", "accept", *at, "--key", "env:SUCCESSOR_KEY")["owner"] == successor.address
        assert _ok(env, "owner", "show", *at) == {"owner": successor.address, "pending_owner": ZERO_ADDRESS}
        assert _refused(env, "root", "unpin", "--amd", "genoa", *as_owner, "--yes") == (1, Reason.REGISTRY_NOT_OWNER.value)
        assert RegistryClient(w3, client.address).owner() == successor.address


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["certificate", "show"], Reason.INPUT_INVALID),
        (["certificate", "show", "0x1234"], Reason.INPUT_INVALID),
        (["certificate", "show", "0x" + "11" * 32, "--cert", "ask.pem"], Reason.INPUT_INVALID),
        (["certificate", "show", "--cert", "missing.pem"], Reason.INPUT_UNREADABLE),
        (["root", "show"], Reason.INPUT_INVALID),
        (["root", "show", "--amd", "milan", "--ark", "ask.pem"], Reason.INPUT_INVALID),
        (["root", "show", "--ark", "ask.pem"], Reason.INPUT_INVALID),
        (["root", "show", "--ark", "garbage.pem"], Reason.INPUT_INVALID),
        (["certificate", "show", "--cert", "garbage.pem"], Reason.INPUT_INVALID),
    ],
    ids=["no-certificate", "short-id", "id-and-file", "missing-file", "no-root", "both-roots", "not-an-ark",
         "ark-not-a-certificate", "cert-not-a-certificate"],
)
def test_admin_commands_refuse_bad_input_before_touching_the_chain(
    tmp_path: Path, args: list[str], reason: Reason
) -> None:
    (tmp_path / "ask.pem").write_text(to_pem(dev_chain(Product.GENOA).ask))
    (tmp_path / "garbage.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    resolved = [str(tmp_path / a) if a.endswith(".pem") else a for a in args]
    # no chain answers at this URL: each refusal must come before any RPC
    result = _run({}, *resolved, "--rpc", "http://127.0.0.1:9", "--registry", "0x" + "11" * 20)
    assert (result.exit_code, json.loads(result.output)["reason"]) == (2, reason.value)


def test_a_bad_registry_address_is_a_usage_error_and_an_empty_one_has_no_contract() -> None:
    """Issue 14, defects 1 and 6: one ``[reason]`` line, never a traceback."""
    from onchain.admin_cli import golden
    from onchain.relayer.cli import relay
    from onchain.sdk import Registry

    gid = "0x" + "ab" * 32
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        owner = funded(w3)
        env = {"OWNER_KEY": owner.key.hex()}
        runner = CliRunner(mix_stderr=False)
        commands = [
            (golden, ["show", gid]), (golden, ["revoke", gid, "--key", "env:OWNER_KEY", "--yes"]),
            (contract, ["owner", "show"]), (contract, ["root", "show", "--amd", "genoa"]),
            (relay, ["--agent", "http://127.0.0.1:1", "--golden", "g.json", "--key", "env:OWNER_KEY", "--once"]),
        ]
        for group, args in commands:
            bad = runner.invoke(group, [*args, "--rpc", anvil.url, "--registry", "0xdeadbeef"], env=env)
            assert bad.exit_code == 2, (args, bad.output, bad.stderr)
            assert "[input.invalid] --registry '0xdeadbeef' is not an address" in bad.stderr + bad.output
            assert "Traceback" not in bad.stderr + bad.output
        nobody = "0x" + "12" * 20
        empty = runner.invoke(golden, ["show", gid, "--rpc", anvil.url, "--registry", nobody])
        assert empty.exit_code == 1 and empty.stderr.startswith(f"[{Reason.REGISTRY_NO_CONTRACT.value}] no contract at")
        with pytest.raises(ParseError) as sdk:
            Registry(w3, "0xdeadbeef")
        assert sdk.value.reason is Reason.INPUT_INVALID
        # A golden id the registry does not hold: not found, exit 1 (it printed "unknown" with exit 0).
        client = deploy_registry(w3, account=owner, amd_roots=True)
        unknown = runner.invoke(golden, ["show", gid, "--rpc", anvil.url, "--registry", client.address, "--json"])
        assert (unknown.exit_code, json.loads(unknown.stdout)["reason"]) == (1, Reason.REGISTRY_GOLDEN_NOT_FOUND.value)
        # golden show's JSON error is its own, with none of a verify verdict's fields (issue 14, defect 9).
        assert set(json.loads(unknown.stdout)) <= {"ok", "reason", "detail", "context"}
        # An RPC node that does not answer is a transient failure: exit 3 (issue 14, defect 8).
        down = runner.invoke(golden, ["show", gid, "--rpc", "http://127.0.0.1:9", "--registry", client.address])
        assert down.exit_code == 3 and down.stderr.startswith(f"[{Reason.CHAIN_RPC_UNAVAILABLE.value}]")


def test_owner_names_and_unnames_activators() -> None:
    dev = dev_chain(Product.GENOA)
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        owner, stranger = funded(w3), funded(w3)
        env = {"OWNER_KEY": owner.key.hex(), "STRANGER_KEY": stranger.key.hex()}
        client = deploy_registry(w3, account=owner, amd_roots=False, dev_root=dev.ark)
        at = ["--rpc", anvil.url, "--registry", client.address]
        activator = Web3.to_checksum_address("0x" + "5a" * 20)

        assert _ok(env, "activator", "show", activator, *at) == {"activator": activator, "allowed": False}
        added = _ok(env, "activator", "add", activator.lower(), *at, "--key", "env:OWNER_KEY")
        assert added["activator"] == activator and added["allowed"] is True and added["gas"] > 0
        assert client.is_activator(activator)
        assert _ok(env, "activator", "show", activator, *at)["allowed"] is True
        # Only the owner names activators; nothing changes on a refusal.
        assert _refused(env, "activator", "remove", activator, *at, "--key", "env:STRANGER_KEY") == (
            1, Reason.REGISTRY_NOT_OWNER.value)
        assert client.is_activator(activator)
        removed = _ok(env, "activator", "remove", activator, *at, "--key", "env:OWNER_KEY")
        assert removed["allowed"] is False and not client.is_activator(activator)
        assert _refused(env, "activator", "show", "not-an-address", *at) == (2, Reason.INPUT_INVALID.value)
        # The registry refuses the zero address (RegistryZeroAddress): input.invalid, a usage error.
        assert _refused(env, "activator", "add", ZERO_ADDRESS, *at, "--key", "env:OWNER_KEY") == (
            2, Reason.INPUT_INVALID.value)
