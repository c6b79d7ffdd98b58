"""Verify an agent on the svsm platform online: its evidence, and the credential activation that binds
its AK to the SVSM vTPM's endorsement key (offchain.credential).

1. ``GET /collaterals/{nonce}`` with a fresh 32-byte nonce: the SVSM's VMPL0 report over
   ``SHA-512(svsm_nonce(extraData) || EK)``, the EK, the AK and its quote over the off-chain form.
2. MakeCredential of a fresh 32-byte credential for the AK's Name under that EK; ``POST
   /svsm/activate``; the agent's vTPM releases the credential only if it holds both keys.
3. :func:`offchain.evidence.verify_evidence` with what the activation proved: the chain, the
   report, VMPL 0, the SVSM nonce, REPORT_DATA, the quote, the PCRs, the golden measurement.
"""

from __future__ import annotations

import hmac
import json
import secrets
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from offchain.credential import make_credential
from offchain.errors import CollateralError, Reason, VerificationError
from offchain.evidence import EvidenceBundle, VerifiedEvidence, offchain_expected_extra_data, verify_evidence
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.kds import KdsClient
from offchain.trust.roots import TrustRoots
from offchain.verify.binding import SvsmActivation
from offchain.verify.revocation import CrlSource

MAX_ANSWER_BYTES = 1 << 20


def agent_request(url: str, body: dict[str, Any] | None = None, timeout: float = 60.0) -> Any:
    """One JSON request to an agent; its refusal or absence as a typed error naming the agent's reason."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the user's agent)
            return json.loads(response.read(MAX_ANSWER_BYTES + 1))
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read(65536))
            why = f"[{answer['reason']}] {answer['detail']}"
        except (OSError, ValueError, KeyError, TypeError):
            why = f"HTTP {exc.code}"
        raise VerificationError(Reason.SVSM_ACTIVATION_FAILED, f"{url} refused: {why}", status=exc.code) from None
    except (OSError, ValueError) as exc:
        raise CollateralError(Reason.SVSM_ACTIVATION_FAILED, f"cannot reach {url}: {getattr(exc, 'reason', exc)}") \
            from None


def activate(agent_url: str, bundle: EvidenceBundle, challenge: bytes) -> SvsmActivation:
    """Run a credential activation for ``bundle``'s AK under its SVSM EK against the agent that served
    it for ``challenge`` (the quote's extraData); what it proved, or ``svsm.activation_failed``."""
    if bundle.svsm is None:
        raise VerificationError(Reason.BINDING_MODE_MISMATCH, f"the agent's evidence uses the {bundle.binding.value} "
                                "binding, not svsm: it has no SVSM vTPM to activate a credential with")
    credential = secrets.token_bytes(32)
    made = make_credential(bundle.svsm.ek, bundle.ak.name(), credential)
    answer = agent_request(f"{agent_url.rstrip('/')}/svsm/activate", {
        "challenge": challenge.hex(), "credential_blob": made.credential_blob.hex(), "secret": made.secret.hex()})
    try:
        returned = bytes.fromhex(str(answer["credential"]))
    except (KeyError, TypeError, ValueError):
        raise VerificationError(Reason.SVSM_ACTIVATION_FAILED, "the agent's answer carries no credential") from None
    if not hmac.compare_digest(returned, credential):
        raise VerificationError(Reason.SVSM_ACTIVATION_FAILED, "the agent returned another credential than the one "
                                "made for its AK under the SVSM's EK: the AK is not in that vTPM")
    return SvsmActivation(ek_name=bundle.svsm.ek.name(), ak_name=bundle.ak.name())


def verify_svsm_agent(agent_url: str, *, golden: GoldenMeasurement | None, roots: TrustRoots, now: datetime,
                      kds: KdsClient | None = None, revocation: CrlSource | None = None,
                      allow_debug_golden: bool = False) -> VerifiedEvidence:
    """The whole online verification (module docstring); the keyword arguments as
    :func:`offchain.evidence.verify_evidence` takes them."""
    nonce = secrets.token_bytes(32)
    bundle = EvidenceBundle.from_json(json.dumps(agent_request(f"{agent_url.rstrip('/')}/collaterals/{nonce.hex()}")))
    extra = offchain_expected_extra_data(bundle, nonce)
    activation = activate(agent_url, bundle, extra)
    return verify_evidence(bundle, expected_extra_data=extra, golden=golden, roots=roots, now=now, fetcher=kds,
                           revocation=revocation, allow_debug_golden=allow_debug_golden, svsm_activation=activation)
