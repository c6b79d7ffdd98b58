// SPDX-License-Identifier: Apache-2.0
// cvm-attest: AzureBinding, the HCLAkPub JWK of an Azure HCL runtime-data JSON at caller-supplied offsets
pragma solidity ^0.8.24;

import {Base64} from "@openzeppelin/contracts/utils/Base64.sol";

/**
 * @dev On Azure confidential VMs the paravisor (HCL) owns REPORT_DATA: it sets REPORT_DATA[0:32] to SHA-256 of a
 * runtime-data JSON document whose `keys` array holds the vTPM attestation key as an RSA JWK with
 * `"kid":"HCLAkPub"` (PROTOCOL.md, "Evidence binding"). The registry hashes the JSON as given and then needs the
 * AK's modulus out of it without a JSON parser and without searching: the caller says where the JWK is and the
 * library checks that the bytes there have exactly this shape (every real Azure runtime document does):
 *
 * ```
 * runtimeData[kidOffset : kidOffset + 18]            == {"kid":"HCLAkPub",
 * runtimeData[modulusOffset - 16 : modulusOffset]    == "e":"AQAB","n":"
 * runtimeData[modulusOffset : modulusOffset + L]     == base64url(modulus), no padding (L = 342 for RSA-2048)
 * runtimeData[modulusOffset + L : modulusOffset + L + 2] == "}
 * kidOffset + 18 <= modulusOffset - 16, modulusOffset - kidOffset <= MAX_JWK_HEAD
 * no '{' or '}' in runtimeData[kidOffset + 1 : modulusOffset - 16]
 * ```
 *
 * The first line names the key. Each template holds a `"` preceded by a character other than `\`, which a JSON
 * string cannot contain, so no template can match inside a string value; `"}` makes `n` the object's last member,
 * and the bounded brace check keeps `kid` and `n` in the same object. `e` must be AQAB (65537). The modulus is compared
 * in its canonical encoding, so a non-canonical base64url spelling of the same number does not match.
 */
library AzureBinding {
    /// @dev The most bytes between the start of the JWK object and its modulus (the real documents need 59).
    uint256 internal constant MAX_JWK_HEAD = 128;

    bytes internal constant KID = '{"kid":"HCLAkPub",';
    bytes internal constant E_N = '"e":"AQAB","n":"';
    bytes2 internal constant CLOSE = '"}';

    /**
     * @dev Whether the bytes at the offsets have the shape above (`shapeOk`) and, if so, whether the JWK's modulus
     * is `modulus` (`keyMatches`, always false when the shape is wrong).
     */
    function checkAkModulus(
        bytes calldata runtimeData,
        uint256 kidOffset,
        uint256 modulusOffset,
        bytes memory modulus
    ) internal pure returns (bool shapeOk, bool keyMatches) {
        uint256 kidEnd = kidOffset + KID.length;
        if (modulusOffset < E_N.length || kidEnd > modulusOffset - E_N.length) return (false, false);
        if (modulusOffset - kidOffset > MAX_JWK_HEAD) return (false, false);
        bytes memory encoded = bytes(Base64.encodeURL(modulus));
        uint256 end = modulusOffset + encoded.length;
        if (end + 2 > runtimeData.length) return (false, false);
        if (keccak256(runtimeData[kidOffset:kidEnd]) != keccak256(KID)) return (false, false);
        if (keccak256(runtimeData[modulusOffset - E_N.length:modulusOffset]) != keccak256(E_N)) return (false, false);
        if (bytes2(runtimeData[end:end + 2]) != CLOSE) {
            // Either the modulus has another length or `n` is not the last member: not the shape required.
            return (false, false);
        }
        for (uint256 i = kidOffset + 1; i < modulusOffset - E_N.length; ++i) {
            bytes1 c = runtimeData[i];
            if (c == "{" || c == "}") return (false, false);
        }
        return (true, keccak256(runtimeData[modulusOffset:end]) == keccak256(encoded));
    }
}
