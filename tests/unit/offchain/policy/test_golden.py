"""The golden-measurement document: strict parsing, its JSON Schema, and the canonical id."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from eth_abi import encode
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.abi.snp_report import Product, SignerKind, TcbVersion
from offchain.abi.workload import replay
from offchain.errors import ParseError, PolicyError, Reason
from offchain.policy.golden import GOLDEN_TYPEHASH, SCHEMA_FILE, Binding, GoldenMeasurement, PolicyRules
from tests.support.evidence import EVENTS, MEASUREMENT, dev_chain
from tests.support.snp_vectors import load_vector

PCR0 = bytes(range(32))
DOC: dict[str, Any] = {
    "version": 1,
    "name": "payments-cvm 2026-11",
    "measurement": MEASUREMENT.hex(),
    "policy": {
        "debug_allowed": False,
        "migrate_ma_allowed": False,
        "smt_allowed": True,
        "min_abi_major": 0,
        "min_abi_minor": 0,
    },
    "min_tcb": {"bootloader": 10, "tee": 0, "snp": 23, "microcode": 84, "fmc": 0},
    "vmpl": 0,
    "products": ["milan", "genoa", "turin"],
    "signers": ["vcek", "vlek"],
    "binding": "direct",
    "pcrs": {"0": PCR0.hex(), "23": replay(EVENTS).hex()},
    "pcr23_events": [
        {"kind": e.kind, "name": e.name, "content_digest": e.content_digest.hex()} for e in EVENTS
    ],
    "lifetime_seconds": 86400,
}
SCHEMA = jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text()))


def _hand_computed_id(doc: dict[str, Any]) -> bytes:
    """docs/formats.md "Canonical id", computed with eth_abi/eth_hash, not with offchain.abi.keccak."""
    typehash = keccak(
        b"CvmGolden(bytes measurement,uint8 binding,uint8 vmpl,uint8 products,uint8 signers,bool debugAllowed,"
        b"bool migrateMaAllowed,bool smtAllowed,uint8 minAbiMajor,uint8 minAbiMinor,uint8 minBootloader,"
        b"uint8 minTee,uint8 minSnp,uint8 minMicrocode,uint8 minFmc,uint32 pcrMask,bytes32[] pcrValues,uint64 lifetime)"
    )
    pinned = sorted((int(k), bytes.fromhex(v)) for k, v in doc.get("pcrs", {}).items())
    products = sum({"milan": 1, "genoa": 2, "turin": 4}[p] for p in doc["products"])
    signers = sum({"vcek": 1, "vlek": 2}[s] for s in doc["signers"])
    pol, tcb = doc["policy"], doc["min_tcb"]
    return keccak(
        encode(
            ["bytes32", "bytes32", "uint8", "uint8", "uint8", "uint8", "bool", "bool", "bool", "uint8", "uint8",
             "uint8", "uint8", "uint8", "uint8", "uint8", "uint32", "bytes32", "uint64"],
            [
                typehash,
                keccak(bytes.fromhex(doc["measurement"])),
                {"direct": 0, "azure": 1, "svsm": 2}[doc["binding"]],
                doc["vmpl"],
                products,
                signers,
                pol["debug_allowed"],
                pol["migrate_ma_allowed"],
                pol["smt_allowed"],
                pol["min_abi_major"],
                pol["min_abi_minor"],
                tcb["bootloader"],
                tcb["tee"],
                tcb["snp"],
                tcb["microcode"],
                tcb["fmc"],
                sum(1 << i for i, _ in pinned),
                keccak(b"".join(v for _, v in pinned)),
                doc["lifetime_seconds"],
            ],
        )
    )


def test_the_formats_md_document_parses_and_round_trips() -> None:
    golden = GoldenMeasurement.from_json(json.dumps(DOC))
    assert golden.products == (Product.MILAN, Product.GENOA, Product.TURIN)
    assert golden.pinned_pcrs() == {0: PCR0, 23: replay(EVENTS)}
    assert golden.to_json() == DOC
    assert GoldenMeasurement.from_json(golden.dumps()) == golden
    SCHEMA.validate(DOC)


def test_canonical_id_equals_the_hand_computed_one() -> None:
    golden = GoldenMeasurement.from_json(DOC)
    assert golden.canonical_id() == _hand_computed_id(DOC)
    assert GOLDEN_TYPEHASH == keccak(
        b"CvmGolden(bytes measurement,uint8 binding,uint8 vmpl,uint8 products,uint8 signers,bool debugAllowed,"
        b"bool migrateMaAllowed,bool smtAllowed,uint8 minAbiMajor,uint8 minAbiMinor,uint8 minBootloader,"
        b"uint8 minTee,uint8 minSnp,uint8 minMicrocode,uint8 minFmc,uint32 pcrMask,bytes32[] pcrValues,uint64 lifetime)"
    )
    # No PCRs pinned: mask 0 and keccak of the empty string.
    bare = {k: v for k, v in DOC.items() if k not in ("pcrs", "pcr23_events")}
    assert GoldenMeasurement.from_json(bare).canonical_id() == _hand_computed_id(bare)


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return out


_DELETE = object()

ID_CHANGES = [
    ("measurement", "ff" * 48),
    ("binding", "azure"),
    ("vmpl", 1),
    ("products", ["genoa"]),
    ("signers", ["vcek"]),
    ("policy.debug_allowed", True),
    ("policy.migrate_ma_allowed", True),
    ("policy.smt_allowed", False),
    ("policy.min_abi_major", 1),
    ("policy.min_abi_minor", 55),
    ("min_tcb.bootloader", 11),
    ("min_tcb.tee", 1),
    ("min_tcb.snp", 24),
    ("min_tcb.microcode", 85),
    ("min_tcb.fmc", 1),
    ("pcrs.0", "00" * 32),
    ("pcrs.7", "11" * 32),
    ("lifetime_seconds", 3600),
]


@pytest.mark.parametrize(("path", "value"), ID_CHANGES, ids=[p for p, _ in ID_CHANGES])
def test_every_deciding_field_changes_the_id(path: str, value: Any) -> None:
    changed = _set(DOC, path, value)
    a, b = GoldenMeasurement.from_json(DOC), GoldenMeasurement.from_json(changed)
    assert a.canonical_id() != b.canonical_id()
    assert b.canonical_id() == _hand_computed_id(changed)


def test_name_and_events_are_not_part_of_the_id() -> None:
    other = _set(_set(DOC, "name", "renamed"), "pcr23_events", _DELETE)
    assert GoldenMeasurement.from_json(other).canonical_id() == GoldenMeasurement.from_json(DOC).canonical_id()


def test_product_order_does_not_matter() -> None:
    reordered = _set(DOC, "products", ["turin", "milan", "genoa"])
    assert GoldenMeasurement.from_json(reordered) == GoldenMeasurement.from_json(DOC)


MALFORMED = [
    ("not-json", None, "{"),
    ("not-an-object", None, "[]"),
    ("version-2", ("version", 2), None),
    ("version-true", ("version", True), None),
    ("missing-measurement", ("measurement", _DELETE), None),
    ("missing-policy", ("policy", _DELETE), None),
    ("missing-min-tcb-field", ("min_tcb.fmc", _DELETE), None),
    ("missing-debug-rule", ("policy.debug_allowed", _DELETE), None),
    ("missing-lifetime", ("lifetime_seconds", _DELETE), None),
    ("unknown-key", ("extra", 1), None),
    ("unknown-policy-key", ("policy.allow_everything", True), None),
    ("short-measurement", ("measurement", "00" * 47), None),
    ("non-hex-measurement", ("measurement", "zz" * 48), None),
    ("spaced-measurement", ("measurement", "0 " * 48), None),
    ("debug-as-int", ("policy.debug_allowed", 0), None),
    ("abi-too-big", ("policy.min_abi_major", 256), None),
    ("tcb-negative", ("min_tcb.snp", -1), None),
    ("tcb-as-bool", ("min_tcb.snp", True), None),
    ("vmpl-4", ("vmpl", 4), None),
    ("no-products", ("products", []), None),
    ("unknown-product", ("products", ["rome"]), None),
    ("duplicate-product", ("products", ["milan", "milan"]), None),
    ("unknown-signer", ("signers", ["vcek", "ask"]), None),
    ("unknown-binding", ("binding", "tdx"), None),
    ("pcr-24", ("pcrs.24", "00" * 32), None),
    ("pcr-leading-zero", ("pcrs.07", "00" * 32), None),
    ("pcr-short", ("pcrs.0", "00" * 31), None),
    ("pcrs-not-object", ("pcrs", ["00" * 32]), None),
    ("lifetime-zero", ("lifetime_seconds", 0), None),
    ("lifetime-too-big", ("lifetime_seconds", 1 << 64), None),
    ("events-not-list", ("pcr23_events", {}), None),
    ("event-bad-kind", ("pcr23_events", [{"kind": "secret", "name": "x", "content_digest": "00" * 32}]), None),
]
# Rules the JSON Schema cannot express (replay); the parser still rejects these.
REPLAY_ONLY = [
    ("events-without-pcr23", ("pcrs.23", _DELETE), None),
    ("events-do-not-replay", ("pcrs.23", "00" * 32), None),
]


@pytest.mark.parametrize(("case", "change", "text"), MALFORMED + REPLAY_ONLY, ids=[c for c, _, _ in MALFORMED + REPLAY_ONLY])
def test_malformed_documents_are_refused(case: str, change: tuple[str, Any] | None, text: str | None) -> None:
    data: Any = text if change is None else _set(DOC, *change)
    with pytest.raises(ParseError) as exc:
        GoldenMeasurement.from_json(data)
    assert exc.value.reason is Reason.GOLDEN_MALFORMED
    if change is not None and case not in {c for c, _, _ in REPLAY_ONLY}:
        assert not SCHEMA.is_valid(data), f"the schema accepts {case}"


def test_the_schema_ships_in_the_package() -> None:
    assert SCHEMA_FILE.parent.name == "policy" and SCHEMA_FILE.is_file()


def test_unreadable_golden_file(tmp_path) -> None:
    with pytest.raises(ParseError) as exc:
        GoldenMeasurement.from_file(tmp_path / "missing.json")
    assert exc.value.reason is Reason.INPUT_UNREADABLE


def test_constructor_validates_like_the_parser() -> None:
    golden = GoldenMeasurement.from_json(DOC)
    with pytest.raises(ParseError) as exc:
        GoldenMeasurement(
            measurement=b"short",
            policy=golden.policy,
            min_tcb=golden.min_tcb,
            vmpl=0,
            products=(Product.GENOA,),
            signers=(SignerKind.VCEK,),
            binding=Binding.DIRECT,
            lifetime_seconds=60,
        )
    assert exc.value.reason is Reason.GOLDEN_MALFORMED
    built = GoldenMeasurement(
        measurement=MEASUREMENT,
        policy=PolicyRules(False, False, True, 0, 0),
        min_tcb=TcbVersion(10, 0, 23, 84),
        vmpl=0,
        products=[Product.GENOA],
        signers=[SignerKind.VCEK],
        binding=Binding.DIRECT,
        lifetime_seconds=60,
        pcrs={0: PCR0},
    )
    assert built.pcrs == ((0, PCR0),) and GoldenMeasurement.from_json(built.to_json()) == built


def test_from_report_describes_the_running_cvm() -> None:
    chain = dev_chain(Product.TURIN, SignerKind.VCEK)
    report = chain.sign(chain.report_template(measurement=MEASUREMENT, policy=0x31F05, vmpl=2))
    pcrs = {0: PCR0, 23: replay(EVENTS)}
    golden = GoldenMeasurement.from_report(
        report, Product.TURIN, SignerKind.VCEK, "direct", pcrs, EVENTS, 3600, name="from a report"
    )
    assert golden.measurement == MEASUREMENT and golden.vmpl == 2
    assert golden.policy == PolicyRules(
        debug_allowed=False, migrate_ma_allowed=False, smt_allowed=True, min_abi_major=0x1F, min_abi_minor=0x05
    )
    assert golden.min_tcb == chain.tcb and golden.products == (Product.TURIN,)
    assert golden.pcr23_events == EVENTS and golden.lifetime_seconds == 3600
    with pytest.raises(ParseError) as exc:  # events must replay to the PCR23 given
        GoldenMeasurement.from_report(report, Product.TURIN, SignerKind.VCEK, "direct", {23: PCR0}, EVENTS, 3600)
    assert exc.value.reason is Reason.GOLDEN_MALFORMED


DEBUG_POLICY = 0x31F05 | 1 << 19  # the report above, with DEBUG (bit 19): the host can read the guest's memory


def test_from_report_refuses_a_debug_guest() -> None:
    chain = dev_chain(Product.TURIN, SignerKind.VCEK)
    report = chain.sign(chain.report_template(measurement=MEASUREMENT, policy=DEBUG_POLICY))
    with pytest.raises(PolicyError) as exc:
        GoldenMeasurement.from_report(report, Product.TURIN, SignerKind.VCEK, "direct")
    assert exc.value.reason is Reason.POLICY_DEBUG_ALLOWED and exc.value.reasons == [Reason.POLICY_DEBUG_ALLOWED]


def test_from_report_of_a_debug_guest_only_with_the_escape_hatch() -> None:
    chain = dev_chain(Product.TURIN, SignerKind.VCEK)
    report = chain.sign(chain.report_template(measurement=MEASUREMENT, policy=DEBUG_POLICY))
    golden = GoldenMeasurement.from_report(report, Product.TURIN, SignerKind.VCEK, "direct", allow_debug=True)
    assert golden.policy.debug_allowed  # what the guest is: every policy check refuses it by default
    not_debug = chain.sign(chain.report_template(measurement=MEASUREMENT, policy=0x31F05))
    described = GoldenMeasurement.from_report(not_debug, Product.TURIN, SignerKind.VCEK, "direct", allow_debug=True)
    assert not described.policy.debug_allowed  # the flag allows a debug report, it does not make one


def test_from_report_refuses_the_real_debug_report(vectors: Path) -> None:
    v = load_vector(vectors, "snp/milan-vcek-v2-gosevguest")  # POLICY 0xb0000: DEBUG set
    assert v.report.guest_policy.debug
    with pytest.raises(PolicyError) as exc:
        GoldenMeasurement.from_report(v.report, Product.MILAN, SignerKind.VCEK, "direct")
    assert exc.value.reason is Reason.POLICY_DEBUG_ALLOWED


golden_docs = st.fixed_dictionaries(
    {
        "version": st.just(1),
        "measurement": st.binary(min_size=48, max_size=48).map(bytes.hex),
        "policy": st.fixed_dictionaries(
            {
                "debug_allowed": st.booleans(),
                "migrate_ma_allowed": st.booleans(),
                "smt_allowed": st.booleans(),
                "min_abi_major": st.integers(0, 255),
                "min_abi_minor": st.integers(0, 255),
            }
        ),
        "min_tcb": st.fixed_dictionaries({k: st.integers(0, 255) for k in ("bootloader", "tee", "snp", "microcode", "fmc")}),
        "vmpl": st.integers(0, 3),
        "products": st.lists(st.sampled_from(["milan", "genoa", "turin"]), min_size=1, max_size=3, unique=True),
        "signers": st.lists(st.sampled_from(["vcek", "vlek"]), min_size=1, max_size=2, unique=True),
        "binding": st.sampled_from(["direct", "azure"]),
        "lifetime_seconds": st.integers(1, (1 << 64) - 1),
    },
    optional={
        "name": st.text(max_size=40),
        "pcrs": st.dictionaries(st.integers(0, 22).map(str), st.binary(min_size=32, max_size=32).map(bytes.hex), max_size=5),
    },
)


@settings(max_examples=150, deadline=None)
@given(golden_docs)
def test_round_trip_and_id_for_any_valid_document(doc: dict[str, Any]) -> None:
    SCHEMA.validate(doc)
    golden = GoldenMeasurement.from_json(json.dumps(doc))
    again = GoldenMeasurement.from_json(golden.to_json())
    assert again == golden
    assert golden.canonical_id() == _hand_computed_id(doc)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8), lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20))
def test_random_json_gives_only_golden_malformed(value: Any) -> None:
    with pytest.raises(ParseError) as exc:
        GoldenMeasurement.from_json(json.dumps(value))
    assert exc.value.reason is Reason.GOLDEN_MALFORMED


def test_deeply_nested_json_is_refused_before_parsing() -> None:
    with pytest.raises(ParseError) as exc:
        GoldenMeasurement.from_json("[" * 100_000)
    assert exc.value.reason is Reason.GOLDEN_MALFORMED


# --- the svsm binding ------------------------------------------------------------------------------------


def test_svsm_binding_has_code_2_in_the_canonical_id() -> None:
    doc = {**copy.deepcopy(DOC), "binding": "svsm"}
    golden = GoldenMeasurement.from_json(doc)
    assert golden.binding is Binding.SVSM and Binding.SVSM.code == 2
    assert golden.canonical_id() == _hand_computed_id(doc)
    assert SCHEMA.is_valid(doc)
    assert golden.canonical_id() != GoldenMeasurement.from_json(DOC).canonical_id()


@pytest.mark.parametrize("vmpl", [1, 2, 3])
def test_svsm_binding_needs_vmpl_0(vmpl: int) -> None:
    """Only the SVSM (VMPL0) asks for the report that carries the vTPM's EK; the schema says the same."""
    doc = {**copy.deepcopy(DOC), "binding": "svsm", "vmpl": vmpl}
    with pytest.raises(ParseError) as info:
        GoldenMeasurement.from_json(doc)
    assert info.value.reason is Reason.GOLDEN_MALFORMED and info.value.context["field"] == "vmpl"
    assert not SCHEMA.is_valid(doc)
    # The same VMPL is fine for the other bindings (a guest OS at VMPL > 0).
    assert GoldenMeasurement.from_json({**doc, "binding": "direct"}).vmpl == vmpl
