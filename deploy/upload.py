"""``cvm-cli upload``: send a workload to a running CVM, and its secrets sealed to that CVM, only
after the CVM's evidence verified against the golden measurement the user names.

1. Pack the workload directory (workload.archive.pack_workload): the update archive the agent will
   accept, and ``secrets/`` apart. Nothing the agent would refuse leaves this machine.
2. Fetch ``GET /sealing/collaterals/{nonce}`` with a fresh 32-byte nonce and verify it
   (offchain.evidence.verify_evidence) against ``--golden`` and/or the registry's ``verifyEvidence``
   view for ``--golden-id``: the quote binds the nonce, the agent's sealing key and its CVM address,
   so a replayed evidence or a key the host put in place fails here, and nothing is sent.
3. Seal ``secrets/`` to that key for that nonce (offchain.seal) and ``POST /secrets``; then
   ``POST /update-workload`` with the archive.
   Secrets are sealed only where the quote is out of the host's reach: the Azure binding (the AK
   lives in the paravisor's vTPM at VMPL0), or a development chain the user pinned (the sim). With the
   direct binding the AK may sit in a vTPM the host emulates (AWS NitroTPM, Google's vTPM, QEMU's
   swtpm: docs/trust-model.md), which could quote any sealing key: refused
   (``seal.platform_unprotected``) unless the user accepts that (``accept_host_vtpm``).
4. Predict PCR23 and the golden measurement of the updated CVM from the verified event log and the
   archive (what ``cvm-cli golden predict --base <this CVM's golden> --update <archive>`` gives), and
   check the agent's answer against the prediction.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import secrets as secrets_module
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offchain.abi.workload import replay
from offchain.errors import CvmAttestError, ParseError, Reason, RequestError
from offchain.evidence import EvidenceBundle, VerifiedEvidence, sealing_expected_extra_data, sealing_key_of, verify_evidence
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.seal import SealContext, pack_secrets, seal
from offchain.trust.kds import KdsClient
from offchain.trust.roots import TrustRoots
from workload.archive import PackedWorkload, measure_archive, pack_workload

from deploy.core import AGENT_PORT

_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
MAX_RESPONSE_BYTES = 4 << 20


def agent_url(target: str) -> str:
    """``203.0.113.7`` -> ``http://203.0.113.7:8000``; ``host:port`` and ``http(s)://…`` as given."""
    if target.startswith(("http://", "https://")):
        return target.rstrip("/")
    if not _HOST.fullmatch(target):
        raise RequestError(Reason.INPUT_INVALID, f"{target!r} is not a VM address: give an IP, a host name, "
                           "HOST:PORT or a URL")
    has_port = target.rsplit("]", 1)[-1].count(":") == 1 if target.startswith("[") else ":" in target
    return f"http://{target}" if has_port else f"http://{target}:{AGENT_PORT}"


class AgentClient:
    """JSON over HTTP to one agent; an error answer becomes ``upload.failed`` naming the agent's reason."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 120.0) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (the user's agent)
                data = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise self._refused(method, path, exc) from None
        except (OSError, ValueError) as exc:
            raise CvmAttestError(Reason.UPLOAD_FAILED, f"cannot reach the agent at {self.url}: "
                                 f"{getattr(exc, 'reason', exc)}") from None
        if len(data) > MAX_RESPONSE_BYTES:
            raise CvmAttestError(Reason.UPLOAD_FAILED, f"{method} {path}: the answer is larger than "
                                 f"{MAX_RESPONSE_BYTES} bytes")
        try:
            return json.loads(data)
        except ValueError:
            raise CvmAttestError(Reason.UPLOAD_FAILED, f"{method} {path}: the answer is not JSON") from None

    @staticmethod
    def _refused(method: str, path: str, exc: urllib.error.HTTPError) -> CvmAttestError:
        try:
            body = json.loads(exc.read(65536))
            reason, detail = str(body["reason"]), str(body["detail"])
        except (OSError, ValueError, KeyError, TypeError):
            reason, detail = "?", exc.reason
        return CvmAttestError(Reason.UPLOAD_FAILED, f"{method} {path} was refused (HTTP {exc.code}): [{reason}] "
                              f"{detail}", status=exc.code, agent_reason=reason)


@dataclass(frozen=True, slots=True)
class Verifier:
    """How the target's evidence is judged: the golden document (off chain) and/or a registry's
    ``verifyEvidence`` view for a golden id (on chain, ``check_onchain``), under ``roots``."""

    roots: TrustRoots
    golden: GoldenMeasurement | None = None
    kds: KdsClient | None = None
    check_onchain: Callable[[EvidenceBundle, bytes], Mapping[str, Any]] | None = None
    accept_host_vtpm: bool = False

    def __post_init__(self) -> None:
        if self.golden is None and self.check_onchain is None:
            raise RequestError(Reason.INPUT_INVALID, "name the golden measurement the CVM must meet: --golden FILE, "
                               "or --registry ADDR with --golden-id ID")


@dataclass(frozen=True, slots=True)
class UploadResult:
    agent: str
    cvm_address: str
    product: str
    signer: str
    onchain: Mapping[str, Any] | None
    secrets: int
    pcr23: bytes
    golden_id: bytes | None
    events: int

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "agent": self.agent, "cvm_address": self.cvm_address, "product": self.product,
                "signer": self.signer, "onchain": None if self.onchain is None else dict(self.onchain),
                "secrets_installed": self.secrets, "pcr23": self.pcr23.hex(),
                "golden_id": None if self.golden_id is None else "0x" + self.golden_id.hex(), "events": self.events}


def fetch_verified(client: AgentClient, verifier: Verifier, *,
                   now: dt.datetime | None = None) -> tuple[EvidenceBundle, bytes, VerifiedEvidence, Mapping[str, Any] | None]:
    """Fresh sealing evidence from the agent, verified: ``(bundle, nonce, verified, onchain verdict)``.
    Raises the verifier's own error (its reason says what failed) when it does not verify."""
    nonce = secrets_module.token_bytes(32)
    bundle = EvidenceBundle.from_json(json.dumps(client.request("GET", f"/sealing/collaterals/{nonce.hex()}")))
    expected = sealing_expected_extra_data(bundle, nonce)
    verified = verify_evidence(bundle, expected_extra_data=expected, golden=verifier.golden, roots=verifier.roots,
                               now=now or dt.datetime.now(dt.timezone.utc), fetcher=verifier.kds)
    onchain = verifier.check_onchain(bundle, expected) if verifier.check_onchain is not None else None
    return bundle, nonce, verified, onchain


def check_secrets_protected(verified: VerifiedEvidence, *, accept_host_vtpm: bool) -> None:
    """``seal.platform_unprotected`` unless the verified evidence's quote is one the host cannot
    forge (module docstring, step 3)."""
    if verified.binding is Binding.AZURE or verified.chain.root.development or accept_host_vtpm:
        return
    raise CvmAttestError(
        Reason.SEAL_PLATFORM_UNPROTECTED,
        "this CVM's AK is bound directly by its SNP report, so it may live in a vTPM the host emulates (AWS, Google "
        "Cloud, QEMU + swtpm): the host could quote a sealing key of its own. secrets/ was not sent. Use a CVM "
        "whose vTPM the host cannot reach (Azure), or pass --accept-host-vtpm to accept that the host can read "
        "the secrets (docs/trust-model.md)")


def upload(target: str, token: str, workload: Path, verifier: Verifier, *,
           progress: Callable[[str], None] = lambda _: None, now: dt.datetime | None = None) -> UploadResult:
    """The whole upload (module docstring). Nothing reaches the agent's token-guarded routes unless
    its evidence verified."""
    packed: PackedWorkload = pack_workload(workload)
    client = AgentClient(agent_url(target), token)
    progress(f"packed {workload}: archive of {len(packed.archive):,} bytes, {len(packed.secrets)} secret file(s)")
    bundle, nonce, verified, onchain = fetch_verified(client, verifier, now=now)
    if bundle.cvm_address is None or bundle.event_log is None:
        raise ParseError(Reason.EVIDENCE_MALFORMED, "the evidence names no CVM address or carries no PCR23 event "
                         "log: not a cvm-attest agent's, and the update's PCR23 could not be predicted")
    progress(f"evidence verified: {verified.product.value} {verified.signer.value}, CVM 0x{bundle.cvm_address.hex()}"
             + (", accepted by the registry" if onchain is not None else ""))
    events = [*bundle.event_log, *measure_archive(io.BytesIO(packed.archive))]
    predicted_pcr23 = replay(events)
    if packed.secrets:
        check_secrets_protected(verified, accept_host_vtpm=verifier.accept_host_vtpm)
        box = seal(pack_secrets(packed.secrets), sealing_key_of(bundle), SealContext.upload(bundle.cvm_address, nonce))
        installed = client.request("POST", "/secrets", box.dumps().encode(), "application/json")
        progress(f"secrets sealed to the agent's attested key and installed: {installed.get('count')} file(s)")
    answer = client.request("POST", "/update-workload", packed.archive, "application/zip")
    pcr23 = bytes.fromhex(str(answer.get("pcr23", "")))
    if pcr23 != predicted_pcr23:
        raise CvmAttestError(Reason.UPLOAD_FAILED, f"the agent reports PCR23 {pcr23.hex()}, the prediction from its "
                             f"verified event log and this archive is {predicted_pcr23.hex()}: something else changed "
                             "the workload meanwhile; verify the CVM again before trusting it")
    golden_id = None if verifier.golden is None else verifier.golden.with_workload(events).canonical_id()
    return UploadResult(agent=client.url, cvm_address="0x" + bundle.cvm_address.hex(), product=verified.product.value,
                        signer=verified.signer.value, onchain=onchain, secrets=len(packed.secrets), pcr23=pcr23,
                        golden_id=golden_id, events=len(events))

