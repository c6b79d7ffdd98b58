// SPDX-License-Identifier: Apache-2.0
// cvm-attest: ECDSA P-384 (secp384r1) signature verification for the EVM, without the modexp-based bignum arithmetic.
pragma solidity ^0.8.24;

/**
 * @title P384
 * @notice ECDSA signature verification over NIST P-384 (secp384r1, FIPS 186-5 / SEC 2) for SHA-384
 * digests (SEC 1 v2 section 4.1.4): what AMD SEV-SNP firmware signs attestation reports with.
 * Field arithmetic runs on native 256-bit words (two words per 384-bit element), not on the modexp
 * precompile; the precompile is used only for the few inversions.
 */
library P384 {
    /// @notice A 48-byte big-endian input (digest, r, s or a coordinate) had another length.
    /// @param length the length received
    error P384InvalidLength(uint256 length);
    /// @notice The public key is not a P-384 point: a coordinate is not below p, or (x, y) is off the curve.
    error P384InvalidPublicKey();

    bytes private constant G_TABLE =
        hex"aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab73617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f"
        hex"077a41d4606ffa1464793c7e5fdc7d98cb9d3910202dcd06bea4f240d3566da6b408bbae5026580d02d7e5c70500c831c995f7ca0b0c42837d0bbe9602a9fc998520b41c85115aa5f7684c0edc111eacc24abd6be4b5d298b65f28600a2f1df1"
        hex"11de24a2c251c777573cac5ea025e467f208e51dbff98fc54f6661cbe56583b037882f4a1ca297e60abcdbc3836d84bc8fa696c77440f92d0f5837e90a00e7c5284b447754d5dee88c986533b6901aeb3177686d0ae8fb33184414abe6c1713a"
        hex"283c1d7365ce4788f29f8ebf234edffead6fe997fbea5ffa2d58cc9dfa7b1c508b05526f55b9ebb2040f05b48fb6d0e19475c99061e41b88ba52efdb8c1690471a61d867ed799729d9c92cd01dbd225630d84ede32a78f9e64664cdac512ef8c"
        hex"8f0a39a4049bcb3ef1bf29b8b025b78f2216f7291e6fd3bac6cb1ee285fb6e21c388528bfee2b9535c55e4461079118b62c77e1438b601d6452c4a5322c3a9799a9b3d7ca3c400c6b7678854aed9b3029e743efedfd51b68262da4f9ac664af8"
        hex"099056e27da7b998da1eeec2904816c57fe935ed5837c37456c9fd14892d3f8c4749b66e3afb81d626356f3b55b4ddd82e4c0c234e30ab96688505544ac5e0396fc4eed8dfc363fd43ff93f41b52a3255466d51263aaff357d5dba8138c5e0bb"
        hex"a567ba97b67aea5bafdaf5002ffcc6ab9632bff9f01f873f6267bcd1f0f11c139ee5f441abd99f1baaf1ca1e3b5cbce7de1b38b3989f3318644e4147af164ecc5185595046932ec086329be057857d66776bcb8272218a7d6423a12736f429cc"
        hex"b3d13fc8b32b01058cc15c11d813525522a94156fff01c205b21f9f7da7c4e9ca849557a10b6383b4b88701a9606860b152919e7df9162a61b049b2536164b1beebac4a11d749af484d1114373dfbfd9838d24f8b284af50985d588d33f7bd62"
        hex"4099952208b4889600a5ebbcb13e1a32692befb0733b41e6dcc614e42e5805f817012a991af1f486caf3a9add9ffcc035ecf94777833059839474594af603598163ad3f8008ad0cd9b797d277f2388b304da4d2faa9680ecfa650ef5e23b09a0"
        hex"8d481dab912bc8ab16858a211d750b77e07dbecca86cd9b012390b430467aabf59c8651060801c0e9599e68713f5d41ba1592ff0121460857be99f2a60669050b2291b68a1039aa0594b32fd7adc0e8c11ffba5608004e646995b07e75e52245"
        hex"27935df4e25c6f47c7817121057d46e1606290985f8283f5f9936136bf42cdb746a37313df88fd64626b4c175eb77422380a1a3b4898d4cd9ab1a3798d1e3524a4f2d4aec079c6b7585d9c4e6c615b532b6f8d9838ef0c139d5606eb10c69f84"
        hex"3cb647a5df014c23e741a4a8000d5eb822c0102fd4293a78a68749c30c7f9aa484a900a91f7c4ab51e555ebc684aac8128300479a8f88dd04966f85ebdc18cb46103c7b0218bc8377afbf0557ead636809be21f6414b9be279b65fea0d5a2b14"
        hex"e4c6d5cb9183a6709ee9eb526794676207c4d76fab5ce0a3555746bd28fda97431a8a58b3dcb2ca446f41be83716be9aa37245523aa57845c0027f165dd74ca95942e18d15922f206280b8afe5d6a5a209a957bbac49722cffaf54d7e6aac897"
        hex"9c5fa2c13f418e623c316d5a82c8b70508e3acaa2b4a8d3a4acb49c0d7ba04e220761bc15898e1b06b4eedfa23e2e546f641de0cb075851a5afe81503cb7bf6194fdf1b7da9e59556f015651bd9218e30ef2c4b2213f519b529fb56479f48752"
        hex"f1bc35f9656c6eead7b75810ce554ee56e0af4f41cbcde50fa46d04f4d4dfca2ad69e407f57b1e27977bb83b1eb1a3732458497a559bcdccf733c547c0f2b3dc8d7aec776d94fc70531f70960a30e8383ffe8f5147848a0e53e0d05ef28faf29"
        hex"f2e6f06f0ea533e804fcfa12c087d446c73e3336394c98c59d3993124d374e62061fa485bd1b8a650c8361dba9eb28b98f86e464c200bc46f9e442612fcffbd14a041a8651780d313fb0b9ac114251cd3e8802c6d2fc9ebf3152f5ba7852680c"
        hex"38dbd58238c21bbca92758f2773bb6c955492715879f54bdaf246b3f70bec90d631eaed97add3fe2aefd7fec482c802a828c26694df8188912a77e148373d30feff54a716511f5f17b86f2aba9bd9527d3145ea7abbf4370599a066726d333bb"
        hex"77c12dceca498ff99b9863d46535a5abc3675bf4f728f3ac55a0270e5859145dc998b7fd7b3813ca29e4ae10ae1410eaeee351bc34276d3ad302f0d0bd10269e396e7fb8964f430400487a48cee2b22cc20c5f0bbef2267335747e089cbeef77"
        hex"1221b1e1be96dfe8fdb4300af2deaadcd850ac1e45c8fcb941c36c0122a10654e56ba2d9cafcb4482a07272d05de389d50b225fa8a5ed8381ad8460e2e216618059953dd8965d97db233124188d17ebb5f4f2a9231bf6723533ffb21939dd273"
        hex"9bc6b654362621678224c2dcc11702de31c65d0bd2d3642c35b72c15f264347c4983e9bc8a47b24d15ac797ea8f8fedb4482f093849864ec7147eed091efb368dba18218185770c722e5893043a248bf6ad799aed585d888c0979304abbcfcd4"
        hex"2ce37b2917ad0d5c411a5ed920a88b095185d456b279a18410d10234b609b8c7077b05ca6a94f76d10f3f39e87c76293bf27e3e07ba0ebb9dabde6f484adc04fbab5b7b88f8035478208f6db859227bb4dda48b4fa5d1dfdcf8a7d7be2a7607e"
        hex"9c3adb9111fe252ca5a2ff485cf5a64f4de52ef9689a5eb5aba8ddfa4745a605aa49a4148fbebc6780dddc249a26a33d83e8d95f813af4db50b9f80b22b4829a69dcb8452f0576634c69c4c0108a6a32dbae5b8175af7420344000dc47355061"
        hex"6ce3bf11431d1d9c3bce43bec4f4609eadd9c644fd8393e3258449c2e28cd17cb03d491de84ea016a5b68a56bbfef50fc3325e274b23604e7c76075539542abd918800e37b4e4aa858d74fe2bc8777e08105da32421e5cfe36dde9917c570471"
        hex"1273f595eaba5df1a06f4ca5fa30e0bcc870bf64c76762c0e2a9530742a384f121e9e8ccc22e6b2cd5254db0689a30fe62737fc8fe0818cba0db552ca682b49fa1afe32ae0ca83c213cce2421581486ca7147a032edfc8b0cbdaf9963d58f4ce"
        hex"a6c36459d1243ff7f504f32fc1211afd7486cc53003ed182dd74d976a49117348828f5b191d03d1c9da43e8e5a0e8cf258279fcdf96c71d91cebd105c28a71d00bd72553fa3365b422899f57821ad25b38a1bc0bc57b89f62e6ddb768c63b40a"
        hex"8bc6057da46fdafba86d2c9e23c2f5bc0b4a2a1247e8f2cc7126ed3b510b0341a618a8cc08d1b992ffe06fbae0068fb0fea19f27f6881a60fbf2a22fd1f1985d777fe7595994ae0d42fed20299ce970554c6d084dd6077f56cb597b8e22c2ce9"
        hex"a0e5cd10144167c592288353932cf40888e935bdd5f169ba8f41cbe07c3e20b6ff2ca2a90bdc08ac90903c9d776e9fa3120de79718d154feaa542f5c1e7ce4bed6396c943a16024ee7dbf0ae17f7fd0a0c9dcbea9d4197aafc5c555ade9e587e"
        hex"a059cd75571b3507307d064e7750ab08f36d925a4f0112f5f22f519eeae1eb0130d0a0e2e2ee7c873bb25771ff2b4f8540f6ae62c5a75f70026d8cebfcdfc32efc311351556408ff0fa0147d878235aaa880c76b8849bcd5aec87aa569c8d6cc"
        hex"8654ddc7eb10d5a84f1cec9879cabece6c3eb8b272461fc778baa6599653227907fd3823a2b10416709d6a38b6ecb8bd3127066c11092e88830567af763ec9d0742599e648fd7ea47d1d13d1aa1c7e4088d6dbd5abb99b51b867bea8e3578549"
        hex"cc42cb6ad9f7161a4296f482176d1b0191e7691569202b98a2b93e41e5a75d8abbf7b15b29f59772ba77d70f99fe20b0bbd6bb6bad8516d391646e65069fa685ea4223f449e3895ec23168cdfb54deb9182916746338781dda74d5345e24d63f"
        hex"0a12151e620a81a2870b7900c1c476895f729644b4fa011fa92542dbf5872edcb5e5a6d1fb4071db5c24cc10bda2cc75857c802960eaebb7e15002475bc0a80c4479d4c75bb1d9f1cf6593451a9a069884fb986767fb8c48a13e157ec5a3e83c"
        hex"b32e89eb942aab112cae508f5164ca6cac334769de358b333c968cfbb83c8f7b941560583def5431afd574f7e008f8afb1e3ae7166d9710324e2bf69603ffd5ba770fc48b73edc0679cddd7a0499009535daedff59e74a1ac81abe0944e11e2c";

    /// @notice True iff (r, s) is a valid signature of the 48-byte SHA-384 `digest` under the key (qx, qy).
    /// @dev Reverts with {P384InvalidLength} or {P384InvalidPublicKey} on malformed inputs; r or s out of
    /// [1, n - 1] is an invalid signature (false).
    function verify(bytes memory digest, bytes memory r, bytes memory s, bytes memory qx, bytes memory qy)
        internal
        view
        returns (bool)
    {
        (uint256 eh, uint256 el) = _load48(digest);
        (uint256 rh, uint256 rl) = _load48(r);
        (uint256 sh, uint256 sl) = _load48(s);
        (uint256 xh, uint256 xl) = _load48(qx);
        (uint256 yh, uint256 yl) = _load48(qy);
        return _verify(eh, el, rh, rl, sh, sl, xh, xl, yh, yl);
    }

    function _load48(bytes memory b) private pure returns (uint256 hi, uint256 lo) {
        if (b.length != 48) revert P384InvalidLength(b.length);
        assembly ("memory-safe") {
            hi := shr(128, mload(add(b, 0x20)))
            lo := mload(add(b, 0x30))
        }
    }

    function _verify(
        uint256 eHi, uint256 eLo, uint256 rHi, uint256 rLo, uint256 sHi, uint256 sLo,
        uint256 qxHi, uint256 qxLo, uint256 qyHi, uint256 qyLo
    ) private view returns (bool ok) {
        bytes memory gTable = G_TABLE;
        bool badKey;
        assembly ("memory-safe") {
            // ---------------------------------------------------------------- field arithmetic mod p
            function fmul(x1, x0, y1, y0) -> z1, z0 {
                z0 := mul(x0, y0)
                let w1 := mulmod(x0, y0, not(0))
                w1 := sub(sub(w1, z0), lt(w1, z0))
                let xl := add(mul(x1, y0), mul(x0, y1))
                let w2 := addmod(mulmod(x1, y0, not(0)), mulmod(x0, y1, not(0)), not(0))
                w2 := add(sub(sub(w2, xl), lt(w2, xl)), mul(x1, y1))
                w1 := add(w1, xl)
                w2 := add(w2, lt(w1, xl))
                z1, z0 := reduce(z0, w1, w2)
            }
            function fsqr(x1, x0) -> z1, z0 {
                z0 := mul(x0, x0)
                let w1 := mulmod(x0, x0, not(0))
                w1 := sub(sub(w1, z0), lt(w1, z0))
                let t := shl(1, x1)
                let xl := mul(t, x0)
                let w2 := mulmod(t, x0, not(0))
                w2 := add(sub(sub(w2, xl), lt(w2, xl)), mul(x1, x1))
                w1 := add(w1, xl)
                w2 := add(w2, lt(w1, xl))
                z1, z0 := reduce(z0, w1, w2)
            }
            function reduce(z0, w1, w2) -> r1, r0 {
                let hl := or(shl(128, w2), shr(128, w1))
                let q0 := mul(hl, 0x100000000ffffffffffffffff00000001)
                hl := mulmod(hl, 0x100000000ffffffffffffffff00000001, not(0))
                hl := sub(sub(hl, q0), lt(hl, q0))
                w2 := shr(128, w2)
                z0 := add(z0, q0)
                q0 := lt(z0, q0)
                let t := shl(128, w2)
                z0 := add(z0, t)
                q0 := add(q0, lt(z0, t))
                w2 := mul(w2, 0xffffffffffffffff00000001)
                z0 := add(z0, w2)
                w1 := add(add(and(w1, 0xffffffffffffffffffffffffffffffff), add(w2, hl)), add(q0, lt(z0, w2)))
                w2 := mul(shr(128, w1), 0x100000000ffffffffffffffff00000001)
                z0 := add(z0, w2)
                w1 := add(and(w1, 0xffffffffffffffffffffffffffffffff), lt(z0, w2))
                r0 := add(z0, mul(shr(128, w1), 0x100000000ffffffffffffffff00000001))
                r1 := and(w1, 0xffffffffffffffffffffffffffffffff)
            }
            function fold(h, l) -> r1, r0 {
                let t := mul(shr(128, h), 0x100000000ffffffffffffffff00000001)
                r0 := add(l, t)
                r1 := add(and(h, 0xffffffffffffffffffffffffffffffff), lt(r0, t))
                r0 := add(r0, mul(shr(128, r1), 0x100000000ffffffffffffffff00000001))
                r1 := and(r1, 0xffffffffffffffffffffffffffffffff)
            }
            function fadd(x1, x0, y1, y0) -> r1, r0 {
                r0 := add(x0, y0)
                r1, r0 := fold(add(add(x1, y1), lt(r0, y0)), r0)
            }
            function fshl(x1, x0, k) -> r1, r0 {
                r1, r0 := fold(or(shl(k, x1), shr(sub(256, k), x0)), shl(k, x0))
            }
            function fsub(x1, x0, y1, y0) -> r1, r0 {
                r0 := sub(x0, y0)
                r1 := sub(sub(x1, y1), lt(x0, y0))
                let neg := shr(255, r1)
                r1 := and(r1, 0xffffffffffffffffffffffffffffffff)
                let t := mul(neg, 0x100000000ffffffffffffffff00000001)
                r1 := sub(r1, lt(r0, t))
                r0 := sub(r0, t)
                neg := shr(255, r1)
                r1 := and(r1, 0xffffffffffffffffffffffffffffffff)
                r0 := sub(r0, mul(neg, 0x100000000ffffffffffffffff00000001))
            }
            // a = 0 mod p for 0 <= a < 2^384: a is 0 or p
            function fzero(x1, x0) -> z {
                z := or(iszero(or(x1, x0)), and(eq(x1, 0xffffffffffffffffffffffffffffffff),
                    eq(x0, 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)))
            }
            // canonical representative in [0, p)
            function fcanon(x1, x0) -> r1, r0 {
                r1 := x1
                r0 := x0
                if and(eq(x1, 0xffffffffffffffffffffffffffffffff),
                       iszero(lt(x0, 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff))) {
                    r1 := 0
                    r0 := sub(x0, 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)
                }
            }
            // ---------------------------------------------------------------- points (Jacobian, a = -3)
            function pdbl(x1, x0, y1, y0, z1, z0) -> X1, X0, Y1, Y0, Z1, Z0 {
                let d1, d0 := fsqr(z1, z0)
                let g1, g0 := fsqr(y1, y0)
                let b1, b0 := fmul(x1, x0, g1, g0)
                let t1, t0 := fsub(x1, x0, d1, d0)
                d1, d0 := fadd(x1, x0, d1, d0)
                let a1, a0 := fmul(t1, t0, d1, d0)
                t1, t0 := fadd(a1, a0, a1, a0)
                a1, a0 := fadd(a1, a0, t1, t0)
                Z1, Z0 := fmul(y1, y0, z1, z0)
                Z1, Z0 := fadd(Z1, Z0, Z1, Z0)
                b1, b0 := fshl(b1, b0, 2)
                X1, X0 := fsqr(a1, a0)
                t1, t0 := fadd(b1, b0, b1, b0)
                X1, X0 := fsub(X1, X0, t1, t0)
                b1, b0 := fsub(b1, b0, X1, X0)
                Y1, Y0 := fmul(a1, a0, b1, b0)
                g1, g0 := fsqr(g1, g0)
                g1, g0 := fshl(g1, g0, 3)
                Y1, Y0 := fsub(Y1, Y0, g1, g0)
            }
            // P + (ax, ay) with P Jacobian and (ax, ay) affine (madd-2004-hmv), all cases
            function padd(x1, x0, y1, y0, z1, z0, ax1, ax0, ay1, ay0) -> X1, X0, Y1, Y0, Z1, Z0 {
                if fzero(z1, z0) {
                    X1 := ax1 X0 := ax0 Y1 := ay1 Y0 := ay0 Z1 := 0 Z0 := 1
                    leave
                }
                let t1, t0 := fsqr(z1, z0)
                let u1, u0 := fmul(t1, t0, z1, z0)
                t1, t0 := fmul(t1, t0, ax1, ax0)
                u1, u0 := fmul(u1, u0, ay1, ay0)
                t1, t0 := fsub(t1, t0, x1, x0)       // H
                u1, u0 := fsub(u1, u0, y1, y0)       // R
                if fzero(t1, t0) {
                    if fzero(u1, u0) {
                        X1, X0, Y1, Y0, Z1, Z0 := pdbl(ax1, ax0, ay1, ay0, 0, 1)
                        leave
                    }
                    X1 := 0 X0 := 0 Y1 := 0 Y0 := 1 Z1 := 0 Z0 := 0
                    leave
                }
                Z1, Z0 := fmul(z1, z0, t1, t0)
                let v1, v0 := fsqr(t1, t0)           // H^2
                let w1, w0 := fmul(v1, v0, t1, t0)   // H^3
                v1, v0 := fmul(v1, v0, x1, x0)       // X1 H^2
                X1, X0 := fsqr(u1, u0)
                X1, X0 := fsub(X1, X0, w1, w0)
                t1, t0 := fadd(v1, v0, v1, v0)
                X1, X0 := fsub(X1, X0, t1, t0)
                v1, v0 := fsub(v1, v0, X1, X0)
                v1, v0 := fmul(v1, v0, u1, u0)
                w1, w0 := fmul(w1, w0, y1, y0)
                Y1, Y0 := fsub(v1, v0, w1, w0)
            }
            // load point number |d| >> 1 of a packed affine table (96 bytes per point), negated if d < 0
            function pload(tab, d) -> ax1, ax0, ay1, ay0 {
                let neg := slt(d, 0)
                if neg { d := sub(0, d) }
                let ptr := add(tab, mul(shr(1, d), 96))
                ax1 := shr(128, mload(ptr))
                ax0 := mload(add(ptr, 16))
                ay1 := shr(128, mload(add(ptr, 48)))
                ay0 := mload(add(ptr, 64))
                if neg {
                    let l := 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff
                    ay1 := sub(sub(0xffffffffffffffffffffffffffffffff, ay1), lt(l, ay0))
                    ay0 := sub(l, ay0)
                }
            }
            function pstore(ptr, x1, x0, y1, y0) {
                mstore(ptr, shl(128, x1))
                mstore(add(ptr, 16), x0)
                mstore(add(ptr, 48), shl(128, y1))
                mstore(add(ptr, 64), y0)
            }
            // ---------------------------------------------------------------- scalars
            // a^e mod m via the modexp precompile (48-byte operands), scratch at s
            function powmod(s, a1, a0, e1, e0, m1, m0) -> r1, r0 {
                mstore(s, 48) mstore(add(s, 0x20), 48) mstore(add(s, 0x40), 48)
                mstore(add(s, 0x60), shl(128, a1)) mstore(add(s, 0x70), a0)
                mstore(add(s, 0x90), shl(128, e1)) mstore(add(s, 0xa0), e0)
                mstore(add(s, 0xc0), shl(128, m1)) mstore(add(s, 0xd0), m0)
                if iszero(staticcall(gas(), 0x05, s, 0xf0, s, 0x30)) { revert(0, 0) }
                r1 := shr(128, mload(s))
                r0 := mload(add(s, 0x10))
            }
            // a * b mod n (a, b < 2^384) via the modexp precompile on the 96-byte product, exponent 1
            function mulmodn(s, a1, a0, b1, b0) -> r1, r0 {
                let z0 := mul(a0, b0)
                let w1 := mulmod(a0, b0, not(0))
                w1 := sub(sub(w1, z0), lt(w1, z0))
                let xl := add(mul(a1, b0), mul(a0, b1))
                let w2 := addmod(mulmod(a1, b0, not(0)), mulmod(a0, b1, not(0)), not(0))
                w2 := add(sub(sub(w2, xl), lt(w2, xl)), mul(a1, b1))
                w1 := add(w1, xl)
                w2 := add(w2, lt(w1, xl))
                mstore(s, 96) mstore(add(s, 0x20), 1) mstore(add(s, 0x40), 48)
                mstore(add(s, 0x60), w2) mstore(add(s, 0x80), w1) mstore(add(s, 0xa0), z0)
                mstore(add(s, 0xc0), shl(248, 1))
                mstore(add(s, 0xc1), shl(128, 0xffffffffffffffffffffffffffffffff))
                mstore(add(s, 0xd1), 0xffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973)
                if iszero(staticcall(gas(), 0x05, s, 0xf1, s, 0x30)) { revert(0, 0) }
                r1 := shr(128, mload(s))
                r0 := mload(add(s, 0x10))
            }
            // width-w NAF of k into bytes naf[0..len), returns len
            function wnaf(naf, k1, k0, w) -> len {
                let mask := sub(shl(w, 1), 1)
                let half := shl(sub(w, 1), 1)
                for { } or(k1, k0) { len := add(len, 1) } {
                    let d := 0
                    if and(k0, 1) {
                        d := and(k0, mask)
                        switch lt(d, half)
                        case 1 { k0 := sub(k0, d) }
                        default {
                            let t := sub(shl(w, 1), d)
                            d := sub(d, shl(w, 1))
                            let n0 := add(k0, t)
                            k1 := add(k1, lt(n0, k0))
                            k0 := n0
                        }
                    }
                    mstore8(add(naf, len), and(d, 0xff))
                    k0 := or(shr(1, k0), shl(255, k1))
                    k1 := shr(1, k1)
                }
            }
            // ---------------------------------------------------------------- verification
            // ranges: 0 < r, s < n; public key coordinates < p
            let N1 := 0xffffffffffffffffffffffffffffffff
            let N0 := 0xffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973
            function lt384(a1, a0, b1, b0) -> c { c := or(lt(a1, b1), and(eq(a1, b1), lt(a0, b0))) }
            badKey := or(iszero(lt384(qxHi, qxLo, 0xffffffffffffffffffffffffffffffff, 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)),
                         iszero(lt384(qyHi, qyLo, 0xffffffffffffffffffffffffffffffff, 0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)))
            if iszero(badKey) {
                // y^2 = x^3 - 3x + b
                let l1, l0 := fsqr(qyHi, qyLo)
                let r1, r0 := fsqr(qxHi, qxLo)
                r1, r0 := fsub(r1, r0, 0, 3)
                r1, r0 := fmul(r1, r0, qxHi, qxLo)
                r1, r0 := fadd(r1, r0, 0xb3312fa7e23ee7e4988e056be3f82d19, 0x181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef)
                l1, l0 := fcanon(l1, l0)
                r1, r0 := fcanon(r1, r0)
                badKey := iszero(and(eq(l1, r1), eq(l0, r0)))
            }
            let sigOk := and(and(gt(or(rHi, rLo), 0), lt384(rHi, rLo, N1, N0)), and(gt(or(sHi, sLo), 0), lt384(sHi, sLo, N1, N0)))
            if and(sigOk, iszero(badKey)) {
                let m := mload(0x40)
                // u1 = e / s, u2 = r / s (mod n)
                let w1, w0 := powmod(m, sHi, sLo, N1, sub(N0, 2), N1, N0)
                let u11, u10 := mulmodn(m, eHi, eLo, w1, w0)
                let u21, u20 := mulmodn(m, rHi, rLo, w1, w0)
                // wNAF digits
                let nafG := m
                let nafQ := add(m, 0x1a0)
                for { let i := 0 } lt(i, 0x340) { i := add(i, 0x20) } { mstore(add(m, i), 0) }
                let lenG := wnaf(nafG, u11, u10, 7)
                let lenQ := wnaf(nafQ, u21, u20, 5)
                // Q table: Q, 3Q, ..., 15Q. 2Q = (X2, Y2, Z2) in Jacobian; on the isomorphic curve
                // E': y^2 = x^3 - 3 Z2^4 x + b Z2^6, (x, y) -> (x Z2^2, y Z2^3), 2Q is the affine point
                // (X2, Y2), so the odd multiples are mixed additions there; (X', Y', Z') on E' is
                // (X', Y', Z' Z2) on E.
                let jac := add(m, 0x340)              // 8 points x 6 words
                let qt := add(jac, 0x600)             // 8 packed affine points
                {
                    let d1, d0, e1, e0, f1, f0 := pdbl(qxHi, qxLo, qyHi, qyLo, 0, 1)
                    let zz1, zz0 := fsqr(f1, f0)
                    let px1, px0 := fmul(qxHi, qxLo, zz1, zz0)
                    zz1, zz0 := fmul(zz1, zz0, f1, f0)
                    let py1, py0 := fmul(qyHi, qyLo, zz1, zz0)
                    let pz1 := 0 let pz0 := 1
                    for { let k := 0 } 1 { } {
                        let p := add(jac, mul(k, 0xc0))
                        mstore(p, px1) mstore(add(p, 0x20), px0) mstore(add(p, 0x40), py1)
                        mstore(add(p, 0x60), py0)
                        zz1, zz0 := fmul(pz1, pz0, f1, f0)
                        mstore(add(p, 0x80), zz1) mstore(add(p, 0xa0), zz0)
                        k := add(k, 1)
                        if eq(k, 8) { break }
                        px1, px0, py1, py0, pz1, pz0 := padd(px1, px0, py1, py0, pz1, pz0, d1, d0, e1, e0)
                    }
                }
                // batch inversion of the 8 Z (Montgomery's trick), then affine
                {
                    let pre := add(qt, 0x300)         // prefix products, 8 x 2 words
                    let c1 := mload(add(jac, 0x80)) let c0 := mload(add(jac, 0xa0))
                    mstore(pre, c1) mstore(add(pre, 0x20), c0)
                    for { let k := 1 } lt(k, 8) { k := add(k, 1) } {
                        let p := add(jac, mul(k, 0xc0))
                        c1, c0 := fmul(c1, c0, mload(add(p, 0x80)), mload(add(p, 0xa0)))
                        mstore(add(pre, shl(6, k)), c1) mstore(add(pre, add(shl(6, k), 0x20)), c0)
                    }
                    c1, c0 := powmod(add(pre, 0x200), c1, c0, 0xffffffffffffffffffffffffffffffff,
                        0xfffffffffffffffffffffffffffffffeffffffff0000000000000000fffffffd,
                        0xffffffffffffffffffffffffffffffff,
                        0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)
                    for { let k := 7 } 1 { k := sub(k, 1) } {
                        let p := add(jac, mul(k, 0xc0))
                        let i1 := c1 let i0 := c0
                        if k {
                            i1, i0 := fmul(c1, c0, mload(add(pre, shl(6, sub(k, 1)))), mload(add(pre, add(shl(6, sub(k, 1)), 0x20))))
                            c1, c0 := fmul(c1, c0, mload(add(p, 0x80)), mload(add(p, 0xa0)))
                        }
                        let s1, s0 := fsqr(i1, i0)
                        let ax1, ax0 := fmul(mload(p), mload(add(p, 0x20)), s1, s0)
                        s1, s0 := fmul(s1, s0, i1, i0)
                        let ay1, ay0 := fmul(mload(add(p, 0x40)), mload(add(p, 0x60)), s1, s0)
                        ax1, ax0 := fcanon(ax1, ax0)
                        ay1, ay0 := fcanon(ay1, ay0)
                        pstore(add(qt, mul(k, 96)), ax1, ax0, ay1, ay0)
                        if iszero(k) { break }
                    }
                }
                // interleaved double-and-add over both wNAF digit strings
                let gtab := add(gTable, 0x20)
                let X1 := 0 let X0 := 0 let Y1 := 0 let Y0 := 1 let Z1 := 0 let Z0 := 0
                let i := lenG
                if gt(lenQ, i) { i := lenQ }
                for { } i { } {
                    i := sub(i, 1)
                    X1, X0, Y1, Y0, Z1, Z0 := pdbl(X1, X0, Y1, Y0, Z1, Z0)
                    let dg := signextend(0, byte(0, mload(add(nafG, i))))
                    if dg {
                        let ax1, ax0, ay1, ay0 := pload(gtab, dg)
                        X1, X0, Y1, Y0, Z1, Z0 := padd(X1, X0, Y1, Y0, Z1, Z0, ax1, ax0, ay1, ay0)
                    }
                    let dq := signextend(0, byte(0, mload(add(nafQ, i))))
                    if dq {
                        let ax1, ax0, ay1, ay0 := pload(qt, dq)
                        X1, X0, Y1, Y0, Z1, Z0 := padd(X1, X0, Y1, Y0, Z1, Z0, ax1, ax0, ay1, ay0)
                    }
                }
                // x(R) = X / Z^2 must be r or r + n (when r + n < p), compared as X == x Z^2
                if iszero(fzero(Z1, Z0)) {
                    let zz1, zz0 := fsqr(Z1, Z0)
                    X1, X0 := fcanon(X1, X0)
                    let t1, t0 := fmul(rHi, rLo, zz1, zz0)
                    t1, t0 := fcanon(t1, t0)
                    ok := and(eq(t1, X1), eq(t0, X0))
                    // r + n < p
                    let s0 := add(rLo, N0)
                    let s1 := add(add(rHi, N1), lt(s0, N0))
                    if and(iszero(ok), lt384(s1, s0, 0xffffffffffffffffffffffffffffffff,
                        0xfffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff)) {
                        t1, t0 := fmul(s1, s0, zz1, zz0)
                        t1, t0 := fcanon(t1, t0)
                        ok := and(eq(t1, X1), eq(t0, X0))
                    }
                }
            }
        }
        if (badKey) revert P384InvalidPublicKey();
    }
}
