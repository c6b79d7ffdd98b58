"""How every ``cvm-cli`` command reports a verdict or an error (CONVENTIONS.md, "Errors").

* Exit codes, the same for every command (:data:`EXIT_CODES_HELP` is what ``--help`` prints):
  ``0`` accepted; ``1`` rejected (the input was judged and failed: a signature, a chain, a policy
  rule, a revert); ``2`` unreadable or malformed input (a missing file, a bad option value, a
  truncated report, evidence JSON that does not parse, a malformed golden measurement: nothing
  could be judged); ``3`` a transient failure (AMD KDS, the RPC node or an agent could not be
  reached: the same command may succeed later).
* Without ``--json``: a short human summary on stdout; errors as ``[reason] message`` on stderr,
  followed by one line per policy violation.
* With ``--json``: exactly one JSON object on stdout, also on errors. A verify command's is
  :func:`verdict` (``ok``, ``reason``, ``product``, ``signer``, ``report``, ...), accepted or not;
  any other command's error is :func:`error_payload` (``ok``, ``reason``, ``detail``, and
  ``context`` or ``violations`` when there are some), with no verify fields.

The off-chain ``verify`` commands and the on-chain ``onchain verify`` commands share this module so
both speak the same shapes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from offchain.abi.snp_report import Product, SnpReport
from offchain.errors import CvmAttestError, ParseError, PolicyError, Reason, RequestError

EXIT_ACCEPTED = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_TRANSIENT = 3

#: The exit-code table every command's ``--help`` ends with.
EXIT_CODES_HELP = "Exit status: 0 accepted, 1 rejected, 2 unreadable or malformed input, 3 transient failure (KDS, RPC)."

#: Reasons that mean "nothing could be judged" (exit 2) rather than "rejected" (exit 1), whatever
#: the error's class. Every :class:`~offchain.errors.ParseError` is exit 2 as well.
USAGE_REASONS = frozenset({
    Reason.INPUT_UNREADABLE, Reason.INPUT_INVALID, Reason.GOLDEN_MALFORMED, Reason.CRL_MALFORMED,
    Reason.SNP_REPORT_LENGTH, Reason.SNP_REPORT_VERSION, Reason.SNP_REPORT_RESERVED, Reason.SNP_REPORT_SIG_ALGO,
    Reason.SNP_REPORT_MALFORMED, Reason.CERT_MALFORMED, Reason.CERT_EXTENSION_MALFORMED, Reason.HCL_REPORT_MALFORMED,
    Reason.HCL_RUNTIME_DATA_MALFORMED, Reason.TPM_ATTEST_MALFORMED, Reason.TPM_PUBLIC_MALFORMED,
    Reason.TPM_SIGNATURE_MALFORMED, Reason.EVENT_LOG_MALFORMED, Reason.EVIDENCE_MALFORMED,
})

#: Reasons of a failure to reach something (KDS, the RPC node, an agent): exit 3, try again later.
#: ``collateral.unavailable`` is not one: KDS answered that it has no such certificate.
TRANSIENT_REASONS = frozenset({
    Reason.COLLATERAL_FETCH_FAILED, Reason.CHAIN_RPC_UNAVAILABLE, Reason.RELAY_AGENT_UNREACHABLE,
    Reason.PLATFORM_UNAVAILABLE, Reason.TPM_UNAVAILABLE,
})

P = ParamSpec("P")
R = TypeVar("R")


def exit_code_for(error: CvmAttestError) -> int:
    """``3`` for a transient failure, ``2`` for unusable input, ``1`` for everything else that went wrong."""
    if error.reason in TRANSIENT_REASONS:
        return EXIT_TRANSIENT
    if isinstance(error, ParseError) or error.reason in USAGE_REASONS:
        return EXIT_USAGE
    return EXIT_REJECTED


def report_summary(report: SnpReport, product: Product | None) -> dict[str, Any]:
    """The ``report`` object of ``--json`` output: the fields a caller decides on.

    ``reported_tcb`` is decoded with the product's layout when the product is known, else raw.
    """
    if product is not None:
        try:
            reported_tcb: dict[str, Any] = report.tcb("reported", product).to_json()
        except CvmAttestError:
            reported_tcb = {"raw": f"{report.reported_tcb:#018x}"}
    else:
        reported_tcb = {"raw": f"{report.reported_tcb:#018x}"}
    return {
        "version": report.version,
        "vmpl": report.vmpl,
        "policy": f"{report.policy:#x}",
        "measurement": report.measurement.hex(),
        "report_data": report.report_data.hex(),
        "chip_id": report.chip_id.hex(),
        "reported_tcb": reported_tcb,
        "signing_key": report.signing_key.value,
    }


def verdict(
    *,
    ok: bool,
    error: CvmAttestError | None = None,
    product: Product | None = None,
    signer: str | None = None,
    report: SnpReport | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The one JSON object a verify command prints."""
    out: dict[str, Any] = {
        "ok": ok,
        "reason": None if error is None else error.reason.value,
        "product": None if product is None else product.value,
        "signer": signer,
        "report": None if report is None else report_summary(report, product),
    }
    if error is not None:
        out["detail"] = error.detail
        if isinstance(error, PolicyError):
            out["violations"] = [v.to_dict() for v in error.violations]
    if extra:
        out.update(extra)
    return out


def error_payload(error: CvmAttestError) -> dict[str, Any]:
    """The JSON error of a command that is not a verify command: ``{"ok": false, "reason", "detail"}``,
    with ``violations`` for a policy error and ``context`` when the error carries facts."""
    out: dict[str, Any] = {"ok": False, "reason": error.reason.value, "detail": error.detail}
    if isinstance(error, PolicyError):
        out["violations"] = [v.to_dict() for v in error.violations]
    elif error.context:
        out["context"] = error.context
    return out


def emit(payload: Mapping[str, Any], *, as_json: bool, human: str) -> NoReturn:
    """Print a verdict (JSON or ``human``) and exit 0 or 1 according to ``payload["ok"]``."""
    if as_json:
        click.echo(json.dumps(payload, sort_keys=True))
    else:
        click.echo(human)
    sys.exit(EXIT_ACCEPTED if payload["ok"] else EXIT_REJECTED)


def fail(error: CvmAttestError, *, as_json: bool, payload: Mapping[str, Any] | None = None) -> NoReturn:
    """Print ``error`` (``[reason] message`` on stderr, or ``payload``, by default
    :func:`error_payload`, as JSON) and exit 1, 2 or 3."""
    if as_json:
        body = dict(payload) if payload is not None else error_payload(error)
        click.echo(json.dumps(body, sort_keys=True))
    else:
        click.echo(f"[{error.reason.value}] {error.detail}", err=True)
        if isinstance(error, PolicyError):
            for v in error.violations:
                click.echo(f"  [{v.reason.value}] {v.field}: expected {v.expected}, got {v.actual}", err=True)
    sys.exit(exit_code_for(error))


def usage_error(message: str, *, as_json: bool) -> NoReturn:
    """A verify command's bad combination of options, reported as its verdict (reason
    ``input.invalid``, exit 2)."""
    error = RequestError(Reason.INPUT_INVALID, message)
    fail(error, as_json=as_json, payload=verdict(ok=False, error=error))


def guarded(json_param: str = "as_json") -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a click callback: any :class:`CvmAttestError` it lets escape becomes :func:`fail`."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except CvmAttestError as exc:
                fail(exc, as_json=bool(kwargs.get(json_param)))

        return wrapper

    return decorate


def stacked(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Several click decorators as one (applied in the order written, as when stacked)."""

    def apply(f: Any) -> Any:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply
