"""What every cloud's deployment shares: the request, the image it uploads, the plan, the ledger,
the step runner, progress and waiting for the agent.

A deployment is a list of :class:`Step` (preflight, upload, image, network, vm). :func:`run_steps`
runs them in order and records in the :class:`Ledger` every resource a step creates, the moment the
cloud acknowledged it, and each step's outputs when it finished. Run again with the same ledger, a
deployment skips the finished steps and the interrupted one finds what it had already created;
:func:`destroy` deletes exactly the ledger's resources, newest first.
"""

from __future__ import annotations

import abc
import datetime
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, TextIO

from offchain.errors import CvmAttestError, DeployError, Reason, RequestError

#: The agent's external listener in the image (agent.config.DEFAULT_EXTERNAL).
AGENT_PORT = 8000
LEDGER_FORMAT = "cvm-attest/deploy-ledger/v1"
#: What the image build names each disk format (image.build.FORMATS).
DISK_FILES = {"vhd": "disk.vhd", "gcp": "disk.tar.gz", "vmdk": "disk.vmdk", "raw": "disk.raw"}
#: The ``--platform`` an image for the cloud of each format is built for: Azure's paravisor, or a bare
#: SEV-SNP guest (Google Cloud, AWS).
DISK_PLATFORMS = {"vhd": "azure", "gcp": "snp", "vmdk": "snp", "raw": "snp"}


# --- the request ------------------------------------------------------------------------------------


def parse_ports(text: str) -> tuple[int, ...]:
    """``"80,443"`` -> ``(80, 443)``; empty -> ``()``. Each a TCP port 1-65535, none repeated, never
    the agent's own port (always opened)."""
    ports: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdecimal() or not 1 <= int(part) <= 65535:
            raise RequestError(Reason.INPUT_INVALID, f"--additional-ports takes TCP ports 1-65535 separated by commas, "
                               f"got {part!r}")
        port = int(part)
        if port == AGENT_PORT or port in ports:
            continue
        ports.append(port)
    return tuple(ports)


@dataclass(frozen=True, slots=True)
class DeployRequest:
    """One deployment as the user asked for it; saved in the ledger, so that resuming and destroying
    act on the same names. ``options`` holds the cloud's own (resource group, project, bucket, zone)."""

    cloud: str
    vm_name: str
    region: str
    vm_type: str
    image_dir: Path
    additional_ports: tuple[int, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    agent_port: int = AGENT_PORT

    def option(self, name: str) -> str:
        value = self.options.get(name)
        if not value:
            raise RequestError(Reason.INPUT_INVALID, f"cvm-cli deploy {self.cloud} needs --{name.replace('_', '-')}")
        return value

    @property
    def ports(self) -> tuple[int, ...]:
        """Every inbound TCP port: the agent's, then the additional ones."""
        return (self.agent_port, *self.additional_ports)

    def to_json(self) -> dict[str, Any]:
        return {"cloud": self.cloud, "vm_name": self.vm_name, "region": self.region, "vm_type": self.vm_type,
                "image_dir": str(self.image_dir), "additional_ports": list(self.additional_ports),
                "options": dict(sorted(self.options.items())), "agent_port": self.agent_port}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeployRequest:
        try:
            return cls(cloud=str(data["cloud"]), vm_name=str(data["vm_name"]), region=str(data["region"]),
                       vm_type=str(data["vm_type"]), image_dir=Path(str(data["image_dir"])),
                       additional_ports=tuple(int(p) for p in data["additional_ports"]),
                       options={str(k): str(v) for k, v in dict(data["options"]).items()},
                       agent_port=int(data["agent_port"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"the ledger's request is malformed: {exc}") from None


# --- the image ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageDisk:
    """One disk of a ``cvm-cli image build`` output directory, checked against its manifest."""

    path: Path
    size: int
    sha256: str
    golden_id: str | None
    platform: str

    @classmethod
    def from_build(cls, image_dir: Path, disk_format: str, *, check_digest: bool = True) -> ImageDisk:
        """The ``disk_format`` disk of ``image_dir``; refused when the manifest does not list it, the
        file is missing, or (with ``check_digest``) its SHA-256 differs from the manifest's."""
        name = DISK_FILES[disk_format]
        manifest_path = image_dir / "manifest.json"
        hint = (f"build it with: cvm-cli image build WORKLOAD_DIR --out {image_dir} --platform "
                f"{DISK_PLATFORMS[disk_format]} --format {disk_format}")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            entry = manifest["outputs"].get(name)
            platform = str(manifest["platform"])
            golden_id = manifest.get("golden_id")
        except FileNotFoundError:
            raise DeployError(Reason.DEPLOY_IMAGE_MISSING, f"{image_dir} has no manifest.json: not an image build",
                              hint=hint) from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DeployError(Reason.DEPLOY_IMAGE_MISSING, f"{manifest_path} is not an image build's manifest: {exc}",
                              hint=hint) from None
        path = image_dir / name
        if not isinstance(entry, dict) or not path.is_file():
            raise DeployError(Reason.DEPLOY_IMAGE_MISSING, f"{image_dir} has no {name}", hint=hint)
        size = path.stat().st_size
        if size != entry.get("size"):
            raise DeployError(Reason.DEPLOY_IMAGE_MISSING, f"{path} is {size} bytes; the manifest says "
                              f"{entry.get('size')}: the file changed after the build", hint=hint)
        if check_digest:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != entry.get("sha256"):
                raise DeployError(Reason.DEPLOY_IMAGE_MISSING, f"{path}'s SHA-256 differs from the manifest's: the "
                                  "file changed after the build", hint=hint)
        if platform == "sim":
            raise DeployError(Reason.DEPLOY_IMAGE_MISSING, f"{image_dir} was built with --platform sim, whose agent "
                              "signs with a development AMD key no one trusts; a cloud needs --platform snp or azure",
                              hint=hint)
        return cls(path=path, size=size, sha256=str(entry["sha256"]), golden_id=golden_id, platform=platform)


# --- the plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cost:
    """What the VM costs per hour while it runs: a list price with its source, or unknown and why."""

    per_hour: Decimal | None
    currency: str | None
    source: str

    @classmethod
    def unknown(cls, why: str) -> Cost:
        return cls(None, None, why)

    def describe(self) -> str:
        if self.per_hour is None:
            return f"unknown ({self.source})"
        monthly = self.per_hour * 730
        return f"{self.per_hour:.4f} {self.currency}/hour, about {monthly:.0f} {self.currency}/month ({self.source})"

    def to_json(self) -> dict[str, Any]:
        return {"per_hour": None if self.per_hour is None else str(self.per_hour), "currency": self.currency,
                "source": self.source}


@dataclass(frozen=True, slots=True)
class PlannedResource:
    """A resource the deployment will create, with the settings that decide its security."""

    kind: str
    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "settings": dict(self.settings)}


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``cvm-cli deploy … --dry-run`` prints: nothing of it exists yet."""

    request: DeployRequest
    resources: tuple[PlannedResource, ...]
    upload_bytes: int
    cost: Cost
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"cloud": self.request.cloud, "region": self.request.region, "vm_type": self.request.vm_type,
                "inbound_tcp_ports": list(self.request.ports), "upload_bytes": self.upload_bytes,
                "cost": self.cost.to_json(), "resources": [r.to_json() for r in self.resources],
                "notes": list(self.notes)}

    def render(self) -> str:
        lines = [f"Plan: {self.request.cloud} {self.request.vm_type} in {self.request.region}, "
                 f"VM {self.request.vm_name!r} (nothing is created by --dry-run)"]
        for resource in self.resources:
            lines.append(f"  + {resource.kind} {resource.name}")
            for key, value in resource.settings.items():
                lines.append(f"      {key}: {json.dumps(value) if not isinstance(value, str) else value}")
        lines.append(f"  upload: {self.upload_bytes:,} bytes")
        lines.append(f"  inbound TCP: {', '.join(str(p) for p in self.request.ports)} (agent on {self.request.agent_port})")
        lines.append(f"  cost while running: {self.cost.describe()}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


# --- the ledger -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One resource the deployment created: its kind (``aws.snapshot``), the cloud's id, and what
    deleting it needs (region, container, ...)."""

    kind: str
    id: str
    step: str
    created: str
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "step": self.step, "created": self.created,
                "attrs": dict(self.attrs)}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Ledger:
    """A deployment's record on disk (JSON, rewritten atomically after every change)."""

    def __init__(self, path: Path, request: DeployRequest, resources: list[LedgerEntry],
                 steps: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self.request = request
        self._resources = resources
        self._steps = steps

    @classmethod
    def create_or_resume(cls, path: Path, request: DeployRequest) -> Ledger:
        """A new ledger at ``path``, or the one there when it records the same request (a resume).
        A ledger of another request is refused: resuming it would mix two deployments."""
        if path.exists():
            ledger = cls.load(path)
            if ledger.request.to_json() != request.to_json():
                differs = sorted(k for k, v in request.to_json().items() if ledger.request.to_json().get(k) != v)
                raise DeployError(Reason.DEPLOY_LEDGER_MISMATCH, f"{path} records another deployment (it differs in "
                                  f"{', '.join(differs)})",
                                  hint=f"resume it with the same options, remove it with cvm-cli destroy --ledger "
                                  f"{path}, or pass another --ledger")
            return ledger
        ledger = cls(path, request, [], {})
        ledger._write()
        return ledger

    @classmethod
    def load(cls, path: Path) -> Ledger:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RequestError(Reason.INPUT_UNREADABLE, f"no ledger at {path}") from None
        except (OSError, ValueError) as exc:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"cannot read the ledger {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != LEDGER_FORMAT:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"{path} is not a cvm-attest deploy ledger "
                              f"(format {LEDGER_FORMAT})")
        try:
            resources = [LedgerEntry(kind=str(r["kind"]), id=str(r["id"]), step=str(r["step"]),
                                     created=str(r["created"]), attrs=dict(r.get("attrs", {})))
                         for r in data["resources"]]
            steps = {str(k): dict(v) for k, v in dict(data["steps"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"{path} is malformed: {exc}") from None
        return cls(path, DeployRequest.from_json(data.get("request", {})), resources, steps)

    def _write(self) -> None:
        document = {"format": LEDGER_FORMAT, "request": self.request.to_json(),
                    "steps": self._steps, "resources": [r.to_json() for r in self._resources]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # resources

    def record(self, kind: str, resource_id: str, *, step: str, **attrs: Any) -> LedgerEntry:
        """Note a resource the cloud has just created (call before anything else can fail)."""
        entry = LedgerEntry(kind, resource_id, step, _now(), attrs)
        self._resources = [r for r in self._resources if (r.kind, r.id) != (kind, resource_id)] + [entry]
        self._write()
        return entry

    def find(self, kind: str) -> LedgerEntry | None:
        """The newest resource of ``kind``, or None."""
        for entry in reversed(self._resources):
            if entry.kind == kind:
                return entry
        return None

    def forget(self, entry: LedgerEntry) -> None:
        """Drop a resource that was deleted."""
        self._resources = [r for r in self._resources if (r.kind, r.id) != (entry.kind, entry.id)]
        self._write()

    @property
    def resources(self) -> tuple[LedgerEntry, ...]:
        return tuple(self._resources)

    # steps

    def outputs(self, step: str) -> dict[str, Any] | None:
        """What ``step`` produced, when it finished; None while it has not."""
        return self._steps.get(step)

    def finish(self, step: str, outputs: Mapping[str, Any]) -> None:
        self._steps[step] = dict(outputs)
        self._write()

    def reopen(self, step: str) -> None:
        """Forget that ``step`` finished (its resources stay recorded), so a resume runs it again."""
        self._steps.pop(step, None)
        self._write()

    def reset_steps(self) -> None:
        """Forget every finished step (after a destroy: a deploy with this ledger starts afresh)."""
        self._steps = {}
        self._write()


# --- progress ---------------------------------------------------------------------------------------


class Reporter:
    """Progress on stderr: ``[i/n] step`` lines, detail lines, and transfers as percentages
    (at most one line per 5% on a pipe, rewritten in place on a terminal)."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._last_percent = -1

    def _emit(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def step(self, index: int, total: int, title: str) -> None:
        self._emit(f"[{index}/{total}] {title}")

    def info(self, text: str) -> None:
        self._emit(f"      {text}")

    def transfer(self, label: str, done: int, total: int) -> None:
        percent = 100 if total <= 0 else done * 100 // total
        if percent == self._last_percent or (percent < 100 and percent - self._last_percent < 5):
            return
        self._last_percent = percent
        self._emit(f"      {label}: {done:,} of {total:,} bytes ({percent}%)")
        if percent >= 100:
            self._last_percent = -1


# --- steps ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a deployment: ``run(ledger, reporter)`` returns its outputs (JSON-able), which
    later steps read from the ledger."""

    name: str
    title: str
    run: Callable[[Ledger, Reporter], Mapping[str, Any]]


def run_steps(steps: Sequence[Step], ledger: Ledger, reporter: Reporter) -> dict[str, dict[str, Any]]:
    """Run each step not finished in ``ledger``; returns every step's outputs."""
    outputs: dict[str, dict[str, Any]] = {}
    for index, step in enumerate(steps, 1):
        done = ledger.outputs(step.name)
        if done is not None:
            reporter.step(index, len(steps), f"{step.title}: done before, resumed from {ledger.path}")
            outputs[step.name] = done
            continue
        reporter.step(index, len(steps), step.title)
        result = dict(step.run(ledger, reporter))
        ledger.finish(step.name, result)
        outputs[step.name] = result
    return outputs


class Deployment(abc.ABC):
    """One cloud's deployment of one :class:`DeployRequest`."""

    cloud: ClassVar[str]

    def __init__(self, request: DeployRequest) -> None:
        self.request = request

    @abc.abstractmethod
    def plan(self) -> Plan:
        """What :meth:`steps` would create; reads from the cloud at most (prices), writes nothing."""

    @abc.abstractmethod
    def steps(self) -> list[Step]:
        """preflight, upload, image, network, vm; the last step's outputs carry ``public_ip``."""

    @abc.abstractmethod
    def delete(self, entry: LedgerEntry, reporter: Reporter) -> None:
        """Delete one resource of the ledger; one that is already gone is not an error."""


@dataclass(frozen=True, slots=True)
class DeployResult:
    public_ip: str
    agent_url: str
    ledger: Path
    outputs: Mapping[str, Mapping[str, Any]]

    @property
    def teardown(self) -> str:
        return f"cvm-cli destroy --ledger {self.ledger}"

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "public_ip": self.public_ip, "agent_url": self.agent_url, "ledger": str(self.ledger),
                "teardown": self.teardown, "steps": {k: dict(v) for k, v in self.outputs.items()}}


def deploy(deployment: Deployment, ledger: Ledger, reporter: Reporter, *, wait_seconds: float,
           sleep: Callable[[float], None] = time.sleep) -> DeployResult:
    """Run ``deployment``'s steps, then wait until the agent answers; the VM stays when it does not
    (its console tells why), and the ledger still lists it for ``cvm-cli destroy``."""
    steps = deployment.steps()
    outputs = run_steps(steps, ledger, reporter)
    ip = str(outputs[steps[-1].name]["public_ip"])
    url = f"http://{ip}:{deployment.request.agent_port}"
    reporter.step(len(steps), len(steps), f"waiting for the agent at {url}")
    wait_for_agent(url, wait_seconds, reporter, sleep=sleep)
    return DeployResult(ip, url, ledger.path, outputs)


def wait_for_agent(url: str, seconds: float, reporter: Reporter, *,
                   sleep: Callable[[float], None] = time.sleep, interval: float = 5.0) -> dict[str, Any]:
    """``GET url/platform`` until it answers JSON or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    last = "no answer yet"
    while True:
        try:
            with urllib.request.urlopen(f"{url}/platform", timeout=5) as response:
                platform: dict[str, Any] = json.loads(response.read())
            reporter.info(f"agent answered: platform {platform.get('platform', '?')}")
            return platform
        except (OSError, ValueError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise DeployError(Reason.DEPLOY_AGENT_UNREACHABLE, f"the agent at {url} did not answer within "
                              f"{seconds:.0f} s ({last})",
                              hint="the VM exists and is in the ledger: read its serial console, or destroy it")
        sleep(interval)


def destroy(deployment: Deployment, ledger: Ledger, reporter: Reporter) -> list[LedgerEntry]:
    """Delete every resource ``ledger`` records, newest first, forgetting each as it goes; the
    deleted entries. Resources whose deletion failed stay in the ledger (run it again), reported
    together as ``deploy.destroy_incomplete``."""
    entries = list(reversed(ledger.resources))
    deleted: list[LedgerEntry] = []
    failed: list[str] = []
    for index, entry in enumerate(entries, 1):
        reporter.step(index, len(entries), f"deleting {entry.kind} {entry.id}")
        try:
            deployment.delete(entry, reporter)
        except CvmAttestError as exc:
            failed.append(f"{entry.kind} {entry.id}: {exc.detail}")
            reporter.info(f"not deleted: {exc}")
            continue
        ledger.forget(entry)
        deleted.append(entry)
    if failed:
        raise DeployError(Reason.DEPLOY_DESTROY_INCOMPLETE, f"{len(failed)} resource(s) not deleted: "
                          + "; ".join(failed), hint=f"run cvm-cli destroy --ledger {ledger.path} again")
    ledger.reset_steps()
    return deleted


def chunks(path: Path, size: int, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` of ``path`` in pieces of ``size``, from ``start``."""
    with path.open("rb") as f:
        f.seek(start)
        offset = start
        while data := f.read(size):
            yield offset, data
            offset += len(data)

