"""Trust roots: pinned AMD ARK keys, certificate loading, AMD KDS fetch with an on-disk cache."""

from offchain.trust.certs import CertificateSet, CertRole, classify, load_certificates, parse_certificates
from offchain.trust.kds import KDS_BASE_URL, Fetcher, KdsClient, UrllibFetcher
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, PinnedRoot, TrustRoots, spki_fingerprint

__all__ = [
    "AMD_ARK_SPKI_SHA256",
    "KDS_BASE_URL",
    "CertRole",
    "CertificateSet",
    "Fetcher",
    "KdsClient",
    "PinnedRoot",
    "TrustRoots",
    "UrllibFetcher",
    "classify",
    "load_certificates",
    "parse_certificates",
    "spki_fingerprint",
]
