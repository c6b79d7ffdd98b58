from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.deploy import make_image_dir


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small image build (platform azure) with disk.vhd, disk.vmdk and disk.tar.gz."""
    return make_image_dir(tmp_path_factory.mktemp("image"))
