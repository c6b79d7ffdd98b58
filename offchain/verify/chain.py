"""The AMD certificate chain: ARK -> ASK/ASVK -> VCEK/VLEK, ending at a pinned root.

AMD SEV-SNP ABI specification, chapter "VCEK/VLEK certificates", and AMD's "VCEK Certificate and KDS
Interface Specification": every certificate in the chain is signed with RSASSA-PSS, SHA-384, MGF1
with SHA-384 and a 48-byte salt; the ARK signs itself, the ASK (the ASVK for VLEKs) and nothing
else; the ASK signs VCEKs, the ASVK signs VLEKs; leaves carry an EC P-384 key.

:func:`verify_chain` checks, in this order, and raises on the first failure:

1. the ARK's public key is pinned in the given :class:`~offchain.trust.TrustRoots`
   (``snp.chain.root_not_pinned``: a self-made chain that signs perfectly stops here);
2. the ARK's self-signature;
3. one product line throughout: the pin, the intermediate's CN and the leaf's productName;
4. the intermediate's kind matches the leaf's (ASK for VCEK, ASVK for VLEK);
5. ARK -> intermediate and intermediate -> leaf signatures;
6. the leaf key is EC P-384;
7. every certificate is valid at ``now`` (a parameter; nothing here reads the clock).

A :class:`ChainCache` remembers successful verifications keyed by the exact certificate bytes and
the pinned set; a hit re-checks only the validity windows against ``now``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from offchain.abi.certext import AmdCertExtensions
from offchain.abi.snp_report import Product, SignerKind
from offchain.errors import ParseError, Reason, VerificationError
from offchain.trust.certs import CertRole, classify, common_name, to_der
from offchain.trust.roots import PinnedRoot, TrustRoots

#: RSASSA-PSS as AMD signs every certificate: SHA-384, MGF1-SHA-384, 48-byte salt.
AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


@dataclass(frozen=True, slots=True)
class ValidityWindow:
    """One certificate's notBefore/notAfter, kept so a cached chain can be re-checked at any time."""

    role: CertRole
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True)
class VerifiedChain:
    """An AMD chain that verified up to a pinned ARK. Exists only after every check passed."""

    product: Product
    signer: SignerKind
    root: PinnedRoot
    ark: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePublicKey
    extensions: AmdCertExtensions
    validity: tuple[ValidityWindow, ...]

    def check_validity(self, now: datetime) -> None:
        """Every certificate must be valid at ``now`` (CHAIN_NOT_YET_VALID / CHAIN_EXPIRED)."""
        if now.tzinfo is not None and self.valid_from <= now <= self.valid_until:
            return  # inside every window: the common case, without per-certificate work
        check_validity(self.validity, now)

    @property
    def valid_from(self) -> datetime:
        return max(w.not_before for w in self.validity)

    @property
    def valid_until(self) -> datetime:
        return min(w.not_after for w in self.validity)


def utc(now: datetime) -> datetime:
    """``now`` as an aware UTC datetime; a naive one is refused rather than guessed."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ParseError(Reason.INPUT_INVALID, "verification time must carry a time zone", now=now.isoformat())
    return now.astimezone(timezone.utc)


def check_validity(windows: Sequence[ValidityWindow], now: datetime) -> None:
    moment = utc(now)
    for window in windows:
        if moment < window.not_before:
            raise VerificationError(
                Reason.CHAIN_NOT_YET_VALID,
                f"the {window.role.value.upper()} is valid from {window.not_before.isoformat()}, "
                f"verification time is {moment.isoformat()}",
                role=window.role.value,
                not_before=window.not_before.isoformat(),
            )
        if moment > window.not_after:
            raise VerificationError(
                Reason.CHAIN_EXPIRED,
                f"the {window.role.value.upper()} expired at {window.not_after.isoformat()}, "
                f"verification time is {moment.isoformat()}",
                role=window.role.value,
                not_after=window.not_after.isoformat(),
            )


def verify_pss_signature(issuer: x509.Certificate, subject: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``subject`` with AMD's RSASSA-PSS SHA-384 parameters."""
    return amd_pss_signed(issuer, subject.signature, subject.tbs_certificate_bytes, subject.signature_algorithm_oid)


def amd_pss_signed(issuer: x509.Certificate, signature: bytes, tbs: bytes, algorithm: x509.ObjectIdentifier) -> bool:
    """Whether ``issuer``'s RSA key made ``signature`` over ``tbs`` (a certificate's or a CRL's) with
    AMD's RSASSA-PSS SHA-384 parameters, the declared ``algorithm`` being RSASSA-PSS."""
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or algorithm != x509.SignatureAlgorithmOID.RSASSA_PSS:
        return False
    try:
        key.verify(signature, tbs, AMD_PSS, hashes.SHA384())
    except InvalidSignature:
        return False
    return True


def verify_chain(
    leaf: x509.Certificate,
    intermediate: x509.Certificate,
    ark: x509.Certificate,
    *,
    roots: TrustRoots,
    now: datetime,
    cache: ChainCache | None = None,
) -> VerifiedChain:
    """Verify ARK -> ASK/ASVK -> VCEK/VLEK to a pinned root at time ``now`` (see module docstring)."""
    key = None
    if cache is not None:
        key = cache.key((to_der(leaf), to_der(intermediate), to_der(ark)), roots)
        hit = cache.get(key)
        if hit is not None:
            hit.check_validity(now)
            return hit
    chain = _verify(leaf, intermediate, ark, roots=roots)
    chain.check_validity(now)
    if cache is not None and key is not None:
        cache.put(key, chain)
    return chain


def _verify(leaf: x509.Certificate, intermediate: x509.Certificate, ark: x509.Certificate, *, roots: TrustRoots) -> VerifiedChain:
    if classify(ark) is not CertRole.ARK:
        raise VerificationError(Reason.CHAIN_INCOMPLETE, f"the root given is not an ARK (CN={common_name(ark)!r})")
    root = roots.lookup(ark)
    if root is None:
        raise VerificationError(
            Reason.CHAIN_ROOT_NOT_PINNED,
            f"the ARK {common_name(ark)!r} is not a pinned root (its key is not AMD's"
            " and no development root was given for it)",
        )
    if not verify_pss_signature(ark, ark):
        raise VerificationError(Reason.CHAIN_ARK_SIGNATURE, "the ARK's self-signature does not verify")

    leaf_role = classify(leaf)
    signer = leaf_role.signer
    if signer is None:
        raise VerificationError(
            Reason.CHAIN_INCOMPLETE, f"the leaf given is not a VCEK or VLEK (CN={common_name(leaf)!r})"
        )
    inter_role = classify(intermediate)
    if inter_role not in (CertRole.ASK, CertRole.ASVK):
        raise VerificationError(
            Reason.CHAIN_WRONG_INTERMEDIATE,
            f"the intermediate given is not an ASK or ASVK (CN={common_name(intermediate)!r})",
        )

    extensions = AmdCertExtensions.from_certificate(leaf)
    leaf_product = Product.from_name(extensions.product_name)
    inter_product = Product.from_name(common_name(intermediate))
    if not root.product == inter_product == leaf_product:
        raise VerificationError(
            Reason.CHAIN_PRODUCT_MISMATCH,
            f"products differ along the chain: ARK {root.product.value}, "
            f"{inter_role.value.upper()} {inter_product.value}, {leaf_role.value.upper()} {leaf_product.value}",
            ark=root.product.value,
            intermediate=inter_product.value,
            leaf=leaf_product.value,
        )
    if inter_role is not CertRole.intermediate_for(signer):
        raise VerificationError(
            Reason.CHAIN_WRONG_INTERMEDIATE,
            f"a {signer.value.upper()} is issued by the {CertRole.intermediate_for(signer).value.upper()},"
            f" not the {inter_role.value.upper()}",
            leaf=signer.value,
            intermediate=inter_role.value,
        )
    if not verify_pss_signature(ark, intermediate):
        raise VerificationError(
            Reason.CHAIN_ASK_SIGNATURE, f"the {inter_role.value.upper()} is not signed by the pinned ARK"
        )
    if not verify_pss_signature(intermediate, leaf):
        raise VerificationError(
            Reason.CHAIN_LEAF_SIGNATURE,
            f"the {leaf_role.value.upper()} is not signed by the {inter_role.value.upper()}",
        )
    leaf_key = leaf.public_key()
    if not (isinstance(leaf_key, ec.EllipticCurvePublicKey) and isinstance(leaf_key.curve, ec.SECP384R1)):
        raise ParseError(Reason.CERT_MALFORMED, f"the {leaf_role.value.upper()} key is not EC P-384")
    return VerifiedChain(
        product=root.product,
        signer=signer,
        root=root,
        ark=ark,
        intermediate=intermediate,
        leaf=leaf,
        leaf_key=leaf_key,
        extensions=extensions,
        validity=tuple(
            ValidityWindow(role, cert.not_valid_before_utc, cert.not_valid_after_utc)
            for role, cert in ((CertRole.ARK, ark), (inter_role, intermediate), (leaf_role, leaf))
        ),
    )


class ChainCache:
    """Successful chain verifications, keyed by the certificates' exact bytes and the pinned roots.

    Bounded (least recently used entries go first) and safe to share between threads. Failures
    are never cached. Give one to :func:`verify_chain` or ``verify_evidence`` to skip the three
    RSA-4096 verifications and the certificate parsing for a chip already seen.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._entries: OrderedDict[bytes, VerifiedChain] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(certificates: Sequence[bytes], roots: TrustRoots) -> bytes:
        """The cache key for certificates given as bytes (DER, or PEM text as received)."""
        h = hashlib.sha256(roots.cache_key)
        for blob in certificates:
            h.update(len(blob).to_bytes(4, "big") + blob)
        return h.digest()

    def get(self, key: bytes) -> VerifiedChain | None:
        with self._lock:
            chain = self._entries.get(key)
            if chain is not None:
                self._entries.move_to_end(key)
            return chain

    def put(self, key: bytes, chain: VerifiedChain) -> None:
        with self._lock:
            self._entries[key] = chain
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
