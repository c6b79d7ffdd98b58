"""contracts/libraries/TpmQuote.sol against offchain.abi.tpm, cryptography and the real quotes in the vectors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3
from web3.exceptions import ContractCustomError

from offchain.abi.tpm import (
    AK_OBJECT_ATTRIBUTES,
    TPM_ALG_SHA1,
    TPM_ALG_SHA256,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
)
from offchain.errors import ChainError, Reason
from onchain.calldata import refresh_args
from onchain.errors import chain_error
from tests.support.evm import compile_contracts, deploy
from tests.support.registry import SoftAk, pcr_bank

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture(scope="module")
def harness(w3: Web3, deployer: str) -> Any:
    artifact = compile_contracts(["contracts/test/TpmQuoteHarness.sol"])["TpmQuoteHarness"]
    return deploy(w3, artifact, sender=deployer)


@pytest.fixture(scope="module")
def rsa_ak() -> SoftAk:
    return SoftAk("rsa")


@pytest.fixture(scope="module")
def p256_ak() -> SoftAk:
    return SoftAk("p256")


def reverted(harness: Any, fn: str, *args: Any) -> ChainError:
    with pytest.raises(ContractCustomError) as info:
        getattr(harness.functions, fn)(*args).call()
    return chain_error(info.value, harness.abi)


def parsed(harness: Any, attest: bytes) -> dict[str, Any]:
    out = harness.functions.parseQuote(attest).call()
    keys = ("extraData", "clock", "resetCount", "restartCount", "safe", "firmwareVersion", "pcrMask", "pcrDigest")
    return dict(zip(keys, out, strict=True))


def mask_of(attest: TpmsAttest) -> int:
    return sum(1 << p for p in attest.pcr_selections[0].pcrs)


def assert_same_quote(harness: Any, attest_bytes: bytes) -> None:
    expected = TpmsAttest.from_bytes(attest_bytes)
    got = parsed(harness, attest_bytes)
    assert got["extraData"] == expected.extra_data
    assert got["clock"] == expected.clock
    assert got["resetCount"] == expected.reset_count
    assert got["restartCount"] == expected.restart_count
    assert got["safe"] == expected.safe
    assert got["firmwareVersion"] == expected.firmware_version
    assert got["pcrMask"] == mask_of(expected)
    assert got["pcrDigest"] == expected.pcr_digest


# --- parsing ------------------------------------------------------------------------------------


def test_parse_soft_quote_matches_python(harness: Any, rsa_ak: SoftAk) -> None:
    quote = rsa_ak.quote(b"\x11" * 32, {i: v for i, v in pcr_bank().items() if i in (0, 4, 7, 23)})
    assert_same_quote(harness, quote.attest)
    assert parsed(harness, quote.attest)["pcrMask"] == (1 << 0) | (1 << 4) | (1 << 7) | (1 << 23)


REAL_QUOTES = [
    "azure/genoa-v3-hcl-trustee/tpm_quote_attest.bin",
    "azure/milan-v2-hcl-trustee/tpm_quote_attest.bin",
    "azure/milan-v3-hcl-trustee-ev0/tpm_quote_attest.bin",
    "azure/milan-v3-hcl-trustee-ev1/tpm_quote_attest.bin",
    "azure/milan-v3-hcl-trustee-ev2/tpm_quote_attest.bin",
    "tpm/gce-vtpm-cos85-nonce9009/quote_sha256_attest.bin",
    "tpm/trustee-tpm-evidence/quote_attest.bin",
]


@pytest.mark.vectors
@pytest.mark.parametrize("relpath", REAL_QUOTES, ids=lambda p: p.split("/")[1])
def test_parse_real_quotes(harness: Any, vectors: Path, relpath: str) -> None:
    assert_same_quote(harness, (vectors / relpath).read_bytes())


@pytest.mark.vectors
def test_sha1_bank_quote_is_refused(harness: Any, vectors: Path) -> None:
    data = (vectors / "tpm/gce-vtpm-cos85-nonce9009/quote_sha1_attest.bin").read_bytes()
    assert TpmsAttest.from_bytes(data).pcr_selections[0].hash_alg == TPM_ALG_SHA1
    assert reverted(harness, "parseQuote", data).reason is Reason.TPM_QUOTE_PCR_SELECTION


def test_bad_magic_and_type(harness: Any, rsa_ak: SoftAk) -> None:
    good = rsa_ak.quote(b"n", {0: bytes(32)})
    assert parsed(harness, good.attest)["extraData"] == b"n"
    bad_magic = rsa_ak.quote(b"n", {0: bytes(32)}, magic=0xFF544348)
    assert reverted(harness, "parseQuote", bad_magic.attest).reason is Reason.TPM_QUOTE_MAGIC
    certify = rsa_ak.quote(b"n", {0: bytes(32)}).parsed
    certify_bytes = bytearray(certify.to_bytes())
    certify_bytes[4:6] = (0x8017).to_bytes(2, "big")  # TPM_ST_ATTEST_CERTIFY
    assert reverted(harness, "parseQuote", bytes(certify_bytes)).reason is Reason.TPM_QUOTE_TYPE


def test_every_truncation_and_trailing_byte_is_malformed(harness: Any, rsa_ak: SoftAk) -> None:
    attest = rsa_ak.quote(b"\x22" * 32, {0: bytes(32), 23: b"\x01" * 32}).attest
    assert parsed(harness, attest)["pcrMask"] == 1 | 1 << 23
    for cut in range(6, len(attest)):
        assert reverted(harness, "parseQuote", attest[:cut]).reason is Reason.TPM_ATTEST_MALFORMED, cut
    assert reverted(harness, "parseQuote", attest + b"\x00").reason is Reason.TPM_ATTEST_MALFORMED


def test_pcr_above_23_is_refused(harness: Any, rsa_ak: SoftAk) -> None:
    attest = rsa_ak.quote(b"x", {23: bytes(32)}).parsed
    good = attest.to_bytes()
    assert parsed(harness, good)["pcrMask"] == 1 << 23
    raw = bytearray(good)
    sel = good.index(bytes.fromhex("00000001000b03"))
    raw[sel + 6] = 4  # sizeofSelect 4 ...
    raw[sel + 7 : sel + 10] = b"\x00\x00\x00"
    raw.insert(sel + 10, 0x01)  # ... selecting PCR 24
    assert reverted(harness, "parseQuote", bytes(raw)).reason is Reason.TPM_QUOTE_PCR_SELECTION


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_random_bytes_give_typed_errors(harness: Any, data: bytes) -> None:
    for fn in ("parseQuote", "parsePublic", "parseSignature"):
        try:
            getattr(harness.functions, fn)(data).call()
        except ContractCustomError as exc:
            assert chain_error(exc, harness.abi).reason is not Reason.CHAIN_REVERTED


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0, max_value=10_000), value=st.integers(min_value=0, max_value=255))
def test_mutated_quote_parses_like_python_or_fails_typed(
    harness: Any, rsa_ak: SoftAk, position: int, value: int
) -> None:
    attest = bytearray(rsa_ak.quote(b"\x33" * 32, {0: bytes(32), 1: b"\x05" * 32}).attest)
    attest[position % len(attest)] = value
    try:
        python = TpmsAttest.from_bytes(bytes(attest))
    except Exception:  # noqa: BLE001 - Python refuses: the contract must refuse with a typed error too
        python = None
    try:
        got = parsed(harness, bytes(attest))
    except ContractCustomError as exc:
        assert chain_error(exc, harness.abi).reason is not Reason.CHAIN_REVERTED
        return
    assert python is not None
    assert got["pcrDigest"] == python.pcr_digest and got["extraData"] == python.extra_data


# --- public keys and signatures -------------------------------------------------------------------


def test_parse_public_rsa_and_p256(harness: Any, rsa_ak: SoftAk, p256_ak: SoftAk) -> None:
    key = harness.functions.parsePublic(rsa_ak.public_bytes).call()
    assert key[0] == 0x0001 and key[1] == AK_OBJECT_ATTRIBUTES
    assert key[2] == rsa_ak.public.modulus and key[3] == 65537
    key = harness.functions.parsePublic(p256_ak.public_bytes).call()
    assert key[0] == 0x0023 and key[4] == p256_ak.public.x and key[5] == p256_ak.public.y


def test_public_key_without_restricted_sign_is_refused(harness: Any, rsa_ak: SoftAk) -> None:
    plain = TpmtPublic.from_public_key(
        rsa.generate_private_key(65537, 2048).public_key(), object_attributes=AK_OBJECT_ATTRIBUTES & ~(1 << 16)
    )
    assert reverted(harness, "parsePublic", plain.to_bytes()).reason is Reason.TPM_AK_ATTRIBUTES
    assert harness.functions.parsePublic(rsa_ak.public_bytes).call()[1] == AK_OBJECT_ATTRIBUTES


def test_public_key_other_scheme_size_or_exponent_is_refused(harness: Any, rsa_ak: SoftAk) -> None:
    assert harness.functions.parsePublic(rsa_ak.public_bytes).call()[3] == 65537
    pss = TpmtPublic.from_public_key(rsa.generate_private_key(65537, 2048).public_key(), scheme=0x0016)
    assert reverted(harness, "parsePublic", pss.to_bytes()).reason is Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED
    rsa3072 = TpmtPublic.from_public_key(rsa.generate_private_key(65537, 3072).public_key())
    assert reverted(harness, "parsePublic", rsa3072.to_bytes()).reason is Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED
    explicit = dataclasses.replace(rsa_ak.public, exponent=65537)
    assert harness.functions.parsePublic(explicit.to_bytes()).call()[3] == 65537
    e3 = TpmtPublic.from_public_key(rsa.generate_private_key(3, 2048).public_key())
    assert e3.exponent == 3
    assert reverted(harness, "parsePublic", e3.to_bytes()).reason is Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED


@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_verify_soft_quote_and_tampered_twins(harness: Any, rsa_ak: SoftAk, p256_ak: SoftAk, kind: str) -> None:
    ak = rsa_ak if kind == "rsa" else p256_ak
    other = SoftAk(kind)
    quote = ak.quote(b"\x44" * 32, {0: bytes(32), 7: b"\x07" * 32})
    verify = harness.functions.verifyQuote
    assert verify(quote.attest, ak.public_bytes, quote.signature).call() is True
    tampered = bytearray(quote.attest)
    tampered[-1] ^= 1
    assert verify(bytes(tampered), ak.public_bytes, quote.signature).call() is False
    sig = bytearray(quote.signature)
    sig[-1] ^= 1
    assert verify(quote.attest, ak.public_bytes, bytes(sig)).call() is False
    assert verify(quote.attest, other.public_bytes, quote.signature).call() is False


def test_p256_high_and_low_s_both_verify(harness: Any, p256_ak: SoftAk) -> None:
    quote = p256_ak.quote(b"\x55" * 32, {0: bytes(32)})
    sig = TpmtSignature.from_bytes(quote.signature)
    flipped = TpmtSignature.ecdsa(TPM_ALG_SHA256, sig.r, P256_N - sig.s, 32).to_bytes()
    verify = harness.functions.verifyQuote
    assert verify(quote.attest, p256_ak.public_bytes, quote.signature).call() is True
    assert verify(quote.attest, p256_ak.public_bytes, flipped).call() is True
    wrong = TpmtSignature.ecdsa(TPM_ALG_SHA256, sig.r, (sig.s + 1) % P256_N, 32).to_bytes()
    assert verify(quote.attest, p256_ak.public_bytes, wrong).call() is False


def test_signature_of_the_other_key_type_is_refused(harness: Any, rsa_ak: SoftAk, p256_ak: SoftAk) -> None:
    quote = p256_ak.quote(b"z", {0: bytes(32)})
    assert harness.functions.verifyQuote(quote.attest, p256_ak.public_bytes, quote.signature).call() is True
    error = reverted(harness, "verifyQuote", quote.attest, rsa_ak.public_bytes, quote.signature)
    assert error.reason is Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED


def _azure_ak(vector: Path) -> TpmtPublic:
    jwk = next(k for k in json.loads((vector / "runtime_data.json").read_bytes())["keys"] if k["kid"] == "HCLAkPub")
    key = serialization.load_pem_public_key((vector / "ak_pub.pem").read_bytes())
    assert isinstance(key, rsa.RSAPublicKey) and jwk["kty"] == "RSA"
    return TpmtPublic.from_public_key(key)


AZURE_QUOTES = [
    "genoa-v3-hcl-trustee",
    "milan-v2-hcl-trustee",
    "milan-v3-hcl-trustee-ev0",
    "milan-v3-hcl-trustee-ev1",
    "milan-v3-hcl-trustee-ev2",
]


@pytest.mark.vectors
@pytest.mark.parametrize("name", AZURE_QUOTES)
def test_real_azure_quote_signatures(harness: Any, vectors: Path, name: str) -> None:
    vector = vectors / "azure" / name
    attest = (vector / "tpm_quote_attest.bin").read_bytes()
    ak = _azure_ak(vector).to_bytes()
    sig = TpmtSignature.rsassa(TPM_ALG_SHA256, (vector / "tpm_quote_sig.bin").read_bytes()).to_bytes()
    assert harness.functions.verifyQuote(attest, ak, sig).call() is True
    tampered = bytearray(attest)
    tampered[-5] ^= 0x10
    assert harness.functions.verifyQuote(bytes(tampered), ak, sig).call() is False


@pytest.mark.vectors
def test_real_gce_quote_signature(harness: Any, vectors: Path) -> None:
    vector = vectors / "tpm/gce-vtpm-cos85-nonce9009"
    ak = TpmtPublic.from_marshalled((vector / "ak_pub.tpmt").read_bytes()).to_bytes()
    attest = (vector / "quote_sha256_attest.bin").read_bytes()
    sig = (vector / "quote_sha256_sig.tpmt").read_bytes()
    assert harness.functions.verifyQuote(attest, ak, sig).call() is True
    assert harness.functions.verifyQuote(attest, ak, sig[:-1] + bytes([sig[-1] ^ 1])).call() is False


@pytest.mark.vectors
def test_real_gce_pcr_digest(harness: Any, vectors: Path) -> None:
    vector = vectors / "tpm/gce-vtpm-cos85-nonce9009"
    pcrs = json.loads((vector / "pcrs_sha256.json").read_text())
    values = [bytes.fromhex(pcrs[str(i)]) for i in range(24)]
    attest = TpmsAttest.from_bytes((vector / "quote_sha256_attest.bin").read_bytes())
    assert harness.functions.pcrDigest(values).call() == attest.pcr_digest
    values[10] = hashlib.sha256(values[10]).digest()
    assert harness.functions.pcrDigest(values).call() != attest.pcr_digest


# --- the bare form refreshCvm takes --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_verify_raw_and_its_twins(harness: Any, rsa_ak: SoftAk, p256_ak: SoftAk, kind: str) -> None:
    ak = rsa_ak if kind == "rsa" else p256_ak
    quote = ak.quote(b"\x66" * 32, {0: bytes(32), 23: b"\x17" * 32})
    key, signature = refresh_args(ak.public, quote.signature)
    assert harness.functions.keyBytes(ak.public_bytes).call() == key
    assert len(key) == (256 if kind == "rsa" else 64) and len(signature) == len(key)
    raw = harness.functions.verifyRaw
    assert raw(quote.attest, key, signature).call() is True
    assert raw(quote.attest, key, signature[:-1] + bytes([signature[-1] ^ 1])).call() is False
    assert raw(quote.attest[:-1] + bytes([quote.attest[-1] ^ 1]), key, signature).call() is False
    other_key, _ = refresh_args(SoftAk(kind).public, quote.signature)
    assert raw(quote.attest, other_key, signature).call() is False
    assert reverted(harness, "verifyRaw", quote.attest, key[:-1], signature).reason is Reason.TPM_PUBLIC_MALFORMED
    assert reverted(harness, "verifyRaw", quote.attest, key, signature[:-1]).reason is Reason.TPM_SIGNATURE_MALFORMED


def test_rsa_signature_not_below_the_modulus_is_refused(harness: Any, rsa_ak: SoftAk) -> None:
    """s + n encodes the same residue; OpenSSL (and the registry) accept only s < n."""
    quote = rsa_ak.quote(b"\x67" * 32, {0: bytes(32)})
    key, signature = refresh_args(rsa_ak.public, quote.signature)
    assert harness.functions.verifyRaw(quote.attest, key, signature).call() is True
    big = int.from_bytes(signature, "big") + int.from_bytes(key, "big")
    if big < 1 << 2048:
        assert harness.functions.verifyRaw(quote.attest, key, big.to_bytes(256, "big")).call() is False
    equal = key
    assert harness.functions.verifyRaw(quote.attest, key, equal).call() is False


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.binary(min_size=0, max_size=64), pcrs=st.sets(st.integers(0, 23), min_size=1, max_size=24))
def test_quote_nonce_matches_parse_quote(harness: Any, rsa_ak: SoftAk, extra: bytes, pcrs: set[int]) -> None:
    bank = pcr_bank()
    quote = rsa_ak.quote(extra, {i: bank[i] for i in pcrs})
    word, is_word, mask, digest = harness.functions.quoteNonce(quote.attest).call()
    full = parsed(harness, quote.attest)
    expected = (sum(1 << i for i in pcrs), quote.parsed.pcr_digest)
    assert (mask, digest) == (full["pcrMask"], full["pcrDigest"]) == expected
    assert is_word == (len(extra) == 32)
    assert word[: len(extra)] == extra[:32]
