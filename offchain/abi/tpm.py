"""TPM 2.0 structures a verifier reads from a quote (TPM 2.0 Library, Part 2 "Structures").

* :class:`TpmsAttest`: 10.12.8 TPMS_ATTEST, with 10.12.1 TPMS_QUOTE_INFO as the attested union
  for ``TPM_ST_ATTEST_QUOTE`` and 10.11.1 TPMS_CLOCK_INFO; 10.6 TPML_PCR_SELECTION.
* :class:`TpmtPublic`: 12.2.4 TPMT_PUBLIC for RSA and ECC keys (12.2.3.5 TPMS_RSA_PARMS,
  12.2.3.6 TPMS_ECC_PARMS), and the 12.2.5 TPM2B_PUBLIC wrapper.
* :class:`TpmtSignature`: 11.3.4 TPMT_SIGNATURE for RSASSA, RSAPSS and the ECC schemes.

All integers are big-endian. Parsers check structure only (sizes, known selectors, no trailing
bytes); they never judge magic, type, algorithm or nonce: that is the verifier's job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from offchain.abi.reader import Reader, tpm2b
from offchain.errors import ParseError, Reason

TPM_GENERATED_VALUE = 0xFF544347  # "\xffTCG", Part 2, 6.2
TPM_ST_ATTEST_QUOTE = 0x8018  # Part 2, 6.9

# TPM_ALG_ID (Part 2, 6.3)
TPM_ALG_RSA = 0x0001
TPM_ALG_SHA1 = 0x0004
TPM_ALG_AES = 0x0006
TPM_ALG_SHA256 = 0x000B
TPM_ALG_SHA384 = 0x000C
TPM_ALG_SHA512 = 0x000D
TPM_ALG_NULL = 0x0010
TPM_ALG_RSASSA = 0x0014
TPM_ALG_RSAES = 0x0015
TPM_ALG_RSAPSS = 0x0016
TPM_ALG_OAEP = 0x0017
TPM_ALG_ECDSA = 0x0018
TPM_ALG_ECDH = 0x0019
TPM_ALG_ECDAA = 0x001A
TPM_ALG_SM2 = 0x001B
TPM_ALG_ECSCHNORR = 0x001C
TPM_ALG_ECMQV = 0x001D
TPM_ALG_KDF1_SP800_56A = 0x0020
TPM_ALG_KDF2 = 0x0021
TPM_ALG_KDF1_SP800_108 = 0x0022
TPM_ALG_ECC = 0x0023
TPM_ALG_CFB = 0x0043

# TPM_ECC_CURVE (Part 2, 6.4)
TPM_ECC_NIST_P256 = 0x0003
TPM_ECC_NIST_P384 = 0x0004
TPM_ECC_NIST_P521 = 0x0005

HASH_ALGORITHMS: dict[int, str] = {
    TPM_ALG_SHA1: "sha1",
    TPM_ALG_SHA256: "sha256",
    TPM_ALG_SHA384: "sha384",
    TPM_ALG_SHA512: "sha512",
}
ECC_CURVES: dict[int, ec.EllipticCurve] = {
    TPM_ECC_NIST_P256: ec.SECP256R1(),
    TPM_ECC_NIST_P384: ec.SECP384R1(),
    TPM_ECC_NIST_P521: ec.SECP521R1(),
}

# Size limits from Part 2 with the usual implementation constants (TPM 2.0 Part 4 / PC Client).
MAX_DIGEST_SIZE = 64  # sizeof(TPMU_HA)
MAX_NAME_SIZE = 2 + MAX_DIGEST_SIZE  # sizeof(TPMU_NAME)
MAX_DATA_SIZE = 2 + MAX_DIGEST_SIZE  # sizeof(TPMT_HA): TPM2B_DATA
MAX_RSA_KEY_BYTES = 512
MAX_ECC_KEY_BYTES = 66
HASH_COUNT = 16  # more banks than any TPM implements
PCR_SELECT_MAX = 32  # bytes of a pcrSelect bitmap

# objectAttributes of an AK (Part 2, 8.3): fixedTPM | fixedParent | sensitiveDataOrigin |
# userWithAuth | restricted | sign
AK_OBJECT_ATTRIBUTES = 0x00050072

# Schemes whose TPMU_ASYM_SCHEME member is TPMS_SCHEME_HASH (one hashAlg), is empty, or is ECDAA.
_HASH_SCHEMES = {
    TPM_ALG_RSASSA,
    TPM_ALG_RSAPSS,
    TPM_ALG_OAEP,
    TPM_ALG_ECDSA,
    TPM_ALG_ECDH,
    TPM_ALG_SM2,
    TPM_ALG_ECSCHNORR,
    TPM_ALG_ECMQV,
}
_EMPTY_SCHEMES = {TPM_ALG_NULL, TPM_ALG_RSAES}
_KDF_SCHEMES = {TPM_ALG_KDF1_SP800_56A, TPM_ALG_KDF2, TPM_ALG_KDF1_SP800_108}
_ECC_SIGNATURE_SCHEMES = {TPM_ALG_ECDSA, TPM_ALG_ECDAA, TPM_ALG_SM2, TPM_ALG_ECSCHNORR}
_RSA_SIGNATURE_SCHEMES = {TPM_ALG_RSASSA, TPM_ALG_RSAPSS}


def _u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def _check_uint(reason: Reason, name: str, value: Any, bits: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
        raise ParseError(reason, f"{name} must be a {bits}-bit unsigned integer", field=name)


def _check_bytes(reason: Reason, name: str, value: Any, max_size: int) -> None:
    if not isinstance(value, bytes) or len(value) > max_size:
        raise ParseError(reason, f"{name} must be at most {max_size} bytes", field=name)


def digest(hash_alg: int, data: bytes) -> bytes:
    """The TPM hash ``hash_alg`` (TPM_ALG_SHA*) of ``data``."""
    name = HASH_ALGORITHMS.get(hash_alg)
    if name is None:
        raise ParseError(
            Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED, f"hash algorithm {hash_alg:#06x} is not supported", hash_alg=hash_alg
        )
    return hashlib.new(name, data).digest()


# --- PCR selection ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """One TPMS_PCR_SELECTION (Part 2, 10.6.2): a bank and the PCRs selected in it, ascending.

    ``size_of_select`` is the bitmap's byte length on the wire (3 for a 24-PCR TPM).
    """

    hash_alg: int
    pcrs: tuple[int, ...]
    size_of_select: int = 3

    def __post_init__(self) -> None:
        reason = Reason.TPM_ATTEST_MALFORMED
        _check_uint(reason, "hash_alg", self.hash_alg, 16)
        if not isinstance(self.size_of_select, int) or not 1 <= self.size_of_select <= PCR_SELECT_MAX:
            raise ParseError(reason, f"sizeofSelect must be 1..{PCR_SELECT_MAX}", field="size_of_select")
        pcrs = tuple(self.pcrs)
        if any(not isinstance(p, int) or isinstance(p, bool) for p in pcrs):
            raise ParseError(reason, "PCR indices are integers", field="pcrs")
        if list(pcrs) != sorted(set(pcrs)):
            raise ParseError(reason, "PCR indices must be unique and ascending", field="pcrs")
        if pcrs and not 0 <= pcrs[0] <= pcrs[-1] < 8 * self.size_of_select:
            raise ParseError(reason, f"PCR index outside a {self.size_of_select}-byte bitmap", field="pcrs")
        object.__setattr__(self, "pcrs", pcrs)

    @classmethod
    def read(cls, r: Reader) -> Self:
        hash_alg = r.u16be("hash")
        size = r.u8("sizeofSelect")
        if not 1 <= size <= PCR_SELECT_MAX:
            raise r.fail(f"sizeofSelect {size} is outside 1..{PCR_SELECT_MAX}")
        bitmap = r.take(size, "pcrSelect")
        pcrs = tuple(8 * i + bit for i, byte in enumerate(bitmap) for bit in range(8) if byte >> bit & 1)
        return cls(hash_alg, pcrs, size)

    def to_bytes(self) -> bytes:
        bitmap = bytearray(self.size_of_select)
        for pcr in self.pcrs:
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        return _u16(self.hash_alg) + bytes((self.size_of_select,)) + bytes(bitmap)

    @property
    def hash_name(self) -> str | None:
        return HASH_ALGORITHMS.get(self.hash_alg)


def pcr_selection_bytes(selections: tuple[PcrSelection, ...]) -> bytes:
    """Marshal a TPML_PCR_SELECTION."""
    return _u32(len(selections)) + b"".join(s.to_bytes() for s in selections)


def read_pcr_selections(r: Reader) -> tuple[PcrSelection, ...]:
    count = r.u32be("TPML_PCR_SELECTION.count")
    if count > HASH_COUNT:
        raise r.fail(f"TPML_PCR_SELECTION.count {count} exceeds {HASH_COUNT}")
    return tuple(PcrSelection.read(r) for _ in range(count))


# --- TPMS_ATTEST ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TpmsAttest:
    """TPMS_ATTEST (Part 2, 10.12.8): what the AK signs in a quote.

    For ``type == TPM_ST_ATTEST_QUOTE`` the attested union is TPMS_QUOTE_INFO, decoded into
    ``pcr_selections`` and ``pcr_digest``. Any other type keeps its union bytes in ``attested``
    (and leaves the PCR fields empty) so the verifier can reject it by type with its own reason.
    """

    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock: int
    reset_count: int
    restart_count: int
    safe: bool
    firmware_version: int
    pcr_selections: tuple[PcrSelection, ...] = ()
    pcr_digest: bytes = b""
    attested: bytes = b""

    def __post_init__(self) -> None:
        reason = Reason.TPM_ATTEST_MALFORMED
        _check_uint(reason, "magic", self.magic, 32)
        _check_uint(reason, "type", self.type, 16)
        _check_bytes(reason, "qualified_signer", self.qualified_signer, MAX_NAME_SIZE)
        _check_bytes(reason, "extra_data", self.extra_data, MAX_DATA_SIZE)
        _check_uint(reason, "clock", self.clock, 64)
        _check_uint(reason, "reset_count", self.reset_count, 32)
        _check_uint(reason, "restart_count", self.restart_count, 32)
        if not isinstance(self.safe, bool):
            raise ParseError(reason, "safe is a TPMI_YES_NO (bool)", field="safe")
        _check_uint(reason, "firmware_version", self.firmware_version, 64)
        _check_bytes(reason, "pcr_digest", self.pcr_digest, MAX_DIGEST_SIZE)
        if len(self.pcr_selections) > HASH_COUNT or not all(isinstance(s, PcrSelection) for s in self.pcr_selections):
            raise ParseError(reason, "pcr_selections must be PcrSelection values", field="pcr_selections")
        object.__setattr__(self, "pcr_selections", tuple(self.pcr_selections))
        if self.is_quote:
            if self.attested:
                raise ParseError(reason, "a quote's attested union is its PCR selection and digest", field="attested")
        elif self.pcr_selections or self.pcr_digest:
            raise ParseError(reason, "only a quote carries a PCR selection and digest", field="type")
        elif not isinstance(self.attested, bytes) or len(self.attested) > 0xFFFF:
            raise ParseError(reason, "attested must be bytes", field="attested")

    @property
    def is_quote(self) -> bool:
        return self.type == TPM_ST_ATTEST_QUOTE

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ParseError(Reason.TPM_ATTEST_MALFORMED, "TPMS_ATTEST is bytes")
        r = Reader(bytes(data), Reason.TPM_ATTEST_MALFORMED, "TPMS_ATTEST")
        magic = r.u32be("magic")
        type_ = r.u16be("type")
        qualified_signer = r.tpm2b("qualifiedSigner", MAX_NAME_SIZE)
        extra_data = r.tpm2b("extraData", MAX_DATA_SIZE)
        clock = r.u64be("clockInfo.clock")
        reset_count = r.u32be("clockInfo.resetCount")
        restart_count = r.u32be("clockInfo.restartCount")
        safe = r.u8("clockInfo.safe")
        if safe > 1:
            raise r.fail(f"clockInfo.safe is a TPMI_YES_NO, got {safe}")
        firmware_version = r.u64be("firmwareVersion")
        selections: tuple[PcrSelection, ...] = ()
        pcr_digest = b""
        attested = b""
        if type_ == TPM_ST_ATTEST_QUOTE:
            selections = read_pcr_selections(r)
            pcr_digest = r.tpm2b("pcrDigest", MAX_DIGEST_SIZE)
            r.finish()
        else:
            attested = r.rest()
        return cls(
            magic=magic,
            type=type_,
            qualified_signer=qualified_signer,
            extra_data=extra_data,
            clock=clock,
            reset_count=reset_count,
            restart_count=restart_count,
            safe=bool(safe),
            firmware_version=firmware_version,
            pcr_selections=selections,
            pcr_digest=pcr_digest,
            attested=attested,
        )

    def to_bytes(self) -> bytes:
        out = (
            _u32(self.magic)
            + _u16(self.type)
            + tpm2b(self.qualified_signer)
            + tpm2b(self.extra_data)
            + self.clock.to_bytes(8, "big")
            + _u32(self.reset_count)
            + _u32(self.restart_count)
            + bytes((int(self.safe),))
            + self.firmware_version.to_bytes(8, "big")
        )
        if self.is_quote:
            return out + pcr_selection_bytes(self.pcr_selections) + tpm2b(self.pcr_digest)
        return out + self.attested

    def to_json(self) -> dict[str, Any]:
        """The shape of expected.json's ``attest`` objects."""
        return {
            "magic": f"{self.magic:#x}",
            "type": f"{self.type:#x}",
            "qualified_signer": self.qualified_signer.hex(),
            "extra_data": self.extra_data.hex(),
            "reset_count": self.reset_count,
            "restart_count": self.restart_count,
            "safe": int(self.safe),
            "firmware_version": f"{self.firmware_version:#018x}",
            "pcr_select": [
                {"hash": s.hash_name, "hash_id": s.hash_alg, "pcrs": list(s.pcrs)} for s in self.pcr_selections
            ],
            "pcr_digest": self.pcr_digest.hex(),
        }


# --- TPMT_PUBLIC ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TpmtPublic:
    """TPMT_PUBLIC (Part 2, 12.2.4) of an RSA or ECC key.

    ``symmetric`` (with ``symmetric_key_bits``/``symmetric_mode`` when not TPM_ALG_NULL) is the
    TPMT_SYM_DEF_OBJECT; ``scheme``/``scheme_hash`` (and ``scheme_count`` for ECDAA) the signing
    or decryption scheme. RSA keys use ``key_bits``, ``exponent`` (0 means 65537, as on the wire)
    and ``modulus``; ECC keys use ``curve_id``, ``kdf``/``kdf_hash``, ``x`` and ``y``.
    """

    type: int
    name_alg: int
    object_attributes: int
    auth_policy: bytes = b""
    symmetric: int = TPM_ALG_NULL
    symmetric_key_bits: int = 0
    symmetric_mode: int = 0
    scheme: int = TPM_ALG_NULL
    scheme_hash: int = 0
    scheme_count: int = 0
    key_bits: int = 0
    exponent: int = 0
    curve_id: int = 0
    kdf: int = TPM_ALG_NULL
    kdf_hash: int = 0
    modulus: bytes = b""
    x: bytes = b""
    y: bytes = b""

    def __post_init__(self) -> None:
        reason = Reason.TPM_PUBLIC_MALFORMED
        if self.type not in (TPM_ALG_RSA, TPM_ALG_ECC):
            raise ParseError(reason, f"public area type {self.type!r} is neither RSA nor ECC", field="type")
        for name in (
            "name_alg",
            "symmetric",
            "symmetric_key_bits",
            "symmetric_mode",
            "scheme",
            "scheme_hash",
            "scheme_count",
            "key_bits",
            "curve_id",
            "kdf",
            "kdf_hash",
        ):
            _check_uint(reason, name, getattr(self, name), 16)
        _check_uint(reason, "object_attributes", self.object_attributes, 32)
        _check_uint(reason, "exponent", self.exponent, 32)
        _check_bytes(reason, "auth_policy", self.auth_policy, MAX_DIGEST_SIZE)
        if self.symmetric == TPM_ALG_NULL and (self.symmetric_key_bits or self.symmetric_mode):
            raise ParseError(reason, "a NULL symmetric definition has no key bits or mode", field="symmetric")
        if self.scheme not in _HASH_SCHEMES | _EMPTY_SCHEMES | {TPM_ALG_ECDAA}:
            raise ParseError(reason, f"unknown scheme {self.scheme:#06x}", field="scheme")
        if self.scheme in _EMPTY_SCHEMES and self.scheme_hash:
            raise ParseError(reason, "this scheme carries no hash", field="scheme_hash")
        if self.scheme != TPM_ALG_ECDAA and self.scheme_count:
            raise ParseError(reason, "only ECDAA carries a count", field="scheme_count")
        if self.kdf not in _KDF_SCHEMES | {TPM_ALG_NULL}:
            raise ParseError(reason, f"unknown KDF scheme {self.kdf:#06x}", field="kdf")
        if self.kdf == TPM_ALG_NULL and self.kdf_hash:
            raise ParseError(reason, "a NULL KDF carries no hash", field="kdf_hash")
        if self.type == TPM_ALG_RSA:
            _check_bytes(reason, "modulus", self.modulus, MAX_RSA_KEY_BYTES)
            if self.curve_id or self.kdf != TPM_ALG_NULL or self.kdf_hash or self.x or self.y:
                raise ParseError(reason, "an RSA public area has no ECC fields", field="type")
        else:
            _check_bytes(reason, "x", self.x, MAX_ECC_KEY_BYTES)
            _check_bytes(reason, "y", self.y, MAX_ECC_KEY_BYTES)
            if self.key_bits or self.exponent or self.modulus:
                raise ParseError(reason, "an ECC public area has no RSA fields", field="type")

    @classmethod
    def read(cls, r: Reader) -> Self:
        type_ = r.u16be("type")
        if type_ not in (TPM_ALG_RSA, TPM_ALG_ECC):
            raise r.fail(f"public area type {type_:#06x} is neither RSA nor ECC")
        fields: dict[str, Any] = {
            "type": type_,
            "name_alg": r.u16be("nameAlg"),
            "object_attributes": r.u32be("objectAttributes"),
            "auth_policy": r.tpm2b("authPolicy", MAX_DIGEST_SIZE),
        }
        fields["symmetric"] = r.u16be("symmetric.algorithm")
        if fields["symmetric"] != TPM_ALG_NULL:
            fields["symmetric_key_bits"] = r.u16be("symmetric.keyBits")
            fields["symmetric_mode"] = r.u16be("symmetric.mode")
        scheme = fields["scheme"] = r.u16be("scheme.scheme")
        if scheme in _HASH_SCHEMES:
            fields["scheme_hash"] = r.u16be("scheme.hashAlg")
        elif scheme == TPM_ALG_ECDAA:
            fields["scheme_hash"] = r.u16be("scheme.hashAlg")
            fields["scheme_count"] = r.u16be("scheme.count")
        elif scheme not in _EMPTY_SCHEMES:
            raise r.fail(f"unknown scheme {scheme:#06x}")
        if type_ == TPM_ALG_RSA:
            fields["key_bits"] = r.u16be("keyBits")
            fields["exponent"] = r.u32be("exponent")
            fields["modulus"] = r.tpm2b("unique.rsa", MAX_RSA_KEY_BYTES)
        else:
            fields["curve_id"] = r.u16be("curveID")
            kdf = fields["kdf"] = r.u16be("kdf.scheme")
            if kdf in _KDF_SCHEMES:
                fields["kdf_hash"] = r.u16be("kdf.hashAlg")
            elif kdf != TPM_ALG_NULL:
                raise r.fail(f"unknown KDF scheme {kdf:#06x}")
            fields["x"] = r.tpm2b("unique.ecc.x", MAX_ECC_KEY_BYTES)
            fields["y"] = r.tpm2b("unique.ecc.y", MAX_ECC_KEY_BYTES)
        return cls(**fields)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse a TPMT_PUBLIC that spans all of ``data``."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ParseError(Reason.TPM_PUBLIC_MALFORMED, "TPMT_PUBLIC is bytes")
        r = Reader(bytes(data), Reason.TPM_PUBLIC_MALFORMED, "TPMT_PUBLIC")
        public = cls.read(r)
        r.finish()
        return public

    @classmethod
    def from_tpm2b(cls, data: bytes) -> Self:
        """Parse a TPM2B_PUBLIC (Part 2, 12.2.5): ``u16 size`` then exactly that TPMT_PUBLIC."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ParseError(Reason.TPM_PUBLIC_MALFORMED, "TPM2B_PUBLIC is bytes")
        r = Reader(bytes(data), Reason.TPM_PUBLIC_MALFORMED, "TPM2B_PUBLIC")
        inner = r.tpm2b("publicArea", 0xFFFF)
        r.finish()
        return cls.from_bytes(inner)

    @classmethod
    def from_marshalled(cls, data: bytes) -> Self:
        """A TPMT_PUBLIC or a TPM2B_PUBLIC, whichever ``data`` holds.

        The two cannot be confused: a TPM2B_PUBLIC starts with the length of the rest, a
        TPMT_PUBLIC with its type (0x0001 or 0x0023), and no public area is that short.
        """
        if len(data) >= 2 and int.from_bytes(data[:2], "big") == len(data) - 2:
            return cls.from_tpm2b(data)
        return cls.from_bytes(data)

    def to_bytes(self) -> bytes:
        out = _u16(self.type) + _u16(self.name_alg) + _u32(self.object_attributes) + tpm2b(self.auth_policy)
        out += _u16(self.symmetric)
        if self.symmetric != TPM_ALG_NULL:
            out += _u16(self.symmetric_key_bits) + _u16(self.symmetric_mode)
        out += _u16(self.scheme)
        if self.scheme in _HASH_SCHEMES:
            out += _u16(self.scheme_hash)
        elif self.scheme == TPM_ALG_ECDAA:
            out += _u16(self.scheme_hash) + _u16(self.scheme_count)
        if self.type == TPM_ALG_RSA:
            return out + _u16(self.key_bits) + _u32(self.exponent) + tpm2b(self.modulus)
        out += _u16(self.curve_id) + _u16(self.kdf)
        if self.kdf != TPM_ALG_NULL:
            out += _u16(self.kdf_hash)
        return out + tpm2b(self.x) + tpm2b(self.y)

    def to_tpm2b(self) -> bytes:
        return tpm2b(self.to_bytes())

    def name(self) -> bytes:
        """The object's Name (Part 1, 16): ``nameAlg || H_nameAlg(TPMT_PUBLIC)``."""
        if self.name_alg not in HASH_ALGORITHMS:
            raise ParseError(
                Reason.TPM_PUBLIC_MALFORMED, f"nameAlg {self.name_alg:#06x} is not a supported hash", field="name_alg"
            )
        return _u16(self.name_alg) + digest(self.name_alg, self.to_bytes())

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        """The key as a ``cryptography`` public key; the unique field must be a full, valid key."""
        reason = Reason.TPM_PUBLIC_MALFORMED
        try:
            if self.type == TPM_ALG_RSA:
                if not self.modulus or len(self.modulus) * 8 != self.key_bits:
                    raise ParseError(reason, f"modulus is not {self.key_bits} bits", field="modulus")
                exponent = self.exponent or 65537
                return rsa.RSAPublicNumbers(exponent, int.from_bytes(self.modulus, "big")).public_key()
            curve = ECC_CURVES.get(self.curve_id)
            if curve is None:
                raise ParseError(reason, f"curve {self.curve_id:#06x} is not supported", field="curve_id")
            size = (curve.key_size + 7) // 8
            if len(self.x) != size or len(self.y) != size:
                raise ParseError(reason, f"ECC point coordinates must be {size} bytes", field="unique")
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(self.x, "big"), int.from_bytes(self.y, "big"), curve
            ).public_key()
        except ValueError as exc:
            raise ParseError(reason, f"not a valid public key: {exc}") from None

    @classmethod
    def from_public_key(
        cls,
        key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        *,
        name_alg: int = TPM_ALG_SHA256,
        object_attributes: int = AK_OBJECT_ATTRIBUTES,
        scheme: int | None = None,
        scheme_hash: int = TPM_ALG_SHA256,
        auth_policy: bytes = b"",
    ) -> Self:
        """The TPMT_PUBLIC a TPM would report for ``key`` as a restricted signing key (an AK):
        RSASSA or ECDSA with ``scheme_hash``, no symmetric algorithm, default exponent as 0."""
        if isinstance(key, rsa.RSAPublicKey):
            numbers = key.public_numbers()
            return cls(
                type=TPM_ALG_RSA,
                name_alg=name_alg,
                object_attributes=object_attributes,
                auth_policy=auth_policy,
                scheme=TPM_ALG_RSASSA if scheme is None else scheme,
                scheme_hash=scheme_hash,
                key_bits=key.key_size,
                exponent=0 if numbers.e == 65537 else numbers.e,
                modulus=numbers.n.to_bytes(key.key_size // 8, "big"),
            )
        if isinstance(key, ec.EllipticCurvePublicKey):
            curve_ids = {type(c): cid for cid, c in ECC_CURVES.items()}
            curve_id = curve_ids.get(type(key.curve))
            if curve_id is None:
                raise ParseError(Reason.TPM_PUBLIC_MALFORMED, f"curve {key.curve.name} has no TPM curve id")
            size = (key.curve.key_size + 7) // 8
            point = key.public_numbers()
            return cls(
                type=TPM_ALG_ECC,
                name_alg=name_alg,
                object_attributes=object_attributes,
                auth_policy=auth_policy,
                scheme=TPM_ALG_ECDSA if scheme is None else scheme,
                scheme_hash=scheme_hash,
                curve_id=curve_id,
                x=point.x.to_bytes(size, "big"),
                y=point.y.to_bytes(size, "big"),
            )
        raise ParseError(Reason.TPM_PUBLIC_MALFORMED, f"{type(key).__name__} is neither an RSA nor an EC key")


# --- TPMT_SIGNATURE ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TpmtSignature:
    """TPMT_SIGNATURE (Part 2, 11.3.4) for RSASSA/RSAPSS (``signature``) and the ECC schemes
    ECDSA, ECDAA, SM2, ECSCHNORR (``ecc_r``/``ecc_s`` as sent, big-endian; ``r``/``s`` as ints).
    """

    sig_alg: int
    hash_alg: int
    signature: bytes = b""
    ecc_r: bytes = b""
    ecc_s: bytes = b""

    def __post_init__(self) -> None:
        reason = Reason.TPM_SIGNATURE_MALFORMED
        _check_uint(reason, "hash_alg", self.hash_alg, 16)
        if self.sig_alg in _RSA_SIGNATURE_SCHEMES:
            _check_bytes(reason, "signature", self.signature, MAX_RSA_KEY_BYTES)
            if not self.signature or self.ecc_r or self.ecc_s:
                raise ParseError(reason, "an RSA signature carries one non-empty signature", field="signature")
        elif self.sig_alg in _ECC_SIGNATURE_SCHEMES:
            _check_bytes(reason, "ecc_r", self.ecc_r, MAX_ECC_KEY_BYTES)
            _check_bytes(reason, "ecc_s", self.ecc_s, MAX_ECC_KEY_BYTES)
            if self.signature:
                raise ParseError(reason, "an ECC signature carries r and s only", field="signature")
        else:
            raise ParseError(reason, f"signature algorithm {self.sig_alg!r} is not supported", field="sig_alg")

    @property
    def is_rsa(self) -> bool:
        return self.sig_alg in _RSA_SIGNATURE_SCHEMES

    @property
    def r(self) -> int:
        return int.from_bytes(self.ecc_r, "big")

    @property
    def s(self) -> int:
        return int.from_bytes(self.ecc_s, "big")

    @classmethod
    def rsassa(cls, hash_alg: int, signature: bytes) -> Self:
        return cls(TPM_ALG_RSASSA, hash_alg, signature=signature)

    @classmethod
    def ecdsa(cls, hash_alg: int, r: int, s: int, size: int) -> Self:
        """An ECDSA signature with r and s padded to ``size`` bytes, as a TPM sends them."""
        try:
            return cls(TPM_ALG_ECDSA, hash_alg, ecc_r=r.to_bytes(size, "big"), ecc_s=s.to_bytes(size, "big"))
        except OverflowError:
            raise ParseError(Reason.TPM_SIGNATURE_MALFORMED, f"r or s does not fit {size} bytes") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ParseError(Reason.TPM_SIGNATURE_MALFORMED, "TPMT_SIGNATURE is bytes")
        r = Reader(bytes(data), Reason.TPM_SIGNATURE_MALFORMED, "TPMT_SIGNATURE")
        sig_alg = r.u16be("sigAlg")
        if sig_alg in _RSA_SIGNATURE_SCHEMES:
            hash_alg = r.u16be("hash")
            sig = cls(sig_alg, hash_alg, signature=r.tpm2b("sig", MAX_RSA_KEY_BYTES))
        elif sig_alg in _ECC_SIGNATURE_SCHEMES:
            hash_alg = r.u16be("hash")
            ecc_r = r.tpm2b("signatureR", MAX_ECC_KEY_BYTES)
            ecc_s = r.tpm2b("signatureS", MAX_ECC_KEY_BYTES)
            sig = cls(sig_alg, hash_alg, ecc_r=ecc_r, ecc_s=ecc_s)
        else:
            raise r.fail(f"signature algorithm {sig_alg:#06x} is not supported", sig_alg=sig_alg)
        r.finish()
        return sig

    def to_bytes(self) -> bytes:
        head = _u16(self.sig_alg) + _u16(self.hash_alg)
        if self.is_rsa:
            return head + tpm2b(self.signature)
        return head + tpm2b(self.ecc_r) + tpm2b(self.ecc_s)
