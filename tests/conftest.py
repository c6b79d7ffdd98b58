"""Fixtures every test package shares: where the real evidence lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def vectors_root() -> Path:
    """../shared/vectors, or $CVM_ATTEST_VECTORS. Read in place, never copied into the repository."""
    return Path(os.environ.get("CVM_ATTEST_VECTORS", ROOT.parent / "shared" / "vectors"))


@pytest.fixture(scope="session")
def vectors() -> Path:
    path = vectors_root()
    if not (path / "expected.json").is_file():
        pytest.skip(f"real evidence vectors not found at {path} (set CVM_ATTEST_VECTORS to ../shared/vectors)")
    return path
