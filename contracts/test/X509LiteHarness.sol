// SPDX-License-Identifier: Apache-2.0
// cvm-attest test harness: exposes X509Lite (and the AMD chain check built from it and RsaPss) to the tests.
pragma solidity ^0.8.24;

import {RsaPss} from "../libraries/RsaPss.sol";
import {X509Lite} from "../libraries/X509Lite.sol";

/// @notice Test-only wrapper around {X509Lite}. Not deployed by the product.
contract X509LiteHarness {
    /// @notice {X509Lite-parse}.
    function parse(bytes memory der) external pure returns (X509Lite.Certificate memory) {
        return X509Lite.parse(der);
    }

    /// @notice {X509Lite-parse} then {X509Lite-amdExtensions}.
    function amdExtensions(bytes memory der) external pure returns (X509Lite.AmdExtensions memory) {
        return X509Lite.amdExtensions(der, X509Lite.parse(der));
    }

    /// @notice {X509Lite-commonName} of the issuer and subject names, and {X509Lite-isVlekIssuerName} of the
    /// subject.
    function names(bytes memory der) external pure returns (bytes memory issuerCn, bytes memory subjectCn, bool vlekIssuer) {
        X509Lite.Certificate memory c = X509Lite.parse(der);
        return (X509Lite.commonName(c.issuerName), X509Lite.commonName(c.subjectName), X509Lite.isVlekIssuerName(c.subjectName));
    }

    /// @notice Whether `der` was issued by `issuerDer`: the issuer's subject is the certificate's issuer and
    /// the RSASSA-PSS signature over the TBSCertificate verifies with the issuer's RSA key.
    function issuedBy(bytes memory der, bytes memory issuerDer) public view returns (bool) {
        X509Lite.Certificate memory c = X509Lite.parse(der);
        X509Lite.Certificate memory issuer = X509Lite.parse(issuerDer);
        if (!issuer.isRsa || keccak256(c.issuerName) != keccak256(issuer.subjectName)) return false;
        return RsaPss.verify(c.tbs, c.signature, issuer.rsaModulus, issuer.rsaExponent);
    }

    /// @notice Gas used by {X509Lite-parse} alone, and by parse plus {X509Lite-amdExtensions} when `amd`.
    function measureParse(bytes memory der, bool amd) external view returns (uint256 gasUsed) {
        uint256 before = gasleft();
        X509Lite.Certificate memory c = X509Lite.parse(der);
        if (amd) X509Lite.amdExtensions(der, c);
        gasUsed = before - gasleft();
    }

    /// @notice Gas of {issuedBy}: parse both certificates and verify the signature.
    function measureIssuedBy(bytes memory der, bytes memory issuerDer) external view returns (uint256 gasUsed, bool ok) {
        uint256 before = gasleft();
        ok = issuedBy(der, issuerDer);
        gasUsed = before - gasleft();
    }
}
