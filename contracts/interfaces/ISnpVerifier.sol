// SPDX-License-Identifier: Apache-2.0
// cvm-attest: ISnpVerifier, the stateless AMD certificate and SEV-SNP report verifier the registry calls
pragma solidity ^0.8.24;

import {IEcdsaVerifier} from "./IEcdsaVerifier.sol";

/**
 * @dev The SEV-SNP half of the registry, deployed as its own contract because the native verification code (SHA-384,
 * SHA-512, ECDSA P-384, RSASSA-PSS-4096, X.509 and report parsing) does not fit next to the registry under the EIP-170 code
 * size limit. It holds no state and decides nothing: it parses, verifies signatures and returns what it found; the
 * registry compares the results with its cache and its golden measurements and reverts with its own errors. The one
 * comparison it makes, {checkReport}, is of a report with the report checks the registry passes in, and it returns
 * which check failed for the registry to revert with.
 * Malformed input reverts with the parsing libraries' custom errors (bubbled up through the registry).
 */
interface ISnpVerifier {
    /// @dev What the registry needs from an AMD certificate (VCEK and KDS Interface Specification; RFC 5280).
    struct Certificate {
        /// @dev SHA-256 of the DER SubjectPublicKeyInfo (the fingerprint roots are pinned by).
        bytes32 keyHash;
        /// @dev keccak256 of the DER subject Name.
        bytes32 subjectHash;
        /// @dev keccak256 of the DER issuer Name.
        bytes32 issuerHash;
        uint64 notBefore;
        uint64 notAfter;
        /// @dev An RSA key (ARK, ASK, ASVK) rather than an EC P-384 key (VCEK, VLEK).
        bool isRsa;
        /// @dev The subject's CN is an ASVK's (`SEV-VLEK-<product>`), the issuer of VLEKs.
        bool isAsvk;
        /// @dev RSA modulus, or the P-384 point as x || y (48 bytes each).
        bytes publicKey;
        /// @dev RSA public exponent (empty for an EC key).
        bytes exponent;
        /// @dev AMD SPL extensions (1.3.6.1.4.1.3704.1.3.x) of a VCEK/VLEK; fmc on Turin only.
        uint8 bootloader;
        uint8 tee;
        uint8 snp;
        uint8 microcode;
        uint8 fmc;
        /// @dev hwID extension (1.3.6.1.4.1.3704.1.4) of a VCEK (empty otherwise).
        bytes hwId;
        /// @dev The RSASSA-PSS SHA-384 signature verifies with the issuer key given (its own key for a root).
        bool signatureValid;
    }

    /// @dev What the registry needs from an ATTESTATION_REPORT (AMD SEV-SNP ABI specification, Table 23).
    struct Report {
        uint32 version;
        uint64 policy;
        uint32 vmpl;
        /// @dev SIGNING_KEY: 0 VCEK, 1 VLEK.
        uint8 signingKey;
        bytes32 reportData0;
        bytes32 reportData1;
        bytes32 measurementHash;
        /// @dev keccak256 of CHIP_ID[0:hwIdLength] (the registry compares it with the VCEK's hwID hash).
        bytes32 chipIdHash;
        /// @dev REPORTED_TCB decoded with the product's layout.
        uint8 bootloader;
        uint8 tee;
        uint8 snp;
        uint8 microcode;
        uint8 fmc;
        /// @dev The product named by CPUID family/model (version 3+; 0 when absent or unknown): 1 Milan, 2 Genoa,
        /// 4 Turin.
        uint8 productHint;
        bytes32 reportHash;
        /// @dev The ECDSA P-384 signature over SHA-384 of bytes 0x000..0x29F verifies with the leaf key given.
        bool signatureValid;
    }

    /**
     * @dev Report checks beyond a golden measurement's rules: the `checks` of a version-2 golden measurement
     * (docs/formats.md, "Report checks"; offchain.policy.checks), one field per check with the same names, in the
     * same order. What is left empty (a `bytes` of length 0, a zero minimum, no `chipIds`, a zero
     * `platformInfoMask`) checks nothing. Fields of the ATTESTATION_REPORT (ABI specification, Table 23) they check:
     */
    struct ReportChecks {
        /// @dev REPORT_DATA (0x050), exactly: 64 bytes, or empty.
        bytes reportData;
        /// @dev HOST_DATA (0x0C0), exactly: 32 bytes, or empty.
        bytes hostData;
        /// @dev ID_KEY_DIGEST (0x0E0), exactly: 48 bytes, or empty.
        bytes idKeyDigest;
        /// @dev AUTHOR_KEY_DIGEST (0x110), exactly: 48 bytes, or empty.
        bytes authorKeyDigest;
        /// @dev FAMILY_ID (0x010), exactly: 16 bytes, or empty.
        bytes familyId;
        /// @dev IMAGE_ID (0x020), exactly: 16 bytes, or empty.
        bytes imageId;
        /// @dev GUEST_SVN (0x004) at least this.
        uint32 minGuestSvn;
        /// @dev CHIP_ID (0x1A0) one of these (64 bytes each), when any is given.
        bytes[] chipIds;
        /// @dev The PLATFORM_INFO (0x040) bits checked (bit 0 SMT_EN, 1 TSME_EN, 2 ECC_EN, 3 RAPL_DIS,
        /// 4 CIPHERTEXT_HIDING_EN, 5 ALIAS_CHECK_COMPLETE; ABI specification, Table 24).
        uint64 platformInfoMask;
        /// @dev The value each checked bit must have (no bit outside `platformInfoMask`).
        uint64 platformInfo;
        /// @dev CURRENT_MAJOR.CURRENT_MINOR (0x1EA, 0x1E9), then CURRENT_BUILD (0x1E8), at least these.
        uint8 minFirmwareMajor;
        uint8 minFirmwareMinor;
        uint8 minFirmwareBuild;
    }

    /// @dev The elliptic-curve verifier behind this one (report signatures; the registry's P-256 AKs).
    function ecdsa() external view returns (IEcdsaVerifier);

    /// @dev SHA-512 of `data` ({Sha384-digest512}), as its first and last 32 bytes: the registry compares an SVSM
    /// report's REPORT_DATA with SHA-512(svsmNonce || manifest) and has no room for the compression function.
    function sha512(bytes calldata data) external pure returns (bytes32 hi, bytes32 lo);

    /**
     * @dev Parses `der` and verifies its signature with `issuerModulus`/`issuerExponent`, or with its own key when
     * `issuerModulus` is empty (a self-signed root).
     */
    function verifyCertificate(bytes calldata der, bytes calldata issuerModulus, bytes calldata issuerExponent)
        external
        view
        returns (Certificate memory);

    /**
     * @dev The P-384 precomputation table of a VCEK/VLEK key (x || y), {P384-precompute}: about 4 million gas, once
     * per key, so that every report under that key verifies in about 1.4 million ({verifyReport} with the table).
     */
    function precomputeKey(bytes calldata leafKey) external view returns (bytes memory table);

    /**
     * @dev Parses `report`, decodes its TCB with `product`'s layout (1 Milan, 2 Genoa, 4 Turin), hashes the first
     * `hwIdLength` bytes of CHIP_ID and verifies its signature with the leaf key whose {precomputeKey} table is stored
     * as the code of `table` (after one leading zero byte).
     *
     * IMPORTANT: a table verifies signatures of the key it was computed for: pass only a table the caller made from
     * the key it means and stored where no one else can write (the registry deploys it when it caches the key).
     */
    function verifyReport(bytes calldata report, uint8 product, uint256 hwIdLength, address table)
        external
        view
        returns (Report memory);

    /**
     * @dev The EIP-712 struct hash of `checks`, an ABI-encoded {ReportChecks} (docs/formats.md, "Canonical id"), and
     * whether it is well formed: `invalid` is 0, or the {ICvmRegistry-RegistryGoldenInvalid} field of its first flaw
     * (10 it checks nothing, 11 to 16 a `bytes` field of another length, in field order, 18 a chip id that is not
     * 64 bytes, 19 a `platformInfo` bit outside `platformInfoMask`).
     */
    function hashChecks(bytes calldata checks) external pure returns (bytes32 structHash, uint8 invalid);

    /**
     * @dev 0 when the 1184-byte `report` passes every check of `checks` (an ABI-encoded, well-formed
     * {ReportChecks}), else the number of the first it fails, in field order: 1 reportData, 2 hostData,
     * 3 idKeyDigest, 4 authorKeyDigest, 5 familyId, 6 imageId, 7 minGuestSvn, 8 chipIds, 9 platformInfo,
     * 10 minFirmware. It only compares: the caller has verified the report.
     */
    function checkReport(bytes calldata report, bytes calldata checks) external pure returns (uint8 failed);
}
