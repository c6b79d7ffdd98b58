// SPDX-License-Identifier: Apache-2.0
// cvm-attest: test harness measuring what CvmGated's check costs (gas benchmarks only, never deployed in production)
pragma solidity ^0.8.24;

import {CvmGated} from "../CvmGated.sol";
import {ICvmRegistry} from "../interfaces/ICvmRegistry.sol";

/// @dev A dApp with one gated view, and a probe that measures the gate inside an `eth_call`.
contract CvmGatedHarness is CvmGated {
    constructor(ICvmRegistry registry) CvmGated(registry) {}

    /// @dev Gated like a dApp's function: reverts {CvmGatedNotAttested} unless the caller is attested.
    function gated() external view onlyAttestedCvm returns (bool) {
        return true;
    }

    /// @dev Gas of {CvmGated-onlyAttestedCvm}'s check for `msg.sender` (the registry's `attestationStatus` call with
    /// its cold storage reads), as a dApp's gated function pays it; reverts like the gate when not attested.
    function gateGas() external view returns (uint256 used) {
        uint256 start = gasleft();
        _requireAttested(bytes32(0));
        used = start - gasleft();
    }
}
