"""Report checks (offchain.policy.checks): one typed violation per field, in a version-2 golden
measurement whose canonical id equals its version-1 twin's, and as ``cvm-cli verify`` flags."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from click.testing import CliRunner

from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.cli.verify import verify
from offchain.errors import ParseError, Reason
from offchain.policy.check import policy_violations
from offchain.policy.checks import PLATFORM_INFO_BITS, FirmwareMinimum, ReportChecks, report_check_violations
from offchain.policy.golden import SCHEMA_FILE, Binding, GoldenMeasurement
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


def test_a_golden_with_checks_is_version_2_with_the_same_canonical_id(report: SnpReport) -> None:
    plain, checked = _golden(report), _golden(report, _matching(report))
    assert (plain.version, checked.version) == (1, 2)
    assert checked.canonical_id() == plain.canonical_id()  # the checks are outside the id the contract computes
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
    assert (code, out["ok"], out["golden_id"]) == (0, True, "0x" + golden.canonical_id().hex())
