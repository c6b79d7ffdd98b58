"""offchain.cli.output: the shapes and exit codes every cvm-cli verify command shares."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from offchain.abi.snp_report import Product
from offchain.cli.output import EXIT_REJECTED, EXIT_TRANSIENT, EXIT_USAGE, exit_code_for, guarded, report_summary, verdict
from offchain.errors import ChainError, CollateralError, ParseError, PolicyError, Reason, VerificationError, Violation
from tests.support.evidence import dev_chain


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ParseError(Reason.INPUT_UNREADABLE), EXIT_USAGE),
        (ParseError(Reason.INPUT_INVALID), EXIT_USAGE),
        (ParseError(Reason.GOLDEN_MALFORMED), EXIT_USAGE),
        (ParseError(Reason.EVIDENCE_MALFORMED), EXIT_USAGE),
        (ParseError(Reason.SNP_REPORT_LENGTH), EXIT_USAGE),
        (ParseError(Reason.TPM_QUOTE_PCR_SELECTION), EXIT_USAGE),
        (VerificationError(Reason.SNP_SIGNATURE_INVALID), EXIT_REJECTED),
        (VerificationError(Reason.CHAIN_INCOMPLETE), EXIT_REJECTED),
        (CollateralError(Reason.COLLATERAL_UNAVAILABLE), EXIT_REJECTED),
        (CollateralError(Reason.COLLATERAL_FETCH_FAILED), EXIT_TRANSIENT),
        (ChainError(Reason.CHAIN_RPC_UNAVAILABLE), EXIT_TRANSIENT),
        (ChainError(Reason.CHAIN_REVERTED), EXIT_REJECTED),
        (PolicyError([Violation(Reason.POLICY_VMPL_MISMATCH, "vmpl", 0, 1)]), EXIT_REJECTED),
    ],
    ids=lambda x: x.reason.value if hasattr(x, "reason") else str(x),
)
def test_exit_codes(error: Exception, code: int) -> None:
    assert exit_code_for(error) == code  # type: ignore[arg-type]


def test_verdict_shapes() -> None:
    chain = dev_chain(Product.TURIN)
    report = chain.sign(chain.report_template())
    ok = verdict(ok=True, product=Product.TURIN, signer="vcek", report=report, extra={"binding": "direct"})
    assert ok["ok"] is True and ok["reason"] is None and ok["binding"] == "direct"
    assert ok["report"]["reported_tcb"]["fmc"] == chain.tcb.fmc and ok["report"]["policy"] == "0x30000"
    policy = PolicyError([Violation(Reason.POLICY_VMPL_MISMATCH, "vmpl", 0, 1), Violation(Reason.POLICY_SMT_NOT_ALLOWED, "policy.smt_allowed", False, True)])
    bad = verdict(ok=False, error=policy, report=report)
    assert bad["reason"] == Reason.POLICY_VIOLATIONS.value and len(bad["violations"]) == 2
    assert bad["product"] is None and bad["report"]["reported_tcb"] == {"raw": f"{report.reported_tcb:#018x}"}
    assert report_summary(report, Product.GENOA)["reported_tcb"] == {"raw": f"{report.reported_tcb:#018x}"}


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--fail", type=click.Choice(["input", "snp"]))
@guarded()
def _cmd(as_json: bool, fail: str | None) -> None:
    if fail == "input":
        raise ParseError(Reason.INPUT_UNREADABLE, "cannot read x")
    if fail == "snp":
        raise VerificationError(Reason.SNP_SIGNATURE_INVALID, "bad signature")
    click.echo("fine")


def test_guarded_turns_errors_into_verdicts() -> None:
    runner = CliRunner(mix_stderr=False)
    assert runner.invoke(_cmd, []).stdout == "fine\n"
    human = runner.invoke(_cmd, ["--fail", "snp"])
    assert (human.exit_code, human.stderr) == (1, "[snp.signature.invalid] bad signature\n")
    as_json = runner.invoke(_cmd, ["--fail", "input", "--json"])
    assert as_json.exit_code == 2
    # A command that is not a verify command has its own error schema: no product, signer or report.
    assert json.loads(as_json.stdout) == {"ok": False, "reason": "input.unreadable", "detail": "cannot read x"}
