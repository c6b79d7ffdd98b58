"""The dApp-backend SDK and its FastAPI gate, against a CVM attested through the relayer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from localstack.swtpm import swtpm_available
from offchain.errors import ChainError, Reason, VerificationError
from onchain.client import AttestationStatus
from onchain.demo import http_json
from onchain.gate import ADDRESS_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, require_attested_cvm
from onchain.relayer.journal import Journal
from onchain.sdk import Registry, request_message
from tests.support.stack import Chain, Stack, make_relayer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not swtpm_available(), reason="swtpm is not installed (scripts/setup installs it)"),
]


@pytest.fixture()
def attested(stack: Stack, chain: Chain, tmp_path: Path) -> tuple[Registry, str, bytes]:
    golden = stack.consented_golden()
    golden_id = chain.registry.publish_golden(golden)
    (result,) = make_relayer(chain, stack, Journal(tmp_path / "j.db"), golden).tick()
    assert result.action == "register", result.error
    return Registry(chain.w3, chain.registry.address), stack.cvm(), golden_id


def _cvm_sign(stack: Stack, text: str) -> str:
    """The CVM's key signs (EIP-191) through the agent's internal listener."""
    signed = http_json("POST", stack.agent.internal + "/sign-message", json.dumps({"text": text}).encode(),
                   {"Content-Type": "application/json"})
    return str(signed["signature"])


def _signed_headers(stack: Stack, cvm: str, method: str, path: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {ADDRESS_HEADER: cvm, TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: _cvm_sign(stack, request_message(method, path, ts, body))}


def test_a_request_signed_by_the_attested_cvm_is_accepted(stack: Stack, attested: tuple[Registry, str, bytes]) -> None:
    registry, cvm, golden_id = attested
    ts, body = int(time.time()), b'{"price": 4242}'
    signature = _cvm_sign(stack, request_message("POST", "/prices", ts, body))
    kwargs = dict(method="post", path="/prices", body=body, timestamp=ts, signature=signature, claimed_address=cvm)
    assert registry.verify_signed_request(**kwargs) == cvm  # type: ignore[arg-type]
    assert registry.verify_signed_request(**kwargs, golden_id=golden_id) == cvm  # type: ignore[arg-type]

    # Negative twins: another body, another path, a stale time, another golden measurement.
    with pytest.raises(VerificationError) as exc:
        registry.verify_signed_request(**{**kwargs, "body": b'{"price": 1}'})  # type: ignore[arg-type]
    assert exc.value.reason is Reason.SIGNED_REQUEST_INVALID
    with pytest.raises(VerificationError) as exc:
        registry.verify_signed_request(**{**kwargs, "path": "/admin"})  # type: ignore[arg-type]
    assert exc.value.reason is Reason.SIGNED_REQUEST_INVALID
    stale = Registry(registry.w3, registry.address, clock=lambda: ts + 61)
    with pytest.raises(VerificationError) as exc:
        stale.verify_signed_request(**kwargs)  # type: ignore[arg-type]
    assert exc.value.reason is Reason.SIGNED_REQUEST_STALE
    with pytest.raises(ChainError) as chain_exc:
        registry.verify_signed_request(**kwargs, golden_id=b"\x01" * 32)  # type: ignore[arg-type]
    assert chain_exc.value.reason is Reason.REGISTRY_NOT_ATTESTED and chain_exc.value.context["status"] == "other_golden"


def test_a_key_that_is_not_attested_is_refused(attested: tuple[Registry, str, bytes]) -> None:
    registry, _, _ = attested
    outsider = Account.create()
    signature = outsider.sign_message(encode_defunct(text="hello")).signature.hex()
    with pytest.raises(ChainError) as exc:
        registry.verify_signed_message("hello", signature)
    assert exc.value.reason is Reason.REGISTRY_NOT_ATTESTED and exc.value.context["status"] == "not_registered"
    with pytest.raises(VerificationError) as bad:
        registry.verify_signed_message("hello", "0x" + "00" * 65)
    assert bad.value.reason is Reason.SIGNED_REQUEST_INVALID


def test_revocation_ends_acceptance_and_events_tell_the_story(
        stack: Stack, chain: Chain, attested: tuple[Registry, str, bytes]) -> None:
    registry, cvm, golden_id = attested
    signature = _cvm_sign(stack, "still here")
    assert registry.verify_signed_message("still here", signature) == cvm
    chain.registry.revoke_golden(golden_id)
    with pytest.raises(ChainError) as exc:
        registry.verify_signed_message("still here", signature)
    assert exc.value.reason is Reason.REGISTRY_NOT_ATTESTED and exc.value.context["status"] == "golden_revoked"
    assert registry.attestation_status(cvm) is AttestationStatus.GOLDEN_REVOKED
    names = [e.name for e in registry.events()]
    assert names.index("GoldenPublished") < names.index("CvmRegistered") < names.index("GoldenRevoked")
    registered = next(e for e in registry.events() if e.name == "CvmRegistered")
    assert registered.args["cvm"] == cvm


def test_fastapi_gate(stack: Stack, attested: tuple[Registry, str, bytes]) -> None:
    registry, cvm, golden_id = attested
    app = FastAPI()

    @app.post("/prices")
    async def post_price(caller: str = Depends(require_attested_cvm(registry, golden_id=golden_id))) -> dict[str, str]:
        return {"reporter": caller}

    client = TestClient(app)
    body = b'{"price": 4242}'
    ok = client.post("/prices", content=body, headers=_signed_headers(stack, cvm, "POST", "/prices", body))
    assert ok.status_code == 200 and ok.json() == {"reporter": cvm}

    missing = client.post("/prices", content=body)
    assert missing.status_code == 401 and missing.json()["detail"]["reason"] == Reason.AUTH_REQUIRED.value

    tampered = client.post("/prices", content=b'{"price": 1}',
                           headers=_signed_headers(stack, cvm, "POST", "/prices", body))
    assert tampered.status_code == 401
    assert tampered.json()["detail"]["reason"] == Reason.SIGNED_REQUEST_INVALID.value

    outsider = Account.create()
    ts = int(time.time())
    headers = {ADDRESS_HEADER: outsider.address, TIMESTAMP_HEADER: str(ts),
               SIGNATURE_HEADER: outsider.sign_message(
                   encode_defunct(text=request_message("POST", "/prices", ts, body))).signature.hex()}
    refused = client.post("/prices", content=body, headers=headers)
    assert refused.status_code == 403 and refused.json()["detail"]["reason"] == Reason.REGISTRY_NOT_ATTESTED.value
