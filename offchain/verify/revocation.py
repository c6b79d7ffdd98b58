"""Revocation: a verified AMD chain checked against the ARK's certificate revocation list.

AMD KDS publishes one CRL per product line and key kind (``/vcek/v1/{Product}/crl`` and
``/vlek/v1/{Product}/crl``, DER), issued and signed by the ARK with the same RSASSA-PSS SHA-384
parameters as the certificates. It covers what the ARK issues, the intermediates (ASK/ASVK), so
only the intermediate's serial is looked up. The leaves are not on it: a CRL speaks for its issuer's
certificates only (RFC 5280, 5.1), AMD gives every VCEK serial 0, and a compromised chip or TCB is
handled by a new TCB (a new VCEK) and the golden measurement's minimum TCB, not by a list.

:func:`check_revocation` runs after :func:`offchain.verify.chain.verify_chain`, so it knows which
ARK the CRL must come from. It fails closed:

* ``snp.crl.invalid``: the CRL is not issued by this chain's ARK (another product line, another
  root) or its signature is not the ARK's RSASSA-PSS SHA-384 signature;
* ``snp.crl.stale``: the verification time is before thisUpdate or after nextUpdate (or the CRL
  has no nextUpdate): an old CRL cannot vouch that nothing was revoked since;
* ``snp.chain.revoked``: the intermediate is listed, whatever its revocation date (a revoked AMD
  key is not trusted for earlier reports either).

A CRL is *collateral*: where it comes from is the caller's choice (:func:`crl_from_file`, or
:meth:`offchain.trust.kds.KdsClient.fetch_crl` through :func:`crl_from_kds`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from offchain.errors import Reason, VerificationError
from offchain.trust.certs import MAX_CRL_BYTES, CertRole, load_crl, read_file
from offchain.verify.chain import VerifiedChain, amd_pss_signed, utc

if TYPE_CHECKING:
    from offchain.trust.kds import KdsClient

#: The CRL for a verified chain at a verification time: from a file, from KDS, or anything else the
#: caller trusts to deliver one (``check_revocation`` checks it all the same).
CrlSource = Callable[[VerifiedChain, datetime], x509.CertificateRevocationList]


def check_revocation(chain: VerifiedChain, crl: x509.CertificateRevocationList, now: datetime) -> None:
    """Raise unless ``crl`` is the ARK's current CRL and does not list the chain's ASK/ASVK."""
    ark_name = chain.ark.subject.rfc4514_string()
    if crl.issuer != chain.ark.subject:
        raise VerificationError(
            Reason.CRL_INVALID,
            f"the CRL is issued by {crl.issuer.rfc4514_string()!r}, not by this chain's ARK {ark_name!r}",
            issuer=crl.issuer.rfc4514_string(),
        )
    if not amd_pss_signed(chain.ark, crl.signature, crl.tbs_certlist_bytes, crl.signature_algorithm_oid):
        raise VerificationError(Reason.CRL_INVALID, f"the CRL is not signed by the ARK {ark_name!r} (RSASSA-PSS SHA-384)")
    moment = utc(now)
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    if next_update is None or not this_update <= moment <= next_update:
        window = f"{this_update.isoformat()} .. {next_update.isoformat() if next_update else '(no nextUpdate)'}"
        raise VerificationError(
            Reason.CRL_STALE,
            f"the CRL covers {window}, verification time is {moment.isoformat()}",
            this_update=this_update.isoformat(),
            next_update=None if next_update is None else next_update.isoformat(),
        )
    role, cert = CertRole.intermediate_for(chain.signer), chain.intermediate
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None:
        raise VerificationError(
            Reason.CHAIN_REVOKED,
            f"the {role.value.upper()} (serial {cert.serial_number:#x}) is revoked by the ARK's CRL"
            f" since {entry.revocation_date_utc.isoformat()}",
            role=role.value,
            serial=f"{cert.serial_number:#x}",
            revoked_at=entry.revocation_date_utc.isoformat(),
        )


def crl_from_file(path: Path) -> CrlSource:
    """The CRL in ``path`` (read now, so an unreadable file fails before any verification)."""
    crl = load_crl(read_file(path, limit=MAX_CRL_BYTES))
    return lambda _chain, _now: crl


def crl_from_kds(kds: KdsClient) -> CrlSource:
    """The chain's product-line CRL from AMD KDS (held in memory, and on disk with a cache directory,
    until its nextUpdate)."""
    return lambda chain, now: kds.fetch_crl(chain.product, chain.signer, now=now)
