"""Test evidence made the way the agent makes it: a dev AMD chain signs the report, a vTPM AK
(made here with ``cryptography``: RSA-2048 or P-256) signs a TPMS_ATTEST marshalled here.

Real quotes come from swtpm in the agent's integration tests; these unit-test ones are built
field by field from TPM 2.0 Part 2 (10.12.8 TPMS_ATTEST, 10.12.1 TPMS_QUOTE_INFO) so a test can
break exactly one field. Dev chains are expensive (two RSA-4096 keys each): :func:`dev_chain`
makes each (product, signer) once per test process.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from offchain.abi.binding import direct_report_data, offchain_extra_data
from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.abi.tpm import (
    TPM_ALG_SHA256,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    PcrSelection,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
)
from offchain.abi.workload import WorkloadEvent, replay
from offchain.devamd import DevAmdChain

# Every dev certificate is valid from DEV_NOT_BEFORE for years; tests verify at DEV_NOW (pinned:
# certificate validity must not depend on the day the tests run).
DEV_NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
DEV_NOW = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
MEASUREMENT = bytes(range(48))
NONCE = b"verifier nonce 0001"
DEFAULT_PCR_INDICES = (0, 1, 2, 3, 4, 5, 6, 7, 23)
EVENTS = (
    WorkloadEvent("image", "registry.example/app", hashlib.sha256(b"app image").digest()),
    WorkloadEvent("compose", "docker-compose.yml", hashlib.sha256(b"services: {}").digest()),
    WorkloadEvent("config", "config/app.toml", hashlib.sha256(b"port = 8080").digest()),
)


def dev_chain(product: Product = Product.GENOA, signer: SignerKind = SignerKind.VCEK) -> DevAmdChain:
    """One development AMD hierarchy per (product, signer) for the whole test run."""
    return _dev_chain(Product(product), SignerKind(signer))


@functools.cache
def _dev_chain(product: Product, signer: SignerKind) -> DevAmdChain:
    return DevAmdChain.generate(product=product, signer=signer, not_before=DEV_NOT_BEFORE)


@functools.cache
def rsa_ak_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ecc_ak_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ak_key(kind: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    return rsa_ak_key() if kind == "rsa" else ecc_ak_key()


def default_pcrs() -> dict[int, bytes]:
    pcrs = {i: hashlib.sha256(b"pcr %d" % i).digest() for i in DEFAULT_PCR_INDICES}
    pcrs[23] = replay(EVENTS)
    return pcrs


def marshal_attest(
    extra_data: bytes,
    pcrs: dict[int, bytes],
    *,
    magic: int = TPM_GENERATED_VALUE,
    type_: int = TPM_ST_ATTEST_QUOTE,
    pcr_digest: bytes | None = None,
    selection: tuple[int, ...] | None = None,
) -> bytes:
    """A TPMS_ATTEST quoting ``pcrs`` (SHA-256 bank) with ``extra_data``; any field can be forced."""
    if type_ != TPM_ST_ATTEST_QUOTE:
        return _with_type(magic, type_, extra_data)
    indices = tuple(sorted(pcrs)) if selection is None else selection
    if pcr_digest is None:
        pcr_digest = hashlib.sha256(b"".join(pcrs[i] for i in indices)).digest()
    return TpmsAttest(
        magic=magic,
        type=TPM_ST_ATTEST_QUOTE,
        qualified_signer=b"\x00\x0b" + hashlib.sha256(b"dev qualified signer").digest(),
        extra_data=extra_data,
        clock=123456789,
        reset_count=3,
        restart_count=0,
        safe=True,
        firmware_version=0x2023_0101_0000_0001,
        pcr_selections=(PcrSelection(TPM_ALG_SHA256, indices),),
        pcr_digest=pcr_digest,
    ).to_bytes()


def _with_type(magic: int, type_: int, extra_data: bytes) -> bytes:
    """A non-quote TPMS_ATTEST (e.g. TPM_ST_ATTEST_CERTIFY) with an opaque attested union."""
    return TpmsAttest(
        magic=magic,
        type=type_,
        qualified_signer=b"",
        extra_data=extra_data,
        clock=1,
        reset_count=0,
        restart_count=0,
        safe=True,
        firmware_version=0,
        attested=b"\x00\x00\x00\x00",
    ).to_bytes()


def sign_attest(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, attest: bytes) -> TpmtSignature:
    """The AK's TPMT_SIGNATURE over ``attest``: RSASSA-SHA256 or ECDSA-SHA256, as a TPM signs."""
    if isinstance(key, rsa.RSAPrivateKey):
        return TpmtSignature.rsassa(TPM_ALG_SHA256, key.sign(attest, padding.PKCS1v15(), hashes.SHA256()))
    r, s = decode_dss_signature(key.sign(attest, ec.ECDSA(hashes.SHA256())))
    return TpmtSignature.ecdsa(TPM_ALG_SHA256, r, s, 32)


@dataclass
class BundleParts:
    """Everything a test may want to tamper with before :meth:`to_json`."""

    chain: DevAmdChain
    report: SnpReport
    ak_public: TpmtPublic
    attest: bytes
    signature: TpmtSignature
    pcrs: dict[int, bytes]
    events: tuple[WorkloadEvent, ...] | None
    certificates: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": 1,
            "platform": "sim",
            "binding": "direct",
            "snp_report": self.report.to_bytes().hex(),
            "certificates": dict(self.certificates),
            "ak_public": self.ak_public.to_bytes().hex(),
            "quote": {"attest": self.attest.hex(), "signature": self.signature.to_bytes().hex()},
            "pcrs": {"sha256": {str(i): v.hex() for i, v in sorted(self.pcrs.items())}},
            "nonce": {"form": "offchain", "value": NONCE.hex()},
        }
        if self.events is not None:
            doc["event_log"] = [e.to_json() for e in self.events]
        doc.update(self.extra)
        return doc


def make_parts(
    *,
    product: Product = Product.GENOA,
    signer: SignerKind = SignerKind.VCEK,
    ak: str = "rsa",
    extra_data: bytes | None = None,
    pcrs: dict[int, bytes] | None = None,
    events: tuple[WorkloadEvent, ...] | None = EVENTS,
    **report_fields: Any,
) -> BundleParts:
    """A complete, valid direct-binding bundle from the dev chain of ``product``/``signer``."""
    chain = dev_chain(product, signer)
    key = ak_key(ak)
    public = TpmtPublic.from_public_key(key.public_key())
    fields: dict[str, Any] = {"measurement": MEASUREMENT, "report_data": direct_report_data(public.to_bytes())}
    fields.update(report_fields)
    report = chain.sign(chain.report_template(**fields))
    quoted = default_pcrs() if pcrs is None else pcrs
    attest = marshal_attest(offchain_extra_data(NONCE) if extra_data is None else extra_data, quoted)
    return BundleParts(
        chain=chain,
        report=report,
        ak_public=public,
        attest=attest,
        signature=sign_attest(key, attest),
        pcrs=dict(quoted),
        events=events,
        certificates=chain.certificates_pem(),
    )
