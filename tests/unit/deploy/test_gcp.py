"""``cvm-cli deploy gcp`` against Compute Engine, Cloud Storage and the Cloud Billing Catalog as
recorded: the real google-cloud-compute (REST), google-cloud-storage and google-cloud-billing
clients send their real requests, which ``responses`` intercepts and :class:`RecordedGoogle`
answers with the JSON those APIs answer (same field names, same operation life cycle). Each test
asserts the requests sent."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c
import pytest
import requests
import responses
from click.testing import CliRunner
from google.auth.credentials import Credentials

from image.formats import write_gcp_tar
from offchain.cli.root import cli
from offchain.errors import DeployError, Reason

from deploy.core import DeployRequest, Ledger, Reporter, destroy, run_steps
from deploy.gcp import GcpDeployment

PROJECT = "cvm-test-project"
BUCKET = "cvm-test-disks"
REGION = "us-central1"
ZONE = "us-central1-a"
TOKEN = "ya29.recorded-test-token"
PUBLIC_IP = "203.0.113.7"
COMPUTE = "https://compute.googleapis.com/compute/v1"


class FixedToken(Credentials):  # type: ignore[misc]
    """Credentials holding one bearer token, never refreshed over the network."""

    def __init__(self) -> None:
        super().__init__()
        self.token = TOKEN

    def refresh(self, request: Any) -> None:
        self.token = TOKEN


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


def _error(code: int, message: str, reason: str) -> tuple[int, dict[str, Any]]:
    status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              409: "ALREADY_EXISTS"}[code]
    return code, {"error": {"code": code, "message": message, "status": status,
                            "errors": [{"message": message, "domain": "global", "reason": reason}]}}


class RecordedGoogle:
    """The three Google APIs as recorded, on one ``responses`` mock.

    State a test may change before the run: ``region_quotas`` and ``project_quotas`` (metric ->
    (limit, usage)), ``bucket_location``, ``zone_region``, ``objects`` (name -> bytes),
    ``operation_errors`` (collection -> the DONE operation's errors), ``canned`` ((method, path) ->
    (status, body), answered every time)."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.calls: list[Call] = []
        self.region_quotas = {"CPUS": (24.0, 2.0), "N2D_CPUS": (24.0, 0.0), "IN_USE_ADDRESSES": (8.0, 1.0)}
        self.project_quotas = {"NETWORKS": (15.0, 1.0), "SUBNETWORKS": (100.0, 1.0), "FIREWALLS": (200.0, 4.0),
                               "IMAGES": (2000.0, 0.0)}
        self.bucket_location = "US-CENTRAL1"
        self.zone_region = REGION
        self.machine_types = {"n2d-standard-4": (4, 16384), "n2d-highmem-8": (8, 65536)}
        self.objects: dict[str, bytes] = {}
        self.operation_errors: dict[str, list[dict[str, str]]] = {}
        self.canned: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.skus: list[dict[str, Any]] = []
        self._operations: dict[str, dict[str, Any]] = {}
        self._sessions: dict[str, tuple[str, bytearray]] = {}
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            rsps.add_callback(method, re.compile(r"https://.*"), callback=self._dispatch)

    # --- what was sent --------------------------------------------------------------------------

    def sent(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]

    def writes(self) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.calls if c.method != "GET"]

    def only(self, method: str, pattern: str) -> Call:
        found = self.sent(method, pattern)
        assert len(found) == 1, (method, pattern, [(c.method, c.path) for c in self.calls])
        return found[0]

    # --- answering ------------------------------------------------------------------------------

    def _dispatch(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        url = urlsplit(str(request.url))
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        call = Call(str(request.method), url.path, parse_qs(url.query),
                    {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}, body)
        self.calls.append(call)
        assert call.headers.get("authorization") == f"Bearer {TOKEN}", call
        if (call.method, call.path) in self.canned:
            status, document = self.canned[(call.method, call.path)]
            return status, {"Content-Type": "application/json"}, json.dumps(document)
        status, document, headers = self._answer(url.netloc, call)
        return status, {"Content-Type": "application/json", **headers}, json.dumps(document) if document else ""

    def _answer(self, host: str, call: Call) -> tuple[int, dict[str, Any], dict[str, str]]:
        path, method = call.path, call.method
        compute = f"/compute/v1/projects/{PROJECT}"
        if host == "cloudbilling.googleapis.com" and path == "/v1/services/6F81-5844-456A/skus":
            return 200, {"skus": self.skus, "nextPageToken": ""}, {}
        if host != "storage.googleapis.com" and host != "compute.googleapis.com":
            raise AssertionError(f"unexpected host {host}")
        if path.startswith("/storage/") or path.startswith("/upload/"):
            return self._storage(call)
        if method == "GET" and path == compute:
            return 200, {"name": PROJECT, "quotas": self._quotas(self.project_quotas)}, {}
        if method == "GET" and path == f"{compute}/regions/{REGION}":
            return 200, {"name": REGION, "status": "UP", "quotas": self._quotas(self.region_quotas)}, {}
        if method == "GET" and (m := re.fullmatch(rf"{compute}/zones/([a-z0-9-]+)", path)):
            return 200, {"name": m.group(1), "status": "UP",
                         "region": f"{COMPUTE}/projects/{PROJECT}/regions/{self.zone_region}",
                         "availableCpuPlatforms": ["Intel Cascade Lake", "AMD Milan", "AMD Rome"]}, {}
        if method == "GET" and (m := re.fullmatch(rf"{compute}/zones/{ZONE}/machineTypes/([a-z0-9-]+)", path)):
            if m.group(1) not in self.machine_types:
                return (*_error(404, f"The resource 'projects/{PROJECT}/zones/{ZONE}/machineTypes/{m.group(1)}' "
                                "was not found", "notFound"), {})
            cpus, memory = self.machine_types[m.group(1)]
            return 200, {"name": m.group(1), "guestCpus": cpus, "memoryMb": memory}, {}
        if m := re.fullmatch(rf"{compute}/(?:global|regions/[a-z0-9-]+|zones/[a-z0-9-]+)/operations/([\w-]+)", path):
            return self._operation(m.group(1))
        if method == "GET" and (m := re.fullmatch(rf"{compute}/zones/{ZONE}/instances/([a-z0-9-]+)", path)):
            return 200, {"name": m.group(1), "status": "RUNNING", "cpuPlatform": "AMD Milan",
                         "selfLink": f"{COMPUTE}{path}",
                         "networkInterfaces": [{"nicType": "GVNIC", "networkIP": "10.8.0.2", "accessConfigs": [
                             {"type": "ONE_TO_ONE_NAT", "name": "external-nat", "natIP": PUBLIC_IP}]}]}, {}
        collection = re.fullmatch(rf"{compute}/(global|regions/{REGION}|zones/{ZONE})/([a-zA-Z]+)(?:/[a-z0-9-]+)?",
                                  path)
        if collection and method in ("POST", "DELETE"):
            return self._start(method, collection.group(2), path)
        raise AssertionError(f"no recorded answer for {method} {path}")

    @staticmethod
    def _quotas(quotas: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
        return [{"metric": k, "limit": limit, "usage": usage} for k, (limit, usage) in quotas.items()]

    def _start(self, method: str, collection: str, path: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """An insert or delete: a RUNNING operation, polled once at 40% before it is DONE."""
        name = f"operation-{len(self._operations) + 1}-{collection}"
        kind = "insert" if method == "POST" else "delete"
        errors = self.operation_errors.pop(collection, None) if kind == "insert" else None
        self._operations[name] = {"polls": 0, "kind": kind, "errors": errors}
        return 200, {"kind": "compute#operation", "name": name, "operationType": kind, "status": "RUNNING",
                     "progress": 0, "targetLink": f"{COMPUTE}{path}"}, {}

    def _operation(self, name: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        state = self._operations[name]
        state["polls"] += 1
        document: dict[str, Any] = {"kind": "compute#operation", "name": name, "operationType": state["kind"]}
        if state["polls"] == 1:
            return 200, {**document, "status": "RUNNING", "progress": 40}, {}
        document.update(status="DONE", progress=100)
        if state["errors"]:
            document.update(error={"errors": state["errors"]}, httpErrorStatusCode=400,
                            httpErrorMessage="BAD REQUEST")
        return 200, document, {}

    def _storage(self, call: Call) -> tuple[int, dict[str, Any], dict[str, str]]:
        path, method = call.path, call.method
        if method == "GET" and path == f"/storage/v1/b/{BUCKET}":
            return 200, {"name": BUCKET, "location": self.bucket_location, "locationType": "region"}, {}
        if method == "GET" and path == f"/storage/v1/b/{BUCKET}/iam/testPermissions":
            return 200, {"permissions": call.query["permissions"]}, {}
        if m := re.fullmatch(rf"/storage/v1/b/{BUCKET}/o/(.+)", path):
            name = unquote(m.group(1))
            if name not in self.objects:
                return (*_error(404, "No such object", "notFound"), {})
            if method == "DELETE":
                del self.objects[name]
                return 204, {}, {}
            return 200, self._object(name), {}
        if method == "POST" and path == f"/upload/storage/v1/b/{BUCKET}/o":
            kind = call.query["uploadType"][0]
            if kind == "multipart":
                metadata, data = self._multipart(call)
                self.objects[metadata["name"]] = data
                return 200, self._object(metadata["name"]), {}
            session = f"session-{len(self._sessions) + 1}"
            self._sessions[session] = (call.json()["name"], bytearray())
            return 200, {}, {"Location": f"https://storage.googleapis.com/upload/storage/v1/b/{BUCKET}/o?"
                                         f"uploadType=resumable&upload_id={session}"}
        if method == "PUT" and path == f"/upload/storage/v1/b/{BUCKET}/o":
            session = call.query["upload_id"][0]
            name, received = self._sessions[session]
            span = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", call.headers["content-range"])
            assert span is not None and int(span.group(1)) == len(received), call.headers
            received += call.body
            if span.group(3) == "*" or int(span.group(3)) != len(received):
                return 308, {}, {"Range": f"bytes=0-{len(received) - 1}"}
            self.objects[name] = bytes(received)
            return 200, self._object(name), {}
        raise AssertionError(f"no recorded answer for {method} {path}")

    def _object(self, name: str) -> dict[str, Any]:
        data = self.objects[name]
        return {"kind": "storage#object", "bucket": BUCKET, "name": name, "size": str(len(data)),
                "crc32c": _crc32c(data), "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
                "generation": "1700000000000001", "contentType": "application/gzip"}

    @staticmethod
    def _multipart(call: Call) -> tuple[dict[str, Any], bytes]:
        boundary = re.search(r'boundary="?([^";]+)"?', call.headers["content-type"])
        assert boundary is not None
        parts = call.body.split(b"--" + boundary.group(1).encode())
        metadata = json.loads(parts[1].split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n"))
        data = parts[2].split(b"\r\n\r\n", 1)[1]
        return metadata, data[:-2] if data.endswith(b"\r\n") else data


@pytest.fixture
def cloud() -> Iterator[RecordedGoogle]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield RecordedGoogle(rsps)


def _request(image_dir: Path, **overrides: Any) -> DeployRequest:
    values: dict[str, Any] = {"cloud": "gcp", "vm_name": "cvm-attest", "region": REGION, "vm_type": "n2d-standard-4",
                              "image_dir": image_dir, "additional_ports": (443,),
                              "options": {"project_id": PROJECT, "bucket": BUCKET}}
    values.update(overrides)
    return DeployRequest(**values)


def _deployment(image_dir: Path, **overrides: Any) -> GcpDeployment:
    return GcpDeployment(_request(image_dir, **overrides), credentials=FixedToken(), sleep=lambda _: None)


def _ledger(tmp_path: Path, deployment: GcpDeployment) -> Ledger:
    return Ledger.create_or_resume(tmp_path / "cvm-attest.gcp.ledger.json", deployment.request)


def _run(deployment: GcpDeployment, ledger: Ledger, stream: io.StringIO | None = None) -> dict[str, Any]:
    return run_steps(deployment.steps(), ledger, Reporter(stream or io.StringIO()))


def _reason(excinfo: pytest.ExceptionInfo[DeployError]) -> Reason:
    return excinfo.value.reason


@pytest.fixture(scope="session")
def large_image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image build whose disk.tar.gz (incompressible, about 9 MiB) takes several upload chunks."""
    directory = tmp_path_factory.mktemp("large-image")
    raw = directory / "disk.raw"
    raw.write_bytes(random.Random(13).randbytes(9 << 20))
    write_gcp_tar(raw, directory / "disk.tar.gz", source_date_epoch=1_700_000_000)
    outputs = {p.name: {"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                        "size": p.stat().st_size} for p in (raw, directory / "disk.tar.gz")}
    (directory / "manifest.json").write_text(json.dumps({"version": 1, "platform": "snp", "golden_id": None,
                                                         "outputs": outputs}))
    return directory


# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("vm_type", ["c3-standard-4", "c2d-standard-4", "c3d-standard-4", "n2-standard-4",
                                     "n2d-custom-4-16384", "e2-medium"],
                         ids=["tdx-seed-default", "sev-only", "c3d-sev-only", "intel", "n2d-custom", "shared-core"])
def test_refuses_sizes_that_are_not_sev_snp(image_dir: Path, vm_type: str) -> None:
    with pytest.raises(DeployError) as excinfo:
        _deployment(image_dir, vm_type=vm_type)
    assert _reason(excinfo) is Reason.DEPLOY_SIZE_NOT_SEV_SNP
    assert "n2d-standard-4" in excinfo.value.context["hint"]


@pytest.mark.parametrize(("vm_type", "vcpus", "gib"), [("n2d-standard-4", 4, 16), ("n2d-highmem-8", 8, 64),
                                                       ("n2d-highcpu-16", 16, 16)])
def test_accepts_n2d_shapes(image_dir: Path, vm_type: str, vcpus: int, gib: int) -> None:
    deployment = _deployment(image_dir, vm_type=vm_type)
    assert (deployment.vcpus, deployment.memory_gib) == (vcpus, gib)


# --- a whole deployment ---------------------------------------------------------------------------


def test_deploy_sends_a_sev_snp_instance_behind_the_agent_port_only(image_dir: Path, tmp_path: Path,
                                                                    cloud: RecordedGoogle) -> None:
    deployment = _deployment(image_dir)
    ledger = _ledger(tmp_path, deployment)
    progress = io.StringIO()
    outputs = _run(deployment, ledger, progress)

    assert outputs["vm"]["public_ip"] == PUBLIC_IP
    object_name = f"cvm-attest/disk-{deployment.disk.sha256[:16]}.tar.gz"
    upload = cloud.only("POST", f"/upload/storage/v1/b/{BUCKET}/o")
    assert RecordedGoogle._multipart(upload)[1] == deployment.disk.path.read_bytes()

    image = cloud.only("POST", f"/compute/v1/projects/{PROJECT}/global/images").json()
    assert [f["type"] for f in image["guestOsFeatures"]] == ["SEV_SNP_CAPABLE", "UEFI_COMPATIBLE", "GVNIC"]
    assert image["architecture"] == "X86_64"
    assert image["rawDisk"] == {"source": f"https://storage.googleapis.com/{BUCKET}/{object_name}",
                                "containerType": "TAR"}

    network = cloud.only("POST", f"/compute/v1/projects/{PROJECT}/global/networks").json()
    assert network["autoCreateSubnetworks"] is False
    subnetwork = cloud.only("POST", f"/compute/v1/projects/{PROJECT}/regions/{REGION}/subnetworks").json()
    assert subnetwork["network"].endswith("/global/networks/cvm-attest-net")
    firewall = cloud.only("POST", f"/compute/v1/projects/{PROJECT}/global/firewalls").json()
    assert firewall["direction"] == "INGRESS"
    assert firewall["allowed"] == [{"IPProtocol": "tcp", "ports": ["8000", "443"]}]
    assert firewall["sourceRanges"] == ["0.0.0.0/0"]
    assert firewall["targetTags"] == ["cvm-attest-cvm"]
    assert "denied" not in firewall and firewall["network"].endswith("/global/networks/cvm-attest-net")

    instance = cloud.only("POST", f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances").json()
    assert instance["confidentialInstanceConfig"] == {"confidentialInstanceType": "SEV_SNP"}
    assert instance["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert instance["minCpuPlatform"] == "AMD Milan"
    assert instance["machineType"] == f"zones/{ZONE}/machineTypes/n2d-standard-4"
    assert instance["shieldedInstanceConfig"] == {"enableVtpm": True, "enableIntegrityMonitoring": True,
                                                  "enableSecureBoot": False}
    assert instance["disks"][0]["initializeParams"]["sourceImage"] == \
        f"projects/{PROJECT}/global/images/{image['name']}"
    nic = instance["networkInterfaces"][0]
    assert nic["nicType"] == "GVNIC"
    assert nic["subnetwork"].endswith(f"/regions/{REGION}/subnetworks/cvm-attest-subnet")
    assert nic["accessConfigs"] == [{"name": "external-nat", "type": "ONE_TO_ONE_NAT", "networkTier": "PREMIUM"}]
    assert instance["tags"] == {"items": ["cvm-attest-cvm"]}
    metadata = {i["key"]: i["value"] for i in instance["metadata"]["items"]}
    assert metadata == {"block-project-ssh-keys": "TRUE", "serial-port-enable": "FALSE"}
    assert "serviceAccounts" not in instance

    # The temporary object went once the image existed; the ledger keeps what destroy must remove.
    assert cloud.sent("DELETE", f"/storage/v1/b/{BUCKET}/o/.*") and not cloud.objects
    assert [(e.kind, e.id) for e in ledger.resources] == [
        ("gcp.image", image["name"]), ("gcp.network", "cvm-attest-net"), ("gcp.subnetwork", "cvm-attest-subnet"),
        ("gcp.firewall", "cvm-attest-allow-agent"), ("gcp.instance", "cvm-attest")]
    assert ledger.find("gcp.instance") is not None and ledger.find("gcp.instance").attrs["zone"] == ZONE
    assert "image cvm-attest-" in progress.getvalue() and "insert running, 40%" in progress.getvalue()


def test_a_large_disk_goes_up_in_resumable_chunks_with_progress(large_image_dir: Path, tmp_path: Path,
                                                               cloud: RecordedGoogle) -> None:
    deployment = _deployment(large_image_dir)
    deployment.chunk_bytes = 4 << 20
    progress = io.StringIO()
    ledger = _ledger(tmp_path, deployment)
    steps = deployment.steps()
    run_steps(steps[:2], ledger, Reporter(progress))

    chunks = cloud.sent("PUT", f"/upload/storage/v1/b/{BUCKET}/o")
    assert [len(c.body) for c in chunks] == [4 << 20, 4 << 20, deployment.disk.size - (8 << 20)]
    assert cloud.objects[deployment.names.object] == deployment.disk.path.read_bytes()
    assert f"({100}%)" in progress.getvalue() and "disk.tar.gz: 4,194,304 of" in progress.getvalue()
    entry = ledger.find("gcp.object")
    assert entry is not None and entry.attrs == {"bucket": BUCKET, "name": deployment.names.object}


# --- failures --------------------------------------------------------------------------------------


def test_quota_exhausted_stops_before_anything_is_created(image_dir: Path, tmp_path: Path,
                                                          cloud: RecordedGoogle) -> None:
    cloud.region_quotas["N2D_CPUS"] = (8.0, 6.0)
    deployment = _deployment(image_dir)
    with pytest.raises(DeployError) as excinfo:
        _run(deployment, _ledger(tmp_path, deployment))
    assert _reason(excinfo) is Reason.DEPLOY_QUOTA_EXHAUSTED
    assert cloud.writes() == []


def test_machine_type_not_offered_in_the_zone(image_dir: Path, tmp_path: Path, cloud: RecordedGoogle) -> None:
    del cloud.machine_types["n2d-highmem-8"]
    deployment = _deployment(image_dir, vm_type="n2d-highmem-8")
    with pytest.raises(DeployError) as excinfo:
        _run(deployment, _ledger(tmp_path, deployment))
    assert _reason(excinfo) is Reason.DEPLOY_SIZE_UNAVAILABLE
    assert cloud.writes() == []


@pytest.mark.parametrize(("code", "reason"), [("ZONE_RESOURCE_POOL_EXHAUSTED", Reason.DEPLOY_SIZE_UNAVAILABLE),
                                              ("QUOTA_EXCEEDED", Reason.DEPLOY_QUOTA_EXHAUSTED)],
                         ids=["no-capacity", "quota"])
def test_instance_creation_failure_is_typed(image_dir: Path, tmp_path: Path, cloud: RecordedGoogle, code: str,
                                            reason: Reason) -> None:
    cloud.operation_errors["instances"] = [{"code": code, "message": f"recorded {code}"}]
    deployment = _deployment(image_dir)
    ledger = _ledger(tmp_path, deployment)
    with pytest.raises(DeployError) as excinfo:
        _run(deployment, ledger)
    assert _reason(excinfo) is reason
    assert ledger.outputs("network") is not None and ledger.outputs("vm") is None


def test_image_creation_failure_is_an_import_failure(image_dir: Path, tmp_path: Path,
                                                     cloud: RecordedGoogle) -> None:
    cloud.operation_errors["images"] = [{"code": "INVALID_IMAGE_FILE",
                                         "message": "The tar archive is not a valid image."}]
    deployment = _deployment(image_dir)
    ledger = _ledger(tmp_path, deployment)
    with pytest.raises(DeployError) as excinfo:
        _run(deployment, ledger)
    assert _reason(excinfo) is Reason.DEPLOY_IMPORT_FAILED
    assert ledger.find("gcp.image") is not None and ledger.find("gcp.object") is not None


@pytest.mark.parametrize(("status", "reason", "expected"), [
    (403, "forbidden", Reason.DEPLOY_PERMISSION_DENIED),
    (401, "authError", Reason.DEPLOY_CREDENTIALS),
    (403, "accessNotConfigured", Reason.DEPLOY_CLOUD_ERROR),
], ids=["no-role", "token-refused", "api-disabled"])
def test_project_errors_are_typed(image_dir: Path, tmp_path: Path, cloud: RecordedGoogle, status: int, reason: str,
                                  expected: Reason) -> None:
    cloud.canned[("GET", f"/compute/v1/projects/{PROJECT}")] = _error(status, "Required 'compute.projects.get' "
                                                                       "permission", reason)
    deployment = _deployment(image_dir)
    with pytest.raises(DeployError) as excinfo:
        _run(deployment, _ledger(tmp_path, deployment))
    assert _reason(excinfo) is expected


@pytest.mark.parametrize(("location", "ok"), [("US-CENTRAL1", True), ("US", True), ("EU", False),
                                              ("EUROPE-WEST4", False)])
def test_bucket_must_be_in_or_around_the_region(image_dir: Path, tmp_path: Path, cloud: RecordedGoogle,
                                                location: str, ok: bool) -> None:
    cloud.bucket_location = location
    deployment = _deployment(image_dir)
    preflight = deployment.steps()[0]
    if ok:
        assert preflight.run(_ledger(tmp_path, deployment), Reporter(io.StringIO()))["bucket_location"] == location
        return
    with pytest.raises(DeployError) as excinfo:
        preflight.run(_ledger(tmp_path, deployment), Reporter(io.StringIO()))
    assert _reason(excinfo) is Reason.DEPLOY_BUCKET_UNUSABLE


def test_missing_bucket_is_unusable(image_dir: Path, tmp_path: Path, cloud: RecordedGoogle) -> None:
    cloud.canned[("GET", f"/storage/v1/b/{BUCKET}")] = _error(404, "The specified bucket does not exist.",
                                                               "notFound")
    deployment = _deployment(image_dir)
    with pytest.raises(DeployError) as excinfo:
        deployment.steps()[0].run(_ledger(tmp_path, deployment), Reporter(io.StringIO()))
    assert _reason(excinfo) is Reason.DEPLOY_BUCKET_UNUSABLE


def test_zone_of_another_region_is_refused(image_dir: Path, tmp_path: Path, cloud: RecordedGoogle) -> None:
    cloud.zone_region = "europe-west4"
    deployment = _deployment(image_dir, options={"project_id": PROJECT, "bucket": BUCKET, "zone": "europe-west4-a"})
    with pytest.raises(DeployError) as excinfo:
        deployment.steps()[0].run(_ledger(tmp_path, deployment), Reporter(io.StringIO()))
    assert _reason(excinfo) is Reason.DEPLOY_REGION_UNSUPPORTED


def test_a_name_taken_outside_the_ledger_is_not_adopted(image_dir: Path, tmp_path: Path,
                                                        cloud: RecordedGoogle) -> None:
    cloud.canned[("POST", f"/compute/v1/projects/{PROJECT}/global/networks")] = _error(
        409, "The resource 'projects/p/global/networks/cvm-attest-net' already exists", "alreadyExists")
    deployment = _deployment(image_dir)
    ledger = _ledger(tmp_path, deployment)
    with pytest.raises(DeployError) as excinfo:
        _run(deployment, ledger)
    assert _reason(excinfo) is Reason.DEPLOY_CLOUD_ERROR
    assert ledger.find("gcp.network") is None


def test_missing_credentials(image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             cloud: RecordedGoogle) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent-key.json"))
    deployment = GcpDeployment(_request(image_dir), sleep=lambda _: None)
    assert deployment.plan().cost.per_hour is None
    with pytest.raises(DeployError) as excinfo:
        deployment.steps()[0].run(_ledger(tmp_path, deployment), Reporter(io.StringIO()))
    assert _reason(excinfo) is Reason.DEPLOY_CREDENTIALS
    assert cloud.calls == []


# --- resume and destroy ------------------------------------------------------------------------------


class Interrupted(BaseException):
    """What Ctrl-C is to the step runner: not an error it handles."""


def test_interrupted_after_the_upload_resumes_without_uploading_again(image_dir: Path, tmp_path: Path,
                                                                      cloud: RecordedGoogle) -> None:
    def interrupt(_: float) -> None:
        raise Interrupted

    first = GcpDeployment(_request(image_dir), credentials=FixedToken(), sleep=interrupt)
    ledger = _ledger(tmp_path, first)
    with pytest.raises(Interrupted):
        _run(first, ledger)
    assert ledger.outputs("upload") is not None and ledger.find("gcp.image") is not None

    resumed = _deployment(image_dir)
    outputs = _run(resumed, Ledger.create_or_resume(ledger.path, resumed.request))
    assert outputs["vm"]["public_ip"] == PUBLIC_IP
    assert len(cloud.sent("POST", f"/upload/storage/v1/b/{BUCKET}/o")) == 1
    assert len(cloud.sent("POST", f"/compute/v1/projects/{PROJECT}/global/images")) == 1


def test_an_upload_finished_but_not_recorded_is_not_repeated(image_dir: Path, tmp_path: Path,
                                                             cloud: RecordedGoogle) -> None:
    deployment = _deployment(image_dir)
    cloud.objects[deployment.names.object] = deployment.disk.path.read_bytes()
    ledger = _ledger(tmp_path, deployment)
    run_steps(deployment.steps()[:2], ledger, Reporter(io.StringIO()))
    assert cloud.sent("POST", f"/upload/storage/v1/b/{BUCKET}/o") == []
    assert ledger.find("gcp.object") is not None


def test_a_failed_image_is_created_again_on_resume(image_dir: Path, tmp_path: Path, cloud: RecordedGoogle) -> None:
    cloud.operation_errors["images"] = [{"code": "INVALID_IMAGE_FILE", "message": "recorded failure"}]
    deployment = _deployment(image_dir)
    ledger = _ledger(tmp_path, deployment)
    with pytest.raises(DeployError):
        _run(deployment, ledger)
    _run(_deployment(image_dir), ledger)
    images = f"/compute/v1/projects/{PROJECT}/global/images"
    assert len(cloud.sent("POST", images)) == 2
    assert len(cloud.sent("DELETE", f"{images}/{deployment.names.image}")) == 1
    assert len(cloud.sent("POST", f"/upload/storage/v1/b/{BUCKET}/o")) == 1


def test_destroy_after_a_partial_deploy_deletes_exactly_the_ledger(image_dir: Path, tmp_path: Path,
                                                                   cloud: RecordedGoogle) -> None:
    cloud.operation_errors["instances"] = [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "recorded"}]
    deployment = _deployment(image_dir)
    ledger = _ledger(tmp_path, deployment)
    with pytest.raises(DeployError):
        _run(deployment, ledger)
    compute = f"/compute/v1/projects/{PROJECT}"
    cloud.canned[("DELETE", f"{compute}/zones/{ZONE}/instances/cvm-attest")] = _error(
        404, "The resource 'instances/cvm-attest' was not found", "notFound")
    before = len(cloud.calls)

    deleted = destroy(deployment, ledger, Reporter(io.StringIO()))

    assert [(c.method, c.path) for c in cloud.calls[before:] if c.method == "DELETE"] == [
        ("DELETE", f"{compute}/zones/{ZONE}/instances/cvm-attest"),
        ("DELETE", f"{compute}/global/firewalls/cvm-attest-allow-agent"),
        ("DELETE", f"{compute}/regions/{REGION}/subnetworks/cvm-attest-subnet"),
        ("DELETE", f"{compute}/global/networks/cvm-attest-net"),
        ("DELETE", f"{compute}/global/images/{deployment.names.image}"),
    ]
    assert [e.kind for e in deleted] == ["gcp.instance", "gcp.firewall", "gcp.subnetwork", "gcp.network",
                                         "gcp.image"]
    assert ledger.resources == () and ledger.outputs("preflight") is None


def test_destroy_removes_a_temporary_object_left_by_a_failed_import(image_dir: Path, tmp_path: Path,
                                                                    cloud: RecordedGoogle) -> None:
    cloud.operation_errors["images"] = [{"code": "INVALID_IMAGE_FILE", "message": "recorded failure"}]
    deployment = _deployment(image_dir)
    ledger = _ledger(tmp_path, deployment)
    with pytest.raises(DeployError):
        _run(deployment, ledger)
    destroy(deployment, ledger, Reporter(io.StringIO()))
    assert cloud.objects == {} and ledger.resources == ()
    assert [c.path for c in cloud.calls if c.method == "DELETE"] == [
        f"/compute/v1/projects/{PROJECT}/global/images/{deployment.names.image}",
        f"/storage/v1/b/{BUCKET}/o/{quote(deployment.names.object, safe='')}"]


# --- the plan and its price ----------------------------------------------------------------------------


def _sku(description: str, unit: str, units: int, nanos: int, *, usage: str = "OnDemand",
         regions: tuple[str, ...] = (REGION,)) -> dict[str, Any]:
    return {"name": f"services/6F81-5844-456A/skus/{abs(hash(description)) % 10**12:012d}",
            "description": description, "serviceRegions": list(regions),
            "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute",
                         "resourceGroup": "N2DStandard" if "Core" in description else "RAM", "usageType": usage},
            "pricingInfo": [{"pricingExpression": {"usageUnit": unit, "tieredRates": [
                {"startUsageAmount": 0, "unitPrice": {"currencyCode": "USD", "units": str(units),
                                                      "nanos": nanos}}]}}]}


RECORDED_SKUS = [
    _sku("Spot Preemptible N2D AMD Instance Core running in Americas", "h", 0, 7_000_000, usage="Preemptible"),
    _sku("N2D AMD Instance Core running in EMEA", "h", 0, 30_000_000, regions=("europe-west4",)),
    _sku("N2D AMD Instance Core running in Americas", "h", 0, 27_564_000),
    _sku("N2D AMD Instance Ram running in Americas", "GiBy.h", 0, 3_694_000),
]


def test_plan_prices_n2d_from_the_billing_catalog(image_dir: Path, cloud: RecordedGoogle) -> None:
    cloud.skus = RECORDED_SKUS
    plan = _deployment(image_dir).plan()
    assert plan.cost.per_hour == 4 * Decimal("0.027564") + 16 * Decimal("0.003694")
    assert plan.cost.currency == "USD" and "Confidential VM surcharge" in plan.cost.source
    assert cloud.writes() == []
    listing = cloud.only("GET", "/v1/services/6F81-5844-456A/skus")
    assert listing.query["currencyCode"] == ["USD"]


def test_plan_adds_the_confidential_surcharge_when_listed(image_dir: Path, cloud: RecordedGoogle) -> None:
    cloud.skus = [*RECORDED_SKUS, _sku("Confidential VM N2D AMD Instance Core running in Americas", "h", 0, 5_000_000),
                  _sku("Confidential VM N2D AMD Instance Ram running in Americas", "GiBy.h", 0, 700_000)]
    plan = _deployment(image_dir).plan()
    assert plan.cost.per_hour == (4 * Decimal("0.027564") + 16 * Decimal("0.003694")
                                  + 4 * Decimal("0.005") + 16 * Decimal("0.0007"))


def test_plan_cost_is_unknown_when_the_catalog_refuses(image_dir: Path, cloud: RecordedGoogle) -> None:
    cloud.canned[("GET", "/v1/services/6F81-5844-456A/skus")] = _error(403, "Cloud Billing API has not been used",
                                                                        "accessNotConfigured")
    plan = _deployment(image_dir).plan()
    assert plan.cost.per_hour is None and "Cloud Billing Catalog API unavailable" in plan.cost.source


def test_plan_lists_the_security_settings(image_dir: Path, cloud: RecordedGoogle) -> None:
    plan = _deployment(image_dir).plan()
    settings = {r.kind: r.settings for r in plan.resources}
    assert settings["gcp.instance"]["confidential_instance_type"] == "SEV_SNP"
    assert settings["gcp.instance"]["enable_secure_boot"] is False
    assert settings["gcp.firewall"]["allowed_tcp"] == ["8000", "443"]
    assert settings["gcp.image"]["guest_os_features"] == ["SEV_SNP_CAPABLE", "UEFI_COMPATIBLE", "GVNIC"]
    assert plan.upload_bytes == (image_dir / "disk.tar.gz").stat().st_size


# --- the command line ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["deploy", "gcp", "--vm-name", "demo", "--project-id", PROJECT, "--bucket", BUCKET, "--additional-ports", "443",
     "--dry-run", "--json"],
    ["deploy-gcp", "--vm_name", "demo", "--project_id", PROJECT, "--bucket", BUCKET, "--additional_ports", "443",
     "--dry_run", "--json"],
], ids=["spelled", "seed-spelling"])
def test_cli_dry_run_prints_the_plan_without_any_http_call(image_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent-key.json"))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        result = CliRunner().invoke(cli, [*args, "--image", str(image_dir)], catch_exceptions=False)
        assert [c.request.url for c in rsps.calls] == []
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert (plan["cloud"], plan["vm_type"], plan["region"]) == ("gcp", "n2d-standard-4", REGION)
    assert plan["inbound_tcp_ports"] == [8000, 443]
    instance = next(r for r in plan["resources"] if r["kind"] == "gcp.instance")
    assert instance["name"] == "demo" and instance["settings"]["confidential_instance_type"] == "SEV_SNP"
    assert plan["cost"]["per_hour"] is None
    assert not (tmp_path / "demo.gcp.ledger.json").exists()


def test_cli_refuses_the_seed_default_tdx_size(image_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent-key.json"))
    result = CliRunner().invoke(cli, ["deploy-gcp", "--vm_type", "c3-standard-4", "--project_id", PROJECT,
                                      "--bucket", BUCKET, "--image", str(image_dir), "--dry-run", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.output)["reason"] == Reason.DEPLOY_SIZE_NOT_SEV_SNP.value
