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
 * decides nothing: every comparison with cached or golden values is the registry's.
 */
contract SnpVerifier is ISnpVerifier {
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
