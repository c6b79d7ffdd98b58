"""Fixtures for the wire-format parser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.offchain.abi.swtpm_process import Swtpm, missing_tools, running_swtpm


@pytest.fixture(scope="session")
def swtpm() -> Iterator[Swtpm]:
    """One real swtpm for the session's TPM cross-checks."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"swtpm / tpm2-tools not installed: {', '.join(missing)}")
    with running_swtpm() as tpm:
        yield tpm
