"""Session fixtures for contract tests: one anvil (default hardfork, EIP-7825 cap enforced), web3, deployer.

Contract tests compile their harness once per session with ``tests.support.evm.compile_contracts``
(cached on disk too) and deploy it into this one chain.

Tests that take an ``amd_signed_cert`` argument run once per real AMD certificate in
../shared/vectors (ARK self-signed, ARK -> ASK/ASVK, ASK/ASVK -> VCEK/VLEK); they skip when the
vectors are absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.conftest import vectors_root
from tests.support.chain_fixtures import anvil, deployer, w3  # noqa: F401 (pytest fixtures)


@dataclass(frozen=True, slots=True)
class AmdSignedCert:
    """One real AMD certificate and the certificate whose key signed it (itself for an ARK)."""

    id: str
    path: Path
    issuer_path: Path

    def load(self) -> tuple[x509.Certificate, x509.Certificate]:
        return _load_cert(self.path), _load_cert(self.issuer_path)

    @property
    def der(self) -> bytes:
        return self.load()[0].public_bytes(Encoding.DER)


def _load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    return x509.load_pem_x509_certificate(data) if data.startswith(b"-----") else x509.load_der_x509_certificate(data)


LEAF_FILES = ("vcek.der", "vcek.pem", "vlek.der", "vlek.pem")


def amd_signed_certs(root: Path | None = None) -> list[AmdSignedCert]:
    """Every (certificate, issuer) pair of the vectors: per product ARK, ASK, ASVK under amd-roots/, then
    every VCEK/VLEK under snp/ and azure/ with the ASK/ASVK of its directory. Empty when absent."""
    root = root or vectors_root()
    pairs: list[AmdSignedCert] = []
    for product_dir in sorted((root / "amd-roots").glob("*")):
        ark = product_dir / "ark.pem"
        for name in ("ark", "ask", "asvk"):
            if (product_dir / f"{name}.pem").is_file() and ark.is_file():
                pairs.append(AmdSignedCert(f"{product_dir.name}/{name}", product_dir / f"{name}.pem", ark))
    for vector in sorted([*root.glob("snp/*"), *root.glob("azure/*")]):
        for leaf in LEAF_FILES:
            issuer = vector / ("asvk.pem" if leaf.startswith("vlek") else "ask.pem")
            if (vector / leaf).is_file() and issuer.is_file():
                pairs.append(AmdSignedCert(f"{vector.parent.name}/{vector.name}/{leaf}", vector / leaf, issuer))
    return pairs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "amd_signed_cert" in metafunc.fixturenames:
        pairs = amd_signed_certs()
        metafunc.parametrize("amd_signed_cert", pairs, ids=[p.id for p in pairs])
