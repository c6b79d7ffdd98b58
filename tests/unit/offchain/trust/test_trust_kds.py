"""AMD KDS: URLs as AMD specifies them, fetched only through the caller's fetcher, cached on disk.

No network here: a fake fetcher serves the real vector files by URL, and the real urllib fetcher
is exercised against a local HTTP server on a port chosen at run time.
"""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.errors import CollateralError, Reason, VerificationError
from offchain.trust.certs import CertificateSet, CertRole, classify, load_certificates, read_file, to_der
from offchain.trust.amd_certs import shipped_chain
from offchain.trust.kds import KdsClient, UrllibFetcher, hwid_for
from offchain.trust.resolve import resolve_chain
from tests.support.evidence import DEV_NOW, dev_chain

BASE = "https://kds.test"
MILAN_V2 = "snp/milan-vcek-v2-gosevguest"
TURIN_V5 = "snp/turin-vcek-v5-oak"


class FakeKds:
    """A fetcher answering from a URL -> bytes table and recording every request."""

    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.requests: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.requests.append(url)
        if url not in self.answers:
            raise CollateralError(Reason.COLLATERAL_UNAVAILABLE, f"404 {url}")
        return self.answers[url]


def _report(vectors: Path, name: str) -> SnpReport:
    return SnpReport.from_bytes((vectors / name / "report.bin").read_bytes())


def test_vcek_url_milan(vectors: Path) -> None:
    report = _report(vectors, MILAN_V2)
    url = KdsClient(FakeKds({}), base_url=BASE).vcek_url(
        Product.MILAN, report.chip_id, report.tcb("reported", Product.MILAN)
    )
    assert url == (
        f"{BASE}/vcek/v1/Milan/{report.chip_id.hex()}?blSPL=02&teeSPL=00&snpSPL=05&ucodeSPL=68"
    )


def test_vcek_url_turin_uses_eight_byte_hwid_and_fmc(vectors: Path) -> None:
    report = _report(vectors, TURIN_V5)
    url = KdsClient(FakeKds({}), base_url=BASE).vcek_url(
        Product.TURIN, report.chip_id, report.tcb("reported", Product.TURIN)
    )
    assert url == f"{BASE}/vcek/v1/Turin/3b42092f69c656d3?fmcSPL=00&blSPL=01&teeSPL=00&snpSPL=02&ucodeSPL=71"
    assert hwid_for(Product.TURIN, report.chip_id) == bytes.fromhex("3b42092f69c656d3")
    assert hwid_for(Product.GENOA, report.chip_id) == report.chip_id


@pytest.mark.parametrize(
    ("product", "signer", "path"),
    [
        (Product.MILAN, SignerKind.VCEK, "/vcek/v1/Milan/cert_chain"),
        (Product.GENOA, SignerKind.VLEK, "/vlek/v1/Genoa/cert_chain"),
        (Product.TURIN, SignerKind.VCEK, "/vcek/v1/Turin/cert_chain"),
    ],
    ids=["milan-vcek", "genoa-vlek", "turin-vcek"],
)
def test_cert_chain_urls(product: Product, signer: SignerKind, path: str) -> None:
    assert KdsClient(FakeKds({}), base_url=BASE + "/").cert_chain_url(product, signer) == BASE + path


def _milan_answers(vectors: Path) -> dict[str, bytes]:
    report = _report(vectors, MILAN_V2)
    client = KdsClient(FakeKds({}), base_url=BASE)
    return {
        client.cert_chain_url(Product.MILAN, SignerKind.VCEK): (vectors / "amd-roots/milan/cert_chain_vcek.pem").read_bytes(),
        client.cert_chain_url(Product.MILAN, SignerKind.VLEK): (vectors / "amd-roots/milan/cert_chain_vlek.pem").read_bytes(),
        client.vcek_url(Product.MILAN, report.chip_id, report.tcb("reported", Product.MILAN)): (
            vectors / MILAN_V2 / "vcek.der"
        ).read_bytes(),
    }


def test_fetches_and_caches_on_disk(vectors: Path, tmp_path: Path) -> None:
    fake = FakeKds(_milan_answers(vectors))
    client = KdsClient(fake, base_url=BASE, cache_dir=tmp_path / "cache")
    ask, ark = client.fetch_cert_chain(Product.MILAN, SignerKind.VCEK)
    assert (classify(ask), classify(ark)) == (CertRole.ASK, CertRole.ARK)
    asvk, _ = client.fetch_cert_chain(Product.MILAN, SignerKind.VLEK)
    assert classify(asvk) is CertRole.ASVK
    report = _report(vectors, MILAN_V2)
    vcek = client.fetch_vcek(Product.MILAN, report.chip_id, report.tcb("reported", Product.MILAN))
    assert to_der(vcek) == (vectors / MILAN_V2 / "vcek.der").read_bytes()
    assert len(fake.requests) == 3
    # A second client on the same directory answers from disk without asking.
    again = FakeKds({})
    cached = KdsClient(again, base_url=BASE, cache_dir=tmp_path / "cache")
    cached.fetch_cert_chain(Product.MILAN, SignerKind.VCEK)
    cached.fetch_vcek(Product.MILAN, report.chip_id, report.tcb("reported", Product.MILAN))
    assert again.requests == []


def test_without_a_cache_every_call_fetches(vectors: Path) -> None:
    fake = FakeKds(_milan_answers(vectors))
    client = KdsClient(fake, base_url=BASE)
    client.fetch_cert_chain(Product.MILAN, SignerKind.VCEK)
    client.fetch_cert_chain(Product.MILAN, SignerKind.VCEK)
    assert len(fake.requests) == 2


def test_a_damaged_cache_entry_is_fetched_again(vectors: Path, tmp_path: Path) -> None:
    fake = FakeKds(_milan_answers(vectors))
    client = KdsClient(fake, base_url=BASE, cache_dir=tmp_path)
    client.fetch_cert_chain(Product.MILAN, SignerKind.VCEK)
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(b"garbage")
    client.fetch_cert_chain(Product.MILAN, SignerKind.VCEK)
    assert len(fake.requests) == 2
    assert load_certificates(entry)  # repaired


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"<html>rate limited</html>", "garbage"),
        (b"", "empty"),
        ("ask-only", "one certificate"),
        ("vlek-chain", "the other chain"),
    ],
    ids=["garbage", "empty", "ask-only", "wrong-chain"],
)
def test_bad_answers_are_collateral_errors(vectors: Path, body: bytes | str, what: str) -> None:
    if body == "ask-only":
        body = (vectors / "amd-roots/milan/ask.pem").read_bytes()
    elif body == "vlek-chain":
        body = (vectors / "amd-roots/milan/cert_chain_vlek.pem").read_bytes()
    assert isinstance(body, bytes)
    client = KdsClient(FakeKds({f"{BASE}/vcek/v1/Milan/cert_chain": body}), base_url=BASE)
    with pytest.raises(CollateralError) as exc:
        client.fetch_cert_chain(Product.MILAN, SignerKind.VCEK)
    assert exc.value.reason is Reason.COLLATERAL_FETCH_FAILED, what
    assert exc.value.retryable


def test_a_vcek_url_answering_another_certificate_is_refused(vectors: Path) -> None:
    report = _report(vectors, MILAN_V2)
    client = KdsClient(FakeKds({}), base_url=BASE)
    url = client.vcek_url(Product.MILAN, report.chip_id, report.tcb("reported", Product.MILAN))
    client.fetcher = FakeKds({url: (vectors / "amd-roots/milan/ask.pem").read_bytes()})
    with pytest.raises(CollateralError) as exc:
        client.fetch_vcek(Product.MILAN, report.chip_id, report.tcb("reported", Product.MILAN))
    assert exc.value.reason is Reason.COLLATERAL_FETCH_FAILED


def test_fetcher_failures_propagate() -> None:
    client = KdsClient(FakeKds({}), base_url=BASE)
    with pytest.raises(CollateralError) as exc:
        client.fetch_cert_chain(Product.GENOA, SignerKind.VCEK)
    assert exc.value.reason is Reason.COLLATERAL_UNAVAILABLE


# --- resolution: given certificates first, KDS only when passed ---------------------------


def test_resolve_completes_a_chain_from_kds(vectors: Path) -> None:
    report = _report(vectors, MILAN_V2)
    fake = FakeKds(_milan_answers(vectors))
    found = resolve_chain(CertificateSet(), report, kds=KdsClient(fake, base_url=BASE))
    assert classify(found.leaf) is CertRole.VCEK and classify(found.intermediate) is CertRole.ASK
    # A version-2 report has no CPUID product hint: Milan is asked first. The ASK and ARK are the
    # shipped ones (offchain.trust.amd_certs): KDS is not asked for them.
    client = KdsClient(fake, base_url=BASE)
    assert fake.requests == [client.vcek_url(Product.MILAN, report.chip_id, report.tcb("reported", Product.MILAN))]
    assert found.intermediate == shipped_chain(Product.MILAN, SignerKind.VCEK)[0]


def test_resolve_tries_genoa_after_milan_for_old_reports(vectors: Path) -> None:
    report = _report(vectors, MILAN_V2)
    fake = FakeKds({})
    with pytest.raises(CollateralError) as exc:
        resolve_chain(CertificateSet(), report, kds=KdsClient(fake, base_url=BASE))
    assert exc.value.reason is Reason.COLLATERAL_UNAVAILABLE
    assert ["/Milan/" in fake.requests[0], "/Genoa/" in fake.requests[1]] == [True, True]


def test_resolve_uses_the_cpuid_hint(vectors: Path) -> None:
    report = _report(vectors, TURIN_V5)
    fake = FakeKds({})
    with pytest.raises(CollateralError):
        resolve_chain(CertificateSet(), report, kds=KdsClient(fake, base_url=BASE))
    assert len(fake.requests) == 1 and "/vcek/v1/Turin/3b42092f69c656d3?" in fake.requests[0]


def test_resolve_without_kds_is_incomplete(vectors: Path) -> None:
    report = _report(vectors, MILAN_V2)
    with pytest.raises(VerificationError) as exc:
        resolve_chain(CertificateSet(), report)
    assert exc.value.reason is Reason.CHAIN_INCOMPLETE
    (vcek,) = load_certificates(vectors / MILAN_V2 / "vcek.der")
    found = resolve_chain(CertificateSet(vcek=vcek), report)  # completed offline from the shipped certificates
    assert (found.intermediate, found.ark) == shipped_chain(Product.MILAN, SignerKind.VCEK)
    genoa_ark = load_certificates(vectors / "amd-roots/genoa/ark.pem")[0]
    with pytest.raises(VerificationError) as exc:  # an ARK the shipped chain disagrees with is not replaced
        resolve_chain(CertificateSet(vcek=vcek, ark=genoa_ark), report)
    assert exc.value.reason is Reason.CHAIN_INCOMPLETE
    assert exc.value.context["missing"] == ["ask"]


def test_resolve_prefers_given_certificates(vectors: Path) -> None:
    report = _report(vectors, MILAN_V2)
    (vcek,) = load_certificates(vectors / MILAN_V2 / "vcek.der")
    given = CertificateSet.from_directory(vectors / "amd-roots/milan").over(CertificateSet(vcek=vcek))
    fake = FakeKds({})
    found = resolve_chain(given, report, kds=KdsClient(fake, base_url=BASE))
    assert fake.requests == [] and found.leaf is vcek


def test_a_vlek_never_comes_from_kds(vectors: Path) -> None:
    report = _report(vectors, "snp/milan-vlek-v3-vmpl1-trustee")
    fake = FakeKds(_milan_answers(vectors))
    with pytest.raises(VerificationError) as exc:
        resolve_chain(CertificateSet(), report, kds=KdsClient(fake, base_url=BASE))
    assert exc.value.reason is Reason.CHAIN_INCOMPLETE and fake.requests == []


# --- the real urllib fetcher against a local server ------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        status, body = self.routes.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


@pytest.fixture
def local_kds(vectors: Path) -> Iterator[str]:
    _Handler.routes = {
        "/vcek/v1/Milan/cert_chain": (200, (vectors / "amd-roots/milan/cert_chain_vcek.pem").read_bytes()),
        "/busy": (429, b"slow down"),
        "/big": (200, b"x" * 100),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_urllib_fetcher_against_a_local_server(local_kds: str, vectors: Path, tmp_path: Path) -> None:
    client = KdsClient(UrllibFetcher(timeout=5), base_url=local_kds, cache_dir=tmp_path)
    ask, ark = client.fetch_cert_chain(Product.MILAN, SignerKind.VCEK)
    assert to_der(ark) == to_der(load_certificates(vectors / "amd-roots/milan/ark.pem")[0])
    assert classify(ask) is CertRole.ASK
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/vcek/v1/Genoa/cert_chain", Reason.COLLATERAL_UNAVAILABLE),
        ("/busy", Reason.COLLATERAL_FETCH_FAILED),
        ("/big", Reason.COLLATERAL_FETCH_FAILED),
    ],
    ids=["404", "429", "too-large"],
)
def test_urllib_fetcher_errors(local_kds: str, path: str, reason: Reason) -> None:
    with pytest.raises(CollateralError) as exc:
        UrllibFetcher(timeout=5, max_bytes=50)(local_kds + path)
    assert exc.value.reason is reason


def test_urllib_fetcher_connection_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    with pytest.raises(CollateralError) as exc:
        UrllibFetcher(timeout=5)(f"http://127.0.0.1:{port}/vcek/v1/Milan/cert_chain")
    assert exc.value.reason is Reason.COLLATERAL_FETCH_FAILED


def test_unwritable_cache_is_reported(vectors: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    client = KdsClient(FakeKds(_milan_answers(vectors)), base_url=BASE, cache_dir=blocker / "sub")
    with pytest.raises(CollateralError) as exc:
        client.fetch_cert_chain(Product.MILAN, SignerKind.VCEK)
    assert exc.value.reason is Reason.COLLATERAL_FETCH_FAILED
    assert read_file(vectors / "amd-roots/milan/ark.pem")  # the inputs themselves are fine


# --- the ARK's CRL ---------------------------------------------------------------------------------


def test_crl_urls_per_product_and_key_kind() -> None:
    kds = KdsClient(FakeKds({}), base_url=BASE + "/")
    assert kds.crl_url(Product.MILAN, SignerKind.VCEK) == f"{BASE}/vcek/v1/Milan/crl"
    assert kds.crl_url(Product.TURIN, SignerKind.VLEK) == f"{BASE}/vlek/v1/Turin/crl"


def test_a_cached_crl_is_used_until_its_next_update(tmp_path: Path) -> None:
    dev = dev_chain(Product.GENOA)
    url = f"{BASE}/vcek/v1/Genoa/crl"
    old = dev.issue_crl(this_update=DEV_NOW - dt.timedelta(days=7), next_update=DEV_NOW)
    new = dev.issue_crl(revoked=(dev.ask.serial_number,), this_update=DEV_NOW, next_update=DEV_NOW + dt.timedelta(days=7))
    fake = FakeKds({url: old.public_bytes(serialization.Encoding.DER)})
    kds = KdsClient(fake, base_url=BASE, cache_dir=tmp_path)
    assert kds.fetch_crl(Product.GENOA, SignerKind.VCEK, now=DEV_NOW) == old
    assert kds.fetch_crl(Product.GENOA, SignerKind.VCEK, now=DEV_NOW) == old
    assert fake.requests == [url]  # the second answer came from the cache
    fake.answers[url] = new.public_bytes(serialization.Encoding.DER)
    later = DEV_NOW + dt.timedelta(seconds=1)  # past the cached CRL's nextUpdate: fetched again
    assert kds.fetch_crl(Product.GENOA, SignerKind.VCEK, now=later) == new
    assert fake.requests == [url, url]
    assert KdsClient(FakeKds({}), base_url=BASE, cache_dir=tmp_path).fetch_crl(
        Product.GENOA, SignerKind.VCEK, now=later
    ) == new  # and the cache now holds the new one


def test_a_kds_crl_that_is_not_one_is_a_collateral_error() -> None:
    kds = KdsClient(FakeKds({f"{BASE}/vcek/v1/Milan/crl": b"<html>maintenance</html>"}), base_url=BASE)
    with pytest.raises(CollateralError) as exc:
        kds.fetch_crl(Product.MILAN, SignerKind.VCEK, now=DEV_NOW)
    assert exc.value.reason is Reason.COLLATERAL_FETCH_FAILED
    with pytest.raises(CollateralError) as missing:
        kds.fetch_crl(Product.GENOA, SignerKind.VCEK, now=DEV_NOW)
    assert missing.value.reason is Reason.COLLATERAL_UNAVAILABLE


def test_a_crl_is_held_in_memory_until_its_next_update() -> None:
    dev = dev_chain(Product.GENOA)
    url = f"{BASE}/vcek/v1/Genoa/crl"
    crl = dev.issue_crl(this_update=DEV_NOW - dt.timedelta(days=1), next_update=DEV_NOW)
    fake = FakeKds({url: crl.public_bytes(serialization.Encoding.DER)})
    kds = KdsClient(fake, base_url=BASE)  # no cache directory: a relayer asks for it on every pass
    for _ in range(3):
        assert kds.fetch_crl(Product.GENOA, SignerKind.VCEK, now=DEV_NOW) == crl
    assert fake.requests == [url]
    kds.fetch_crl(Product.GENOA, SignerKind.VCEK, now=DEV_NOW + dt.timedelta(seconds=1))
    assert fake.requests == [url, url]


def test_a_vcek_no_product_line_has_names_every_line_tried(vectors: Path) -> None:
    """Issue 14, defect 11: a version 2 report names no product; KDS is asked for Milan, then Genoa."""
    report = _report(vectors, MILAN_V2)
    assert report.product_hint() is None
    with pytest.raises(CollateralError) as exc:
        resolve_chain(CertificateSet(), report, kds=KdsClient(FakeKds({}), base_url=BASE))
    assert exc.value.reason is Reason.COLLATERAL_UNAVAILABLE
    assert exc.value.context["products_tried"] == ["milan", "genoa"]
    assert "milan: 404" in exc.value.detail and "genoa: 404" in exc.value.detail
