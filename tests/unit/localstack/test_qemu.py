"""localstack.qemu: QEMU and swtpm started and always stopped; a port taken meanwhile is retried."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import localstack.qemu as qemu
from localstack.qemu import booted_vm, qemu_available
from offchain.errors import PlatformError, Reason

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(qemu_available() is not None, reason=f"cannot boot here: {qemu_available()}")]


def test_a_port_taken_before_qemu_binds_it_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race between probing a free port and QEMU binding it, forced: the first port handed out is
    held by a listener, so QEMU exits; the second attempt (swtpm and QEMU started again) runs."""
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(1 << 20))  # nothing bootable: the firmware just keeps looking
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([int(taken.getsockname()[1])])
        real = qemu._free_port
        monkeypatch.setattr(qemu, "_free_port", lambda: next(ports, None) or real())
        with booted_vm(disk, tmp_path / "vm") as vm:
            assert vm.running() and vm.swtpm.poll() is None
            assert vm.agent_port != taken.getsockname()[1]
        assert vm.qemu.poll() is not None and vm.swtpm.poll() is not None  # both stopped


def test_qemu_failing_for_another_reason_is_reported(tmp_path: Path) -> None:
    with pytest.raises(PlatformError) as caught:
        with booted_vm(tmp_path / "no-such-disk.raw", tmp_path / "vm"):
            pass
    assert caught.value.reason is Reason.PLATFORM_UNAVAILABLE and "QEMU exited at start" in caught.value.detail
