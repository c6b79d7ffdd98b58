"""``cvm-cli verify``: the exact command shapes, verdicts on every real vector, exit codes, no tracebacks."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

from offchain.abi.binding import onchain_extra_data
from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.cli.verify import verify
from offchain.errors import Reason
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.trust.certs import to_pem
from tests.support.evidence import DEV_NOW, EVENTS, NONCE, dev_chain, make_parts
from tests.support.http_routes import serving
from tests.support.snp_vectors import (
    AZURE_HCL_VECTORS,
    AZURE_REPORT_ONLY_VECTOR,
    NEGATIVE_VECTOR,
    SNP_REPORT_VECTORS,
    Vector,
    load_vector,
)

ROOT = Path(__file__).resolve().parents[4]


def run(*args: str | Path) -> Result:
    return CliRunner(mix_stderr=False).invoke(verify, [str(a) for a in args], catch_exceptions=False)


def run_json(*args: str | Path) -> tuple[int, dict[str, Any]]:
    result = run(*args, "--json")
    return result.exit_code, json.loads(result.stdout)


def _snp_args(v: Vector) -> list[str | Path]:
    return [
        "snp", "--report", v.file("report.bin"), "--vcek", v.leaf_file, "--ask", v.intermediate_file,
        "--ark", v.file("ark.pem"), "--at", v.now.isoformat(),
    ]


def _check_fields(out: dict[str, Any], v: Vector) -> None:
    exp = v.expected["report"]
    report = out["report"]
    assert report["version"] == exp["version"] and report["vmpl"] == exp["vmpl"]
    assert report["policy"] == exp["policy"]
    assert report["measurement"] == exp["measurement"] and report["report_data"] == exp["report_data"]
    assert report["chip_id"] == exp["chip_id"]
    assert out["product"] == Product.from_name(v.expected["ark_cn"]).value
    assert out["signer"] == ("vcek" if exp["signing_key"] == 0 else "vlek")


@pytest.mark.parametrize("name", SNP_REPORT_VECTORS + (AZURE_REPORT_ONLY_VECTOR,))
def test_verify_snp_accepts_every_real_report(vectors: Path, name: str) -> None:
    v = load_vector(vectors, name)
    code, out = run_json(*_snp_args(v))
    assert (code, out["ok"], out["reason"]) == (0, True, None)
    _check_fields(out, v)
    assert out["report"]["reported_tcb"] == v.expected["report"]["reported_tcb"]
    assert out["fresh"] is False  # a bare report may be of any age, and the verdict says so


def test_a_bare_report_says_it_proves_no_freshness(vectors: Path, tmp_path: Path) -> None:
    v = load_vector(vectors, SNP_REPORT_VECTORS[0])
    human = run(*_snp_args(v))
    assert human.exit_code == 0 and "freshness    none: a bare report proves no freshness" in human.stdout
    expected = v.expected
    product = Product.from_name(expected["ark_cn"])
    signer = SignerKind.VCEK if expected["report"]["signing_key"] == 0 else SignerKind.VLEK
    report = SnpReport.from_bytes(v.file("report.bin").read_bytes())
    golden = GoldenMeasurement.from_report(report, product, signer, Binding.DIRECT, allow_debug=report.guest_policy.debug)
    assert golden.require_quote  # made from a running CVM's report: it can always quote
    (tmp_path / "golden.json").write_text(golden.dumps())
    code, out = run_json(*_snp_args(v), "--golden", tmp_path / "golden.json", "--allow-debug-golden")
    assert (code, out["reason"]) == (1, Reason.POLICY_QUOTE_REQUIRED.value)
    assert out["violations"][0]["field"] == "require_quote"
    lenient = GoldenMeasurement.from_json({**golden.to_json(), "require_quote": False})
    (tmp_path / "lenient.json").write_text(lenient.dumps())
    code, out = run_json(*_snp_args(v), "--golden", tmp_path / "lenient.json", "--allow-debug-golden")
    assert (code, out["ok"], out["fresh"]) == (0, True, False)


def test_verify_snp_rejects_the_negative_vector(vectors: Path) -> None:
    v = load_vector(vectors, NEGATIVE_VECTOR)
    code, out = run_json(*_snp_args(v))
    assert (code, out["ok"], out["reason"]) == (1, False, Reason.SNP_SIGNATURE_INVALID.value)
    _check_fields(out, v)  # the chain verified: product and signer are known


@pytest.mark.parametrize("name", AZURE_HCL_VECTORS)
def test_verify_azure_accepts_every_real_hcl_report_and_quote(vectors: Path, name: str) -> None:
    v = load_vector(vectors, name)
    args = [
        "azure", "--hcl-report", v.file("hcl_report.bin"), "--vcek", v.leaf_file, "--ask", v.file("ask.pem"),
        "--ark", v.file("ark.pem"), "--at", v.now.isoformat(),
    ]
    code, out = run_json(*args)
    assert (code, out["ok"], out["binding"]) == (0, True, "azure")
    _check_fields(out, v)
    quote = [
        "--quote", v.file("tpm_quote_attest.bin"), "--quote-sig", v.file("tpm_quote_sig.bin"),
        "--pcrs", v.file("tpm_pcrs_sha256.json"), "--nonce", v.file("tpm_nonce.bin").read_bytes().hex(),
    ]
    assert out["fresh"] is False
    code, out = run_json(*args, *quote)
    assert (code, out["ok"], out["fresh"]) == (0, True, True)
    assert out["quote"]["pcrs"] == list(range(24))
    # Negative twins: another nonce, a PCR off by one bit.
    code, out = run_json(*args, *quote[:-1], "00" + quote[-1])
    assert (code, out["reason"]) == (1, Reason.TPM_QUOTE_NONCE_MISMATCH.value)


def test_verify_azure_pcr_off_by_one_bit(vectors: Path, tmp_path: Path) -> None:
    v = load_vector(vectors, AZURE_HCL_VECTORS[0])
    pcrs = json.loads(v.file("tpm_pcrs_sha256.json").read_text())
    pcrs["10"] = f"{int(pcrs['10'], 16) ^ 1:064x}"
    (tmp_path / "pcrs.json").write_text(json.dumps(pcrs))
    code, out = run_json(
        "azure", "--hcl-report", v.file("hcl_report.bin"), "--vcek", v.leaf_file, "--ask", v.file("ask.pem"),
        "--ark", v.file("ark.pem"), "--at", v.now.isoformat(), "--quote", v.file("tpm_quote_attest.bin"),
        "--quote-sig", v.file("tpm_quote_sig.bin"), "--pcrs", tmp_path / "pcrs.json",
        "--nonce", v.file("tpm_nonce.bin").read_bytes().hex(),
    )
    assert (code, out["reason"]) == (1, Reason.TPM_QUOTE_PCR_DIGEST_MISMATCH.value)


def test_verify_snp_negative_twins(vectors: Path) -> None:
    v = load_vector(vectors, "snp/milan-vlek-v3-vmpl1-trustee")
    args = _snp_args(v)
    at = args.index("--at") + 1
    expired = list(args)
    expired[at] = (v.not_after + dt.timedelta(seconds=1)).isoformat()
    assert run_json(*expired)[1]["reason"] == Reason.CHAIN_EXPIRED.value
    genoa = vectors / "amd-roots/genoa"
    other_product = [*args[:6], genoa / "asvk.pem", "--ark", genoa / "ark.pem", *args[9:]]
    assert run_json(*other_product)[1]["reason"] == Reason.CHAIN_PRODUCT_MISMATCH.value
    other_chip = [*args[:4], vectors / "snp/milan-vlek-v3-aws-constellation/vlek.pem", *args[5:]]
    code, out = run_json(*other_chip)
    assert code == 1 and out["reason"] in (Reason.SNP_SIGNATURE_INVALID.value, Reason.SNP_TCB_MISMATCH.value)


@pytest.mark.parametrize(
    ("swap", "option", "role"),
    [({"--ask": "ark.pem", "--ark": "ask.pem"}, "--ask", "ark"),
     ({"--vcek": "ark.pem"}, "--vcek", "ark"),
     ({"--ark": "vcek.der"}, "--ark", "vcek")],
    ids=["ask-and-ark-swapped", "root-as-leaf", "leaf-as-root"],
)
def test_an_option_holding_the_wrong_certificate_is_refused(vectors: Path, swap: dict[str, str], option: str,
                                                            role: str) -> None:
    """Issue 14, defect 11: the certificates are no longer sorted by content behind the user's back."""
    v = load_vector(vectors, "snp/genoa-vcek-v5-oak")
    args = _snp_args(v)
    for name, file in swap.items():
        args[args.index(name) + 1] = v.file(file)
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"[{Reason.INPUT_INVALID.value}] {option} ") and "swapped" in result.stderr
    assert f"holds the {role.upper()} certificate" in result.stderr


def test_a_truncated_certificate_is_named_in_plain_words(vectors: Path, tmp_path: Path) -> None:
    v = load_vector(vectors, "snp/genoa-vcek-v5-oak")
    der = v.file("vcek.der").read_bytes()
    (tmp_path / "vcek.der").write_bytes(der[: len(der) // 2])
    args = _snp_args(v)
    args[args.index("--vcek") + 1] = tmp_path / "vcek.der"
    code, out = run_json(*args)
    assert code != 0 and out["reason"] == Reason.CERT_MALFORMED.value  # the exit code is defect 8's
    assert f"truncated: the DER certificate declares {len(der)} bytes, the input has {len(der) // 2}" in out["detail"]
    assert "ParseError {" not in out["detail"]


def test_missing_certificates_are_incomplete(vectors: Path) -> None:
    v = load_vector(vectors, "snp/genoa-vcek-v5-oak")
    code, out = run_json("snp", "--report", v.file("report.bin"), "--at", v.now.isoformat())
    assert (code, out["reason"]) == (1, Reason.CHAIN_INCOMPLETE.value)
    assert out["report"]["measurement"] == v.expected["report"]["measurement"]
    # A VCEK alone is enough: the shipped AMD ASK and ARK complete its chain (issue 14).
    code, out = run_json("snp", "--report", v.file("report.bin"), "--vcek", v.leaf_file, "--at", v.now.isoformat())
    assert (code, out["ok"], out["product"]) == (0, True, "genoa")
    # Not with a given intermediate the shipped chain disagrees with: that is the caller's chain to complete.
    code, out = run_json("snp", "--report", v.file("report.bin"), "--vcek", v.leaf_file, "--ark",
                         vectors / "amd-roots/milan/ark.pem", "--at", v.now.isoformat())
    assert (code, out["reason"]) == (1, Reason.CHAIN_INCOMPLETE.value)


def test_human_output(vectors: Path) -> None:
    v = load_vector(vectors, "snp/turin-vcek-v5-oak")
    result = run(*_snp_args(v))
    assert result.exit_code == 0
    assert result.stdout.startswith("ACCEPTED") and "turin" in result.stdout and "fmc 0" in result.stdout
    bad = run(*_snp_args(load_vector(vectors, NEGATIVE_VECTOR)))
    assert bad.exit_code == 1 and bad.stdout == ""
    assert bad.stderr.startswith(f"[{Reason.SNP_SIGNATURE_INVALID.value}] ")


# --- dev chains: pinned only with --dev-root ------------------------------------------------------


@pytest.fixture(scope="module")
def dev_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("devamd")
    chain = dev_chain(Product.MILAN, SignerKind.VCEK)
    chain.save(directory)
    report = chain.sign(chain.report_template(measurement=bytes(48)))
    (directory / "report.bin").write_bytes(report.to_bytes())
    return directory


def test_a_self_made_chain_needs_dev_root(dev_files: Path) -> None:
    args = ["snp", "--report", dev_files / "report.bin", "--vcek", dev_files / "vcek.pem",
            "--ask", dev_files / "ask.pem", "--ark", dev_files / "ark.pem", "--at", DEV_NOW.isoformat()]
    code, out = run_json(*args)
    assert (code, out["reason"]) == (1, Reason.CHAIN_ROOT_NOT_PINNED.value)
    code, out = run_json(*args, "--dev-root", dev_files / "ark.pem")
    assert (code, out["ok"], out["product"]) == (0, True, "milan")
    human = run(*args, "--dev-root", dev_files / "ark.pem")
    assert "DEVELOPMENT ARK" in human.stdout
    # --dev-root alone also supplies the ARK.
    code, out = run_json(*args[:7], *args[9:], "--dev-root", dev_files / "ark.pem")
    assert (code, out["ok"]) == (0, True)


# --- evidence bundles -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evidence_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("evidence")
    parts = make_parts()
    (directory / "evidence.json").write_text(json.dumps(parts.to_json()))
    (directory / "ark.pem").write_text(to_pem(parts.chain.ark))
    golden = GoldenMeasurement.from_report(
        parts.report, Product.GENOA, SignerKind.VCEK, Binding.DIRECT, {23: parts.pcrs[23]}, EVENTS, 600, name="sim"
    )
    (directory / "golden.json").write_text(golden.dumps())
    strict = {**golden.to_json(), "vmpl": 2, "signers": ["vlek"]}
    (directory / "strict.json").write_text(json.dumps(strict))
    debug = {**golden.to_json(), "policy": {**golden.to_json()["policy"], "debug_allowed": True}}
    (directory / "debug-golden.json").write_text(json.dumps(debug))
    (directory / "bad-golden.json").write_text('{"version": 1}')
    return {p.stem: p for p in directory.iterdir()}


def _evidence_args(files: dict[str, Path], *extra: str | Path) -> list[str | Path]:
    return ["evidence", files["evidence"], "--nonce", NONCE.hex(), "--at", DEV_NOW.isoformat(), *extra]


def test_verify_evidence(evidence_files: dict[str, Path]) -> None:
    f = evidence_files
    code, out = run_json(*_evidence_args(f, "--dev-root", f["ark"], "--golden", f["golden"]))
    assert (code, out["ok"], out["product"], out["signer"], out["binding"]) == (0, True, "genoa", "vcek", "direct")
    assert out["fresh"] is True
    golden = GoldenMeasurement.from_file(f["golden"])
    assert out["golden_id"] == "0x" + golden.canonical_id().hex()
    human = run(*_evidence_args(f, "--dev-root", f["ark"], "--golden", f["golden"]))
    assert human.stdout.startswith("ACCEPTED") and "3 items replay to PCR23" in human.stdout


def test_verify_evidence_negative_twins(evidence_files: dict[str, Path]) -> None:
    f = evidence_files
    code, out = run_json(*_evidence_args(f))
    assert (code, out["reason"]) == (1, Reason.CHAIN_ROOT_NOT_PINNED.value)
    code, out = run_json("evidence", f["evidence"], "--nonce", "00" + NONCE.hex(), "--at", DEV_NOW.isoformat(),
                         "--dev-root", f["ark"])
    assert (code, out["reason"], out["product"]) == (1, Reason.TPM_QUOTE_NONCE_MISMATCH.value, "genoa")
    code, out = run_json(*_evidence_args(f, "--dev-root", f["ark"], "--golden", f["strict"]))
    assert (code, out["reason"]) == (1, Reason.POLICY_VIOLATIONS.value)
    assert [v["reason"] for v in out["violations"]] == [
        Reason.POLICY_VMPL_MISMATCH.value, Reason.POLICY_SIGNER_NOT_ALLOWED.value
    ]
    human = run(*_evidence_args(f, "--dev-root", f["ark"], "--golden", f["strict"]))
    assert human.exit_code == 1 and human.stderr.count("\n  [policy.") == 2


CHAIN_ID, REGISTRY, CVM, BLOCK_HASH = 31337, "0x" + "12" * 20, "0x" + "cd" * 20, bytes(range(32))


@pytest.fixture(scope="module")
def onchain_evidence(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("onchain-evidence")
    parts = make_parts(extra_data=onchain_extra_data(CHAIN_ID, REGISTRY, CVM, BLOCK_HASH))
    doc = parts.to_json()
    doc["cvm_address"] = CVM
    doc["nonce"] = {"form": "onchain", "chain_id": CHAIN_ID, "registry": REGISTRY, "block_number": 7,
                    "block_hash": "0x" + BLOCK_HASH.hex(), "golden_id": "0x" + "ab" * 32, "consent": "0x" + "01" * 65}
    (directory / "evidence.json").write_text(json.dumps(doc))
    (directory / "ark.pem").write_text(to_pem(parts.chain.ark))
    return {p.stem: p for p in directory.iterdir()}


def test_the_caller_names_the_nonce_form(onchain_evidence: dict[str, Path]) -> None:
    f = onchain_evidence
    base = ["evidence", f["evidence"], "--at", DEV_NOW.isoformat(), "--dev-root", f["ark"]]
    onchain = ["--chain-id", str(CHAIN_ID), "--registry", REGISTRY, "--block-hash", BLOCK_HASH.hex()]
    code, out = run_json(*base, *onchain)
    assert (code, out["ok"]) == (0, True)
    # The same bundle against an off-chain challenge: its nonce is not read as a block hash.
    code, out = run_json(*base, "--nonce", BLOCK_HASH.hex())
    assert (code, out["reason"]) == (1, Reason.EVIDENCE_NONCE_FORM_MISMATCH.value)
    # The verifier's registry, not the bundle's, is what the quote must bind.
    code, out = run_json(*base, *onchain[:2], "--registry", "0x" + "99" * 20, *onchain[4:])
    assert (code, out["reason"]) == (1, Reason.TPM_QUOTE_NONCE_MISMATCH.value)
    # Half an on-chain form, both forms, or none: usage errors naming what to give.
    for args, words in ((onchain[:4], "--block-hash"), ([*onchain, "--nonce", "00"], "one form"), ([], "--nonce HEX")):
        code, out = run_json(*base, *args)
        assert (code, out["reason"]) == (2, Reason.INPUT_INVALID.value) and words in out["detail"], out


def test_a_golden_that_allows_debug_needs_the_second_flag(evidence_files: dict[str, Path]) -> None:
    f = evidence_files
    code, out = run_json(*_evidence_args(f, "--dev-root", f["ark"], "--golden", f["debug-golden"]))
    assert (code, out["ok"], out["reason"]) == (1, False, Reason.POLICY_GOLDEN_ALLOWS_DEBUG.value)
    assert out["violations"] == [
        {"reason": "policy.golden_allows_debug", "field": "policy.debug_allowed", "expected": False, "actual": True}
    ]
    allowed = _evidence_args(f, "--dev-root", f["ark"], "--golden", f["debug-golden"], "--allow-debug-golden")
    code, out = run_json(*allowed)
    assert (code, out["ok"], out["golden_allows_debug"]) == (0, True, True)
    assert "ALLOWS DEBUG GUESTS" in run(*allowed).stdout
    code, out = run_json(*_evidence_args(f, "--dev-root", f["ark"], "--golden", f["golden"], "--allow-debug-golden"))
    assert (code, out["ok"]) == (0, True) and "golden_allows_debug" not in out  # the flag alone changes nothing


def test_verify_snp_refuses_a_golden_made_from_the_real_debug_report(vectors: Path, tmp_path: Path) -> None:
    v = load_vector(vectors, "snp/milan-vcek-v2-gosevguest")
    golden = GoldenMeasurement.from_report(v.report, Product.MILAN, SignerKind.VCEK, Binding.DIRECT, allow_debug=True,
                                           require_quote=False)
    (tmp_path / "golden.json").write_text(golden.dumps())
    code, out = run_json(*_snp_args(v), "--golden", tmp_path / "golden.json")
    assert (code, out["reason"]) == (1, Reason.POLICY_GOLDEN_ALLOWS_DEBUG.value)
    code, out = run_json(*_snp_args(v), "--golden", tmp_path / "golden.json", "--allow-debug-golden")
    assert (code, out["ok"]) == (0, True)
    honest = GoldenMeasurement.from_json({**golden.to_json(), "policy": {**golden.to_json()["policy"], "debug_allowed": False}})
    (tmp_path / "honest.json").write_text(honest.dumps())
    code, out = run_json(*_snp_args(v), "--golden", tmp_path / "honest.json", "--allow-debug-golden")
    assert (code, out["reason"]) == (1, Reason.POLICY_DEBUG_ALLOWED.value)  # the guest is still a debug guest


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--golden", "bad-golden"], Reason.GOLDEN_MALFORMED),
        (["--at", "yesterday"], Reason.INPUT_INVALID),
        (["--dev-root", "evidence"], Reason.INPUT_INVALID),
        (["--dev-root", "missing"], Reason.INPUT_UNREADABLE),
        (["--cache-dir", "."], Reason.INPUT_INVALID),
    ],
    ids=["bad-golden", "bad-time", "dev-root-not-a-cert", "dev-root-missing", "cache-dir-without-kds"],
)
def test_usage_and_unreadable_inputs_exit_2(evidence_files: dict[str, Path], args: list[str], reason: Reason) -> None:
    f = evidence_files
    option, value = args
    if option != "--at":  # file and directory options name files of the fixture directory
        value = str(f[value]) if value in f else str(f["evidence"].parent / value)
    resolved = [option, value]
    code, out = run_json(*_evidence_args(f, *resolved))
    assert (code, out["ok"], out["reason"]) == (2, False, reason.value)


def test_bad_nonce_hex_exits_2(evidence_files: dict[str, Path]) -> None:
    code, out = run_json("evidence", evidence_files["evidence"], "--nonce", "xyz")
    assert (code, out["reason"]) == (2, Reason.INPUT_INVALID.value)


def test_quote_options_go_together(vectors: Path) -> None:
    v = load_vector(vectors, AZURE_HCL_VECTORS[0])
    code, out = run_json("azure", "--hcl-report", v.file("hcl_report.bin"), "--nonce", "00")
    assert (code, out["reason"]) == (2, Reason.INPUT_INVALID.value)


def test_missing_required_options_are_usage_errors() -> None:
    assert run("snp").exit_code == 2
    assert run("azure", "--vcek", "x").exit_code == 2


# --- garbage never gives a traceback ----------------------------------------------------------------

GARBAGE = {
    "empty": b"",
    "text": b"hello world\n",
    "json": b'{"version": 1, "platform": "sim"}',
    "random": bytes(range(256)) * 5,
    "almost-a-report": b"\x02\x00\x00\x00" + bytes(1180),
    "pem-junk": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
}


@pytest.mark.parametrize("garbage", list(GARBAGE), ids=list(GARBAGE))
@pytest.mark.parametrize("slot", ["report", "vcek", "ark", "hcl", "evidence", "pcrs", "quote-sig", "golden"])
def test_garbage_files_give_typed_errors(vectors: Path, tmp_path: Path, slot: str, garbage: str) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(GARBAGE[garbage])
    v = load_vector(vectors, AZURE_HCL_VECTORS[1])
    files = {
        "report": v.file("report.bin"), "vcek": v.leaf_file, "ark": v.file("ark.pem"), "hcl": v.file("hcl_report.bin"),
        "pcrs": v.file("tpm_pcrs_sha256.json"), "quote-sig": v.file("tpm_quote_sig.bin"),
    }
    files[slot] = junk
    if slot == "evidence":
        args: list[str | Path] = ["evidence", junk, "--nonce", "00"]
    elif slot in ("report", "golden"):
        args = ["snp", "--report", files["report"], "--vcek", files["vcek"], "--ask", v.file("ask.pem"),
                "--ark", files["ark"], "--at", v.now.isoformat()]
        if slot == "golden":
            args += ["--golden", junk]
    else:
        args = ["azure", "--hcl-report", files["hcl"], "--vcek", files["vcek"], "--ask", v.file("ask.pem"),
                "--ark", files["ark"], "--at", v.now.isoformat(), "--quote", v.file("tpm_quote_attest.bin"),
                "--quote-sig", files["quote-sig"], "--pcrs", files["pcrs"],
                "--nonce", v.file("tpm_nonce.bin").read_bytes().hex()]
    result = CliRunner(mix_stderr=False).invoke(verify, [str(a) for a in args] + ["--json"])
    assert isinstance(result.exception, SystemExit), result.exception  # no other exception escapes
    assert result.exit_code in (1, 2)
    out = json.loads(result.stdout)
    assert out["ok"] is False and Reason(out["reason"])


# --- revocation: --crl FILE ------------------------------------------------------------------------


def _crl_file(directory: Path, name: str, *revoked: int) -> Path:
    dev = dev_chain()  # the chain of evidence_files (Genoa, VCEK)
    crl = dev.issue_crl(revoked=revoked, this_update=DEV_NOW - dt.timedelta(days=1), next_update=DEV_NOW + dt.timedelta(days=6))
    path = directory / name
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def test_verify_evidence_against_a_crl(evidence_files: dict[str, Path], tmp_path: Path) -> None:
    f = evidence_files
    good = _crl_file(tmp_path, "current.crl")
    code, out = run_json(*_evidence_args(f, "--dev-root", f["ark"], "--crl", good))
    assert (code, out["ok"], out["revocation"]) == (0, True, "checked")
    human = run(*_evidence_args(f, "--dev-root", f["ark"], "--crl", good))
    assert "revocation   neither" in human.stdout
    revoked = _crl_file(tmp_path, "revoked.crl", dev_chain().ask.serial_number)
    code, out = run_json(*_evidence_args(f, "--dev-root", f["ark"], "--crl", revoked))
    assert (code, out["ok"], out["reason"], out["product"]) == (1, False, Reason.CHAIN_REVOKED.value, "genoa")
    code, out = run_json(*_evidence_args(f, "--dev-root", f["ark"], "--crl", good, "--at", "2025-07-01T00:00:00Z"))
    assert (code, out["reason"]) == (1, Reason.CRL_STALE.value)


def test_verify_snp_against_a_crl(dev_files: Path, tmp_path: Path) -> None:
    milan = dev_chain(Product.MILAN)  # the chain of dev_files
    crl = milan.issue_crl(revoked=(milan.ask.serial_number,), this_update=DEV_NOW, next_update=DEV_NOW + dt.timedelta(days=1))
    (tmp_path / "milan.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    args = ["snp", "--report", dev_files / "report.bin", "--vcek", dev_files / "vcek.pem", "--ask", dev_files / "ask.pem",
            "--dev-root", dev_files / "ark.pem", "--at", DEV_NOW.isoformat()]
    code, out = run_json(*args, "--crl", tmp_path / "milan.crl")
    assert (code, out["reason"], out["product"]) == (1, Reason.CHAIN_REVOKED.value, "milan")
    # a CRL of another product line's ARK vouches for nothing here
    code, out = run_json(*args, "--crl", _crl_file(tmp_path, "genoa.crl"))
    assert (code, out["reason"]) == (1, Reason.CRL_INVALID.value)


def test_crl_usage_errors_exit_2(evidence_files: dict[str, Path], tmp_path: Path) -> None:
    f = evidence_files
    (tmp_path / "garbage.crl").write_bytes(b"not a CRL")
    code, out = run_json(*_evidence_args(f, "--dev-root", f["ark"], "--crl", tmp_path / "garbage.crl"))
    assert (code, out["reason"]) == (2, Reason.CRL_MALFORMED.value)
    code, out = run_json(*_evidence_args(f, "--dev-root", f["ark"], "--crl", tmp_path / "missing.crl"))
    assert (code, out["reason"]) == (2, Reason.INPUT_UNREADABLE.value)
    code, out = run_json(*_evidence_args(f, "--crl", _crl_file(tmp_path, "c.crl"), "--kds-crl"))
    assert (code, out["reason"]) == (2, Reason.INPUT_INVALID.value)


# --- AMD KDS, on request only, through a local server standing in for kdsintf.amd.com ---------------


@pytest.fixture
def kds_server(vectors: Path) -> Iterator[tuple[str, list[str]]]:
    v = load_vector(vectors, "snp/milan-vcek-v5-gcp-teekit")
    report = v.report
    tcb = report.tcb("reported", Product.MILAN)
    query = f"?blSPL={tcb.bootloader:02d}&teeSPL={tcb.tee:02d}&snpSPL={tcb.snp:02d}&ucodeSPL={tcb.microcode:02d}"
    routes = {
        "/vcek/v1/Milan/cert_chain": (vectors / "amd-roots/milan/cert_chain_vcek.pem").read_bytes(),
        f"/vcek/v1/Milan/{report.chip_id.hex()}{query}": v.file("vcek.pem").read_bytes(),
        # a CRL AMD did not sign (under a development ARK-Milan): what a tampering mirror could serve
        "/vcek/v1/Milan/crl": dev_chain(Product.MILAN).issue_crl(
            this_update=v.now - dt.timedelta(days=1), next_update=v.now + dt.timedelta(days=1)
        ).public_bytes(serialization.Encoding.DER),
    }
    with serving(routes) as served:
        yield served


def test_kds_only_with_the_flag(vectors: Path, kds_server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, seen = kds_server
    v = load_vector(vectors, "snp/milan-vcek-v5-gcp-teekit")
    base = ["snp", "--report", v.file("report.bin"), "--at", v.now.isoformat(), "--kds-url", url]
    code, out = run_json(*base)
    assert (code, out["reason"], seen) == (1, Reason.CHAIN_INCOMPLETE.value, [])
    code, out = run_json(*base, "--kds", "--cache-dir", tmp_path / "cache")
    assert (code, out["ok"], len(seen)) == (0, True, 1)  # the VCEK; its ASK and ARK are the shipped ones
    code, out = run_json(*base, "--kds", "--cache-dir", tmp_path / "cache")
    assert (code, out["ok"], len(seen)) == (0, True, 1)  # the second run is served from the cache


def test_kds_crl_is_fetched_and_must_be_amds(vectors: Path, kds_server: tuple[str, list[str]], tmp_path: Path) -> None:
    url, seen = kds_server
    v = load_vector(vectors, "snp/milan-vcek-v5-gcp-teekit")
    code, out = run_json(*_snp_args(v), "--kds-url", url, "--kds-crl")
    assert (code, out["reason"], out["product"]) == (1, Reason.CRL_INVALID.value, "milan")
    assert seen == ["/vcek/v1/Milan/crl"]  # certificates came from the files; only the CRL from KDS


# --- the installed entry point ---------------------------------------------------------------------


def test_the_cvm_cli_entry_point(vectors: Path, tmp_path: Path) -> None:
    v = load_vector(vectors, "snp/milan-vcek-v2-virtee")
    cli = Path(sys.executable).parent / "cvm-cli"
    ok = subprocess.run([cli, "verify", *map(str, _snp_args(v)), "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 7)
    bad = subprocess.run(
        [cli, "verify", "snp", "--report", str(junk), "--vcek", str(v.leaf_file)], capture_output=True, text=True,
        timeout=120, cwd=ROOT,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith(f"[{Reason.SNP_REPORT_LENGTH.value}]")
