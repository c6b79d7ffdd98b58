"""The real SEV-SNP and Azure vectors of ../shared/vectors (read in place, never copied).

Names are listed here (as in the vectors README) so tests can be parametrized at collection time;
the ``vectors`` fixture skips them when the directory is absent. Each vector is verified at a
pinned time inside its leaf's validity window (``leaf_not_before`` + 1 day from expected.json):
several real VLEKs have expired since, and the verdict must not depend on the day tests run.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offchain.abi.snp_report import SnpReport
from offchain.trust.certs import CertificateSet

SNP_REPORT_VECTORS = (
    "snp/genoa-vcek-v5-oak",
    "snp/milan-vcek-v2-gosevguest",
    "snp/milan-vcek-v2-trustee",
    "snp/milan-vcek-v2-virtee",
    "snp/milan-vcek-v3-oak-oc",
    "snp/milan-vcek-v3-oak-rk",
    "snp/milan-vcek-v5-gcp-teekit",
    "snp/milan-vcek-v5-vmpl1-gcp-teekit",
    "snp/milan-vcek-v5-vmpl1-x25519-gcp-teekit",
    "snp/milan-vlek-v2-aws-constellation-2023",
    "snp/milan-vlek-v2-aws-constellation-2024",
    "snp/milan-vlek-v3-aws-constellation",
    "snp/milan-vlek-v3-vmpl1-trustee",
    "snp/turin-vcek-v5-oak",
)
NEGATIVE_VECTOR = "snp/negative-milan-vlek-v2-key-mismatch-constellation"
CERT_ONLY_VECTOR = "snp/turin-vcek-cert-only-virtee"
AZURE_HCL_VECTORS = (
    "azure/genoa-v3-hcl-trustee",
    "azure/milan-v2-hcl-trustee",
    "azure/milan-v3-hcl-trustee-ev0",
    "azure/milan-v3-hcl-trustee-ev1",
    "azure/milan-v3-hcl-trustee-ev2",
)
AZURE_REPORT_ONLY_VECTOR = "azure/milan-v2-constellation"
ALL_REPORT_VECTORS = SNP_REPORT_VECTORS + (NEGATIVE_VECTOR,) + AZURE_HCL_VECTORS + (AZURE_REPORT_ONLY_VECTOR,)
CERT_FILES = ("ark.pem", "ask.pem", "asvk.pem", "vcek.der", "vcek.pem", "vlek.der", "vlek.pem")


@dataclass(frozen=True)
class Vector:
    name: str
    directory: Path
    expected: dict[str, Any]
    certificates: CertificateSet

    @property
    def now(self) -> dt.datetime:
        """A moment inside the leaf's validity window (pinned: see module docstring)."""
        return dt.datetime.fromisoformat(self.expected["leaf_not_before"]) + dt.timedelta(days=1)

    @property
    def not_after(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.expected["leaf_not_after"])

    @property
    def report(self) -> SnpReport:
        return SnpReport.from_bytes((self.directory / "report.bin").read_bytes())

    def file(self, name: str) -> Path:
        return self.directory / name

    @property
    def leaf_file(self) -> Path:
        for name in ("vcek.der", "vcek.pem", "vlek.der", "vlek.pem"):
            if (self.directory / name).is_file():
                return self.directory / name
        raise FileNotFoundError(self.directory)

    @property
    def intermediate_file(self) -> Path:
        ask = self.directory / "ask.pem"
        return ask if ask.is_file() else self.directory / "asvk.pem"


@functools.cache
def _expected(root: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((root / "expected.json").read_text())
    return result


def load_vector(root: Path, name: str) -> Vector:
    directory = root / name
    # vcek.pem and vcek.der of azure/milan-v2-constellation are two downloads of one key: take one.
    files, leaf_taken = [], False
    for cert_file in CERT_FILES:
        path = directory / cert_file
        if not path.is_file():
            continue
        if cert_file.startswith(("vcek", "vlek")):
            if leaf_taken:
                continue
            leaf_taken = True
        files.append(path)
    return Vector(name, directory, _expected(root)[name], CertificateSet.from_files(files))
