"""``cvm-cli demo --image``: the on-chain flow against the agent inside a booted CVM image.

Steps: build the image of the sample workload (image.sample_workload: a compose file, its config
and a local busybox image) with ``--platform sim``; boot it under QEMU (localstack.qemu: OVMF,
swtpm, TCG); start anvil and deploy the registry pinned to AMD's roots and the VM's development
ARK; publish the golden measurement **the build predicted** (not the one the agent reports: the
demo shows the two agree); have the CVM consent to it through the token-guarded route; relay one
attestation (registerCvm), then a refresh; revoke the golden measurement; stop everything.

The simulated platform's development chain is created by the agent inside the VM at boot, so its
ARK is taken from the VM's first evidence: trust on first use, acceptable only because nothing is
at stake in a demo. The CVM's own transactions (the local demo's gated dApp call) need the agent's
internal listener, a Unix socket inside the VM, and are left to the local demo.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import click
from eth_account import Account
from web3 import Web3

from image.build import BuildRequest, build_image
from image.rootfs import DEFAULT_APT_CACHE
from image.sample_workload import GREETING, write_sample_workload
from localstack.qemu import booted_vm
from offchain.errors import ChainError, Reason
from offchain.trust.certs import parse_certificate
from offchain.trust.roots import TrustRoots
from onchain.anvil import AnvilProcess
from onchain.client import RegistryClient
from onchain.demo import Progress, fund, http_json, print_transactions
from onchain.deploy import deploy_registry
from onchain.relayer.journal import Journal
from onchain.relayer.relayer import Relayer, RelayPolicy, TickResult
from onchain.relayer.sender import TxSender

EPOCH = 1_700_000_000
AGENT_TIMEOUT_S = 300.0


@dataclass
class ImageDemoResult:
    """What the image demo did, for its summary."""

    root_hash: str = ""
    golden_id: bytes = b""
    boot_to_agent_s: float = 0.0
    cvm_address: str = ""
    registry: str = ""
    relay_results: list[TickResult] = field(default_factory=list)
    attested_after_register: bool = False
    attested_after_revoke: bool = True
    transactions: list[tuple[str, str, int]] = field(default_factory=list)


def run_image_demo(workdir: Path, echo: Callable[[str], None] = click.echo) -> ImageDemoResult:
    """Run every step in ``workdir``; everything started is stopped before returning or raising."""
    result = ImageDemoResult()
    progress = Progress(8, echo)
    token = secrets.token_hex(16)
    with ExitStack() as stack:
        with progress.step("Building the CVM image of the sample workload (--platform sim)"):
            workload = write_sample_workload(workdir / "workload", apt_cache=DEFAULT_APT_CACHE, work=workdir / "tools")
            build = build_image(BuildRequest(
                workload, workdir / "image", platform="sim", source_date_epoch=EPOCH,
                api_token_sha256=hashlib.sha256(token.encode()).digest()), lambda step, detail: progress.note(
                    f"{step}: {detail}"))
            assert build.golden is not None  # a sim image's launch measurement is known
            golden = build.golden
            result.root_hash = build.layout.root_hash.hex()
            progress.note(f"{build.files['disk.raw']}: {build.layout.size} bytes, root hash {result.root_hash}")
            progress.note("predicted " + ", ".join(f"PCR{i} {v.hex()[:16]}…" for i, v in build.prediction.pcrs.items()))

        with progress.step("Booting it under QEMU (q35, OVMF, swtpm as its TPM, TCG: no KVM here)"):
            vm = stack.enter_context(booted_vm(build.files["disk.raw"], workdir / "vm"))
            result.boot_to_agent_s = vm.wait_for_agent(AGENT_TIMEOUT_S)
            progress.note(f"agent answered {result.boot_to_agent_s:.0f} s after QEMU started, at {vm.agent_url}")
            if vm.wait_for_console(GREETING, 120):
                progress.note(f"the workload's container says: {GREETING}")
            served = http_json("GET", vm.agent_url + "/golden-measurement", timeout=120)
            same = all(served["pcrs"].get(str(i)) == v.hex() for i, v in golden.pinned_pcrs().items())
            progress.note(f"the agent's own PCRs {'equal' if same else 'DIFFER FROM'} the build's prediction")
            evidence = http_json("GET", f"{vm.agent_url}/collaterals/{secrets.token_hex(32)}", timeout=180)
            ark = parse_certificate(evidence["certificates"]["ark"].encode())
            result.cvm_address = Web3.to_checksum_address(http_json("GET", vm.agent_url + "/identity")["cvm_address"])
            progress.note(f"CVM address {result.cvm_address} (its key never leaves the VM)")

        with progress.step("Starting anvil and deploying CvmRegistry pinned to AMD's roots and the VM's dev ARK"):
            anvil = stack.enter_context(AnvilProcess())
            w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
            owner, relayer_key = Account.create(), Account.create()
            for account in (owner, relayer_key):
                fund(w3, account.address)
            registry = deploy_registry(w3, account=owner, amd_roots=True, dev_root=ark)
            result.registry = registry.address
            progress.note(f"registry {registry.address} (the dev ARK taken from the VM's evidence: demo only)")

        with progress.step("Publishing the golden measurement the build predicted"):
            result.golden_id = registry.publish_golden(golden)
            assert registry.last_tx is not None
            result.transactions.append(("publishGolden", registry.last_tx.tx_hash, registry.last_tx.gas_used))
            http_json("POST", vm.agent_url + "/golden-consents",
                      json.dumps({"golden_id": "0x" + result.golden_id.hex()}).encode(),
                      {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, timeout=60)
            progress.note(f"golden id 0x{result.golden_id.hex()}, consented to by the CVM's operator")

        journal = Journal(workdir / "relayer.db")
        stack.callback(journal.close)
        client = RegistryClient(w3, registry.address, account=relayer_key)
        relayer = Relayer(
            client=client, sender=TxSender(w3, relayer_key, journal), journal=journal, golden=golden,
            agents=[vm.agent_url], roots=TrustRoots.amd().with_dev_root(ark),
            policy=RelayPolicy(refresh_margin_s=golden.lifetime_seconds + 1),
        )
        for title, expected in (("Relaying one attestation from the VM (registerCvm)", "register"),
                                ("Refreshing it (a fresh quote from the VM's vTPM)", "refresh")):
            with progress.step(title):
                (tick,) = relayer.tick()
                result.relay_results.append(tick)
                if tick.action != expected:
                    raise ChainError(Reason.CHAIN_TX_FAILED, f"{expected} did not happen: {tick.action} {tick.error}")
                result.transactions.append((f"{expected}Cvm", tick.tx_hash or "", tick.gas_used or 0))
                result.attested_after_register = registry.is_attested_for(result.cvm_address, result.golden_id)
                progress.note(f"{expected}Cvm {tick.tx_hash}, gas {tick.gas_used}; "
                              f"attested = {result.attested_after_register}")

        with progress.step("Revoking the golden measurement"):
            tx = registry.revoke_golden(result.golden_id)
            result.transactions.append(("revokeGolden", tx.tx_hash, tx.gas_used))
            result.attested_after_revoke = registry.is_attested(result.cvm_address)
            progress.note(f"isAttested = {result.attested_after_revoke}")

        with progress.step("Stopping everything (QEMU, swtpm, anvil)"):
            stack.close()

    echo("")
    echo("Summary")
    echo(f"  image     root hash {result.root_hash}, agent up {result.boot_to_agent_s:.0f} s after boot")
    echo(f"  registry  {result.registry}")
    echo(f"  CVM       {result.cvm_address}")
    echo(f"  golden    0x{result.golden_id.hex()} (from the build)")
    print_transactions(result.transactions, echo)
    return result
