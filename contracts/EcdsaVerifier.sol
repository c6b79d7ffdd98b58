// SPDX-License-Identifier: Apache-2.0
// cvm-attest: EcdsaVerifier, the P-384 and P-256 verification the registry calls (see IEcdsaVerifier)
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {P256} from "@openzeppelin/contracts/utils/cryptography/P256.sol";
import {IEcdsaVerifier} from "./interfaces/IEcdsaVerifier.sol";
import {P384} from "./libraries/P384.sol";

/// @dev See {IEcdsaVerifier}. Stateless: it only computes.
contract EcdsaVerifier is IEcdsaVerifier {
    /// @inheritdoc IEcdsaVerifier
    function precomputeP384(bytes calldata qx, bytes calldata qy) external view returns (bytes memory) {
        return P384.precompute(qx, qy);
    }

    /// @inheritdoc IEcdsaVerifier
    function verifyP384WithTable(bytes calldata digest, bytes calldata r, bytes calldata s, address table)
        external
        view
        returns (bool)
    {
        uint256 length = P384.TABLE_LENGTH;
        if (table.code.length != length + 1) revert EcdsaVerifierTableMissing(table);
        bytes memory t = new bytes(length);
        assembly ("memory-safe") {
            extcodecopy(table, add(t, 0x20), 1, length)
        }
        return P384.verifyPrecomputed(digest, r, s, t);
    }

    /// @inheritdoc IEcdsaVerifier
    function verifyP256(bytes32 digest, bytes32 r, bytes32 s, bytes32 x, bytes32 y) external view returns (bool) {
        return P256.verify(digest, r, s, x, y);
    }

    /// @inheritdoc IEcdsaVerifier
    function recoverSecp256k1(bytes32 digest, bytes calldata signature) external pure returns (address) {
        (address signer, ECDSA.RecoverError error_,) = ECDSA.tryRecover(digest, signature);
        return error_ == ECDSA.RecoverError.NoError ? signer : address(0);
    }
}
