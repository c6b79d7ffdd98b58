"""offchain.credential: a credential made in software opens in a real TPM (swtpm) for the named
object under the EK of each default template, and nowhere else; what is not an EK is refused."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from agent.config import AkKind, Tcti
from agent.tpm import AgentTpm
from offchain.abi.tpm import TpmtPublic
from offchain.credential import check_endorsement_key, make_credential
from offchain.errors import CvmAttestError, ParseError, PlatformError, Reason
from tests.support.swtpm import Swtpm, running_swtpm, swtpm_or_skip


@pytest.fixture(scope="module")
def swtpm() -> Iterator[Swtpm]:
    swtpm_or_skip()
    with running_swtpm() as tpm:
        yield tpm


@pytest.fixture(params=[AkKind.RSA, AkKind.ECC], ids=["rsa2048-ek", "p256-ek"])
def tpm(request: pytest.FixtureRequest, swtpm: Swtpm) -> Iterator[AgentTpm]:
    opened = AgentTpm.open(Tcti.parse(swtpm.tcti))
    try:
        opened.create_ak(AkKind.RSA)
        opened.create_ek(request.param)
        yield opened
    finally:
        opened.close()


def test_the_tpm_releases_the_credential_for_its_ak(tpm: AgentTpm) -> None:
    ek, ak = TpmtPublic.from_bytes(tpm.ek_public), TpmtPublic.from_bytes(tpm.ak_public)
    for credential in (os.urandom(32), b"\x01"):
        made = make_credential(ek, ak.name(), credential)
        assert tpm.activate_credential(made.credential_blob, made.secret) == credential


def test_a_credential_for_another_name_or_altered_does_not_open(tpm: AgentTpm) -> None:
    ek, ak = TpmtPublic.from_bytes(tpm.ek_public), TpmtPublic.from_bytes(tpm.ak_public)
    other = make_credential(ek, ak.name()[:2] + bytes(32), os.urandom(32))
    genuine = make_credential(ek, ak.name(), os.urandom(32))
    flipped = bytearray(genuine.credential_blob)
    flipped[-1] ^= 1
    for blob, secret in ((other.credential_blob, other.secret), (bytes(flipped), genuine.secret),
                         (genuine.credential_blob, other.secret)):
        with pytest.raises(PlatformError) as caught:
            tpm.activate_credential(blob, secret)
        assert caught.value.reason is Reason.SVSM_ACTIVATION_FAILED


def test_what_is_not_an_endorsement_key_is_refused(tpm: AgentTpm) -> None:
    ek, ak = TpmtPublic.from_bytes(tpm.ek_public), TpmtPublic.from_bytes(tpm.ak_public)
    check_endorsement_key(ek)
    for key in (ak, dataclasses.replace(ek, symmetric_key_bits=256), dataclasses.replace(ek, name_alg=0x000C)):
        with pytest.raises(ParseError) as caught:
            make_credential(key, ak.name(), b"x")
        assert caught.value.reason is Reason.SVSM_MANIFEST_MALFORMED
    for credential in (b"", bytes(33)):
        with pytest.raises(CvmAttestError) as caught:
            make_credential(ek, ak.name(), credential)
        assert caught.value.reason is Reason.INPUT_INVALID
