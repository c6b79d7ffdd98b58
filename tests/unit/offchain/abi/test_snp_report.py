"""SEV-SNP ATTESTATION_REPORT parsing (AMD SEV-SNP ABI, Table 23), TCB_VERSION and guest policy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offchain.abi.snp_report import (
    REPORT_SIZE,
    SIGNED_SIZE,
    SUPPORTED_VERSIONS,
    GuestPolicy,
    Product,
    SignerKind,
    SnpReport,
    TcbVersion,
)
from offchain.errors import ParseError, Reason
from tests.unit.offchain.abi.cases import REPORT_DIRS, expected, product_of

# The ABI table, written out independently of the module: (field, offset, width in bytes).
SPEC_OFFSETS = [
    ("version", 0x000, 4),
    ("guest_svn", 0x004, 4),
    ("policy", 0x008, 8),
    ("family_id", 0x010, 16),
    ("image_id", 0x020, 16),
    ("vmpl", 0x030, 4),
    ("signature_algo", 0x034, 4),
    ("current_tcb", 0x038, 8),
    ("platform_info", 0x040, 8),
    ("flags", 0x048, 4),
    ("report_data", 0x050, 64),
    ("measurement", 0x090, 48),
    ("host_data", 0x0C0, 32),
    ("id_key_digest", 0x0E0, 48),
    ("author_key_digest", 0x110, 48),
    ("report_id", 0x140, 32),
    ("report_id_ma", 0x160, 32),
    ("reported_tcb", 0x180, 8),
    ("cpuid_fam_id", 0x188, 1),
    ("cpuid_mod_id", 0x189, 1),
    ("cpuid_step", 0x18A, 1),
    ("chip_id", 0x1A0, 64),
    ("committed_tcb", 0x1E0, 8),
    ("current_build", 0x1E8, 1),
    ("current_minor", 0x1E9, 1),
    ("current_major", 0x1EA, 1),
    ("committed_build", 0x1EC, 1),
    ("committed_minor", 0x1ED, 1),
    ("committed_major", 0x1EE, 1),
    ("launch_tcb", 0x1F0, 8),
    ("launch_mit_vector", 0x1F8, 8),
    ("current_mit_vector", 0x200, 8),
]
BYTE_FIELDS = {
    "family_id",
    "image_id",
    "report_data",
    "measurement",
    "host_data",
    "id_key_digest",
    "author_key_digest",
    "report_id",
    "report_id_ma",
    "chip_id",
}
# Fields whose value is constrained by the parser and that the offset test must keep valid.
CONSTRAINED = {"version", "signature_algo", "policy", "flags"}

# Reserved byte ranges of a version-5 report, one table row each (ABI Table 23).
RESERVED = [
    pytest.param(0x04C, 0x050, id="0x04C-after-flags"),
    pytest.param(0x18B, 0x1A0, id="0x18B-after-cpuid"),
    pytest.param(0x1EB, 0x1EC, id="0x1EB-current-version-pad"),
    pytest.param(0x1EF, 0x1F0, id="0x1EF-committed-version-pad"),
    pytest.param(0x208, 0x2A0, id="0x208-before-signature"),
    pytest.param(0x2A0 + 48, 0x2E8, id="r-high-bytes"),
    pytest.param(0x2E8 + 48, 0x330, id="s-high-bytes"),
    pytest.param(0x330, 0x4A0, id="signature-tail"),
]


def sample_report(**fields: object) -> SnpReport:
    base: dict[str, object] = dict(
        version=5,
        guest_svn=7,
        policy=0x30000,
        vmpl=0,
        current_tcb=0x541900000000000A,
        reported_tcb=0x541900000000000A,
        committed_tcb=0x541900000000000A,
        launch_tcb=0x541900000000000A,
        platform_info=0x25,
        report_data=bytes(range(64)),
        measurement=bytes(range(100, 148)),
        chip_id=bytes(range(1, 65)),
        cpuid_fam_id=0x19,
        cpuid_mod_id=0x11,
        cpuid_step=1,
        current_major=1,
        current_minor=55,
        current_build=43,
        committed_major=1,
        committed_minor=55,
        committed_build=43,
        launch_mit_vector=1,
        current_mit_vector=1,
        signature_r=(1 << 383) | 12345,
        signature_s=(1 << 380) | 678,
    )
    base.update(fields)
    return SnpReport.build(**base)


def set_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + value.to_bytes(4, "little") + data[offset + 4 :]


# --- real reports ----------------------------------------------------------------------------


@pytest.mark.vectors
@pytest.mark.parametrize("case", REPORT_DIRS)
def test_real_report_decodes_to_expected_fields(vectors: Path, case: str) -> None:
    raw = (vectors / case / "report.bin").read_bytes()
    report = SnpReport.from_bytes(raw)
    product = product_of(vectors, case)
    want = expected(vectors)[case]["report"]
    got = report.to_json(product)
    assert {key: got[key] for key in want} == want
    assert report.to_bytes() == raw
    assert report.signed_bytes() == raw[:SIGNED_SIZE]
    assert report.tcb("reported", product).to_raw() == int(want["reported_tcb"]["raw"], 16)
    assert report.signing_key is (SignerKind.VLEK if want["signing_key"] else SignerKind.VCEK)


@pytest.mark.vectors
@pytest.mark.parametrize("case", REPORT_DIRS)
def test_real_report_product_hint_agrees_with_its_chain(vectors: Path, case: str) -> None:
    report = SnpReport.from_bytes((vectors / case / "report.bin").read_bytes())
    hint = report.product_hint()
    if report.version >= 3:
        assert hint is product_of(vectors, case)
    else:
        assert hint is None


@pytest.mark.vectors
@pytest.mark.parametrize("case", REPORT_DIRS)
def test_real_report_with_one_reserved_byte_set_is_rejected(vectors: Path, case: str) -> None:
    raw = bytearray((vectors / case / "report.bin").read_bytes())
    raw[0x19F] = 0x01  # last byte of the reserved range after CPUID_STEP
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(bytes(raw))
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


@pytest.mark.vectors
def test_turin_report_decodes_fmc_layout(vectors: Path) -> None:
    report = SnpReport.from_bytes((vectors / "snp/turin-vcek-v5-oak/report.bin").read_bytes())
    tcb = report.tcb("reported", Product.TURIN)
    assert (tcb.fmc, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode) == (0, 1, 0, 2, 71)
    # The same u64 read with the Milan layout has bytes in Milan's reserved range.
    with pytest.raises(ParseError) as exc:
        report.tcb("reported", Product.MILAN)
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


# --- layout ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "offset", "width"), SPEC_OFFSETS, ids=[row[0] for row in SPEC_OFFSETS])
def test_each_field_sits_at_its_spec_offset(name: str, offset: int, width: int) -> None:
    value: int | bytes
    if name in CONSTRAINED:
        value = {"version": 3, "signature_algo": 1, "policy": 0x1B0002, "flags": 0b111}[name]
    elif name in BYTE_FIELDS:
        value = bytes((0xA0 + i) % 256 for i in range(width))
    else:
        value = (1 << (8 * width)) - 3
    extra = {"launch_mit_vector": 0, "current_mit_vector": 0} if name == "version" else {}
    report = sample_report(**{name: value}, **extra)
    raw = report.to_bytes()
    encoded = value if isinstance(value, bytes) else value.to_bytes(width, "little")
    assert raw[offset : offset + width] == encoded
    assert getattr(SnpReport.from_bytes(raw), name) == value


def test_signature_components_are_72_byte_little_endian_fields() -> None:
    report = sample_report(signature_r=0x0102, signature_s=0x0304)
    raw = report.to_bytes()
    assert raw[0x2A0:0x2A2] == b"\x02\x01" and not any(raw[0x2A2:0x2E8])
    assert raw[0x2E8:0x2EA] == b"\x04\x03" and not any(raw[0x2EA:0x4A0])


def test_signed_bytes_are_the_first_0x2a0_bytes() -> None:
    report = sample_report()
    assert report.signed_bytes() == report.to_bytes()[:0x2A0]
    assert len(report.signed_bytes()) == SIGNED_SIZE


def test_build_defaults_are_a_valid_zero_report() -> None:
    report = SnpReport.build()
    assert (report.version, report.signature_algo, report.policy) == (5, 1, 0x30000)
    assert SnpReport.from_bytes(report.to_bytes()) == report
    assert len(report.to_bytes()) == REPORT_SIZE


# --- negative twins: structure ---------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, REPORT_SIZE - 1, REPORT_SIZE + 1, 2 * REPORT_SIZE])
def test_wrong_length_is_rejected(length: int) -> None:
    data = (sample_report().to_bytes() * 2)[:length]
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(data)
    assert exc.value.reason is Reason.SNP_REPORT_LENGTH


def test_exact_length_is_accepted() -> None:
    assert SnpReport.from_bytes(sample_report().to_bytes()).version == 5


@pytest.mark.parametrize("version", [0, 1, 4, 6, 0xFFFFFFFF])
def test_unsupported_version_is_rejected(version: int) -> None:
    data = set_u32(sample_report(version=3, launch_mit_vector=0, current_mit_vector=0).to_bytes(), 0, version)
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(data)
    assert exc.value.reason is Reason.SNP_REPORT_VERSION


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_supported_versions_are_accepted(version: int) -> None:
    fields: dict[str, int] = {"version": version}
    if version < 5:
        fields.update(launch_mit_vector=0, current_mit_vector=0)
    if version < 3:
        fields.update(cpuid_fam_id=0, cpuid_mod_id=0, cpuid_step=0)
    assert SnpReport.from_bytes(sample_report(**fields).to_bytes()).version == version


@pytest.mark.parametrize("algo", [0, 2, 0x100])
def test_unknown_signature_algorithm_is_rejected(algo: int) -> None:
    data = set_u32(sample_report().to_bytes(), 0x34, algo)
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(data)
    assert exc.value.reason is Reason.SNP_REPORT_SIG_ALGO


@pytest.mark.parametrize(("start", "end"), RESERVED)
@pytest.mark.parametrize("where", ["first", "last"])
def test_each_reserved_range_must_be_zero(start: int, end: int, where: str) -> None:
    data = bytearray(sample_report().to_bytes())
    data[start if where == "first" else end - 1] = 0x80
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(bytes(data))
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


def test_cpuid_bytes_must_be_zero_in_version_2() -> None:
    v2 = sample_report(version=2, cpuid_fam_id=0, cpuid_mod_id=0, cpuid_step=0, launch_mit_vector=0, current_mit_vector=0)
    data = bytearray(v2.to_bytes())
    assert SnpReport.from_bytes(bytes(data)) == v2
    data[0x189] = 0x11
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(bytes(data))
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("offset", [0x1F8, 0x207], ids=["launch_mit_vector", "current_mit_vector-high"])
def test_mitigation_vectors_must_be_zero_before_version_5(version: int, offset: int) -> None:
    data = bytearray(sample_report(version=5).to_bytes())
    data[0:4] = version.to_bytes(4, "little")
    data[0x188:0x18B] = bytes(3) if version == 2 else data[0x188:0x18B]
    data[0x1F8:0x208] = bytes(16)
    assert SnpReport.from_bytes(bytes(data)).version == version
    data[offset] = 1
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(bytes(data))
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


@pytest.mark.parametrize(("code", "kind"), [(0, SignerKind.VCEK), (1, SignerKind.VLEK)])
def test_signing_key_field_decodes(code: int, kind: SignerKind) -> None:
    assert sample_report(flags=code << 2).signing_key is kind


@pytest.mark.parametrize("code", [2, 3, 4, 5, 6, 7])
def test_undefined_signing_key_is_rejected_at_parse_time(code: int) -> None:
    data = set_u32(sample_report().to_bytes(), 0x48, code << 2)
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(data)
    assert exc.value.reason is Reason.SNP_REPORT_MALFORMED


@pytest.mark.parametrize("bit", [5, 16, 31])
def test_reserved_flag_bits_are_rejected(bit: int) -> None:
    data = set_u32(sample_report().to_bytes(), 0x48, 1 << bit)
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(data)
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


def test_flag_bits_decode() -> None:
    report = sample_report(flags=0b111)
    assert report.author_key_en and report.mask_chip_key and report.signing_key is SignerKind.VLEK
    plain = sample_report(flags=0)
    assert not plain.author_key_en and not plain.mask_chip_key and plain.signing_key is SignerKind.VCEK


@pytest.mark.parametrize(
    "policy",
    [pytest.param(0x10000, id="bit17-clear"), pytest.param(0x30000 | 1 << 26, id="bit26"), pytest.param(0x30000 | 1 << 63, id="bit63")],
)
def test_malformed_guest_policy_is_rejected(policy: int) -> None:
    data = bytearray(sample_report().to_bytes())
    data[0x08:0x10] = policy.to_bytes(8, "little")
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes(bytes(data))
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


def test_build_rejects_unknown_fields_and_wrong_widths() -> None:
    with pytest.raises(ParseError) as exc:
        SnpReport.build(nonsense=1)
    assert exc.value.reason is Reason.INPUT_INVALID
    with pytest.raises(ParseError) as exc:
        SnpReport.build(measurement=bytes(47))
    assert exc.value.reason is Reason.SNP_REPORT_MALFORMED
    with pytest.raises(ParseError) as exc:
        SnpReport.build(vmpl=1 << 32)
    assert exc.value.reason is Reason.SNP_REPORT_MALFORMED
    with pytest.raises(ParseError) as exc:
        SnpReport.build(signature_r=1 << 384)
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


def test_replace_keeps_the_invariants() -> None:
    report = sample_report()
    assert report.replace(vmpl=2).vmpl == 2
    with pytest.raises(ParseError) as exc:
        report.replace(version=4)
    assert exc.value.reason is Reason.SNP_REPORT_VERSION


def test_non_bytes_input_is_a_typed_error() -> None:
    with pytest.raises(ParseError) as exc:
        SnpReport.from_bytes("not bytes")  # type: ignore[arg-type]
    assert exc.value.reason is Reason.SNP_REPORT_MALFORMED


# --- decoded views ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fam", "mod", "product"),
    [
        (0x19, 0x01, Product.MILAN),
        (0x19, 0x11, Product.GENOA),
        (0x19, 0xA0, Product.GENOA),
        (0x1A, 0x02, Product.TURIN),
        (0x1A, 0x11, Product.TURIN),
        (0x19, 0x21, None),
        (0x17, 0x31, None),
    ],
)
def test_product_hint_from_cpuid(fam: int, mod: int, product: Product | None) -> None:
    assert sample_report(cpuid_fam_id=fam, cpuid_mod_id=mod).product_hint() is product


def test_tcb_by_name() -> None:
    report = sample_report(current_tcb=0x0100000000000002, reported_tcb=0x0200000000000001)
    assert report.tcb("current", Product.GENOA).bootloader == 2
    assert report.tcb("reported", Product.GENOA).microcode == 2
    with pytest.raises(ParseError) as exc:
        report.tcb("future", Product.GENOA)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_to_json_shows_version_specific_fields_only_when_defined() -> None:
    v5 = sample_report().to_json(Product.GENOA)
    assert v5["cpuid_mod_id"] == "0x11" and v5["launch_mit_vector"] == "0x1"
    assert v5["reported_tcb"] == {"bootloader": 10, "tee": 0, "snp": 25, "microcode": 84, "raw": "0x541900000000000a"}
    v2 = sample_report(
        version=2, cpuid_fam_id=0, cpuid_mod_id=0, cpuid_step=0, launch_mit_vector=0, current_mit_vector=0
    ).to_json()
    assert "cpuid_fam_id" not in v2 and "launch_mit_vector" not in v2
    assert v2["reported_tcb"] == {"raw": "0x541900000000000a"}


def test_guest_policy_view() -> None:
    policy = sample_report(policy=0xB001F).guest_policy
    assert policy == GuestPolicy(abi_minor=0x1F, abi_major=0, smt=True, debug=True)
    assert policy.to_raw() == 0xB001F


# --- TCB_VERSION -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "product", "fields"),
    [
        (0x541900000000000A, Product.GENOA, (10, 0, 25, 84, 0)),
        (0xDB18000000000004, Product.MILAN, (4, 0, 24, 219, 0)),
        (0x4700000002000100, Product.TURIN, (1, 0, 2, 71, 0)),
        (0x4700000002000105, Product.TURIN, (1, 0, 2, 71, 5)),
    ],
)
def test_tcb_layout_per_product(raw: int, product: Product, fields: tuple[int, ...]) -> None:
    tcb = TcbVersion.from_raw(raw, product)
    assert (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode, tcb.fmc) == fields
    assert tcb.to_raw() == raw
    assert tcb.to_json()["raw"] == f"{raw:#018x}"
    assert ("fmc" in tcb.to_json()) is (product is Product.TURIN)


@pytest.mark.parametrize(
    ("raw", "product"),
    [
        (0x0000000100000000, Product.MILAN),
        (0x000000FF00000000, Product.GENOA),
        (0x0001000000000000, Product.TURIN),
        (0x0000000100000000, Product.TURIN),
    ],
)
def test_tcb_reserved_bytes_are_rejected(raw: int, product: Product) -> None:
    with pytest.raises(ParseError) as exc:
        TcbVersion.from_raw(raw, product)
    assert exc.value.reason is Reason.SNP_REPORT_RESERVED


def test_tcb_equality_ignores_the_layout_it_came_from() -> None:
    assert TcbVersion(1, 2, 3, 4) == TcbVersion(1, 2, 3, 4, product=Product.MILAN)
    assert TcbVersion(1, 2, 3, 4) != TcbVersion(1, 2, 3, 5)


def test_tcb_rejects_out_of_range_values_and_fmc_outside_turin() -> None:
    with pytest.raises(ParseError) as exc:
        TcbVersion(256, 0, 0, 0)
    assert exc.value.reason is Reason.INPUT_INVALID
    with pytest.raises(ParseError) as exc:
        TcbVersion(1, 0, 0, 0, fmc=1, product=Product.GENOA)
    assert exc.value.reason is Reason.INPUT_INVALID
    with pytest.raises(ParseError) as exc:
        TcbVersion(1, 0, 0, 0, fmc=1).to_raw(Product.MILAN)
    assert exc.value.reason is Reason.INPUT_INVALID
    with pytest.raises(ParseError) as exc:
        TcbVersion(1, 0, 0, 0).to_raw()
    assert exc.value.reason is Reason.INPUT_INVALID
    assert TcbVersion(1, 0, 0, 0, fmc=1).to_raw(Product.TURIN) == 0x0000000000000101


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(
    product=st.sampled_from(list(Product)),
    values=st.tuples(*[st.integers(0, 255)] * 5),
)
def test_tcb_round_trip(product: Product, values: tuple[int, int, int, int, int]) -> None:
    bl, tee, snp, ucode, fmc = values
    tcb = TcbVersion(bl, tee, snp, ucode, fmc if product is Product.TURIN else 0, product=product)
    assert TcbVersion.from_raw(tcb.to_raw(), product) == tcb


# --- guest policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (0x30000, GuestPolicy(smt=True)),
        (0x3001F, GuestPolicy(abi_minor=0x1F, smt=True)),
        (0xB0000, GuestPolicy(smt=True, debug=True)),
        (0x20000, GuestPolicy(smt=False)),
        (0x1E0201, GuestPolicy(abi_minor=1, abi_major=2, smt=False, migrate_ma=True, debug=True, single_socket=True)),
    ],
)
def test_guest_policy_bits(raw: int, decoded: GuestPolicy) -> None:
    assert GuestPolicy.from_raw(raw) == decoded
    assert decoded.to_raw() == raw


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.integers(0, (1 << 26) - 1))
def test_guest_policy_round_trip(raw: int) -> None:
    raw |= 1 << 17
    assert GuestPolicy.from_raw(raw).to_raw() == raw


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.integers(0, (1 << 64) - 1))
def test_guest_policy_random_u64_gives_a_policy_or_a_typed_error(raw: int) -> None:
    try:
        policy = GuestPolicy.from_raw(raw)
    except ParseError as exc:
        assert exc.reason is Reason.SNP_REPORT_RESERVED
        assert not raw >> 17 & 1 or raw >> 26
    else:
        assert policy.to_raw() == raw


# --- product names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "product"),
    [
        ("Milan-B0", Product.MILAN),
        ("Milan", Product.MILAN),
        ("milan", Product.MILAN),
        ("SEV-Genoa", Product.GENOA),
        ("ARK-Turin", Product.TURIN),
        ("SEV-VLEK-Milan", Product.MILAN),
        ("GENOA", Product.GENOA),
        (" Turin ", Product.TURIN),
    ],
)
def test_product_from_name(name: str, product: Product) -> None:
    assert Product.from_name(name) is product


@pytest.mark.parametrize("name", ["", "Bergamo", "SEV-", "Milanese", "ARK-Rome", "VLEK-Milan-x"])
def test_unknown_product_name_is_rejected(name: str) -> None:
    with pytest.raises(ParseError) as exc:
        Product.from_name(name)
    assert exc.value.reason is Reason.SNP_PRODUCT_UNKNOWN


# --- hypothesis ------------------------------------------------------------------------------


@st.composite
def reports(draw: st.DrawFn) -> SnpReport:
    version = draw(st.sampled_from(SUPPORTED_VERSIONS))
    fields: dict[str, object] = {"version": version}
    for name, _, width in SPEC_OFFSETS:
        if name in CONSTRAINED:
            continue
        if name in BYTE_FIELDS:
            fields[name] = draw(st.binary(min_size=width, max_size=width))
        else:
            fields[name] = draw(st.integers(0, (1 << (8 * width)) - 1))
    if version < 3:
        fields.update(cpuid_fam_id=0, cpuid_mod_id=0, cpuid_step=0)
    if version < 5:
        fields.update(launch_mit_vector=0, current_mit_vector=0)
    fields["policy"] = draw(st.integers(0, (1 << 26) - 1)) | 1 << 17
    fields["flags"] = draw(st.integers(0, 3)) | draw(st.integers(0, 1)) << 2
    fields["signature_r"] = draw(st.integers(0, (1 << 384) - 1))
    fields["signature_s"] = draw(st.integers(0, (1 << 384) - 1))
    return SnpReport.build(**fields)


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(reports())
def test_round_trip(report: SnpReport) -> None:
    raw = report.to_bytes()
    assert len(raw) == REPORT_SIZE
    again = SnpReport.from_bytes(raw)
    assert again == report
    assert again.to_bytes() == raw
    assert dataclasses.asdict(again) == dataclasses.asdict(report)


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.binary(max_size=2 * REPORT_SIZE))
def test_random_bytes_give_only_typed_errors(data: bytes) -> None:
    try:
        SnpReport.from_bytes(data)
    except ParseError as exc:
        assert exc.reason in {
            Reason.SNP_REPORT_LENGTH,
            Reason.SNP_REPORT_VERSION,
            Reason.SNP_REPORT_RESERVED,
            Reason.SNP_REPORT_SIG_ALGO,
            Reason.SNP_REPORT_MALFORMED,
        }


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports(), st.lists(st.tuples(st.integers(0, REPORT_SIZE - 1), st.integers(1, 255)), min_size=1, max_size=8))
def test_mutated_reports_parse_or_give_typed_errors(report: SnpReport, flips: list[tuple[int, int]]) -> None:
    data = bytearray(report.to_bytes())
    for offset, mask in flips:
        data[offset] ^= mask
    try:
        parsed = SnpReport.from_bytes(bytes(data))
    except ParseError as exc:
        assert isinstance(exc.reason, Reason)
    else:
        assert parsed.to_bytes() == bytes(data)
