"""A FastAPI dependency that lets only attested CVMs call an endpoint.

The CVM signs each request (see :func:`onchain.sdk.request_message`) with its attested key and sends
three headers::

    X-Cvm-Address:   0x…   (the CVM's address)
    X-Cvm-Timestamp: 1764072000
    X-Cvm-Signature: 0x…   (EIP-191 signature over the request message)

Usage::

    registry = Registry(Web3(Web3.HTTPProvider(rpc)), registry_address)

    @app.post("/prices", dependencies=[])
    async def post_price(cvm: str = Depends(require_attested_cvm(registry))): ...

A missing or malformed header is a 401, a stale timestamp or a bad signature a 401, and a signer
that is not attested (or not for the required golden measurement) a 403; an unreachable chain a
503. FastAPI renders each as ``{"detail": {"reason": ..., "detail": ...}}`` with the stable reasons
of :mod:`offchain.errors`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from offchain.errors import CvmAttestError, Reason
from onchain.sdk import DEFAULT_MAX_AGE_S, Registry

ADDRESS_HEADER = "X-Cvm-Address"
TIMESTAMP_HEADER = "X-Cvm-Timestamp"
SIGNATURE_HEADER = "X-Cvm-Signature"


def require_attested_cvm(registry: Registry, *, golden_id: bytes | None = None,
                         max_age_s: int = DEFAULT_MAX_AGE_S) -> Callable[[Request], Awaitable[str]]:
    """A dependency returning the calling CVM's address once its signed request checks out."""

    async def dependency(request: Request) -> str:
        address = request.headers.get(ADDRESS_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not (address and timestamp and signature):
            raise HTTPException(401, {"reason": Reason.AUTH_REQUIRED.value,
                                      "detail": f"{ADDRESS_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} required"})
        try:
            ts = int(timestamp)
        except ValueError:
            raise HTTPException(401, {"reason": Reason.SIGNED_REQUEST_INVALID.value,
                                      "detail": f"{TIMESTAMP_HEADER} is not an integer"}) from None
        body = await request.body()
        try:
            # The registry is read over JSON-RPC: keep the event loop free while it answers.
            return await run_in_threadpool(
                registry.verify_signed_request, method=request.method, path=request.url.path, body=body,
                timestamp=ts, signature=signature, claimed_address=address, golden_id=golden_id,
                max_age_s=max_age_s)
        except CvmAttestError as exc:
            status = 503 if exc.reason is Reason.CHAIN_RPC_UNAVAILABLE else (
                403 if exc.reason is Reason.REGISTRY_NOT_ATTESTED else 401)
            raise HTTPException(status, exc.to_dict()) from None

    return dependency
