// SPDX-License-Identifier: Apache-2.0
// cvm-attest: TPM 2.0 quote parsing and verification (TPMS_ATTEST, TPMT_PUBLIC, TPMT_SIGNATURE)
pragma solidity ^0.8.24;

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

    uint32 internal constant RSA_EXPONENT = 65537;
    uint256 internal constant P256_KEY_BYTES = 64;
    uint256 internal constant MAX_EXTRA_DATA = 64;
    uint256 internal constant RSA_MODULUS_BYTES = 256;
    uint256 internal constant PCR_COUNT = 24;

    /// @dev EMSA-PKCS1-v1_5 encoding (RFC 8017, 9.2) of a SHA-256 digest H for a 2048-bit modulus, as the eight
    /// words it is compared with: `00 01 || FF x 202 || 00 || DigestInfo prefix (19 bytes, NULL parameters) || H`.
    bytes32 private constant EM_WORD0 = 0x0001ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;
    bytes32 private constant EM_FF = 0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff;
    bytes32 private constant EM_WORD6 = 0xffffffffffffffffffffffff003031300d060960864801650304020105000420;

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
        (uint256 extraOffset, uint256 extraLength, uint256 clockWord, uint32 pcrMask, bytes32 digest) = _scan(attest);
        q.extraData = attest[extraOffset:extraOffset + extraLength];
        q.clock = uint64(clockWord >> 192);
        q.resetCount = uint32(clockWord >> 160);
        q.restartCount = uint32(clockWord >> 128);
        q.safe = (clockWord >> 120) & 0xFF == 1;
        q.firmwareVersion = uint64(clockWord >> 56);
        q.pcrMask = pcrMask;
        q.pcrDigest = digest;
    }

    /**
     * @dev What {CvmRegistry-refreshCvm} needs of a quote, without building a {Quote}: the extraData as one word
     * (`isWord` false when it is not exactly 32 bytes), the PCR selection mask and pcrDigest. Same checks and
     * reverts as {parseQuote}.
     */
    function quoteNonce(bytes calldata attest)
        internal
        pure
        returns (bytes32 extraData, bool isWord, uint32 pcrMask, bytes32 digest)
    {
        uint256 extraOffset;
        uint256 extraLength;
        (extraOffset, extraLength,, pcrMask, digest) = _scan(attest);
        isWord = extraLength == 32;
        extraData = bytes32(_word(attest, extraOffset));
    }

    /**
     * @dev One pass over a TPMS_ATTEST (layout in the contract comment): every check of {parseQuote}, returning the
     * extraData's position, the word starting at clockInfo (clock, resetCount, restartCount, safe, firmwareVersion,
     * selection count, hash, sizeofSelect, in that order), the PCR mask and the digest. Each section is bounds-checked
     * as a whole, then read with one calldataload: this runs in every {CvmRegistry-refreshCvm}, whose whole
     * transaction must fit 80,000 gas.
     */
    function _scan(bytes calldata attest)
        private
        pure
        returns (uint256 extraOffset, uint256 extraLength, uint256 w, uint32 pcrMask, bytes32 digest)
    {
        // `fail` names the first problem found (0: none) and `at` its offset or value; the custom error is raised
        // below, outside the assembly. Every read is one calldataload after a bounds check of its whole section.
        uint256 fail;
        uint256 at;
        assembly ("memory-safe") {
            let base := attest.offset
            let len := attest.length
            for {} 1 {} {
                if lt(len, 8) {
                    fail := 1
                    break
                }
                w := calldataload(base)
                if iszero(eq(shr(224, w), 0xFF544347)) {
                    fail := 2
                    at := shr(224, w)
                    break
                }
                if iszero(eq(and(shr(208, w), 0xFFFF), 0x8018)) {
                    fail := 3
                    at := and(shr(208, w), 0xFFFF)
                    break
                }
                let off := add(8, and(shr(192, w), 0xFFFF)) // past qualifiedSigner
                if gt(add(off, 2), len) {
                    fail := 1
                    at := off
                    break
                }
                extraLength := shr(240, calldataload(add(base, off)))
                if gt(extraLength, 64) {
                    fail := 1
                    at := off
                    break
                }
                extraOffset := add(off, 2)
                off := add(extraOffset, extraLength)
                // clockInfo 17, firmwareVersion 8, TPML_PCR_SELECTION.count 4, hash 2, sizeofSelect 1
                if gt(add(off, 32), len) {
                    fail := 1
                    at := extraOffset
                    break
                }
                w := calldataload(add(base, off))
                if gt(and(shr(120, w), 0xFF), 1) {
                    fail := 1
                    at := add(off, 16)
                    break
                }
                if iszero(eq(and(shr(24, w), 0xFFFFFFFF), 1)) {
                    fail := 4
                    at := and(shr(24, w), 0xFFFFFFFF)
                    break
                }
                if iszero(eq(and(shr(8, w), 0xFFFF), 0x000B)) {
                    fail := 5
                    at := and(shr(8, w), 0xFFFF)
                    break
                }
                let size := and(w, 0xFF) // sizeofSelect
                off := add(off, 32)
                if or(iszero(size), gt(size, 4)) {
                    fail := 1
                    at := sub(off, 1)
                    break
                }
                // pcrSelect bitmap, pcrDigest.size 2, pcrDigest 32: exactly the rest
                if iszero(eq(add(add(off, size), 34), len)) {
                    fail := 1
                    at := off
                    break
                }
                // pcrSelect[i] bit j selects PCR 8i + j: the bitmap's bytes are little-endian in the PCR index.
                let b := calldataload(add(base, off))
                let m := or(shr(248, b), and(shr(232, b), 0xFF00))
                m := or(m, or(and(shr(216, b), 0xFF0000), and(shr(200, b), 0xFF000000)))
                m := and(m, sub(shl(mul(8, size), 1), 1))
                if shr(24, m) {
                    fail := 5
                    at := 0x000B
                    break
                }
                pcrMask := m
                off := add(off, size)
                if iszero(eq(shr(240, calldataload(add(base, off))), 32)) {
                    fail := 1
                    at := off
                    break
                }
                digest := calldataload(add(base, add(off, 2)))
                break
            }
        }
        if (fail != 0) _revertScan(fail, at);
    }

    function _revertScan(uint256 fail, uint256 at) private pure {
        if (fail == 2) revert TpmQuoteBadMagic(uint32(at));
        if (fail == 3) revert TpmQuoteBadType(uint16(at));
        if (fail == 4) revert TpmQuoteSelectionUnsupported(uint32(at), 0);
        if (fail == 5) revert TpmQuoteSelectionUnsupported(1, uint16(at));
        revert TpmMalformed(ATTEST, at);
    }

    /// @dev The 32 bytes of `d` at `off` (zero past the end of calldata); callers check bounds first.
    function _word(bytes calldata d, uint256 off) private pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := calldataload(add(d.offset, off))
        }
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
            // 0 is TPM shorthand for 65537 (Part 2, 12.2.3.5), the exponent of every TPM AK template; any other
            // exponent is refused, so an AK is identified by its modulus alone ({keyBytes}).
            if (v != 0 && v != RSA_EXPONENT) revert TpmAlgorithmUnsupported(TPM_ALG_RSA);
            k.exponent = RSA_EXPONENT;
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
     * PKCS1-v1_5 with SHA-256 ({_rsaVerify}: modexp precompile, then the encoded message compared word by
     * word), or ECDSA P-256 through OpenZeppelin {P256-verify} (the P256VERIFY precompile at 0x100 where it exists,
     * Solidity otherwise).
     *
     * NOTE: TPMs and most libraries produce a high `s` half of the time, which OpenZeppelin refuses to avoid
     * malleability; (r, s) and (r, n - s) are the same signature, so a high `s` is replaced by `n - s` first.
     * Malleability does not matter here: the quote's freshness comes from its extraData, not its signature bytes.
     *
     * Reverts {TpmAlgorithmUnsupported} when the signature algorithm does not match the key type.
     */
    function verify(bytes32 digest, PublicKey memory key, Signature memory sig) internal view returns (bool) {
        return verifyWith(digest, key, sig, p256);
    }

    /**
     * @dev {verify} with the P-256 check `p256Verify(digest, r, s, x, y)` given by the caller, called with `s`
     * already at most n/2: a contract near the EIP-170 size limit (the registry) passes a call to another contract
     * instead of carrying OpenZeppelin's Solidity fallback.
     */
    function verifyWith(
        bytes32 digest,
        PublicKey memory key,
        Signature memory sig,
        function(bytes32, bytes32, bytes32, bytes32, bytes32) view returns (bool) p256Verify
    ) internal view returns (bool) {
        if (key.keyType == TPM_ALG_RSA) {
            if (sig.sigAlg != TPM_ALG_RSASSA) revert TpmAlgorithmUnsupported(sig.sigAlg);
            return _rsaPkcs1Sha256(digest, sig.rsa, key.modulus);
        }
        if (sig.sigAlg != TPM_ALG_ECDSA) revert TpmAlgorithmUnsupported(sig.sigAlg);
        return p256Verify(digest, sig.r, lowS(sig.s), key.x, key.y);
    }

    /**
     * @dev The AK's key as {CvmRegistry-refreshCvm} takes it and as its hash identifies the AK: the RSA-2048 modulus
     * (256 bytes; the exponent is always 65537) or the P-256 point x || y (64 bytes).
     */
    function keyBytes(PublicKey memory key) internal pure returns (bytes memory) {
        return key.keyType == TPM_ALG_RSA ? key.modulus : abi.encodePacked(key.x, key.y);
    }

    /**
     * @dev {verify} for a key given as {keyBytes} and a bare signature: 256 bytes of RSASSA-PKCS1-v1_5 for an RSA
     * key, `r || s` (32 bytes each) for a P-256 key; both over `digest` with SHA-256. Reverts {TpmMalformed} when
     * the lengths fit neither.
     */
    function verifyRaw(bytes32 digest, bytes calldata key, bytes calldata signature) internal view returns (bool) {
        return verifyRawWith(digest, key, signature, p256);
    }

    /// @dev {verifyRaw} with the caller's P-256 check, as {verifyWith}.
    function verifyRawWith(
        bytes32 digest,
        bytes calldata key,
        bytes calldata signature,
        function(bytes32, bytes32, bytes32, bytes32, bytes32) view returns (bool) p256Verify
    ) internal view returns (bool) {
        if (key.length == RSA_MODULUS_BYTES) {
            if (signature.length != RSA_MODULUS_BYTES) revert TpmMalformed(SIGNATURE, 0);
            return _rsaPkcs1Sha256Calldata(digest, signature, key);
        }
        if (key.length != P256_KEY_BYTES) revert TpmMalformed(PUBLIC, 0);
        if (signature.length != 2 * 32) revert TpmMalformed(SIGNATURE, 0);
        return p256Verify(
            digest, bytes32(signature[0:32]), lowS(bytes32(signature[32:64])), bytes32(key[0:32]), bytes32(key[32:64])
        );
    }

    /// @dev `s`, or `n - s` when `s` is above n/2 (see {verify}); values not below n are returned unchanged.
    function lowS(bytes32 sBytes) internal pure returns (bytes32) {
        uint256 s = uint256(sBytes);
        return s > P256_HALF_N && s < P256_N ? bytes32(P256_N - s) : sBytes;
    }

    /// @dev OpenZeppelin {P256-verify}: the P256VERIFY precompile, or Solidity where the chain has none.
    function p256(bytes32 digest, bytes32 r, bytes32 s, bytes32 x, bytes32 y) internal view returns (bool) {
        return P256.verify(digest, r, s, x, y);
    }

    /// @dev {_rsaVerify} for a signature and modulus in memory (TPM structures parsed by {parseSignature}).
    function _rsaPkcs1Sha256(bytes32 digest, bytes memory s, bytes memory n) private view returns (bool) {
        if (n.length != RSA_MODULUS_BYTES || s.length != RSA_MODULUS_BYTES) return false;
        uint256 p = _modexpBuffer();
        assembly ("memory-safe") {
            mcopy(add(p, 0x60), add(s, 0x20), 0x100)
            mcopy(add(p, 0x164), add(n, 0x20), 0x100)
        }
        return _rsaVerify(p, digest);
    }

    /// @dev {_rsaVerify} for a signature and modulus in calldata ({verifyRaw}: no intermediate copies).
    function _rsaPkcs1Sha256Calldata(bytes32 digest, bytes calldata s, bytes calldata n) private view returns (bool) {
        uint256 p = _modexpBuffer();
        assembly ("memory-safe") {
            calldatacopy(add(p, 0x60), s.offset, 0x100)
            calldatacopy(add(p, 0x164), n.offset, 0x100)
        }
        return _rsaVerify(p, digest);
    }

    /// @dev Scratch memory for the modexp precompile's input, beyond the free memory pointer (which is not moved:
    /// nothing allocated while it is in use): lengths (256, 4, 256), then the base, the exponent 65537 and the
    /// modulus, 0x264 bytes in all.
    function _modexpBuffer() private pure returns (uint256 p) {
        assembly ("memory-safe") {
            p := mload(0x40)
            mstore(p, 0x100)
            mstore(add(p, 0x20), 4)
            mstore(add(p, 0x40), 0x100)
            mstore(add(p, 0x160), shl(224, 65537))
        }
    }

    /**
     * @dev RSASSA-PKCS1-V1_5-VERIFY (RFC 8017, 8.2.2) with SHA-256 for a 2048-bit key and exponent 65537, on a
     * filled {_modexpBuffer}: `s < n` (one signature per message, as OpenSSL requires), `m = s^e mod n` through the
     * modexp precompile, and `m` equal to the encoding of `digest` (EMSA-PKCS1-v1_5 with the DigestInfo's NULL
     * parameters, as TPMs and OpenSSL produce it).
     *
     * NOTE: this does what OpenZeppelin's {RSA-pkcs1Sha256} does, but compares the 256-byte encoded message as eight
     * words instead of its padding byte by byte, which costs about 7,000 gas more. {CvmRegistry-refreshCvm} must fit
     * 80,000 gas for the whole transaction, of which the modexp precompile alone takes 32,768 (EIP-7883) and calldata,
     * storage and the base cost another 40,000.
     */
    function _rsaVerify(uint256 p, bytes32 digest) private view returns (bool ok) {
        assembly ("memory-safe") {
            // s < n, comparing big-endian words from the most significant one.
            let less := 0
            for { let i := 0 } lt(i, 0x100) { i := add(i, 0x20) } {
                let a := mload(add(p, add(0x60, i)))
                let b := mload(add(p, add(0x164, i)))
                if lt(a, b) {
                    less := 1
                    break
                }
                if gt(a, b) { break }
            }
            if less {
                if staticcall(gas(), 0x05, p, 0x264, p, 0x100) {
                    let same := eq(mload(p), EM_WORD0)
                    for { let i := 0x20 } lt(i, 0xc0) { i := add(i, 0x20) } {
                        same := and(same, eq(mload(add(p, i)), EM_FF))
                    }
                    same := and(same, eq(mload(add(p, 0xc0)), EM_WORD6))
                    ok := and(same, eq(mload(add(p, 0xe0)), digest))
                }
            }
        }
    }

    /// @dev SHA-256 over the selected PCR values in selection order: what TPMS_QUOTE_INFO.pcrDigest must equal.
    function pcrDigest(bytes32[] calldata values) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(values));
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
