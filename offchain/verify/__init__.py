"""Cryptographic verification: AMD chain to a pinned root (and its CRL), report signature, AK binding,
TPM quote.

Each verifier returns a typed, frozen result only after every one of its checks passed.
"""

from offchain.verify.binding import verify_azure_binding, verify_direct_binding
from offchain.verify.chain import ChainCache, VerifiedChain, verify_chain
from offchain.verify.quote import VerifiedQuote, verify_quote
from offchain.verify.report import VerifiedReport, verify_report
from offchain.verify.revocation import CrlSource, check_revocation

__all__ = [
    "ChainCache",
    "CrlSource",
    "VerifiedChain",
    "VerifiedQuote",
    "VerifiedReport",
    "check_revocation",
    "verify_azure_binding",
    "verify_chain",
    "verify_direct_binding",
    "verify_quote",
    "verify_report",
]
