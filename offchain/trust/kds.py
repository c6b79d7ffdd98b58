"""AMD Key Distribution Service client: certificates fetched only when a caller asks.

URLs (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification",
sections "VCEK certificate" and "Certificate chain"):

* ``{base}/vcek/v1/{Milan|Genoa|Turin}/cert_chain``: ASK then ARK, PEM.
* ``{base}/vlek/v1/{Milan|Genoa|Turin}/cert_chain``: ASVK then ARK, PEM.
* ``{base}/vcek/v1/{Milan|Genoa|Turin}/crl`` and ``{base}/vlek/v1/.../crl``: the ARK's CRL, DER
  (see :mod:`offchain.verify.revocation`).
* ``{base}/vcek/v1/{Product}/{hwID}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..``: the VCEK, DER.
  ``hwID`` is CHIP_ID in lower-case hex, its first 8 bytes on Turin, whose query starts with
  ``fmcSPL``; the SPLs are the report's REPORTED_TCB. A VLEK is never served: the cloud provider
  hands it to the guest, so it must come with the evidence.

Nothing here opens a connection by itself: the caller passes a *fetcher* (``url -> bytes``), e.g.
:class:`UrllibFetcher`, and an optional on-disk cache directory. Every failure is a
:class:`~offchain.errors.CollateralError` (retryable).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from cryptography import x509

from offchain.abi.snp_report import Product, SignerKind, TcbVersion
from offchain.errors import CollateralError, CvmAttestError, Reason
from offchain.files import write_atomically
from offchain.trust.certs import CertificateSet, CertRole, classify, load_crl, parse_certificate, parse_certificates

KDS_BASE_URL = "https://kdsintf.amd.com"
#: KDS answers are a few kilobytes; anything beyond this is not a certificate.
MAX_RESPONSE_BYTES = 64 * 1024

Fetcher = Callable[[str], bytes]
"""Fetch a URL and return its body; raise CollateralError on any failure."""

T = TypeVar("T")

_KDS_PRODUCT = {Product.MILAN: "Milan", Product.GENOA: "Genoa", Product.TURIN: "Turin"}


class UrllibFetcher:
    """A :data:`Fetcher` over ``urllib`` with a timeout and a response-size limit."""

    def __init__(self, timeout: float = 15.0, max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes

    def __call__(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": "cvm-attest"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) only)
                body: bytes = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            reason = Reason.COLLATERAL_UNAVAILABLE if exc.code == 404 else Reason.COLLATERAL_FETCH_FAILED
            raise CollateralError(reason, f"KDS answered HTTP {exc.code} for {url}", url=url, status=exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise CollateralError(Reason.COLLATERAL_FETCH_FAILED, f"cannot fetch {url}: {exc}", url=url) from None
        if len(body) > self.max_bytes:
            raise CollateralError(Reason.COLLATERAL_FETCH_FAILED, f"KDS response for {url} is too large", url=url)
        return body


class KdsClient:
    """Builds KDS URLs, fetches through the given fetcher, caches answers on disk.

    The cache holds raw KDS answers under a name derived from the URL. Certificate entries never go
    stale by themselves: a certificate chain and a VCEK for one chip and TCB do not change, and
    their validity is checked at verification time anyway. A CRL entry is used only until its
    nextUpdate. A cache entry that does not parse is fetched again.
    """

    def __init__(self, fetcher: Fetcher, *, base_url: str = KDS_BASE_URL, cache_dir: Path | None = None) -> None:
        self.fetcher = fetcher
        self.base_url = base_url.rstrip("/")
        self.cache_dir = cache_dir
        self._crls: dict[str, x509.CertificateRevocationList] = {}  # in memory too: a relayer asks every pass

    # --- URLs ------------------------------------------------------------------------------

    def cert_chain_url(self, product: Product, signer: SignerKind) -> str:
        """``/vcek/v1/{product}/cert_chain`` (ASK, ARK) or ``/vlek/v1/{product}/cert_chain`` (ASVK, ARK)."""
        return f"{self.base_url}/{signer.value}/v1/{_KDS_PRODUCT[product]}/cert_chain"

    def crl_url(self, product: Product, signer: SignerKind) -> str:
        """``/vcek/v1/{product}/crl`` or ``/vlek/v1/{product}/crl``: the ARK's CRL for that key kind."""
        return f"{self.base_url}/{signer.value}/v1/{_KDS_PRODUCT[product]}/crl"

    def vcek_url(self, product: Product, chip_id: bytes, tcb: TcbVersion) -> str:
        """The VCEK for a chip (hwID) at a reported TCB."""
        hwid = hwid_for(product, chip_id)
        spls = f"blSPL={tcb.bootloader:02d}&teeSPL={tcb.tee:02d}&snpSPL={tcb.snp:02d}&ucodeSPL={tcb.microcode:02d}"
        if product is Product.TURIN:
            spls = f"fmcSPL={tcb.fmc:02d}&" + spls
        return f"{self.base_url}/vcek/v1/{_KDS_PRODUCT[product]}/{hwid.hex()}?{spls}"

    # --- fetching --------------------------------------------------------------------------

    def fetch_cert_chain(self, product: Product, signer: SignerKind) -> tuple[x509.Certificate, x509.Certificate]:
        """``(intermediate, ark)`` for a product line: the ASK for VCEKs, the ASVK for VLEKs."""
        url = self.cert_chain_url(product, signer)
        inter_role = CertRole.intermediate_for(signer)

        def parse(body: bytes) -> tuple[x509.Certificate, x509.Certificate]:
            certs = parse_certificates(body)
            found = CertificateSet.of(certs)
            intermediate, ark = found.get(inter_role), found.ark
            if len(certs) != 2 or intermediate is None or ark is None:
                raise CollateralError(
                    Reason.COLLATERAL_FETCH_FAILED, f"{url} did not return the {inter_role.value.upper()} and ARK"
                )
            return intermediate, ark

        return self._get(url, parse)

    def fetch_vcek(self, product: Product, chip_id: bytes, tcb: TcbVersion) -> x509.Certificate:
        """The VCEK for this chip and reported TCB."""
        url = self.vcek_url(product, chip_id, tcb)

        def parse(body: bytes) -> x509.Certificate:
            cert = parse_certificate(body)
            if classify(cert) is not CertRole.VCEK:
                raise CollateralError(Reason.COLLATERAL_FETCH_FAILED, f"{url} did not return a VCEK")
            return cert

        return self._get(url, parse)

    def fetch_crl(self, product: Product, signer: SignerKind, *, now: datetime) -> x509.CertificateRevocationList:
        """The ARK's CRL for this product line and key kind; a cached one only while ``now`` is before
        its nextUpdate. Whether it is genuine and current is checked by
        :func:`offchain.verify.revocation.check_revocation`, not here."""
        url = self.crl_url(product, signer)
        moment = now.astimezone(timezone.utc)

        def current(crl: x509.CertificateRevocationList) -> bool:
            return crl.next_update_utc is not None and moment <= crl.next_update_utc

        held = self._crls.get(url)
        if held is not None and current(held):
            return held
        crl = self._get(url, load_crl, fresh=current)
        self._crls[url] = crl
        return crl

    def _cache_path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"kds-{hashlib.sha256(url.encode()).hexdigest()[:40]}.bin"

    def _get(self, url: str, parse: Callable[[bytes], T], fresh: Callable[[T], bool] = lambda _value: True) -> T:
        path = self._cache_path(url)
        cached = None if path is None else _read_cache(path, parse, fresh)
        if cached is not None:
            return cached
        body = self.fetcher(url)
        try:
            value = parse(body)
        except CollateralError:
            raise
        except CvmAttestError as exc:
            raise CollateralError(
                Reason.COLLATERAL_FETCH_FAILED, f"{url} returned nothing usable: {exc.detail}", url=url
            ) from None
        if path is not None:
            _write_atomically(path, body)
        return value


def _read_cache(path: Path, parse: Callable[[bytes], T], fresh: Callable[[T], bool]) -> T | None:
    """The value cached at ``path``; None when it is absent, unreadable, damaged or stale (it is fetched again)."""
    try:
        cached = parse(path.read_bytes())
    except (CvmAttestError, OSError):
        return None
    return cached if fresh(cached) else None


def hwid_for(product: Product, chip_id: bytes) -> bytes:
    """The hwID KDS indexes VCEKs by: CHIP_ID, only its first 8 bytes on Turin."""
    return chip_id[:8] if product is Product.TURIN else chip_id


def _write_atomically(path: Path, body: bytes) -> None:
    try:
        write_atomically(path, body)
    except OSError as exc:
        raise CollateralError(
            Reason.COLLATERAL_FETCH_FAILED, f"cannot write the KDS cache {path}: {exc.strerror or exc}"
        ) from None
