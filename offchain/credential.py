"""TPM2_MakeCredential in software (TPM 2.0 Part 1, section 24 "Credential Protection"; Part 3,
TPM2_MakeCredential), for an endorsement key of the TCG default templates: RSA-2048 (RSA-OAEP,
SHA-256) or ECC P-256 (ECDH), both with AES-128-CFB as their symmetric definition.

A verifier that knows a TPM's EK and an object's Name makes a credential that only that TPM can
open, and only while an object with that Name is loaded in it (TPM2_ActivateCredential checks the
Name through the integrity HMAC): when the agent answers with the credential, the AK with that Name
lives in the TPM that holds the EK. On the ``svsm`` platform the EK is the one the SVSM's VMPL0
report carries, so the AK lives in the SVSM's vTPM, out of the guest kernel's and the host's reach.

* seed: RSA, ``nameAlg``-sized random bytes encrypted with RSA-OAEP(SHA-256, label "IDENTITY\\0");
  ECC, ``KDFe(nameAlg, Z, "IDENTITY", ephemeral.x, ek.x)`` with ``Z`` the ECDH x-coordinate, the
  ephemeral point (TPMS_ECC_POINT) being the encrypted secret;
* ``symKey = KDFa(nameAlg, seed, "STORAGE", Name, "", 128)``, ``encIdentity = AES-128-CFB(symKey,
  IV 0, TPM2B_DIGEST(credential))``;
* ``HMACkey = KDFa(nameAlg, seed, "INTEGRITY", "", "", 256)``, ``outerHMAC = HMAC(HMACkey,
  encIdentity || Name)``; the credential blob (TPM2B_ID_OBJECT's buffer) is
  ``TPM2B(outerHMAC) || encIdentity``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from offchain.abi.reader import tpm2b
from offchain.abi.tpm import (
    TPM_ALG_AES,
    TPM_ALG_CFB,
    TPM_ALG_RSA,
    TPM_ALG_SHA256,
    TpmtPublic,
)
from offchain.errors import ParseError, Reason

#: TPMA_OBJECT of an EK (TCG EK Credential Profile, templates L-1 and L-2): fixedTPM, fixedParent,
#: sensitiveDataOrigin, adminWithPolicy, restricted, decrypt.
EK_OBJECT_ATTRIBUTES = 0x000300B2
#: The EK templates' authPolicy: PolicySecret(TPM_RH_ENDORSEMENT) (SHA-256).
EK_AUTH_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
MAX_CREDENTIAL_BYTES = 32
_LABEL_IDENTITY = b"IDENTITY\x00"


def _malformed(detail: str) -> ParseError:
    return ParseError(Reason.SVSM_MANIFEST_MALFORMED, detail)


def check_endorsement_key(ek: TpmtPublic) -> None:
    """An EK this module can make credentials for: a restricted decryption key of the TCG default
    templates (RSA-2048 or P-256, SHA-256, AES-128-CFB)."""
    if ek.object_attributes & EK_OBJECT_ATTRIBUTES != EK_OBJECT_ATTRIBUTES:
        raise _malformed(f"the manifest's key (attributes {ek.object_attributes:#010x}) is not an endorsement key: it "
                         f"lacks some of {EK_OBJECT_ATTRIBUTES:#010x} (fixedTPM, restricted, decrypt, ...)")
    if ek.name_alg != TPM_ALG_SHA256:
        raise _malformed(f"the endorsement key's nameAlg {ek.name_alg:#06x} is not SHA-256")
    if (ek.symmetric, ek.symmetric_key_bits, ek.symmetric_mode) != (TPM_ALG_AES, 128, TPM_ALG_CFB):
        raise _malformed("the endorsement key's symmetric definition is not AES-128-CFB")
    if ek.type == TPM_ALG_RSA and ek.key_bits != 2048:
        raise _malformed(f"an RSA endorsement key of {ek.key_bits} bits; the template is RSA-2048")


def kdf_a(key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int) -> bytes:
    """KDFa with SHA-256 (Part 1, 11.4.10.2): SP 800-108 in counter mode with HMAC, the label with
    its terminating zero octet."""
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        out += hmac.new(key, counter.to_bytes(4, "big") + label + b"\x00" + context_u + context_v
                        + bits.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return out[: bits // 8]


def kdf_e(z: bytes, label: bytes, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """KDFe with SHA-256 (Part 1, 11.4.10.3): SP 800-56A's concatenation KDF, the label with its
    terminating zero octet."""
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        out += hashlib.sha256(counter.to_bytes(4, "big") + z + label + b"\x00" + party_u + party_v).digest()
        counter += 1
    return out[: bits // 8]


@dataclass(frozen=True, slots=True)
class MadeCredential:
    """What TPM2_ActivateCredential takes: ``credential_blob`` (TPM2B_ID_OBJECT's buffer) and
    ``secret`` (TPM2B_ENCRYPTED_SECRET's buffer)."""

    credential_blob: bytes
    secret: bytes


def make_credential(ek: TpmtPublic, object_name: bytes, credential: bytes) -> MadeCredential:
    """Protect ``credential`` (1..32 bytes) for the TPM holding ``ek`` and its object named
    ``object_name`` (nameAlg || digest, e.g. ``TpmtPublic.name()`` of the AK)."""
    check_endorsement_key(ek)
    if not 1 <= len(credential) <= MAX_CREDENTIAL_BYTES:
        raise ParseError(Reason.INPUT_INVALID, f"a credential is 1 to {MAX_CREDENTIAL_BYTES} bytes")
    key = ek.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        seed = os.urandom(32)
        secret = key.encrypt(seed, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                                label=_LABEL_IDENTITY))
    else:
        ephemeral = ec.generate_private_key(key.curve)
        z = ephemeral.exchange(ec.ECDH(), key)
        size = (key.curve.key_size + 7) // 8
        point = ephemeral.public_key().public_numbers()
        ex, ey = point.x.to_bytes(size, "big"), point.y.to_bytes(size, "big")
        seed = kdf_e(z, b"IDENTITY", ex, ek.x, 256)
        secret = tpm2b(ex) + tpm2b(ey)
    sym_key = kdf_a(seed, b"STORAGE", object_name, b"", 128)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = encryptor.update(tpm2b(credential)) + encryptor.finalize()
    hmac_key = kdf_a(seed, b"INTEGRITY", b"", b"", 256)
    outer = hmac.new(hmac_key, enc_identity + object_name, hashlib.sha256).digest()
    return MadeCredential(credential_blob=tpm2b(outer) + enc_identity, secret=secret)
