// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {P384} from "../libraries/P384.sol";

/// @notice Test harness exposing the P384 library to the Python tests and the gas benchmark.
contract P384Harness {
    function verify(bytes memory digest, bytes memory r, bytes memory s, bytes memory qx, bytes memory qy)
        external
        view
        returns (bool)
    {
        return P384.verify(digest, r, s, qx, qy);
    }

    function measureVerify(bytes memory digest, bytes memory r, bytes memory s, bytes memory qx, bytes memory qy)
        external
        view
        returns (bool ok, uint256 gasUsed)
    {
        uint256 before = gasleft();
        ok = P384.verify(digest, r, s, qx, qy);
        gasUsed = before - gasleft();
    }
}
