"""Deploying a registry and pinning its roots: what ``cvm-cli contract deploy`` and the demo do."""

from __future__ import annotations

from cryptography import x509
from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.trust.roots import AMD_ARK_SPKI_SHA256, TrustRoots
from onchain.client import RegistryClient


def deploy_registry(
    w3: Web3,
    *,
    account: LocalAccount | None = None,
    sender: str | None = None,
    amd_roots: bool = True,
    dev_root: x509.Certificate | None = None,
) -> RegistryClient:
    """Deploy a ``CvmRegistry`` owned by the deployer and pin AMD's ARKs and/or a development ARK.

    A development root is pinned only when given: nothing trusts the simulated platform by default.
    """
    client = RegistryClient.deploy(w3, account=account, sender=sender)
    if amd_roots:
        for product, key_hash in AMD_ARK_SPKI_SHA256.items():
            client.pin_root(product, key_hash)
    if dev_root is not None:
        for root in TrustRoots.empty().with_dev_root(dev_root):
            if root.fingerprint not in AMD_ARK_SPKI_SHA256.values():
                client.pin_root(root.product, root.fingerprint)
    return client
