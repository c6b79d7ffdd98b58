// SPDX-License-Identifier: Apache-2.0
// cvm-attest: test harness exposing the AzureBinding library (tests only, never deployed in production)
pragma solidity ^0.8.24;

import {AzureBinding} from "../libraries/AzureBinding.sol";

/// @dev External wrapper around {AzureBinding-checkAkModulus} so tests can probe it with real runtime data.
contract RegistryAzureHarness {
    /// @dev {AzureBinding-checkAkModulus}.
    function checkAkModulus(bytes calldata runtimeData, uint256 kidOffset, uint256 modulusOffset, bytes memory modulus)
        external
        pure
        returns (bool shapeOk, bool keyMatches)
    {
        return AzureBinding.checkAkModulus(runtimeData, kidOffset, modulusOffset, modulus);
    }
}
