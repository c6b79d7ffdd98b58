// SPDX-License-Identifier: Apache-2.0
// cvm-attest: test harness exposing the TpmQuote library (tests and gas benchmarks only, never deployed in production)
pragma solidity ^0.8.24;

import {TpmQuote} from "../libraries/TpmQuote.sol";

/// @dev Thin external wrappers around {TpmQuote} so tests can compare it with the Python parsers.
contract TpmQuoteHarness {
    /// @dev {TpmQuote-parseQuote} on `attest`.
    function parseQuote(bytes calldata attest) external pure returns (TpmQuote.Quote memory) {
        return TpmQuote.parseQuote(attest);
    }

    /// @dev {TpmQuote-parsePublic} on `pub`.
    function parsePublic(bytes calldata pub) external pure returns (TpmQuote.PublicKey memory) {
        return TpmQuote.parsePublic(pub);
    }

    /// @dev {TpmQuote-parseSignature} on `sig`.
    function parseSignature(bytes calldata sig) external pure returns (TpmQuote.Signature memory) {
        return TpmQuote.parseSignature(sig);
    }

    /// @dev Parses all three structures and verifies the AK signature over SHA-256(`attest`).
    function verifyQuote(bytes calldata attest, bytes calldata pub, bytes calldata sig) external view returns (bool) {
        TpmQuote.parseQuote(attest);
        return TpmQuote.verify(sha256(attest), TpmQuote.parsePublic(pub), TpmQuote.parseSignature(sig));
    }

    /// @dev {TpmQuote-quoteNonce} on `attest`.
    function quoteNonce(bytes calldata attest)
        external
        pure
        returns (bytes32 extraData, bool isWord, uint32 pcrMask, bytes32 digest)
    {
        return TpmQuote.quoteNonce(attest);
    }

    /// @dev {TpmQuote-verifyRaw} over SHA-256(`attest`), after parsing it.
    function verifyRaw(bytes calldata attest, bytes calldata key, bytes calldata signature) external view returns (bool) {
        TpmQuote.parseQuote(attest);
        return TpmQuote.verifyRaw(sha256(attest), key, signature);
    }

    /// @dev {TpmQuote-keyBytes} of the parsed `pub`.
    function keyBytes(bytes calldata pub) external pure returns (bytes memory) {
        return TpmQuote.keyBytes(TpmQuote.parsePublic(pub));
    }

    /// @dev {TpmQuote-pcrDigest} over `values`.
    function pcrDigest(bytes32[] calldata values) external pure returns (bytes32) {
        return TpmQuote.pcrDigest(values);
    }

    /// @dev Execution gas of {TpmQuote-parseQuote} on `attest`, measured in the frame with `gasleft()` (gas
    /// benchmarks: a transaction this small pays EIP-7623's calldata floor, which would hide the parsing).
    function parseQuoteGas(bytes calldata attest) external view returns (uint256 used, bytes32 pcrDigest) {
        uint256 before = gasleft();
        TpmQuote.Quote memory q = TpmQuote.parseQuote(attest);
        used = before - gasleft();
        pcrDigest = q.pcrDigest;
    }
}
