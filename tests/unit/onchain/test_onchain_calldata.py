"""onchain.calldata: the one encoder of registry calldata, for both binding modes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from offchain.abi.hcl import HclReport
from offchain.abi.snp_report import Product, SignerKind, TcbVersion
from offchain.abi.tpm import TPM_ALG_RSASSA, TPM_ALG_SHA1, TPM_ALG_SHA256, PcrSelection, TpmtPublic, TpmtSignature
from offchain.errors import ParseError, Reason
from offchain.policy.golden import GOLDEN_TYPEHASH, Binding, GoldenMeasurement, PolicyRules
from onchain.calldata import (
    JWK_E_N,
    JWK_KID,
    certificate_id,
    evidence_struct,
    golden_struct,
    jwk_offsets,
    quote_signature,
    selected_pcrs,
)
from tests.support.registry import SoftAk, pcr_bank

AZURE_WITH_QUOTE = [
    "genoa-v3-hcl-trustee",
    "milan-v2-hcl-trustee",
    "milan-v3-hcl-trustee-ev0",
    "milan-v3-hcl-trustee-ev1",
    "milan-v3-hcl-trustee-ev2",
]


def _b64url_int(text: bytes) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4)), "big")


@pytest.mark.vectors
@pytest.mark.parametrize("name", [*AZURE_WITH_QUOTE, "milan-v2-constellation"])
def test_jwk_offsets_point_at_the_ak_modulus(vectors: Path, name: str) -> None:
    runtime = (vectors / "azure" / name / "runtime_data.json").read_bytes()
    kid, modulus = jwk_offsets(runtime)
    assert runtime[kid : kid + len(JWK_KID)] == JWK_KID
    assert runtime[modulus - len(JWK_E_N) : modulus] == JWK_E_N
    end = runtime.index(b'"', modulus)
    assert runtime[end : end + 2] == b'"}'
    ak = next(k for k in json.loads(runtime)["keys"] if k["kid"] == "HCLAkPub")
    assert _b64url_int(runtime[modulus:end]) == _b64url_int(ak["n"].encode())
    assert modulus - kid <= 128


@pytest.mark.parametrize(
    "runtime",
    [
        b'{"keys":[]}',
        b'{"keys":[{"kid":"HCLEkPub","kty":"RSA","e":"AQAB","n":"AA"}]}',
        b'{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"AA","e":"AQAB"}]}',
    ],
    ids=["no-keys", "only-ek", "n-before-e"],
)
def test_jwk_offsets_refuse_other_shapes(runtime: bytes) -> None:
    with pytest.raises(ParseError) as info:
        jwk_offsets(runtime)
    assert info.value.reason is Reason.REGISTRY_JWK_OFFSETS_INVALID


@pytest.mark.vectors
@pytest.mark.parametrize("name", AZURE_WITH_QUOTE)
def test_azure_evidence_struct(vectors: Path, name: str) -> None:
    vector = vectors / "azure" / name
    hcl = HclReport.from_bytes((vector / "hcl_report.bin").read_bytes())
    pcrs = {int(k): bytes.fromhex(v) for k, v in json.loads((vector / "tpm_pcrs_sha256.json").read_text()).items()}
    raw_sig = (vector / "tpm_quote_sig.bin").read_bytes()
    vcek = (vector / "vcek.der").read_bytes()
    ev = evidence_struct(
        report=hcl.snp_report,
        leaf=vcek,
        attest=(vector / "tpm_quote_attest.bin").read_bytes(),
        signature=raw_sig,
        pcrs=pcrs,
        hcl=hcl,
    )
    assert ev.binding is Binding.AZURE and ev.leaf == certificate_id(vcek) == keccak(vcek)
    assert ev.report == (vector / "report.bin").read_bytes()
    assert ev.runtime_data == (vector / "runtime_data.json").read_bytes()
    assert (ev.ak_kid_offset, ev.ak_modulus_offset) == jwk_offsets(ev.runtime_data)
    n, e = hcl.ak_jwk()
    public = TpmtPublic.from_bytes(ev.ak_public)
    assert int.from_bytes(public.modulus, "big") == n and (public.exponent or 65537) == e
    sig = TpmtSignature.from_bytes(ev.signature)
    assert (sig.sig_alg, sig.hash_alg, sig.signature) == (TPM_ALG_RSASSA, TPM_ALG_SHA256, raw_sig)
    assert ev.pcrs == tuple(pcrs[i] for i in range(24))
    assert ev.as_tuple()[2] == 1


@pytest.mark.vectors
def test_hcl_report_must_embed_the_report(vectors: Path) -> None:
    hcl = HclReport.from_bytes((vectors / "azure/genoa-v3-hcl-trustee/hcl_report.bin").read_bytes())
    other = (vectors / "azure/milan-v2-hcl-trustee/report.bin").read_bytes()
    ak = SoftAk("rsa")
    quote = ak.quote(b"n", {0: bytes(32)})
    with pytest.raises(ParseError) as info:
        evidence_struct(report=other, leaf=b"\x01" * 32, attest=quote.attest, signature=quote.signature,
                        pcrs={0: bytes(32)}, hcl=hcl)
    assert info.value.reason is Reason.BINDING_HCL_REPORT_MISMATCH
    ev = evidence_struct(report=hcl.snp_report, leaf=b"\x01" * 32, attest=quote.attest, signature=quote.signature,
                         pcrs={0: bytes(32)}, hcl=hcl)
    assert ev.leaf == b"\x01" * 32


def test_direct_evidence_struct_and_its_negative_twins() -> None:
    ak = SoftAk("p256")
    bank = pcr_bank()
    quote = ak.quote(b"\x22" * 32, {i: bank[i] for i in (0, 7, 23)})
    ev = evidence_struct(
        report=bytes(1184), leaf=b"\x02" * 32, attest=quote.attest, signature=quote.signature, pcrs=bank,
        ak_public=ak.public,
    )
    assert ev.binding is Binding.DIRECT and ev.ak_public == ak.public_bytes and ev.runtime_data == b""
    assert ev.pcrs == (bank[0], bank[7], bank[23])
    assert ev.signature == quote.signature
    with pytest.raises(ParseError) as info:
        evidence_struct(report=bytes(1184), leaf=b"\x02" * 32, attest=quote.attest, signature=quote.signature,
                        pcrs=bank)
    assert info.value.reason is Reason.INPUT_INVALID
    with pytest.raises(ParseError) as info:
        evidence_struct(report=bytes(1184), leaf=b"\x02" * 32, attest=quote.attest, signature=quote.signature,
                        pcrs={0: bank[0], 23: bank[23]}, ak_public=ak.public)
    assert info.value.reason is Reason.TPM_QUOTE_PCR_SELECTION


def test_selected_pcrs_refuses_other_banks() -> None:
    ak = SoftAk("rsa")
    quote = ak.quote(b"x", {1: bytes(32)})
    assert selected_pcrs(quote.parsed, {1: b"\x01" * 32, 2: b"\x02" * 32}) == (b"\x01" * 32,)
    sha1 = dataclasses.replace(quote.parsed, pcr_selections=(PcrSelection(TPM_ALG_SHA1, (1,)),))
    with pytest.raises(ParseError) as info:
        selected_pcrs(sha1, {1: bytes(32)})
    assert info.value.reason is Reason.TPM_QUOTE_PCR_SELECTION


def test_quote_signature_wraps_only_raw_signatures() -> None:
    raw = bytes(range(256))
    wrapped = quote_signature(raw)
    assert TpmtSignature.from_bytes(wrapped).signature == raw
    assert quote_signature(wrapped) == wrapped
    ecdsa = TpmtSignature.ecdsa(TPM_ALG_SHA256, 5, 7, 32)
    assert quote_signature(ecdsa) == ecdsa.to_bytes()


def test_golden_struct_hashes_to_the_canonical_id() -> None:
    """An independent recomputation of docs/formats.md's id from the struct, with eth_abi and eth_utils."""
    golden = GoldenMeasurement(
        measurement=hashlib.sha384(b"image").digest(),
        policy=PolicyRules(debug_allowed=False, migrate_ma_allowed=True, smt_allowed=False, min_abi_major=1,
                           min_abi_minor=55),
        min_tcb=TcbVersion(bootloader=3, tee=1, snp=8, microcode=115, fmc=2),
        vmpl=2,
        products=(Product.TURIN, Product.MILAN),
        signers=(SignerKind.VLEK,),
        binding=Binding.AZURE,
        lifetime_seconds=7200,
        pcrs={23: b"\x17" * 32, 4: b"\x04" * 32},
    )
    struct = golden_struct(golden)
    assert struct[3] == 1 | 4 and struct[4] == 2 and struct[15] == 1 << 4 | 1 << 23
    assert struct[16] == [b"\x04" * 32, b"\x17" * 32]
    types = ["bytes32", "bytes32"] + ["uint8"] * 4 + ["bool"] * 3 + ["uint8"] * 7 + ["uint32", "bytes32", "uint64"]
    values = [GOLDEN_TYPEHASH, keccak(struct[0]), *struct[1:16], keccak(b"".join(struct[16])), struct[17]]
    assert keccak(abi_encode(types, values)) == golden.canonical_id()
    typehash = keccak(
        text="CvmGolden(bytes measurement,uint8 binding,uint8 vmpl,uint8 products,uint8 signers,bool debugAllowed,"
        "bool migrateMaAllowed,bool smtAllowed,uint8 minAbiMajor,uint8 minAbiMinor,uint8 minBootloader,uint8 minTee,"
        "uint8 minSnp,uint8 minMicrocode,uint8 minFmc,uint32 pcrMask,bytes32[] pcrValues,uint64 lifetime)"
    )
    assert typehash == GOLDEN_TYPEHASH


def test_svsm_evidence_struct_lays_out_the_svsm_evidence() -> None:
    from onchain.calldata import svsm_evidence_struct
    from tests.support.registry import ek_public

    ak, ek = SoftAk("p256"), ek_public("rsa")
    quote = ak.quote(b"\x11" * 32, {i: v for i, v in pcr_bank().items() if i in (0, 23)})
    struct = svsm_evidence_struct(
        report=b"\x05" * 1184, leaf=b"\x07" * 32, svsm_nonce=b"\x09" * 64, manifest=ek, ak_public=ak.public,
        attest=quote.attest, signature=quote.signature, pcrs=pcr_bank(),
    )
    assert struct.as_tuple() == (
        b"\x05" * 1184, b"\x07" * 32, b"\x09" * 64, ek.to_bytes(), ak.public_bytes, quote.attest, quote.signature,
        [pcr_bank()[0], pcr_bank()[23]],
    )
    with pytest.raises(ParseError) as info:
        svsm_evidence_struct(
            report=b"", leaf=b"\x07" * 32, svsm_nonce=b"", manifest=b"", ak_public=b"", attest=quote.attest,
            signature=quote.signature, pcrs={0: pcr_bank()[0]},
        )
    assert info.value.reason is Reason.TPM_QUOTE_PCR_SELECTION
