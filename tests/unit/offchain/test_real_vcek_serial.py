"""Every real VCEK/VLEK has serial number 0 (PROTOCOL.md, "Trust roots").

``cryptography`` parses that today with a deprecation warning and says a future release will
refuse it. pyproject.toml bounds the version; this test loads real leaves with plain
``cryptography`` so an upgrade that starts refusing them fails here the day it lands, and checks
that the project's loader keeps accepting them without the warning leaking to users.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from offchain.trust.certs import load_certificates

LEAVES = ["snp/milan-vcek-v2-gosevguest/vcek.der", "snp/turin-vcek-v5-oak/vcek.der", "snp/milan-vlek-v3-vmpl1-trustee/vlek.der"]


@pytest.mark.parametrize("leaf", LEAVES)
def test_cryptography_still_loads_serial_zero(vectors: Path, leaf: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cert = x509.load_der_x509_certificate((vectors / leaf).read_bytes())
        assert cert.serial_number == 0
    assert any(issubclass(w.category, CryptographyDeprecationWarning) for w in caught)


@pytest.mark.parametrize("leaf", LEAVES)
def test_the_loader_accepts_them_quietly(vectors: Path, leaf: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (cert,) = load_certificates(vectors / leaf)
    assert cert.serial_number == 0
