// SPDX-License-Identifier: Apache-2.0
// cvm-attest: IP384Verifier, ECDSA P-384 verification with per-key precomputed tables, as a contract of its own
pragma solidity ^0.8.24;

/**
 * @dev The P384 library (contracts/libraries/P384.sol) deployed on its own: its constant tables and field arithmetic
 * are too large to share a contract with the certificate and report parsers under EIP-170. {SnpVerifier} calls it.
 * Reverts with the library's custom errors (P384InvalidLength, P384InvalidPublicKey, P384InvalidTable).
 */
interface IP384Verifier {
    /// @dev The table is not where {verifyWithTable} reads it: `table` has no code of the expected size.
    error P384VerifierTableMissing(address table);

    /// @dev {P384-precompute} of the public key (x, y), 48 bytes each: the table {verifyWithTable} needs.
    function precompute(bytes calldata qx, bytes calldata qy) external view returns (bytes memory table);

    /**
     * @dev {P384-verifyPrecomputed} of the signature (r, s) over the 48-byte digest, with the table stored as the code
     * of `table` after one leading zero byte (how {CvmRegistry} stores it).
     */
    function verifyWithTable(bytes calldata digest, bytes calldata r, bytes calldata s, address table)
        external
        view
        returns (bool);
}
