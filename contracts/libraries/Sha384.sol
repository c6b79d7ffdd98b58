// SPDX-License-Identifier: Apache-2.0
// cvm-attest: SHA-384 and SHA-512 (FIPS 180-4) for the EVM, which has no SHA-2 family precompile beyond SHA-256.
pragma solidity ^0.8.24;

/**
 * @title Sha384
 * @notice SHA-384 of a byte string of any length: the SHA-512 compression function (FIPS 180-4,
 * sections 4.1.3 and 6.4.2) started from the SHA-384 initial hash value (section 5.3.4), the message
 * padded as in section 5.1.2 and the result truncated to its first 384 bits (section 6.5). AMD SEV-SNP
 * reports are signed over SHA-384 (ECDSA P-384) and AMD certificates with RSASSA-PSS over SHA-384.
 * {digest512} is SHA-512 from the same compression (section 5.3.5's initial value, all 512 bits): the
 * SVSM's REPORT_DATA is SHA-512(nonce || manifest).
 *
 * Gas: about 24,400 per 128-byte block (benchmarks/gas_libraries.py, `sha384_per_block`).
 *
 * How (SHA-512 works on 64-bit words; each one lives in the low 64 bits of an EVM word):
 *
 * - A 64-bit rotation is a shift of the doubled word `x = v * (2^64 + 1) = v | v << 64`:
 *   `ROTR^n(v) = (x >> n) mod 2^64`, and `ROTR^a ^ ROTR^b ^ ROTR^c = ((x ^ x >> (b-a) ^ x >> (c-a)) >> a)`
 *   while `c + 63 < 128`. Sigma0/Sigma1 (section 4.1.3) cost one MUL, three shifts and two XORs.
 * - Only the low 64 bits of a sum matter and carries move upwards only, so the bits above bit 63 that
 *   the shifts leave behind are harmless in T1 and T2; the two new working variables are the only
 *   values reduced mod 2^64 in a round.
 * - Maj(a, b, c) = b ^ ((a ^ b) & (b ^ c)), and `b ^ c` is the previous round's `a ^ b`.
 * - The message schedule (section 6.4.2, step 1) runs two words at a time in the two 128-bit lanes of
 *   one EVM word: W[t] and W[t+1] need W[t-2] and W[t-1] (sigma1), W[t-7] and W[t-6], W[t-15] and
 *   W[t-14] (sigma0), W[t-16] and W[t-15], each pair one `mload` (see the memory layout).
 * - The schedule also stores K[t] + W[t] (K, section 4.2.3, from a table written once per hash), so a
 *   round adds one loaded word. Rounds run 16 per loop iteration; instead of moving the eight working
 *   variables each round, their names rotate (16 is a multiple of 8, so every name is back in place).
 *
 * Memory layout, past the free memory pointer (used while hashing, never allocated):
 *
 *   st + 0x0000  H0..H7, one 32-byte word each
 *   st + 0x0100  W: W[i] in the 16-byte slot at w + 16 (i + 1), value in its low 8 bytes, so that
 *                mload(w + 16 t) = (W[t-1], W[t]) as its (high, low) 128-bit lanes
 *   st + 0x0620  KW: K[i] + W[i] laid out the same way; slot 80 holds the 0x80 sentinel ending the rounds
 *   st + 0x0B40  KT: K[i] laid out the same way
 *   st + 0x1060  two blocks for the padded end of the message
 *
 * NOTE: the assembly is written for solc's IR pipeline with the optimizer at high `runs`
 * (tests/support/evm.py, SOLC_SETTINGS): the loops keep few values live, so the optimizer never has to
 * move variables to memory, and large constants stay PUSH instructions.
 */
library Sha384 {
    /// @notice `offset + length` exceeds the `size` of the byte string to hash.
    /// @param offset first byte of the requested slice
    /// @param length length of the requested slice
    /// @param size length of the byte string
    error Sha384OutOfBounds(uint256 offset, uint256 length, uint256 size);

    /// @notice SHA-384 of `data`, as the first 32 and the last 16 of its 48 bytes.
    function digest(bytes memory data) internal pure returns (bytes32 hi, bytes16 lo) {
        uint256 ptr;
        assembly ("memory-safe") {
            ptr := add(data, 0x20)
        }
        return digestMemory(ptr, data.length);
    }

    /// @notice SHA-384 of `data[offset:offset + length]` without copying it (e.g. the signed bytes
    /// 0x000..0x29F of an SNP report, or the TBSCertificate inside a DER certificate).
    /// @dev Reverts with {Sha384OutOfBounds} when the slice does not lie inside `data`.
    function digestSlice(bytes memory data, uint256 offset, uint256 length)
        internal
        pure
        returns (bytes32 hi, bytes16 lo)
    {
        if (offset > data.length || length > data.length - offset) {
            revert Sha384OutOfBounds(offset, length, data.length);
        }
        uint256 ptr;
        assembly ("memory-safe") {
            ptr := add(add(data, 0x20), offset)
        }
        return digestMemory(ptr, length);
    }

    /// @notice SHA-384 of `data` as a new 48-byte `bytes`.
    function hash(bytes memory data) internal pure returns (bytes memory out) {
        (bytes32 hi, bytes16 lo) = digest(data);
        out = abi.encodePacked(hi, lo);
    }

    /**
     * @notice SHA-384 of the `length` bytes of memory starting at `ptr`.
     * @dev IMPORTANT: the caller guarantees that `[ptr, ptr + length)` is memory it owns (the entry points
     * above derive it from a `bytes` value) and that `length < 2^125` (true of any memory range).
     */
    function digestMemory(uint256 ptr, uint256 length) internal pure returns (bytes32 hi, bytes16 lo) {
        bytes32 rest;
        (hi, rest) = _sha512Family(ptr, length, false);
        lo = bytes16(rest);
    }

    /// @notice SHA-512 (FIPS 180-4, section 6.4) of `data`, as the first and the last 32 of its 64 bytes.
    function digest512(bytes memory data) internal pure returns (bytes32 hi, bytes32 lo) {
        uint256 ptr;
        assembly ("memory-safe") {
            ptr := add(data, 0x20)
        }
        return _sha512Family(ptr, data.length, true);
    }

    /**
     * @dev The SHA-512 compression over the padded message at `[ptr, ptr + length)` (as {digestMemory} requires
     * it), started from the SHA-512 initial hash value (section 5.3.5) when `sha512`, else from SHA-384's
     * (section 5.3.4). Returns H0..H3 and H4..H7 of the last hash value, big-endian: SHA-512 is all of it,
     * SHA-384 its first 48 bytes (section 6.5). One body for both, so a contract using both carries it once.
     */
    function _sha512Family(uint256 ptr, uint256 length, bool sha512) private pure returns (bytes32 hi, bytes32 lo) {
        assembly ("memory-safe") {
            // Section 6.4.2: compresses the 128-byte block at `blk` into H0..H7 at `st` (layout above).
            function compress(st, blk) {
                let x, y, p, q
                let w := add(st, 0x100)
                let kw := add(st, 0x620)
                let kt := add(st, 0xb40)
                // Step 1, t = 0..15: W[t] is the block's t-th big-endian 64-bit word; 4 per 32 bytes.
                for { let j := 0 } lt(j, 128) { j := add(j, 32) } {
                    x := mload(add(blk, j))
                    q := add(shl(1, j), 16)
                    p := or(and(shr(64, x), 0xffffffffffffffff00000000000000000000000000000000), and(shr(128, x), 0xffffffffffffffff))
                    mstore(add(w, q), p)
                    mstore(add(kw, q), add(p, mload(add(kt, q))))
                    q := add(q, 32)
                    p := or(and(shl(64, x), 0xffffffffffffffff00000000000000000000000000000000), and(x, 0xffffffffffffffff))
                    mstore(add(w, q), p)
                    mstore(add(kw, q), add(p, mload(add(kt, q))))
                }
                // Step 1, t = 16..79, pairs (W[t], W[t+1]) with s = w + 16 (t - 1), 16 pairs per pass:
                // W[t] = sigma1(W[t-2]) + W[t-7] + sigma0(W[t-15]) + W[t-16] (mod 2^64) where, on the
                // doubled words, sigma1 = ROTR19 ^ ROTR61 ^ SHR6 = ((x ^ x >> 42) >> 19) ^ v >> 6 and
                // sigma0 = ROTR1 ^ ROTR8 ^ SHR7 = ((x ^ x >> 7) >> 1) ^ v >> 7. The bits each lane leaves
                // in the 64 bits above its own are cleared before adding, so no carry crosses lanes.
                // W, KW and KT are 0x520 bytes apart.
                for { let s := add(w, 240) } lt(s, add(w, 1264)) { s := add(s, 512) } {
                    p := mload(s)
                    x := mul(p, 0x10000000000000001)
                    q := mload(sub(s, 208))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 80))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 224)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 32), p)
                    mstore(add(s, 1344), add(p, mload(add(s, 2656))))
                    p := mload(add(s, 32))
                    x := mul(p, 0x10000000000000001)
                    q := mload(sub(s, 176))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 48))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 192)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 64), p)
                    mstore(add(s, 1376), add(p, mload(add(s, 2688))))
                    p := mload(add(s, 64))
                    x := mul(p, 0x10000000000000001)
                    q := mload(sub(s, 144))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 16))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 160)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 96), p)
                    mstore(add(s, 1408), add(p, mload(add(s, 2720))))
                    p := mload(add(s, 96))
                    x := mul(p, 0x10000000000000001)
                    q := mload(sub(s, 112))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 16))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 128)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 128), p)
                    mstore(add(s, 1440), add(p, mload(add(s, 2752))))
                    p := mload(add(s, 128))
                    x := mul(p, 0x10000000000000001)
                    q := mload(sub(s, 80))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 48))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 96)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 160), p)
                    mstore(add(s, 1472), add(p, mload(add(s, 2784))))
                    p := mload(add(s, 160))
                    x := mul(p, 0x10000000000000001)
                    q := mload(sub(s, 48))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 80))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 64)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 192), p)
                    mstore(add(s, 1504), add(p, mload(add(s, 2816))))
                    p := mload(add(s, 192))
                    x := mul(p, 0x10000000000000001)
                    q := mload(sub(s, 16))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 112))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(sub(s, 32)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 224), p)
                    mstore(add(s, 1536), add(p, mload(add(s, 2848))))
                    p := mload(add(s, 224))
                    x := mul(p, 0x10000000000000001)
                    q := mload(add(s, 16))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 144))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(s))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 256), p)
                    mstore(add(s, 1568), add(p, mload(add(s, 2880))))
                    p := mload(add(s, 256))
                    x := mul(p, 0x10000000000000001)
                    q := mload(add(s, 48))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 176))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 32)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 288), p)
                    mstore(add(s, 1600), add(p, mload(add(s, 2912))))
                    p := mload(add(s, 288))
                    x := mul(p, 0x10000000000000001)
                    q := mload(add(s, 80))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 208))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 64)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 320), p)
                    mstore(add(s, 1632), add(p, mload(add(s, 2944))))
                    p := mload(add(s, 320))
                    x := mul(p, 0x10000000000000001)
                    q := mload(add(s, 112))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 240))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 96)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 352), p)
                    mstore(add(s, 1664), add(p, mload(add(s, 2976))))
                    p := mload(add(s, 352))
                    x := mul(p, 0x10000000000000001)
                    q := mload(add(s, 144))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 272))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 128)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 384), p)
                    mstore(add(s, 1696), add(p, mload(add(s, 3008))))
                    p := mload(add(s, 384))
                    x := mul(p, 0x10000000000000001)
                    q := mload(add(s, 176))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 304))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 160)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 416), p)
                    mstore(add(s, 1728), add(p, mload(add(s, 3040))))
                    p := mload(add(s, 416))
                    x := mul(p, 0x10000000000000001)
                    q := mload(add(s, 208))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 336))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 192)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 448), p)
                    mstore(add(s, 1760), add(p, mload(add(s, 3072))))
                    p := mload(add(s, 448))
                    x := mul(p, 0x10000000000000001)
                    q := mload(add(s, 240))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 368))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 224)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 480), p)
                    mstore(add(s, 1792), add(p, mload(add(s, 3104))))
                    p := mload(add(s, 480))
                    x := mul(p, 0x10000000000000001)
                    q := mload(add(s, 272))
                    y := mul(q, 0x10000000000000001)
                    p := and(add(add(and(xor(shr(19, xor(x, shr(42, x))), shr(6, p)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 400))), add(and(xor(shr(1, xor(y, shr(7, y))), shr(7, q)), 0xffffffffffffffff0000000000000000ffffffffffffffff), mload(add(s, 256)))), 0xffffffffffffffff0000000000000000ffffffffffffffff)
                    mstore(add(s, 512), p)
                    mstore(add(s, 1824), add(p, mload(add(s, 3136))))
                }
                // Step 2: the working variables.
                let a := mload(st)
                let b := mload(add(st, 0x20))
                let c := mload(add(st, 0x40))
                let d := mload(add(st, 0x60))
                let e := mload(add(st, 0x80))
                let f := mload(add(st, 0xa0))
                let g := mload(add(st, 0xc0))
                let h := mload(add(st, 0xe0))
                // Step 3: T1 = h + Sigma1(e) + Ch(e, f, g) + (K[t] + W[t]), T2 = Sigma0(a) + Maj(a, b, c),
                // d += T1, h = T1 + T2 and the names rotate; Sigma1 = ROTR14 ^ ROTR18 ^ ROTR41,
                // Sigma0 = ROTR28 ^ ROTR34 ^ ROTR39, Ch = g ^ (e & (f ^ g)), Maj as above with m = b ^ c.
                // Byte 16 of mload(v) is the top byte of K[t] + W[t] (< 2^65, so zero) until v reaches
                // the sentinel slot: the loop needs no separate bound.
                let m := xor(b, c)
                let v := kw
                for {} iszero(byte(16, mload(v))) { v := add(v, 256) } {
                    // round 16i+0
                    x := mul(e, 0x10000000000000001)
                    x := add(add(add(h, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(g, and(e, xor(f, g)))), mload(v))
                    d := and(add(d, x), 0xffffffffffffffff)
                    y := mul(a, 0x10000000000000001)
                    q := xor(a, b)
                    h := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(b, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+1
                    x := mul(d, 0x10000000000000001)
                    x := add(add(add(g, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(f, and(d, xor(e, f)))), mload(add(v, 16)))
                    c := and(add(c, x), 0xffffffffffffffff)
                    y := mul(h, 0x10000000000000001)
                    q := xor(h, a)
                    g := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(a, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+2
                    x := mul(c, 0x10000000000000001)
                    x := add(add(add(f, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(e, and(c, xor(d, e)))), mload(add(v, 32)))
                    b := and(add(b, x), 0xffffffffffffffff)
                    y := mul(g, 0x10000000000000001)
                    q := xor(g, h)
                    f := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(h, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+3
                    x := mul(b, 0x10000000000000001)
                    x := add(add(add(e, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(d, and(b, xor(c, d)))), mload(add(v, 48)))
                    a := and(add(a, x), 0xffffffffffffffff)
                    y := mul(f, 0x10000000000000001)
                    q := xor(f, g)
                    e := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(g, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+4
                    x := mul(a, 0x10000000000000001)
                    x := add(add(add(d, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(c, and(a, xor(b, c)))), mload(add(v, 64)))
                    h := and(add(h, x), 0xffffffffffffffff)
                    y := mul(e, 0x10000000000000001)
                    q := xor(e, f)
                    d := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(f, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+5
                    x := mul(h, 0x10000000000000001)
                    x := add(add(add(c, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(b, and(h, xor(a, b)))), mload(add(v, 80)))
                    g := and(add(g, x), 0xffffffffffffffff)
                    y := mul(d, 0x10000000000000001)
                    q := xor(d, e)
                    c := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(e, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+6
                    x := mul(g, 0x10000000000000001)
                    x := add(add(add(b, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(a, and(g, xor(h, a)))), mload(add(v, 96)))
                    f := and(add(f, x), 0xffffffffffffffff)
                    y := mul(c, 0x10000000000000001)
                    q := xor(c, d)
                    b := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(d, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+7
                    x := mul(f, 0x10000000000000001)
                    x := add(add(add(a, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(h, and(f, xor(g, h)))), mload(add(v, 112)))
                    e := and(add(e, x), 0xffffffffffffffff)
                    y := mul(b, 0x10000000000000001)
                    q := xor(b, c)
                    a := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(c, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+8
                    x := mul(e, 0x10000000000000001)
                    x := add(add(add(h, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(g, and(e, xor(f, g)))), mload(add(v, 128)))
                    d := and(add(d, x), 0xffffffffffffffff)
                    y := mul(a, 0x10000000000000001)
                    q := xor(a, b)
                    h := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(b, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+9
                    x := mul(d, 0x10000000000000001)
                    x := add(add(add(g, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(f, and(d, xor(e, f)))), mload(add(v, 144)))
                    c := and(add(c, x), 0xffffffffffffffff)
                    y := mul(h, 0x10000000000000001)
                    q := xor(h, a)
                    g := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(a, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+10
                    x := mul(c, 0x10000000000000001)
                    x := add(add(add(f, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(e, and(c, xor(d, e)))), mload(add(v, 160)))
                    b := and(add(b, x), 0xffffffffffffffff)
                    y := mul(g, 0x10000000000000001)
                    q := xor(g, h)
                    f := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(h, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+11
                    x := mul(b, 0x10000000000000001)
                    x := add(add(add(e, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(d, and(b, xor(c, d)))), mload(add(v, 176)))
                    a := and(add(a, x), 0xffffffffffffffff)
                    y := mul(f, 0x10000000000000001)
                    q := xor(f, g)
                    e := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(g, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+12
                    x := mul(a, 0x10000000000000001)
                    x := add(add(add(d, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(c, and(a, xor(b, c)))), mload(add(v, 192)))
                    h := and(add(h, x), 0xffffffffffffffff)
                    y := mul(e, 0x10000000000000001)
                    q := xor(e, f)
                    d := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(f, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+13
                    x := mul(h, 0x10000000000000001)
                    x := add(add(add(c, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(b, and(h, xor(a, b)))), mload(add(v, 208)))
                    g := and(add(g, x), 0xffffffffffffffff)
                    y := mul(d, 0x10000000000000001)
                    q := xor(d, e)
                    c := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(e, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+14
                    x := mul(g, 0x10000000000000001)
                    x := add(add(add(b, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(a, and(g, xor(h, a)))), mload(add(v, 224)))
                    f := and(add(f, x), 0xffffffffffffffff)
                    y := mul(c, 0x10000000000000001)
                    q := xor(c, d)
                    b := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(d, and(q, m)))), 0xffffffffffffffff)
                    m := q
                    // round 16i+15
                    x := mul(f, 0x10000000000000001)
                    x := add(add(add(a, shr(14, xor(x, xor(shr(4, x), shr(27, x))))), xor(h, and(f, xor(g, h)))), mload(add(v, 240)))
                    e := and(add(e, x), 0xffffffffffffffff)
                    y := mul(b, 0x10000000000000001)
                    q := xor(b, c)
                    a := and(add(x, add(shr(28, xor(y, xor(shr(6, y), shr(11, y)))), xor(c, and(q, m)))), 0xffffffffffffffff)
                    m := q
                }
                // Step 4: H(i) = H(i-1) + working variables (mod 2^64). The loop ended at v = kw + 1280,
                // so st = v - 0x620 - 1280 (recomputed here: one value less to keep live in the rounds).
                st := sub(v, 0xb20)
                mstore(st, and(add(mload(st), a), 0xffffffffffffffff))
                mstore(add(st, 0x20), and(add(mload(add(st, 0x20)), b), 0xffffffffffffffff))
                mstore(add(st, 0x40), and(add(mload(add(st, 0x40)), c), 0xffffffffffffffff))
                mstore(add(st, 0x60), and(add(mload(add(st, 0x60)), d), 0xffffffffffffffff))
                mstore(add(st, 0x80), and(add(mload(add(st, 0x80)), e), 0xffffffffffffffff))
                mstore(add(st, 0xa0), and(add(mload(add(st, 0xa0)), f), 0xffffffffffffffff))
                mstore(add(st, 0xc0), and(add(mload(add(st, 0xc0)), g), 0xffffffffffffffff))
                mstore(add(st, 0xe0), and(add(mload(add(st, 0xe0)), h), 0xffffffffffffffff))
            }

            let st := mload(0x40)
            let kt := add(st, 0xb40)
            let tail := add(st, 0x1060)
            // Section 4.2.3: the round constants K, as (K[t], K[t+1]) lane pairs at kt + 16 (t + 1).
            mstore(add(kt, 16), 0x428a2f98d728ae2200000000000000007137449123ef65cd)
            mstore(add(kt, 48), 0xb5c0fbcfec4d3b2f0000000000000000e9b5dba58189dbbc)
            mstore(add(kt, 80), 0x3956c25bf348b538000000000000000059f111f1b605d019)
            mstore(add(kt, 112), 0x923f82a4af194f9b0000000000000000ab1c5ed5da6d8118)
            mstore(add(kt, 144), 0xd807aa98a3030242000000000000000012835b0145706fbe)
            mstore(add(kt, 176), 0x243185be4ee4b28c0000000000000000550c7dc3d5ffb4e2)
            mstore(add(kt, 208), 0x72be5d74f27b896f000000000000000080deb1fe3b1696b1)
            mstore(add(kt, 240), 0x9bdc06a725c712350000000000000000c19bf174cf692694)
            mstore(add(kt, 272), 0xe49b69c19ef14ad20000000000000000efbe4786384f25e3)
            mstore(add(kt, 304), 0x0fc19dc68b8cd5b50000000000000000240ca1cc77ac9c65)
            mstore(add(kt, 336), 0x2de92c6f592b027500000000000000004a7484aa6ea6e483)
            mstore(add(kt, 368), 0x5cb0a9dcbd41fbd4000000000000000076f988da831153b5)
            mstore(add(kt, 400), 0x983e5152ee66dfab0000000000000000a831c66d2db43210)
            mstore(add(kt, 432), 0xb00327c898fb213f0000000000000000bf597fc7beef0ee4)
            mstore(add(kt, 464), 0xc6e00bf33da88fc20000000000000000d5a79147930aa725)
            mstore(add(kt, 496), 0x06ca6351e003826f0000000000000000142929670a0e6e70)
            mstore(add(kt, 528), 0x27b70a8546d22ffc00000000000000002e1b21385c26c926)
            mstore(add(kt, 560), 0x4d2c6dfc5ac42aed000000000000000053380d139d95b3df)
            mstore(add(kt, 592), 0x650a73548baf63de0000000000000000766a0abb3c77b2a8)
            mstore(add(kt, 624), 0x81c2c92e47edaee6000000000000000092722c851482353b)
            mstore(add(kt, 656), 0xa2bfe8a14cf103640000000000000000a81a664bbc423001)
            mstore(add(kt, 688), 0xc24b8b70d0f897910000000000000000c76c51a30654be30)
            mstore(add(kt, 720), 0xd192e819d6ef52180000000000000000d69906245565a910)
            mstore(add(kt, 752), 0xf40e35855771202a0000000000000000106aa07032bbd1b8)
            mstore(add(kt, 784), 0x19a4c116b8d2d0c800000000000000001e376c085141ab53)
            mstore(add(kt, 816), 0x2748774cdf8eeb99000000000000000034b0bcb5e19b48a8)
            mstore(add(kt, 848), 0x391c0cb3c5c95a6300000000000000004ed8aa4ae3418acb)
            mstore(add(kt, 880), 0x5b9cca4f7763e3730000000000000000682e6ff3d6b2b8a3)
            mstore(add(kt, 912), 0x748f82ee5defb2fc000000000000000078a5636f43172f60)
            mstore(add(kt, 944), 0x84c87814a1f0ab7200000000000000008cc702081a6439ec)
            mstore(add(kt, 976), 0x90befffa23631e280000000000000000a4506cebde82bde9)
            mstore(add(kt, 1008), 0xbef9a3f7b2c679150000000000000000c67178f2e372532b)
            mstore(add(kt, 1040), 0xca273eceea26619c0000000000000000d186b8c721c0c207)
            mstore(add(kt, 1072), 0xeada7dd6cde0eb1e0000000000000000f57d4f7fee6ed178)
            mstore(add(kt, 1104), 0x06f067aa72176fba00000000000000000a637dc5a2c898a6)
            mstore(add(kt, 1136), 0x113f9804bef90dae00000000000000001b710b35131c471b)
            mstore(add(kt, 1168), 0x28db77f523047d84000000000000000032caab7b40c72493)
            mstore(add(kt, 1200), 0x3c9ebe0a15c9bebc0000000000000000431d67c49c100d4c)
            mstore(add(kt, 1232), 0x4cc5d4becb3e42b60000000000000000597f299cfc657e2a)
            mstore(add(kt, 1264), 0x5fcb6fab3ad6faec00000000000000006c44198c4a475817)
            // The sentinel after the last K + W slot (slot 80 of KW; the schedule never writes it).
            mstore8(add(st, 0xb30), 0x80)
            switch sha512
            case 0 {
                // Section 5.3.4: the SHA-384 initial hash value H(0).
                mstore(st, 0xcbbb9d5dc1059ed8)
                mstore(add(st, 0x20), 0x629a292a367cd507)
                mstore(add(st, 0x40), 0x9159015a3070dd17)
                mstore(add(st, 0x60), 0x152fecd8f70e5939)
                mstore(add(st, 0x80), 0x67332667ffc00b31)
                mstore(add(st, 0xa0), 0x8eb44a8768581511)
                mstore(add(st, 0xc0), 0xdb0c2e0d64f98fa7)
                mstore(add(st, 0xe0), 0x47b5481dbefa4fa4)
            }
            default {
                // Section 5.3.5: the SHA-512 initial hash value H(0).
                mstore(st, 0x6a09e667f3bcc908)
                mstore(add(st, 0x20), 0xbb67ae8584caa73b)
                mstore(add(st, 0x40), 0x3c6ef372fe94f82b)
                mstore(add(st, 0x60), 0xa54ff53a5f1d36f1)
                mstore(add(st, 0x80), 0x510e527fade682d1)
                mstore(add(st, 0xa0), 0x9b05688c2b3e6c1f)
                mstore(add(st, 0xc0), 0x1f83d9abfb41bd6b)
                mstore(add(st, 0xe0), 0x5be0cd19137e2179)
            }

            // Section 5.1.2: after the last complete block, the rest of the message, 0x80, zeros and the
            // length in bits as a 128-bit big-endian integer ending a block: one block if at most 111
            // bytes remain, else two. The length goes in first (its 32-byte store also clears the 16
            // bytes before it), then the message bytes, then the 0x80 marker.
            let full := add(ptr, and(length, not(127)))
            let rest := and(length, 127)
            mstore(tail, 0)
            mstore(add(tail, 0x20), 0)
            mstore(add(tail, 0x40), 0)
            mstore(add(tail, 0x60), 0)
            mstore(add(tail, 0x80), 0)
            mstore(add(tail, 0xa0), 0)
            mstore(add(tail, 0xc0), 0)
            mstore(add(tail, 0xe0), 0)
            let tailEnd := add(tail, 128)
            if gt(rest, 111) { tailEnd := add(tail, 256) }
            mstore(sub(tailEnd, 0x20), shl(3, length))
            mcopy(tail, full, rest)
            mstore8(add(tail, rest), 0x80)

            // Every complete block straight from the input, then the padded end.
            for { let blk := ptr } lt(blk, full) { blk := add(blk, 128) } { compress(st, blk) }
            for { let blk := tail } lt(blk, tailEnd) { blk := add(blk, 128) } { compress(st, blk) }

            // Section 6.4.2, step 4 and 6.5: H0..H7 of the last hash value, big-endian.
            hi := or(or(shl(192, mload(st)), shl(128, mload(add(st, 0x20)))), or(shl(64, mload(add(st, 0x40))), mload(add(st, 0x60))))
            lo := or(or(shl(192, mload(add(st, 0x80))), shl(128, mload(add(st, 0xa0)))), or(shl(64, mload(add(st, 0xc0))), mload(add(st, 0xe0))))
        }
    }
}
