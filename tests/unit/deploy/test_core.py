"""deploy.core: ports, the image build a deployment uploads, the ledger (atomic, resumable, refused
for another deployment), the step runner, destroy's order and its partial failures, waiting for the
agent (a real local HTTP server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deploy.core import (
    Deployment,
    DeployRequest,
    ImageDisk,
    Ledger,
    LedgerEntry,
    Plan,
    Reporter,
    Step,
    destroy,
    parse_ports,
    run_steps,
    wait_for_agent,
)
from offchain.errors import CvmAttestError, DeployError, Reason, RequestError
from tests.support.deploy import make_image_dir


def _request(tmp_path: Path, **changes: Any) -> DeployRequest:
    fields: dict[str, Any] = {"cloud": "aws", "vm_name": "vm", "region": "us-east-2", "vm_type": "m6a.large",
                              "image_dir": tmp_path, "additional_ports": (443,), "options": {"bucket": "b"}}
    fields.update(changes)
    return DeployRequest(**fields)


def test_ports() -> None:
    assert parse_ports("80, 443,,80,8000") == (80, 443)
    assert parse_ports("") == ()
    for bad in ("http", "0", "65536", "-1", "80;443"):
        with pytest.raises(RequestError) as caught:
            parse_ports(bad)
        assert caught.value.reason is Reason.INPUT_INVALID


def test_the_image_disk_is_checked_against_its_manifest(image_dir: Path, tmp_path: Path) -> None:
    disk = ImageDisk.from_build(image_dir, "vmdk")
    assert disk.path.name == "disk.vmdk" and disk.size == disk.path.stat().st_size and disk.platform == "azure"
    copy = make_image_dir(tmp_path / "changed", formats=("vhd",))
    with (copy / "disk.vhd").open("r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    with pytest.raises(DeployError) as caught:
        ImageDisk.from_build(copy, "vhd")
    assert caught.value.reason is Reason.DEPLOY_IMAGE_MISSING and "changed after the build" in caught.value.detail
    with pytest.raises(DeployError) as caught:
        ImageDisk.from_build(copy, "vmdk")
    assert caught.value.reason is Reason.DEPLOY_IMAGE_MISSING
    assert "--format vmdk" in caught.value.context["hint"]
    with pytest.raises(DeployError) as caught:
        ImageDisk.from_build(tmp_path / "nothing", "vhd")
    assert caught.value.reason is Reason.DEPLOY_IMAGE_MISSING
    sim = make_image_dir(tmp_path / "sim", platform="sim", formats=("vhd",))
    with pytest.raises(DeployError) as caught:
        ImageDisk.from_build(sim, "vhd")
    assert "--platform sim" in caught.value.detail


def test_the_ledger_is_resumed_only_for_the_same_deployment(tmp_path: Path) -> None:
    path = tmp_path / "vm.aws.ledger.json"
    ledger = Ledger.create_or_resume(path, _request(tmp_path))
    ledger.record("aws.s3_object", "vm/disk.vmdk", step="upload", bucket="b")
    ledger.finish("upload", {"key": "vm/disk.vmdk"})
    again = Ledger.create_or_resume(path, _request(tmp_path))
    assert again.outputs("upload") == {"key": "vm/disk.vmdk"}
    assert [(e.kind, e.id, dict(e.attrs)) for e in again.resources] == [("aws.s3_object", "vm/disk.vmdk", {"bucket": "b"})]
    with pytest.raises(DeployError) as caught:
        Ledger.create_or_resume(path, _request(tmp_path, vm_type="m6a.xlarge"))
    assert caught.value.reason is Reason.DEPLOY_LEDGER_MISMATCH and "vm_type" in caught.value.detail
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": "other"}',
                                  '{"format": "cvm-attest/deploy-ledger/v1", "request": {}, "steps": {}, '
                                  '"resources": []}'])
def test_a_malformed_ledger_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "l.json"
    path.write_text(text)
    with pytest.raises(DeployError) as caught:
        Ledger.load(path)
    assert caught.value.reason is Reason.DEPLOY_LEDGER_MALFORMED


class _Recorded(Deployment):
    """A deployment whose steps and deletes are recorded, to test the frame's orchestration."""

    cloud = "aws"

    def __init__(self, request: DeployRequest, fail_at: str | None = None, undeletable: str | None = None) -> None:
        super().__init__(request)
        self.ran: list[str] = []
        self.deleted: list[str] = []
        self.fail_at = fail_at
        self.undeletable = undeletable

    def plan(self) -> Plan:
        raise AssertionError("not planned here")

    def _step(self, name: str) -> Step:
        def run(ledger: Ledger, reporter: Reporter) -> Mapping[str, Any]:
            self.ran.append(name)
            ledger.record(f"aws.{name}", f"{name}-1", step=name)
            if name == self.fail_at:
                raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"{name} failed")
            return {"public_ip": "192.0.2.1"} if name == "vm" else {name: True}
        return Step(name, name, run)

    def steps(self) -> list[Step]:
        return [self._step(n) for n in ("preflight", "upload", "image", "network", "vm")]

    def delete(self, entry: LedgerEntry, reporter: Reporter) -> None:
        if entry.id == self.undeletable:
            raise DeployError(Reason.DEPLOY_CLOUD_ERROR, "still in use")
        self.deleted.append(entry.id)


def test_a_failed_deploy_resumes_where_it_stopped_and_destroy_removes_what_was_made(tmp_path: Path) -> None:
    ledger = Ledger.create_or_resume(tmp_path / "l.json", _request(tmp_path))
    first = _Recorded(ledger.request, fail_at="network")
    with pytest.raises(DeployError):
        run_steps(first.steps(), ledger, Reporter(quiet=True))
    assert first.ran == ["preflight", "upload", "image", "network"]
    second = _Recorded(ledger.request)
    outputs = run_steps(second.steps(), Ledger.load(ledger.path), Reporter(quiet=True))
    assert second.ran == ["network", "vm"] and outputs["vm"] == {"public_ip": "192.0.2.1"}
    partial = Ledger.load(ledger.path)
    remover = _Recorded(partial.request, undeletable="image-1")
    with pytest.raises(DeployError) as caught:
        destroy(remover, partial, Reporter(quiet=True))
    assert caught.value.reason is Reason.DEPLOY_DESTROY_INCOMPLETE and "image-1" in caught.value.detail
    assert remover.deleted == ["vm-1", "network-1", "upload-1", "preflight-1"]
    assert [e.id for e in Ledger.load(ledger.path).resources] == ["image-1"]
    last = _Recorded(partial.request)
    destroy(last, Ledger.load(ledger.path), Reporter(quiet=True))
    assert last.deleted == ["image-1"]
    final = Ledger.load(ledger.path)
    assert final.resources == () and final.outputs("vm") is None


@pytest.fixture
def agent_server() -> Iterator[tuple[str, list[int]]]:
    """A local HTTP server that answers /platform after two refusals."""
    calls: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:  # noqa: N802
            calls.append(1)
            if len(calls) < 3:
                self.send_error(503)
                return
            body = json.dumps({"platform": "azure"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_waiting_for_the_agent(agent_server: tuple[str, list[int]]) -> None:
    url, calls = agent_server
    slept: list[float] = []
    assert wait_for_agent(url, 60, Reporter(quiet=True), sleep=slept.append) == {"platform": "azure"}
    assert len(calls) == 3 and slept == [5.0, 5.0]


def test_an_agent_that_never_answers(tmp_path: Path) -> None:
    with pytest.raises(CvmAttestError) as caught:
        wait_for_agent("http://127.0.0.1:9", 0, Reporter(quiet=True), sleep=lambda _: None)
    assert caught.value.reason is Reason.DEPLOY_AGENT_UNREACHABLE
    assert "destroy" in caught.value.context["hint"]
