"""Real-evidence cases for the parser tests, listed at collection time from ../shared/vectors.

Each case is ``pytest.param(<directory name relative to vectors/>, id=<same>)``; tests take the
``vectors`` fixture too, so they skip cleanly when the vectors are absent (the lists are then
empty and pytest reports the empty parameter set as skipped).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from offchain.abi.snp_report import Product
from tests.conftest import vectors_root


def _dirs_with(filename: str, parts: tuple[str, ...] = ("snp", "azure")) -> list[Any]:
    root = vectors_root()
    found = sorted(
        f"{part}/{path.parent.name}" for part in parts for path in (root / part).glob(f"*/{filename}")
    )
    return [pytest.param(name, id=name) for name in found]


REPORT_DIRS = _dirs_with("report.bin")
HCL_DIRS = _dirs_with("hcl_report.bin", ("azure",))
LEAF_CERTS = [
    pytest.param(f"{case.values[0]}/{leaf}", id=f"{case.values[0]}/{leaf}")
    for case in _dirs_with("ark.pem")
    for leaf in ("vcek.der", "vcek.pem", "vlek.der", "vlek.pem")
    if (vectors_root() / case.values[0] / leaf).is_file()
]
AZURE_QUOTE_DIRS = _dirs_with("tpm_quote_attest.bin", ("azure",))
GCE = "tpm/gce-vtpm-cos85-nonce9009"
TRUSTEE_TPM = "tpm/trustee-tpm-evidence"
GCE_BANKS = ("sha1", "sha256", "sha384")


@cache
def expected(root: Path) -> dict[str, Any]:
    return json.loads((root / "expected.json").read_text())


def product_of(root: Path, case: str) -> Product:
    """The product line of a vector, from its ARK's common name (``ARK-Milan``)."""
    return Product.from_name(expected(root)[case]["ark_cn"])
