// SPDX-License-Identifier: Apache-2.0
// cvm-attest: IEcdsaVerifier, ECDSA P-384 (per-key tables) and P-256 verification as a contract of its own
pragma solidity ^0.8.24;

/**
 * @dev The elliptic-curve code the registry needs, deployed on its own because it does not fit next to the parsers
 * under EIP-170: the P384 library (contracts/libraries/P384.sol) for SEV-SNP report signatures, with per-key
 * precomputed tables, OpenZeppelin's P256 (precompile at 0x100 with a Solidity fallback) for P-256 AKs, and
 * OpenZeppelin's ECDSA for a CVM key's secp256k1 consent signature.
 * Reverts with the P384 library's custom errors (P384InvalidLength, P384InvalidPublicKey, P384InvalidTable).
 */
interface IEcdsaVerifier {
    /// @dev The table is not where {verifyP384WithTable} reads it: `table` has no code of the expected size.
    error EcdsaVerifierTableMissing(address table);

    /// @dev {P384-precompute} of the public key (x, y), 48 bytes each: the table {verifyP384WithTable} needs.
    function precomputeP384(bytes calldata qx, bytes calldata qy) external view returns (bytes memory table);

    /**
     * @dev {P384-verifyPrecomputed} of the signature (r, s) over the 48-byte digest, with the table stored as the code
     * of `table` after one leading zero byte (how {CvmRegistry} stores it).
     */
    function verifyP384WithTable(bytes calldata digest, bytes calldata r, bytes calldata s, address table)
        external
        view
        returns (bool);

    /// @dev OpenZeppelin {P256-verify} of (r, s) over `digest` with the key (x, y); `s` must be at most n/2.
    function verifyP256(bytes32 digest, bytes32 r, bytes32 s, bytes32 x, bytes32 y) external view returns (bool);

    /// @dev OpenZeppelin {ECDSA-tryRecover} of the secp256k1 `signature` (65 bytes r || s || v, low s) over `digest`:
    /// the signer, or the zero address for a malformed, high-s or unrecoverable signature.
    function recoverSecp256k1(bytes32 digest, bytes calldata signature) external pure returns (address);
}
