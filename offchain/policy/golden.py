"""The golden measurement: one versioned JSON document saying what an acceptable CVM is.

Format and canonical id: docs/formats.md, "Golden measurement" (the JSON Schema ships next to
this module as ``golden.schema.json``). The fields that decide security (measurement, the debug /
migration-agent / SMT rules, minimum ABI, minimum TCB, VMPL, products, signers, binding, lifetime)
are all required; only ``name``, ``pcrs`` (absent = nothing pinned) and ``pcr23_events`` may be
left out.

The canonical id is an EIP-712-style struct hash the registry contract computes the same way
(``CvmRegistry`` is the authority): Keccak-256 over the ABI encoding of the policy fields, with the
measurement and the pinned PCR values hashed first. ``name`` and ``pcr23_events`` are not part of
it: they describe, they do not decide.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from offchain.abi.jsontext import loads_bounded
from offchain.abi.keccak import keccak256
from offchain.abi.snp_report import Product, SignerKind, SnpReport, TcbVersion
from offchain.abi.workload import WORKLOAD_PCR, WorkloadEvent, replay
from offchain.errors import CvmAttestError, ParseError, PolicyError, Reason, Violation
from offchain.inputs import read_input
from offchain.policy.checks import CHECKS_TYPE, ReportChecks

GOLDEN_VERSION = 1
#: A document with report checks (``checks``) says version 2; one without stays version 1. The
#: canonical id of a version-2 document covers its checks (:meth:`GoldenMeasurement.canonical_id`).
GOLDEN_VERSION_CHECKS = 2
MEASUREMENT_SIZE = 48
PCR_COUNT = 24
PCR_SIZE = 32
MAX_NAME_LENGTH = 256
MAX_DOCUMENT_BYTES = 1 << 20
SCHEMA_FILE = Path(__file__).with_name("golden.schema.json")

GOLDEN_TYPE = (
    b"CvmGolden(bytes measurement,uint8 binding,uint8 vmpl,uint8 products,uint8 signers,bool debugAllowed,"
    b"bool migrateMaAllowed,bool smtAllowed,uint8 minAbiMajor,uint8 minAbiMinor,uint8 minBootloader,"
    b"uint8 minTee,uint8 minSnp,uint8 minMicrocode,uint8 minFmc,uint32 pcrMask,bytes32[] pcrValues,"
    b"uint64 lifetime)"
)
GOLDEN_TYPEHASH = keccak256(GOLDEN_TYPE)
#: A golden measurement with report checks: EIP-712 nested structs (referenced types sorted by name).
GOLDEN_CHECKS_TYPE = b"CvmGoldenWithChecks(CvmGolden golden,CvmReportChecks checks)" + GOLDEN_TYPE + CHECKS_TYPE
GOLDEN_CHECKS_TYPEHASH = keccak256(GOLDEN_CHECKS_TYPE)

#: Bit of each product / signer kind in the id's ``products`` / ``signers`` masks.
PRODUCT_BITS = {Product.MILAN: 1, Product.GENOA: 2, Product.TURIN: 4}
SIGNER_BITS = {SignerKind.VCEK: 1, SignerKind.VLEK: 2}

_TOP_KEYS = {
    "version", "name", "measurement", "policy", "min_tcb", "vmpl", "products", "signers", "binding",
    "pcrs", "pcr23_events", "lifetime_seconds", "require_quote", "checks",
}
_OPTIONAL_KEYS = {"name", "pcrs", "pcr23_events", "require_quote", "checks"}
_POLICY_KEYS = ("debug_allowed", "migrate_ma_allowed", "smt_allowed", "min_abi_major", "min_abi_minor")
_TCB_KEYS = ("bootloader", "tee", "snp", "microcode", "fmc")


E = TypeVar("E", bound=enum.Enum)


class Binding(str, enum.Enum):
    """How the vTPM's AK is bound to the SNP report (PROTOCOL.md, "Evidence binding")."""

    DIRECT = "direct"
    AZURE = "azure"
    #: The SVSM vTPM: the SVSM's own VMPL0 report carries the vTPM's EK (REPORT_DATA = SHA-512(nonce ||
    #: EK TPMT_PUBLIC)) and credential activation binds the AK to that EK. Its golden ``vmpl`` is 0 and its
    #: ``measurement`` the SVSM's launch MEASUREMENT (the SVSM and the firmware).
    SVSM = "svsm"

    @property
    def code(self) -> int:
        """The value in the canonical id: 0 direct, 1 azure, 2 svsm."""
        return _BINDING_CODES[self]


_BINDING_CODES = {Binding.DIRECT: 0, Binding.AZURE: 1, Binding.SVSM: 2}


@dataclass(frozen=True, slots=True)
class PolicyRules:
    """The guest-policy rules: what a report's POLICY field may allow, and the minimum ABI."""

    debug_allowed: bool
    migrate_ma_allowed: bool
    smt_allowed: bool
    min_abi_major: int
    min_abi_minor: int


def _malformed(path: str, message: str) -> ParseError:
    return ParseError(Reason.GOLDEN_MALFORMED, f"{path}: {message}", field=path)


def _obj(value: Any, path: str, keys: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(path, "must be an object")
    allowed = set(keys)
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise _malformed(path, f"unknown keys {unknown}")
    missing = sorted(allowed - set(optional) - set(value))
    if missing:
        raise _malformed(path, f"missing keys {missing}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _malformed(path, "must be true or false")
    return value


def _uint(value: Any, path: str, maximum: int, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _malformed(path, f"must be an integer from {minimum} to {maximum}")
    return value


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _hex(value: Any, path: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX_DIGITS.issuperset(value):
        raise _malformed(path, f"must be {2 * size} hex digits")
    return bytes.fromhex(value)


def _enum_list(value: Any, path: str, kind: type[E]) -> tuple[E, ...]:
    if not isinstance(value, list) or not value:
        raise _malformed(path, "must be a non-empty list")
    out: list[E] = []
    for i, item in enumerate(value):
        try:
            member = kind(item)
        except ValueError:
            raise _malformed(f"{path}[{i}]", f"must be one of {[m.value for m in kind]}") from None
        if member in out:
            raise _malformed(f"{path}[{i}]", f"{item!r} is listed twice")
        out.append(member)
    order = list(kind)
    return tuple(sorted(out, key=order.index))


@dataclass(frozen=True, slots=True)
class GoldenMeasurement:
    """A parsed, validated golden measurement (docs/formats.md, "Golden measurement").

    ``pcrs`` maps PCR index (SHA-256 bank) to its pinned value; it is stored sorted as pairs so the
    object stays immutable and hashable (:meth:`pinned_pcrs` gives a dict).
    """

    measurement: bytes
    policy: PolicyRules
    min_tcb: TcbVersion
    vmpl: int
    products: tuple[Product, ...]
    signers: tuple[SignerKind, ...]
    binding: Binding
    lifetime_seconds: int
    pcrs: tuple[tuple[int, bytes], ...] = ()
    pcr23_events: tuple[WorkloadEvent, ...] | None = None
    name: str | None = None
    #: Evidence must include a quote over the verifier's nonce: a bare report (of any age) is
    #: ``policy.quote_required``. An off-chain rule, outside the canonical id (on chain every
    #: registration carries a fresh quote).
    require_quote: bool = False
    #: Report checks (offchain.policy.checks), which the registry checks too; part of the canonical id.
    checks: ReportChecks = field(default_factory=ReportChecks)
    version: int = field(default=GOLDEN_VERSION)

    def __post_init__(self) -> None:
        # Normalise convenient inputs (a dict of PCRs, lists) into the immutable stored forms,
        # then validate through the same rules as a JSON document.
        if isinstance(self.pcrs, Mapping):
            object.__setattr__(self, "pcrs", tuple(sorted(self.pcrs.items())))
        object.__setattr__(self, "version", GOLDEN_VERSION if self.checks.is_empty() else GOLDEN_VERSION_CHECKS)
        object.__setattr__(self, "products", tuple(self.products))
        object.__setattr__(self, "signers", tuple(self.signers))
        if self.pcr23_events is not None:
            object.__setattr__(self, "pcr23_events", tuple(self.pcr23_events))
        GoldenMeasurement._validate(self.to_json())

    # --- JSON ------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> GoldenMeasurement:
        """Parse and validate a golden-measurement document; ParseError(golden.malformed) on any flaw."""
        if isinstance(data, (str, bytes)):
            if len(data) > MAX_DOCUMENT_BYTES:
                raise _malformed("$", "document too large")
            data = loads_bounded(data, Reason.GOLDEN_MALFORMED)
        return cls._validate(data)

    @classmethod
    def from_file(cls, path: Path) -> GoldenMeasurement:
        """The document in ``path`` (``-``: standard input); one byte over the limit is the parser's to refuse."""
        return cls.from_json(read_input(path, MAX_DOCUMENT_BYTES, refuse_larger=False))

    @classmethod
    def _validate(cls, data: Any) -> GoldenMeasurement:
        doc = _obj(data, "$", _TOP_KEYS, _OPTIONAL_KEYS)
        if doc["version"] not in (GOLDEN_VERSION, GOLDEN_VERSION_CHECKS) or isinstance(doc["version"], bool):
            raise _malformed("version", f"unsupported version {doc['version']!r} (expected {GOLDEN_VERSION}, or"
                             f" {GOLDEN_VERSION_CHECKS} with checks)")
        checks = ReportChecks() if "checks" not in doc else ReportChecks.from_json(doc["checks"])
        if (doc["version"] == GOLDEN_VERSION_CHECKS) != ("checks" in doc):
            raise _malformed("version", f"version {GOLDEN_VERSION_CHECKS} is the version of a document with checks,"
                             f" {GOLDEN_VERSION} of one without")
        name = doc.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_LENGTH):
            raise _malformed("name", f"must be a string of at most {MAX_NAME_LENGTH} characters")
        pol = _obj(doc["policy"], "policy", _POLICY_KEYS)
        policy = PolicyRules(
            debug_allowed=_bool(pol["debug_allowed"], "policy.debug_allowed"),
            migrate_ma_allowed=_bool(pol["migrate_ma_allowed"], "policy.migrate_ma_allowed"),
            smt_allowed=_bool(pol["smt_allowed"], "policy.smt_allowed"),
            min_abi_major=_uint(pol["min_abi_major"], "policy.min_abi_major", 0xFF),
            min_abi_minor=_uint(pol["min_abi_minor"], "policy.min_abi_minor", 0xFF),
        )
        tcb = _obj(doc["min_tcb"], "min_tcb", _TCB_KEYS)
        min_tcb = TcbVersion(
            bootloader=_uint(tcb["bootloader"], "min_tcb.bootloader", 0xFF),
            tee=_uint(tcb["tee"], "min_tcb.tee", 0xFF),
            snp=_uint(tcb["snp"], "min_tcb.snp", 0xFF),
            microcode=_uint(tcb["microcode"], "min_tcb.microcode", 0xFF),
            fmc=_uint(tcb["fmc"], "min_tcb.fmc", 0xFF),
        )
        pcrs: dict[int, bytes] = {}
        raw_pcrs = doc.get("pcrs", {})
        if not isinstance(raw_pcrs, dict):
            raise _malformed("pcrs", "must be an object of PCR index to hex value")
        for key, value in raw_pcrs.items():
            if not (isinstance(key, str) and key.isascii() and key.isdigit() and str(int(key)) == key):
                raise _malformed("pcrs", f"PCR key {key!r} is not a decimal index")
            index = int(key)
            if index >= PCR_COUNT:
                raise _malformed("pcrs", f"PCR {index} is outside 0..{PCR_COUNT - 1}")
            pcrs[index] = _hex(value, f"pcrs.{key}", PCR_SIZE)
        events: tuple[WorkloadEvent, ...] | None = None
        if "pcr23_events" in doc:
            raw_events = doc["pcr23_events"]
            if not isinstance(raw_events, list):
                raise _malformed("pcr23_events", "must be a list")
            parsed = []
            for i, raw_event in enumerate(raw_events):
                if isinstance(raw_event, dict):
                    _hex(raw_event.get("content_digest"), f"pcr23_events[{i}].content_digest", PCR_SIZE)
                try:
                    event = WorkloadEvent.from_json(raw_event)
                    event.digest  # noqa: B018 (validates kind, name length and digest size)
                except CvmAttestError as exc:
                    raise _malformed(f"pcr23_events[{i}]", exc.detail) from None
                parsed.append(event)
            events = tuple(parsed)
            if WORKLOAD_PCR not in pcrs:
                raise _malformed("pcr23_events", "given without pcrs.23 to replay to")
            if replay(events) != pcrs[WORKLOAD_PCR]:
                raise _malformed("pcr23_events", "does not replay to pcrs.23")
        binding = _binding(doc["binding"])
        vmpl = _uint(doc["vmpl"], "vmpl", 3)
        if binding is Binding.SVSM and vmpl != 0:
            # Only VMPL0 (the SVSM itself) can ask for the report that carries the vTPM's EK.
            raise _malformed("vmpl", "must be 0 with the svsm binding")
        golden = object.__new__(cls)
        values = {
            "measurement": _hex(doc["measurement"], "measurement", MEASUREMENT_SIZE),
            "policy": policy,
            "min_tcb": min_tcb,
            "vmpl": vmpl,
            "products": _enum_list(doc["products"], "products", Product),
            "signers": _enum_list(doc["signers"], "signers", SignerKind),
            "binding": binding,
            "lifetime_seconds": _uint(doc["lifetime_seconds"], "lifetime_seconds", (1 << 64) - 1, minimum=1),
            "pcrs": tuple(sorted(pcrs.items())),
            "pcr23_events": events,
            "name": name,
            "require_quote": _bool(doc.get("require_quote", False), "require_quote"),
            "checks": checks,
            "version": doc["version"],
        }
        for key, value in values.items():
            object.__setattr__(golden, key, value)
        return golden

    def to_json(self) -> dict[str, Any]:
        """The document as a JSON-able dict (keys as in docs/formats.md)."""
        doc: dict[str, Any] = {"version": self.version}
        if self.name is not None:
            doc["name"] = self.name
        doc.update(
            {
                "measurement": self.measurement.hex(),
                "policy": {
                    "debug_allowed": self.policy.debug_allowed,
                    "migrate_ma_allowed": self.policy.migrate_ma_allowed,
                    "smt_allowed": self.policy.smt_allowed,
                    "min_abi_major": self.policy.min_abi_major,
                    "min_abi_minor": self.policy.min_abi_minor,
                },
                "min_tcb": {k: getattr(self.min_tcb, k) for k in _TCB_KEYS},
                "vmpl": self.vmpl,
                "products": [p.value for p in self.products],
                "signers": [s.value for s in self.signers],
                "binding": self.binding.value,
            }
        )
        if self.pcrs:
            doc["pcrs"] = {str(i): v.hex() for i, v in self.pcrs}
        if self.pcr23_events is not None:
            doc["pcr23_events"] = [
                {"kind": e.kind, "name": e.name, "content_digest": e.content_digest.hex()} for e in self.pcr23_events
            ]
        doc["lifetime_seconds"] = self.lifetime_seconds
        if self.require_quote:
            doc["require_quote"] = True
        if not self.checks.is_empty():
            doc["checks"] = self.checks.to_json()
        return doc

    def dumps(self) -> str:
        """The document as indented JSON text."""
        return json.dumps(self.to_json(), indent=2) + "\n"

    # --- meaning ---------------------------------------------------------------------------

    def pinned_pcrs(self) -> dict[int, bytes]:
        """PCR index -> pinned SHA-256 value, ascending."""
        return dict(self.pcrs)

    def with_workload(self, events: Sequence[WorkloadEvent], *, name: str | None = None) -> GoldenMeasurement:
        """The same rules for another workload: PCR23 pinned to the replay of ``events`` and the
        event list replaced; measurement, policy, TCB, other PCRs and lifetime unchanged. This is how
        the golden measurement of a workload update is predicted before the update is applied."""
        pcrs = dict(self.pcrs)
        pcrs[WORKLOAD_PCR] = replay(events)
        return replace(
            self, pcrs=tuple(sorted(pcrs.items())), pcr23_events=tuple(events), name=self.name if name is None else name
        )

    def canonical_id(self) -> bytes:
        """The 32-byte id the registry computes (docs/formats.md, "Canonical id"): ``hashStruct(CvmGolden)``,
        or, with checks that can fail, ``hashStruct(CvmGoldenWithChecks)`` over it and the checks' hash."""
        rules = self.rules_hash()
        if not self.checks.checks_something():
            return rules
        return keccak256(GOLDEN_CHECKS_TYPEHASH + rules + self.checks.struct_hash())

    def rules_hash(self) -> bytes:
        """EIP-712 ``hashStruct(CvmGolden)``: the id of these rules without report checks."""
        products = sum(PRODUCT_BITS[p] for p in self.products)
        signers = sum(SIGNER_BITS[s] for s in self.signers)
        pcr_mask = sum(1 << i for i, _ in self.pcrs)
        pcr_values = b"".join(v for _, v in self.pcrs)
        words = [
            GOLDEN_TYPEHASH,
            keccak256(self.measurement),
            _word(self.binding.code),
            _word(self.vmpl),
            _word(products),
            _word(signers),
            _word(int(self.policy.debug_allowed)),
            _word(int(self.policy.migrate_ma_allowed)),
            _word(int(self.policy.smt_allowed)),
            _word(self.policy.min_abi_major),
            _word(self.policy.min_abi_minor),
            _word(self.min_tcb.bootloader),
            _word(self.min_tcb.tee),
            _word(self.min_tcb.snp),
            _word(self.min_tcb.microcode),
            _word(self.min_tcb.fmc),
            _word(pcr_mask),
            keccak256(pcr_values),
            _word(self.lifetime_seconds),
        ]
        return keccak256(b"".join(words))

    @classmethod
    def from_report(
        cls,
        report: SnpReport,
        product: Product,
        signer: SignerKind,
        binding: Binding | str,
        pcrs: Mapping[int, bytes] | None = None,
        events: Sequence[WorkloadEvent] | None = None,
        lifetime: int = 86400,
        *,
        name: str | None = None,
        allow_debug: bool = False,
        require_quote: bool = True,
    ) -> GoldenMeasurement:
        """Describe a running CVM exactly: its measurement, guest policy, ABI, reported TCB, VMPL.

        The agent's ``GET /golden-measurement`` serves this for an owner to review and publish.
        The rules are what the report shows, the minimum TCB is the reported TCB, and ``pcrs`` are
        pinned as given; ``events`` (the PCR23 workload log) must replay to ``pcrs[23]``.

        A report whose POLICY allows debugging (bit 19: the host can read and write the guest's
        memory) describes no CVM a golden measurement may accept: :class:`PolicyError`
        (``policy.debug_allowed``). ``allow_debug=True`` is the development escape hatch: the
        result says ``debug_allowed: true``, which the registry refuses to publish and every
        off-chain policy check refuses unless its caller also allows debug goldens
        (:func:`offchain.policy.check.policy_violations`, ``cvm-cli verify --allow-debug-golden``).

        ``require_quote`` (default true: a running CVM can always quote) makes a bare report, which
        proves no freshness, fail against the result with ``policy.quote_required``.
        """
        guest = report.guest_policy
        if guest.debug and not allow_debug:
            raise PolicyError(
                [Violation(Reason.POLICY_DEBUG_ALLOWED, "policy.debug_allowed", False, True)],
            )
        return cls(
            measurement=report.measurement,
            policy=PolicyRules(
                debug_allowed=bool(guest.debug),
                migrate_ma_allowed=bool(guest.migrate_ma),
                smt_allowed=bool(guest.smt),
                min_abi_major=guest.abi_major,
                min_abi_minor=guest.abi_minor,
            ),
            min_tcb=TcbVersion.from_raw(report.reported_tcb, product),
            vmpl=report.vmpl,
            products=(Product(product),),
            signers=(SignerKind(signer),),
            binding=Binding(binding),
            lifetime_seconds=lifetime,
            pcrs=tuple(sorted((pcrs or {}).items())),
            pcr23_events=tuple(events) if events is not None else None,
            name=name,
            require_quote=require_quote,
        )


def _binding(value: Any) -> Binding:
    try:
        return Binding(value)
    except ValueError:
        raise _malformed("binding", f"must be one of {[b.value for b in Binding]}") from None


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")
