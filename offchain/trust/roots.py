"""Pinned AMD root keys (PROTOCOL.md, "Trust roots").

Each product line's AMD Root Key (ARK) is pinned by the SHA-256 fingerprint of its public key: the
DER ``SubjectPublicKeyInfo`` of the RSA-4096 key, which the ARK certificate, the KDS
``cert_chain`` and the ``ark.pem`` files shipped by AMD's tools all carry unchanged. Pinning the key
rather than the certificate keeps a re-issued ARK certificate for the same key valid and a
look-alike certificate for another key worthless, however well it verifies.

A development root (the simulated platform's ARK made by ``offchain.devamd``) is trusted only by a
:class:`TrustRoots` a caller built with :meth:`TrustRoots.with_dev_root`; nothing trusts it by
default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from offchain.abi.snp_report import Product
from offchain.errors import ParseError, Reason

#: SHA-256 of the DER SubjectPublicKeyInfo of each AMD ARK (RSA-4096). A published fact: compute it
#: from the ARK (second certificate) of ``https://kdsintf.amd.com/vcek/v1/<Product>/cert_chain`` with
#: ``openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum``.
AMD_ARK_SPKI_SHA256: Mapping[Product, bytes] = MappingProxyType(
    {
        Product.MILAN: bytes.fromhex("9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9"),
        Product.GENOA: bytes.fromhex("429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831"),
        Product.TURIN: bytes.fromhex("4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08"),
    }
)


def spki_fingerprint(subject: x509.Certificate | PublicKeyTypes) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo of a certificate's (or a bare) public key."""
    key = subject.public_key() if isinstance(subject, x509.Certificate) else subject
    return hashlib.sha256(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).digest()


@dataclass(frozen=True, slots=True)
class PinnedRoot:
    """One trusted ARK: its key fingerprint, the product line it roots, and whether it is AMD's."""

    fingerprint: bytes
    product: Product
    development: bool = False


@dataclass(frozen=True, slots=True)
class TrustRoots:
    """An immutable set of pinned ARK keys. ``TrustRoots()`` is AMD's three product lines.

    Verification of an AMD chain (``offchain.verify.chain``) starts by looking the ARK up here:
    an ARK whose key is not pinned is rejected with ``snp.chain.root_not_pinned`` before any
    signature is checked.
    """

    roots: tuple[PinnedRoot, ...] = tuple(
        PinnedRoot(fingerprint, product) for product, fingerprint in AMD_ARK_SPKI_SHA256.items()
    )
    #: A stable digest of the pinned set, part of every chain-cache key (derived, not compared).
    cache_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", tuple(self.roots))
        h = hashlib.sha256()
        for root in sorted(self.roots, key=lambda r: r.fingerprint):
            h.update(root.fingerprint + root.product.value.encode() + bytes([root.development]))
        object.__setattr__(self, "cache_key", h.digest())

    @classmethod
    def amd(cls) -> TrustRoots:
        """AMD's pinned ARKs for Milan, Genoa and Turin (the default)."""
        return cls()

    @classmethod
    def empty(cls) -> TrustRoots:
        """No root at all: every chain is rejected. Useful to build a development-only set."""
        return cls(roots=())

    def with_dev_root(self, ark: x509.Certificate) -> TrustRoots:
        """A copy that also trusts ``ark`` (a development ARK, e.g. the simulated platform's).

        The product line comes from the ARK's common name (``ARK-Genoa``...). Only callers that
        were explicitly told to (``--dev-root``) may use this.
        """
        product = _product_of_ark(ark)
        root = PinnedRoot(spki_fingerprint(ark), product, development=True)
        if any(r.fingerprint == root.fingerprint for r in self.roots):
            return self
        return TrustRoots(roots=self.roots + (root,))

    def lookup(self, ark: x509.Certificate) -> PinnedRoot | None:
        """The pin matching this ARK's public key, or ``None`` when it is not trusted."""
        fingerprint = spki_fingerprint(ark)
        for root in self.roots:
            if root.fingerprint == fingerprint:
                return root
        return None

    def __iter__(self) -> Iterator[PinnedRoot]:
        return iter(self.roots)

    def __len__(self) -> int:
        return len(self.roots)


def _product_of_ark(ark: x509.Certificate) -> Product:
    names = ark.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else ""
    if not common_name.startswith("ARK-"):
        raise ParseError(
            Reason.CERT_MALFORMED, f"a root must be an ARK (CN=ARK-<product>), got CN={common_name!r}"
        )
    return Product.from_name(common_name)
