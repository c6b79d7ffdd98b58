"""Fixtures of the image tests: the real systemd EFI stub and a UKI built from it."""

from __future__ import annotations

import pytest

from image.uki import SYSTEMD_STUB
from tests.unit.image.tools import Payload, tool_or_skip


@pytest.fixture(scope="session")
def stub() -> bytes:
    if not SYSTEMD_STUB.is_file():
        pytest.skip(f"{SYSTEMD_STUB} not installed (Debian package systemd-boot-efi)")
    tool_or_skip("objcopy")
    return SYSTEMD_STUB.read_bytes()


@pytest.fixture(scope="session")
def payload() -> Payload:
    return Payload()


@pytest.fixture(scope="session")
def uki(stub: bytes, payload: Payload) -> bytes:
    return payload.build(stub)
