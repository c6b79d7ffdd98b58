"""agent.tpm on a real swtpm: the AK, quotes that the off-chain verifier accepts, PCR reads of more
than eight PCRs, PCR23 extend/reset, NV reads in chunks, and typed errors when the TPM is gone."""

from __future__ import annotations

import hashlib
import os

import pytest

from agent.config import AkKind, Tcti
from localstack.swtpm import consecutive_free_ports
from agent.tpm import AgentTpm
from offchain.abi.tpm import TPM_ALG_ECC, TPM_ALG_RSA, TpmsAttest, TpmtPublic, TpmtSignature
from offchain.errors import CvmAttestError, PlatformError, Reason, VerificationError
from offchain.verify.quote import check_ak_attributes, verify_quote
from tests.support.swtpm import Swtpm, provision_persistent_ak, write_nv

ALL_PCRS = tuple(range(24))
NODA = 1 << 10


@pytest.fixture
def tpm(swtpm: Swtpm) -> AgentTpm:
    opened = AgentTpm.open(Tcti.parse(swtpm.tcti))
    yield opened
    opened.close()


@pytest.mark.parametrize(("kind", "alg"), [(AkKind.RSA, TPM_ALG_RSA), (AkKind.ECC, TPM_ALG_ECC)], ids=["rsa", "ecc"])
def test_quote_verifies_with_the_offchain_verifier(tpm: AgentTpm, kind: AkKind, alg: int) -> None:
    public = tpm.create_ak(kind)
    ak = TpmtPublic.from_bytes(public)
    assert ak.type == alg
    check_ak_attributes(ak)
    assert ak.object_attributes & NODA
    extra = hashlib.sha256(b"nonce").digest()
    quote = tpm.quote(extra, ALL_PCRS)
    verified = verify_quote(
        quote.attest, TpmtSignature.from_bytes(quote.signature), ak, expected_extra_data=extra, pcrs=quote.pcrs
    )
    assert dict(verified.pcrs) == dict(quote.pcrs)
    assert sorted(quote.pcrs) == list(ALL_PCRS)
    # Negative twin: the same quote against another extraData is refused.
    with pytest.raises(VerificationError) as exc:
        verify_quote(quote.attest, TpmtSignature.from_bytes(quote.signature), ak,
                     expected_extra_data=hashlib.sha256(b"other").digest(), pcrs=quote.pcrs)
    assert exc.value.reason is Reason.TPM_QUOTE_NONCE_MISMATCH


def test_pcr23_extend_and_reset(tpm: AgentTpm) -> None:
    digest = hashlib.sha256(b"event").digest()
    tpm.reset_pcr(23)
    tpm.extend_pcr(23, digest)
    assert tpm.read_pcrs([23])[23] == hashlib.sha256(bytes(32) + digest).digest()
    tpm.reset_pcr(23)
    assert tpm.read_pcrs([23])[23] == bytes(32)
    # PCR 0 is not resettable from locality 0 (PC Client profile): a typed error, not a crash.
    with pytest.raises(PlatformError) as exc:
        tpm.reset_pcr(0)
    assert exc.value.reason is Reason.TPM_UNAVAILABLE


def test_quote_covers_the_current_pcr23(tpm: AgentTpm) -> None:
    tpm.create_ak(AkKind.ECC)
    tpm.extend_pcr(23, bytes(range(32)))
    quote = tpm.quote(bytes(32), (0, 23))
    attest = TpmsAttest.from_bytes(quote.attest)
    assert attest.pcr_digest == hashlib.sha256(quote.pcrs[0] + quote.pcrs[23]).digest()
    assert quote.pcrs[23] == tpm.read_pcrs([23])[23] != bytes(32)


def test_ak_is_unusable_without_its_auth_value(tpm: AgentTpm, swtpm: Swtpm) -> None:
    """swtpm has no resource manager, so another connection can name our AK's handle; it still
    cannot make the AK sign without the random authValue the agent keeps in memory."""
    import tpm2_pytss
    from tpm2_pytss.constants import TPM2_ALG, TPM2_CAP, TPM2_HT
    from tpm2_pytss.types import TPM2B_DATA, TPMT_SIG_SCHEME, TPML_PCR_SELECTION

    tpm.create_ak(AkKind.ECC)
    other = tpm2_pytss.ESAPI(tpm2_pytss.TCTILdr("swtpm", f"host=127.0.0.1,port={swtpm.port}"))
    try:
        _, data = other.get_capability(TPM2_CAP.HANDLES, TPM2_HT.TRANSIENT << 24, 8)
        handles = list(data.data.handles)
        assert len(handles) == 1  # only the AK: the storage key was flushed
        ak = other.tr_from_tpmpublic(handles[0])
        with pytest.raises(tpm2_pytss.TSS2_Exception):
            other.quote(ak, TPML_PCR_SELECTION.parse("sha256:23"), TPM2B_DATA(b"\x00" * 32),
                        TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL))
    finally:
        other.close()


def test_new_ak_replaces_and_flushes_the_old_one(tpm: AgentTpm) -> None:
    first = tpm.create_ak(AkKind.ECC)
    second = tpm.create_ak(AkKind.ECC)
    assert first != second
    assert tpm.ak_public == second
    for _ in range(4):  # swtpm holds 3 transient objects: leaks would fail here
        tpm.create_ak(AkKind.ECC)


def test_persistent_ak(tpm: AgentTpm, swtpm: Swtpm) -> None:
    public = provision_persistent_ak(swtpm, 0x81000003)
    assert tpm.use_persistent_ak(0x81000003) == public
    quote = tpm.quote(bytes(32), (23,))
    verify_quote(quote.attest, TpmtSignature.from_bytes(quote.signature), TpmtPublic.from_bytes(public),
                 expected_extra_data=bytes(32), pcrs=quote.pcrs)
    with pytest.raises(PlatformError) as exc:
        tpm.use_persistent_ak(0x81000009)
    assert exc.value.reason is Reason.TPM_UNAVAILABLE


def test_nv_read_in_chunks(tpm: AgentTpm, swtpm: Swtpm) -> None:
    """An index larger than the TPM's NV buffer (1024 bytes on swtpm) is read in pieces."""
    data = os.urandom(2048)
    write_nv(swtpm, 0x01400001, data)
    assert tpm.nv_read(0x01400001) == data
    with pytest.raises(PlatformError) as exc:
        tpm.nv_read(0x01400002)
    assert exc.value.reason is Reason.TPM_UNAVAILABLE


def test_no_tpm_is_a_typed_error() -> None:
    port = consecutive_free_ports()
    with pytest.raises(PlatformError) as exc:
        AgentTpm.open(Tcti.parse(f"swtpm:host=127.0.0.1,port={port}"))
    assert exc.value.reason is Reason.TPM_UNAVAILABLE


def test_tpm_gone_mid_way_is_a_typed_error(swtpm: Swtpm) -> None:
    tpm = AgentTpm.open(Tcti.parse(swtpm.tcti))
    try:
        tpm.create_ak(AkKind.ECC)
        swtpm.stop()
        with pytest.raises(CvmAttestError) as exc:
            tpm.quote(bytes(32), (23,))
        assert exc.value.reason is Reason.TPM_UNAVAILABLE
    finally:
        tpm.close()


def test_closed_connection(swtpm: Swtpm) -> None:
    tpm = AgentTpm.open(Tcti.parse(swtpm.tcti))
    tpm.close()
    with pytest.raises(PlatformError) as exc:
        tpm.read_pcrs([23])
    assert exc.value.reason is Reason.TPM_UNAVAILABLE
    with pytest.raises(PlatformError) as exc:
        _ = tpm.ak_public
    assert exc.value.reason is Reason.TPM_UNAVAILABLE
