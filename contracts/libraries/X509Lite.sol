// SPDX-License-Identifier: Apache-2.0
// cvm-attest: X509Lite, just enough DER to take AMD's ARK/ASK/ASVK/VCEK/VLEK certificates apart on chain.
pragma solidity ^0.8.24;

/**
 * @title X509Lite
 * @notice Parses the X.509 v3 certificates of the AMD SEV-SNP key hierarchy (RFC 5280 section 4.1; DER per
 * ITU-T X.690): the exact TBSCertificate bytes, the signature algorithm (only RSASSA-PSS with SHA-384,
 * MGF1-SHA-384 and a 48-byte salt, RFC 4055 section 3.1, is accepted), the signature, issuer and subject
 * names as raw DER (for chaining), the validity period as unix seconds, the subject public key (RSA modulus
 * and exponent, or an uncompressed P-384 point), and the AMD extensions of VCEK/VLEK certificates (AMD
 * "VCEK Certificate and KDS Interface Specification", Table 8):
 *
 *   1.3.6.1.4.1.3704.1.1    structVersion  INTEGER        1.3.6.1.4.1.3704.1.3.1  blSPL     INTEGER
 *   1.3.6.1.4.1.3704.1.2    productName    IA5String      1.3.6.1.4.1.3704.1.3.2  teeSPL    INTEGER
 *   1.3.6.1.4.1.3704.1.4    hwID           raw bytes      1.3.6.1.4.1.3704.1.3.3  snpSPL    INTEGER
 *   1.3.6.1.4.1.3704.1.5    cspID          IA5String      1.3.6.1.4.1.3704.1.3.4-7 reserved INTEGER
 *                                                         1.3.6.1.4.1.3704.1.3.8  ucodeSPL  INTEGER
 *                                                         1.3.6.1.4.1.3704.1.3.9  fmcSPL    INTEGER
 *
 *   Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signatureValue BIT STRING }
 *   TBSCertificate ::= SEQUENCE { version [0] EXPLICIT INTEGER DEFAULT v1, serialNumber INTEGER,
 *       signature AlgorithmIdentifier, issuer Name, validity SEQUENCE { notBefore Time, notAfter Time },
 *       subject Name, subjectPublicKeyInfo SEQUENCE { AlgorithmIdentifier, BIT STRING },
 *       issuerUniqueID [1] IMPLICIT OPTIONAL, subjectUniqueID [2] IMPLICIT OPTIONAL,
 *       extensions [3] EXPLICIT SEQUENCE OF Extension OPTIONAL }
 *   Extension ::= SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
 *
 * Every length is checked against its enclosing element before anything is read: malformed DER reverts with
 * {X509Malformed} (or a more specific error below), never reads out of bounds. Only definite, minimal (DER)
 * lengths below 2^24 and single-byte tags are accepted.
 */
library X509Lite {
    /// @notice The DER at byte `offset` is malformed: bad tag, length, nesting or trailing bytes.
    /// @param offset byte offset in the certificate
    error X509Malformed(uint256 offset);
    /// @notice The signature algorithm at `offset` is not RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48,
    /// or the outer signatureAlgorithm differs from the TBSCertificate's.
    /// @param offset byte offset of the AlgorithmIdentifier
    error X509UnsupportedAlgorithm(uint256 offset);
    /// @notice The subject public key at `offset` is neither RSA nor an uncompressed P-384 point.
    /// @param offset byte offset of the SubjectPublicKeyInfo
    error X509UnsupportedKey(uint256 offset);
    /// @notice The UTCTime/GeneralizedTime at `offset` is not a valid "...Z" time.
    /// @param offset byte offset of the time
    error X509InvalidTime(uint256 offset);
    /// @notice A required AMD extension is absent: `id` 1 structVersion, 2 productName, 301 blSPL, 302 teeSPL,
    /// 303 snpSPL, 308 ucodeSPL.
    /// @param id which extension
    error X509AmdExtensionMissing(uint256 id);
    /// @notice The AMD extension at `offset` has a malformed or out-of-range value, or appears twice.
    /// @param offset byte offset of the Extension
    error X509AmdExtensionMalformed(uint256 offset);

    /// @notice What the AMD certificate chain needs from a certificate. Byte arrays are copies.
    struct Certificate {
        bytes tbs; // the TBSCertificate, header included: what the issuer signed
        bytes signature; // the signatureValue bits (no unused-bits byte)
        bytes serialNumber; // the INTEGER's content octets
        bytes issuerName; // the issuer Name, header included
        bytes subjectName; // the subject Name, header included
        bytes spki; // the SubjectPublicKeyInfo, header included
        uint64 notBefore; // unix seconds
        uint64 notAfter; // unix seconds
        bool isRsa; // RSA key (rsaModulus, rsaExponent) or P-384 key (ecX, ecY)
        bytes rsaModulus; // big-endian, without the DER sign byte
        bytes rsaExponent; // big-endian, without the DER sign byte
        bytes ecX; // 48 bytes big-endian
        bytes ecY; // 48 bytes big-endian
        uint256 extensionsStart; // offset of the first Extension (0 when there are none)
        uint256 extensionsEnd; // offset after the last Extension
    }

    /// @notice The AMD extensions of a VCEK or VLEK. `fmc` is meaningful when `hasFmc` (Turin);
    /// `hwId` is empty on VLEKs, `cspId` empty on VCEKs.
    struct AmdExtensions {
        uint256 structVersion;
        bytes productName;
        uint8 bootloader;
        uint8 tee;
        uint8 snp;
        uint8 microcode;
        uint8 fmc;
        bool hasFmc;
        bytes hwId;
        bytes cspId;
    }

    // DER tags (X.690 8.1.2), and the object identifiers used: content octets left-aligned, their count in the
    // last byte.
    uint256 private constant SEQUENCE = 0x30;
    uint256 private constant SET = 0x31;
    uint256 private constant INTEGER = 0x02;
    uint256 private constant BIT_STRING = 0x03;
    uint256 private constant OCTET_STRING = 0x04;
    uint256 private constant NULL = 0x05;
    uint256 private constant OID = 0x06;
    uint256 private constant BOOLEAN = 0x01;
    uint256 private constant IA5_STRING = 0x16;
    uint256 private constant UTC_TIME = 0x17;
    uint256 private constant GENERALIZED_TIME = 0x18;

    bytes32 private constant OID_RSASSA_PSS = 0x2a864886f70d01010a0000000000000000000000000000000000000000000009; // 1.2.840.113549.1.1.10
    bytes32 private constant OID_MGF1 = 0x2a864886f70d0101080000000000000000000000000000000000000000000009; // 1.2.840.113549.1.1.8
    bytes32 private constant OID_SHA384 = 0x6086480165030402020000000000000000000000000000000000000000000009; // 2.16.840.1.101.3.4.2.2
    bytes32 private constant OID_RSA_ENCRYPTION = 0x2a864886f70d0101010000000000000000000000000000000000000000000009; // 1.2.840.113549.1.1.1
    bytes32 private constant OID_EC_PUBLIC_KEY = 0x2a8648ce3d020100000000000000000000000000000000000000000000000007; // 1.2.840.10045.2.1
    bytes32 private constant OID_SECP384R1 = 0x2b81040022000000000000000000000000000000000000000000000000000005; // 1.3.132.0.34
    bytes32 private constant OID_COMMON_NAME = 0x5504030000000000000000000000000000000000000000000000000000000003; // 2.5.4.3
    bytes32 private constant OID_AMD_PREFIX = 0x2b060104019c7801000000000000000000000000000000000000000000000008; // 1.3.6.1.4.1.3704.1

    uint256 private constant SALT_LENGTH = 48;
    uint256 private constant P384_COORDINATE = 48;

    // ----- certificate --------------------------------------------------------------------------------

    /**
     * @notice Parses a DER certificate of the AMD key hierarchy.
     * @dev Reverts with {X509Malformed}, {X509UnsupportedAlgorithm}, {X509UnsupportedKey} or {X509InvalidTime}.
     * NOTE: nothing is verified here (signature, chaining, validity against a time): that is the caller's job.
     */
    function parse(bytes memory der) internal pure returns (Certificate memory c) {
        (uint256 certContent, uint256 certEnd) = _expect(der, 0, der.length, SEQUENCE);
        if (certEnd != der.length) revert X509Malformed(certEnd);

        // TBSCertificate
        (uint256 pos, uint256 tbsEnd) = _expect(der, certContent, certEnd, SEQUENCE);
        c.tbs = _copy(der, certContent, tbsEnd);
        uint256 tag;
        uint256 content;
        uint256 end;
        (tag, content, end) = _item(der, pos, tbsEnd);
        if (tag == 0xA0) {
            (uint256 v, uint256 vEnd) = _expect(der, content, end, INTEGER);
            if (vEnd != end || vEnd - v != 1 || _byteAt(der, v) > 2) revert X509Malformed(content);
            pos = end;
        }
        (content, end) = _expect(der, pos, tbsEnd, INTEGER);
        if (end == content) revert X509Malformed(pos);
        c.serialNumber = _copy(der, content, end);
        pos = end;

        uint256 algStart = pos;
        (content, end) = _expect(der, pos, tbsEnd, SEQUENCE);
        _checkPssAlgorithm(der, algStart, content, end);
        uint256 algEnd = end;
        pos = end;

        (, end) = _expect(der, pos, tbsEnd, SEQUENCE);
        c.issuerName = _copy(der, pos, end);
        pos = end;

        (content, end) = _expect(der, pos, tbsEnd, SEQUENCE);
        (c.notBefore, content) = _time(der, content, end);
        (c.notAfter, content) = _time(der, content, end);
        if (content != end) revert X509Malformed(content);
        pos = end;

        (, end) = _expect(der, pos, tbsEnd, SEQUENCE);
        c.subjectName = _copy(der, pos, end);
        pos = end;

        (, end) = _expect(der, pos, tbsEnd, SEQUENCE);
        c.spki = _copy(der, pos, end);
        _publicKey(der, pos, c);
        pos = end;

        // issuerUniqueID [1] and subjectUniqueID [2] (IMPLICIT BIT STRING), then extensions [3].
        while (pos < tbsEnd) {
            (tag, content, end) = _item(der, pos, tbsEnd);
            if (tag == 0x81 || tag == 0x82) {
                pos = end;
                continue;
            }
            if (tag != 0xA3) revert X509Malformed(pos);
            (uint256 extContent, uint256 extEnd) = _expect(der, content, end, SEQUENCE);
            if (extEnd != end) revert X509Malformed(extEnd);
            _checkExtensions(der, extContent, extEnd);
            c.extensionsStart = extContent;
            c.extensionsEnd = extEnd;
            pos = end;
            if (pos != tbsEnd) revert X509Malformed(pos);
        }

        // signatureAlgorithm: the same AlgorithmIdentifier as in the TBSCertificate (RFC 5280 4.1.1.2).
        (, end) = _expect(der, tbsEnd, certEnd, SEQUENCE);
        if (end - tbsEnd != algEnd - algStart || _hash(der, tbsEnd, end) != _hash(der, algStart, algEnd)) {
            revert X509UnsupportedAlgorithm(tbsEnd);
        }
        pos = end;
        (content, end) = _expect(der, pos, certEnd, BIT_STRING);
        if (end == content || _byteAt(der, content) != 0) revert X509Malformed(pos);
        c.signature = _copy(der, content + 1, end);
        if (end != certEnd) revert X509Malformed(end);
    }

    // ----- AMD extensions -----------------------------------------------------------------------------

    /**
     * @notice The AMD extensions of the parsed certificate `c` of `der` (a VCEK or VLEK).
     * @dev Reverts with {X509AmdExtensionMissing} when structVersion, productName or one of the four TCB SPLs
     * is absent, and with {X509AmdExtensionMalformed} for a malformed, out-of-range or repeated AMD extension.
     * Other extensions are ignored.
     */
    function amdExtensions(bytes memory der, Certificate memory c) internal pure returns (AmdExtensions memory ext) {
        uint256 seen; // bit i: AMD extension i (1, 2, 4, 5 and 30 + x for 3.x) already read
        uint256 pos = c.extensionsStart;
        uint256 stop = c.extensionsEnd;
        if (stop > der.length) revert X509Malformed(stop);
        while (pos < stop) {
            (uint256 content, uint256 end) = _expect(der, pos, stop, SEQUENCE);
            (uint256 oid, uint256 oidEnd) = _expect(der, content, end, OID);
            uint256 id = _amdId(der, oid, oidEnd);
            if (id != 0) {
                if (seen & (1 << id) != 0) revert X509AmdExtensionMalformed(pos);
                seen |= 1 << id;
                (uint256 value, uint256 valueEnd) = _extensionValue(der, oidEnd, end);
                _readAmd(der, pos, id, value, valueEnd, ext);
            }
            pos = end;
        }
        if (seen & (1 << 1) == 0) revert X509AmdExtensionMissing(1);
        if (seen & (1 << 2) == 0) revert X509AmdExtensionMissing(2);
        if (seen & (1 << 31) == 0) revert X509AmdExtensionMissing(301);
        if (seen & (1 << 32) == 0) revert X509AmdExtensionMissing(302);
        if (seen & (1 << 33) == 0) revert X509AmdExtensionMissing(303);
        if (seen & (1 << 38) == 0) revert X509AmdExtensionMissing(308);
    }

    /// @dev Which AMD extension the OID content at [oid, oidEnd) names: 1, 2, 4, 5, or 30 + x for 3.x
    /// (x = 1..9); 0 for any other OID.
    function _amdId(bytes memory der, uint256 oid, uint256 oidEnd) private pure returns (uint256) {
        uint256 len = oidEnd - oid;
        if ((len != 9 && len != 10) || !_equals(der, oid, oid + 8, OID_AMD_PREFIX)) return 0;
        uint256 arc;
        uint256 subArc;
        assembly ("memory-safe") {
            let w := mload(add(add(der, 0x20), add(oid, 8)))
            arc := byte(0, w)
            subArc := byte(1, w) // only looked at when len == 10
        }
        if (len == 9) return (arc == 1 || arc == 2 || arc == 4 || arc == 5) ? arc : 0;
        return (arc == 3 && subArc >= 1 && subArc <= 9) ? 30 + subArc : 0;
    }

    /// @dev Decodes the value [value, valueEnd) of AMD extension `id` into `ext`.
    function _readAmd(
        bytes memory der,
        uint256 at,
        uint256 id,
        uint256 value,
        uint256 valueEnd,
        AmdExtensions memory ext
    ) private pure {
        if (id == 4) {
            uint256 len = valueEnd - value;
            if (len != 8 && len != 64) revert X509AmdExtensionMalformed(at);
            ext.hwId = _copy(der, value, valueEnd);
        } else if (id == 2 || id == 5) {
            (uint256 s, uint256 sEnd) = _innerItem(der, at, value, valueEnd, IA5_STRING);
            bool nonAscii;
            assembly ("memory-safe") {
                // OR of every byte's top bit, a word at a time (the last word masked to the string).
                let base := add(der, 0x20)
                for { let i := s } lt(i, sEnd) { i := add(i, 32) } {
                    let w := mload(add(base, i))
                    let left := sub(sEnd, i)
                    if lt(left, 32) { w := and(w, not(shr(shl(3, left), not(0)))) }
                    nonAscii := or(nonAscii, iszero(iszero(and(w, 0x8080808080808080808080808080808080808080808080808080808080808080))))
                }
            }
            if (nonAscii) revert X509AmdExtensionMalformed(at);
            if (id == 2) ext.productName = _copy(der, s, sEnd);
            else ext.cspId = _copy(der, s, sEnd);
        } else {
            (uint256 n, uint256 nEnd) = _innerItem(der, at, value, valueEnd, INTEGER);
            uint256 v = _unsigned(der, at, n, nEnd);
            if (id == 1) {
                ext.structVersion = v;
                return;
            }
            if (v > 0xFF) revert X509AmdExtensionMalformed(at);
            if (id == 31) ext.bootloader = uint8(v);
            else if (id == 32) ext.tee = uint8(v);
            else if (id == 33) ext.snp = uint8(v);
            else if (id == 38) ext.microcode = uint8(v);
            else if (id == 39) {
                ext.fmc = uint8(v);
                ext.hasFmc = true;
            }
            // 34..37: reserved SPLs, range-checked and otherwise ignored.
        }
    }

    /// @dev The content of the single DER item with `tag` that fills [value, valueEnd) exactly.
    function _innerItem(bytes memory der, uint256 at, uint256 value, uint256 valueEnd, uint256 tag)
        private
        pure
        returns (uint256 content, uint256 end)
    {
        if (valueEnd - value < 2 || _byteAt(der, value) != tag) revert X509AmdExtensionMalformed(at);
        (content, end) = _expect(der, value, valueEnd, tag);
        if (end != valueEnd) revert X509AmdExtensionMalformed(at);
    }

    /// @dev A non-negative INTEGER in minimal form, at most 32 bytes of value.
    function _unsigned(bytes memory der, uint256 at, uint256 content, uint256 end) private pure returns (uint256 v) {
        uint256 len = end - content;
        if (len == 0) revert X509AmdExtensionMalformed(at);
        uint256 first;
        uint256 second;
        assembly ("memory-safe") {
            let w := mload(add(add(der, 0x20), content))
            first := byte(0, w)
            second := byte(1, w) // only looked at when len > 1
        }
        if (first & 0x80 != 0) revert X509AmdExtensionMalformed(at); // negative
        if (len > 1 && first == 0 && second < 0x80) revert X509AmdExtensionMalformed(at);
        if (len > 33 || (len == 33 && first != 0)) revert X509AmdExtensionMalformed(at);
        if (len == 33) {
            content += 1;
            len = 32;
        }
        assembly ("memory-safe") {
            v := shr(sub(256, shl(3, len)), mload(add(add(der, 0x20), content)))
        }
    }

    // ----- names --------------------------------------------------------------------------------------

    /**
     * @notice The value of the first commonName (2.5.4.3) attribute of a DER Name (as {Certificate-issuerName}
     * or {Certificate-subjectName} hold it), or empty bytes when there is none.
     */
    function commonName(bytes memory name) internal pure returns (bytes memory) {
        (uint256 pos, uint256 nameEnd) = _expect(name, 0, name.length, SEQUENCE);
        if (nameEnd != name.length) revert X509Malformed(nameEnd);
        while (pos < nameEnd) {
            (uint256 set, uint256 setEnd) = _expect(name, pos, nameEnd, SET);
            while (set < setEnd) {
                (uint256 atv, uint256 atvEnd) = _expect(name, set, setEnd, SEQUENCE);
                (uint256 oid, uint256 oidEnd) = _expect(name, atv, atvEnd, OID);
                (, uint256 value, uint256 valueEnd) = _item(name, oidEnd, atvEnd);
                if (valueEnd != atvEnd) revert X509Malformed(oidEnd);
                if (_equals(name, oid, oidEnd, OID_COMMON_NAME)) return _copy(name, value, valueEnd);
                set = atvEnd;
            }
            pos = setEnd;
        }
        return "";
    }

    /// @notice Whether a Name's commonName starts with "SEV-VLEK-": the ASVK, which issues VLEKs.
    function isVlekIssuerName(bytes memory name) internal pure returns (bool) {
        bytes memory cn = commonName(name);
        bytes memory prefix = "SEV-VLEK-";
        if (cn.length < prefix.length) return false;
        for (uint256 i = 0; i < prefix.length; ++i) {
            if (cn[i] != prefix[i]) return false;
        }
        return true;
    }

    // ----- pieces of the TBSCertificate ---------------------------------------------------------------

    /// @dev RFC 4055 3.1 RSASSA-PSS-params with hashAlgorithm SHA-384, maskGenAlgorithm MGF1(SHA-384),
    /// saltLength 48 and trailerField absent or 1. The hash AlgorithmIdentifiers may carry NULL parameters.
    function _checkPssAlgorithm(bytes memory der, uint256 at, uint256 content, uint256 end) private pure {
        (uint256 oid, uint256 pos) = _expect(der, content, end, OID);
        if (!_equals(der, oid, pos, OID_RSASSA_PSS)) revert X509UnsupportedAlgorithm(at);
        (uint256 params, uint256 paramsEnd) = _expect(der, pos, end, SEQUENCE);
        if (paramsEnd != end) revert X509Malformed(paramsEnd);
        // [0] hashAlgorithm
        (uint256 tag, uint256 inner, uint256 innerEnd) = _item(der, params, paramsEnd);
        if (tag != 0xA0) revert X509UnsupportedAlgorithm(at);
        _checkSha384(der, at, inner, innerEnd);
        pos = innerEnd;
        // [1] maskGenAlgorithm
        (tag, inner, innerEnd) = _item(der, pos, paramsEnd);
        if (tag != 0xA1) revert X509UnsupportedAlgorithm(at);
        (uint256 mgf, uint256 mgfEnd) = _expect(der, inner, innerEnd, SEQUENCE);
        if (mgfEnd != innerEnd) revert X509Malformed(mgfEnd);
        (oid, mgf) = _expect(der, mgf, mgfEnd, OID);
        if (!_equals(der, oid, mgf, OID_MGF1)) revert X509UnsupportedAlgorithm(at);
        _checkSha384(der, at, mgf, mgfEnd);
        pos = innerEnd;
        // [2] saltLength
        (tag, inner, innerEnd) = _item(der, pos, paramsEnd);
        if (tag != 0xA2 || _smallInteger(der, inner, innerEnd) != SALT_LENGTH) revert X509UnsupportedAlgorithm(at);
        pos = innerEnd;
        // [3] trailerField, optional, must be 1 (trailer 0xbc)
        if (pos < paramsEnd) {
            (tag, inner, innerEnd) = _item(der, pos, paramsEnd);
            if (tag != 0xA3 || _smallInteger(der, inner, innerEnd) != 1) revert X509UnsupportedAlgorithm(at);
            pos = innerEnd;
        }
        if (pos != paramsEnd) revert X509Malformed(pos);
    }

    /// @dev [start, end) is exactly one AlgorithmIdentifier SHA-384, with or without NULL parameters.
    function _checkSha384(bytes memory der, uint256 at, uint256 start, uint256 end) private pure {
        (uint256 alg, uint256 algEnd) = _expect(der, start, end, SEQUENCE);
        if (algEnd != end) revert X509Malformed(algEnd);
        (uint256 oid, uint256 pos) = _expect(der, alg, algEnd, OID);
        if (!_equals(der, oid, pos, OID_SHA384)) revert X509UnsupportedAlgorithm(at);
        if (pos < algEnd) {
            (uint256 n, uint256 nEnd) = _expect(der, pos, algEnd, NULL);
            if (n != nEnd || nEnd != algEnd) revert X509Malformed(pos);
        }
    }

    /// @dev The value of the one INTEGER filling [start, end), when it is one byte long (else 2^256 - 1).
    function _smallInteger(bytes memory der, uint256 start, uint256 end) private pure returns (uint256) {
        (uint256 n, uint256 nEnd) = _expect(der, start, end, INTEGER);
        if (nEnd != end) revert X509Malformed(nEnd);
        if (nEnd - n != 1) return type(uint256).max;
        return _byteAt(der, n);
    }

    /// @dev SubjectPublicKeyInfo at `at`: rsaEncryption (NULL parameters) with RSAPublicKey { n, e }, or
    /// id-ecPublicKey with secp384r1 and an uncompressed point 0x04 || X || Y.
    function _publicKey(bytes memory der, uint256 at, Certificate memory c) private pure {
        (uint256 content, uint256 end) = _expect(der, at, der.length, SEQUENCE);
        (uint256 alg, uint256 algEnd) = _expect(der, content, end, SEQUENCE);
        (uint256 oid, uint256 pos) = _expect(der, alg, algEnd, OID);
        (uint256 bits, uint256 bitsEnd) = _expect(der, algEnd, end, BIT_STRING);
        if (bitsEnd != end || bitsEnd == bits || _byteAt(der, bits) != 0) revert X509Malformed(algEnd);
        bits += 1;
        if (_equals(der, oid, pos, OID_RSA_ENCRYPTION)) {
            (uint256 n, uint256 nEnd) = _expect(der, pos, algEnd, NULL);
            if (n != nEnd || nEnd != algEnd) revert X509UnsupportedKey(at);
            (uint256 seq, uint256 seqEnd) = _expect(der, bits, bitsEnd, SEQUENCE);
            if (seqEnd != bitsEnd) revert X509Malformed(seqEnd);
            uint256 next;
            (c.rsaModulus, next) = _positiveInteger(der, seq, seqEnd);
            (c.rsaExponent, next) = _positiveInteger(der, next, seqEnd);
            if (next != seqEnd) revert X509Malformed(next);
            c.isRsa = true;
        } else if (_equals(der, oid, pos, OID_EC_PUBLIC_KEY)) {
            (uint256 curve, uint256 curveEnd) = _expect(der, pos, algEnd, OID);
            if (curveEnd != algEnd || !_equals(der, curve, curveEnd, OID_SECP384R1)) revert X509UnsupportedKey(at);
            if (bitsEnd - bits != 1 + 2 * P384_COORDINATE || _byteAt(der, bits) != 0x04) revert X509UnsupportedKey(at);
            c.ecX = _copy(der, bits + 1, bits + 1 + P384_COORDINATE);
            c.ecY = _copy(der, bits + 1 + P384_COORDINATE, bitsEnd);
        } else {
            revert X509UnsupportedKey(at);
        }
    }

    /// @dev A positive INTEGER at `pos` (minimal form), as big-endian bytes without the sign byte.
    function _positiveInteger(bytes memory der, uint256 pos, uint256 limit)
        private
        pure
        returns (bytes memory value, uint256 end)
    {
        uint256 content;
        (content, end) = _expect(der, pos, limit, INTEGER);
        if (end == content) revert X509Malformed(pos);
        uint256 first = _byteAt(der, content);
        if (first & 0x80 != 0) revert X509UnsupportedKey(pos); // negative
        if (first == 0) {
            if (end - content == 1 || _byteAt(der, content + 1) < 0x80) revert X509Malformed(pos); // zero or not minimal
            content += 1;
        }
        value = _copy(der, content, end);
    }

    /// @dev Extensions content [pos, end): each a SEQUENCE { OID, BOOLEAN OPTIONAL, OCTET STRING }.
    function _checkExtensions(bytes memory der, uint256 pos, uint256 end) private pure {
        if (pos == end) revert X509Malformed(pos); // SEQUENCE SIZE (1..MAX)
        while (pos < end) {
            (uint256 content, uint256 extEnd) = _expect(der, pos, end, SEQUENCE);
            (, uint256 oidEnd) = _expect(der, content, extEnd, OID);
            _extensionValue(der, oidEnd, extEnd);
            pos = extEnd;
        }
    }

    /// @dev After an Extension's OID at `pos`: optional critical BOOLEAN, then the OCTET STRING filling the
    /// rest of the Extension; returns the OCTET STRING's content.
    function _extensionValue(bytes memory der, uint256 pos, uint256 end)
        private
        pure
        returns (uint256 value, uint256 valueEnd)
    {
        (uint256 tag, uint256 content, uint256 itemEnd) = _item(der, pos, end);
        if (tag == BOOLEAN) {
            if (itemEnd - content != 1) revert X509Malformed(pos);
            pos = itemEnd;
        }
        (value, valueEnd) = _expect(der, pos, end, OCTET_STRING);
        if (valueEnd != end) revert X509Malformed(valueEnd);
    }

    /// @dev A Time at `pos` (UTCTime YYMMDDHHMMSSZ, years 1950-2049, or GeneralizedTime YYYYMMDDHHMMSSZ) as
    /// unix seconds, and the offset after it.
    function _time(bytes memory der, uint256 pos, uint256 limit) private pure returns (uint64 t, uint256 next) {
        (uint256 tag, uint256 content, uint256 end) = _item(der, pos, limit);
        uint256 year;
        uint256 i = content;
        if (tag == UTC_TIME && end - content == 13) {
            year = _digits(der, pos, i, 2);
            year += year >= 50 ? 1900 : 2000;
            i += 2;
        } else if (tag == GENERALIZED_TIME && end - content == 15) {
            year = _digits(der, pos, i, 4);
            i += 4;
        } else {
            revert X509InvalidTime(pos);
        }
        uint256 month = _digits(der, pos, i, 2);
        uint256 day = _digits(der, pos, i + 2, 2);
        uint256 hour = _digits(der, pos, i + 4, 2);
        uint256 minute = _digits(der, pos, i + 6, 2);
        uint256 second = _digits(der, pos, i + 8, 2);
        if (
            _byteAt(der, i + 10) != 0x5A /* Z */ || year < 1970 || month < 1 || month > 12 || day < 1
                || day > _daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59
        ) revert X509InvalidTime(pos);
        t = uint64(_daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second);
        next = end;
    }

    /// @dev `count` (<= 32) ASCII decimal digits at `i` (inside `der`, checked by the caller) as a number.
    function _digits(bytes memory der, uint256 at, uint256 i, uint256 count) private pure returns (uint256 v) {
        bool bad;
        assembly ("memory-safe") {
            let w := mload(add(add(der, 0x20), i))
            for { let k := 0 } lt(k, count) { k := add(k, 1) } {
                let d := sub(byte(k, w), 0x30)
                bad := or(bad, gt(d, 9)) // below '0' wraps around to a huge value
                v := add(mul(v, 10), d)
            }
        }
        if (bad) revert X509InvalidTime(at);
    }

    function _daysInMonth(uint256 year, uint256 month) private pure returns (uint256) {
        if (month == 2) return (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) ? 29 : 28;
        return (month == 4 || month == 6 || month == 9 || month == 11) ? 30 : 31;
    }

    /// @dev Days since 1970-01-01 of a proleptic Gregorian date (year >= 1970), H. Hinnant's days_from_civil.
    function _daysFromCivil(uint256 year, uint256 month, uint256 day) private pure returns (uint256) {
        if (month <= 2) year -= 1;
        uint256 era = year / 400;
        uint256 yoe = year - era * 400;
        uint256 mp = month > 2 ? month - 3 : month + 9;
        uint256 doy = (153 * mp + 2) / 5 + day - 1;
        uint256 doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
    }

    // ----- DER reader ---------------------------------------------------------------------------------

    /// @dev The DER element at `pos`, which must lie within `limit` (<= der.length): its tag, the offset of
    /// its content and the offset after it. Single-byte tags, definite minimal lengths below 2^24 only.
    /// The 32-byte word loaded at `pos` may extend past `limit`; only bytes shown to lie before it are used.
    function _item(bytes memory der, uint256 pos, uint256 limit)
        private
        pure
        returns (uint256 tag, uint256 content, uint256 end)
    {
        bool bad;
        assembly ("memory-safe") {
            bad := or(gt(limit, mload(der)), or(iszero(lt(pos, limit)), lt(sub(limit, pos), 2)))
            if iszero(bad) {
                let w := mload(add(add(der, 0x20), pos))
                tag := byte(0, w)
                let first := byte(1, w)
                let len := first
                content := add(pos, 2)
                // High tag number form (tag bits 0-4 all set) is not DER this reader supports.
                bad := eq(and(tag, 0x1f), 0x1f)
                if iszero(lt(first, 0x80)) {
                    // Long form: `count` length bytes follow. Count 0 is BER's indefinite form; more than 3
                    // is never needed; DER wants the shortest form (no leading zero byte, >= 128).
                    let count := and(first, 0x7f)
                    bad := or(bad, or(or(iszero(count), gt(count, 3)), lt(sub(limit, pos), add(2, count))))
                    len := shr(sub(256, shl(3, count)), shl(16, w))
                    bad := or(bad, or(lt(len, 0x80), iszero(byte(2, w))))
                    content := add(content, count)
                }
                bad := or(bad, or(gt(content, limit), gt(len, sub(limit, content))))
                end := add(content, len)
            }
        }
        if (bad) revert X509Malformed(pos);
    }

    /// @dev `_item` that also requires `tag`; returns content and end offsets.
    function _expect(bytes memory der, uint256 pos, uint256 limit, uint256 tag)
        private
        pure
        returns (uint256 content, uint256 end)
    {
        uint256 actual;
        (actual, content, end) = _item(der, pos, limit);
        if (actual != tag) revert X509Malformed(pos);
    }

    /// @dev Byte `i` of `der`; callers only pass offsets below an end the reader has bounds-checked.
    function _byteAt(bytes memory der, uint256 i) private pure returns (uint256 b) {
        if (i >= der.length) revert X509Malformed(i);
        assembly ("memory-safe") {
            b := byte(0, mload(add(add(der, 0x20), i)))
        }
    }

    /// @dev Whether der[start:end] equals the OID content octets packed in `expected` (see the constants).
    function _equals(bytes memory der, uint256 start, uint256 end, bytes32 expected) private pure returns (bool same) {
        assembly ("memory-safe") {
            let len := and(expected, 0xff)
            if eq(sub(end, start), len) {
                let mask := not(shr(shl(3, len), not(0)))
                same := eq(and(mload(add(add(der, 0x20), start)), mask), and(expected, mask))
            }
        }
    }

    function _hash(bytes memory der, uint256 start, uint256 end) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            h := keccak256(add(add(der, 0x20), start), sub(end, start))
        }
    }

    /// @dev A copy of der[start:end] (bounds already checked by the reader).
    function _copy(bytes memory der, uint256 start, uint256 end) private pure returns (bytes memory out) {
        out = new bytes(end - start);
        assembly ("memory-safe") {
            mcopy(add(out, 0x20), add(add(der, 0x20), start), sub(end, start))
        }
    }
}
