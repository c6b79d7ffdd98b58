// SPDX-License-Identifier: Apache-2.0
// cvm-attest test harness: exposes RsaPss to the Python tests and the gas benchmark.
pragma solidity ^0.8.24;

import {RsaPss} from "../libraries/RsaPss.sol";

/// @notice Test-only wrapper around {RsaPss}. Not deployed by the product.
contract RsaPssHarness {
    /// @notice {RsaPss-verify}.
    function verify(bytes memory message, bytes memory signature, bytes memory modulus, bytes memory exponent)
        external
        view
        returns (bool)
    {
        return RsaPss.verify(message, signature, modulus, exponent);
    }

    /// @notice {RsaPss-verifyDigest} with the 48-byte digest split as the library takes it.
    function verifyDigest(bytes32 hi, bytes16 lo, bytes memory signature, bytes memory modulus, bytes memory exponent)
        external
        view
        returns (bool)
    {
        return RsaPss.verifyDigest(hi, lo, signature, modulus, exponent);
    }

    /// @notice Gas used by {RsaPss-verify} alone (SHA-384 of the message, modexp, MGF1, M'), and its result.
    function measure(bytes memory message, bytes memory signature, bytes memory modulus, bytes memory exponent)
        external
        view
        returns (uint256 gasUsed, bool ok)
    {
        uint256 before = gasleft();
        ok = RsaPss.verify(message, signature, modulus, exponent);
        gasUsed = before - gasleft();
    }
}
