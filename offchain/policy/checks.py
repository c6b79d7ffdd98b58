"""Report field checks beyond the registry's rules: the ``checks`` object of a version-2 golden
measurement and the matching ``cvm-cli verify`` flags (docs/formats.md, "Report checks").

Each is an exact value or a minimum for one ATTESTATION_REPORT field (AMD SEV-SNP ABI
specification, Table 23 "ATTESTATION_REPORT Structure"); each broken one is one typed
:class:`~offchain.errors.Violation`:

=========================  ==========================================  ================================
key                        report field                                reason
=========================  ==========================================  ================================
``report_data``            REPORT_DATA (64 bytes; the bare-report      ``policy.report_data_mismatch``
                           nonce, zero-padded)
``host_data``              HOST_DATA (32 bytes)                        ``policy.host_data_mismatch``
``id_key_digest``          ID_KEY_DIGEST (48 bytes)                    ``policy.id_key_mismatch``
``author_key_digest``      AUTHOR_KEY_DIGEST (48 bytes)                ``policy.author_key_mismatch``
``family_id``              FAMILY_ID (16 bytes)                        ``policy.family_id_mismatch``
``image_id``               IMAGE_ID (16 bytes)                         ``policy.image_id_mismatch``
``min_guest_svn``          GUEST_SVN at least                          ``policy.guest_svn_too_low``
``chip_ids``               CHIP_ID one of (an allow-list)              ``policy.chip_not_allowed``
``platform_info``          PLATFORM_INFO bits, each as required        ``policy.platform_info_mismatch``
``min_firmware``           CURRENT_MAJOR.CURRENT_MINOR (the firmware   ``policy.firmware_too_old``
                           API version) and CURRENT_BUILD at least
=========================  ==========================================  ================================

The minimum TCB per component (bootloader, TEE, SNP, microcode, FMC) is the golden measurement's
``min_tcb``.

The registry checks the same fields under the same names (``ICvmRegistry.publishGoldenWithChecks``,
``ISnpVerifier.ReportChecks``: ``reportData``, ``hostData``, ... ``minFirmwareBuild``), and the
canonical id of a golden measurement with checks covers them (:meth:`ReportChecks.struct_hash`,
docs/formats.md "Canonical id"). :meth:`ReportChecks.onchain_fields` is that struct's value.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from offchain.abi.keccak import keccak256
from offchain.abi.snp_report import SnpReport
from offchain.errors import ParseError, Reason, Violation

#: The EIP-712 type of the checks as the registry hashes them (docs/formats.md, "Canonical id").
CHECKS_TYPE = (
    b"CvmReportChecks(bytes reportData,bytes hostData,bytes idKeyDigest,bytes authorKeyDigest,bytes familyId,"
    b"bytes imageId,uint32 minGuestSvn,bytes[] chipIds,uint64 platformInfoMask,uint64 platformInfo,"
    b"uint8 minFirmwareMajor,uint8 minFirmwareMinor,uint8 minFirmwareBuild)"
)
CHECKS_TYPEHASH = keccak256(CHECKS_TYPE)

#: PLATFORM_INFO bits by name (SEV-SNP ABI specification, Table 24 "PLATFORM_INFO Field").
PLATFORM_INFO_BITS: Mapping[str, int] = {
    "smt_enabled": 0,
    "tsme_enabled": 1,
    "ecc_enabled": 2,
    "rapl_disabled": 3,
    "ciphertext_hiding_enabled": 4,
    "alias_check_complete": 5,
}

_BYTES_FIELDS = {
    "report_data": (64, Reason.POLICY_REPORT_DATA_MISMATCH),
    "host_data": (32, Reason.POLICY_HOST_DATA_MISMATCH),
    "id_key_digest": (48, Reason.POLICY_ID_KEY_MISMATCH),
    "author_key_digest": (48, Reason.POLICY_AUTHOR_KEY_MISMATCH),
    "family_id": (16, Reason.POLICY_FAMILY_ID_MISMATCH),
    "image_id": (16, Reason.POLICY_IMAGE_ID_MISMATCH),
}
KEYS = (*_BYTES_FIELDS, "min_guest_svn", "chip_ids", "platform_info", "min_firmware")
#: The reason of a broken check, by key (in :data:`KEYS` order: the order of ``ISnpVerifier.ReportChecks``).
REASONS: Mapping[str, Reason] = {
    **{key: reason for key, (_size, reason) in _BYTES_FIELDS.items()},
    "min_guest_svn": Reason.POLICY_GUEST_SVN_TOO_LOW,
    "chip_ids": Reason.POLICY_CHIP_NOT_ALLOWED,
    "platform_info": Reason.POLICY_PLATFORM_INFO_MISMATCH,
    "min_firmware": Reason.POLICY_FIRMWARE_TOO_OLD,
}
_HEX = frozenset("0123456789abcdefABCDEF")


def _malformed(path: str, message: str) -> ParseError:
    return ParseError(Reason.GOLDEN_MALFORMED, f"{path}: {message}", field=path)


def parse_hex(value: Any, path: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.issuperset(value):
        raise _malformed(path, f"must be {2 * size} hex digits")
    return bytes.fromhex(value)


def _uint(value: Any, path: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise _malformed(path, f"must be an integer from 0 to {maximum}")
    return value


@dataclass(frozen=True, slots=True)
class FirmwareMinimum:
    """The least firmware API version (major.minor) and build a report's CURRENT_* may show."""

    major: int
    minor: int
    build: int = 0


@dataclass(frozen=True, slots=True)
class ReportChecks:
    """The optional report checks; ``None`` (or empty) means the field is not checked."""

    report_data: bytes | None = None
    host_data: bytes | None = None
    id_key_digest: bytes | None = None
    author_key_digest: bytes | None = None
    family_id: bytes | None = None
    image_id: bytes | None = None
    min_guest_svn: int | None = None
    chip_ids: tuple[bytes, ...] | None = None
    platform_info: tuple[tuple[str, bool], ...] = ()
    min_firmware: FirmwareMinimum | None = None

    def is_empty(self) -> bool:
        return self == ReportChecks()

    def onchain_fields(self) -> tuple[Any, ...]:
        """The value of ``ISnpVerifier.ReportChecks`` (field order): an unchecked field is empty or zero."""
        fw = self.min_firmware or FirmwareMinimum(0, 0, 0)
        mask = sum(1 << PLATFORM_INFO_BITS[name] for name, _ in self.platform_info)
        values = sum(1 << PLATFORM_INFO_BITS[name] for name, wanted in self.platform_info if wanted)
        return (
            *(getattr(self, key) or b"" for key in _BYTES_FIELDS),
            self.min_guest_svn or 0,
            list(self.chip_ids or ()),
            mask,
            values,
            fw.major,
            fw.minor,
            fw.build,
        )

    @classmethod
    def from_onchain_fields(cls, value: Sequence[Any]) -> ReportChecks:
        """The checks whose ``ISnpVerifier.ReportChecks`` value is ``value`` (:meth:`onchain_fields`'s inverse for
        checks that check something; bits above those :data:`PLATFORM_INFO_BITS` names are ``golden.malformed``)."""
        *byte_fields, svn, chip_ids, mask, values, major, minor, build = value
        names = {bit: name for name, bit in PLATFORM_INFO_BITS.items()}
        unknown = [bit for bit in range(64) if mask >> bit & 1 and bit not in names]
        if unknown:
            raise _malformed("checks.platform_info", f"bits {unknown} have no name here")
        out: dict[str, Any] = {key: bytes(data) for key, data in zip(_BYTES_FIELDS, byte_fields, strict=True) if data}
        if svn:
            out["min_guest_svn"] = svn
        if chip_ids:
            out["chip_ids"] = tuple(bytes(c) for c in chip_ids)
        out["platform_info"] = tuple((names[bit], bool(values >> bit & 1)) for bit in sorted(names) if mask >> bit & 1)
        if major or minor or build:
            out["min_firmware"] = FirmwareMinimum(major, minor, build)
        return cls(**out)

    def checks_something(self) -> bool:
        """Whether any check can fail: ``min_guest_svn`` 0 and ``min_firmware`` 0.0 build 0 accept every
        report, so checks of only those have the canonical id (and registry record) of none."""
        return any(self.onchain_fields())

    def struct_hash(self) -> bytes:
        """EIP-712 ``hashStruct(CvmReportChecks)``, as ``ISnpVerifier.hashChecks`` computes it."""
        *byte_fields, svn, chip_ids, mask, values, major, minor, build = self.onchain_fields()
        chips = keccak256(b"".join(keccak256(c) for c in chip_ids))
        words = [CHECKS_TYPEHASH, *(keccak256(b) for b in byte_fields), _word(svn), chips, _word(mask),
                 _word(values), _word(major), _word(minor), _word(build)]
        return keccak256(b"".join(words))

    def merged(self, over: ReportChecks) -> ReportChecks:
        """These checks with every field ``over`` sets taking its place (platform bits one by one)."""
        changes: dict[str, Any] = {
            f.name: getattr(over, f.name) for f in fields(self)
            if f.name != "platform_info" and getattr(over, f.name) is not None
        }
        bits = dict(self.platform_info) | dict(over.platform_info)
        changes["platform_info"] = tuple(sorted(bits.items(), key=lambda kv: PLATFORM_INFO_BITS[kv[0]]))
        return replace(self, **changes)

    @classmethod
    def from_json(cls, value: Any, path: str = "checks") -> ReportChecks:
        if not isinstance(value, dict):
            raise _malformed(path, "must be an object")
        unknown = sorted(str(k) for k in value if k not in KEYS)
        if unknown:
            raise _malformed(path, f"unknown keys {unknown}")
        out: dict[str, Any] = {}
        for key, (size, _reason) in _BYTES_FIELDS.items():
            if key in value:
                out[key] = parse_hex(value[key], f"{path}.{key}", size)
        if "min_guest_svn" in value:
            out["min_guest_svn"] = _uint(value["min_guest_svn"], f"{path}.min_guest_svn", 0xFFFFFFFF)
        if "chip_ids" in value:
            ids = value["chip_ids"]
            if not isinstance(ids, list) or not ids:
                raise _malformed(f"{path}.chip_ids", "must be a non-empty list of 128 hex digits")
            out["chip_ids"] = tuple(parse_hex(c, f"{path}.chip_ids[{i}]", 64) for i, c in enumerate(ids))
        if "platform_info" in value:
            bits = value["platform_info"]
            if not isinstance(bits, dict) or not bits:
                raise _malformed(f"{path}.platform_info", f"must be a non-empty object of {sorted(PLATFORM_INFO_BITS)}")
            for name, wanted in bits.items():
                if name not in PLATFORM_INFO_BITS or not isinstance(wanted, bool):
                    raise _malformed(f"{path}.platform_info.{name}", f"must be one of {sorted(PLATFORM_INFO_BITS)}"
                                     " with true or false")
            out["platform_info"] = tuple(sorted(bits.items(), key=lambda kv: PLATFORM_INFO_BITS[kv[0]]))
        if "min_firmware" in value:
            fw = value["min_firmware"]
            if not isinstance(fw, dict) or not {"major", "minor"} <= set(fw) <= {"major", "minor", "build"}:
                raise _malformed(f"{path}.min_firmware", "must be {major, minor[, build]}")
            out["min_firmware"] = FirmwareMinimum(
                _uint(fw["major"], f"{path}.min_firmware.major", 0xFF),
                _uint(fw["minor"], f"{path}.min_firmware.minor", 0xFF),
                _uint(fw.get("build", 0), f"{path}.min_firmware.build", 0xFF),
            )
        checks = cls(**out)
        if checks.is_empty():
            raise _malformed(path, "is empty: leave it out")
        return checks

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for key in _BYTES_FIELDS:
            data = getattr(self, key)
            if data is not None:
                doc[key] = data.hex()
        if self.min_guest_svn is not None:
            doc["min_guest_svn"] = self.min_guest_svn
        if self.chip_ids is not None:
            doc["chip_ids"] = [c.hex() for c in self.chip_ids]
        if self.platform_info:
            doc["platform_info"] = dict(self.platform_info)
        if self.min_firmware is not None:
            doc["min_firmware"] = {"major": self.min_firmware.major, "minor": self.min_firmware.minor,
                                   "build": self.min_firmware.build}
        return doc


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def report_check_violations(checks: ReportChecks, report: SnpReport, path: str = "checks") -> list[Violation]:
    """Every check of ``checks`` that ``report`` breaks, in :data:`KEYS` order."""
    out: list[Violation] = []
    for key, (_size, reason) in _BYTES_FIELDS.items():
        wanted = getattr(checks, key)
        got: bytes = getattr(report, key)
        if wanted is not None and not hmac.compare_digest(wanted, got):
            out.append(Violation(reason, f"{path}.{key}", wanted.hex(), got.hex()))
    if checks.min_guest_svn is not None and report.guest_svn < checks.min_guest_svn:
        out.append(Violation(REASONS["min_guest_svn"], f"{path}.min_guest_svn", f">= {checks.min_guest_svn}",
                             report.guest_svn))
    if checks.chip_ids is not None and not any(hmac.compare_digest(c, report.chip_id) for c in checks.chip_ids):
        out.append(Violation(REASONS["chip_ids"], f"{path}.chip_ids", "one of the allowed chips",
                             report.chip_id.hex()))
    for name, wanted_bit in checks.platform_info:
        actual = bool(report.platform_info >> PLATFORM_INFO_BITS[name] & 1)
        if actual is not wanted_bit:
            out.append(Violation(REASONS["platform_info"], f"{path}.platform_info.{name}", wanted_bit,
                                 actual))
    fw = checks.min_firmware
    if fw is not None:
        current = (report.current_major, report.current_minor, report.current_build)
        if current < (fw.major, fw.minor, fw.build):
            out.append(Violation(REASONS["min_firmware"], f"{path}.min_firmware",
                                 f">= {fw.major}.{fw.minor} build {fw.build}",
                                 f"{report.current_major}.{report.current_minor} build {report.current_build}"))
    return out
