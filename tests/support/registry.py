"""What the registry tests share: a software AK that signs TPM quotes like a TPM does.

:class:`SoftAk` is an attestation key made with ``cryptography`` (RSA-2048 or P-256) whose
TPMT_PUBLIC and TPMS_ATTEST are marshalled by ``offchain.abi.tpm`` exactly as a TPM marshals them,
and whose quote signatures are RSASSA-PKCS1-v1_5/SHA-256 or ECDSA/SHA-256 over the TPMS_ATTEST
bytes, as TPM2_Quote produces them. The real vTPM path (swtpm) is exercised by the agent's tests;
here the point is to give the contract inputs whose every byte the test controls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from offchain.abi.tpm import (
    TPM_ALG_SHA256,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    PcrSelection,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
)


@dataclass(frozen=True)
class Quote:
    """A TPM quote as the registry takes it: TPMS_ATTEST, TPMT_SIGNATURE and the selected PCR values."""

    attest: bytes
    signature: bytes
    pcrs: tuple[bytes, ...]

    @property
    def parsed(self) -> TpmsAttest:
        return TpmsAttest.from_bytes(self.attest)


class SoftAk:
    """An RSA-2048 (``kind="rsa"``) or NIST P-256 (``kind="p256"``) attestation key in software."""

    def __init__(self, kind: str = "rsa") -> None:
        self.kind = kind
        if kind == "rsa":
            self._key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(65537, 2048)
        elif kind == "p256":
            self._key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(kind)
        self.public = TpmtPublic.from_public_key(self._key.public_key())

    @property
    def public_bytes(self) -> bytes:
        return self.public.to_bytes()

    @property
    def public_hash(self) -> bytes:
        return hashlib.sha256(self.public_bytes).digest()

    def sign(self, data: bytes) -> bytes:
        """TPMT_SIGNATURE over ``data`` with SHA-256 (RSASSA or ECDSA)."""
        if isinstance(self._key, rsa.RSAPrivateKey):
            raw = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
            return TpmtSignature.rsassa(TPM_ALG_SHA256, raw).to_bytes()
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return TpmtSignature.ecdsa(TPM_ALG_SHA256, r, s, 32).to_bytes()

    def quote(
        self,
        extra_data: bytes,
        pcrs: Mapping[int, bytes],
        *,
        magic: int = TPM_GENERATED_VALUE,
        attest_type: int = TPM_ST_ATTEST_QUOTE,
        clock: int = 1_000_000,
        reset_count: int = 3,
    ) -> Quote:
        """TPM2_Quote over the SHA-256 PCRs ``pcrs`` (index -> value) with qualifyingData ``extra_data``."""
        indices = tuple(sorted(pcrs))
        values = tuple(pcrs[i] for i in indices)
        attest = TpmsAttest(
            magic=magic,
            type=attest_type,
            qualified_signer=self.public.name(),
            extra_data=extra_data,
            clock=clock,
            reset_count=reset_count,
            restart_count=0,
            safe=True,
            firmware_version=0x2023_0612_0016_0000,
            pcr_selections=(PcrSelection(TPM_ALG_SHA256, indices),),
            pcr_digest=hashlib.sha256(b"".join(values)).digest(),
        ).to_bytes()
        return Quote(attest=attest, signature=self.sign(attest), pcrs=values)


def pcr_bank(seed: bytes = b"cvm-attest", count: int = 24) -> dict[int, bytes]:
    """Deterministic, distinct PCR values 0..count-1 for tests."""
    return {i: hashlib.sha256(seed + bytes([i])).digest() for i in range(count)}
