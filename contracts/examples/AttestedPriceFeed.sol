// SPDX-License-Identifier: Apache-2.0
// cvm-attest: AttestedPriceFeed, an example dApp that accepts values only from attested confidential VMs
pragma solidity ^0.8.24;

import {CvmGated} from "../CvmGated.sol";
import {ICvmRegistry} from "../interfaces/ICvmRegistry.sol";

/**
 * @dev An oracle whose values come only from CVMs running one published workload: a price computed inside the CVM
 * (from sources it fetched over TLS, say) is posted by the CVM's own key, and this contract accepts it only while the
 * registry holds that key as attested against {goldenId}. Readers trust the workload's code, not its operator.
 */
contract AttestedPriceFeed is CvmGated {
    /// @dev The golden measurement a reporter must be attested against.
    bytes32 public immutable goldenId;

    /// @dev The latest value.
    int256 public latestValue;
    /// @dev When it was posted.
    uint64 public updatedAt;
    /// @dev Which attested CVM posted it.
    address public reporter;

    /// @dev An attested CVM posted `value`.
    event ValueReported(address indexed cvm, int256 value, uint64 updatedAt);

    /// @param registry The {ICvmRegistry} to ask.
    /// @param goldenId_ The golden measurement reporters must match.
    constructor(ICvmRegistry registry, bytes32 goldenId_) CvmGated(registry) {
        goldenId = goldenId_;
    }

    /// @dev Posts a value; reverts {CvmGated-CvmGatedNotAttested} unless the caller is attested against {goldenId}.
    function report(int256 value) external onlyAttestedCvmFor(goldenId) {
        _post(value);
    }

    /// @dev Posts a value as any attested CVM, whatever its golden measurement (to show {CvmGated-onlyAttestedCvm}).
    function reportAny(int256 value) external onlyAttestedCvm {
        _post(value);
    }

    function _post(int256 value) private {
        latestValue = value;
        updatedAt = uint64(block.timestamp);
        reporter = msg.sender;
        emit ValueReported(msg.sender, value, uint64(block.timestamp));
    }
}
