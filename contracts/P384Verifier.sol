// SPDX-License-Identifier: Apache-2.0
// cvm-attest: P384Verifier, the P384 library as a contract of its own (see IP384Verifier)
pragma solidity ^0.8.24;

import {IP384Verifier} from "./interfaces/IP384Verifier.sol";
import {P384} from "./libraries/P384.sol";

/// @dev See {IP384Verifier}. Stateless: it only computes.
contract P384Verifier is IP384Verifier {
    /// @inheritdoc IP384Verifier
    function precompute(bytes calldata qx, bytes calldata qy) external view returns (bytes memory) {
        return P384.precompute(qx, qy);
    }

    /// @inheritdoc IP384Verifier
    function verifyWithTable(bytes calldata digest, bytes calldata r, bytes calldata s, address table)
        external
        view
        returns (bool)
    {
        uint256 length = P384.TABLE_LENGTH;
        if (table.code.length != length + 1) revert P384VerifierTableMissing(table);
        bytes memory t = new bytes(length);
        assembly ("memory-safe") {
            extcodecopy(table, add(t, 0x20), 1, length)
        }
        return P384.verifyPrecomputed(digest, r, s, t);
    }
}
