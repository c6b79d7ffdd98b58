"""What a workload's ``docker-compose.yml`` may not give a container (docs/agent.md, "What a workload
may not do").

PCR23 is resettable at locality 0 (TPM PC Client profile). A container that can open the TPM can
reset it and extend the previous golden events again, hiding the update that started it; so can one
that shares the host's namespaces, reads or writes the agent's state, or drives the container
engine. The agent therefore refuses such a workload when it starts and on every update, before
anything is measured or written, and ``cvm-cli golden predict`` and the image build refuse it
before it is published or built.

Three steps, as everywhere in cvm-attest: :func:`parse_compose` checks structure only (YAML
``safe_load`` with unique keys, a size bound, the types of the keys the rules read;
``workload.compose_malformed``), :func:`compose_violations` lists *every* rule broken, each naming
its service and key, and :func:`check_compose` / :func:`check_workload_dir` raise
``workload.compose_forbidden`` carrying them all.

The rules read the Compose specification and podman-compose's extensions (the default runner):

* ``privileged`` (and ``build.privileged``) other than ``false``; ``devices`` of the TPM (``/dev/tpm*``), the SEV guest device
  (``/dev/sev*``), memory (``/dev/mem``, ``/dev/kmem``, ``/dev/port``), devices by number
  (``/dev/char``, ``/dev/block``) or a disk, or a directory holding one; any ``device_cgroup_rules``;
* ``cap_add`` of anything outside :data:`SAFE_CAPABILITIES`;
* ``network_mode``, ``pid``, ``ipc``, ``uts``, ``userns_mode``, ``cgroup`` (and ``build.network``)
  of ``host`` or of a namespace path (``ns:…``); a top-level network named ``host``;
* ``security_opt`` that turns off seccomp, AppArmor or SELinux, or unmasks ``/proc`` and ``/sys``;
* a host path mounted into a container (``volumes`` in short and long syntax, a top-level volume's
  ``driver_opts.device``, a top-level secret's or config's ``file``, ``x-podman.rootfs``) that is,
  lies under or contains ``/dev``, ``/sys``, ``/proc``, ``/run`` (the podman and docker sockets
  live there), ``/var/run``, the container engine's storage, the agent's state directory or the
  workload directory; inside the workload directory, ``docker-compose.yml``, ``images.txt`` and
  ``images/``. The one exception is the agent's socket directory (``/run/cvm-agent``) itself,
  read-only: it is how the workload reaches the internal API. ``~`` is refused (whose home is not
  known before the workload runs);
* a ``runtime`` named by path (a program of the host's, run outside any container) and any
  ``build.entitlements``;
* what would bring in text the check never reads: ``$`` interpolation in any value above, ``extends``
  from another file, top-level ``include``, podman-compose's ``x-podman.pod_args``; in a workload
  directory, any other compose file or ``.env`` the runner would read.

Host paths are compared as text after normalisation (``..`` folded, a relative path taken from the
workload directory); links on the CVM's file system are not followed, which is why ``/var/run`` (a
link to ``/run``) is listed itself.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from offchain.abi.workload import COMPOSE_FILE, IMAGES_DIR, IMAGES_FILE
from offchain.errors import ParseError, Reason, RequestError

#: A docker-compose.yml larger than this is refused before it is parsed (real ones are a few KiB;
#: the pure-Python parser reads about 200 KiB a second).
MAX_COMPOSE_BYTES = 256 << 10

#: The agent's state directory on a real CVM (agent.config's default; the image's boot step writes
#: the event log there too).
AGENT_STATE_DIR = PurePosixPath("/var/lib/cvm-agent")
#: The directory of the agent's internal Unix socket on a real CVM (agent.config's default), which
#: the workload's containers mount to reach the internal API.
AGENT_SOCKET_DIR = PurePosixPath("/run/cvm-agent")

#: What ``cap_add`` may name: Docker's default capability set (moby, oci/caps/defaults.go), which
#: podman's default set is a subset of. A workload may give back what Docker grants every container;
#: nothing that reaches the kernel, other processes or devices (SYS_ADMIN, SYS_RAWIO, SYS_PTRACE,
#: SYS_MODULE, NET_ADMIN, DAC_READ_SEARCH, BPF, ALL, ...).
SAFE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})

#: Files a Compose implementation reads from the project directory besides docker-compose.yml
#: (podman-compose's and Docker Compose's default names): compose files it would use or merge in,
#: and ``.env``, whose variables it interpolates and which can name other compose files.
UNCHECKED_COMPOSE_FILES = (
    "compose.yaml", "compose.yml", "compose.override.yaml", "compose.override.yml",
    "docker-compose.yaml", "docker-compose.override.yml", "docker-compose.override.yaml",
    "podman-compose.yaml", "podman-compose.yml",
    "container-compose.yml", "container-compose.yaml",
    "container-compose.override.yml", "container-compose.override.yaml",
    ".env",
)

_RUNNER_FILES = (COMPOSE_FILE, IMAGES_FILE, IMAGES_DIR)
_DISK = "a disk, which holds the agent's state and the workload"
_DEVICES = (
    ("/dev/tpm*", "the TPM"),
    ("/dev/sev*", "the SEV guest device"),
    ("/dev/mem", "the guest's memory, the agent's keys in it"),
    ("/dev/kmem", "the kernel's memory"),
    ("/dev/port", "the I/O ports"),
    ("/dev/char/*", "character devices by number, the TPM among them"),
    ("/dev/block/*", _DISK),
    ("/dev/disk/*", _DISK),
    ("/dev/mapper/*", _DISK),
    ("/dev/dm-*", _DISK),
    ("/dev/sd*", _DISK),
    ("/dev/vd*", _DISK),
    ("/dev/xvd*", _DISK),
    ("/dev/hd*", _DISK),
    ("/dev/nvme*", _DISK),
    ("/dev/mmcblk*", _DISK),
    ("/dev/md*", _DISK),
    ("/dev/loop*", _DISK),
)
_ENGINE_STORAGE = "the container engine's storage, the images the workload runs"
_HOST_PATHS = (
    (PurePosixPath("/dev"), "the host's devices, the TPM among them"),
    (PurePosixPath("/sys"), "the kernel's and the firmware's interfaces"),
    (PurePosixPath("/proc"), "every process of the CVM, the agent's memory among them"),
    (PurePosixPath("/run"), "the container engine's socket and the agent's"),
    (PurePosixPath("/var/run"), "a link to /run"),
    (PurePosixPath("/var/lib/containers"), _ENGINE_STORAGE),
    (PurePosixPath("/var/lib/docker"), _ENGINE_STORAGE),
)
_NAMESPACES = {
    "network_mode": "network", "pid": "PID", "ipc": "IPC", "uts": "UTS", "userns_mode": "user", "cgroup": "cgroup",
}
_UNCONFINED = {
    ("seccomp", "unconfined"): "turns off the system call filter",
    ("apparmor", "unconfined"): "turns off AppArmor confinement",
    ("label", "disable"): "turns off SELinux confinement",
    ("label", "type:spc_t"): "runs the container as SELinux's super-privileged type",
    ("label", "type:unconfined_t"): "runs the container unconfined by SELinux",
    ("systempaths", "unconfined"): "unmasks the /proc and /sys paths the engine hides",
}
_SECURITY_OPT = re.compile(r"([^=:]*)[=:](.*)", re.DOTALL)
_INTERPOLATED = "is interpolated from the runner's environment, so what runs is not what was checked"


@dataclass(frozen=True, slots=True)
class ComposeRules:
    """Where the CVM that runs the workload keeps what no container may reach.

    The defaults describe a real CVM; the agent passes its own directories
    (``AgentConfig.compose_rules``). ``socket_dir`` is the agent's socket directory, the only path
    under ``/run`` a container may mount (read-only); None when the internal API is on TCP.
    """

    state_dir: PurePosixPath = AGENT_STATE_DIR
    workload_dir: PurePosixPath = AGENT_STATE_DIR / "workload"
    socket_dir: PurePosixPath | None = AGENT_SOCKET_DIR

    def __post_init__(self) -> None:
        for path in (self.state_dir, self.workload_dir, self.socket_dir):
            if path is not None and (not path.is_absolute() or path == PurePosixPath("/")):
                raise ValueError(f"{path} must be an absolute path below /")


@dataclass(frozen=True, slots=True)
class ComposeViolation:
    """One rule a compose file breaks: the service (None for a top-level key), the key, the value."""

    service: str | None
    key: str
    value: str | None
    why: str

    def describe(self) -> str:
        where = "" if self.service is None else f"service {self.service!r}: "
        what = self.key if self.value is None else f"{self.key}: {self.value}"
        return f"{where}{what} {self.why}"

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "key": self.key, "value": self.value, "why": self.why}


class _UniqueKeyLoader(yaml.SafeLoader):
    """``safe_load`` that refuses a key given twice in one mapping (YAML 1.2, 3.2.1.1): Compose
    implementations disagree on which one wins, so the one checked might not be the one that runs."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise ConstructorError(
                        "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
            except TypeError:  # an unhashable key: the base constructor refuses it
                pass
        return super().construct_mapping(node, deep=deep)


def _malformed(detail: str) -> ParseError:
    return ParseError(Reason.WORKLOAD_COMPOSE_MALFORMED, f"{COMPOSE_FILE}: {detail}", file=COMPOSE_FILE)


def parse_compose(data: bytes) -> dict[str, Any]:
    """The compose document: a YAML mapping, at most :data:`MAX_COMPOSE_BYTES`, every key unique."""
    if len(data) > MAX_COMPOSE_BYTES:
        raise _malformed(f"{len(data)} bytes, at most {MAX_COMPOSE_BYTES}")
    try:
        doc = yaml.load(data.decode("utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
    except UnicodeDecodeError:
        raise _malformed("not UTF-8") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"
        raise _malformed(f"not YAML: {exc.problem or exc.context}{where}") from None
    except yaml.YAMLError as exc:
        raise _malformed(f"not YAML: {exc}") from None
    except RecursionError:
        raise _malformed("nested too deeply") from None
    if not isinstance(doc, dict):
        raise _malformed("the document is not a mapping")
    return _mapping(doc, "the document")


def _mapping(value: Any, what: str) -> dict[str, Any]:
    """``value`` as a mapping with string keys; None (an empty YAML value) is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise _malformed(f"{what} is not a mapping with string keys")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _malformed(f"{what} is not a list")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _malformed(f"{what} is not a string")
    return value


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _normalised(path: str) -> PurePosixPath:
    """An absolute path with ``.`` and ``..`` folded (POSIX keeps a leading ``//``; this does not)."""
    return PurePosixPath("/" + posixpath.normpath(path).lstrip("/"))


def _protection(path: PurePosixPath, protected: PurePosixPath, what: str) -> str | None:
    """Why mounting ``path`` reaches ``protected`` (``what`` it is), or None."""
    if path == protected:
        return f"mounts {path}: {what}"
    if protected in path.parents:
        return f"mounts {path}, inside {protected}: {what}"
    if path in protected.parents:
        return f"mounts {path}, which holds {protected}: {what}"
    return None


class _Check:
    """One walk over a compose document, collecting every violation."""

    def __init__(self, rules: ComposeRules) -> None:
        self.rules = rules
        self.found: list[ComposeViolation] = []

    def refuse(self, service: str | None, key: str, value: str | None, why: str) -> None:
        self.found.append(ComposeViolation(service, key, value, why))

    # --- host paths --------------------------------------------------------------------------

    def mount_problem(self, source: str, read_only: bool) -> str | None:
        """Why the host path ``source`` must not be mounted into a container, or None."""
        if "$" in source:
            return _INTERPOLATED
        if source.startswith("~"):
            return "mounts a path in the home directory of whoever runs the workload, which is not known here"
        rules = self.rules
        relative = not source.startswith("/")
        path = _normalised(f"{rules.workload_dir}/{source}" if relative else source)
        if path == rules.socket_dir:
            return None if read_only else "mounts the agent's socket directory writable: mount it read-only (:ro)"
        inside_workload = rules.workload_dir in path.parents
        if inside_workload and path.relative_to(rules.workload_dir).parts[0] in _RUNNER_FILES:
            return f"mounts {path}, which decides what the runner starts"
        workload_dir = (rules.workload_dir, "the workload directory, what the runner starts")
        if path == rules.workload_dir:
            return _protection(path, *workload_dir)
        protected = list(_HOST_PATHS)
        if not inside_workload:  # the workload directory may lie in the state directory; its own rule decides
            protected += [(rules.state_dir, "the agent's state directory, its event log and consents"), workload_dir]
        for base, what in protected:
            why = _protection(path, base, what)
            if why is not None:
                return why
        return None

    def mount(self, service: str | None, key: str, source: str, read_only: bool, shown: str) -> None:
        why = self.mount_problem(source, read_only)
        if why is not None:
            self.refuse(service, key, shown, why)

    def volume(self, service: str, entry: Any, what: str) -> None:
        """One ``volumes`` entry: ``[SOURCE:]TARGET[:MODE]`` or the long syntax's mapping."""
        if isinstance(entry, str):
            if "$" in entry:
                self.refuse(service, "volumes", entry, _INTERPOLATED)
                return
            parts = entry.split(":")
            if len(parts) > 3:
                raise _malformed(f"{what}: {entry!r} is not [SOURCE:]TARGET[:MODE]")
            if len(parts) == 1 or (len(parts) == 2 and not parts[1].startswith("/")):
                return  # an anonymous volume
            source, mode = parts[0], parts[2] if len(parts) == 3 else ""
            if source[:1] in ("/", ".", "~"):  # a bind mount; otherwise a named volume (checked at the top level)
                self.mount(service, "volumes", source, "ro" in mode.split(","), entry)
            return
        entry = _mapping(entry, what)
        kind, source = entry.get("type"), entry.get("source")
        if kind is not None:
            kind = _string(kind, f"{what}.type")
        if source is not None:
            source = _string(source, f"{what}.source")
        if "$" in (kind or "") + (source or ""):
            self.refuse(service, "volumes", source or kind, _INTERPOLATED)
            return
        if kind == "bind" or (kind is None and source is not None and source[:1] in ("/", ".", "~")):
            if source is None:
                raise _malformed(f"{what}: a bind mount needs a source")
            self.mount(service, "volumes", source, entry.get("read_only") is True, source)

    # --- per service ------------------------------------------------------------------------------

    def privileged(self, service: str, value: Any, key: str) -> None:
        if value is not None and value is not False:
            self.refuse(service, key, _scalar(value),
                        "gives the container every device of the host, the TPM among them, and every capability")

    def namespace(self, service: str, key: str, value: Any, namespace: str) -> None:
        if value is None:
            return
        mode = _string(value, f"service {service!r}: {key}").strip()
        if "$" in mode:
            self.refuse(service, key, mode, _INTERPOLATED)
        elif mode.lower() == "host":
            self.refuse(service, key, mode, f"shares the host's {namespace} namespace")
        elif mode.lower().startswith("ns:"):
            self.refuse(service, key, mode, f"joins a {namespace} namespace by its path on the host")

    def device(self, service: str, entry: Any, what: str) -> None:
        if isinstance(entry, str):
            source = entry.split(":", 1)[0]
        else:
            source = _string(_mapping(entry, what).get("source"), f"{what}.source")
        if "$" in source:
            self.refuse(service, "devices", source, _INTERPOLATED)
            return
        if not source.startswith("/"):
            return  # a CDI device name (vendor.com/class=name)
        path = _normalised(source)
        for pattern, what_it_is in _DEVICES:
            holder = PurePosixPath(pattern).parent
            if fnmatch.fnmatchcase(str(path), pattern):
                self.refuse(service, "devices", source, f"gives the container {what_it_is}")
                return
            if path == holder or path in holder.parents:
                self.refuse(service, "devices", source, f"gives the container {path}, which holds {what_it_is}")
                return

    def security_opt(self, service: str, option: str) -> None:
        if "$" in option:
            self.refuse(service, "security_opt", option, _INTERPOLATED)
            return
        match = _SECURITY_OPT.fullmatch(option.strip())
        if match is None:
            return
        name, setting = match.group(1).strip().lower(), match.group(2).strip().lower()
        if name == "unmask":
            self.refuse(service, "security_opt", option, "unmasks the /proc and /sys paths the engine hides")
        elif (name, setting) in _UNCONFINED:
            self.refuse(service, "security_opt", option, _UNCONFINED[(name, setting)])

    def build(self, service: str, build: Any) -> None:
        if not isinstance(build, dict):
            return  # a context path or URL only
        build = _mapping(build, f"service {service!r}: build")
        self.privileged(service, build.get("privileged"), "build.privileged")
        self.namespace(service, "build.network", build.get("network"), "network")
        if build.get("entitlements"):
            self.refuse(service, "build.entitlements", _scalar(build["entitlements"]),
                        "grants the build extra privileges (network.host, security.insecure)")

    def service(self, name: str, spec: Any) -> None:
        where = f"service {name!r}"
        if not isinstance(spec, dict):
            raise _malformed(f"{where} is not a mapping")
        spec = _mapping(spec, where)
        self.privileged(name, spec.get("privileged"), "privileged")
        for n, entry in enumerate(_list(spec.get("devices"), f"{where}: devices")):
            self.device(name, entry, f"{where}: devices[{n}]")
        for rule in _list(spec.get("device_cgroup_rules"), f"{where}: device_cgroup_rules"):
            self.refuse(name, "device_cgroup_rules", _scalar(rule),
                        "lets the container open devices by number, the TPM among them")
        for n, cap in enumerate(_list(spec.get("cap_add"), f"{where}: cap_add")):
            cap = _string(cap, f"{where}: cap_add[{n}]")
            if cap.strip().upper().removeprefix("CAP_") not in SAFE_CAPABILITIES:
                self.refuse(name, "cap_add", cap,
                            f"is not a capability a container may add ({', '.join(sorted(SAFE_CAPABILITIES))})")
        for key, namespace in _NAMESPACES.items():
            self.namespace(name, key, spec.get(key), namespace)
        for n, option in enumerate(_list(spec.get("security_opt"), f"{where}: security_opt")):
            self.security_opt(name, _string(option, f"{where}: security_opt[{n}]"))
        for n, entry in enumerate(_list(spec.get("volumes"), f"{where}: volumes")):
            self.volume(name, entry, f"{where}: volumes[{n}]")
        rootfs = spec.get("x-podman.rootfs")
        if rootfs is not None:
            self.mount(name, "x-podman.rootfs", _string(rootfs, f"{where}: x-podman.rootfs"), False, rootfs)
        runtime = spec.get("runtime")
        if runtime is not None and ("/" in _string(runtime, f"{where}: runtime") or "$" in runtime):
            self.refuse(name, "runtime", runtime, "runs a program of the host's, named by its path, outside any container")
        extends = spec.get("extends")
        if isinstance(extends, dict) and extends.get("file") is not None:
            self.refuse(name, "extends.file", _scalar(extends["file"]),
                        "brings in a service from another file, which is not checked")
        if "build" in spec:
            self.build(name, spec["build"])

    # --- top level ---------------------------------------------------------------------------------

    def top_level(self, doc: dict[str, Any]) -> None:
        if doc.get("include"):
            self.refuse(None, "include", _scalar(doc["include"]), "brings in other compose files, which are not checked")
        if "pod_args" in _mapping(doc.get("x-podman"), "x-podman"):
            self.refuse(None, "x-podman.pod_args", _scalar(doc["x-podman"]["pod_args"]),
                        "passes arguments to 'podman pod create', which can give every container the host's"
                        " namespaces or devices")
        for name, network in _mapping(doc.get("networks"), "networks").items():
            network = _mapping(network, f"networks.{name}")
            external = network.get("external")
            names = [network.get("name"), name if external else None]
            if isinstance(external, dict):
                names.append(external.get("name"))
            for text in (n for n in names if isinstance(n, str)):
                if "$" in text:
                    self.refuse(None, f"networks.{name}", text, _INTERPOLATED)
                elif text == "host":
                    self.refuse(None, f"networks.{name}", text, "is the host's network namespace")
        for name, volume in _mapping(doc.get("volumes"), "volumes").items():
            options = _mapping(_mapping(volume, f"volumes.{name}").get("driver_opts"), f"volumes.{name}.driver_opts")
            device = options.get("device")
            if isinstance(device, str) and (device[:1] in ("/", ".", "~") or "$" in device):
                self.mount(None, f"volumes.{name}.driver_opts.device", device, False, device)
        for section in ("secrets", "configs"):
            for name, item in _mapping(doc.get(section), section).items():
                source = _mapping(item, f"{section}.{name}").get("file")
                if source is not None:
                    source = _string(source, f"{section}.{name}.file")
                    self.mount(None, f"{section}.{name}.file", source, True, source)


def compose_violations(doc: Mapping[str, Any], rules: ComposeRules) -> list[ComposeViolation]:
    """Every rule of the module docstring that ``doc`` (from :func:`parse_compose`) breaks, in
    document order: services first, then top-level keys. Malformed checked keys raise ParseError."""
    check = _Check(rules)
    for name, spec in _mapping(doc.get("services"), "services").items():
        check.service(name, spec)
    check.top_level(dict(doc))
    return check.found


def _raise_for(violations: list[ComposeViolation]) -> None:
    if violations:
        raise RequestError(
            Reason.WORKLOAD_COMPOSE_FORBIDDEN,
            "; ".join(v.describe() for v in violations),
            file=COMPOSE_FILE,
            violations=[v.to_dict() for v in violations],
        )


def check_compose(data: bytes, rules: ComposeRules) -> None:
    """Refuse a ``docker-compose.yml`` that breaks any rule: ``workload.compose_malformed`` (ParseError)
    or ``workload.compose_forbidden`` (RequestError, every violation in ``context["violations"]``)."""
    _raise_for(compose_violations(parse_compose(data), rules))


def check_workload_dir(path: Path, rules: ComposeRules) -> None:
    """:func:`check_compose` for a workload directory (the agent at start and on update, ``cvm-cli
    golden predict --workload``, the image build), refusing too any other compose file or ``.env``
    the runner would read there. A directory without ``docker-compose.yml`` starts no container."""
    found = [
        ComposeViolation(None, name, None, "is read by the runner but neither measured nor checked: remove it")
        for name in UNCHECKED_COMPOSE_FILES
        if (path / name).is_symlink() or (path / name).exists()
    ]
    compose = path / COMPOSE_FILE
    if compose.is_symlink() or compose.exists():
        try:
            with open(compose, "rb") as f:
                data = f.read(MAX_COMPOSE_BYTES + 1)
        except OSError as exc:
            raise _malformed(f"cannot be read: {exc.strerror or exc}") from None
        found += compose_violations(parse_compose(data), rules)
    _raise_for(found)
