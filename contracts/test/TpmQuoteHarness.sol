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

    /// @dev {TpmQuote-pcrDigest} over `values`.
    function pcrDigest(bytes32[] calldata values) external pure returns (bytes32) {
        return TpmQuote.pcrDigest(values);
    }

    /// @dev Transaction form of {parseQuote} for gas measurements (`eth_estimateGas` of a state-changing call).
    function parseQuoteTx(bytes calldata attest) external returns (bytes32) {
        TpmQuote.Quote memory q = TpmQuote.parseQuote(attest);
        emit Parsed(q.pcrDigest);
        return q.pcrDigest;
    }

    /// @dev Emitted by {parseQuoteTx}.
    event Parsed(bytes32 pcrDigest);
}
