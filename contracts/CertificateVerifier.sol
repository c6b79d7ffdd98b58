// SPDX-License-Identifier: Apache-2.0
// cvm-attest: CertificateVerifier, AMD ARK/ASK/ASVK/VCEK/VLEK certificates parsed and their signatures verified
pragma solidity ^0.8.24;

import {ICertificateVerifier} from "./interfaces/ICertificateVerifier.sol";
import {ISnpVerifier} from "./interfaces/ISnpVerifier.sol";
import {RsaPss} from "./libraries/RsaPss.sol";
import {X509Lite} from "./libraries/X509Lite.sol";

/**
 * @dev See {ICertificateVerifier}: X509Lite parses (only RSASSA-PSS SHA-384 / MGF1-SHA-384 / salt 48 signatures, RSA or
 * P-384 keys), RsaPss verifies the signature over the exact TBSCertificate bytes. Stateless; the registry decides
 * which issuer key to check against and what to cache.
 */
contract CertificateVerifier is ICertificateVerifier {
    /// @inheritdoc ICertificateVerifier
    function verifyCertificate(bytes calldata der, bytes calldata issuerModulus, bytes calldata issuerExponent)
        external
        view
        returns (ISnpVerifier.Certificate memory c)
    {
        bytes memory raw = der;
        X509Lite.Certificate memory x = X509Lite.parse(raw);
        c = _describe(raw, x);
        if (issuerModulus.length == 0) {
            // A root signs itself; only an RSA key can have made an RSASSA-PSS signature.
            c.signatureValid = x.isRsa && RsaPss.verify(x.tbs, x.signature, x.rsaModulus, x.rsaExponent);
        } else {
            c.signatureValid = RsaPss.verify(x.tbs, x.signature, issuerModulus, issuerExponent);
        }
    }

    /// @dev The registry's view of a parsed certificate: hashes of its names and key, validity, key, AMD extensions.
    function _describe(bytes memory der, X509Lite.Certificate memory x)
        private
        pure
        returns (ISnpVerifier.Certificate memory c)
    {
        c.keyHash = sha256(x.spki);
        c.subjectHash = keccak256(x.subjectName);
        c.issuerHash = keccak256(x.issuerName);
        c.notBefore = x.notBefore;
        c.notAfter = x.notAfter;
        c.isRsa = x.isRsa;
        if (x.isRsa) {
            c.isAsvk = X509Lite.isVlekIssuerName(x.subjectName);
            c.publicKey = x.rsaModulus;
            c.exponent = x.rsaExponent;
        } else {
            c.publicKey = bytes.concat(x.ecX, x.ecY);
            X509Lite.AmdExtensions memory ext = X509Lite.amdExtensions(der, x);
            c.bootloader = ext.bootloader;
            c.tee = ext.tee;
            c.snp = ext.snp;
            c.microcode = ext.microcode;
            c.fmc = ext.fmc;
            c.hwId = ext.hwId;
        }
    }
}
