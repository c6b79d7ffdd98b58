"""Connecting to a chain's JSON-RPC endpoint with a typed error when it does not answer."""

from __future__ import annotations

from web3 import Web3

from offchain.errors import ChainError, Reason


def connect(rpc: str, *, timeout_s: float = 60.0) -> Web3:
    """A Web3 on ``rpc`` that has answered ``eth_chainId`` once."""
    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": timeout_s}))
    try:
        w3.eth.chain_id
    except Exception as exc:  # noqa: BLE001 - any transport failure means the same to the caller
        raise ChainError(Reason.CHAIN_RPC_UNAVAILABLE, f"{rpc}: {exc}") from None
    return w3
