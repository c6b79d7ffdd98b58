// SPDX-License-Identifier: Apache-2.0
// cvm-attest: RSASSA-PSS verification with SHA-384 and MGF1-SHA-384, the signature AMD's ARK/ASK/ASVK use.
pragma solidity ^0.8.24;

import {Sha384} from "./Sha384.sol";

/**
 * @title RsaPss
 * @notice RSASSA-PSS-VERIFY (RFC 8017, section 8.1.2) with EMSA-PSS-VERIFY (section 9.1.2) fixed to the
 * parameters of every AMD SEV-SNP certificate signature: hash SHA-384, mask generation MGF1 with SHA-384
 * (appendix B.2.1), salt length 48, trailer field 0xbc. Built for AMD's RSA-4096 keys; any modulus of
 * 98 to 1024 bytes (the modexp precompile's EIP-7823 limit) and any public exponent work.
 *
 * The RSA step (RSAVP1, section 5.2.2) runs on the modexp precompile at address 0x05; MGF1 and the final
 * hash use {Sha384}. For a 4096-bit key that is 10 SHA-384 blocks for the mask and one for M'.
 *
 * Result: `false` for every signature that does not verify (wrong length, s >= n, bad encoding, wrong
 * hash); a revert with {RsaPssInvalidKey} only when the public key itself cannot be used.
 *
 * EMSA-PSS encoding checked (emLen = ceil((modBits - 1) / 8), hLen = sLen = 48):
 *
 *   EM = maskedDB (emLen - 49 bytes) || H (48 bytes) || 0xbc
 *   DB = maskedDB ^ MGF1(H, emLen - 49), with its top 8 emLen - emBits bits cleared
 *      = 0x00 .. 0x00 (emLen - 98 bytes) || 0x01 || salt (48 bytes)
 *   H == SHA-384(0x00 * 8 || SHA-384(M) || salt)
 */
library RsaPss {
    uint256 internal constant HASH_LEN = 48;
    uint256 internal constant SALT_LEN = 48;
    /// @dev Smallest modulus, in bytes, that can hold a PSS encoding with these lengths (section 9.1.1 step 3).
    uint256 internal constant MIN_MODULUS_BYTES = HASH_LEN + SALT_LEN + 2;
    /// @dev EIP-7823 (Osaka): the modexp precompile refuses inputs longer than 1024 bytes.
    uint256 internal constant MAX_OPERAND_BYTES = 1024;

    /// @notice The public key cannot be used: a modulus (without leading zero bytes) shorter than 98 or
    /// longer than 1024 bytes, or an exponent that is empty or longer than 1024 bytes.
    /// @param modulusLength modulus length in bytes without leading zero bytes
    /// @param exponentLength exponent length in bytes
    error RsaPssInvalidKey(uint256 modulusLength, uint256 exponentLength);

    /// @notice The modexp precompile call failed (it cannot, for operands within the limits above).
    error RsaPssModexpFailed();

    /**
     * @notice RSASSA-PSS-VERIFY of `signature` over `message` with the key (`modulus`, `exponent`), both
     * big-endian (leading zero bytes of the modulus are ignored).
     * @return true when the signature verifies with SHA-384, MGF1-SHA-384 and a 48-byte salt.
     */
    function verify(bytes memory message, bytes memory signature, bytes memory modulus, bytes memory exponent)
        internal
        view
        returns (bool)
    {
        (bytes32 hi, bytes16 lo) = Sha384.digest(message);
        return verifyDigest(hi, lo, signature, modulus, exponent);
    }

    /**
     * @notice Like {verify} for a message whose SHA-384 digest is already known (`mHashHi` its first 32
     * bytes, `mHashLo` its last 16).
     */
    function verifyDigest(
        bytes32 mHashHi,
        bytes16 mHashLo,
        bytes memory signature,
        bytes memory modulus,
        bytes memory exponent
    ) internal view returns (bool) {
        // The modulus without leading zero bytes (a DER INTEGER may carry one): k bytes at `nPtr`.
        uint256 nPtr;
        uint256 k = modulus.length;
        assembly ("memory-safe") {
            nPtr := add(modulus, 0x20)
            for {} and(gt(k, 0), iszero(byte(0, mload(nPtr)))) {} {
                nPtr := add(nPtr, 1)
                k := sub(k, 1)
            }
        }
        if (k < MIN_MODULUS_BYTES || k > MAX_OPERAND_BYTES || exponent.length == 0 || exponent.length > MAX_OPERAND_BYTES)
        {
            revert RsaPssInvalidKey(k, exponent.length);
        }
        // Section 8.1.2 step 1: the signature is exactly k bytes.
        if (signature.length != k) return false;
        // Step 2a/2b: s < n (RSAVP1), then m = s^e mod n.
        if (!_lessThan(signature, nPtr, k)) return false;
        bytes memory m = _modexp(signature, exponent, nPtr, k);

        // Step 2c: EM = I2OSP(m, emLen) with emBits = modBits - 1. When modBits = 8 (k - 1) + 1, emLen is
        // k - 1 and the leading byte of m must be zero; otherwise emLen = k and the top 8 emLen - emBits =
        // 9 - (bits of the modulus' leading byte) bits of EM must be zero (section 9.1.2 step 6).
        uint256 topBits;
        uint256 emPtr;
        uint256 emLen = k;
        assembly ("memory-safe") {
            let lead := byte(0, mload(nPtr))
            for {} lead { lead := shr(1, lead) } { topBits := add(topBits, 1) }
            emPtr := add(m, 0x20)
        }
        uint256 zeroBits = 9 - topBits; // 1..8 when emLen = k
        if (topBits == 1) {
            if (uint8(m[0]) != 0) return false;
            emPtr += 1;
            emLen = k - 1;
            zeroBits = 0;
        }
        return _emsaPssVerify(mHashHi, mHashLo, emPtr, emLen, zeroBits);
    }

    /// @dev Section 9.1.2 steps 3 to 14 on EM = memory [emPtr, emPtr + emLen), which is modified (the
    /// mask is applied in place). `zeroBits` leading bits of EM must be zero.
    function _emsaPssVerify(bytes32 mHashHi, bytes16 mHashLo, uint256 emPtr, uint256 emLen, uint256 zeroBits)
        private
        pure
        returns (bool)
    {
        // Step 3: room for H, the salt, 0x01 and 0xbc (k >= 98 guarantees it unless emLen = k - 1 = 97).
        if (emLen < HASH_LEN + SALT_LEN + 2) return false;
        uint256 dbLen = emLen - HASH_LEN - 1;
        // Seed buffer for MGF1: H || counter (52 bytes), and M' (104 bytes), allocated so that Sha384's
        // work space past the free memory pointer never overlaps them.
        bytes memory seed = new bytes(HASH_LEN + 4);
        bytes memory mPrime = new bytes(8 + HASH_LEN + SALT_LEN);
        bool ok;
        assembly ("memory-safe") {
            // Step 4: trailer 0xbc. Step 6: the leading zeroBits bits of maskedDB are zero.
            ok := and(eq(byte(0, mload(add(emPtr, sub(emLen, 1)))), 0xbc), iszero(shr(sub(256, zeroBits), mload(emPtr))))
            // Step 5: H = EM[dbLen, dbLen + 48), copied into the seed buffer.
            mcopy(add(seed, 0x20), add(emPtr, dbLen), 48)
        }
        if (!ok) return false;

        // Steps 7-8: DB = maskedDB ^ MGF1(H, dbLen), in place, 48 bytes per counter value. The last chunk
        // may run past dbLen into H's bytes of EM, which are not read again (H lives in `seed`).
        uint256 seedPtr;
        assembly ("memory-safe") {
            seedPtr := add(seed, 0x20)
        }
        for (uint256 off = 0; off < dbLen; off += HASH_LEN) {
            assembly ("memory-safe") {
                // counter = off / 48 as a 4-byte big-endian integer after H.
                mstore(add(seedPtr, 48), or(shl(224, div(off, 48)), and(mload(add(seedPtr, 48)), not(shl(224, 0xffffffff)))))
            }
            (bytes32 maskHi, bytes16 maskLo) = Sha384.digestMemory(seedPtr, HASH_LEN + 4);
            assembly ("memory-safe") {
                let p := add(emPtr, off)
                mstore(p, xor(mload(p), maskHi))
                p := add(p, 32)
                mstore(p, xor(mload(p), maskLo))
            }
        }

        assembly ("memory-safe") {
            // Step 9: clear the leading zeroBits bits of DB.
            mstore(emPtr, and(mload(emPtr), shr(zeroBits, not(0))))
            // Step 10: DB = 0x00 .. 0x00 || 0x01 || salt: the first dbLen - 49 bytes are zero and the next
            // is 0x01. The zero bytes are checked a word at a time (OR of all words, last one masked).
            let psLen := sub(dbLen, add(SALT_LEN, 1))
            let acc := 0
            let end := add(emPtr, psLen)
            let p := emPtr
            for {} lt(add(p, 32), end) { p := add(p, 32) } { acc := or(acc, mload(p)) }
            // The last (partial) word: only its first end - p bytes belong to PS.
            acc := or(acc, shr(sub(256, shl(3, sub(end, p))), mload(p)))
            ok := and(iszero(acc), eq(byte(0, mload(end)), 0x01))
            // Steps 11-12: M' = 0x00 * 8 || mHash || salt (the buffer is zeroed: bytes 0..7 stay zero).
            let mp := add(mPrime, 0x20)
            mstore(add(mp, 8), mHashHi)
            mstore(add(mp, 40), mHashLo)
            mcopy(add(mp, 56), add(end, 1), SALT_LEN)
        }
        if (!ok) return false;
        // Steps 13-14: H' = SHA-384(M') must equal H.
        (bytes32 hHi, bytes16 hLo) = Sha384.digest(mPrime);
        bytes32 seedHi;
        bytes16 seedLo;
        assembly ("memory-safe") {
            seedHi := mload(seedPtr)
            seedLo := and(mload(add(seedPtr, 32)), not(shr(128, not(0))))
        }
        return hHi == seedHi && hLo == seedLo;
    }

    /// @dev Big-endian comparison of the k-byte `signature` with the k-byte modulus at `nPtr`: s < n.
    function _lessThan(bytes memory signature, uint256 nPtr, uint256 k) private pure returns (bool less) {
        assembly ("memory-safe") {
            let sPtr := add(signature, 0x20)
            let decided := 0
            for { let i := 0 } and(lt(i, k), iszero(decided)) { i := add(i, 32) } {
                let left := sub(k, i)
                let shift := 0
                if lt(left, 32) { shift := shl(3, sub(32, left)) }
                let a := shr(shift, mload(add(sPtr, i)))
                let b := shr(shift, mload(add(nPtr, i)))
                if iszero(eq(a, b)) {
                    decided := 1
                    less := lt(a, b)
                }
            }
        }
    }

    /// @dev s^e mod n on the modexp precompile (EIP-198): a new k-byte `bytes`.
    function _modexp(bytes memory signature, bytes memory exponent, uint256 nPtr, uint256 k)
        private
        view
        returns (bytes memory out)
    {
        out = new bytes(k);
        bool success;
        assembly ("memory-safe") {
            let eLen := mload(exponent)
            let input := mload(0x40)
            mstore(input, k)
            mstore(add(input, 0x20), eLen)
            mstore(add(input, 0x40), k)
            let p := add(input, 0x60)
            mcopy(p, add(signature, 0x20), k)
            p := add(p, k)
            mcopy(p, add(exponent, 0x20), eLen)
            p := add(p, eLen)
            mcopy(p, nPtr, k)
            p := add(p, k)
            success := staticcall(gas(), 0x05, input, sub(p, input), add(out, 0x20), k)
            // (Yul evaluates arguments right to left: returndatasize() only after the call.)
            success := and(success, eq(returndatasize(), k))
        }
        if (!success) revert RsaPssModexpFailed();
    }
}
