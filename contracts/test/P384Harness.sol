// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {P384} from "../libraries/P384.sol";

/// @notice Exposes the P384 library to the Python tests and the gas benchmark.
contract P384Harness {
    function verify(bytes memory digest, bytes memory r, bytes memory s, bytes memory qx, bytes memory qy)
        external
        view
        returns (bool)
    {
        return P384.verify(digest, r, s, qx, qy);
    }

    function precompute(bytes memory qx, bytes memory qy) external view returns (bytes memory) {
        return P384.precompute(qx, qy);
    }

    function verifyPrecomputed(bytes memory digest, bytes memory r, bytes memory s, bytes memory table)
        external
        view
        returns (bool)
    {
        return P384.verifyPrecomputed(digest, r, s, table);
    }

    function gTables() external pure returns (bytes memory) {
        return P384.G_TABLES;
    }

    /// @notice Gas of one {P384.verify} call, measured inside the EVM (no transaction or calldata costs).
    function measureVerify(bytes memory digest, bytes memory r, bytes memory s, bytes memory qx, bytes memory qy)
        external
        view
        returns (bool ok, uint256 gasUsed)
    {
        uint256 before = gasleft();
        ok = P384.verify(digest, r, s, qx, qy);
        gasUsed = before - gasleft();
    }

    /// @notice Gas of one {P384.precompute} call.
    function measurePrecompute(bytes memory qx, bytes memory qy)
        external
        view
        returns (bytes memory table, uint256 gasUsed)
    {
        uint256 before = gasleft();
        table = P384.precompute(qx, qy);
        gasUsed = before - gasleft();
    }

    /// @notice Gas of one {P384.verifyPrecomputed} call.
    function measureVerifyPrecomputed(bytes memory digest, bytes memory r, bytes memory s, bytes memory table)
        external
        view
        returns (bool ok, uint256 gasUsed)
    {
        uint256 before = gasleft();
        ok = P384.verifyPrecomputed(digest, r, s, table);
        gasUsed = before - gasleft();
    }
}
