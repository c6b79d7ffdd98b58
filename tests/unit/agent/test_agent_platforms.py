"""agent.platforms: the simulated firmware, configfs-tsm and /dev/sev-guest (against faithful
fakes of the kernel interfaces), the GHCB certificate table, and Azure's HCL report (real vectors)."""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_public_key
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.platforms import PlatformEvidence
from agent.platforms.azure import HCL_REPORT_NV_INDEX, AzurePlatform
from agent.platforms.sim import SimPlatform, load_or_create_chain
from offchain.devamd import SIM_POLICY
from agent.platforms.snp import (
    ASK_GUID,
    SNP_GET_EXT_REPORT,
    VCEK_GUID,
    VLEK_GUID,
    CertTable,
    CertTableEntry,
    ConfigfsTsm,
    GuestRequestIoctl,
    SevGuestDevice,
    SnpPlatform,
    _ExtReportReq,
)
from offchain.abi.binding import direct_report_data
from offchain.abi.snp_report import Product, SnpReport
from offchain.abi.tpm import TpmtPublic
from offchain.devamd import DevAmdChain
from offchain.errors import ParseError, PlatformError, Reason, VerificationError
from offchain.trust.certs import parse_certificate, to_der
from offchain.trust.roots import TrustRoots
from offchain.verify.chain import verify_chain
from offchain.verify.report import verify_report
from tests.support.fake_snp import FakeConfigfsTsm, dev_cert_table, fake_sev_guest_ioctl, signed_report

AK_PUBLIC = bytes.fromhex("0001000b00050072") + bytes(40)  # only hashed here, never parsed
MEASUREMENT = bytes(range(48))


def _verify_signed_by(report: SnpReport, chain: DevAmdChain) -> None:
    # Pin the time inside the development certificates' validity (they start when generated).
    now = chain.leaf.not_valid_before_utc + dt.timedelta(days=1)
    roots = TrustRoots.empty().with_dev_root(chain.ark)
    verified = verify_chain(chain.leaf, chain.ask, chain.ark, roots=roots, now=now)
    verify_report(report, verified)


# --- sim -----------------------------------------------------------------------------------------------


def test_sim_report_is_laid_out_and_signed_like_the_firmware(sim_chain: Path, tmp_path: Path) -> None:
    directory = tmp_path / "sim"
    directory.mkdir()
    for f in sim_chain.iterdir():
        (directory / f.name).write_bytes(f.read_bytes())
    platform = SimPlatform(directory, Product.GENOA, MEASUREMENT)
    evidence = platform.attest(AK_PUBLIC)
    report = evidence.snp_report
    assert report.report_data == direct_report_data(AK_PUBLIC)
    assert (report.policy, report.vmpl, report.measurement, report.version) == (SIM_POLICY, 0, MEASUREMENT, 5)
    assert not report.guest_policy.debug and report.guest_policy.smt
    assert evidence.product() is Product.GENOA and evidence.signer.value == "vcek"
    assert set(evidence.certificates) == {"vcek", "ask", "ark"}
    _verify_signed_by(report, platform.chain)
    assert platform.attest(AK_PUBLIC) is evidence  # one report per AK
    other = platform.attest(AK_PUBLIC + b"x")
    assert other.snp_report.report_data != report.report_data
    assert platform.describe()["dev_root"] == str(directory / "ark.pem")


def test_sim_chain_is_generated_once_and_reused(tmp_path: Path) -> None:
    first = load_or_create_chain(tmp_path / "sim", Product.MILAN)
    assert (tmp_path / "sim/ark.pem").is_file() and not (tmp_path / "sim/ark.key").exists()
    again = load_or_create_chain(tmp_path / "sim", Product.MILAN)
    assert again.ark == first.ark and again.leaf == first.leaf
    with pytest.raises(PlatformError) as exc:
        load_or_create_chain(tmp_path / "sim", Product.TURIN)
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


def test_sim_chain_unreadable(tmp_path: Path) -> None:
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim/ark.pem").write_text("not a certificate")
    with pytest.raises(PlatformError) as exc:
        SimPlatform(tmp_path / "sim", Product.GENOA, MEASUREMENT)
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


# --- the GHCB certificate table ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.uuids(), st.binary(min_size=1, max_size=64)), max_size=5))
def test_cert_table_round_trip(entries: list[tuple[uuid.UUID, bytes]]) -> None:
    entries = [(g, d) for g, d in entries if g.int != 0]
    table = CertTable(tuple(CertTableEntry(g, d) for g, d in entries))
    assert CertTable.from_bytes(table.to_bytes()) == table


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_cert_table_random_bytes_give_typed_errors(data: bytes) -> None:
    try:
        CertTable.from_bytes(data)
    except ParseError as exc:
        assert exc.reason is Reason.INPUT_INVALID


def test_cert_table_guid_byte_order() -> None:
    """GUIDs are stored little-endian (EFI): the VCEK GUID's first bytes are 8d 75 da 63."""
    table = CertTable((CertTableEntry(VCEK_GUID, b"x"),)).to_bytes()
    assert table[:4] == bytes.fromhex("8d75da63")
    assert table[16:24] == (48).to_bytes(4, "little") + (1).to_bytes(4, "little")


@pytest.mark.parametrize(
    "table",
    [
        VCEK_GUID.bytes_le + (48).to_bytes(4, "little") + (100).to_bytes(4, "little") + bytes(24) + b"short",
        VCEK_GUID.bytes_le + (0).to_bytes(4, "little") + (4).to_bytes(4, "little") + bytes(24),
        VCEK_GUID.bytes_le + (24).to_bytes(4, "little") + (1).to_bytes(4, "little"),
    ],
    ids=["past-the-end", "inside-the-header", "no-terminator"],
)
def test_cert_table_malformed(table: bytes) -> None:
    with pytest.raises(ParseError) as exc:
        CertTable.from_bytes(table)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_cert_table_roles_come_from_the_certificates(chain: DevAmdChain) -> None:
    certificates = CertTable.from_bytes(dev_cert_table(chain)).certificates()
    assert certificates == chain.certificates_pem()
    assert CertTable.from_bytes(b"").certificates() == {}
    unknown = CertTable((CertTableEntry(uuid.uuid4(), b"\x30\x00"), CertTableEntry(VLEK_GUID, b"junk")))
    assert unknown.certificates() == {}


@pytest.mark.vectors
def test_cert_table_with_real_amd_certificates(vectors: Path) -> None:
    vlek = to_der(parse_certificate((vectors / "snp/milan-vlek-v3-aws-constellation/vlek.pem").read_bytes()))
    asvk = to_der(parse_certificate((vectors / "amd-roots/milan/asvk.pem").read_bytes()))
    table = CertTable((CertTableEntry(VLEK_GUID, vlek), CertTableEntry(ASK_GUID, asvk))).to_bytes()
    assert set(CertTable.from_bytes(table).certificates()) == {"vlek", "asvk"}


# --- configfs-tsm --------------------------------------------------------------------------------------------


def test_configfs_tsm_report(chain: DevAmdChain, tmp_path: Path) -> None:
    with FakeConfigfsTsm(tmp_path / "tsm", chain) as fake:
        platform = SnpPlatform(ConfigfsTsm(tmp_path / "tsm"), SevGuestDevice(tmp_path / "no-device"))
        evidence = platform.attest(AK_PUBLIC)
        assert platform.attest(AK_PUBLIC) is evidence
        assert fake.served == 1
    assert platform.describe()["interface"] == "configfs-tsm"
    assert evidence.snp_report.report_data == direct_report_data(AK_PUBLIC)
    assert evidence.certificates == chain.certificates_pem()
    _verify_signed_by(evidence.snp_report, chain)


def test_configfs_tsm_retries_when_another_writer_interferes(chain: DevAmdChain, tmp_path: Path) -> None:
    with FakeConfigfsTsm(tmp_path / "tsm", chain, interfere=1) as fake:
        report, _ = ConfigfsTsm(tmp_path / "tsm").get_report(direct_report_data(AK_PUBLIC))
        assert fake.served == 2
    assert SnpReport.from_bytes(report).report_data == direct_report_data(AK_PUBLIC)


def test_configfs_tsm_gives_up_when_writers_keep_interfering(chain: DevAmdChain, tmp_path: Path) -> None:
    with FakeConfigfsTsm(tmp_path / "tsm", chain, interfere=100):
        with pytest.raises(PlatformError) as exc:
            ConfigfsTsm(tmp_path / "tsm").get_report(direct_report_data(AK_PUBLIC))
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


def test_configfs_tsm_of_another_provider(chain: DevAmdChain, tmp_path: Path) -> None:
    with FakeConfigfsTsm(tmp_path / "tsm", chain, provider="tdx_guest"):
        platform = SnpPlatform(ConfigfsTsm(tmp_path / "tsm"), SevGuestDevice(tmp_path / "no-device"))
        with pytest.raises(PlatformError) as exc:
            platform.attest(AK_PUBLIC)
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


@pytest.mark.parametrize("wrong", ["garbage", "other-report-data"])
def test_configfs_tsm_firmware_answers_wrongly(chain: DevAmdChain, tmp_path: Path, wrong: str) -> None:
    def answer(inblob: bytes) -> bytes:
        return b"\x00" * 100 if wrong == "garbage" else signed_report(chain, bytes(64))

    with FakeConfigfsTsm(tmp_path / "tsm", chain, answer=answer):
        platform = SnpPlatform(ConfigfsTsm(tmp_path / "tsm"), SevGuestDevice(tmp_path / "no-device"))
        with pytest.raises(PlatformError) as exc:
            platform.attest(AK_PUBLIC)
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


def test_no_snp_interface(tmp_path: Path) -> None:
    with pytest.raises(PlatformError) as exc:
        SnpPlatform(ConfigfsTsm(tmp_path / "tsm"), SevGuestDevice(tmp_path / "sev-guest"))
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


# --- /dev/sev-guest -----------------------------------------------------------------------------------------


def test_ioctl_layout_matches_the_kernel_uapi() -> None:
    assert ctypes.sizeof(GuestRequestIoctl) == 32
    assert SNP_GET_EXT_REPORT == 0xC0205302  # _IOWR('S', 0x2, struct snp_guest_request_ioctl)
    assert ctypes.sizeof(_ExtReportReq) == 112 and _ExtReportReq.certs_address.offset == 96


def _device(tmp_path: Path, ioctl: object) -> SevGuestDevice:
    (tmp_path / "sev-guest").write_bytes(b"")
    return SevGuestDevice(tmp_path / "sev-guest", ioctl=ioctl)  # type: ignore[arg-type]


def test_sev_guest_report_with_certificates(chain: DevAmdChain, tmp_path: Path) -> None:
    table = dev_cert_table(chain)
    platform = SnpPlatform(ConfigfsTsm(tmp_path / "no-tsm"), _device(tmp_path, fake_sev_guest_ioctl(chain, table)))
    assert platform.interface == "sev-guest"
    evidence = platform.attest(AK_PUBLIC)
    assert evidence.snp_report.report_data == direct_report_data(AK_PUBLIC)
    assert evidence.certificates == chain.certificates_pem()
    _verify_signed_by(evidence.snp_report, chain)


def test_sev_guest_grows_the_certificate_buffer(chain: DevAmdChain, tmp_path: Path) -> None:
    big_table = CertTable((CertTableEntry(VCEK_GUID, chain.leaf.public_bytes(Encoding.DER)),
                           CertTableEntry(uuid.uuid4(), bytes(5 * 4096)))).to_bytes()
    device = _device(tmp_path, fake_sev_guest_ioctl(chain, big_table))
    _, certs = device.get_report(direct_report_data(AK_PUBLIC))
    assert certs[: len(big_table)] == big_table and len(certs) == 6 * 4096


def test_sev_guest_firmware_error(chain: DevAmdChain, tmp_path: Path) -> None:
    device = _device(tmp_path, fake_sev_guest_ioctl(chain, b"", firmware_status=0x16))
    with pytest.raises(PlatformError) as exc:
        device.get_report(direct_report_data(AK_PUBLIC))
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


def test_sev_guest_ioctl_refused(tmp_path: Path) -> None:
    def refuse(fd: int, request: int, arg: object) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(PlatformError) as exc:
        _device(tmp_path, refuse).get_report(bytes(64))
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


# --- Azure (real vectors) -------------------------------------------------------------------------------------

AZURE_WITH_HCL = ["genoa-v3-hcl-trustee", "milan-v2-hcl-trustee", "milan-v3-hcl-trustee-ev0",
                  "milan-v3-hcl-trustee-ev1", "milan-v3-hcl-trustee-ev2"]


def _nv_from_file(path: Path) -> object:
    def read(index: int) -> bytes:
        assert index == HCL_REPORT_NV_INDEX
        return path.read_bytes()

    return read


@pytest.mark.vectors
@pytest.mark.parametrize("name", AZURE_WITH_HCL)
def test_azure_hcl_report_from_real_vectors(vectors: Path, name: str) -> None:
    directory = vectors / "azure" / name
    ak = load_pem_public_key((directory / "ak_pub.pem").read_bytes())
    ak_public = TpmtPublic.from_public_key(ak).to_bytes()  # type: ignore[arg-type]
    platform = AzurePlatform(_nv_from_file(directory / "hcl_report.bin"))  # type: ignore[arg-type]
    evidence = platform.attest(ak_public)
    assert evidence.snp_report.to_bytes() == (directory / "report.bin").read_bytes()
    assert evidence.hcl_report is not None
    assert evidence.hcl_report.runtime_data.rstrip(b"\x00") == (directory / "runtime_data.json").read_bytes().rstrip(
        b"\x00")
    # Version 2 reports do not name their product; the ARK of the vector does (operator's --product).
    product = Product.from_name(json.loads((vectors / "expected.json").read_text())[f"azure/{name}"]["ark_cn"][4:])
    assert evidence.product(fallback=product) is product
    assert name.startswith(product.value)
    assert platform.describe()["hcl_nv_index"] == "0x1400001"


@pytest.mark.vectors
def test_azure_refuses_an_hcl_report_naming_another_ak(vectors: Path) -> None:
    directory = vectors / "azure" / AZURE_WITH_HCL[0]
    other = load_pem_public_key((vectors / "azure" / AZURE_WITH_HCL[1] / "ak_pub.pem").read_bytes())
    platform = AzurePlatform(_nv_from_file(directory / "hcl_report.bin"))  # type: ignore[arg-type]
    with pytest.raises(VerificationError) as exc:
        platform.attest(TpmtPublic.from_public_key(other).to_bytes())  # type: ignore[arg-type]
    assert exc.value.reason is Reason.BINDING_AK_MISMATCH


@pytest.mark.vectors
def test_azure_nv_that_is_not_an_hcl_report(vectors: Path, tmp_path: Path) -> None:
    real = (vectors / "azure" / AZURE_WITH_HCL[0] / "hcl_report.bin").read_bytes()
    (tmp_path / "truncated.bin").write_bytes(real[:1000])
    platform = AzurePlatform(_nv_from_file(tmp_path / "truncated.bin"))  # type: ignore[arg-type]
    with pytest.raises(PlatformError) as exc:
        platform.attest(AK_PUBLIC)
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE


def test_unknown_product_without_certificates(chain: DevAmdChain) -> None:
    v2 = SnpReport.from_bytes(signed_report(chain, bytes(64))).replace(version=2, cpuid_fam_id=0, cpuid_mod_id=0,
                                                                     cpuid_step=0, launch_mit_vector=0,
                                                                     current_mit_vector=0)
    with pytest.raises(PlatformError) as exc:
        PlatformEvidence(snp_report=v2).product()
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE
    assert PlatformEvidence(snp_report=v2, certificates=chain.certificates_pem()).product() is Product.GENOA

