// SPDX-License-Identifier: Apache-2.0
// cvm-attest: SnpVerifier, the registry's stateless AMD certificate and SEV-SNP report verifier
pragma solidity ^0.8.24;

import {ICertificateVerifier} from "./interfaces/ICertificateVerifier.sol";
import {IEcdsaVerifier} from "./interfaces/IEcdsaVerifier.sol";
import {ISnpVerifier} from "./interfaces/ISnpVerifier.sol";
import {Sha384} from "./libraries/Sha384.sol";
import {SnpReport} from "./libraries/SnpReport.sol";

/**
 * @dev See {ISnpVerifier}: the interface the registry calls, over three contracts because the native-verification code
 * does not fit one under EIP-170: reports are parsed here (SnpReport, SHA-384 of the signed bytes), their ECDSA P-384
 * signature is checked by {IEcdsaVerifier}, certificates are parsed and verified by {ICertificateVerifier}. Stateless;
 * decides nothing: every comparison with cached or golden values is the registry's, but for the report checks, which
 * {checkReport} compares with the values the registry passes in and the registry turns into its error.
 */
contract SnpVerifier is ISnpVerifier {
    /// @dev docs/formats.md, "Canonical id" (the report checks' struct).
    bytes32 public constant CHECKS_TYPEHASH = keccak256(
        "CvmReportChecks(bytes reportData,bytes hostData,bytes idKeyDigest,bytes authorKeyDigest,bytes familyId,"
        "bytes imageId,uint32 minGuestSvn,bytes[] chipIds,uint64 platformInfoMask,uint64 platformInfo,"
        "uint8 minFirmwareMajor,uint8 minFirmwareMinor,uint8 minFirmwareBuild)"
    );

    /// @inheritdoc ISnpVerifier
    IEcdsaVerifier public immutable ecdsa;
    /// @dev The certificate verifier (fixed at construction).
    ICertificateVerifier public immutable certificates;

    /// @param ecdsa_ The deployed {IEcdsaVerifier} (contracts/EcdsaVerifier.sol).
    /// @param certificates_ The deployed {ICertificateVerifier} (contracts/CertificateVerifier.sol).
    constructor(IEcdsaVerifier ecdsa_, ICertificateVerifier certificates_) {
        ecdsa = ecdsa_;
        certificates = certificates_;
    }

    /// @inheritdoc ISnpVerifier
    function verifyCertificate(bytes calldata der, bytes calldata issuerModulus, bytes calldata issuerExponent)
        external
        view
        returns (Certificate memory)
    {
        return certificates.verifyCertificate(der, issuerModulus, issuerExponent);
    }

    /// @inheritdoc ISnpVerifier
    function precomputeKey(bytes calldata leafKey) external view returns (bytes memory) {
        return ecdsa.precomputeP384(leafKey[0:48], leafKey[48:96]);
    }

    /// @inheritdoc ISnpVerifier
    function sha512(bytes calldata data) external pure returns (bytes32 hi, bytes32 lo) {
        return Sha384.digest512(data);
    }

    /// @inheritdoc ISnpVerifier
    function verifyReport(
        bytes calldata report,
        uint8 product,
        uint256 hwIdLength,
        address table
    ) external view returns (Report memory out) {
        bytes memory raw = report;
        SnpReport.Report memory r = SnpReport.parse(raw);
        SnpReport.Tcb memory tcb = SnpReport.decodeTcb(r.reportedTcb, product);
        out.version = r.version;
        out.policy = r.policy;
        out.vmpl = r.vmpl;
        out.signingKey = r.signingKey;
        out.reportData0 = _word(r.reportData, 0);
        out.reportData1 = _word(r.reportData, 32);
        out.measurementHash = keccak256(r.measurement);
        out.chipIdHash = _prefixHash(r.chipId, hwIdLength);
        out.bootloader = tcb.bootloader;
        out.tee = tcb.tee;
        out.snp = tcb.snp;
        out.microcode = tcb.microcode;
        out.fmc = tcb.fmc;
        out.productHint = SnpReport.productHint(r);
        out.reportHash = keccak256(raw);
        (bytes32 hi, bytes16 lo) = SnpReport.signedDigest(raw);
        bytes memory digest = abi.encodePacked(hi, lo);
        out.signatureValid = ecdsa.verifyP384WithTable(digest, r.signatureR, r.signatureS, table);
    }

    /// @inheritdoc ISnpVerifier
    function hashChecks(bytes calldata checks) external pure returns (bytes32 structHash, uint8 invalid) {
        ReportChecks memory c = abi.decode(checks, (ReportChecks));
        invalid = _invalidField(c);
        bytes32[] memory chipHashes = new bytes32[](c.chipIds.length);
        for (uint256 i = 0; i < chipHashes.length; ++i) {
            chipHashes[i] = keccak256(c.chipIds[i]);
        }
        bytes memory head = abi.encode(
            CHECKS_TYPEHASH,
            keccak256(c.reportData),
            keccak256(c.hostData),
            keccak256(c.idKeyDigest),
            keccak256(c.authorKeyDigest),
            keccak256(c.familyId),
            keccak256(c.imageId),
            c.minGuestSvn
        );
        bytes memory tail = abi.encode(
            keccak256(abi.encodePacked(chipHashes)),
            c.platformInfoMask,
            c.platformInfo,
            c.minFirmwareMajor,
            c.minFirmwareMinor,
            c.minFirmwareBuild
        );
        structHash = keccak256(bytes.concat(head, tail));
    }

    /// @inheritdoc ISnpVerifier
    function checkReport(bytes calldata report, bytes calldata checks) external pure returns (uint8 failed) {
        if (report.length != SnpReport.REPORT_SIZE) revert SnpReport.SnpReportLength(report.length);
        ReportChecks memory c = abi.decode(checks, (ReportChecks));
        if (!_equalOrUnchecked(c.reportData, report, 0x050)) return 1;
        if (!_equalOrUnchecked(c.hostData, report, 0x0C0)) return 2;
        if (!_equalOrUnchecked(c.idKeyDigest, report, 0x0E0)) return 3;
        if (!_equalOrUnchecked(c.authorKeyDigest, report, 0x110)) return 4;
        if (!_equalOrUnchecked(c.familyId, report, 0x010)) return 5;
        if (!_equalOrUnchecked(c.imageId, report, 0x020)) return 6;
        if (_littleEndian(report, 0x004, 4) < c.minGuestSvn) return 7;
        if (c.chipIds.length != 0 && !_listed(c.chipIds, _hashAt(report, 0x1A0, 64))) return 8;
        if (_littleEndian(report, 0x040, 8) & c.platformInfoMask != c.platformInfo) return 9;
        // CURRENT_MAJOR, CURRENT_MINOR, CURRENT_BUILD compared in that order: as one big-endian number.
        uint256 least = uint256(c.minFirmwareMajor) << 16 | uint256(c.minFirmwareMinor) << 8 | c.minFirmwareBuild;
        if (_littleEndian(report, 0x1E8, 3) < least) return 10;
        return 0;
    }

    /// @dev {hashChecks}' `invalid`: the golden field of the first malformed check, 10 when none checks anything.
    function _invalidField(ReportChecks memory c) private pure returns (uint8) {
        if (!_sizedOrEmpty(c.reportData, 64)) return 11;
        if (!_sizedOrEmpty(c.hostData, 32)) return 12;
        if (!_sizedOrEmpty(c.idKeyDigest, 48)) return 13;
        if (!_sizedOrEmpty(c.authorKeyDigest, 48)) return 14;
        if (!_sizedOrEmpty(c.familyId, 16)) return 15;
        if (!_sizedOrEmpty(c.imageId, 16)) return 16;
        for (uint256 i = 0; i < c.chipIds.length; ++i) {
            if (c.chipIds[i].length != 64) return 18;
        }
        if (c.platformInfo & ~c.platformInfoMask != 0) return 19;
        uint256 given = c.reportData.length | c.hostData.length | c.idKeyDigest.length | c.authorKeyDigest.length
            | c.familyId.length | c.imageId.length | c.minGuestSvn | c.chipIds.length | c.platformInfoMask
            | c.minFirmwareMajor | c.minFirmwareMinor | c.minFirmwareBuild;
        return given == 0 ? 10 : 0;
    }

    function _sizedOrEmpty(bytes memory value, uint256 size) private pure returns (bool) {
        return value.length == 0 || value.length == size;
    }

    /// @dev `wanted` is empty, or the report's `wanted.length` bytes at `offset` are `wanted`.
    function _equalOrUnchecked(bytes memory wanted, bytes calldata report, uint256 offset) private pure returns (bool) {
        return wanted.length == 0 || keccak256(wanted) == _hashAt(report, offset, wanted.length);
    }

    function _listed(bytes[] memory ids, bytes32 chipIdHash) private pure returns (bool) {
        for (uint256 i = 0; i < ids.length; ++i) {
            if (keccak256(ids[i]) == chipIdHash) return true;
        }
        return false;
    }

    /// @dev keccak256 of `report`'s `length` bytes at `offset` ({checkReport} checked that the report is whole).
    function _hashAt(bytes calldata report, uint256 offset, uint256 length) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let buffer := mload(0x40)
            calldatacopy(buffer, add(report.offset, offset), length)
            h := keccak256(buffer, length)
        }
    }

    /// @dev The `size`-byte little-endian unsigned integer at `offset` of `report`.
    function _littleEndian(bytes calldata report, uint256 offset, uint256 size) private pure returns (uint256 v) {
        assembly ("memory-safe") {
            let at := add(report.offset, offset)
            for { let i := size } gt(i, 0) { i := sub(i, 1) } {
                v := or(shl(8, v), byte(0, calldataload(add(at, sub(i, 1)))))
            }
        }
    }

    function _word(bytes memory data, uint256 offset) private pure returns (bytes32 w) {
        assembly ("memory-safe") {
            w := mload(add(add(data, 0x20), offset))
        }
    }

    /// @dev keccak256 of the first `length` bytes of `data` (at most all of it).
    function _prefixHash(bytes memory data, uint256 length) private pure returns (bytes32 h) {
        if (length > data.length) length = data.length;
        assembly ("memory-safe") {
            h := keccak256(add(data, 0x20), length)
        }
    }
}
