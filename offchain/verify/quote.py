"""The vTPM quote: TPMS_ATTEST signed by the AK, fresh and over the PCR values given.

TPM 2.0 Library Part 3, 18.4 TPM2_Quote, and Part 2: 10.12.8 TPMS_ATTEST (``magic`` must be
TPM_GENERATED_VALUE, ``type`` TPM_ST_ATTEST_QUOTE), 10.12.1 TPMS_QUOTE_INFO (``pcrDigest`` is the
digest, with the signing scheme's hash, of the selected PCR values concatenated in selection
order: banks in list order, PCRs ascending within a bank), 11.3.4 TPMT_SIGNATURE.

Signatures accepted: RSASSA-PKCS1-v1_5 and RSASSA-PSS by RSA AKs, ECDSA by P-256/P-384 AKs, each
with SHA-256, SHA-384 or SHA-512 (SHA-1 is refused), and the bare 256/384/512-byte RSASSA-PKCS1-v1_5
SHA-256 signature Azure's vTPM tooling hands out instead of a TPMT_SIGNATURE.

:func:`verify_quote` checks magic, type, the signature, ``extraData`` against the value the
verifier expects (constant time), that the PCR values given are exactly the quoted selection of
one bank, and the PCR digest.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from offchain.abi.tpm import (
    HASH_ALGORITHMS,
    TPM_ALG_ECDSA,
    TPM_ALG_RSAPSS,
    TPM_ALG_RSASSA,
    TPM_ALG_SHA1,
    TPM_ALG_SHA256,
    TPM_ALG_SHA384,
    TPM_ALG_SHA512,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
    digest,
)
from offchain.errors import ParseError, Reason, VerificationError

AkKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_SIGNATURE_HASHES: dict[int, hashes.HashAlgorithm] = {
    TPM_ALG_SHA256: hashes.SHA256(),
    TPM_ALG_SHA384: hashes.SHA384(),
    TPM_ALG_SHA512: hashes.SHA512(),
}
_DIGEST_SIZES = {alg: h.digest_size for alg, h in _SIGNATURE_HASHES.items()} | {TPM_ALG_SHA1: 20}


@dataclass(frozen=True, slots=True)
class QuotedAttest:
    """TPMS_ATTEST bytes together with their parse, made only from the bytes (so the two agree).

    Lets a holder of evidence parse once (and reject malformed input early) and verify many times.
    """

    raw: bytes
    attest: TpmsAttest = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attest", TpmsAttest.from_bytes(self.raw))


@dataclass(frozen=True, slots=True)
class VerifiedQuote:
    """A quote whose signature, freshness and PCR digest verified; ``pcrs`` are the quoted values."""

    attest: TpmsAttest
    bank: int
    pcrs: Mapping[int, bytes]


def ak_key(ak: TpmtPublic | AkKey) -> AkKey:
    """The AK as a ``cryptography`` key, from a TPMT_PUBLIC or as given."""
    if isinstance(ak, TpmtPublic):
        return ak.public_key()
    return ak


#: objectAttributes an AK must have (Part 2, 8.3.2): fixedTPM (bit 1), restricted (16), sign (18).
#: Only a restricted key refuses to sign data that starts with TPM_GENERATED_VALUE, so only its
#: quotes prove PCR values; fixedTPM keeps it inside this TPM.
AK_REQUIRED_ATTRIBUTES = (1 << 1) | (1 << 16) | (1 << 18)


def check_ak_attributes(ak: TpmtPublic) -> None:
    """The AK must be a restricted signing key that never leaves the TPM (``tpm.public.ak_attributes_invalid``)."""
    if ak.object_attributes & AK_REQUIRED_ATTRIBUTES != AK_REQUIRED_ATTRIBUTES:
        raise VerificationError(
            Reason.TPM_AK_ATTRIBUTES,
            f"AK objectAttributes {ak.object_attributes:#010x} lack fixedTPM, restricted or sign",
            object_attributes=ak.object_attributes,
        )


def quote_signature_valid(attest_bytes: bytes, signature: TpmtSignature | bytes, key: AkKey) -> bool:
    """Whether ``key`` signed ``attest_bytes``; ParseError for algorithms this verifier refuses.

    ``signature`` is a TPMT_SIGNATURE, or raw bytes: a bare RSASSA-PKCS1-v1_5 SHA-256 signature.
    """
    try:
        if isinstance(signature, bytes):
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(signature, attest_bytes, padding.PKCS1v15(), hashes.SHA256())
            return True
        hash_alg = _SIGNATURE_HASHES.get(signature.hash_alg)
        if hash_alg is None:
            raise VerificationError(
                Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED,
                f"quote hash algorithm {HASH_ALGORITHMS.get(signature.hash_alg, hex(signature.hash_alg))} is refused",
                hash_alg=signature.hash_alg,
            )
        if signature.sig_alg == TPM_ALG_RSASSA:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(signature.signature, attest_bytes, padding.PKCS1v15(), hash_alg)
        elif signature.sig_alg == TPM_ALG_RSAPSS:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            pss = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.AUTO)
            key.verify(signature.signature, attest_bytes, pss, hash_alg)
        elif signature.sig_alg == TPM_ALG_ECDSA:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            key.verify(encode_dss_signature(signature.r, signature.s), attest_bytes, ec.ECDSA(hash_alg))
        else:
            raise VerificationError(
                Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED,
                f"quote signature algorithm {signature.sig_alg:#06x} is refused",
                sig_alg=signature.sig_alg,
            )
    except InvalidSignature:
        return False
    return True


def pcr_digest(attest: TpmsAttest, pcrs: Mapping[int, bytes], hash_alg: int) -> bytes:
    """H(selected PCR values in selection order) with the signing scheme's hash ``hash_alg``."""
    values = b"".join(pcrs[index] for selection in attest.pcr_selections for index in selection.pcrs)
    return digest(hash_alg, values)


def verify_quote(
    attest_bytes: bytes | QuotedAttest,
    signature: TpmtSignature | bytes,
    ak: TpmtPublic | AkKey,
    *,
    expected_extra_data: bytes,
    pcrs: Mapping[int, bytes],
    bank: int = TPM_ALG_SHA256,
) -> VerifiedQuote:
    """Verify a TPM2_Quote (see module docstring); ``pcrs`` are the ``bank`` values claimed quoted."""
    quoted = attest_bytes if isinstance(attest_bytes, QuotedAttest) else QuotedAttest(attest_bytes)
    attest, attest_bytes = quoted.attest, quoted.raw
    if attest.magic != TPM_GENERATED_VALUE:
        raise VerificationError(
            Reason.TPM_QUOTE_MAGIC, f"magic {attest.magic:#010x} is not TPM_GENERATED_VALUE", magic=attest.magic
        )
    if attest.type != TPM_ST_ATTEST_QUOTE:
        raise VerificationError(
            Reason.TPM_QUOTE_TYPE, f"attestation type {attest.type:#06x} is not a quote", type=attest.type
        )
    if not quote_signature_valid(attest_bytes, signature, ak_key(ak)):
        raise VerificationError(Reason.TPM_QUOTE_SIGNATURE_INVALID, "the quote signature does not verify with the AK")
    if not hmac.compare_digest(attest.extra_data, expected_extra_data):
        raise VerificationError(
            Reason.TPM_QUOTE_NONCE_MISMATCH,
            "the quote's extraData is not the expected nonce value",
            extra_data=attest.extra_data.hex(),
        )
    selected = [(s.hash_alg, index) for s in attest.pcr_selections for index in s.pcrs]
    if any(alg != bank for alg, _ in selected):
        raise VerificationError(
            Reason.TPM_QUOTE_PCR_SELECTION,
            f"the quote selects PCRs of another bank than {HASH_ALGORITHMS.get(bank, hex(bank))}",
        )
    indices = [index for _, index in selected]
    if len(set(indices)) != len(indices) or set(indices) != set(pcrs):
        raise VerificationError(
            Reason.TPM_QUOTE_PCR_SELECTION,
            "the PCR values given are not exactly the quoted selection",
            quoted=sorted(set(indices)),
            given=sorted(pcrs),
        )
    size = _DIGEST_SIZES.get(bank)
    bad = sorted(i for i, v in pcrs.items() if not isinstance(v, bytes) or len(v) != size)
    if bad:
        raise ParseError(Reason.INPUT_INVALID, f"PCR values {bad} are not {size}-byte digests", pcrs=bad)
    hash_alg = TPM_ALG_SHA256 if isinstance(signature, bytes) else signature.hash_alg
    if not hmac.compare_digest(pcr_digest(attest, pcrs, hash_alg), attest.pcr_digest):
        raise VerificationError(
            Reason.TPM_QUOTE_PCR_DIGEST_MISMATCH, "the PCR values given do not hash to the quoted pcrDigest"
        )
    return VerifiedQuote(attest=attest, bank=bank, pcrs=MappingProxyType(dict(pcrs)))
