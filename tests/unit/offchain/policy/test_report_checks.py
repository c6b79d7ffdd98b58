"""Report checks (offchain.policy.checks): one typed violation per field, in a version-2 golden
measurement whose canonical id covers them, and as ``cvm-cli verify`` flags."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from click.testing import CliRunner

from offchain.abi.keccak import keccak256
from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.cli.verify import verify
from offchain.errors import ParseError, Reason
from offchain.policy.check import policy_violations
from offchain.policy.checks import (
    CHECKS_TYPE,
    PLATFORM_INFO_BITS,
    FirmwareMinimum,
    ReportChecks,
    report_check_violations,
)
from offchain.policy.golden import GOLDEN_CHECKS_TYPEHASH, SCHEMA_FILE, Binding, GoldenMeasurement
from tests.support.snp_vectors import load_vector

VECTOR = "snp/milan-vcek-v5-gcp-teekit"
SCHEMA = jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text()))


@pytest.fixture(scope="module")
def report(vectors: Path) -> SnpReport:
    return load_vector(vectors, VECTOR).report


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def _matching(report: SnpReport) -> ReportChecks:
    return ReportChecks(
        report_data=report.report_data, host_data=report.host_data, id_key_digest=report.id_key_digest,
        author_key_digest=report.author_key_digest, family_id=report.family_id, image_id=report.image_id,
        min_guest_svn=report.guest_svn, chip_ids=(bytes(64), report.chip_id),
        platform_info=tuple((name, bool(report.platform_info >> bit & 1)) for name, bit in PLATFORM_INFO_BITS.items()),
        min_firmware=FirmwareMinimum(report.current_major, report.current_minor, report.current_build),
    )


ROWS: dict[str, tuple[str, Reason]] = {
    "report_data": ("checks.report_data", Reason.POLICY_REPORT_DATA_MISMATCH),
    "host_data": ("checks.host_data", Reason.POLICY_HOST_DATA_MISMATCH),
    "id_key_digest": ("checks.id_key_digest", Reason.POLICY_ID_KEY_MISMATCH),
    "author_key_digest": ("checks.author_key_digest", Reason.POLICY_AUTHOR_KEY_MISMATCH),
    "family_id": ("checks.family_id", Reason.POLICY_FAMILY_ID_MISMATCH),
    "image_id": ("checks.image_id", Reason.POLICY_IMAGE_ID_MISMATCH),
    "min_guest_svn": ("checks.min_guest_svn", Reason.POLICY_GUEST_SVN_TOO_LOW),
    "chip_ids": ("checks.chip_ids", Reason.POLICY_CHIP_NOT_ALLOWED),
    "platform_info": ("checks.platform_info.smt_enabled", Reason.POLICY_PLATFORM_INFO_MISMATCH),
    "min_firmware": ("checks.min_firmware", Reason.POLICY_FIRMWARE_TOO_OLD),
}


def _broken(report: SnpReport, key: str) -> ReportChecks:
    """Checks that match ``report`` except for ``key``, which it breaks by one step."""
    good = _matching(report)
    value: Any
    if key == "min_guest_svn":
        value = report.guest_svn + 1
    elif key == "chip_ids":
        value = (_flip(report.chip_id),)
    elif key == "platform_info":
        value = (("smt_enabled", not (report.platform_info & 1)),)
    elif key == "min_firmware":
        value = FirmwareMinimum(report.current_major, report.current_minor, report.current_build + 1)
    else:
        value = _flip(getattr(report, key))
    return ReportChecks(**{**{k: getattr(good, k) for k in ROWS}, key: value})


def test_checks_that_match_pass(report: SnpReport) -> None:
    assert report_check_violations(_matching(report), report) == []


@pytest.mark.parametrize("key", list(ROWS), ids=list(ROWS))
def test_each_check_is_its_own_typed_violation(report: SnpReport, key: str) -> None:
    violations = report_check_violations(_broken(report, key), report)
    assert [(v.field, v.reason) for v in violations] == [ROWS[key]]


def _golden(report: SnpReport, checks: ReportChecks = ReportChecks()) -> GoldenMeasurement:
    base = GoldenMeasurement.from_report(report, Product.MILAN, SignerKind.VCEK, Binding.DIRECT, require_quote=False)
    return GoldenMeasurement(**{**{name: getattr(base, name) for name in (
        "measurement", "policy", "min_tcb", "vmpl", "products", "signers", "binding", "lifetime_seconds")},
        "checks": checks})


def test_a_golden_with_checks_is_version_2_with_an_id_over_its_rules_and_checks(report: SnpReport) -> None:
    plain, checked = _golden(report), _golden(report, _matching(report))
    assert (plain.version, checked.version) == (1, 2)
    assert checked.rules_hash() == plain.rules_hash() == plain.canonical_id()
    # hashStruct(CvmGoldenWithChecks(golden, checks)), which the registry computes too (test_registry_report_checks)
    assert checked.canonical_id() == keccak256(GOLDEN_CHECKS_TYPEHASH + plain.canonical_id()
                                               + checked.checks.struct_hash())
    stricter = replace(_matching(report), min_guest_svn=report.guest_svn + 1)
    assert _golden(report, stricter).canonical_id() != checked.canonical_id()
    doc = checked.to_json()
    assert SCHEMA.is_valid(doc) and SCHEMA.is_valid(plain.to_json())
    again = GoldenMeasurement.from_json(json.dumps(doc))
    assert again == checked and again.to_json() == doc
    assert policy_violations(checked, report, product=Product.MILAN, signer=SignerKind.VCEK, binding=None,
                             pcrs=None) == []
    broken = _golden(report, _broken(report, "host_data"))
    assert [v.reason for v in policy_violations(broken, report, product=Product.MILAN, signer=SignerKind.VCEK,
                                                binding=None, pcrs=None)] == [Reason.POLICY_HOST_DATA_MISMATCH]


@pytest.mark.parametrize("case", ["v1-with-checks", "v2-without", "empty-checks", "unknown-key", "short-host-data",
                                  "platform-bit-unknown", "chip-ids-empty", "firmware-without-minor"])
def test_malformed_checks(report: SnpReport, case: str) -> None:
    doc = _golden(report, _matching(report)).to_json()
    bad = copy.deepcopy(doc)
    if case == "v1-with-checks":
        bad["version"] = 1
    elif case == "v2-without":
        del bad["checks"]
    elif case == "empty-checks":
        bad["checks"] = {}
    elif case == "unknown-key":
        bad["checks"]["tcb"] = 1
    elif case == "short-host-data":
        bad["checks"]["host_data"] = "00"
    elif case == "platform-bit-unknown":
        bad["checks"]["platform_info"] = {"sev_es": True}
    elif case == "chip-ids-empty":
        bad["checks"]["chip_ids"] = []
    else:
        bad["checks"]["min_firmware"] = {"major": 1}
    with pytest.raises(ParseError) as exc:
        GoldenMeasurement.from_json(bad)
    assert exc.value.reason is Reason.GOLDEN_MALFORMED
    assert not SCHEMA.is_valid(bad), f"the schema accepts {case}"


# --- the same checks as cvm-cli verify flags --------------------------------------------------------


def _verify(vectors: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    v = load_vector(vectors, VECTOR)
    args = ["snp", "--report", str(v.file("report.bin")), "--vcek", str(v.file("vcek.pem")), "--at",
            v.now.isoformat(), "--json", *flags]
    result = CliRunner(mix_stderr=False).invoke(verify, args)
    return result.exit_code, json.loads(result.stdout)


def test_verify_flags_check_the_report(vectors: Path, report: SnpReport) -> None:
    ok = _verify(vectors, "--report-data", report.report_data.hex(), "--host-data", report.host_data.hex(),
                 "--chip-id", report.chip_id.hex(), "--min-guest-svn", str(report.guest_svn),
                 "--platform-info", f"smt_enabled={report.platform_info & 1}",
                 "--min-firmware", f"{report.current_major}.{report.current_minor}")
    assert ok[0] == 0 and ok[1]["ok"] is True
    code, out = _verify(vectors, "--host-data", _flip(report.host_data).hex(), "--min-guest-svn",
                        str(report.guest_svn + 1))
    assert (code, out["reason"]) == (1, Reason.POLICY_VIOLATIONS.value)
    assert [v["reason"] for v in out["violations"]] == [Reason.POLICY_HOST_DATA_MISMATCH.value,
                                                        Reason.POLICY_GUEST_SVN_TOO_LOW.value]


def test_a_short_report_data_flag_is_zero_padded(vectors: Path, report: SnpReport) -> None:
    """A bare report's nonce given as fewer bytes: compared zero-padded to 64, as snpguest does."""
    trailing = report.report_data.rstrip(b"\x00")
    code, out = _verify(vectors, "--report-data", trailing.hex() + "ff")
    assert (code, out["reason"]) == (1, Reason.POLICY_REPORT_DATA_MISMATCH.value)


@pytest.mark.parametrize("flags", [["--host-data", "00"], ["--chip-id", "zz"], ["--platform-info", "smt=1"],
                                   ["--min-firmware", "1"], ["--report-data", "00" * 65]],
                         ids=["short-host-data", "chip-not-hex", "unknown-bit", "firmware-one-part", "long-report-data"])
def test_bad_check_flags_are_usage_errors(vectors: Path, flags: list[str]) -> None:
    code, out = _verify(vectors, *flags)
    assert (code, out["reason"]) == (2, Reason.INPUT_INVALID.value)


def test_flags_override_the_goldens_checks(vectors: Path, report: SnpReport, tmp_path: Path) -> None:
    golden = _golden(report, _broken(report, "host_data"))
    (tmp_path / "golden.json").write_text(golden.dumps())
    code, out = _verify(vectors, "--golden", str(tmp_path / "golden.json"))
    assert (code, out["reason"]) == (1, Reason.POLICY_HOST_DATA_MISMATCH.value)
    code, out = _verify(vectors, "--golden", str(tmp_path / "golden.json"), "--host-data", report.host_data.hex())
    # The result names the rules it applied: the golden with the flags' checks, an id of its own.
    applied = replace(golden, checks=golden.checks.merged(ReportChecks(host_data=report.host_data)))
    assert (code, out["ok"], out["golden_id"]) == (0, True, "0x" + applied.canonical_id().hex())
    assert applied.canonical_id() != golden.canonical_id()


def test_the_struct_hash_is_eip712_hash_struct_of_the_onchain_fields(report: SnpReport) -> None:
    """Computed here with eth_abi from the EIP-712 rules (bytes and bytes[] hashed), apart from the module's words."""
    from eth_abi.abi import encode

    checks = _matching(report)
    *byte_fields, svn, chip_ids, mask, values, major, minor, build = checks.onchain_fields()
    assert (mask, values) == (sum(1 << PLATFORM_INFO_BITS[n] for n, _ in checks.platform_info),
                              sum(1 << PLATFORM_INFO_BITS[n] for n, wanted in checks.platform_info if wanted))
    encoded = encode(
        ["bytes32"] * 7 + ["uint32", "bytes32", "uint64", "uint64", "uint8", "uint8", "uint8"],
        [keccak256(CHECKS_TYPE), *(keccak256(b) for b in byte_fields), svn,
         keccak256(b"".join(keccak256(c) for c in chip_ids)), mask, values, major, minor, build],
    )
    assert checks.struct_hash() == keccak256(encoded)


def test_the_onchain_fields_round_trip(report: SnpReport) -> None:
    checks = replace(_matching(report), min_guest_svn=7)  # a zero minimum has the on-chain value of none
    assert ReportChecks.from_onchain_fields(checks.onchain_fields()) == checks
    assert ReportChecks.from_onchain_fields(ReportChecks().onchain_fields()) == ReportChecks()
    fields = list(ReportChecks().onchain_fields())
    fields[8] = 1 << 9  # a PLATFORM_INFO bit no check here names
    with pytest.raises(ParseError) as info:
        ReportChecks.from_onchain_fields(fields)
    assert info.value.reason is Reason.GOLDEN_MALFORMED and info.value.context["field"] == "checks.platform_info"


def test_only_checks_that_can_fail_change_the_id(report: SnpReport) -> None:
    assert not ReportChecks(min_guest_svn=0, min_firmware=FirmwareMinimum(0, 0, 0)).checks_something()
    never_failing = _golden(report, ReportChecks(min_guest_svn=0))
    assert never_failing.version == 2 and never_failing.canonical_id() == _golden(report).canonical_id()
    for checks in (ReportChecks(min_guest_svn=1), ReportChecks(platform_info=(("smt_enabled", False),)),
                   ReportChecks(min_firmware=FirmwareMinimum(0, 0, 1))):
        assert checks.checks_something()
        assert _golden(report, checks).canonical_id() != _golden(report).canonical_id()
