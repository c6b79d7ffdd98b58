"""Off-chain verification throughput: ``scripts/bench offchain [--json]``.

Verifies one complete evidence bundle (direct binding, dev AMD chain, RSA-2048 AK, nine PCRs, a
three-item workload log, a golden measurement) again and again with ``verify_evidence``:

* ``verify_per_s_cached``: with a :class:`~offchain.verify.chain.ChainCache` already holding the
  chain, as a long-running verifier sees a chip it has seen before;
* ``verify_per_s_cold``: without a cache, so every verification also parses the three
  certificates and checks the three RSA-4096 RSASSA-PSS signatures of the chain;
* ``crypto_per_s``: in the same run, the bare cryptography every verification must do at least:
  one ECDSA P-384 verify (the report) plus one RSA-2048 verify (the quote).

The bundle is parsed from JSON once, as a server holds it after reading a request. The three
figures are timed in alternating bursts of ten calls (see :func:`interleaved`), so a change in
machine load hits all three alike and the ratio ``cached / crypto`` stays meaningful.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
import warnings
from collections.abc import Callable
from typing import cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from offchain.abi.binding import direct_report_data, offchain_extra_data
from offchain.abi.snp_report import Product, SignerKind
from offchain.abi.tpm import TPM_ALG_SHA256, TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE, PcrSelection, TpmsAttest, TpmtPublic, TpmtSignature
from offchain.abi.workload import WorkloadEvent, replay
from offchain.devamd import DevAmdChain
from offchain.evidence import EvidenceBundle, VerifiedEvidence, verify_evidence
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.trust.roots import TrustRoots
from offchain.verify.chain import ChainCache

NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
NONCE = b"benchmark nonce"


def build() -> tuple[EvidenceBundle, GoldenMeasurement, TrustRoots]:
    """A complete evidence bundle exactly as the agent serves one, from a fresh dev chain."""
    chain = DevAmdChain.generate(product=Product.GENOA, signer=SignerKind.VCEK, not_before=NOT_BEFORE)
    ak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ak_public = TpmtPublic.from_public_key(ak.public_key())
    events = [
        WorkloadEvent("image", "registry.example/app", hashlib.sha256(b"image").digest()),
        WorkloadEvent("compose", "docker-compose.yml", hashlib.sha256(b"compose").digest()),
        WorkloadEvent("config", "config/app.toml", hashlib.sha256(b"config").digest()),
    ]
    pcrs = {i: hashlib.sha256(bytes([i])).digest() for i in range(8)}
    pcrs[23] = replay(events)
    report = chain.sign(chain.report_template(measurement=bytes(48), report_data=direct_report_data(ak_public.to_bytes())))
    indices = tuple(sorted(pcrs))
    attest = TpmsAttest(
        magic=TPM_GENERATED_VALUE,
        type=TPM_ST_ATTEST_QUOTE,
        qualified_signer=ak_public.name(),
        extra_data=offchain_extra_data(NONCE),
        clock=1,
        reset_count=0,
        restart_count=0,
        safe=True,
        firmware_version=1,
        pcr_selections=(PcrSelection(TPM_ALG_SHA256, indices),),
        pcr_digest=hashlib.sha256(b"".join(pcrs[i] for i in indices)).digest(),
    ).to_bytes()
    signature = TpmtSignature.rsassa(TPM_ALG_SHA256, ak.sign(attest, padding.PKCS1v15(), hashes.SHA256()))
    doc = {
        "version": 1,
        "platform": "sim",
        "binding": "direct",
        "snp_report": report.to_bytes().hex(),
        "certificates": chain.certificates_pem(),
        "ak_public": ak_public.to_bytes().hex(),
        "quote": {"attest": attest.hex(), "signature": signature.to_bytes().hex()},
        "pcrs": {"sha256": {str(i): v.hex() for i, v in pcrs.items()}},
        "event_log": [e.to_json() for e in events],
        "nonce": {"form": "offchain", "value": NONCE.hex()},
    }
    bundle = EvidenceBundle.from_json(json.dumps(doc))
    golden = GoldenMeasurement.from_report(report, Product.GENOA, SignerKind.VCEK, Binding.DIRECT, {23: pcrs[23]}, events, 3600)
    return bundle, golden, TrustRoots().with_dev_root(chain.ark)


def interleaved(fns: dict[str, Callable[[], object]], seconds: float, burst: int = 10) -> dict[str, float]:
    """Calls per second of each function, timed in short alternating bursts for ``seconds`` each.

    Alternating bursts of a few milliseconds means a change in machine load (other processes on a
    shared runner) hits every measurement alike, so their ratio stays meaningful.
    """
    spent = dict.fromkeys(fns, 0.0)
    calls = dict.fromkeys(fns, 0)
    while min(spent.values()) < seconds:
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(burst):
                fn()
            spent[name] += time.perf_counter() - start
            calls[name] += burst
    return {name: calls[name] / spent[name] for name in fns}


def measure(seconds: float = 3.0) -> dict[str, float]:
    bundle, golden, roots = build()
    expected = offchain_extra_data(NONCE)
    cache = ChainCache()

    def cached() -> VerifiedEvidence:
        return verify_evidence(bundle, expected_extra_data=expected, golden=golden, roots=roots, now=NOW, chain_cache=cache)

    def cold() -> VerifiedEvidence:
        return verify_evidence(bundle, expected_extra_data=expected, golden=golden, roots=roots, now=NOW)

    warm = cold()  # also proves the bundle verifies before anything is timed
    cached()
    leaf_key = warm.chain.leaf_key
    report = bundle.snp_report
    report_sig = encode_dss_signature(report.signature_r, report.signature_s)
    signed = report.signed_bytes()
    ak = cast(rsa.RSAPublicKey, bundle.ak.public_key())  # build() makes an RSA-2048 AK
    quote_sig = bundle.quote_signature.signature

    def crypto() -> None:
        leaf_key.verify(report_sig, signed, ec.ECDSA(hashes.SHA384()))
        ak.verify(quote_sig, bundle.quote_attest, padding.PKCS1v15(), hashes.SHA256())

    rates = interleaved({"crypto_per_s": crypto, "verify_per_s_cached": cached, "verify_per_s_cold": cold}, seconds)
    return {key: round(value, 1) for key, value in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench offchain", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent measuring each figure")
    args = parser.parse_args(argv)
    # The dev chain's leaf has serial number 0 like AMD's; cryptography's warning about it is noise here.
    warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
    result = measure(args.seconds)
    if args.json:
        print(json.dumps({k: result[k] for k in ("verify_per_s_cached", "verify_per_s_cold", "crypto_per_s")}))
    else:
        ratio = result["verify_per_s_cached"] / result["crypto_per_s"]
        print(f"full evidence bundle, chain cached : {result['verify_per_s_cached']:>8.1f} verifications/s")
        print(f"full evidence bundle, cold         : {result['verify_per_s_cold']:>8.1f} verifications/s")
        print(f"bare P-384 + RSA-2048 verification : {result['crypto_per_s']:>8.1f} /s")
        print(f"cached / bare cryptography         : {ratio:>8.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
