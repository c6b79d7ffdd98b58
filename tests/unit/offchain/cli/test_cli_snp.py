"""``cvm-cli snp``: fetch from a KDS that answers recorded AMD data in KDS's URL layout (the vectors'
real certificates, served in place), verify certificate directories, decode reports, and the guest's
``snp report`` against a configfs-tsm tree laid out like the kernel's."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.snp_cli import report as snp_report_command
from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.cli.root import attach_nested, cli
from offchain.cli.snp import snp
from offchain.devamd import DevAmdChain
from offchain.errors import Reason
from offchain.trust.amd_certs import shipped_bundle, shipped_chain
from offchain.trust.certs import parse_certificates, to_pem
from offchain.cli.verify import verify
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, TrustRoots, spki_fingerprint
from offchain.verify.chain import verify_chain
from tests.support.evidence import DEV_NOW, dev_chain
from tests.support.fake_snp import FakeConfigfsTsm
from tests.support.snp_vectors import load_vector
from tests.support.http_routes import serving

VECTOR = "snp/milan-vcek-v5-gcp-teekit"


def run(args: list[str | Path], group: click.Command = snp) -> Result:
    return CliRunner(mix_stderr=False).invoke(group, [str(a) for a in args])


# --- the shipped AMD certificates -------------------------------------------------------------------


@pytest.mark.parametrize("product", list(Product), ids=[p.value for p in Product])
@pytest.mark.parametrize("signer", list(SignerKind), ids=[s.value for s in SignerKind])
def test_each_shipped_file_is_pinned_and_chains(product: Product, signer: SignerKind) -> None:
    certificates = parse_certificates(shipped_bundle(product, signer))
    intermediate, ark = shipped_chain(product, signer)
    assert certificates == [intermediate, ark]  # the KDS cert_chain order: intermediate, then ARK
    assert spki_fingerprint(ark) == AMD_ARK_SPKI_SHA256[product]
    ark.verify_directly_issued_by(ark)
    intermediate.verify_directly_issued_by(ark)


def test_the_shipped_certificates_are_amds_published_ones(vectors: Path) -> None:
    """Byte for byte the KDS cert_chain files the vectors recorded (read in place, not copied)."""
    for product in Product:
        for signer in SignerKind:
            recorded = (vectors / "amd-roots" / product.value / f"cert_chain_{signer.value}.pem").read_bytes()
            assert parse_certificates(recorded) == parse_certificates(shipped_bundle(product, signer))


def test_a_vcek_alone_verifies_offline(vectors: Path, tmp_path: Path) -> None:
    v = load_vector(vectors, VECTOR)
    result = run(["snp", "--report", v.file("report.bin"), "--vcek", v.file("vcek.pem"), "--at", v.now.isoformat(),
                  "--json"], group=verify)
    assert (result.exit_code, json.loads(result.stdout)["product"]) == (0, "milan"), result.stdout
    # Its negative twin: a development leaf is not completed with AMD's certificates.
    dev = dev_chain(Product.MILAN)
    (tmp_path / "report.bin").write_bytes(dev.sign(dev.report_template()).to_bytes())
    (tmp_path / "vcek.pem").write_text(to_pem(dev.leaf))
    alone = run(["snp", "--report", tmp_path / "report.bin", "--vcek", tmp_path / "vcek.pem", "--at",
                 DEV_NOW.isoformat(), "--json"], group=verify)
    assert (alone.exit_code, json.loads(alone.stdout)["reason"]) == (1, Reason.CHAIN_INCOMPLETE.value)


# --- fetch ----------------------------------------------------------------------------------------


@pytest.fixture()
def kds(vectors: Path) -> Iterator[tuple[str, list[str]]]:
    """A KDS that answers the recorded chains and the vector's VCEK; a CRL not signed by AMD."""
    v = load_vector(vectors, VECTOR)
    report = v.report
    tcb = report.tcb("reported", Product.MILAN)
    query = f"?blSPL={tcb.bootloader:02d}&teeSPL={tcb.tee:02d}&snpSPL={tcb.snp:02d}&ucodeSPL={tcb.microcode:02d}"
    forged = dev_chain(Product.MILAN).issue_crl(this_update=v.now - dt.timedelta(days=1),
                                                next_update=v.now + dt.timedelta(days=1))
    routes = {
        "/vcek/v1/Milan/cert_chain": (vectors / "amd-roots/milan/cert_chain_vcek.pem").read_bytes(),
        "/vlek/v1/Milan/cert_chain": (vectors / "amd-roots/milan/cert_chain_vlek.pem").read_bytes(),
        "/vcek/v1/Genoa/cert_chain": (vectors / "amd-roots/milan/cert_chain_vcek.pem").read_bytes(),  # the wrong line
        f"/vcek/v1/Milan/{report.chip_id.hex()}{query}": v.file("vcek.pem").read_bytes(),
        "/vcek/v1/Milan/crl": forged.public_bytes(serialization.Encoding.DER),
    }
    with serving(routes) as served:
        yield served


def test_fetch_ca_writes_the_pinned_chain(kds: tuple[str, list[str]], tmp_path: Path) -> None:
    url, seen = kds
    result = run(["fetch", "ca", "--product", "milan", "--out", tmp_path, "--kds-url", url, "--cache-dir",
                  tmp_path / "cache", "--json"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["written"] == [str(tmp_path / "ark.pem"), str(tmp_path / "ask.pem")]
    ask, ark = shipped_chain(Product.MILAN, SignerKind.VCEK)
    assert x509.load_pem_x509_certificate((tmp_path / "ark.pem").read_bytes()) == ark
    assert x509.load_pem_x509_certificate((tmp_path / "ask.pem").read_bytes()) == ask
    vlek = run(["fetch", "ca", "--product", "milan", "--endorser", "vlek", "--out", tmp_path / "vlek", "--kds-url", url])
    assert vlek.exit_code == 0 and (tmp_path / "vlek" / "asvk.pem").is_file()
    again = run(["fetch", "ca", "--product", "milan", "--out", tmp_path, "--kds-url", url, "--cache-dir", tmp_path / "cache"])
    assert again.exit_code == 0 and seen.count("/vcek/v1/Milan/cert_chain") == 1  # the cache answered


def test_fetch_ca_refuses_an_ark_that_is_not_the_pinned_one(kds: tuple[str, list[str]], tmp_path: Path) -> None:
    url, _ = kds
    result = run(["fetch", "ca", "--product", "genoa", "--out", tmp_path, "--kds-url", url])
    assert result.exit_code == 1 and not (tmp_path / "ark.pem").exists()


def test_fetch_vcek_for_the_reports_chip(vectors: Path, kds: tuple[str, list[str]], tmp_path: Path) -> None:
    url, _ = kds
    v = load_vector(vectors, VECTOR)
    result = run(["fetch", "vcek", "--report", v.file("report.bin"), "--out", tmp_path, "--kds-url", url])
    assert result.exit_code == 0, result.stderr
    assert x509.load_der_x509_certificate((tmp_path / "vcek.der").read_bytes()) == \
        x509.load_pem_x509_certificate(v.file("vcek.pem").read_bytes())
    # A version-2 report names no product line: the user is told which option to give.
    old = load_vector(vectors, "snp/milan-vcek-v2-virtee")
    v2 = run(["fetch", "vcek", "--report", old.file("report.bin"), "--out", tmp_path, "--kds-url", url])
    assert v2.exit_code == 2 and v2.stderr.startswith("[input.invalid]") and "--product" in v2.stderr


def test_fetch_vlek_says_where_a_vlek_comes_from() -> None:
    result = run(["fetch", "vlek"])
    assert result.exit_code == 1 and result.stderr.startswith(f"[{Reason.COLLATERAL_UNAVAILABLE.value}]")
    assert "snp fetch ca --endorser vlek" in result.stderr


def test_fetch_crl_must_be_signed_by_the_pinned_ark(kds: tuple[str, list[str]], vectors: Path, tmp_path: Path) -> None:
    url, _ = kds
    v = load_vector(vectors, VECTOR)
    result = run(["fetch", "crl", "--product", "milan", "--out", tmp_path, "--kds-url", url, "--at",
                  v.now.isoformat(), "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["reason"] == Reason.CRL_INVALID.value
    assert not (tmp_path / "crl.der").exists()


def test_kds_down_is_transient(tmp_path: Path) -> None:
    result = run(["fetch", "ca", "--product", "milan", "--out", tmp_path, "--kds-url", "http://127.0.0.1:9"])
    assert result.exit_code == 3 and result.stderr.startswith(f"[{Reason.COLLATERAL_FETCH_FAILED.value}]")


# --- verify certs ---------------------------------------------------------------------------------


def test_verify_certs_directory(vectors: Path, tmp_path: Path) -> None:
    v = load_vector(vectors, VECTOR)
    full = run(["verify", "certs", v.file("vcek.pem").parent, "--at", v.now.isoformat(), "--json"])
    assert full.exit_code == 0, full.stdout
    out = json.loads(full.stdout)
    assert (out["product"], out["signer"], [c["role"] for c in out["certificates"]]) == ("milan", "vcek",
                                                                                          ["ark", "ask", "vcek"])
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(v.file("vcek.pem"), alone / "vcek.pem")  # a copy inside the test's own tmp_path
    human = run(["verify", "certs", alone, "--at", v.now.isoformat()])
    assert human.exit_code == 0 and human.stdout.startswith("OK: milan VCEK chain") and "(shipped)" in human.stdout


def test_verify_certs_negative_twins(vectors: Path, tmp_path: Path) -> None:
    v = load_vector(vectors, VECTOR)
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    shutil.copyfile(v.file("vcek.pem"), swapped / "vcek.pem")
    (swapped / "ark.pem").write_bytes((vectors / "amd-roots/genoa/ark.pem").read_bytes())  # another line's ARK
    bad = run(["verify", "certs", swapped, "--at", v.now.isoformat(), "--json"])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["reason"].startswith("snp.chain.")
    expired = run(["verify", "certs", v.file("vcek.pem").parent, "--at", "2099-01-01", "--json"])
    assert (expired.exit_code, json.loads(expired.stdout)["reason"]) == (1, Reason.CHAIN_EXPIRED.value)
    empty = run(["verify", "certs", tmp_path / "nothing"])
    assert empty.exit_code == 2 and empty.stderr.startswith("[input.unreadable]")
    dev = dev_chain(Product.GENOA)
    devdir = tmp_path / "dev"
    devdir.mkdir()
    (devdir / "vcek.pem").write_text(to_pem(dev.leaf))
    (devdir / "ask.pem").write_text(to_pem(dev.ask))
    (devdir / "ark.pem").write_text(to_pem(dev.ark))
    refused = run(["verify", "certs", devdir, "--at", DEV_NOW.isoformat(), "--json"])
    assert json.loads(refused.stdout)["reason"] == Reason.CHAIN_ROOT_NOT_PINNED.value
    trusted = run(["verify", "certs", devdir, "--at", DEV_NOW.isoformat(), "--dev-root", devdir / "ark.pem", "--json"])
    assert trusted.exit_code == 0 and json.loads(trusted.stdout)["development_root"] is True


# --- display report -------------------------------------------------------------------------------


def test_display_report_decodes_without_judging(vectors: Path) -> None:
    v = load_vector(vectors, VECTOR)
    raw = v.file("report.bin").read_bytes()
    tampered = bytearray(raw)
    tampered[0x2A0] ^= 1  # a broken signature: display decodes it all the same
    result = CliRunner(mix_stderr=False).invoke(snp, ["display", "report", "-", "--json"], input=bytes(tampered).hex())
    assert result.exit_code == 0
    out = json.loads(result.stdout)
    expected = SnpReport.from_bytes(raw).to_json(Product.MILAN)
    assert out["verified"] is False and out["report"]["measurement"] == expected["measurement"]
    assert out["report"]["reported_tcb"] == expected["reported_tcb"] and out["report"]["product"] == "milan"
    human = run(["display", "report", v.file("report.bin")])
    assert human.exit_code == 0 and "nothing here is verified" in human.stdout
    assert f"measurement          {expected['measurement']}" in human.stdout
    short = CliRunner(mix_stderr=False).invoke(snp, ["display", "report", "-"], input=raw[:100])
    assert short.exit_code == 2 and short.stderr.startswith(f"[{Reason.SNP_REPORT_LENGTH.value}]")


# --- the guest side: snp report --------------------------------------------------------------------


@pytest.fixture(scope="module")
def guest_chain() -> DevAmdChain:
    return dev_chain(Product.GENOA)


def test_snp_report_through_configfs_tsm(guest_chain: DevAmdChain, tmp_path: Path) -> None:
    with FakeConfigfsTsm(tmp_path / "tsm", guest_chain):
        result = CliRunner(mix_stderr=False).invoke(snp_report_command, [
            "--report-data", "0x" + "ab" * 32, "--out", str(tmp_path / "report.bin"), "--certs", str(tmp_path / "certs"),
            "--tsm-root", str(tmp_path / "tsm"), "--device", str(tmp_path / "no-device"), "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["interface"] == "configfs-tsm" and out["certificates"] == ["ark", "ask", "vcek"]
    report = SnpReport.from_bytes((tmp_path / "report.bin").read_bytes())
    assert report.report_data == bytes([0xAB]) * 32 + bytes(32)
    leaf = x509.load_pem_x509_certificate((tmp_path / "certs" / "vcek.pem").read_bytes())
    assert leaf == guest_chain.leaf
    verified = verify_chain(leaf, guest_chain.ask, guest_chain.ark, roots=TrustRoots().with_dev_root(guest_chain.ark),
                            now=DEV_NOW)
    assert verified.product is Product.GENOA


def test_snp_report_refusals(guest_chain: DevAmdChain, tmp_path: Path) -> None:
    nowhere = CliRunner(mix_stderr=False).invoke(snp_report_command, [
        "--report-data", "00", "--out", str(tmp_path / "r.bin"), "--tsm-root", str(tmp_path / "no-tsm"),
        "--device", str(tmp_path / "no-device")])
    assert nowhere.exit_code == 3 and nowhere.stderr.startswith(f"[{Reason.PLATFORM_UNAVAILABLE.value}] not an SEV-SNP")
    too_long = CliRunner(mix_stderr=False).invoke(snp_report_command, ["--report-data", "00" * 65, "--out", "-"])
    assert too_long.exit_code == 2 and "REPORT_DATA holds 64" in too_long.stderr
    with FakeConfigfsTsm(tmp_path / "tsm", guest_chain, answer=lambda _inblob: b"\x00" * 1184):
        wrong = CliRunner(mix_stderr=False).invoke(snp_report_command, [
            "--report-data", "01", "--out", str(tmp_path / "r.bin"), "--tsm-root", str(tmp_path / "tsm")])
    assert wrong.exit_code == 3 and not (tmp_path / "r.bin").exists()


def test_snp_report_joins_the_snp_group_through_a_nested_entry_point() -> None:
    from importlib.metadata import EntryPoint
    group = click.Group("snp", commands=dict(snp.commands))
    found = {"snp": EntryPoint("snp", "offchain.cli.snp:snp", "cvm_attest.cli"),
             "snp.report": EntryPoint("snp.report", "agent.snp_cli:report", "cvm_attest.cli"),
             "snp.missing": EntryPoint("snp.missing", "no_such_module_here:command", "cvm_attest.cli")}
    attach_nested(group, "snp", found)
    assert group.commands["report"] is snp_report_command
    missing = CliRunner(mix_stderr=False).invoke(group, ["missing"])
    assert missing.exit_code == 2 and "needs no_such_module_here" in missing.stderr
    assert "snp.report" not in cli.list_commands(click.Context(cli))
