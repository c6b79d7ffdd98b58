"""The agent's configuration: one frozen value built by the command line (agent.main) or by tests.

Defaults describe a real CVM: the kernel's TPM resource manager (``device:/dev/tpmrm0``), the
internal listener on a Unix socket for the workload (``/run/cvm-agent/internal.sock``, which the
image mounts into the workload's containers), the external one on every interface for verifiers
and operators, the workload started with ``podman-compose up -d --force-recreate``.
"""

from __future__ import annotations

import enum
import grp
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from offchain.abi.snp_report import Product
from offchain.devamd import DEFAULT_SIM_MEASUREMENT
from offchain.abi.workload import WORKLOAD_PCR
from offchain.errors import ParseError, Reason

from workload.archive import ArchiveLimits
from workload.compose import AGENT_SOCKET_DIR, AGENT_STATE_DIR, ComposeRules

#: The PCRs every quote covers (SHA-256 bank), following the TCG PC Client firmware profile:
#: 0-7 UEFI firmware, its configuration, option ROMs, boot manager, GPT and Secure Boot policy;
#: 8-9 the boot loader's kernel command line, kernel and initrd; 11-12 a unified kernel image and
#: its command line / credentials (systemd-stub); 23 the workload (always included). PCR 10 (IMA)
#: changes at run time and 14 (shim's MOK lists) is distribution specific, so neither is quoted by
#: default; ``--pcrs`` changes the selection.
DEFAULT_PCRS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, WORKLOAD_PCR)


DEFAULT_TCTI = "device:/dev/tpmrm0"
DEFAULT_STATE_DIR = Path(AGENT_STATE_DIR)
#: Where Linux exposes the firmware's TCG event log (securityfs, which systemd mounts).
DEFAULT_BOOT_EVENT_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
DEFAULT_INTERNAL = f"unix:{AGENT_SOCKET_DIR}/internal.sock"
DEFAULT_EXTERNAL = "0.0.0.0:8000"
#: ``--force-recreate``: podman-compose (1.0.3 in the image) otherwise keeps a running container of
#: the same service as it was, so an update's new compose file would not take effect.
DEFAULT_RUNNER = ("podman-compose", "up", "-d", "--force-recreate")
DEFAULT_IMAGE_LOADER = ("podman", "load", "-i")
DEFAULT_TSM_ROOT = Path("/sys/kernel/config/tsm/report")
DEFAULT_SEV_GUEST = Path("/dev/sev-guest")
TCTI_NAMES = ("device", "swtpm", "mssim")
#: ``sockaddr_un.sun_path`` holds 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107
#: The directory of the internal socket and the socket itself: the owner (the agent) and its group
#: (``--internal-group``, what the workload's containers run with) only.
SOCKET_DIRECTORY_MODE = 0o750
SOCKET_MODE = 0o660
#: At most this many golden ids consented to (configured and added at run time together).
MAX_CONSENTS = 256
CONSENTS_FILE = "golden-consents.json"


def _is_decimal(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts characters like "²" that ``int`` refuses."""
    return text.isascii() and text.isdigit()


class PlatformName(str, enum.Enum):
    """Where the SNP report comes from (agent.platforms)."""

    SNP = "snp"
    AZURE = "azure"
    SIM = "sim"
    SVSM = "svsm"


class AkKind(str, enum.Enum):
    """The attestation key's algorithm: RSA-2048 RSASSA-SHA256 or ECC P-256 ECDSA-SHA256."""

    RSA = "rsa"
    ECC = "ecc"


@dataclass(frozen=True, slots=True)
class Tcti:
    """A tpm2-tss TCTI: loader name and its configuration string (``swtpm:host=..,port=..``)."""

    name: str
    conf: str

    @classmethod
    def parse(cls, text: str) -> Tcti:
        """``device:/dev/tpmrm0``, ``swtpm:host=127.0.0.1,port=2321`` or ``mssim:...``."""
        name, sep, conf = text.partition(":")
        if not sep or name not in TCTI_NAMES or not conf:
            raise ParseError(
                Reason.INPUT_INVALID, f"--tpm must be one of {', '.join(n + ':...' for n in TCTI_NAMES)}, got {text!r}"
            )
        return cls(name, conf)

    def __str__(self) -> str:
        return f"{self.name}:{self.conf}"


@dataclass(frozen=True, slots=True)
class Listen:
    """A listener address ``HOST:PORT`` (IPv6 hosts in brackets)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        host, sep, port_text = text.rpartition(":")
        if not sep or not _is_decimal(port_text) or not 0 <= int(port_text) <= 65535:
            raise ParseError(Reason.INPUT_INVALID, f"listener must be HOST:PORT, got {text!r}")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise ParseError(Reason.INPUT_INVALID, f"listener host must be an IP address, got {host!r}") from None
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UnixListen:
    """A Unix socket listener ``unix:/ABSOLUTE/PATH`` (agent.listeners creates it safely)."""

    path: Path

    @classmethod
    def parse(cls, text: str) -> UnixListen:
        raw = text.removeprefix("unix:")
        if raw == text or not raw.startswith("/"):
            raise ParseError(Reason.INPUT_INVALID, f"a Unix socket listener is unix:/ABSOLUTE/PATH, got {text!r}")
        if "\0" in raw or len(os.fsencode(raw)) > MAX_SOCKET_PATH:
            raise ParseError(Reason.INPUT_INVALID, f"a Unix socket path is at most {MAX_SOCKET_PATH} bytes")
        path = Path(raw)
        if raw.endswith("/") or ".." in path.parts or path.parent == path:
            raise ParseError(Reason.INPUT_INVALID, f"{raw!r} does not name a socket inside a directory")
        return cls(path)

    def __str__(self) -> str:
        return f"unix:{self.path}"


def parse_internal(text: str) -> Listen | UnixListen:
    """``--internal``: ``unix:/PATH`` (the default form), or ``HOST:PORT`` to opt in to TCP."""
    return UnixListen.parse(text) if text.startswith("unix:") else Listen.parse(text)


def parse_group(text: str) -> int:
    """``--internal-group``: a group name or a numeric gid."""
    if _is_decimal(text):
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except (KeyError, ValueError):
        raise ParseError(Reason.INPUT_INVALID, f"--internal-group: no group named {text!r}") from None


def parse_golden_id(text: str) -> bytes:
    """A golden measurement's canonical id: ``0x`` and 64 hex digits."""
    digits = text.removeprefix("0x")
    if digits == text or len(digits) != 64 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ParseError(Reason.INPUT_INVALID, f"a golden id is 0x and 64 hex digits, got {text[:80]!r}")
    return bytes.fromhex(digits)


def read_consent_file(path: Path) -> tuple[bytes, ...]:
    """``--consent-file``: one golden id per line; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(Reason.INPUT_INVALID, f"cannot read the consent file {path}: {exc}") from None
    ids: list[bytes] = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            ids.append(parse_golden_id(entry))
        except ParseError as exc:
            raise ParseError(Reason.INPUT_INVALID, f"{path}:{number}: {exc.detail}") from None
    return tuple(ids)


def parse_pcrs(text: str) -> tuple[int, ...]:
    """``"0-7,11,23"`` as sorted PCR indices of a 24-PCR bank; PCR23 is always added."""
    pcrs: set[int] = {WORKLOAD_PCR}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        if not _is_decimal(low) or (sep and not _is_decimal(high)):
            raise ParseError(Reason.INPUT_INVALID, f"--pcrs: {part!r} is not N or N-M")
        first, last = int(low), int(high) if sep else int(low)
        if not 0 <= first <= last <= 23:
            raise ParseError(Reason.INPUT_INVALID, f"--pcrs: {part!r} is outside 0..23")
        pcrs.update(range(first, last + 1))
    return tuple(sorted(pcrs))


def parse_measurement(text: str) -> bytes:
    """``--sim-measurement``: 48 bytes as 96 hex digits."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise ParseError(Reason.INPUT_INVALID, "--sim-measurement is not hex") from None
    if len(value) != 48:
        raise ParseError(Reason.INPUT_INVALID, f"--sim-measurement must be 48 bytes, got {len(value)}")
    return value


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything the agent needs to start (see ``cvm-agent --help`` for each option)."""

    platform: PlatformName
    tcti: Tcti
    state_dir: Path
    workload_dir: Path
    workload_from: Path | None = None
    internal: Listen | UnixListen = field(default_factory=lambda: parse_internal(DEFAULT_INTERNAL))
    internal_group: int | None = None
    external: Listen | None = field(default_factory=lambda: Listen.parse(DEFAULT_EXTERNAL))
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ak: AkKind = AkKind.RSA
    pcrs: tuple[int, ...] = DEFAULT_PCRS
    sim_measurement: bytes = DEFAULT_SIM_MEASUREMENT
    product: Product | None = None
    reset_pcr23: bool = False
    start_workload: bool = True
    runner: tuple[str, ...] = DEFAULT_RUNNER
    image_loader: tuple[str, ...] = DEFAULT_IMAGE_LOADER
    runner_timeout: float = 600.0
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    golden_lifetime: int = 86400
    tsm_root: Path = DEFAULT_TSM_ROOT
    sev_guest: Path = DEFAULT_SEV_GUEST
    snp_privlevel: int | None = None
    sim_debug: bool = False
    sim_svsm: bool = False
    #: The firmware's TCG event log that ``GET /boot-event-log`` serves; None: serve none.
    boot_event_log: Path | None = DEFAULT_BOOT_EVENT_LOG
    #: Golden ids this CVM consents to be attested against (``--consent-golden``, ``--consent-file``);
    #: ``POST /golden-consents`` adds more at run time, kept in :attr:`consents_path`.
    consented_goldens: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if WORKLOAD_PCR not in self.pcrs:
            raise ParseError(Reason.INPUT_INVALID, "the quote's PCR selection must include PCR23")
        if list(self.pcrs) != sorted(set(self.pcrs)) or not all(0 <= p <= 23 for p in self.pcrs):
            raise ParseError(Reason.INPUT_INVALID, "PCR selection must be unique ascending indices 0..23")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ParseError(Reason.INPUT_INVALID, "--tls-cert and --tls-key go together")
        if len(self.sim_measurement) != 48:
            raise ParseError(Reason.INPUT_INVALID, "the simulated launch measurement is 48 bytes")
        if not self.runner:
            raise ParseError(Reason.INPUT_INVALID, "the runner command must not be empty")
        if self.snp_privlevel is not None and not 0 <= self.snp_privlevel <= 3:
            raise ParseError(Reason.INPUT_INVALID, "--snp-privlevel is a VMPL, 0..3")
        if self.internal_group is not None and not isinstance(self.internal, UnixListen):
            raise ParseError(Reason.INPUT_INVALID, "--internal-group applies to a unix: internal listener only")
        if any(len(golden_id) != 32 for golden_id in self.consented_goldens):
            raise ParseError(Reason.INPUT_INVALID, "a golden id is 32 bytes")
        if len(set(self.consented_goldens)) > MAX_CONSENTS:
            raise ParseError(Reason.INPUT_INVALID, f"at most {MAX_CONSENTS} golden ids may be consented to")
        if self.sim_debug and self.platform is not PlatformName.SIM:
            raise ParseError(Reason.INPUT_INVALID, "--sim-debug applies to the sim platform only")
        if self.sim_svsm and self.platform is not PlatformName.SIM:
            raise ParseError(Reason.INPUT_INVALID, "--sim-svsm applies to the sim platform only")
        if _inside(self.consents_path, self.workload_dir):
            # The golden id covers PCR23, which measures the workload's config/: a consent kept there
            # would change the id it names, and an update would replace it.
            raise ParseError(Reason.INPUT_INVALID, "the state directory must not be inside the workload directory")

    @property
    def event_log_path(self) -> Path:
        """The PCR23 event log, JSON lines (docs/formats.md); the image's boot step writes the same file."""
        return self.state_dir / "event-log.jsonl"

    @property
    def consents_path(self) -> Path:
        """The golden ids consented to at run time (``POST /golden-consents``), outside the workload."""
        return self.state_dir / CONSENTS_FILE

    @property
    def compose_rules(self) -> ComposeRules:
        """What the workload's containers may not mount (workload.compose): this agent's state and
        workload directories; its internal socket's directory is the one path they may (read-only)."""
        internal = self.internal.path.parent.resolve() if isinstance(self.internal, UnixListen) else None
        return ComposeRules(
            state_dir=PurePosixPath(self.state_dir.resolve()),
            workload_dir=PurePosixPath(self.workload_dir.resolve()),
            socket_dir=None if internal is None else PurePosixPath(internal),
        )

    @property
    def sim_dir(self) -> Path:
        """The simulated platform's development AMD chain (``ark.pem`` is what verifiers pin)."""
        return self.state_dir / "sim"


def _inside(path: Path, directory: Path) -> bool:
    """Whether ``path`` is ``directory`` or below it, once both are made absolute and resolved."""
    return path.resolve().is_relative_to(directory.resolve())
