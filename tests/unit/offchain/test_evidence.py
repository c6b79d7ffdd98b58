"""Evidence bundles end to end: dev-signed sim evidence, real Azure evidence, every step's twin."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.abi.binding import direct_report_data, offchain_extra_data, onchain_extra_data
from offchain.abi.hcl import HclReport
from offchain.abi.snp_report import Product, SignerKind
from offchain.abi.tpm import TPM_ALG_SHA256, TpmtPublic, TpmtSignature
from offchain.abi.workload import WorkloadEvent
from offchain.errors import CvmAttestError, ParseError, PolicyError, Reason, VerificationError
from offchain.evidence import (
    EvidenceBundle,
    OnchainNonce,
    offchain_expected_extra_data,
    onchain_expected_extra_data,
    verify_evidence,
)
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.trust.certs import CertificateSet, to_pem
from offchain.trust.kds import KdsClient
from offchain.trust.roots import TrustRoots
from offchain.verify.chain import ChainCache
from tests.support.evidence import (
    DEV_NOW,
    EVENTS,
    NONCE,
    ak_key,
    default_pcrs,
    dev_chain,
    make_parts,
)
from tests.support.snp_vectors import AZURE_HCL_VECTORS, load_vector

CHAIN_ID = 31337
REGISTRY = "0x" + "ab" * 20
CVM = "0x" + "cd" * 20
BLOCK_HASH = bytes(range(32))


def _roots(parts_or_chain: Any) -> TrustRoots:
    chain = getattr(parts_or_chain, "chain", parts_or_chain)
    return TrustRoots().with_dev_root(chain.ark)


def _verify(doc: dict[str, Any], *, nonce: bytes = NONCE, roots: TrustRoots | None = None, **kw: Any):
    bundle = EvidenceBundle.from_json(json.dumps(doc))
    roots = roots if roots is not None else TrustRoots().with_dev_root(dev_chain().ark)
    kw.setdefault("golden", None)
    return verify_evidence(bundle, expected_extra_data=offchain_expected_extra_data(bundle, nonce), roots=roots,
                           now=DEV_NOW, **kw)


def _verify_onchain(doc: dict[str, Any], *, block_hash: bytes = BLOCK_HASH, chain_id: int = CHAIN_ID,
                    registry: str = REGISTRY):
    bundle = EvidenceBundle.from_json(json.dumps(doc))
    expected = onchain_expected_extra_data(bundle, chain_id=chain_id, registry=registry, block_hash=block_hash)
    return verify_evidence(bundle, expected_extra_data=expected, roots=TrustRoots().with_dev_root(dev_chain().ark),
                           now=DEV_NOW, golden=None)


def _reason(fn: Any) -> Reason:
    with pytest.raises(CvmAttestError) as exc:
        fn()
    return exc.value.reason


# --- positive ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "signer", "ak"),
    [
        (Product.GENOA, SignerKind.VCEK, "rsa"),
        (Product.GENOA, SignerKind.VCEK, "ecc"),
        (Product.MILAN, SignerKind.VLEK, "rsa"),
        (Product.TURIN, SignerKind.VCEK, "ecc"),
    ],
    ids=["genoa-vcek-rsa", "genoa-vcek-p256", "milan-vlek-rsa", "turin-vcek-p256"],
)
def test_valid_sim_evidence_verifies(product: Product, signer: SignerKind, ak: str) -> None:
    parts = make_parts(product=product, signer=signer, ak=ak)
    verified = _verify(parts.to_json(), roots=_roots(parts))
    assert (verified.product, verified.signer, verified.binding) == (product, signer, Binding.DIRECT)
    assert verified.pcrs == default_pcrs() and verified.golden_id is None
    assert verified.report == parts.report


def test_round_trip() -> None:
    doc = make_parts().to_json()
    doc["cvm_address"] = CVM
    bundle = EvidenceBundle.from_json(doc)
    assert bundle.to_json() == doc
    assert EvidenceBundle.from_json(json.dumps(bundle.to_json())) == bundle


def test_with_a_golden_measurement() -> None:
    parts = make_parts()
    golden = GoldenMeasurement.from_report(
        parts.report, Product.GENOA, SignerKind.VCEK, Binding.DIRECT, {0: parts.pcrs[0], 23: parts.pcrs[23]}, EVENTS, 600
    )
    verified = _verify(parts.to_json(), golden=golden)
    assert verified.golden_id == golden.canonical_id()
    strict = GoldenMeasurement.from_json({**golden.to_json(), "vmpl": 1, "measurement": "00" * 48})
    with pytest.raises(PolicyError) as exc:
        _verify(parts.to_json(), golden=strict)
    assert exc.value.reasons == [Reason.POLICY_MEASUREMENT_MISMATCH, Reason.POLICY_VMPL_MISMATCH]
    assert exc.value.context["product"] == "genoa" and exc.value.context["signer"] == "vcek"


def test_a_golden_that_allows_debug_is_refused_unless_the_caller_allows_it() -> None:
    parts = make_parts()
    described = GoldenMeasurement.from_report(parts.report, Product.GENOA, SignerKind.VCEK, Binding.DIRECT)
    debug = GoldenMeasurement.from_json({**described.to_json(), "policy": {**described.to_json()["policy"], "debug_allowed": True}})
    with pytest.raises(PolicyError) as exc:
        _verify(parts.to_json(), golden=debug)
    assert exc.value.reasons == [Reason.POLICY_GOLDEN_ALLOWS_DEBUG]
    assert _verify(parts.to_json(), golden=debug, allow_debug_golden=True).golden_id == debug.canonical_id()


# --- negative twins, one per step ---------------------------------------------------------------


def test_not_pinned_without_the_dev_root() -> None:
    assert _reason(lambda: _verify(make_parts().to_json(), roots=TrustRoots())) is Reason.CHAIN_ROOT_NOT_PINNED


def test_wrong_nonce() -> None:
    assert _reason(lambda: _verify(make_parts().to_json(), nonce=b"another nonce")) is Reason.TPM_QUOTE_NONCE_MISMATCH


def test_the_raw_nonce_is_not_the_offchain_form() -> None:
    parts = make_parts(extra_data=NONCE)  # an agent that quoted the caller's bytes as they are
    assert _reason(lambda: _verify(parts.to_json())) is Reason.TPM_QUOTE_NONCE_MISMATCH


def test_a_pcr_off_by_one_bit() -> None:
    doc = make_parts().to_json()
    value = bytearray.fromhex(doc["pcrs"]["sha256"]["4"])
    value[0] ^= 1
    doc["pcrs"]["sha256"]["4"] = value.hex()
    assert _reason(lambda: _verify(doc)) is Reason.TPM_QUOTE_PCR_DIGEST_MISMATCH


def test_pcrs_must_be_the_quoted_selection() -> None:
    doc = make_parts().to_json()
    del doc["pcrs"]["sha256"]["3"]
    assert _reason(lambda: _verify(doc)) is Reason.TPM_QUOTE_PCR_SELECTION


def test_a_flipped_bit_in_the_report() -> None:
    doc = make_parts().to_json()
    raw = bytearray.fromhex(doc["snp_report"])
    raw[0x90] ^= 0x80  # MEASUREMENT
    doc["snp_report"] = raw.hex()
    assert _reason(lambda: _verify(doc)) is Reason.SNP_SIGNATURE_INVALID


def test_another_ak_than_the_report_binds() -> None:
    parts = make_parts(ak="rsa")
    other = make_parts(ak="ecc")
    doc = parts.to_json()
    doc["ak_public"], doc["quote"] = other.to_json()["ak_public"], other.to_json()["quote"]
    assert _reason(lambda: _verify(doc)) is Reason.BINDING_REPORT_DATA_MISMATCH


def test_an_ak_that_is_not_restricted() -> None:
    key = ak_key("rsa")
    public = TpmtPublic.from_public_key(key.public_key(), object_attributes=0x00040072)  # sign, not restricted
    parts = make_parts(report_data=direct_report_data(public.to_bytes()))
    parts.ak_public = public
    assert _reason(lambda: _verify(parts.to_json())) is Reason.TPM_AK_ATTRIBUTES


def test_a_tampered_event_log() -> None:
    doc = make_parts().to_json()
    changed = WorkloadEvent("config", "config/app.toml", hashlib.sha256(b"port = 1").digest())
    doc["event_log"][2] = changed.to_json()
    assert _reason(lambda: _verify(doc)) is Reason.EVENT_LOG_REPLAY_MISMATCH


def test_an_event_log_without_quoted_pcr23() -> None:
    pcrs = {i: v for i, v in default_pcrs().items() if i != 23}
    doc = make_parts(pcrs=pcrs).to_json()
    assert _reason(lambda: _verify(doc)) is Reason.EVENT_LOG_REPLAY_MISMATCH
    del doc["event_log"]
    assert _verify(doc).pcrs == pcrs  # without a log there is nothing to replay


def test_missing_certificates_are_incomplete_unless_given_or_fetched() -> None:
    parts = make_parts()
    doc = parts.to_json()
    doc["certificates"] = {"vcek": doc["certificates"]["vcek"]}
    assert _reason(lambda: _verify(doc)) is Reason.CHAIN_INCOMPLETE
    given = CertificateSet(ask=parts.chain.ask, ark=parts.chain.ark)
    assert _verify(doc, certificates=given).product is Product.GENOA
    served = {"https://kds.test/vcek/v1/Genoa/cert_chain": (to_pem(parts.chain.ask) + to_pem(parts.chain.ark)).encode()}
    requests: list[str] = []

    def fetch(url: str) -> bytes:
        requests.append(url)
        return served[url]

    assert _verify(doc, fetcher=KdsClient(fetch, base_url="https://kds.test")).product is Product.GENOA
    assert requests == ["https://kds.test/vcek/v1/Genoa/cert_chain"]


def test_certificates_given_by_the_caller_win() -> None:
    parts = make_parts()
    real_milan = dev_chain(Product.MILAN, SignerKind.VCEK)
    # Overriding the ARK with another (pinned) one breaks the chain: the caller's choice is used.
    roots = _roots(parts).with_dev_root(real_milan.ark)
    assert _reason(lambda: _verify(parts.to_json(), roots=roots, certificates=CertificateSet(ark=real_milan.ark))) is (
        Reason.CHAIN_PRODUCT_MISMATCH
    )


# --- on-chain form ---------------------------------------------------------------------------------


def _onchain_doc(cvm: str = CVM) -> dict[str, Any]:
    parts = make_parts(extra_data=onchain_extra_data(CHAIN_ID, REGISTRY, cvm, BLOCK_HASH))
    doc = parts.to_json()
    doc["cvm_address"] = CVM
    doc["nonce"] = {
        "form": "onchain",
        "chain_id": CHAIN_ID,
        "registry": REGISTRY,
        "block_number": 12,
        "block_hash": "0x" + BLOCK_HASH.hex(),
        "golden_id": "0x" + "ab" * 32,
        "consent": "0x" + "01" * 65,
    }
    return doc


def test_onchain_evidence() -> None:
    bundle = EvidenceBundle.from_json(_onchain_doc())
    assert isinstance(bundle.nonce, OnchainNonce) and bundle.nonce.block_number == 12
    assert bundle.nonce.golden_id == bytes.fromhex("ab" * 32) and len(bundle.nonce.consent) == 65
    assert _verify_onchain(_onchain_doc()).bundle.cvm_address == bytes.fromhex("cd" * 20)


def test_onchain_evidence_negative_twins() -> None:
    assert _reason(lambda: _verify_onchain(_onchain_doc(), block_hash=bytes(32))) is Reason.TPM_QUOTE_NONCE_MISMATCH
    assert _reason(lambda: _verify_onchain(_onchain_doc(), chain_id=1)) is Reason.TPM_QUOTE_NONCE_MISMATCH
    assert _reason(lambda: _verify_onchain(_onchain_doc(), registry="0x" + "99" * 20)) is Reason.TPM_QUOTE_NONCE_MISMATCH
    # The quote bound another CVM address than the bundle claims.
    assert _reason(lambda: _verify_onchain(_onchain_doc(cvm="0x" + "ee" * 20))) is Reason.TPM_QUOTE_NONCE_MISMATCH
    assert _reason(lambda: _verify_onchain(_onchain_doc(), block_hash=b"short")) is Reason.INPUT_INVALID
    doc = _onchain_doc()
    del doc["cvm_address"]
    assert _reason(lambda: EvidenceBundle.from_json(doc)) is Reason.EVIDENCE_MALFORMED


def test_the_verifier_not_the_evidence_chooses_the_nonce_form() -> None:
    # An on-chain bundle handed to an off-chain verifier must not turn its nonce into a block hash
    # with chain id and registry taken from the bundle (issue 11, item 7).
    onchain = EvidenceBundle.from_json(_onchain_doc())
    assert _reason(lambda: offchain_expected_extra_data(onchain, BLOCK_HASH)) is Reason.EVIDENCE_NONCE_FORM_MISMATCH
    offchain = make_parts().to_json()
    offchain["nonce"] = {"form": "offchain", "value": NONCE.hex()}
    bundle = EvidenceBundle.from_json(offchain)
    assert _reason(lambda: onchain_expected_extra_data(
        bundle, chain_id=CHAIN_ID, registry=REGISTRY, block_hash=BLOCK_HASH)) is Reason.EVIDENCE_NONCE_FORM_MISMATCH
    # A bundle that declares no form is checked in the form the caller chose: the quote decides.
    bare = EvidenceBundle.from_json(make_parts().to_json())
    assert offchain_expected_extra_data(bare, NONCE) == offchain_extra_data(NONCE)


@pytest.mark.parametrize("nonce", [b"", bytes(65)], ids=["empty", "65-bytes"])
def test_offchain_nonce_length(nonce: bytes) -> None:
    bundle = EvidenceBundle.from_json(make_parts().to_json())
    assert _reason(lambda: offchain_expected_extra_data(bundle, nonce)) is Reason.INPUT_INVALID


# --- real Azure evidence (third-party: the quote carries the raw nonce) ----------------------------


def _azure_doc(vectors: Path, name: str) -> tuple[dict[str, Any], bytes, Any]:
    v = load_vector(vectors, name)
    hcl = HclReport.from_bytes(v.file("hcl_report.bin").read_bytes())
    pcrs = json.loads(v.file("tpm_pcrs_sha256.json").read_text())
    doc = {
        "version": 1,
        "platform": "azure",
        "binding": "azure",
        "snp_report": v.file("report.bin").read_bytes().hex(),
        "hcl_report": v.file("hcl_report.bin").read_bytes().hex(),
        "certificates": {r.value: to_pem(v.certificates.get(r)) for r in v.certificates.roles()},
        "ak_public": TpmtPublic.from_public_key(hcl.ak_public_key()).to_bytes().hex(),
        "quote": {
            "attest": v.file("tpm_quote_attest.bin").read_bytes().hex(),
            "signature": TpmtSignature.rsassa(TPM_ALG_SHA256, v.file("tpm_quote_sig.bin").read_bytes()).to_bytes().hex(),
        },
        "pcrs": {"sha256": pcrs},
    }
    return doc, v.file("tpm_nonce.bin").read_bytes(), v.now


@pytest.mark.parametrize("name", AZURE_HCL_VECTORS)
def test_real_azure_evidence(vectors: Path, name: str) -> None:
    doc, nonce, now = _azure_doc(vectors, name)
    bundle = EvidenceBundle.from_json(doc)
    verified = verify_evidence(bundle, expected_extra_data=nonce, golden=None, roots=TrustRoots(), now=now)
    assert verified.binding is Binding.AZURE and verified.product.value in name
    with pytest.raises(VerificationError) as exc:
        verify_evidence(bundle, expected_extra_data=nonce + b"!", golden=None, roots=TrustRoots(), now=now)
    assert exc.value.reason is Reason.TPM_QUOTE_NONCE_MISMATCH


def test_real_azure_evidence_with_another_ak(vectors: Path) -> None:
    doc, nonce, now = _azure_doc(vectors, AZURE_HCL_VECTORS[1])
    other = TpmtPublic.from_public_key(ak_key("rsa").public_key())
    doc["ak_public"] = other.to_bytes().hex()
    bundle = EvidenceBundle.from_json(doc)
    with pytest.raises(VerificationError) as exc:
        verify_evidence(bundle, expected_extra_data=nonce, golden=None, roots=TrustRoots(), now=now)
    assert exc.value.reason is Reason.BINDING_AK_MISMATCH
    assert exc.value.context["product"] == "milan"


def test_azure_hcl_with_another_report(vectors: Path) -> None:
    doc, nonce, now = _azure_doc(vectors, AZURE_HCL_VECTORS[2])
    doc["hcl_report"] = (vectors / AZURE_HCL_VECTORS[3] / "hcl_report.bin").read_bytes().hex()
    bundle = EvidenceBundle.from_json(doc)
    with pytest.raises(VerificationError) as exc:
        verify_evidence(bundle, expected_extra_data=nonce, golden=None, roots=TrustRoots(), now=now)
    assert exc.value.reason is Reason.BINDING_HCL_REPORT_MISMATCH


# --- the chain cache ------------------------------------------------------------------------------


def test_the_chain_cache_serves_known_chains_only() -> None:
    cache = ChainCache()
    parts = make_parts()
    _verify(parts.to_json(), chain_cache=cache)
    size = len(cache)
    _verify(parts.to_json(), chain_cache=cache)
    assert len(cache) == size  # served from the cache
    # The same leaf text under a self-made ARK is another key: never served from the cache.
    doc = parts.to_json()
    doc["certificates"]["ark"] = to_pem(dev_chain(Product.GENOA, SignerKind.VLEK).ark)
    assert _reason(lambda: _verify(doc, chain_cache=cache)) is Reason.CHAIN_ROOT_NOT_PINNED
    # And a cached chain is not trusted under roots that no longer pin it.
    assert _reason(lambda: _verify(parts.to_json(), roots=TrustRoots(), chain_cache=cache)) is Reason.CHAIN_ROOT_NOT_PINNED


# --- malformed bundles -------------------------------------------------------------------------------


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    del out[key]
    return out


def _with(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


MALFORMED: list[tuple[str, Any, Reason]] = [
    ("not-json", lambda d: "{", Reason.EVIDENCE_MALFORMED),
    ("array", lambda d: [], Reason.EVIDENCE_MALFORMED),
    ("version", lambda d: _with(d, "version", 2), Reason.EVIDENCE_MALFORMED),
    ("platform", lambda d: _with(d, "platform", "tdx"), Reason.EVIDENCE_MALFORMED),
    ("binding-vs-platform", lambda d: _with(d, "binding", "azure"), Reason.EVIDENCE_MALFORMED),
    ("azure-without-hcl", lambda d: _with(_with(d, "binding", "azure"), "platform", "azure"), Reason.EVIDENCE_MALFORMED),
    ("hcl-on-direct", lambda d: _with(d, "hcl_report", "00"), Reason.EVIDENCE_MALFORMED),
    ("missing-report", lambda d: _without(d, "snp_report"), Reason.EVIDENCE_MALFORMED),
    ("missing-quote", lambda d: _without(d, "quote"), Reason.EVIDENCE_MALFORMED),
    ("unknown-key", lambda d: _with(d, "extra", 1), Reason.EVIDENCE_MALFORMED),
    ("report-not-hex", lambda d: _with(d, "snp_report", "zz"), Reason.EVIDENCE_MALFORMED),
    ("report-odd-hex", lambda d: _with(d, "snp_report", "abc"), Reason.EVIDENCE_MALFORMED),
    ("report-truncated", lambda d: _with(d, "snp_report", d["snp_report"][:-2]), Reason.SNP_REPORT_LENGTH),
    ("report-oversized", lambda d: _with(d, "snp_report", d["snp_report"] + "00"), Reason.SNP_REPORT_LENGTH),
    ("ak-garbage", lambda d: _with(d, "ak_public", "0001"), Reason.TPM_PUBLIC_MALFORMED),
    ("signature-garbage", lambda d: _with(d, "quote.signature", "ffff"), Reason.TPM_SIGNATURE_MALFORMED),
    ("quote-extra-key", lambda d: _with(d, "quote.pcrs", {}), Reason.EVIDENCE_MALFORMED),
    ("pcrs-sha1", lambda d: _with(d, "pcrs", {"sha1": {}}), Reason.EVIDENCE_MALFORMED),
    ("pcr-index", lambda d: _with(d, "pcrs.sha256.24", "00" * 32), Reason.EVIDENCE_MALFORMED),
    ("pcr-short", lambda d: _with(d, "pcrs.sha256.0", "00" * 31), Reason.EVIDENCE_MALFORMED),
    ("cert-role", lambda d: _with(d, "certificates.vcek2", "x"), Reason.EVIDENCE_MALFORMED),
    ("cert-not-text", lambda d: _with(d, "certificates.vcek", 5), Reason.EVIDENCE_MALFORMED),
    ("events-not-list", lambda d: _with(d, "event_log", {}), Reason.EVIDENCE_MALFORMED),
    ("event-digest-lies", lambda d: _with(d, "event_log.0", {**d["event_log"][0], "event_digest": "00" * 32}), Reason.EVIDENCE_MALFORMED),
    ("address-short", lambda d: _with(d, "cvm_address", "0x1234"), Reason.EVIDENCE_MALFORMED),
    ("nonce-form", lambda d: _with(d, "nonce", {"form": "magic"}), Reason.EVIDENCE_MALFORMED),
    ("nonce-too-long", lambda d: _with(d, "nonce", {"form": "offchain", "value": "00" * 65}), Reason.EVIDENCE_MALFORMED),
]


@pytest.mark.parametrize(("case", "mutate", "reason"), MALFORMED, ids=[c for c, _, _ in MALFORMED])
def test_malformed_bundles(case: str, mutate: Any, reason: Reason) -> None:
    doc = mutate(make_parts().to_json())
    with pytest.raises(ParseError) as exc:
        EvidenceBundle.from_json(doc if isinstance(doc, str) else json.dumps(doc))
    assert exc.value.reason is reason


def test_certificates_under_the_wrong_role_are_refused() -> None:
    doc = make_parts().to_json()
    doc["certificates"]["ask"], doc["certificates"]["vcek"] = doc["certificates"]["vcek"], doc["certificates"]["ask"]
    assert _reason(lambda: _verify(doc)) is Reason.EVIDENCE_MALFORMED
    doc = make_parts().to_json()
    doc["certificates"]["vcek"] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    assert _reason(lambda: _verify(doc)) is Reason.CERT_MALFORMED


def test_unreadable_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ParseError) as exc:
        EvidenceBundle.from_file(tmp_path / "missing.json")
    assert exc.value.reason is Reason.INPUT_UNREADABLE
    big = tmp_path / "big.json"
    big.write_bytes(b" " * ((1 << 20) + 10))
    with pytest.raises(ParseError) as exc:
        EvidenceBundle.from_file(big)
    assert exc.value.reason is Reason.EVIDENCE_MALFORMED


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=15,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_random_json_gives_only_typed_errors(value: Any) -> None:
    with pytest.raises(ParseError):
        EvidenceBundle.from_json(json.dumps(value))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_bundles_give_only_typed_errors(data: st.DataObject) -> None:
    doc = make_parts().to_json()
    key = data.draw(st.sampled_from(sorted(doc)))
    doc[key] = data.draw(json_values)
    try:
        _verify(doc)
    except CvmAttestError:
        return
    assert key in {"nonce", "certificates"} or doc == make_parts().to_json()


def test_deeply_nested_json_is_refused_before_parsing() -> None:
    for text in ("[" * 100_000, '{"a":' * 50_000):
        with pytest.raises(ParseError) as exc:
            EvidenceBundle.from_json(text)
        assert exc.value.reason is Reason.EVIDENCE_MALFORMED
