"""Secrets for the workload: the sealing key bound into evidence, POST /secrets (one box per
challenge, only into memory), secrets carried across an update, POST /unseal, and the on-chain
sealing key's signature. The real agent on swtpm, over HTTP in process."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from agent.app import BearerToken, create_apps
from agent.config import AkKind
from agent.service import Agent
from offchain.abi.binding import sealing_key_digest
from offchain.abi.workload import WORKLOAD_PCR
from offchain.errors import Reason, VerificationError
from offchain.evidence import (
    EvidenceBundle,
    offchain_expected_extra_data,
    sealing_expected_extra_data,
    sealing_key_of,
    verify_evidence,
)
from offchain.seal import SealContext, SealedBox, pack_secrets, public_bytes, seal
from offchain.trust.roots import TrustRoots
from tests.support.agent import WORKLOAD, agent_config, make_zip, tree_digest, write_tree
from tests.support.swtpm import Swtpm

TOKEN = b"update-token-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN.decode()}
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
SECRETS = {"api-key": b"s3cr3t-api-key-4f1d\n", "db/password": b"hunter2-9e0c\n"}


@pytest.fixture
def memory_root() -> Iterator[Path]:
    """A directory on tmpfs (/dev/shm), as the image's /var/lib/cvm-agent is."""
    root = Path(tempfile.mkdtemp(prefix="cvm-agent-test-", dir="/dev/shm"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _agent(swtpm: Swtpm, sim_chain: Path, root: Path) -> Agent:
    write_tree(root / "workload", WORKLOAD)
    return Agent.start(agent_config(swtpm, root, sim_chain, ak=AkKind.ECC))


@pytest.fixture
def agent(swtpm: Swtpm, sim_chain: Path, memory_root: Path) -> Iterator[Agent]:
    running = _agent(swtpm, sim_chain, memory_root)
    yield running
    running.close()


@pytest.fixture
def client(agent: Agent) -> Iterator[TestClient]:
    with TestClient(create_apps(agent, update_token=BearerToken.plain(TOKEN))[1], raise_server_exceptions=False) as c:
        yield c


def _roots(agent: Agent) -> TrustRoots:
    ark = x509.load_pem_x509_certificate((agent.config.sim_dir / "ark.pem").read_bytes())
    return TrustRoots.empty().with_dev_root(ark)


def _verified_key(client: TestClient, agent: Agent, nonce: bytes) -> tuple[bytes, bytes]:
    """What cvm-cli upload does before sealing: fetch, verify, and only then take the key."""
    bundle = EvidenceBundle.from_json(client.get(f"/sealing/collaterals/{nonce.hex()}").json())
    verify_evidence(bundle, expected_extra_data=sealing_expected_extra_data(bundle, nonce), golden=None,
                    roots=_roots(agent), now=dt.datetime.now(dt.timezone.utc))
    assert bundle.cvm_address is not None
    return sealing_key_of(bundle), bundle.cvm_address


def _box(key: bytes, address: bytes, nonce: bytes, files: dict[str, bytes] = SECRETS) -> SealedBox:
    return seal(pack_secrets(files), key, SealContext.upload(address, nonce))


def _error(response: object, status: int, reason: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.json()["reason"] == reason  # type: ignore[attr-defined]


def test_sealed_secrets_reach_the_workload_in_memory_only(client: TestClient, agent: Agent,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    nonce = bytes.fromhex("5e" * 32)
    key, address = _verified_key(client, agent, nonce)
    assert key == bytes.fromhex(client.get("/identity").json()["sealing_key"])
    pcr23 = agent.tpm.read_pcrs([WORKLOAD_PCR])[WORKLOAD_PCR]
    events = agent.workload.log.path.read_bytes()

    response = client.post("/secrets", content=_box(key, address, nonce).dumps(), headers=JSON_AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {"installed": ["api-key", "db/password"], "count": 2}
    secrets = agent.config.workload_dir / "secrets"
    assert {p.relative_to(secrets).as_posix(): p.read_bytes() for p in secrets.rglob("*") if p.is_file()} == SECRETS
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert stat.S_IMODE((secrets / "api-key").stat().st_mode) == 0o600
    # Never measured, never logged.
    assert agent.tpm.read_pcrs([WORKLOAD_PCR])[WORKLOAD_PCR] == pcr23
    assert agent.workload.log.path.read_bytes() == events
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert all(secret.decode().strip() not in logged for secret in SECRETS.values())
    assert [p.name for p in agent.config.workload_dir.iterdir() if p.name.startswith(".")] == []


def test_a_box_opens_once_and_only_for_a_challenge_the_agent_answered(client: TestClient, agent: Agent) -> None:
    nonce = bytes.fromhex("01" * 16)
    key, address = _verified_key(client, agent, nonce)
    box = _box(key, address, nonce).dumps()
    assert client.post("/secrets", content=box, headers=JSON_AUTH).status_code == 200
    installed = tree_digest(agent.config.workload_dir)
    # The host recorded the box and sends it again later, e.g. to roll back rotated secrets.
    _error(client.post("/secrets", content=box, headers=JSON_AUTH), 400, "seal.challenge_unknown")
    # Sealed for a nonce this agent never answered.
    never_asked = _box(key, address, bytes.fromhex("02" * 16)).dumps()
    _error(client.post("/secrets", content=never_asked, headers=JSON_AUTH), 400, "seal.challenge_unknown")
    assert tree_digest(agent.config.workload_dir) == installed


def test_a_box_sealed_to_a_key_the_host_put_in_place_is_refused(client: TestClient, agent: Agent) -> None:
    nonce = bytes.fromhex("03" * 16)
    _, address = _verified_key(client, agent, nonce)
    hosts_key = public_bytes(X25519PrivateKey.generate().public_key())
    _error(client.post("/secrets", content=_box(hosts_key, address, nonce).dumps(), headers=JSON_AUTH),
           400, "seal.key_not_bound")
    key, _ = _verified_key(client, agent, nonce)
    other_cvm = _box(key, bytes.fromhex("66" * 20), nonce).dumps()
    _error(client.post("/secrets", content=other_cvm, headers=JSON_AUTH), 400, "seal.key_not_bound")
    assert not (agent.config.workload_dir / "secrets").exists()


def test_an_altered_or_moved_box_does_not_open(client: TestClient, agent: Agent) -> None:
    nonce = bytes.fromhex("04" * 16)
    key, address = _verified_key(client, agent, nonce)
    box = _box(key, address, nonce)
    flipped = bytearray(box.ciphertext)
    flipped[-1] ^= 1
    altered = SealedBox(box.recipient_key, box.context, bytes(flipped))
    _error(client.post("/secrets", content=altered.dumps(), headers=JSON_AUTH), 400, "seal.decrypt_failed")
    # The same ciphertext presented as the answer to another challenge: the context is HPKE's info.
    other = bytes.fromhex("05" * 16)
    _verified_key(client, agent, other)
    moved = SealedBox(box.recipient_key, SealContext.upload(address, other), box.ciphertext)
    _error(client.post("/secrets", content=moved.dumps(), headers=JSON_AUTH), 400, "seal.decrypt_failed")
    assert not (agent.config.workload_dir / "secrets").exists()


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        (b"{}", {"Content-Type": "application/json"}, 401, "auth.required"),
        (b"{}", {**AUTH, "Content-Type": "text/plain"}, 415, "http.unsupported_media_type"),
        (b"{\"format\": \"cvm-attest/sealed/v1\"}", JSON_AUTH, 422, "seal.malformed"),
        (b"not json", JSON_AUTH, 422, "seal.malformed"),
    ],
    ids=["no-token", "not-json-type", "not-a-box", "not-json"],
)
def test_bad_secrets_requests(client: TestClient, body: bytes, headers: dict[str, str], status: int,
                              reason: str) -> None:
    _error(client.post("/secrets", content=body, headers=headers), status, reason)


def test_secrets_are_never_written_to_a_disk(swtpm: Swtpm, sim_chain: Path, tmp_path: Path) -> None:
    """A workload directory outside tmpfs gets nothing, and the challenge stays usable."""
    agent = _agent(swtpm, sim_chain, tmp_path)
    try:
        with TestClient(create_apps(agent, update_token=BearerToken.plain(TOKEN))[1],
                        raise_server_exceptions=False) as client:
            nonce = bytes.fromhex("06" * 16)
            key, address = _verified_key(client, agent, nonce)
            box = _box(key, address, nonce).dumps()
            _error(client.post("/secrets", content=box, headers=JSON_AUTH), 409, "secrets.not_in_memory")
            assert not (agent.config.workload_dir / "secrets").exists()
            assert agent.sealing.open_upload(SealedBox.loads(box), agent.key.address_bytes)
    finally:
        agent.close()


def test_secrets_stay_with_the_workload_across_an_update(client: TestClient, agent: Agent) -> None:
    nonce = bytes.fromhex("07" * 16)
    key, address = _verified_key(client, agent, nonce)
    assert client.post("/secrets", content=_box(key, address, nonce).dumps(), headers=JSON_AUTH).status_code == 200
    new = {**WORKLOAD, "config/app.toml": b"[app]\nmode = 'staging'\n"}
    response = client.post("/update-workload", content=make_zip(new), headers={**AUTH, "Content-Type": "application/zip"})
    assert response.status_code == 200, response.text
    workload = agent.config.workload_dir
    assert (workload / "config/app.toml").read_bytes() == new["config/app.toml"]
    assert (workload / "secrets/api-key").read_bytes() == SECRETS["api-key"]
    assert sorted(p.name for p in workload.parent.iterdir()) == ["state", "workload"]


def test_sealing_evidence_is_its_own_form(client: TestClient, agent: Agent) -> None:
    """The quote binds the key: a bundle whose key was swapped, or an answer to another nonce,
    fails verification; and sealing evidence never passes for an off-chain answer."""
    nonce = bytes.fromhex("08" * 16)
    data = client.get(f"/sealing/collaterals/{nonce.hex()}").json()
    swapped = {**data, "nonce": {**data["nonce"], "sealing_key": "11" * 32}}
    bundle = EvidenceBundle.from_json(swapped)
    now = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(VerificationError) as caught:
        verify_evidence(bundle, expected_extra_data=sealing_expected_extra_data(bundle, nonce), golden=None,
                        roots=_roots(agent), now=now)
    assert caught.value.reason is Reason.TPM_QUOTE_NONCE_MISMATCH
    genuine = EvidenceBundle.from_json(data)
    with pytest.raises(VerificationError) as caught:
        verify_evidence(genuine, expected_extra_data=sealing_expected_extra_data(genuine, b"\x09" * 16), golden=None,
                        roots=_roots(agent), now=now)
    assert caught.value.reason is Reason.TPM_QUOTE_NONCE_MISMATCH
    with pytest.raises(VerificationError) as caught:
        offchain_expected_extra_data(genuine, nonce)
    assert caught.value.reason is Reason.EVIDENCE_NONCE_FORM_MISMATCH


def test_the_onchain_sealing_key_is_signed_by_the_cvm_key(client: TestClient, agent: Agent) -> None:
    registry = "0x" + "ab" * 20
    body = client.get(f"/onchain/sealing-key?chain_id=31337&registry={registry}").json()
    assert body["cvm_address"] == agent.key.address
    assert body["sealing_key"] == "0x" + agent.sealing.public.hex()
    digest = sealing_key_digest(31337, registry, agent.key.address, agent.sealing.public)
    assert Account._recover_hash(digest, signature=bytes.fromhex(body["signature"][2:])) == agent.key.address
    _error(client.get(f"/onchain/sealing-key?chain_id=31337&registry={registry}&sealing_key=00"), 422,
           "input.invalid")


def test_unseal_opens_registry_boxes_for_the_workload(agent: Agent) -> None:
    with TestClient(create_apps(agent, update_token=None)[0], raise_server_exceptions=False) as internal:
        context = SealContext.registry(agent.key.address_bytes, 31337, bytes.fromhex("ab" * 20))
        box = seal(b"dapp secret", agent.sealing.public, context)
        response = internal.post("/unseal", content=box.dumps(), headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        assert response.json()["context"] == context.to_json()
        assert response.json()["plaintext"] == "ZGFwcCBzZWNyZXQ="
        upload_box = seal(b"x", agent.sealing.public, SealContext.upload(agent.key.address_bytes, b"\x01"))
        _error(internal.post("/unseal", content=upload_box.dumps(), headers={"Content-Type": "application/json"}),
               422, "seal.malformed")
    with TestClient(create_apps(agent, update_token=BearerToken.plain(TOKEN))[1],
                    raise_server_exceptions=False) as external:
        _error(external.post("/unseal", content=box.dumps(), headers={"Content-Type": "application/json"}),
               404, "http.not_found")


def test_the_hpke_info_is_the_contexts_canonical_json() -> None:
    """The same context always binds the same bytes, whatever order its JSON came in."""
    context = SealContext.upload(bytes.fromhex("11" * 20), b"\x01\x02")
    expected = b'cvm-attest/sealed/v1\x00{"cvm_address":"0x' + b"11" * 20 + b'","nonce":"0102","purpose":"upload"}'
    assert context.info() == expected
    assert SealContext.from_json(dict(reversed(list(context.to_json().items())))).info() == expected
