// SPDX-License-Identifier: Apache-2.0
// cvm-attest: SnpReport, the AMD SEV-SNP ATTESTATION_REPORT parsed on chain.
pragma solidity ^0.8.24;

import {Sha384} from "./Sha384.sol";

/**
 * @title SnpReport
 * @notice Parses the 1184-byte SEV-SNP ATTESTATION_REPORT (AMD SEV-SNP ABI specification, Table 23
 * "ATTESTATION_REPORT Structure"; TCB_VERSION, "TCB_VERSION Structure"; guest policy, section 4.3 Table 9)
 * with the same structural rules as the off-chain parser (offchain/abi/snp_report.py), checked in the same
 * order so both name the same first problem: length, version, reserved bytes, signature algorithm, flags,
 * signing key, guest policy, fields the version does not have. It decides nothing about acceptability.
 *
 * Layout (integers little-endian):
 *
 *   0x000 VERSION u32           0x004 GUEST_SVN u32         0x008 POLICY u64
 *   0x010 FAMILY_ID [16]        0x020 IMAGE_ID [16]         0x030 VMPL u32
 *   0x034 SIGNATURE_ALGO u32    0x038 CURRENT_TCB u64       0x040 PLATFORM_INFO u64
 *   0x048 flags u32: bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2-4 SIGNING_KEY (0 VCEK, 1 VLEK),
 *         bits 5-31 reserved
 *   0x04C reserved [4]          0x050 REPORT_DATA [64]      0x090 MEASUREMENT [48]
 *   0x0C0 HOST_DATA [32]        0x0E0 ID_KEY_DIGEST [48]    0x110 AUTHOR_KEY_DIGEST [48]
 *   0x140 REPORT_ID [32]        0x160 REPORT_ID_MA [32]     0x180 REPORTED_TCB u64
 *   0x188 CPUID_FAM_ID u8       0x189 CPUID_MOD_ID u8       0x18A CPUID_STEP u8    (zero before version 3)
 *   0x18B reserved [21]         0x1A0 CHIP_ID [64]          0x1E0 COMMITTED_TCB u64
 *   0x1E8 CURRENT_BUILD, _MINOR, _MAJOR u8, reserved u8
 *   0x1EC COMMITTED_BUILD, _MINOR, _MAJOR u8, reserved u8
 *   0x1F0 LAUNCH_TCB u64
 *   0x1F8 LAUNCH_MIT_VECTOR u64 0x200 CURRENT_MIT_VECTOR u64                     (zero before version 5)
 *   0x208 reserved [152]
 *   0x2A0 SIGNATURE: R [72] and S [72] little-endian (only the low 48 bytes may be non-zero), reserved [368]
 *
 * The signed bytes are 0x000..0x29F: ECDSA P-384 over their SHA-384 ({signedDigest}).
 *
 * TCB_VERSION (u64) layout by product, not by report version: Milan and Genoa byte 0 BOOT_LOADER, 1 TEE,
 * 6 SNP, 7 MICROCODE (2-5 reserved); Turin byte 0 FMC, 1 BOOT_LOADER, 2 TEE, 3 SNP, 7 MICROCODE (4-6
 * reserved). Guest policy: bits 0-7 ABI_MINOR, 8-15 ABI_MAJOR, 16 SMT, 17 reserved (one), 18 MIGRATE_MA,
 * 19 DEBUG, 20 SINGLE_SOCKET, 21 CXL_ALLOW, 22 MEM_AES_256_XTS, 23 RAPL_DIS, 24 CIPHERTEXT_HIDING_DRAM,
 * 25 PAGE_SWAP_DISABLE, 26-63 reserved (zero).
 */
library SnpReport {
    uint256 internal constant REPORT_SIZE = 0x4A0;
    uint256 internal constant SIGNED_SIZE = 0x2A0;
    uint32 internal constant SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1;

    /// @dev Product line bits, as the golden measurement's `products` mask (docs/formats.md).
    uint8 internal constant MILAN = 1;
    uint8 internal constant GENOA = 2;
    uint8 internal constant TURIN = 4;

    /// @dev SIGNING_KEY values.
    uint8 internal constant SIGNING_KEY_VCEK = 0;
    uint8 internal constant SIGNING_KEY_VLEK = 1;

    /// @dev Guest policy bits (ABI section 4.3).
    uint64 internal constant POLICY_SMT = 1 << 16;
    uint64 internal constant POLICY_RESERVED_ONE = 1 << 17;
    uint64 internal constant POLICY_MIGRATE_MA = 1 << 18;
    uint64 internal constant POLICY_DEBUG = 1 << 19;
    uint64 internal constant POLICY_SINGLE_SOCKET = 1 << 20;
    /// @dev Every defined policy bit: ABI version, bits 16 to 25.
    uint64 internal constant POLICY_DEFINED_MASK = 0x3FFFFFF;

    /// @notice The report is not 1184 bytes long.
    /// @param length its length
    error SnpReportLength(uint256 length);
    /// @notice VERSION is not 2, 3 or 5.
    /// @param version the report's VERSION
    error SnpReportVersion(uint32 version);
    /// @notice Reserved bytes or bits in `[start, end)` are not zero (or policy bit 17 is not one).
    /// @param start first byte offset of the field or range
    /// @param end byte offset after it
    error SnpReportReserved(uint256 start, uint256 end);
    /// @notice SIGNATURE_ALGO is not 1 (ECDSA P-384 with SHA-384).
    /// @param algo the report's SIGNATURE_ALGO
    error SnpReportSignatureAlgo(uint32 algo);
    /// @notice SIGNING_KEY (flags bits 2-4) is neither 0 (VCEK) nor 1 (VLEK).
    /// @param code the SIGNING_KEY value
    error SnpReportSigningKey(uint256 code);
    /// @notice A TCB_VERSION has reserved bytes set for the layout of `product`.
    /// @param raw the TCB_VERSION
    /// @param product MILAN, GENOA or TURIN
    error SnpReportTcbReserved(uint64 raw, uint8 product);
    /// @notice `product` is not MILAN, GENOA or TURIN.
    /// @param product the value given
    error SnpReportUnknownProduct(uint8 product);

    /// @notice Every field of the report. Byte arrays keep their order; `signatureR`/`signatureS` are the
    /// 48-byte big-endian ECDSA components (converted from the report's little-endian fields).
    struct Report {
        uint32 version;
        uint32 guestSvn;
        uint64 policy;
        bytes16 familyId;
        bytes16 imageId;
        uint32 vmpl;
        uint32 signatureAlgo;
        uint64 currentTcb;
        uint64 platformInfo;
        uint32 flags;
        bool authorKeyEn;
        bool maskChipKey;
        uint8 signingKey;
        bytes reportData;
        bytes measurement;
        bytes32 hostData;
        bytes idKeyDigest;
        bytes authorKeyDigest;
        bytes32 reportId;
        bytes32 reportIdMa;
        uint64 reportedTcb;
        uint8 cpuidFamId;
        uint8 cpuidModId;
        uint8 cpuidStep;
        bytes chipId;
        uint64 committedTcb;
        uint8 currentBuild;
        uint8 currentMinor;
        uint8 currentMajor;
        uint8 committedBuild;
        uint8 committedMinor;
        uint8 committedMajor;
        uint64 launchTcb;
        uint64 launchMitVector;
        uint64 currentMitVector;
        bytes signatureR;
        bytes signatureS;
    }

    /// @notice A TCB_VERSION decoded with its product's layout (fmc is 0 outside Turin).
    struct Tcb {
        uint8 bootloader;
        uint8 tee;
        uint8 snp;
        uint8 microcode;
        uint8 fmc;
    }

    /**
     * @notice Parses `raw` as an ATTESTATION_REPORT.
     * @dev Reverts with {SnpReportLength}, {SnpReportVersion}, {SnpReportReserved}, {SnpReportSignatureAlgo}
     * or {SnpReportSigningKey}, in the off-chain parser's order.
     */
    function parse(bytes memory raw) internal pure returns (Report memory r) {
        if (raw.length != REPORT_SIZE) revert SnpReportLength(raw.length);
        uint256 p;
        assembly ("memory-safe") {
            p := add(raw, 0x20)
        }
        r.version = uint32(_le(p, 0x000, 4));
        if (r.version != 2 && r.version != 3 && r.version != 5) revert SnpReportVersion(r.version);
        _checkReserved(p);
        r.signatureAlgo = uint32(_le(p, 0x034, 4));
        if (r.signatureAlgo != SIGNATURE_ALGO_ECDSA_P384_SHA384) revert SnpReportSignatureAlgo(r.signatureAlgo);
        r.flags = uint32(_le(p, 0x048, 4));
        if (r.flags >> 5 != 0) revert SnpReportReserved(0x048, 0x04C);
        uint256 signingKey = (r.flags >> 2) & 7;
        if (signingKey > SIGNING_KEY_VLEK) revert SnpReportSigningKey(signingKey);
        r.policy = uint64(_le(p, 0x008, 8));
        if (r.policy & POLICY_RESERVED_ONE == 0 || r.policy & ~POLICY_DEFINED_MASK != 0) {
            revert SnpReportReserved(0x008, 0x010);
        }
        r.cpuidFamId = _u8(p, 0x188);
        r.cpuidModId = _u8(p, 0x189);
        r.cpuidStep = _u8(p, 0x18A);
        if (r.version < 3 && (r.cpuidFamId | r.cpuidModId | r.cpuidStep) != 0) revert SnpReportReserved(0x188, 0x18B);
        r.launchMitVector = uint64(_le(p, 0x1F8, 8));
        r.currentMitVector = uint64(_le(p, 0x200, 8));
        if (r.version < 5 && (r.launchMitVector | r.currentMitVector) != 0) revert SnpReportReserved(0x1F8, 0x208);

        r.authorKeyEn = r.flags & 1 != 0;
        r.maskChipKey = r.flags & 2 != 0;
        r.signingKey = uint8(signingKey);
        r.guestSvn = uint32(_le(p, 0x004, 4));
        r.familyId = bytes16(_word(p, 0x010));
        r.imageId = bytes16(_word(p, 0x020));
        r.vmpl = uint32(_le(p, 0x030, 4));
        r.currentTcb = uint64(_le(p, 0x038, 8));
        r.platformInfo = uint64(_le(p, 0x040, 8));
        r.reportData = _slice(p, 0x050, 64);
        r.measurement = _slice(p, 0x090, 48);
        r.hostData = _word(p, 0x0C0);
        r.idKeyDigest = _slice(p, 0x0E0, 48);
        r.authorKeyDigest = _slice(p, 0x110, 48);
        r.reportId = _word(p, 0x140);
        r.reportIdMa = _word(p, 0x160);
        r.reportedTcb = uint64(_le(p, 0x180, 8));
        r.chipId = _slice(p, 0x1A0, 64);
        r.committedTcb = uint64(_le(p, 0x1E0, 8));
        r.currentBuild = _u8(p, 0x1E8);
        r.currentMinor = _u8(p, 0x1E9);
        r.currentMajor = _u8(p, 0x1EA);
        r.committedBuild = _u8(p, 0x1EC);
        r.committedMinor = _u8(p, 0x1ED);
        r.committedMajor = _u8(p, 0x1EE);
        r.launchTcb = uint64(_le(p, 0x1F0, 8));
        r.signatureR = _component(p, 0x2A0);
        r.signatureS = _component(p, 0x2E8);
    }

    /// @notice SHA-384 of the signed bytes 0x000..0x29F of `raw` (reverts unless `raw` is that long).
    function signedDigest(bytes memory raw) internal pure returns (bytes32 hi, bytes16 lo) {
        return Sha384.digestSlice(raw, 0, SIGNED_SIZE);
    }

    /// @notice Decodes a TCB_VERSION with the layout of `product` (MILAN, GENOA or TURIN).
    /// @dev Reverts with {SnpReportTcbReserved} when a byte that layout reserves is set.
    function decodeTcb(uint64 raw, uint8 product) internal pure returns (Tcb memory t) {
        if (product == TURIN) {
            if ((raw >> 32) & 0xFFFFFF != 0) revert SnpReportTcbReserved(raw, product);
            t.fmc = uint8(raw);
            t.bootloader = uint8(raw >> 8);
            t.tee = uint8(raw >> 16);
            t.snp = uint8(raw >> 24);
        } else if (product == MILAN || product == GENOA) {
            if ((raw >> 16) & 0xFFFFFFFF != 0) revert SnpReportTcbReserved(raw, product);
            t.bootloader = uint8(raw);
            t.tee = uint8(raw >> 8);
            t.snp = uint8(raw >> 48);
        } else {
            revert SnpReportUnknownProduct(product);
        }
        t.microcode = uint8(raw >> 56);
    }

    /// @notice The product line named by CPUID_FAM_ID and the high nibble of CPUID_MOD_ID (version 3 and
    /// later): family 19h models 0x0X Milan, 0x1X and 0xAX Genoa; family 1Ah models 0x0X and 0x1X Turin.
    /// 0 when the report is version 2 or the CPUID is not one of these.
    function productHint(Report memory r) internal pure returns (uint8) {
        if (r.version < 3) return 0;
        uint8 model = r.cpuidModId >> 4;
        if (r.cpuidFamId == 0x19) {
            if (model == 0x0) return MILAN;
            if (model == 0x1 || model == 0xA) return GENOA;
        } else if (r.cpuidFamId == 0x1A && (model == 0x0 || model == 0x1)) {
            return TURIN;
        }
        return 0;
    }

    // ----- reading the report ------------------------------------------------------------------------

    /// @dev The reserved byte ranges (always zero, every version), in the off-chain parser's order:
    /// 0x04C..0x050, 0x18B..0x1A0, 0x1EB, 0x1EF, 0x208..0x2A0, the high 24 bytes of R and S, 0x330..0x4A0.
    function _checkReserved(uint256 p) private pure {
        _zero(p, 0x04C, 0x050);
        _zero(p, 0x18B, 0x1A0);
        _zero(p, 0x1EB, 0x1EC);
        _zero(p, 0x1EF, 0x1F0);
        _zero(p, 0x208, 0x2A0);
        _zero(p, 0x2D0, 0x2E8);
        _zero(p, 0x318, 0x330);
        _zero(p, 0x330, REPORT_SIZE);
    }

    /// @dev Reverts with {SnpReportReserved}(start, end) unless bytes [start, end) at p are zero.
    function _zero(uint256 p, uint256 start, uint256 end) private pure {
        bool nonZero;
        assembly ("memory-safe") {
            let acc := 0
            let i := add(p, start)
            let last := add(p, end)
            for {} lt(add(i, 32), last) { i := add(i, 32) } { acc := or(acc, mload(i)) }
            // The last word: only its first last - i (1..32) bytes belong to the range.
            acc := or(acc, shr(shl(3, sub(32, sub(last, i))), mload(i)))
            nonZero := iszero(iszero(acc))
        }
        if (nonZero) revert SnpReportReserved(start, end);
    }

    /// @dev The `size`-byte (1..32) little-endian unsigned integer at p + off.
    function _le(uint256 p, uint256 off, uint256 size) private pure returns (uint256 v) {
        uint256 word;
        assembly ("memory-safe") {
            word := mload(add(p, off))
        }
        v = _reverse(word) & ((1 << (size << 3)) - 1);
    }

    /// @dev The 32 bytes of `x` in reverse order (byte 0 becomes byte 31): swap bytes, then 2-, 4-, 8- and
    /// 16-byte groups.
    function _reverse(uint256 x) private pure returns (uint256) {
        x = ((x >> 8) & 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff)
            | ((x & 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff) << 8);
        x = ((x >> 16) & 0x0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff)
            | ((x & 0x0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff0000ffff) << 16);
        x = ((x >> 32) & 0x00000000ffffffff00000000ffffffff00000000ffffffff00000000ffffffff)
            | ((x & 0x00000000ffffffff00000000ffffffff00000000ffffffff00000000ffffffff) << 32);
        x = ((x >> 64) & 0x0000000000000000ffffffffffffffff0000000000000000ffffffffffffffff)
            | ((x & 0x0000000000000000ffffffffffffffff0000000000000000ffffffffffffffff) << 64);
        return (x >> 128) | (x << 128);
    }

    function _u8(uint256 p, uint256 off) private pure returns (uint8 v) {
        assembly ("memory-safe") {
            v := byte(0, mload(add(p, off)))
        }
    }

    function _word(uint256 p, uint256 off) private pure returns (bytes32 w) {
        assembly ("memory-safe") {
            w := mload(add(p, off))
        }
    }

    /// @dev A copy of the `len` bytes at p + off.
    function _slice(uint256 p, uint256 off, uint256 len) private pure returns (bytes memory out) {
        out = new bytes(len);
        assembly ("memory-safe") {
            mcopy(add(out, 0x20), add(p, off), len)
        }
    }

    /// @dev The 48 low bytes of the 72-byte little-endian field at p + off, as 48 big-endian bytes: bytes
    /// 32..47 reversed, then bytes 0..31 reversed.
    function _component(uint256 p, uint256 off) private pure returns (bytes memory out) {
        out = new bytes(48);
        uint256 low;
        uint256 high;
        assembly ("memory-safe") {
            low := mload(add(p, off))
            high := mload(add(add(p, off), 32))
        }
        uint256 first = _reverse(high) << 128;
        uint256 rest = _reverse(low);
        assembly ("memory-safe") {
            mstore(add(out, 0x20), first)
            mstore(add(out, 0x30), rest)
        }
    }
}
