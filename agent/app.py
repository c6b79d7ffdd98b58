"""The agent's HTTP API (FastAPI): two applications over one :class:`agent.service.Agent`.

* **internal** (default the Unix socket ``/run/cvm-agent/internal.sock``, which only the workload's
  containers are given), for the workload in the same CVM: everything a verifier can ask for, plus
  ``POST /offchain-verify``, ``POST /sign-message``, ``POST /sign-transaction`` (the CVM key
  signs only for code the socket's permissions admit) and ``POST /unseal`` (boxes sealed to the key
  this CVM published in a registry).
* **external** (default ``0.0.0.0:8000``, TLS when configured), for verifiers and operators:
  evidence, identity, health, and behind a bearer token ``POST /update-workload``, ``POST /secrets``
  (sealed: agent.sealing) and ``GET``/``POST /golden-consents``.

Every error is JSON ``{"reason", "detail", "context"?}`` with a stable reason (offchain.errors):
4xx for the caller's mistakes (422 for bad parameters, 401/403 for authentication, 403 for a
golden id the CVM does not consent to, 409 when the CVM itself is unfit, e.g. a debug guest asked
for its golden measurement, 413 for oversize), 503 when the TPM or the firmware is unavailable,
502 when the workload runner failed.
OpenAPI is served at ``/openapi.json`` and ``/docs`` on both listeners: every route's answer is a
typed model (agent.schemas), and the token-guarded routes carry the ``bearerToken`` security scheme.

Logs: ``cvm_agent.access`` has one line per request (method, path, status, milliseconds, client);
``cvm_agent.audit`` one per refused bearer token (route, client, reason) and per signing request
(what was signed: the message's digest, or the transaction's chain id, recipient, nonce and hash).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from offchain.errors import (
    ChainError,
    CollateralError,
    CvmAttestError,
    PlatformError,
    PolicyError,
    Reason,
    RequestError,
    VerificationError,
)

from agent.schemas import (
    EvidenceBundleBody,
    HealthBody,
    IdentityBody,
    SignedMessageBody,
    SignedTransactionBody,
    WorkloadEventBody,
    WorkloadUpdateBody,
)
from agent.service import Agent

log = logging.getLogger("cvm_agent.http")
access_log = logging.getLogger("cvm_agent.access")
audit_log = logging.getLogger("cvm_agent.audit")

MAX_JSON_BODY = 2 << 20
UPDATE_PATH = "/update-workload"
CONSENTS_PATH = "/golden-consents"
_HEX_NONCE = r"^(?:[0-9a-fA-F]{2}){1,64}$"
_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_BYTES32 = r"^0x[0-9a-fA-F]{64}$"
_HEX_BYTES = r"^(?:0x)?(?:[0-9a-fA-F]{2})*$"
_UPLOAD_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 8 << 20

WHERE_BOTH = "Served on the internal and the external listener."
WHERE_INTERNAL = "Served on the internal listener only (the workload in this CVM)."
WHERE_EXTERNAL = "Served on the external listener only."

_STATUS_BY_REASON = {
    Reason.AUTH_REQUIRED: 401,
    Reason.AUTH_INVALID: 401,
    Reason.WORKLOAD_UPDATE_DISABLED: 403,
    Reason.AGENT_GOLDEN_NOT_CONSENTED: 403,
    Reason.POLICY_DEBUG_ALLOWED: 409,
    Reason.HTTP_NOT_FOUND: 404,
    Reason.BOOT_LOG_UNAVAILABLE: 404,
    Reason.HTTP_METHOD_NOT_ALLOWED: 405,
    Reason.WORKLOAD_ARCHIVE_TOO_LARGE: 413,
    Reason.HTTP_UNSUPPORTED_MEDIA_TYPE: 415,
    Reason.WORKLOAD_COMPOSE_MALFORMED: 400,
    Reason.INPUT_INVALID: 422,
    Reason.WORKLOAD_RUNNER_FAILED: 502,
    Reason.SEAL_MALFORMED: 422,
    Reason.SEAL_KEY_NOT_BOUND: 400,
    Reason.SEAL_DECRYPT_FAILED: 400,
    Reason.SEAL_CHALLENGE_UNKNOWN: 400,
    Reason.SECRETS_NOT_IN_MEMORY: 409,
    Reason.SVSM_CHALLENGE_UNKNOWN: 400,
    Reason.SVSM_ACTIVATION_FAILED: 400,
}


def status_for(error: CvmAttestError) -> int:
    """The HTTP status of a typed error (module docstring)."""
    if error.reason in _STATUS_BY_REASON:
        return _STATUS_BY_REASON[error.reason]
    if isinstance(error, (PlatformError, CollateralError, VerificationError)):
        # VerificationError reaches a route only from the platform itself (e.g. an Azure HCL
        # report that names another AK): the server cannot produce evidence right now.
        return 503
    if isinstance(error, ChainError):
        return 502
    if isinstance(error, PolicyError):
        # Reaches a route only from GET /golden-measurement: this CVM is not one a golden may describe.
        return 409
    if isinstance(error, RequestError):
        return 400
    return 422


def error_response(error: CvmAttestError, status: int | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.reason in (Reason.AUTH_REQUIRED, Reason.AUTH_INVALID) else None
    return JSONResponse(error.to_dict(), status_code=status or status_for(error), headers=headers)


class ErrorBody(BaseModel):
    """Every error the agent returns."""

    reason: str = Field(description="Stable machine-readable reason (offchain.errors.Reason).")
    detail: str = Field(description="A human sentence.")
    context: dict[str, Any] | None = Field(default=None, description="Small facts about the error.")


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in ((422, "Invalid parameter"), (503, "TPM or firmware unavailable"))
}


# --- request and response bodies -------------------------------------------------------------


class SignMessageRequest(BaseModel):
    """Exactly one of ``text`` (UTF-8) and ``hex`` (raw bytes) to sign with EIP-191 (personal_sign)."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=65536)
    hex: str | None = Field(default=None, pattern=_HEX_BYTES, max_length=131074)


class SignTransactionRequest(BaseModel):
    """An Ethereum transaction in eth-account's field names (``to``, ``value``, ``gas``, ``nonce``,
    ``chainId``, ``maxFeePerGas``/``maxPriorityFeePerGas`` or ``gasPrice``, ``data``...)."""

    model_config = ConfigDict(extra="forbid")
    transaction: dict[str, Any]


class GoldenConsentRequest(BaseModel):
    """A golden measurement's canonical id (``0x`` and 64 hex digits) this CVM consents to."""

    model_config = ConfigDict(extra="forbid")
    golden_id: str = Field(pattern=_BYTES32)


class SvsmActivateRequest(BaseModel):
    """A credential a verifier made (TPM2_MakeCredential, offchain.credential) for this agent's AK under
    the SVSM's EK, for the evidence whose quote bound ``challenge`` (its extraData, hex)."""

    model_config = ConfigDict(extra="forbid")
    challenge: str = Field(pattern=r"^(?:[0-9a-fA-F]{2}){32}$")
    credential_blob: str = Field(pattern=r"^(?:[0-9a-fA-F]{2}){1,512}$", description="TPM2B_ID_OBJECT's buffer")
    secret: str = Field(pattern=r"^(?:[0-9a-fA-F]{2}){1,512}$", description="TPM2B_ENCRYPTED_SECRET's buffer")


class OffchainVerifyRequest(BaseModel):
    """Evidence to verify with the off-chain verifier, the nonce it was requested with, an optional
    golden measurement, and optionally a development ARK (PEM) to trust besides AMD's roots."""

    model_config = ConfigDict(extra="forbid")
    evidence: dict[str, Any]
    nonce: str = Field(pattern=r"^(?:0x)?(?:[0-9a-fA-F]{2}){1,64}$")
    golden: dict[str, Any] | None = None
    dev_root: str | None = Field(default=None, max_length=65536)


# --- plumbing ------------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: JSON bodies are at most ``MAX_JSON_BODY`` bytes (uploads have their own limit)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == UPDATE_PATH:
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise StarletteHTTPException(413, f"request body larger than {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


def agent_of(request: Request) -> Agent:
    agent: Agent = request.app.state.agent
    return agent


def only_query(*allowed: str) -> Callable[[Request], None]:
    """A dependency that refuses query parameters a route does not define, and any given twice (nothing
    is smuggled in, nothing is ambiguous)."""

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params.keys()) - set(allowed))
        if unknown:
            raise RequestError(Reason.INPUT_INVALID, f"unknown query parameters {unknown}", parameters=unknown)
        # ?chain_id=1&chain_id=2: the framework would take one; which one the caller meant is unknowable.
        repeated = sorted({key for key in request.query_params.keys() if len(request.query_params.getlist(key)) > 1})
        if repeated:
            raise RequestError(Reason.INPUT_INVALID, f"query parameters given more than once: {repeated}",
                               parameters=repeated)

    return check


def _is_decimal(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    return f"{'.'.join(first['loc'])}: {first['msg']}", errors


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CvmAttestError)
    async def typed(_: Request, exc: CvmAttestError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(exc)
        return error_response(RequestError(Reason.INPUT_INVALID, detail, errors=errors), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        by_status = {404: Reason.HTTP_NOT_FOUND, 405: Reason.HTTP_METHOD_NOT_ALLOWED}
        reason = by_status.get(exc.status_code, Reason.INPUT_INVALID)
        return error_response(RequestError(reason, str(exc.detail)), exc.status_code)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        error = CvmAttestError(Reason.AGENT_INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
        return JSONResponse(error.to_dict(), status_code=500)


# --- routes served on both listeners ----------------------------------------------------------------

both = APIRouter(tags=["internal and external"], responses=_ERRORS)


@both.get(
    "/collaterals/{nonce}",
    summary="Evidence bundle for a verifier's nonce",
    description="The evidence bundle of docs/formats.md: SNP report, certificates, AK public area, TPM quote "
    "over `SHA-256(\"cvm-attest/offchain/v1\" || nonce)` (never the raw nonce), PCR values, workload event log, "
    "CVM address. `nonce` is 1 to 64 bytes as hex. " + WHERE_BOTH,
    dependencies=[Depends(only_query())],
    response_model=EvidenceBundleBody,
    response_model_exclude_none=True,
)
def collaterals(
    nonce: str = Path(pattern=_HEX_NONCE, description="1 to 64 bytes, hex"),
    agent: Agent = Depends(agent_of),
) -> dict[str, Any]:
    return agent.collaterals(bytes.fromhex(nonce)).to_json()


@both.get(
    "/onchain/collaterals",
    summary="Evidence bundle for on-chain registration",
    description="The same bundle, quoted over `keccak256(abi.encode(keccak256(\"cvm-attest.quote.v1\"), chain_id, "
    "registry, <this CVM's address>, block_hash))`. The agent fills in its own address; nothing else can be "
    "bound. The bundle's `nonce` object repeats chain id, registry, block number and hash, and carries "
    "`golden_id` with `consent`, the CVM key's signature (r||s||v) over `keccak256(abi.encode("
    "keccak256(\"cvm-attest.consent.v1\"), chain_id, registry, <this CVM's address>, golden_id))`; with "
    "`cvm_address` that is what a relayer needs to build `registerCvm`/`refreshCvm`. A golden id the agent "
    "was not configured to consent to is refused (403 `agent.golden_not_consented`) and nothing is quoted. "
    + WHERE_BOTH,
    dependencies=[Depends(only_query("chain_id", "registry", "block_number", "block_hash", "golden_id"))],
    responses={403: {"model": ErrorBody, "description": "This CVM does not consent to that golden measurement"}},
    response_model=EvidenceBundleBody,
    response_model_exclude_none=True,
)
def onchain_collaterals(
    chain_id: int = Query(ge=1, le=(1 << 256) - 1, description="EIP-155 chain id"),
    registry: str = Query(pattern=_ADDRESS, description="CvmRegistry address, 0x-hex"),
    block_number: int = Query(ge=0, le=(1 << 64) - 1, description="A recent block's number"),
    block_hash: str = Query(pattern=_BYTES32, description="That block's hash, 0x-hex"),
    golden_id: str = Query(pattern=_BYTES32, description="The golden measurement to register under, 0x-hex"),
    agent: Agent = Depends(agent_of),
) -> dict[str, Any]:
    bundle = agent.onchain_collaterals(
        chain_id, registry, block_number, _hex_bytes(block_hash), _hex_bytes(golden_id)
    )
    return bundle.to_json()


@both.get(
    "/sealing/collaterals/{nonce}",
    summary="Evidence that binds the agent's sealing key, for a sender's nonce",
    description="The evidence bundle, quoted over `SHA-256(\"cvm-attest/sealing/v1\" || sealing_key || "
    "cvm_address || nonce)`; its `nonce` object is `{\"form\": \"sealing\", \"value\", \"sealing_key\"}`. "
    "`sealing_key` is the agent's X25519 key (created in memory at its start): a sender that verified this "
    "evidence seals secrets to it (HPKE, offchain.seal) for `POST /secrets`. The nonce is remembered for 10 minutes "
    "as the challenge one sealed upload may answer. " + WHERE_BOTH,
    dependencies=[Depends(only_query())],
    response_model=EvidenceBundleBody,
    response_model_exclude_none=True,
)
def sealing_collaterals(
    nonce: str = Path(pattern=_HEX_NONCE, description="1 to 64 bytes, hex"),
    agent: Agent = Depends(agent_of),
) -> dict[str, Any]:
    return agent.sealing_collaterals(bytes.fromhex(nonce)).to_json()


@both.get(
    "/onchain/sealing-key",
    summary="The sealing key, signed by the CVM key for a registry",
    description="`{cvm_address, chain_id, registry, sealing_key, signature}`: the CVM key's signature (r||s||v) over "
    "`keccak256(abi.encode(keccak256(\"cvm-attest.sealing-key.v1\"), chain_id, registry, cvm_address, "
    "sealing_key))`, what `CvmRegistry.publishSealingKey` takes from anyone while this CVM is attested. "
    + WHERE_BOTH,
    dependencies=[Depends(only_query("chain_id", "registry"))],
)
def onchain_sealing_key(
    chain_id: int = Query(ge=1, le=(1 << 256) - 1, description="EIP-155 chain id"),
    registry: str = Query(pattern=_ADDRESS, description="CvmRegistry address, 0x-hex"),
    agent: Agent = Depends(agent_of),
) -> dict[str, Any]:
    return agent.onchain_sealing_key(chain_id, registry)


@both.post(
    "/svsm/activate",
    summary="Activate a verifier's credential (svsm platform)",
    description="TPM2_ActivateCredential of this agent's AK under the SVSM vTPM's endorsement key: `{\"credential\"}` "
    "(hex) is what the verifier made with TPM2_MakeCredential for the AK's Name under the EK of the SVSM's manifest, "
    "which the vTPM releases only if it holds both keys. `challenge` is the extraData of the evidence the agent served "
    "(`GET /collaterals/{nonce}` or `/onchain/collaterals`): one activation per evidence, within 10 minutes (400 "
    "`svsm.challenge_unknown`); a credential the vTPM refuses is 400 `svsm.activation_failed`; 404 on other "
    "platforms. " + WHERE_BOTH,
    dependencies=[Depends(only_query())],
    responses={400: {"model": ErrorBody, "description": "Unknown, used or expired challenge, or a refused credential"},
               404: {"model": ErrorBody, "description": "Not the svsm platform"}},
)
def svsm_activate(body: SvsmActivateRequest, agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    credential = agent.svsm_activate(bytes.fromhex(body.challenge), bytes.fromhex(body.credential_blob),
                                     bytes.fromhex(body.secret))
    return {"credential": credential.hex()}


@both.get(
    "/golden-measurement",
    summary="Golden measurement of this CVM as it runs now",
    description="A golden-measurement document (docs/formats.md) with this CVM's launch measurement, guest "
    "policy, reported TCB as minimum, VMPL, product, signer, binding, every quoted PCR pinned to its current "
    "value and the PCR23 event list. Review it before publishing it. Its canonical id is in the `X-Golden-Id` "
    "header. A guest whose policy allows debugging (the host can read its memory) has none: 409 "
    "`policy.debug_allowed`. " + WHERE_BOTH,
    dependencies=[Depends(only_query())],
    responses={409: {"model": ErrorBody, "description": "This CVM is not one a golden measurement may describe"}},
)
def golden_measurement(agent: Agent = Depends(agent_of)) -> JSONResponse:
    golden = agent.golden_measurement()
    return JSONResponse(golden.to_json(), headers={"X-Golden-Id": "0x" + golden.canonical_id().hex()})


@both.get(
    "/identity",
    summary="CVM address, AK digest, platform",
    description="`ak_public_sha256` is SHA-256 of the AK's TPMT_PUBLIC (what REPORT_DATA binds); `ak_hash` is the "
    "same value under its deprecated name. The registry's `akHash` is another digest: keccak256 of the AK's key. "
    + WHERE_BOTH,
    dependencies=[Depends(only_query())],
    response_model=IdentityBody,
)
def identity(agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    return agent.identity()


@both.get("/platform", summary="Platform facts", description=WHERE_BOTH, dependencies=[Depends(only_query())])
def platform(agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    return agent.platform_info()


@both.get(
    "/healthz",
    summary="Liveness: TPM reachable, workload status",
    description=WHERE_BOTH,
    dependencies=[Depends(only_query())],
    response_model=HealthBody,
)
def healthz(agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    return agent.health()


@both.get(
    "/event-log",
    summary="The PCR23 workload event log",
    description="Every extend of PCR23, in order (docs/formats.md). " + WHERE_BOTH,
    dependencies=[Depends(only_query())],
    response_model=list[WorkloadEventBody],
)
def event_log(agent: Agent = Depends(agent_of)) -> list[dict[str, Any]]:
    return [event.to_json() for event in agent.workload.events()]


@both.get(
    "/boot-event-log",
    summary="The firmware's TCG event log",
    description="The crypto-agile TCG event log the firmware and the kernel's EFI stub wrote (PCRs 0-9), as "
    "`log` (base64, the bytes of `/sys/kernel/security/tpm0/binary_bios_measurements`), `events` (PCR, type, "
    "SHA-256 digest, data in hex) and `replay` (the SHA-256 value of each PCR it extends). 404 "
    "`boot_log.unavailable` where the firmware kept none (a TPM outside a VM). " + WHERE_BOTH,
    dependencies=[Depends(only_query())],
    responses={404: {"model": ErrorBody, "description": "No firmware event log on this machine"}},
)
def boot_event_log(agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    return agent.boot_event_log()


# --- internal only ----------------------------------------------------------------------------------

internal_only = APIRouter(tags=["internal only"], responses=_ERRORS)


@internal_only.post(
    "/offchain-verify",
    summary="Verify evidence with the off-chain verifier",
    description="The verdict of `offchain.evidence.verify_evidence`, shaped like `cvm-cli verify --json`: "
    "`{\"ok\", \"reason\", \"product\", \"signer\", \"report\", ...}`. AMD's pinned roots only, unless "
    "`dev_root` is given. A rejected evidence is 200 with `ok: false`; a malformed `golden` or `dev_root` is 422 "
    "(`input.invalid`): nothing was judged. " + WHERE_INTERNAL,
    dependencies=[Depends(only_query())],
    responses={422: {"model": ErrorBody, "description": "Malformed request: evidence JSON, nonce, golden or dev_root"}},
)
def offchain_verify(body: OffchainVerifyRequest, agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    return agent.offchain_verify(body.evidence, _hex_bytes(body.nonce), body.golden, body.dev_root)


@internal_only.post(
    "/sign-message",
    summary="Sign a message with the CVM key (EIP-191)",
    description="Every request is an audit line (`cvm_agent.audit`): the signed message's EIP-191 digest. "
    + WHERE_INTERNAL,
    dependencies=[Depends(only_query())],
    response_model=SignedMessageBody,
)
def sign_message(body: SignMessageRequest, request: Request, agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    data = _hex_bytes(body.hex) if body.hex is not None else None
    try:
        signed = agent.key.sign_message(text=body.text, data=data)
    except CvmAttestError as exc:
        audit_log.warning("sign-message refused for %s: [%s] %s", _client(request), exc.reason.value, exc.detail)
        raise
    audit_log.info("sign-message for %s: message_hash %s", _client(request), signed["message_hash"])
    return signed


@internal_only.post(
    "/sign-transaction",
    summary="Sign a transaction with the CVM key",
    description="Returns the raw signed transaction; the caller broadcasts it. `chainId` is required. Every "
    "request is an audit line (`cvm_agent.audit`): chain id, recipient, nonce and the signed hash. "
    + WHERE_INTERNAL,
    dependencies=[Depends(only_query())],
    response_model=SignedTransactionBody,
)
def sign_transaction(body: SignTransactionRequest, request: Request, agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    tx = body.transaction
    facts = f"chainId {tx.get('chainId')!r}, to {tx.get('to')!r}, nonce {tx.get('nonce')!r}"
    try:
        signed = agent.key.sign_transaction(tx)
    except CvmAttestError as exc:
        audit_log.warning("sign-transaction refused for %s (%s): [%s] %s", _client(request), facts, exc.reason.value,
                          exc.detail)
        raise
    audit_log.info("sign-transaction for %s: %s, hash %s", _client(request), facts, signed["hash"])
    return signed


@internal_only.post(
    "/unseal",
    summary="Open a box sealed to this CVM's published sealing key",
    description="Body: a sealed box (`application/json`, docs/formats.md) made by `cvm-cli secrets seal --to "
    "<this CVM> --registry ...`. Returns `{context, plaintext}` (base64). The sender is not authenticated by the "
    "box: the workload decides what to trust in it. " + WHERE_INTERNAL,
    dependencies=[Depends(only_query())],
    responses={400: {"model": ErrorBody, "description": "Sealed to another key or CVM, or altered"},
               415: {"model": ErrorBody, "description": "Not application/json"}},
)
async def unseal(request: Request, agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    return agent.unseal(await _json_body(request))


async def _json_body(request: Request) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise RequestError(Reason.HTTP_UNSUPPORTED_MEDIA_TYPE,
                           f"the body must be a sealed box with Content-Type: application/json, not "
                           f"{media_type or 'none'}")
    return await request.body()


# --- external only ----------------------------------------------------------------------------------

external_only = APIRouter(tags=["external only"])


#: The OpenAPI security scheme of the token-guarded routes. It only documents them: :func:`_bearer`
#: reads the header itself so that a missing or wrong token is the agent's typed 401, not FastAPI's.
BEARER_SCHEME = HTTPBearer(scheme_name="bearerToken", auto_error=False,
                           description="The agent's API token (--token-file), as 'Authorization: Bearer <token>'.")


def _client(request: Request) -> str:
    """Who asked, for logs: the peer's address and port, or the Unix socket."""
    return f"{request.client.host}:{request.client.port}" if request.client else "unix socket"


def _refuse(request: Request, error: RequestError) -> RequestError:
    audit_log.warning("token refused on %s %s for %s: [%s]", request.method, request.url.path, _client(request),
                      error.reason.value)
    return error


def _bearer(request: Request, _credentials: HTTPAuthorizationCredentials | None = Security(BEARER_SCHEME)) -> None:
    token: BearerToken | None = request.app.state.update_token
    if token is None:
        raise _refuse(request, RequestError(
            Reason.WORKLOAD_UPDATE_DISABLED,
            f"{request.url.path} is disabled: the agent was started without --token-file",
        ))
    header = request.headers.get("authorization")
    if not header:
        raise _refuse(request, RequestError(Reason.AUTH_REQUIRED, "an 'Authorization: Bearer <token>' header is required"))
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not token.matches(given.strip().encode()):
        raise _refuse(request, RequestError(Reason.AUTH_INVALID, "the bearer token is not valid"))


@external_only.post(
    UPDATE_PATH,
    summary="Replace the workload (zip upload)",
    description="Body: a zip (`Content-Type: application/zip`) holding `docker-compose.yml`, `config/`, "
    "`secrets/`, optionally `images.txt` and `images/*.tar` (docker save or OCI layout). Checked (no traversal, "
    "links, special files, oversize or malformed entries; no `docker-compose.yml` that gives a container the TPM, "
    "the SEV guest device, the host's namespaces or the agent's state), staged and swapped in atomically, measured "
    "into PCR23 (logged), then started with the runner. A rejected archive changes nothing. Needs "
    "`Authorization: Bearer <token>`. " + WHERE_EXTERNAL,
    dependencies=[Depends(only_query()), Depends(_bearer)],
    responses={
        400: {"model": ErrorBody, "description": "Malformed or unsafe archive, or a forbidden docker-compose.yml"},
        401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
        403: {"model": ErrorBody, "description": "Updates disabled"},
        413: {"model": ErrorBody, "description": "Archive too large"},
        415: {"model": ErrorBody, "description": "The body is not declared application/zip"},
        502: {"model": ErrorBody, "description": "Installed and measured, but the runner failed"},
        503: {"model": ErrorBody, "description": "TPM unavailable"},
    },
    response_model=WorkloadUpdateBody,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def update_workload(request: Request, agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/zip":
        raise RequestError(Reason.HTTP_UNSUPPORTED_MEDIA_TYPE,
                           f"the body must be a zip with Content-Type: application/zip, not {media_type or 'none'}")
    limit = agent.config.limits.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and _is_decimal(declared) and int(declared) > limit:
        raise RequestError(Reason.WORKLOAD_ARCHIVE_TOO_LARGE, f"the upload is larger than {limit} bytes")
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY, mode="w+b", dir=str(agent.config.state_dir)) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(Reason.WORKLOAD_ARCHIVE_TOO_LARGE, f"the upload is larger than {limit} bytes")
            spool.write(chunk)
        spool.seek(0)
        result = await run_in_threadpool(agent.workload.apply_update, spool)
    return {
        "status": agent.workload.status,
        "pcr23": result.pcr23.hex(),
        "events": [event.to_json() for event in result.events],
        "files": list(result.files),
    }


@external_only.post(
    "/secrets",
    summary="Install the workload's secrets, sealed to the agent's key",
    description="Body: a sealed box (`application/json`) of the `upload` purpose, sealed by `cvm-cli upload` to the "
    "`sealing_key` of `GET /sealing/collaterals/{nonce}` after that evidence verified, for that nonce (one box per "
    "challenge, within 10 minutes). Its plaintext lists the files of `secrets/`; they replace the workload's "
    "`secrets/` whole, mode 0600, and only where the workload directory is in memory (tmpfs). Never measured, "
    "never logged. Needs `Authorization: Bearer <token>`. " + WHERE_EXTERNAL,
    dependencies=[Depends(only_query()), Depends(_bearer)],
    responses={
        400: {"model": ErrorBody, "description": "Sealed to another key or CVM, altered, or no such challenge"},
        401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
        403: {"model": ErrorBody, "description": "Disabled (no --token-file)"},
        409: {"model": ErrorBody, "description": "The workload directory is not in memory"},
        415: {"model": ErrorBody, "description": "Not application/json"},
        422: {"model": ErrorBody, "description": "Not a sealed box"},
    },
)
async def install_secrets(request: Request, agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    body = await _json_body(request)
    return await run_in_threadpool(agent.install_secrets, body)


_TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    403: {"model": ErrorBody, "description": "Disabled (no --token-file)"},
}


@external_only.get(
    CONSENTS_PATH,
    summary="Golden measurements this CVM consents to",
    description="Every golden id `GET /onchain/collaterals` accepts, with its source: `configured` "
    "(`--consent-golden`, `--consent-file`) or `runtime` (added by `POST " + CONSENTS_PATH + "`, kept in the "
    "state directory). Needs `Authorization: Bearer <token>`. " + WHERE_EXTERNAL,
    dependencies=[Depends(only_query()), Depends(_bearer)],
    responses=_TOKEN_ERRORS,
)
def list_golden_consents(agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    return {"consents": agent.consents.entries()}


@external_only.post(
    CONSENTS_PATH,
    summary="Consent to a golden measurement",
    description="From now on (and after a restart) `GET /onchain/collaterals` signs this CVM's consent to be "
    "registered under `golden_id`. `added` is false when it was consented already. Needs "
    "`Authorization: Bearer <token>`. " + WHERE_EXTERNAL,
    dependencies=[Depends(only_query()), Depends(_bearer)],
    responses={**_TOKEN_ERRORS, 422: {"model": ErrorBody, "description": "Not a golden id, or too many"}},
)
def add_golden_consent(body: GoldenConsentRequest, agent: Agent = Depends(agent_of)) -> dict[str, Any]:
    added = agent.consents.add(_hex_bytes(body.golden_id))
    if added:
        log.info("consent to golden measurement %s added", body.golden_id.lower())
    return {"golden_id": body.golden_id.lower(), "added": added, "consents": agent.consents.entries()}


# --- the two applications ---------------------------------------------------------------------------


def _app(title: str, agent: Agent, routers: list[APIRouter], update_token: BearerToken | None) -> FastAPI:
    app = FastAPI(
        title=title,
        version="1",
        description="cvm-attest agent: evidence that this workload runs in a genuine AMD SEV-SNP CVM "
        "(see docs/agent.md).",
    )
    app.state.agent = agent
    app.state.update_token = update_token
    for router in routers:
        app.include_router(router)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit)

    @app.middleware("http")
    async def access(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.monotonic()
        response = await call_next(request)
        access_log.info("%s %s %d %.1fms %s", request.method, request.url.path, response.status_code,
                        (time.monotonic() - started) * 1000, _client(request))
        return response

    return app


@dataclass(frozen=True, slots=True)
class BearerToken:
    """The bearer token of the token-guarded routes, kept as the token or only as its SHA-256.

    A hashed token (a file holding ``sha256:HEX``) can sit where others can read it, e.g. in the
    root filesystem of a CVM image (``cvm-cli image build --api-token-sha256``), which the cloud
    provider can read: the provider learns the hash, never the token."""

    value: bytes
    hashed: bool = False

    @classmethod
    def plain(cls, token: bytes) -> BearerToken:
        return cls(token)

    def matches(self, given: bytes) -> bool:
        if self.hashed:
            return hmac.compare_digest(hashlib.sha256(given).digest(), self.value)
        return hmac.compare_digest(given, self.value)


_HASHED_TOKEN = re.compile(rb"sha256:([0-9a-f]{64})")


def read_token(path: FilePath) -> BearerToken:
    """The update token: the file's content without surrounding whitespace, at least 16 printable
    characters; or ``sha256:`` and the SHA-256 of such a token in lowercase hex."""
    try:
        token = path.read_bytes().strip()
    except OSError as exc:
        raise RequestError(Reason.INPUT_INVALID, f"cannot read the token file {path}: {exc.strerror}") from None
    hashed = _HASHED_TOKEN.fullmatch(token)
    if hashed:
        return BearerToken(bytes.fromhex(hashed[1].decode()), hashed=True)
    if token.startswith(b"sha256:"):
        raise RequestError(Reason.INPUT_INVALID, f"{path} starts with sha256: but is not sha256: and 64 lowercase hex "
                           "digits")
    if len(token) < 16 or not re.fullmatch(rb"[\x21-\x7e]+", token):
        raise RequestError(Reason.INPUT_INVALID, f"the token in {path} must be at least 16 printable characters, "
                           "or sha256: and 64 lowercase hex digits")
    return BearerToken.plain(token)


def create_apps(agent: Agent, *, update_token: BearerToken | None) -> tuple[FastAPI, FastAPI]:
    """``(internal, external)`` applications for ``agent``; ``update_token`` None disables updates."""
    internal = _app("cvm-agent (internal listener)", agent, [both, internal_only], None)
    external = _app("cvm-agent (external listener)", agent, [both, external_only], update_token)
    return internal, external

