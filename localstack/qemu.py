"""Boot a built CVM image under QEMU on this machine: q35, OVMF, swtpm as its TPM 2.0, TCG.

No SEV-SNP here (no AMD host, and no KVM): the VM is an ordinary UEFI guest whose TPM is a real
TPM 2.0 (swtpm, through QEMU's CRB interface), which is what the image's boot path measures into.
The image's agent runs ``--platform sim`` for such a VM (docs/image.md, "Booting it here").

* Firmware: Debian's ``ovmf`` (``OVMF_CODE_4M.fd``, Secure Boot off) and a private copy of its
  variable store with one boot entry, ``\\EFI\\BOOT\\BOOTX64.EFI`` without optional data, first in
  ``BootOrder`` (written with virt-firmware's ``virt-fw-vars``). The entries OVMF makes by itself
  pass a GUID as load options, which systemd-stub would take for the kernel command line.
* TPM: ``swtpm socket --tpm2`` on a Unix control socket in the work directory; QEMU starts it up.
* Disk: virtio-blk, ``snapshot=on`` (the image file is never written).
* Network: user-mode, the agent's port 8000 forwarded from a port on 127.0.0.1 chosen at run time.
* Console: the serial port, written to ``console.log`` in the work directory.

:func:`booted_vm` starts both processes and always stops them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from offchain.errors import PlatformError, Reason

HOST = "127.0.0.1"
AGENT_GUEST_PORT = 8000
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
BOOT_FILE = "\\EFI\\BOOT\\BOOTX64.EFI"
_POLL_S = 0.5
_STOP_S = 10
_PORT_ATTEMPTS = 5
_BIND_CHECK_S = 1.0
_HOSTFWD_FAILED = "Could not set up host forwarding"


def qemu_available() -> str | None:
    """Why this machine cannot boot an image, or None when it can."""
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("swtpm", "swtpm")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    for firmware in (OVMF_CODE, OVMF_VARS):
        if not firmware.is_file():
            return f"{firmware} is missing (Debian package ovmf)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def firmware_variables(out: Path) -> None:
    """OVMF's variable store with the one boot entry the image needs (module docstring)."""
    done = subprocess.run(
        [sys.executable, "-m", "virt.firmware.vars", "--input", str(OVMF_VARS), "--output", str(out),
         "--append-boot-filepath", BOOT_FILE],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if done.returncode != 0 or not out.is_file():
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"virt-fw-vars could not write {out}: {done.stderr.strip()}")


@dataclass(slots=True)
class RunningVm:
    """A booted (or booting) VM: its processes, console and the agent's forwarded address."""

    qemu: subprocess.Popen[bytes]
    swtpm: subprocess.Popen[bytes]
    console_path: Path
    agent_port: int
    started: float

    @property
    def agent_url(self) -> str:
        return f"http://{HOST}:{self.agent_port}"

    def console(self) -> str:
        try:
            return self.console_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.qemu.poll() is None

    def wait_for_console(self, text: str, timeout: float) -> bool:
        """Whether ``text`` appears on the console within ``timeout`` seconds (False once QEMU exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.console():
                return True
            if not self.running():
                return text in self.console()
            time.sleep(_POLL_S)
        return False

    def wait_for_agent(self, timeout: float, path: str = "/healthz") -> float:
        """Seconds from QEMU's start to the agent's first answer on ``path``; PlatformError
        (``platform.unavailable``) with the console's tail when it does not answer in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            try:
                with urllib.request.urlopen(self.agent_url + path, timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - self.started
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(_POLL_S)
        tail = "\n".join(self.console().splitlines()[-25:])
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE,
                            f"the agent in the VM did not answer within {timeout:.0f} s; console:\n{tail}")

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.qemu.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        for process in (self.qemu, self.swtpm):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(_STOP_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def start_vm(disk: Path, work: Path, *, memory_mib: int = 2048, cpus: int = 2) -> RunningVm:
    """Start swtpm and QEMU for ``disk``, with their files in the directory ``work``."""
    why = qemu_available()
    if why is not None:
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, why)
    work.mkdir(parents=True, exist_ok=True)
    (work / "tpm").mkdir(exist_ok=True)
    variables, control, console = work / "OVMF_VARS.fd", work / "swtpm.sock", work / "console.log"
    firmware_variables(variables)
    for _ in range(_PORT_ATTEMPTS):
        swtpm = _start_swtpm(work, control)
        port = _free_port()
        log = (work / "qemu.log").open("wb")
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", str(memory_mib),
             "-smp", str(cpus), "-display", "none", "-no-reboot", "-monitor", "none", "-serial", f"file:{console}",
             "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
             "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
             "-drive", f"file={disk},format=raw,if=virtio,snapshot=on",
             "-chardev", f"socket,id=chrtpm,path={control}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
             "-device", "tpm-crb,tpmdev=tpm0",
             "-netdev", f"user,id=net0,hostfwd=tcp:{HOST}:{port}-:{AGENT_GUEST_PORT}",
             "-device", "virtio-net-pci,netdev=net0"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        log.close()
        # Another process may take the port between our probe and QEMU's bind: QEMU then exits at
        # once (and swtpm, started with --terminate, with it); both are started again on another port.
        try:
            qemu.wait(_BIND_CHECK_S)
        except subprocess.TimeoutExpired:
            return RunningVm(qemu=qemu, swtpm=swtpm, console_path=console, agent_port=port, started=started)
        swtpm.kill()
        swtpm.wait()
        output = (work / "qemu.log").read_text(errors="replace").strip()
        if _HOSTFWD_FAILED not in output:
            raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"QEMU exited at start: {output}")
    raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"no free port for the agent after {_PORT_ATTEMPTS} attempts")


def _start_swtpm(work: Path, control: Path) -> subprocess.Popen[bytes]:
    """swtpm for one QEMU, on the Unix control socket ``control`` (state in ``work/tpm``)."""
    control.unlink(missing_ok=True)
    swtpm = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={work / 'tpm'}", "--ctrl", f"type=unixio,path={control}",
         "--terminate", "--log", f"file={work / 'swtpm.log'}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not control.exists():
        if swtpm.poll() is not None or time.monotonic() > deadline:
            swtpm.kill()
            swtpm.wait()
            raise PlatformError(Reason.TPM_UNAVAILABLE, f"swtpm did not open {control}; see {work / 'swtpm.log'}")
        time.sleep(0.05)
    return swtpm


@contextmanager
def booted_vm(disk: Path, work: Path, **options: int) -> Iterator[RunningVm]:
    """:func:`start_vm`, and both processes stopped however the block ends."""
    vm = start_vm(disk, work, **options)
    try:
        yield vm
    finally:
        vm.stop()
