// SPDX-License-Identifier: Apache-2.0
// cvm-attest test harness: exposes Sha384 (SHA-384 and SHA-512) to the Python tests and the gas benchmark.
pragma solidity ^0.8.24;

import {Sha384} from "../libraries/Sha384.sol";

/// @notice Test-only wrapper around {Sha384}. Not deployed by the product.
contract Sha384Harness {
    /// @notice {Sha384-digest} of `data` as one 48-byte value.
    function digest(bytes memory data) external pure returns (bytes memory) {
        return Sha384.hash(data);
    }

    /// @notice {Sha384-digest512} of `data` as one 64-byte value.
    function digest512(bytes memory data) external pure returns (bytes memory) {
        (bytes32 hi, bytes32 lo) = Sha384.digest512(data);
        return abi.encodePacked(hi, lo);
    }

    /// @notice {Sha384-digestSlice}.
    function digestSlice(bytes memory data, uint256 offset, uint256 length) external pure returns (bytes memory) {
        (bytes32 hi, bytes16 lo) = Sha384.digestSlice(data, offset, length);
        return abi.encodePacked(hi, lo);
    }

    /// @notice {Sha384-hash} of `data`, with `data` and a word allocated after it read back after
    /// hashing: the library must leave allocated memory alone.
    function digestKeepsMemory(bytes memory data)
        external
        pure
        returns (bytes memory out, bytes memory dataAfter, bytes32 canary)
    {
        bytes memory marker = abi.encodePacked(keccak256(data));
        out = Sha384.hash(data);
        dataAfter = data;
        canary = bytes32(marker);
    }

    /// @notice Gas used by {Sha384-digest} alone (no calldata decoding), and the digest.
    function measure(bytes memory data) external view returns (uint256 gasUsed, bytes memory out) {
        uint256 before = gasleft();
        (bytes32 hi, bytes16 lo) = Sha384.digest(data);
        gasUsed = before - gasleft();
        out = abi.encodePacked(hi, lo);
    }
}
