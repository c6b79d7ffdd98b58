"""Fixtures every test package shares: where the real evidence lives; the Hypothesis profiles.

Hypothesis profiles (``CVM_ATTEST_HYPOTHESIS``): ``ci`` (what .ci/run uses) draws the same examples
on every run, so CI's verdict on a commit does not depend on the draw; ``explore`` draws 1,000
fresh examples where a test does not set its own count, for hunting; unset, each run draws fresh
examples (Hypothesis's default).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=1000, print_blob=True)
settings.load_profile(os.environ.get("CVM_ATTEST_HYPOTHESIS", "default"))

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
