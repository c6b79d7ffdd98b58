"""Proof by booting: the image `cvm-cli image build` makes boots under QEMU (q35, OVMF, swtpm, TCG),
verifies its root with dm-verity, runs the agent and the workload's container, and measures exactly
what the build predicted; the evidence it serves verifies against the predicted golden.json, off
chain and on chain. Negatives: one byte of the root flipped stops the boot at verity; a changed
workload file and a changed kernel command line are named by the verifier.

Three boots of about a minute each under TCG, after one build of about a minute
(docs/image.md, "Booting it here"). The VM's development AMD chain is made by its agent at boot:
the test takes its ARK from the first evidence (trust on first use), which only a test may do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from image.disk import RootImage, WorkloadImage, assemble_disk, build_workload, inspect_disk
from image.esp import read_boot_loader
from image.packages import BOOT_PACKAGES, PackageLock, fetch_stub
from image.rootfs import DEFAULT_APT_CACHE
from image.sample_workload import GREETING, IMAGE_NAME, write_sample_workload
from image.uki import Uki, build_uki
from image.verity import VerityTree
from localstack.qemu import RunningVm, booted_vm, qemu_available
from offchain.abi.binding import offchain_extra_data
from offchain.abi.tcg_log import parse_tcg_log, replay
from offchain.evidence import EvidenceBundle, verify_evidence
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import parse_certificate
from offchain.trust.roots import TrustRoots

EPOCH = 1_700_000_000
TOKEN = "image-boot-test-token-0123456789"
AGENT_TIMEOUT_S = 300
VERIFIED = "cvm-attest: dm-verity verified the root against root hash"
VERITY_FAILED = "cvm-attest: dm-verity verification of the root failed; refusing to boot"
FORMATS = "raw,vhd,vmdk,gcp"
OUTPUTS = ["disk.raw", "disk.tar.gz", "disk.vhd", "disk.vmdk", "golden.json", "manifest.json"]
CLI = [str(Path(sys.executable).with_name("cvm-cli"))]  # the entry point a user runs


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the image build runs mmdebstrap --mode=root (root only)"
    if shutil.which("mmdebstrap") is None:
        return "mmdebstrap is not installed (scripts/setup installs it)"
    return qemu_available()


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(_why_not() is not None, reason=f"cannot build and boot an image here: {_why_not()}")]


def get_json(url: str, timeout: float = 180) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the VM's forwarded port)
        return json.loads(response.read())


def post_json(url: str, body: dict[str, Any], token: str) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        return json.loads(response.read())


@dataclass(frozen=True)
class Build:
    out: Path
    workload: Path
    manifest: dict[str, Any]
    golden: GoldenMeasurement

    @property
    def disk(self) -> Path:
        return self.out / "disk.raw"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """``cvm-cli image build`` of the sample workload, as a user runs it."""
    tmp = tmp_path_factory.mktemp("image")
    workload = write_sample_workload(tmp / "workload", apt_cache=DEFAULT_APT_CACHE, work=tmp / "work")
    out = tmp / "out"
    done = subprocess.run(
        [*CLI, "image", "build", str(workload), "--out", str(out), "--platform", "sim", "--source-date-epoch",
         str(EPOCH), "--api-token-sha256", hashlib.sha256(TOKEN.encode()).hexdigest(), "--format", FORMATS, "--json"],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert sorted(result["files"]) == OUTPUTS
    return Build(out, workload, json.loads((out / "manifest.json").read_text()),
                 GoldenMeasurement.from_file(out / "golden.json"))


@dataclass
class Booted:
    vm: RunningVm
    evidence: dict[str, Any]
    nonce: str
    ark_pem: str
    seconds_to_agent: float


def _boot(disk: Path, work: Path) -> Iterator[Booted]:
    with booted_vm(disk, work) as vm:
        seconds = vm.wait_for_agent(AGENT_TIMEOUT_S)
        nonce = secrets.token_hex(32)
        evidence = get_json(f"{vm.agent_url}/collaterals/{nonce}")
        yield Booted(vm, evidence, nonce, evidence["certificates"]["ark"], seconds)


@pytest.fixture(scope="module")
def booted(build: Build, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    yield from _boot(build.disk, tmp_path_factory.mktemp("vm"))


def _cli_verify(evidence: dict[str, Any], nonce: str, golden: Path, ark_pem: str, tmp: Path) -> tuple[int, dict[str, Any]]:
    (tmp / "evidence.json").write_text(json.dumps(evidence))
    (tmp / "ark.pem").write_text(ark_pem)
    done = subprocess.run(
        [*CLI, "verify", "evidence", str(tmp / "evidence.json"), "--nonce", nonce, "--golden", str(golden),
         "--dev-root", str(tmp / "ark.pem"), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_the_manifest_names_every_input_and_output(build: Build) -> None:
    manifest, lock = build.manifest, PackageLock.read()
    assert manifest["packages"] == {n: v for n, v in lock.versions.items() if n not in BOOT_PACKAGES}
    assert {manifest[k]["version"] for k in ("kernel", "busybox", "stub")} == {lock.version(n) for n in BOOT_PACKAGES}
    assert any(w["name"].startswith("cvm_attest-") for w in manifest["agent"]["wheels"])
    assert [e["name"] for e in manifest["workload"]["events"]] == [IMAGE_NAME, "docker-compose.yml", "config/app.env"]
    assert manifest["workload"]["left_out"] == []
    report = inspect_disk(build.disk)
    assert manifest["uki"]["authenticode_sha256"] == report.uki_authenticode.hex()
    assert manifest["uki"]["cmdline"] == report.cmdline and "cvm-attest.platform=sim" in report.cmdline
    assert manifest["disk"]["root_hash"] == report.root_hash.hex()
    assert sorted(manifest["outputs"]) == [n for n in OUTPUTS if n != "manifest.json"]
    for name, entry in manifest["outputs"].items():
        assert entry["sha256"] == hashlib.sha256((build.out / name).read_bytes()).hexdigest(), name
    assert manifest["golden_id"] == "0x" + build.golden.canonical_id().hex()
    inspected = subprocess.run([*CLI, "image", "inspect", str(build.disk), "--json"], capture_output=True, text=True,
                               timeout=300, check=False)
    assert json.loads(inspected.stdout)["test_image"] is True  # and in red without --json


# --- 1. the root verified, the agent answers, the container runs ---------------------------------


def test_the_root_is_verified_and_the_agent_answers(build: Build, booted: Booted) -> None:
    console = booted.vm.console()
    assert f"{VERIFIED} {build.manifest['disk']['root_hash']}" in console
    assert booted.seconds_to_agent < AGENT_TIMEOUT_S
    served = get_json(f"{booted.vm.agent_url}/golden-measurement")
    assert served["measurement"] == build.golden.measurement.hex()
    assert booted.evidence["nonce"]["value"] == booted.nonce and booted.evidence["quote"]


def test_the_workloads_container_runs_from_its_local_image(booted: Booted) -> None:
    assert booted.vm.wait_for_console(GREETING, 180), booted.vm.console()[-3000:]
    assert "greeting=hello" in booted.vm.console()  # its config/, bind-mounted from the workload partition
    assert get_json(f"{booted.vm.agent_url}/healthz")["workload"] == "running"


# --- 2. the booted PCRs are the prediction, and the firmware's event log replays -----------------


def test_the_booted_pcrs_are_the_prediction_byte_for_byte(build: Build, booted: Booted) -> None:
    verified = verify_evidence(
        EvidenceBundle.from_json(booted.evidence), expected_extra_data=offchain_extra_data(bytes.fromhex(booted.nonce)),
        golden=None, roots=TrustRoots.amd().with_dev_root(parse_certificate(booted.ark_pem.encode())),
        now=datetime.now(timezone.utc),
    )
    quoted = verified.pcrs
    predicted = build.golden.pinned_pcrs()
    assert sorted(predicted) == [4, 9, 11, 12, 23]
    assert {i: quoted[i] for i in predicted} == predicted
    assert build.manifest["pcrs"] == {str(i): v.hex() for i, v in predicted.items()}


def test_the_firmware_event_log_replays_to_the_quoted_pcrs(booted: Booted) -> None:
    served = get_json(f"{booted.vm.agent_url}/boot-event-log")
    log = parse_tcg_log(base64.b64decode(served["log"]))
    replayed = replay(log)
    assert sorted(replayed) == [0, 1, 2, 3, 4, 5, 6, 7, 9, 11]
    quoted = EvidenceBundle.from_json(booted.evidence).pcrs
    assert {i: quoted[i] for i in replayed} == replayed
    assert served["replay"] == {str(i): v.hex() for i, v in replayed.items()}
    # PCR4: the firmware's action and separator, the UKI, then the kernel it loaded (no Secure Boot).
    assert [e.type_name for e in log.events if e.pcr == 4] == [
        "EV_EFI_ACTION", "EV_SEPARATOR", "EV_EFI_BOOT_SERVICES_APPLICATION", "EV_EFI_BOOT_SERVICES_APPLICATION"]


# --- 3. the whole chain: cvm-cli verify, and the registry on anvil ---------------------------------


def test_cvm_cli_verify_accepts_against_the_predicted_golden(build: Build, booted: Booted, tmp_path: Path) -> None:
    code, verdict = _cli_verify(booted.evidence, booted.nonce, build.out / "golden.json", booted.ark_pem, tmp_path)
    assert (code, verdict["ok"], verdict["reason"]) == (0, True, None)
    assert verdict["golden_id"] == "0x" + build.golden.canonical_id().hex()


def test_the_registry_accepts_register_cvm_relayed_from_the_vm(build: Build, booted: Booted, tmp_path: Path) -> None:
    from eth_account import Account
    from web3 import Web3

    from onchain.anvil import AnvilProcess
    from onchain.client import RegistryClient
    from onchain.demo import fund
    from onchain.deploy import deploy_registry
    from onchain.relayer.journal import Journal
    from onchain.relayer.relayer import Relayer
    from onchain.relayer.sender import TxSender

    ark = parse_certificate(booted.ark_pem.encode())
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        owner, relayer_key = Account.create(), Account.create()
        for account in (owner, relayer_key):
            fund(w3, account.address)
        registry = deploy_registry(w3, account=owner, amd_roots=True, dev_root=ark)
        golden_id = registry.publish_golden(build.golden)  # published from the build, before the VM was asked
        assert golden_id == build.golden.canonical_id()
        post_json(f"{booted.vm.agent_url}/golden-consents", {"golden_id": "0x" + golden_id.hex()}, TOKEN)
        journal = Journal(tmp_path / "relayer.db")
        try:
            client = RegistryClient(w3, registry.address, account=relayer_key)
            relayer = Relayer(
                client=client, sender=TxSender(w3, relayer_key, journal), journal=journal, golden=build.golden,
                agents=[booted.vm.agent_url], roots=TrustRoots.amd().with_dev_root(ark),
            )
            (tick,) = relayer.tick()
        finally:
            journal.close()
        assert (tick.action, tick.error) == ("register", None)
        cvm = get_json(f"{booted.vm.agent_url}/identity")["cvm_address"]
        assert registry.is_attested_for(Web3.to_checksum_address(cvm), golden_id)


# --- 4. an upload into the running VM, its secret sealed -------------------------------------------


def test_upload_sends_a_workload_and_its_sealed_secret_into_the_vm(build: Build, booted: Booted, tmp_path: Path) -> None:
    """cvm-cli upload verifies the VM against the predicted golden, seals secrets/ to the key its quote
    binds, and the agent puts it in memory (/var/lib/cvm-agent is a tmpfs: the agent refuses anything
    else), where the updated container reads it."""
    secret = secrets.token_hex(16).encode()
    script = "echo \"sealed secret: $(sha256sum /secrets/api-key)\"; cat /config/app.env; exec sleep 2147483647"
    compose = (f"services:\n  hello:\n    image: {IMAGE_NAME}\n    command: {json.dumps(['/bin/sh', '-c', script])}\n"
               "    volumes:\n      - ./config:/config:ro\n      - ./secrets:/secrets:ro\n")
    update = tmp_path / "update"
    (update / "config").mkdir(parents=True)
    (update / "secrets").mkdir()
    (update / "docker-compose.yml").write_text(compose)
    (update / "config" / "app.env").write_text("greeting=uploaded\n")
    (update / "secrets" / "api-key").write_bytes(secret)
    (tmp_path / "ark.pem").write_text(booted.ark_pem)
    done = subprocess.run(
        [*CLI, "upload", booted.vm.agent_url, TOKEN, "--workload", str(update), "--golden", str(build.out / "golden.json"),
         "--dev-root", str(tmp_path / "ark.pem"), "--json"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads(done.stdout)
    assert result["secrets_installed"] == 1
    assert result["pcr23"] == get_json(f"{booted.vm.agent_url}/healthz")["pcr23"]
    assert booted.vm.wait_for_console(f"sealed secret: {hashlib.sha256(secret).hexdigest()}", 180), \
        booted.vm.console()[-3000:]
    assert secret.decode() not in booted.vm.console()


# --- reproducible ----------------------------------------------------------------------------------


def test_a_second_build_of_the_same_inputs_is_byte_identical(build: Build, tmp_path: Path) -> None:
    """Another directory, another time, the same inputs and --source-date-epoch: the same bytes."""
    done = subprocess.run(
        [*CLI, "image", "build", str(build.workload), "--out", str(tmp_path / "again"), "--platform", "sim",
         "--source-date-epoch", str(EPOCH), "--api-token-sha256", hashlib.sha256(TOKEN.encode()).hexdigest(),
         "--format", FORMATS],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in OUTPUTS:
        first, second = (hashlib.sha256((d / name).read_bytes()).hexdigest() for d in (build.out, tmp_path / "again"))
        assert first == second, name


# --- 4. negatives ----------------------------------------------------------------------------------


def _partition(report: Any, name: str) -> Any:
    return next(entry for _, entry in report.table.entries if entry.name == name)


def _extract(disk: Path, entry: Any, out: Path) -> Path:
    with disk.open("rb") as f:
        f.seek(entry.offset)
        out.write_bytes(f.read(entry.size))
    return out


def test_one_byte_flipped_in_the_root_stops_the_boot_at_verity(build: Build, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    shutil.copyfile(build.disk, disk)
    root = _partition(inspect_disk(build.disk), "root-x86-64")
    with disk.open("r+b") as f:
        f.seek(root.offset + root.size // 2)
        byte = f.read(1)
        f.seek(root.offset + root.size // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    with booted_vm(disk, tmp_path / "vm") as vm:
        assert vm.wait_for_console(VERITY_FAILED, 240), vm.console()[-3000:]
        assert vm.wait_exit(60) is not None  # powered off
        assert VERIFIED not in vm.console() and "Started cvm-agent" not in vm.console()


def test_a_changed_workload_file_and_command_line_are_named(build: Build, tmp_path: Path) -> None:
    """One disk with two changes, each named by the verifier: config/app.env (PCR23, with the item),
    and one character of the kernel command line (PCR4, PCR9 and PCR11, through the UKI)."""
    report = inspect_disk(build.disk)
    changed = tmp_path / "changed-workload"
    shutil.copytree(build.workload, changed)
    (changed / "config" / "app.env").write_text("greeting=changed\n")
    (tmp_path / "staging").mkdir()
    workload = build_workload(changed, tmp_path / "staging", source_date_epoch=EPOCH)

    uki = Uki.from_bytes(read_boot_loader(build.disk, _partition(report, "esp").offset))
    cmdline = report.cmdline.replace("console=ttyS0,115200", "console=ttyS0,115201")
    assert cmdline != report.cmdline
    stub = fetch_stub(PackageLock.read(), DEFAULT_APT_CACHE, tmp_path / "stub").read_bytes()
    new_uki = build_uki(stub, linux=uki.sections[".linux"], initrd=uki.sections[".initrd"], cmdline=cmdline,
                        osrel=uki.sections[".osrel"], uname=build.manifest["kernel"]["release"], timestamp=EPOCH)
    root = RootImage(_extract(build.disk, _partition(report, "root-x86-64"), tmp_path / "root.erofs"),
                     _extract(build.disk, _partition(report, "root-x86-64-verity"), tmp_path / "root.verity"),
                     uuid.UUID(build.manifest["disk"]["root_filesystem_uuid"]),
                     VerityTree(report.root_hash, report.salt, report.verity_uuid))
    disk = tmp_path / "changed.raw"
    assemble_disk(disk, root=root, uki=new_uki, workload=workload, source_date_epoch=EPOCH)

    with booted_vm(disk, tmp_path / "vm") as vm:
        vm.wait_for_agent(AGENT_TIMEOUT_S)
        nonce = secrets.token_hex(32)
        evidence = get_json(f"{vm.agent_url}/collaterals/{nonce}")
    code, verdict = _cli_verify(evidence, nonce, build.out / "golden.json", evidence["certificates"]["ark"], tmp_path)
    assert (code, verdict["ok"]) == (1, False)
    text = json.dumps(verdict)
    assert verdict["reason"] == "policy.violations", text
    assert "config/app.env" in text
    mismatched = {v["field"] for v in verdict["violations"] if v["reason"] == "policy.pcr_mismatch"}
    assert {"pcrs.4", "pcrs.9", "pcrs.11", "pcrs.23"} <= mismatched, text
