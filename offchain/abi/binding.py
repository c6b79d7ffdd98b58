"""The digests that bind evidence together (PROTOCOL.md, "Evidence binding").

One implementation of each, shared by the agent (which produces them), the off-chain verifier
(which checks them), the relayer (which pre-checks on-chain evidence) and the contract tests
(which compare them with what Solidity computes):

* :func:`direct_report_data`: ``REPORT_DATA = SHA-256(AK TPMT_PUBLIC) || 32 zero bytes``.
* :func:`offchain_extra_data`: the quote's qualifyingData for ``GET /collaterals/{nonce}``.
* :func:`onchain_extra_data`: the quote's qualifyingData the registry recomputes.
* :func:`golden_consent_digest`: what a CVM's own key signs to consent to being attested against
  one golden measurement (``registerCvm`` recovers the signer and requires it to be the CVM).
* :func:`sealing_extra_data`: the quote's qualifyingData for ``GET /sealing/collaterals/{nonce}``,
  binding the agent's sealing key (X25519, for secrets: offchain.seal) and its CVM address.
* :func:`sealing_key_digest`: what a CVM's own key signs to publish its sealing key in a registry
  (``publishSealingKey`` recovers the signer and requires it to be the attested CVM).
* :func:`svsm_report_data`: the SVSM's REPORT_DATA, ``SHA-512(svsmNonce || manifest)``, where the vTPM
  service manifest is the EK's TPMT_PUBLIC.
* :func:`tpm_name_digest`: the SHA-256 part of a TPM object's name, as the activation statement
  carries an EK's and an AK's.
* :func:`svsm_activation_digest`: what an activator signs after a credential activation bound an AK
  to an EK (``registerCvmSvsm`` recovers the signer and requires it to be an activator the owner named).

The agent never quotes a caller's bytes as they are: both forms are domain separated, so the AK
cannot be made to sign a value meant for another protocol.
"""

from __future__ import annotations

import hashlib

from offchain.abi.keccak import keccak256
from offchain.errors import ParseError, Reason

REPORT_DATA_SIZE = 64
OFFCHAIN_DOMAIN = b"cvm-attest/offchain/v1"
ONCHAIN_QUOTE_TYPEHASH = keccak256(b"cvm-attest.quote.v1")
GOLDEN_CONSENT_TYPEHASH = keccak256(b"cvm-attest.consent.v1")
SEALING_DOMAIN = b"cvm-attest/sealing/v1"
SEALING_KEY_TYPEHASH = keccak256(b"cvm-attest.sealing-key.v1")
SEALING_KEY_BYTES = 32
SVSM_NONCE_DOMAIN = b"cvm-attest/svsm/v1"
NONCE_MIN_BYTES = 1
NONCE_MAX_BYTES = 64
SVSM_NONCE_BYTES = 64
SVSM_ACTIVATION_TYPEHASH = keccak256(b"cvm-attest.svsm-activation.v1")
#: TPM_ALG_SHA256 (TPM 2.0 Part 2, 6.3): the nameAlg of the names the activation statement carries.
_NAME_ALG_SHA256 = b"\x00\x0b"


def direct_report_data(ak_public_area: bytes) -> bytes:
    """REPORT_DATA for the direct binding: SHA-256 of the AK's marshalled TPMT_PUBLIC, zero padded."""
    return hashlib.sha256(ak_public_area).digest() + bytes(32)


def check_nonce(nonce: bytes) -> bytes:
    """A verifier's nonce must be 1 to 64 bytes; returns it unchanged."""
    if not NONCE_MIN_BYTES <= len(nonce) <= NONCE_MAX_BYTES:
        raise ParseError(
            Reason.INPUT_INVALID,
            f"nonce must be {NONCE_MIN_BYTES} to {NONCE_MAX_BYTES} bytes, got {len(nonce)}",
            field="nonce",
        )
    return nonce


def offchain_extra_data(nonce: bytes) -> bytes:
    """``SHA-256("cvm-attest/offchain/v1" || nonce)``, the quote's extraData for off-chain evidence."""
    return hashlib.sha256(OFFCHAIN_DOMAIN + check_nonce(nonce)).digest()


def _word_uint(value: int) -> bytes:
    if not 0 <= value < 1 << 256:
        raise ParseError(Reason.INPUT_INVALID, f"{value} does not fit a uint256")
    return value.to_bytes(32, "big")


def _word_address(address: str | bytes) -> bytes:
    raw = parse_address(address)
    return bytes(12) + raw


def _word_bytes32(value: bytes) -> bytes:
    if len(value) != 32:
        raise ParseError(Reason.INPUT_INVALID, f"expected 32 bytes, got {len(value)}")
    return value


def parse_address(address: str | bytes) -> bytes:
    """An Ethereum address as its 20 bytes, from ``0x``-hex (any case) or raw bytes."""
    if isinstance(address, bytes):
        raw = address
    else:
        text = address[2:] if address[:2] in ("0x", "0X") else address
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ParseError(Reason.INPUT_INVALID, f"not a hex address: {address!r}") from None
    if len(raw) != 20:
        raise ParseError(Reason.INPUT_INVALID, f"an address is 20 bytes, got {len(raw)}")
    return raw


def onchain_extra_data(chain_id: int, registry: str | bytes, cvm_address: str | bytes, block_hash: bytes) -> bytes:
    """``keccak256(abi.encode(keccak256("cvm-attest.quote.v1"), chainId, registry, cvmAddress, blockHash))``.

    Only the agent calls this to *produce* a quote, and always with its own ``cvm_address``; the
    registry recomputes it from ``block.chainid``, ``address(this)`` and ``blockhash(n)``.
    """
    return keccak256(
        ONCHAIN_QUOTE_TYPEHASH
        + _word_uint(chain_id)
        + _word_address(registry)
        + _word_address(cvm_address)
        + _word_bytes32(block_hash)
    )


def golden_consent_digest(chain_id: int, registry: str | bytes, cvm_address: str | bytes, golden_id: bytes) -> bytes:
    """``keccak256(abi.encode(keccak256("cvm-attest.consent.v1"), chainId, registry, cvmAddress, goldenId))``.

    The CVM's Ethereum key signs this 32-byte digest as it is (ECDSA secp256k1, ``r || s || v``, low
    ``s``) to say "I may be attested against golden measurement ``goldenId`` in this registry".
    ``registerCvm`` recovers the signer and requires it to be ``cvmAddress``: so nobody but the CVM
    (its agent, configured with the golden ids it consents to) chooses which golden it is attested
    under. The domain differs from the quote's, so neither value can stand in for the other.
    """
    return keccak256(
        GOLDEN_CONSENT_TYPEHASH
        + _word_uint(chain_id)
        + _word_address(registry)
        + _word_address(cvm_address)
        + _word_bytes32(golden_id)
    )


def _sealing_key(value: bytes) -> bytes:
    if len(value) != SEALING_KEY_BYTES:
        raise ParseError(Reason.INPUT_INVALID, f"a sealing key (X25519) is {SEALING_KEY_BYTES} bytes, got {len(value)}")
    return value


def sealing_extra_data(sealing_key: bytes, cvm_address: str | bytes, nonce: bytes) -> bytes:
    """``SHA-256("cvm-attest/sealing/v1" || sealingKey || cvmAddress || nonce)``: the quote's extraData
    for evidence that a secret may be sealed to ``sealing_key`` (32 bytes, X25519) of the CVM with
    ``cvm_address``, fresh for the verifier's ``nonce`` (1..64 bytes, last so the fields before it
    have fixed sizes). The agent computes it only with its own key and address."""
    return hashlib.sha256(
        SEALING_DOMAIN + _sealing_key(sealing_key) + parse_address(cvm_address) + check_nonce(nonce)
    ).digest()


def sealing_key_digest(chain_id: int, registry: str | bytes, cvm_address: str | bytes, sealing_key: bytes) -> bytes:
    """``keccak256(abi.encode(keccak256("cvm-attest.sealing-key.v1"), chainId, registry, cvmAddress, sealingKey))``.

    The CVM's Ethereum key signs this digest as it is (like :func:`golden_consent_digest`) to say
    "secrets for me in this registry are sealed to ``sealingKey``"; the registry accepts it only
    from an attested CVM's key, so the key it stores is one that lives in that CVM."""
    return keccak256(
        SEALING_KEY_TYPEHASH
        + _word_uint(chain_id)
        + _word_address(registry)
        + _word_address(cvm_address)
        + _word_bytes32(_sealing_key(sealing_key))
    )


def svsm_nonce(extra_data: bytes) -> bytes:
    """``SHA-512("cvm-attest/svsm/v1" || extraData)``: the 64-byte nonce the agent gives the SVSM for
    a VMPL0 report, derived from the extraData its quote binds for the same challenge, so the report
    is as fresh as the quote."""
    return hashlib.sha512(SVSM_NONCE_DOMAIN + extra_data).digest()


def svsm_report_data(svsm_nonce: bytes, manifest: bytes) -> bytes:
    """``SHA-512(svsmNonce || manifest)``: the REPORT_DATA of the SVSM's own (VMPL0) attestation report for
    the vTPM service, where ``svsm_nonce`` is the requester's 64 bytes and ``manifest`` the vTPM's
    endorsement key as its TPMT_PUBLIC. The nonce has a fixed size, so no bytes can move between it and
    the manifest."""
    if len(svsm_nonce) != SVSM_NONCE_BYTES:
        raise ParseError(
            Reason.INPUT_INVALID, f"the SVSM nonce is {SVSM_NONCE_BYTES} bytes, got {len(svsm_nonce)}", field="svsm_nonce"
        )
    return hashlib.sha512(svsm_nonce + manifest).digest()


def tpm_name_digest(public_area: bytes) -> bytes:
    """The 32-byte SHA-256 part of a TPM object's name, ``name(public) = 0x000B || SHA-256(TPMT_PUBLIC)``
    (TPM 2.0 Part 1, 16), for a marshalled TPMT_PUBLIC whose nameAlg is SHA-256: what the activation
    statement carries as ``ekName`` and ``akName`` (the registry computes ``sha256`` of the same bytes).
    ``tpm.public.malformed`` when the area is too short to have a nameAlg or its nameAlg is another hash
    (its name would not be this digest). Equal to ``TpmtPublic.from_bytes(public_area).name()[2:]``."""
    if len(public_area) < 4 or public_area[2:4] != _NAME_ALG_SHA256:
        raise ParseError(
            Reason.TPM_PUBLIC_MALFORMED, "a name digest needs a TPMT_PUBLIC with nameAlg SHA-256", field="name_alg"
        )
    return hashlib.sha256(public_area).digest()


def _word_uint64(value: int) -> bytes:
    if not 0 <= value < 1 << 64:
        raise ParseError(Reason.INPUT_INVALID, f"{value} does not fit a uint64")
    return value.to_bytes(32, "big")


def svsm_activation_digest(
    chain_id: int, registry: str | bytes, ek_name: bytes, ak_name: bytes, expiry: int
) -> bytes:
    """``keccak256(abi.encode(keccak256("cvm-attest.svsm-activation.v1"), chainId, registry, ekName, akName,
    uint64 expiry))``.

    An activator signs this digest as it is (ECDSA secp256k1, ``r || s || v``, low ``s``, no EIP-191
    prefix, like :func:`golden_consent_digest`) to say "I made a credential for the AK named ``ak_name``
    under the EK named ``ek_name`` (:func:`tpm_name_digest` of each) and the TPM holding that EK activated
    it, so this AK lives in that vTPM", until Unix time ``expiry``. ``registerCvmSvsm`` recomputes the
    names from the evidence and accepts the statement only from an activator the registry's owner named."""
    return keccak256(
        SVSM_ACTIVATION_TYPEHASH
        + _word_uint(chain_id)
        + _word_address(registry)
        + _word_bytes32(ek_name)
        + _word_bytes32(ak_name)
        + _word_uint64(expiry)
    )
