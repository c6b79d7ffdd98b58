// SPDX-License-Identifier: Apache-2.0
// cvm-attest: CvmGated, a modifier that lets only attested confidential VMs call a function
pragma solidity ^0.8.24;

import {ICvmRegistry} from "./interfaces/ICvmRegistry.sol";

/**
 * @dev Inherit to gate functions on the {ICvmRegistry}: {onlyAttestedCvm} admits a caller whose address the registry
 * holds as attested (an unexpired attestation against a golden measurement that is not revoked);
 * {onlyAttestedCvmFor} admits only CVMs attested against one particular golden measurement.
 *
 * The attested address is the CVM's own Ethereum key: the registry accepted it only from a quote the CVM's agent
 * computed for that address, and its private key never leaves the CVM. So `msg.sender` being attested means the call
 * was signed inside a CVM that ran the measured workload when it last proved itself.
 *
 * NOTE: attestation is checked at call time. A CVM whose golden measurement is revoked, whose attestation expired,
 * whose leaf certificate's validity ended, or under a certificate the registry's owner revoked or a root it unpinned,
 * is refused from the next call on; nothing it did before is undone.
 */
abstract contract CvmGated {
    /// @dev The registry this contract trusts.
    ICvmRegistry public immutable cvmRegistry;

    /// @dev `account` is not attested by {cvmRegistry} (for `goldenId`, or for any when it is zero), for `status`.
    error CvmGatedNotAttested(address account, bytes32 goldenId, ICvmRegistry.AttestationStatus status);
    /// @dev The registry address given to the constructor is zero.
    error CvmGatedZeroRegistry();

    /// @param registry The {ICvmRegistry} whose attestations this contract accepts.
    constructor(ICvmRegistry registry) {
        if (address(registry) == address(0)) revert CvmGatedZeroRegistry();
        cvmRegistry = registry;
    }

    /// @dev Only a caller the registry holds as attested, against any golden measurement.
    modifier onlyAttestedCvm() {
        _requireAttested(bytes32(0));
        _;
    }

    /// @dev Only a caller the registry holds as attested against golden measurement `goldenId` (not zero).
    modifier onlyAttestedCvmFor(bytes32 goldenId) {
        if (goldenId == bytes32(0)) {
            revert CvmGatedNotAttested(msg.sender, goldenId, ICvmRegistry.AttestationStatus.OtherGolden);
        }
        _requireAttested(goldenId);
        _;
    }

    /// @dev The check both modifiers make, for a function body that decides the golden at run time (zero: any).
    function _requireAttested(bytes32 goldenId) internal view {
        ICvmRegistry.AttestationStatus status = cvmRegistry.attestationStatus(msg.sender, goldenId);
        if (status != ICvmRegistry.AttestationStatus.Attested) revert CvmGatedNotAttested(msg.sender, goldenId, status);
    }
}
