// SPDX-License-Identifier: Apache-2.0
// cvm-attest: ICertificateVerifier, AMD certificate parsing and RSASSA-PSS verification as a contract of its own
pragma solidity ^0.8.24;

import {ISnpVerifier} from "./ISnpVerifier.sol";

/**
 * @dev The certificate half of {ISnpVerifier}, deployed on its own (X509Lite and RsaPss with SHA-384 do not fit one
 * contract with the report parser under EIP-170); {SnpVerifier} forwards {ISnpVerifier-verifyCertificate} to it.
 * Reverts with X509Lite's and RsaPss's custom errors for malformed certificates and unusable keys.
 */
interface ICertificateVerifier {
    /// @dev See {ISnpVerifier-verifyCertificate}.
    function verifyCertificate(bytes calldata der, bytes calldata issuerModulus, bytes calldata issuerExponent)
        external
        view
        returns (ISnpVerifier.Certificate memory);
}
