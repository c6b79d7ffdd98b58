"""``cvm-cli onchain verify``: the contract's verdict through the CLI equals ``cvm-cli verify``'s, on an embedded
anvil (started on a free port and stopped by the command) and on a deployed registry (``--rpc``/``--registry``).

Certificate checks depend on time, so every vector runs with ``--at`` inside its leaf's validity window
(tests.support.snp_vectors: notBefore + 1 day): several real VLEKs have expired since.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from web3 import Web3

from offchain.abi.keccak import keccak256

from offchain.abi.binding import offchain_extra_data
from offchain.cli.verify import verify as offchain_verify
from offchain.trust.certs import to_pem
from offchain.trust.roots import AMD_ARK_SPKI_SHA256
from onchain.cli import onchain
from onchain.client import CertKind, RegistryClient
from tests.support.registry import SimCvm, deploy_registry, trust_dev_chain
from tests.support.snp_vectors import NEGATIVE_VECTOR, Vector, load_vector

pytestmark = pytest.mark.integration

#: anvil's second default account (its well-known development key): a --key source for the tests.
ANVIL_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def run(group: Any, args: list[str]) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(group, args if "--json" in args else [*args, "--json"], catch_exceptions=False)
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    assert lines, result.output
    return result.exit_code, json.loads(lines[-1])


def both(onchain_args: list[str], offchain_args: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    on_code, on = run(onchain, ["verify", *onchain_args])
    off_code, off = run(offchain_verify, [*offchain_args, "--json"])
    assert on_code == off_code, (on, off)
    assert on["ok"] == off["ok"] and on["reason"] == off["reason"], (on, off)
    if on["ok"]:
        assert on["fresh"] == off["fresh"], (on, off)  # a bare report proves no freshness, in both
    return on, off


def snp_args(vector: Vector) -> list[str]:
    certs = [("--vcek", vector.leaf_file), ("--ask", vector.intermediate_file), ("--ark", vector.file("ark.pem"))]
    args = ["--report", str(vector.file("report.bin"))]
    for option, path in certs:
        args += [option, str(path)]
    return [*args, "--at", vector.now.isoformat()]


@pytest.mark.vectors
@pytest.mark.parametrize("name", ["snp/milan-vcek-v2-virtee", "snp/milan-vlek-v3-vmpl1-trustee", NEGATIVE_VECTOR])
def test_embedded_snp_verdict_equals_offchain(vectors: Path, name: str) -> None:
    vector = load_vector(vectors, name)
    on, _ = both(["snp", *snp_args(vector), "--json"], ["snp", *snp_args(vector)])  # --json accepted, as off chain
    assert on["ok"] is (name != NEGATIVE_VECTOR)
    assert on["fresh"] is False
    assert on["gas"] is None if not on["ok"] else on["gas"] > 0
    if not on["ok"]:
        assert on["reason"] == "snp.signature.invalid"


def azure_args(vector: Vector, tmp_path: Path, twin: str) -> list[str]:
    d = vector.directory
    args = [
        "azure",
        "--hcl-report", str(d / "hcl_report.bin"),
        "--vcek", str(d / "vcek.der"),
        "--ask", str(d / "ask.pem"),
        "--ark", str(d / "ark.pem"),
        "--at", vector.now.isoformat(),
    ]  # fmt: skip
    if twin == "no-quote":  # the HCL report alone: verifyReport with the runtime data
        return args
    nonce = (d / "tpm_nonce.bin").read_bytes()
    pcrs_file = d / "tpm_pcrs_sha256.json"
    if twin == "nonce":
        nonce = bytes([nonce[0] ^ 1]) + nonce[1:]
    if twin == "pcr":
        pcrs = json.loads(pcrs_file.read_text())
        pcrs["7"] = ("0" if pcrs["7"][0] != "0" else "1") + pcrs["7"][1:]
        pcrs_file = tmp_path / "pcrs.json"
        pcrs_file.write_text(json.dumps(pcrs))
    return [
        *args,
        "--quote", str(d / "tpm_quote_attest.bin"),
        "--quote-sig", str(d / "tpm_quote_sig.bin"),
        "--pcrs", str(pcrs_file),
        "--nonce", nonce.hex(),
    ]  # fmt: skip


@pytest.mark.vectors
@pytest.mark.parametrize("twin", ["as-is", "nonce", "pcr", "no-quote"])
def test_embedded_azure_verdict_equals_offchain(vectors: Path, tmp_path: Path, twin: str) -> None:
    vector = load_vector(vectors, "azure/milan-v3-hcl-trustee-ev2")
    args = azure_args(vector, tmp_path, twin)
    on, _ = both(args, args)
    expected = {"nonce": "tpm.quote.nonce_mismatch", "pcr": "tpm.quote.pcr_digest_mismatch"}
    assert on["reason"] == expected.get(twin)
    assert on["gas"] > 0 if on["ok"] else on["gas"] is None


@pytest.fixture(scope="module")
def amd_registry(w3: Web3, owner: str) -> RegistryClient:
    registry = deploy_registry(w3, owner)
    for product, key_hash in AMD_ARK_SPKI_SHA256.items():
        registry.pin_root(product, key_hash)
    return registry


@pytest.mark.vectors
def test_deployed_registry_mode(vectors: Path, anvil: Any, w3: Web3, amd_registry: RegistryClient, owner: str) -> None:
    vector = load_vector(vectors, "snp/genoa-vcek-v5-oak")
    args = [a for a in snp_args(vector) if a not in ("--at", vector.now.isoformat())]
    remote = ["--rpc", anvil.url, "--registry", amd_registry.address]
    leaf_id = keccak256(vector.leaf_file.read_bytes() if vector.leaf_file.suffix == ".der"
                        else x509.load_pem_x509_certificate(vector.leaf_file.read_bytes()).public_bytes(Encoding.DER))
    # The registry lacks the chain and no sender is named: a throwaway fork registers it, nothing is sent.
    block = w3.eth.block_number
    code, out = run(onchain, ["verify", "snp", *args, *remote])
    assert (code, out["ok"], out["chain"], out["certificates"]) == (0, True, "fork", "registered-on-fork")
    assert (out["product"], out["signer"]) == ("genoa", "vcek") and out["gas"] > 0
    assert w3.eth.block_number == block and amd_registry.certificate_of(leaf_id).kind is CertKind.NONE
    # A sender registers on the chain itself only when confirmed: refused without a terminal or --yes.
    code, out = run(onchain, ["verify", "snp", *args, *remote, "--from", owner])
    assert (code, out["reason"]) == (2, "input.invalid") and "--yes" in out["detail"]
    assert amd_registry.certificate_of(leaf_id).kind is CertKind.NONE
    code, out = run(onchain, ["verify", "snp", *args, *remote, "--from", owner, "--yes"])
    assert (code, out["ok"], out["chain"], out["certificates"]) == (0, True, "rpc", "registered")
    assert amd_registry.certificate_of(leaf_id).kind is CertKind.VCEK
    # Now cached: a pure call on the chain at --rpc.
    block = w3.eth.block_number
    code, out = run(onchain, ["verify", "snp", *args, *remote])
    assert (code, out["ok"], out["chain"], out["certificates"]) == (0, True, "rpc", "cached")
    assert w3.eth.block_number == block


@pytest.mark.vectors
def test_deployed_registry_with_a_key_and_the_human_output(vectors: Path, anvil: Any, w3: Web3, owner: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--key SOURCE like the other chain commands; without --json a summary, and a loud warning before the write."""
    registry = deploy_registry(w3, owner)
    for product, key_hash in AMD_ARK_SPKI_SHA256.items():
        registry.pin_root(product, key_hash)
    vector = load_vector(vectors, "snp/milan-vcek-v2-virtee")
    args = [a for a in snp_args(vector) if a not in ("--at", vector.now.isoformat())]
    monkeypatch.setenv("CVM_TEST_KEY", ANVIL_KEY_1)
    result = CliRunner(mix_stderr=False).invoke(onchain, ["verify", "snp", *args, "--rpc", anvil.url, "--registry",
                                                          registry.address, "--key", "env:CVM_TEST_KEY", "--yes"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("WARNING: the registry at") and "costs gas" in result.stderr
    assert result.stdout.startswith("ACCEPTED by the registry at --rpc: genuine AMD SEV-SNP evidence (milan, VCEK)")


def _bundle(cvm: SimCvm, nonce: bytes) -> dict[str, Any]:
    quote = cvm.quote(offchain_extra_data(nonce))
    selection = quote.parsed.pcr_selections[0].pcrs
    return {
        "version": 1,
        "platform": "sim",
        "binding": "direct",
        "snp_report": cvm.report.to_bytes().hex(),
        "certificates": {"vcek": to_pem(cvm.chain.leaf), "ask": to_pem(cvm.chain.ask), "ark": to_pem(cvm.chain.ark)},
        "ak_public": cvm.ak.public_bytes.hex(),
        "quote": {"attest": quote.attest.hex(), "signature": quote.signature.hex()},
        "pcrs": {"sha256": {str(i): v.hex() for i, v in zip(selection, quote.pcrs, strict=True)}},
        "nonce": {"form": "offchain", "value": nonce.hex()},
    }


@pytest.mark.parametrize("twin", ["as-is", "other-nonce", "no-dev-root"])
def test_evidence_bundle_verdict_equals_offchain(tmp_path: Path, cvm_rsa: SimCvm, twin: str) -> None:
    nonce = b"cvm-attest cli test"
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(_bundle(cvm_rsa, nonce)))
    ark = tmp_path / "ark.pem"
    ark.write_text(to_pem(cvm_rsa.chain.ark))
    given = b"another nonce" if twin == "other-nonce" else nonce
    args = ["evidence", str(path), "--nonce", given.hex()]
    if twin != "no-dev-root":
        args += ["--dev-root", str(ark)]
    on, _ = both(args, args)
    expected = {"as-is": None, "other-nonce": "tpm.quote.nonce_mismatch", "no-dev-root": "snp.chain.root_not_pinned"}
    assert on["reason"] == expected[twin]


def test_golden_is_published_and_checked(tmp_path: Path, cvm_rsa: SimCvm) -> None:
    nonce = b"golden"
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(_bundle(cvm_rsa, nonce)))
    ark = tmp_path / "ark.pem"
    ark.write_text(to_pem(cvm_rsa.chain.ark))
    golden = tmp_path / "golden.json"
    golden.write_text(cvm_rsa.golden().dumps())
    args = ["evidence", str(path), "--nonce", nonce.hex(), "--dev-root", str(ark), "--golden", str(golden)]
    on, off = both(args, args)
    assert on["ok"] and on["golden_id"] == off["golden_id"] == "0x" + cvm_rsa.golden().canonical_id().hex()
    wrong = cvm_rsa.golden(pinned=(0, 1, 23))
    pinned = dict(wrong.pinned_pcrs()) | {1: b"\x00" * 32}
    golden.write_text(type(wrong).from_report(
        cvm_rsa.report, cvm_rsa.chain.product, cvm_rsa.chain.signer, "direct", pcrs=pinned
    ).dumps())
    on, _ = both(args, args)
    assert on["reason"] == "policy.pcr_mismatch"


def test_usage_and_unreadable_input(tmp_path: Path) -> None:
    garbage = tmp_path / "report.bin"
    garbage.write_bytes(b"\x00" * 100)
    code, out = run(onchain, ["verify", "snp", "--report", str(garbage), "--rpc", "http://127.0.0.1:1"])
    assert (code, out["reason"]) == (2, "input.invalid")
    code, out = run(onchain, ["verify", "snp", "--report", str(tmp_path / "missing.bin")])
    assert (code, out["reason"]) == (2, "input.unreadable")
    code, out = run(onchain, ["verify", "snp", "--report", str(garbage)])
    assert (code, out["reason"]) == (2, "snp.report.length")  # malformed input: exit 2 (issue 14, defect 8)
    code, out = run(onchain, ["verify", "azure", "--hcl-report", str(garbage), "--quote", str(garbage)])
    assert (code, out["reason"]) == (2, "input.invalid")


def test_deployed_registry_with_the_dev_root_verifies_the_sim_report(w3: Web3, owner: str, cvm_rsa: SimCvm) -> None:
    """The positive twin of no-dev-root above, on a deployed registry that pins the dev root."""
    registry = deploy_registry(w3, owner)
    assert trust_dev_chain(registry, cvm_rsa.chain) == cvm_rsa.leaf_id
    verdict = registry.verify_report(cvm_rsa.report.to_bytes(), cvm_rsa.leaf_id)
    assert verdict.product == 2 and verdict.signer == 1


def test_a_golden_that_requires_a_quote_refuses_a_bare_report(tmp_path: Path, cvm_rsa: SimCvm) -> None:
    chain = cvm_rsa.chain
    files = {"report.bin": cvm_rsa.report.to_bytes(), "ark.pem": to_pem(chain.ark).encode(),
             "ask.pem": to_pem(chain.ask).encode(), "vcek.pem": to_pem(chain.leaf).encode()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    golden = cvm_rsa.golden(pinned=())
    assert golden.require_quote
    (tmp_path / "golden.json").write_text(golden.dumps())
    args = ["snp", "--report", str(tmp_path / "report.bin"), "--vcek", str(tmp_path / "vcek.pem"),
            "--ask", str(tmp_path / "ask.pem"), "--ark", str(tmp_path / "ark.pem"), "--dev-root",
            str(tmp_path / "ark.pem"), "--golden", str(tmp_path / "golden.json")]
    on, _ = both(args, args)
    assert on["reason"] == "policy.quote_required" and on["fresh"] is False
    lenient = type(golden).from_json({**golden.to_json(), "require_quote": False})
    (tmp_path / "golden.json").write_text(lenient.dumps())
    on, _ = both(args, args)
    assert on["ok"] and on["fresh"] is False
