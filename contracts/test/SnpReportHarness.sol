// SPDX-License-Identifier: Apache-2.0
// cvm-attest test harness: exposes SnpReport to the Python tests and the gas benchmark.
pragma solidity ^0.8.24;

import {SnpReport} from "../libraries/SnpReport.sol";

/// @notice Test-only wrapper around {SnpReport}. Not deployed by the product.
contract SnpReportHarness {
    /// @notice {SnpReport-parse}.
    function parse(bytes memory raw) external pure returns (SnpReport.Report memory) {
        return SnpReport.parse(raw);
    }

    /// @notice {SnpReport-parse}, then {SnpReport-productHint} and the report's four TCBs decoded with
    /// `product`'s layout (current, reported, committed, launch).
    function decode(bytes memory raw, uint8 product)
        external
        pure
        returns (uint8 hint, SnpReport.Tcb[4] memory tcbs)
    {
        SnpReport.Report memory r = SnpReport.parse(raw);
        hint = SnpReport.productHint(r);
        tcbs[0] = SnpReport.decodeTcb(r.currentTcb, product);
        tcbs[1] = SnpReport.decodeTcb(r.reportedTcb, product);
        tcbs[2] = SnpReport.decodeTcb(r.committedTcb, product);
        tcbs[3] = SnpReport.decodeTcb(r.launchTcb, product);
    }

    /// @notice {SnpReport-decodeTcb}.
    function decodeTcb(uint64 raw, uint8 product) external pure returns (SnpReport.Tcb memory) {
        return SnpReport.decodeTcb(raw, product);
    }

    /// @notice {SnpReport-signedDigest} as one 48-byte value.
    function signedDigest(bytes memory raw) external pure returns (bytes memory) {
        (bytes32 hi, bytes16 lo) = SnpReport.signedDigest(raw);
        return abi.encodePacked(hi, lo);
    }

    /// @notice Gas used by {SnpReport-parse} alone.
    function measureParse(bytes memory raw) external view returns (uint256 gasUsed) {
        uint256 before = gasleft();
        SnpReport.parse(raw);
        gasUsed = before - gasleft();
    }
}
