// SPDX-License-Identifier: Apache-2.0
// cvm-attest: TPM 2.0 quote parsing and verification (TPMS_ATTEST, TPMT_PUBLIC, TPMT_SIGNATURE)
pragma solidity ^0.8.24;

import {RSA} from "@openzeppelin/contracts/utils/cryptography/RSA.sol";
import {P256} from "@openzeppelin/contracts/utils/cryptography/P256.sol";

/**
 * @dev TPM 2.0 quotes as the registry needs them: parse the three TPM structures a quote consists of and verify
 * the AK's signature. Every parser reads `bytes calldata`, checks every length against the input before reading and
 * rejects trailing bytes, so malformed input reverts with one of the custom errors below and never reads out of
 * bounds. All TPM integers are big-endian (TPM 2.0 Part 1, 18.5).
 *
 * TPMS_ATTEST (TPM 2.0 Part 2, 10.12.12) with TPMS_QUOTE_INFO (10.12.1):
 *
 * | field               | type                   | size        |
 * |---------------------|------------------------|-------------|
 * | magic               | TPM_CONSTANTS32        | 4           | TPM_GENERATED_VALUE 0xFF544347
 * | type                | TPMI_ST_ATTEST         | 2           | TPM_ST_ATTEST_QUOTE 0x8018
 * | qualifiedSigner     | TPM2B_NAME             | 2 + n       |
 * | extraData           | TPM2B_DATA             | 2 + n (<=64)| the quote's qualifyingData
 * | clockInfo.clock     | UINT64                 | 8           |
 * | clockInfo.resetCount| UINT32                 | 4           |
 * | clockInfo.restartCount | UINT32              | 4           |
 * | clockInfo.safe      | TPMI_YES_NO            | 1           |
 * | firmwareVersion     | UINT64                 | 8           |
 * | pcrSelect           | TPML_PCR_SELECTION     | 4 + count*(2 + 1 + sizeofSelect) |
 * | pcrDigest           | TPM2B_DIGEST           | 2 + 32      |
 *
 * TPMT_PUBLIC (12.2.4): type u16, nameAlg u16, objectAttributes u32, authPolicy TPM2B_DIGEST, parameters
 * (RSA 12.2.3.5: symmetric TPMT_SYM_DEF_OBJECT, scheme TPMT_RSA_SCHEME, keyBits u16, exponent u32;
 * ECC 12.2.3.6: symmetric, scheme TPMT_ECC_SCHEME, curveID u16, kdf TPMT_KDF_SCHEME), unique (RSA: TPM2B
 * modulus; ECC: TPMS_ECC_POINT = TPM2B x, TPM2B y). A scheme or symmetric algorithm other than TPM_ALG_NULL is
 * followed by its hash algorithm (scheme, kdf) or key bits and mode (symmetric).
 *
 * TPMT_SIGNATURE (11.3.4): sigAlg u16, then RSASSA: hash u16, sig TPM2B; ECDSA: hash u16, signatureR TPM2B,
 * signatureS TPM2B.
 *
 * Only what cvm-attest accepts is supported: one PCR selection of the SHA-256 bank (PCRs 0..23), RSA-2048 AKs
 * signing with RSASSA-PKCS1-v1_5/SHA-256 and NIST P-256 AKs signing with ECDSA/SHA-256.
 */
library TpmQuote {
    uint32 internal constant TPM_GENERATED_VALUE = 0xFF544347;
    uint16 internal constant TPM_ST_ATTEST_QUOTE = 0x8018;
    uint16 internal constant TPM_ALG_RSA = 0x0001;
    uint16 internal constant TPM_ALG_SHA256 = 0x000B;
    uint16 internal constant TPM_ALG_NULL = 0x0010;
    uint16 internal constant TPM_ALG_RSASSA = 0x0014;
    uint16 internal constant TPM_ALG_ECDSA = 0x0018;
    uint16 internal constant TPM_ALG_ECC = 0x0023;
    uint16 internal constant TPM_ECC_NIST_P256 = 0x0003;

    /// @dev TPMA_OBJECT bits (TPM 2.0 Part 2, 8.3.2) an attestation key must have: fixedTPM (1), restricted (16),
    /// sign (18). A restricted signing key signs only data the TPM itself produced (TPM_GENERATED_VALUE), so its
    /// quotes cannot be forged through TPM2_Sign.
    uint32 internal constant AK_REQUIRED_ATTRIBUTES = (1 << 1) | (1 << 16) | (1 << 18);

    uint256 internal constant MAX_EXTRA_DATA = 64;
    uint256 internal constant RSA_MODULUS_BYTES = 256;
    uint256 internal constant PCR_COUNT = 24;

    /// @dev P-256 group order and half of it: OpenZeppelin's {P256-verify} accepts only s <= n/2.
    uint256 private constant P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551;
    uint256 private constant P256_HALF_N = 0x7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8;

    /// @dev A TPM structure is shorter than its fields say, has trailing bytes or an impossible size.
    /// @param structure 1 TPMS_ATTEST, 2 TPMT_PUBLIC, 3 TPMT_SIGNATURE.
    /// @param offset Byte offset at which the structure stopped making sense.
    error TpmMalformed(uint8 structure, uint256 offset);
    /// @dev TPMS_ATTEST.magic is not TPM_GENERATED_VALUE: the TPM did not produce these bytes.
    error TpmQuoteBadMagic(uint32 magic);
    /// @dev TPMS_ATTEST.type is not TPM_ST_ATTEST_QUOTE.
    error TpmQuoteBadType(uint16 attestType);
    /// @dev The PCR selection is not exactly one SHA-256 bank selection of PCRs 0..23.
    /// @param count TPML_PCR_SELECTION.count.
    /// @param hashAlg The selection's hash algorithm (0 when count is not 1).
    error TpmQuoteSelectionUnsupported(uint32 count, uint16 hashAlg);
    /// @dev A key type, curve, scheme or hash algorithm cvm-attest does not accept.
    error TpmAlgorithmUnsupported(uint16 alg);
    /// @dev The AK's objectAttributes lack fixedTPM, restricted or sign.
    error TpmAkAttributes(uint32 attributes);

    /// @dev TPMS_ATTEST of a quote, magic and type already checked.
    struct Quote {
        bytes extraData;
        uint64 clock;
        uint32 resetCount;
        uint32 restartCount;
        bool safe;
        uint64 firmwareVersion;
        /// @dev Bit i set when PCR i of the SHA-256 bank is selected.
        uint32 pcrMask;
        bytes32 pcrDigest;
    }

    /// @dev An attestation key from TPMT_PUBLIC: RSA-2048 (modulus, exponent) or P-256 (x, y).
    struct PublicKey {
        uint16 keyType;
        uint32 attributes;
        bytes modulus;
        uint32 exponent;
        bytes32 x;
        bytes32 y;
    }

    /// @dev TPMT_SIGNATURE: RSASSA (rsa) or ECDSA (r, s).
    struct Signature {
        uint16 sigAlg;
        uint16 hashAlg;
        bytes rsa;
        bytes32 r;
        bytes32 s;
    }

    uint8 private constant ATTEST = 1;
    uint8 private constant PUBLIC = 2;
    uint8 private constant SIGNATURE = 3;

    /**
     * @dev Parses a TPMS_ATTEST holding a TPMS_QUOTE_INFO and checks its magic and type.
     * Reverts {TpmMalformed}, {TpmQuoteBadMagic}, {TpmQuoteBadType} or {TpmQuoteSelectionUnsupported}.
     */
    function parseQuote(bytes calldata attest) internal pure returns (Quote memory q) {
        uint256 off;
        uint256 v;
        (v, off) = _read(attest, 0, 4, ATTEST);
        if (v != TPM_GENERATED_VALUE) revert TpmQuoteBadMagic(uint32(v));
        (v, off) = _read(attest, off, 2, ATTEST);
        if (v != TPM_ST_ATTEST_QUOTE) revert TpmQuoteBadType(uint16(v));
        (v, off) = _read(attest, off, 2, ATTEST); // qualifiedSigner.size
        off = _skip(attest, off, v, ATTEST);
        (v, off) = _read(attest, off, 2, ATTEST); // extraData.size
        if (v > MAX_EXTRA_DATA) revert TpmMalformed(ATTEST, off - 2);
        _skip(attest, off, v, ATTEST);
        q.extraData = attest[off:off + v];
        off += v;
        (v, off) = _read(attest, off, 8, ATTEST);
        q.clock = uint64(v);
        (v, off) = _read(attest, off, 4, ATTEST);
        q.resetCount = uint32(v);
        (v, off) = _read(attest, off, 4, ATTEST);
        q.restartCount = uint32(v);
        (v, off) = _read(attest, off, 1, ATTEST);
        if (v > 1) revert TpmMalformed(ATTEST, off - 1);
        q.safe = v == 1;
        (v, off) = _read(attest, off, 8, ATTEST);
        q.firmwareVersion = uint64(v);
        (q.pcrMask, off) = _readSelection(attest, off);
        (v, off) = _read(attest, off, 2, ATTEST); // pcrDigest.size
        if (v != 32) revert TpmMalformed(ATTEST, off - 2);
        (v, off) = _read(attest, off, 32, ATTEST);
        q.pcrDigest = bytes32(v);
        if (off != attest.length) revert TpmMalformed(ATTEST, off);
    }

    /**
     * @dev Parses the AK's TPMT_PUBLIC: an RSA-2048 key or an ECC NIST P-256 key, with the attributes of a
     * restricted signing key that never leaves the TPM ({AK_REQUIRED_ATTRIBUTES}) and a signing scheme that is
     * TPM_ALG_NULL or the one cvm-attest verifies (RSASSA or ECDSA, SHA-256).
     * Reverts {TpmMalformed}, {TpmAlgorithmUnsupported} or {TpmAkAttributes}.
     */
    function parsePublic(bytes calldata pub) internal pure returns (PublicKey memory k) {
        uint256 off;
        uint256 v;
        (v, off) = _read(pub, 0, 2, PUBLIC);
        k.keyType = uint16(v);
        if (v != TPM_ALG_RSA && v != TPM_ALG_ECC) revert TpmAlgorithmUnsupported(uint16(v));
        (, off) = _read(pub, off, 2, PUBLIC); // nameAlg: not part of what the quote proves
        (v, off) = _read(pub, off, 4, PUBLIC);
        k.attributes = uint32(v);
        if (v & AK_REQUIRED_ATTRIBUTES != AK_REQUIRED_ATTRIBUTES) revert TpmAkAttributes(uint32(v));
        (v, off) = _read(pub, off, 2, PUBLIC); // authPolicy.size
        off = _skip(pub, off, v, PUBLIC);
        (v, off) = _read(pub, off, 2, PUBLIC); // symmetric.algorithm
        if (v != TPM_ALG_NULL) off = _skip(pub, off, 4, PUBLIC); // keyBits, mode
        (v, off) = _read(pub, off, 2, PUBLIC); // scheme
        uint256 scheme = v;
        if (scheme != TPM_ALG_NULL) {
            (v, off) = _read(pub, off, 2, PUBLIC); // scheme hashAlg
            uint256 expected = k.keyType == TPM_ALG_RSA ? TPM_ALG_RSASSA : TPM_ALG_ECDSA;
            if (scheme != expected) revert TpmAlgorithmUnsupported(uint16(scheme));
            if (v != TPM_ALG_SHA256) revert TpmAlgorithmUnsupported(uint16(v));
        }
        if (k.keyType == TPM_ALG_RSA) {
            (v, off) = _read(pub, off, 2, PUBLIC); // keyBits
            if (v != RSA_MODULUS_BYTES * 8) revert TpmAlgorithmUnsupported(uint16(v));
            (v, off) = _read(pub, off, 4, PUBLIC);
            k.exponent = v == 0 ? 65537 : uint32(v);
            (v, off) = _read(pub, off, 2, PUBLIC); // unique.size
            if (v != RSA_MODULUS_BYTES) revert TpmMalformed(PUBLIC, off - 2);
            _skip(pub, off, v, PUBLIC);
            k.modulus = pub[off:off + v];
            off += v;
        } else {
            (v, off) = _read(pub, off, 2, PUBLIC); // curveID
            if (v != TPM_ECC_NIST_P256) revert TpmAlgorithmUnsupported(uint16(v));
            (v, off) = _read(pub, off, 2, PUBLIC); // kdf.scheme
            if (v != TPM_ALG_NULL) revert TpmAlgorithmUnsupported(uint16(v));
            (k.x, off) = _readCoordinate(pub, off, PUBLIC);
            (k.y, off) = _readCoordinate(pub, off, PUBLIC);
        }
        if (off != pub.length) revert TpmMalformed(PUBLIC, off);
    }

    /**
     * @dev Parses a TPMT_SIGNATURE made with RSASSA or ECDSA over SHA-256.
     * Reverts {TpmMalformed} or {TpmAlgorithmUnsupported}.
     */
    function parseSignature(bytes calldata sig) internal pure returns (Signature memory s) {
        uint256 off;
        uint256 v;
        (v, off) = _read(sig, 0, 2, SIGNATURE);
        s.sigAlg = uint16(v);
        if (v != TPM_ALG_RSASSA && v != TPM_ALG_ECDSA) revert TpmAlgorithmUnsupported(uint16(v));
        (v, off) = _read(sig, off, 2, SIGNATURE);
        s.hashAlg = uint16(v);
        if (v != TPM_ALG_SHA256) revert TpmAlgorithmUnsupported(uint16(v));
        if (s.sigAlg == TPM_ALG_RSASSA) {
            (v, off) = _read(sig, off, 2, SIGNATURE);
            if (v != RSA_MODULUS_BYTES) revert TpmMalformed(SIGNATURE, off - 2);
            _skip(sig, off, v, SIGNATURE);
            s.rsa = sig[off:off + v];
            off += v;
        } else {
            (s.r, off) = _readCoordinate(sig, off, SIGNATURE);
            (s.s, off) = _readCoordinate(sig, off, SIGNATURE);
        }
        if (off != sig.length) revert TpmMalformed(SIGNATURE, off);
    }

    /**
     * @dev True when `sig` is the AK `key`'s signature over `digest` (SHA-256 of the TPMS_ATTEST bytes): RSASSA-
     * PKCS1-v1_5 through OpenZeppelin {RSA-pkcs1Sha256} (modexp precompile), or ECDSA P-256 through OpenZeppelin
     * {P256-verify} (the P256VERIFY precompile at 0x100 where it exists, Solidity otherwise).
     *
     * NOTE: TPMs and most libraries produce a high `s` half of the time, which OpenZeppelin refuses to avoid
     * malleability; (r, s) and (r, n - s) are the same signature, so a high `s` is replaced by `n - s` first.
     * Malleability does not matter here: the quote's freshness comes from its extraData, not its signature bytes.
     *
     * Reverts {TpmAlgorithmUnsupported} when the signature algorithm does not match the key type.
     */
    function verify(bytes32 digest, PublicKey memory key, Signature memory sig) internal view returns (bool) {
        if (key.keyType == TPM_ALG_RSA) {
            if (sig.sigAlg != TPM_ALG_RSASSA) revert TpmAlgorithmUnsupported(sig.sigAlg);
            return RSA.pkcs1Sha256(digest, sig.rsa, abi.encodePacked(key.exponent), key.modulus);
        }
        if (sig.sigAlg != TPM_ALG_ECDSA) revert TpmAlgorithmUnsupported(sig.sigAlg);
        uint256 s = uint256(sig.s);
        if (s > P256_HALF_N && s < P256_N) s = P256_N - s;
        return P256.verify(digest, sig.r, bytes32(s), key.x, key.y);
    }

    /// @dev SHA-256 over the selected PCR values in selection order: what TPMS_QUOTE_INFO.pcrDigest must equal.
    function pcrDigest(bytes32[] calldata values) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(values));
    }

    /// @dev Reads TPML_PCR_SELECTION: exactly one TPMS_PCR_SELECTION of the SHA-256 bank, PCRs 0..23 only.
    function _readSelection(bytes calldata d, uint256 off) private pure returns (uint32 mask, uint256 next) {
        uint256 count;
        uint256 hashAlg;
        uint256 size;
        (count, off) = _read(d, off, 4, ATTEST);
        if (count != 1) revert TpmQuoteSelectionUnsupported(uint32(count), 0);
        (hashAlg, off) = _read(d, off, 2, ATTEST);
        if (hashAlg != TPM_ALG_SHA256) revert TpmQuoteSelectionUnsupported(1, uint16(hashAlg));
        (size, off) = _read(d, off, 1, ATTEST); // sizeofSelect
        if (size == 0 || size > 4) revert TpmMalformed(ATTEST, off - 1);
        uint256 bitmap;
        (bitmap, off) = _read(d, off, size, ATTEST);
        // pcrSelect[i] bit j selects PCR 8*i + j: the bytes are little-endian relative to the PCR index.
        uint256 m;
        for (uint256 i = 0; i < size; ++i) {
            m |= ((bitmap >> (8 * (size - 1 - i))) & 0xFF) << (8 * i);
        }
        if (m >> PCR_COUNT != 0) revert TpmQuoteSelectionUnsupported(1, uint16(hashAlg));
        return (uint32(m), off);
    }

    /// @dev Reads a TPM2B of at most 32 bytes as a left-zero-padded big-endian word (ECC coordinates, r, s).
    function _readCoordinate(bytes calldata d, uint256 off, uint8 structure) private pure returns (bytes32, uint256) {
        uint256 size;
        (size, off) = _read(d, off, 2, structure);
        if (size == 0 || size > 32) revert TpmMalformed(structure, off - 2);
        uint256 v;
        (v, off) = _read(d, off, size, structure);
        return (bytes32(v), off);
    }

    /// @dev Big-endian unsigned integer of `size` (1..32) bytes at `off`, bounds-checked.
    function _read(bytes calldata d, uint256 off, uint256 size, uint8 structure)
        private
        pure
        returns (uint256 v, uint256 next)
    {
        next = off + size;
        if (next > d.length) revert TpmMalformed(structure, off);
        assembly ("memory-safe") {
            v := shr(sub(256, mul(size, 8)), calldataload(add(d.offset, off)))
        }
    }

    /// @dev Skips `size` bytes at `off`, bounds-checked.
    function _skip(bytes calldata d, uint256 off, uint256 size, uint8 structure) private pure returns (uint256 next) {
        next = off + size;
        if (next > d.length) revert TpmMalformed(structure, off);
    }
}
