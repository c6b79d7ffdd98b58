"""agent.app over HTTP (in process, the real agent on swtpm behind it): which listener serves what,
status codes and error bodies, the bearer token, and schemathesis over the OpenAPI schema."""

from __future__ import annotations

import base64
import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

with warnings.catch_warnings():
    # Starlette 1.x suggests httpx2 for its TestClient; httpx is what this project pins.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from agent.app import BearerToken, create_apps, read_token
from agent.config import AkKind
from agent.service import Agent
from offchain.abi.binding import offchain_extra_data, onchain_extra_data
from offchain.abi.tpm import TpmsAttest
from offchain.errors import Reason, RequestError
from offchain.evidence import EvidenceBundle
from tests.support.agent import (
    CONSENTED_GOLDEN,
    TPM_COMPOSE,
    WORKLOAD,
    agent_config,
    make_zip,
    tree_digest,
    write_tree,
)
from tests.support.swtpm import Swtpm
from tests.support.tcg_log import BANKS, event, extend, spec_id
from workload.archive import ArchiveLimits

TOKEN = b"update-token-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN.decode()}
ZIP_AUTH = {**AUTH, "Content-Type": "application/zip"}
REGISTRY = "0x" + "ab" * 20
BLOCK_HASH = "0x" + "cd" * 32
GOLDEN_ID = "0x" + CONSENTED_GOLDEN.hex()
OTHER_GOLDEN_ID = "0x" + "66" * 32
ONCHAIN_BASE = f"/onchain/collaterals?chain_id=31337&registry={REGISTRY}&block_number=7&block_hash={BLOCK_HASH}"
ONCHAIN = f"{ONCHAIN_BASE}&golden_id={GOLDEN_ID}"


@pytest.fixture(scope="module")
def apps(sim_agent: Agent) -> tuple[FastAPI, FastAPI]:
    return create_apps(sim_agent, update_token=BearerToken.plain(TOKEN))


@pytest.fixture(scope="module")
def internal(apps: tuple[FastAPI, FastAPI]) -> Iterator[TestClient]:
    with TestClient(apps[0], raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def external(apps: tuple[FastAPI, FastAPI]) -> Iterator[TestClient]:
    with TestClient(apps[1], raise_server_exceptions=False) as client:
        yield client


def _error(response: object, status: int, reason: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["reason"] == reason and isinstance(body["detail"], str)
    return body  # type: ignore[no-any-return]


# --- evidence --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["internal", "external"])
def test_collaterals_on_both_listeners(request: pytest.FixtureRequest, listener: str) -> None:
    client: TestClient = request.getfixturevalue(listener)
    response = client.get("/collaterals/00ff")
    assert response.status_code == 200
    bundle = EvidenceBundle.from_json(response.content)
    assert TpmsAttest.from_bytes(bundle.quote_attest).extra_data == offchain_extra_data(b"\x00\xff")


@pytest.mark.parametrize(
    "nonce",
    ["0", "zz", "0x00", "00" * 65, "00 11", "%00"],
    ids=["odd", "not-hex", "prefixed", "65-bytes", "space", "nul"],
)
def test_bad_nonce_is_422(external: TestClient, nonce: str) -> None:
    _error(external.get(f"/collaterals/{nonce}"), 422, "input.invalid")


def test_onchain_collaterals_bind_the_agents_address(external: TestClient, sim_agent: Agent) -> None:
    response = external.get(ONCHAIN)
    assert response.status_code == 200
    bundle = EvidenceBundle.from_json(response.content)
    expected = onchain_extra_data(31337, REGISTRY, sim_agent.key.address_bytes, bytes.fromhex(BLOCK_HASH[2:]))
    assert TpmsAttest.from_bytes(bundle.quote_attest).extra_data == expected
    assert bundle.cvm_address == sim_agent.key.address_bytes
    nonce = response.json()["nonce"]
    assert {k: v for k, v in nonce.items() if k != "consent"} == {
        "form": "onchain", "chain_id": 31337, "registry": REGISTRY, "block_number": 7, "block_hash": BLOCK_HASH,
        "golden_id": GOLDEN_ID}
    assert len(bytes.fromhex(nonce["consent"][2:])) == 65


def test_onchain_collaterals_for_a_golden_not_consented_to_are_403(external: TestClient) -> None:
    body = _error(external.get(f"{ONCHAIN_BASE}&golden_id={OTHER_GOLDEN_ID}"), 403, "agent.golden_not_consented")
    assert body["context"] == {"golden_id": OTHER_GOLDEN_ID}


@pytest.mark.parametrize(
    "query",
    [
        "chain_id=0&registry={r}&block_number=1&block_hash={h}&golden_id={g}",
        "chain_id=1&registry=0x12&block_number=1&block_hash={h}&golden_id={g}",
        "chain_id=1&registry={r}&block_number=-1&block_hash={h}&golden_id={g}",
        "chain_id=1&registry={r}&block_number=1&block_hash=0x12&golden_id={g}",
        "chain_id=1&registry={r}&block_number=1&golden_id={g}",
        "chain_id=x&registry={r}&block_number=1&block_hash={h}&golden_id={g}",
        "chain_id=1&registry={r}&block_number=1&block_hash={h}",
        "chain_id=1&registry={r}&block_number=1&block_hash={h}&golden_id=0x77",
        "chain_id=1&registry={r}&block_number=1&block_hash={h}&golden_id=" + "77" * 32,
        "chain_id=1&chain_id=2&registry={r}&block_number=1&block_hash={h}&golden_id={g}",
        "chain_id=1&registry={r}&block_number=1&block_hash={h}&golden_id={g}&golden_id={g}",
    ],
    ids=["chain-id-zero", "short-registry", "negative-block", "short-hash", "missing-hash", "chain-id-text",
         "missing-golden-id", "short-golden-id", "unprefixed-golden-id", "repeated-chain-id", "repeated-golden-id"],
)
def test_bad_onchain_parameters_are_422(external: TestClient, query: str) -> None:
    path = "/onchain/collaterals?" + query.format(r=REGISTRY, h=BLOCK_HASH, g=GOLDEN_ID)
    _error(external.get(path), 422, "input.invalid")


@pytest.mark.parametrize(
    "path",
    [
        ONCHAIN + "&cvm_address=0x" + "66" * 20,
        ONCHAIN + "&extra_data=0x" + "00" * 32,
        "/collaterals/00?extra_data=" + "00" * 32,
        "/collaterals/00?qualifying_data=00",
        "/golden-measurement?pcrs=23",
    ],
    ids=["onchain-cvm-address", "onchain-extra-data", "offchain-extra-data", "qualifying-data", "golden-extra"],
)
def test_no_route_accepts_a_chosen_extra_data_or_address(external: TestClient, internal: TestClient, path: str) -> None:
    """Every route refuses parameters it does not define, so nobody can steer extraData or the address."""
    for client in (external, internal):
        _error(client.get(path), 422, "input.invalid")


def test_every_quote_binds_only_the_agents_forms(apps: tuple[FastAPI, FastAPI], sim_agent: Agent) -> None:
    """Walk the OpenAPI schema: the only routes that quote are the three evidence routes, and each takes
    exactly the parameters of its domain-separated form (no address, no raw extraData, no sealing key)."""
    for app in apps:
        params = {
            path: sorted(p["name"] for op in item.values() for p in op.get("parameters", []))
            for path, item in app.openapi()["paths"].items()
        }
        assert params["/collaterals/{nonce}"] == ["nonce"]
        assert params["/onchain/collaterals"] == ["block_hash", "block_number", "chain_id", "golden_id", "registry"]
        assert params["/sealing/collaterals/{nonce}"] == ["nonce"]
        assert params["/onchain/sealing-key"] == ["chain_id", "registry"]
        named = {name for names in params.values() for name in names}
        assert not named & {"cvm_address", "address", "extra_data", "qualifying_data", "sealing_key"}


def test_golden_measurement_carries_its_id(external: TestClient, sim_agent: Agent) -> None:
    response = external.get("/golden-measurement")
    assert response.status_code == 200
    assert response.headers["x-golden-id"] == "0x" + sim_agent.golden_measurement().canonical_id().hex()
    assert response.json()["binding"] == "direct"


def test_identity_platform_health_log(external: TestClient, sim_agent: Agent) -> None:
    identity = external.get("/identity").json()
    assert identity["cvm_address"] == sim_agent.key.address
    assert identity["ak_public_sha256"] == hashlib.sha256(sim_agent.tpm.ak_public).hexdigest()
    assert identity["ak_hash"] == identity["ak_public_sha256"]  # the deprecated name, kept (docs/agent.md)
    assert external.get("/platform").json()["platform"] == "sim"
    assert external.get("/healthz").json()["status"] == "ok"
    assert [e["name"] for e in external.get("/event-log").json()] == [e.name for e in sim_agent.workload.events()]


# --- which listener serves what ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/sign-message", "/sign-transaction", "/offchain-verify"])
def test_internal_only_routes_are_absent_outside(external: TestClient, path: str) -> None:
    _error(external.post(path, json={}), 404, "http.not_found")


def test_update_route_is_absent_inside(internal: TestClient) -> None:
    _error(internal.post("/update-workload", content=b"x", headers=ZIP_AUTH), 404, "http.not_found")


def test_method_not_allowed(internal: TestClient) -> None:
    _error(internal.get("/sign-message"), 405, "http.method_not_allowed")


def test_sign_message(internal: TestClient, sim_agent: Agent) -> None:
    response = internal.post("/sign-message", json={"text": "hello"})
    assert response.status_code == 200 and response.json()["address"] == sim_agent.key.address
    assert internal.post("/sign-message", json={"hex": "0x00ff"}).status_code == 200


@pytest.mark.parametrize("body", [{}, {"text": "a", "hex": "00"}, {"hex": "zz"}, {"text": "a", "extra": 1}, []],
                         ids=["neither", "both", "bad-hex", "unknown-field", "not-an-object"])
def test_sign_message_rejects(internal: TestClient, body: object) -> None:
    _error(internal.post("/sign-message", json=body), 422, "input.invalid")


def test_sign_transaction(internal: TestClient) -> None:
    tx = {"to": "0x" + "11" * 20, "value": 0, "gas": 21000, "gasPrice": 10**9, "nonce": 0, "chainId": 1}
    assert internal.post("/sign-transaction", json={"transaction": tx}).json()["raw_transaction"].startswith("0x")
    _error(internal.post("/sign-transaction", json={"transaction": {"to": "nowhere", "chainId": 1}}), 422,
           "input.invalid")


def test_offchain_verify_route(internal: TestClient, sim_agent: Agent) -> None:
    evidence = internal.get("/collaterals/aa").json()
    dev_root = (sim_agent.config.sim_dir / "ark.pem").read_text()
    verdict = internal.post("/offchain-verify", json={"evidence": evidence, "nonce": "aa", "dev_root": dev_root}).json()
    assert verdict["ok"] is True and verdict["reason"] is None
    refused = internal.post("/offchain-verify", json={"evidence": evidence, "nonce": "aa"}).json()
    assert refused["ok"] is False and refused["reason"] == "snp.chain.root_not_pinned"
    # The caller's malformed inputs are 422, as docs/agent.md says, not a verdict (issue 14, defect 12).
    _error(internal.post("/offchain-verify", json={"evidence": evidence, "nonce": "aa", "golden": {"version": 1}}),
           422, "input.invalid")
    _error(internal.post("/offchain-verify", json={"evidence": evidence, "nonce": "aa", "dev_root": "not a PEM"}),
           422, "input.invalid")


def test_json_body_size_is_bounded(internal: TestClient) -> None:
    _error(internal.post("/sign-message", content=b'{"text":"' + b"a" * (3 << 20) + b'"}',
                         headers={"content-type": "application/json"}), 413, "input.invalid")


def test_not_json_is_422(internal: TestClient) -> None:
    _error(internal.post("/sign-message", content=b"{", headers={"content-type": "application/json"}), 422,
           "input.invalid")


# --- updates: authentication and bounds (the update itself is exercised with its own agent) ---------------


def test_update_without_token_file_is_disabled(sim_agent: Agent) -> None:
    with TestClient(create_apps(sim_agent, update_token=None)[1]) as client:
        _error(client.post("/update-workload", content=b"zip", headers=ZIP_AUTH), 403, "workload.update_disabled")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "auth.required"),
        ({"Authorization": "Bearer wrong-token-0123456789"}, "auth.invalid"),
        ({"Authorization": "Bearer " + TOKEN.decode() + "x"}, "auth.invalid"),
        ({"Authorization": "Basic " + TOKEN.decode()}, "auth.invalid"),
        ({"Authorization": "Bearer"}, "auth.invalid"),
    ],
    ids=["missing", "wrong", "longer", "basic-scheme", "empty-bearer"],
)
def test_update_needs_the_token(external: TestClient, headers: dict[str, str], reason: str, sim_agent: Agent) -> None:
    before = tree_digest(sim_agent.config.workload_dir)
    response = external.post("/update-workload", content=make_zip(WORKLOAD), headers=headers)
    _error(response, 401, reason)
    assert response.headers["www-authenticate"] == "Bearer"
    assert tree_digest(sim_agent.config.workload_dir) == before


@pytest.fixture
def small_agent(swtpm: Swtpm, sim_chain: Path, tmp_path: Path) -> Iterator[Agent]:
    write_tree(tmp_path / "workload", WORKLOAD)
    limits = ArchiveLimits(max_upload_bytes=4096, max_total_bytes=1 << 16, max_file_bytes=1 << 14, max_entries=50)
    agent = Agent.start(agent_config(swtpm, tmp_path, sim_chain, ak=AkKind.ECC, limits=limits))
    yield agent
    agent.close()


def test_update_over_http(small_agent: Agent) -> None:
    with TestClient(create_apps(small_agent, update_token=BearerToken.plain(TOKEN))[1]) as client:
        before = client.get("/healthz").json()["pcr23"]
        new = {**WORKLOAD, "config/app.toml": b"[app]\nmode = 'staging'\n"}
        response = client.post("/update-workload", content=make_zip(new), headers=ZIP_AUTH)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "running" and body["pcr23"] == client.get("/healthz").json()["pcr23"] != before
        assert [e["name"] for e in body["events"]] == ["docker-compose.yml", "config/app.toml",
                                                        "config/nested/limits.json"]
        assert len(client.get("/event-log").json()) == 6


def test_a_token_file_may_hold_only_the_tokens_sha256(small_agent: Agent, tmp_path: Path) -> None:
    """What an image carries in its (provider-readable) root: the hash, never the token."""
    token_file = tmp_path / "token"
    token_file.write_text(f"sha256:{hashlib.sha256(TOKEN).hexdigest()}\n")
    token = read_token(token_file)
    assert token.hashed and token.matches(TOKEN) and not token.matches(token.value)
    with TestClient(create_apps(small_agent, update_token=token)[1]) as client:
        new = {**WORKLOAD, "config/app.toml": b"[app]\nmode = 'hashed'\n"}
        assert client.post("/update-workload", content=make_zip(new), headers=ZIP_AUTH).status_code == 200
        wrong = {**ZIP_AUTH, "Authorization": f"Bearer sha256:{hashlib.sha256(TOKEN).hexdigest()}"}
        refused = client.post("/update-workload", content=make_zip(new), headers=wrong)
        assert refused.status_code == 401 and refused.json()["reason"] == Reason.AUTH_INVALID.value


@pytest.mark.parametrize("text", ["sha256:" + "AB" * 32, "sha256:" + "ab" * 31, "short"])
def test_a_malformed_token_file_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "token").write_text(text)
    with pytest.raises(RequestError) as caught:
        read_token(tmp_path / "token")
    assert caught.value.reason is Reason.INPUT_INVALID and "sha256:" in caught.value.detail


def test_the_boot_event_log_is_served_parsed_and_replayed(swtpm: Swtpm, sim_chain: Path, tmp_path: Path) -> None:
    log = spec_id(BANKS) + event(4, 0x80000007, b"Calling EFI Application from Boot Option") + event(4, 4, bytes(4))
    (tmp_path / "binary_bios_measurements").write_bytes(log)
    write_tree(tmp_path / "workload", WORKLOAD)
    agent = Agent.start(agent_config(swtpm, tmp_path, sim_chain, ak=AkKind.ECC,
                                     boot_event_log=tmp_path / "binary_bios_measurements"))
    try:
        with TestClient(create_apps(agent, update_token=None)[1]) as client:
            body = client.get("/boot-event-log").json()
            (tmp_path / "binary_bios_measurements").write_bytes(log[:-3])
            broken = client.get("/boot-event-log")
    finally:
        agent.close()
    assert base64.b64decode(body["log"]) == log
    assert [e["type"] for e in body["events"]] == ["EV_EFI_ACTION", "EV_SEPARATOR"]
    assert body["replay"] == {"4": extend(b"Calling EFI Application from Boot Option", bytes(4)).hex()}
    assert broken.status_code == 503 and broken.json()["reason"] == Reason.TCG_LOG_MALFORMED.value


def test_no_boot_event_log_is_a_404_with_its_reason(swtpm: Swtpm, sim_chain: Path, tmp_path: Path) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    agent = Agent.start(agent_config(swtpm, tmp_path, sim_chain, ak=AkKind.ECC, boot_event_log=tmp_path / "absent"))
    try:
        with TestClient(create_apps(agent, update_token=None)[1]) as client:
            response = client.get("/boot-event-log")
    finally:
        agent.close()
    assert response.status_code == 404 and response.json()["reason"] == Reason.BOOT_LOG_UNAVAILABLE.value


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_update_too_large(small_agent: Agent, declared: bool) -> None:
    incompressible = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(200))
    data = make_zip({**WORKLOAD, "config/big": incompressible})
    assert len(data) > 4096
    with TestClient(create_apps(small_agent, update_token=BearerToken.plain(TOKEN))[1]) as client:
        before = tree_digest(small_agent.config.workload_dir)
        content = data if declared else iter([data[i : i + 1000] for i in range(0, len(data), 1000)])
        _error(client.post("/update-workload", content=content, headers=ZIP_AUTH), 413, "workload.archive.too_large")
        assert tree_digest(small_agent.config.workload_dir) == before


def test_update_with_a_malicious_archive(small_agent: Agent) -> None:
    with TestClient(create_apps(small_agent, update_token=BearerToken.plain(TOKEN))[1]) as client:
        before, pcr23 = tree_digest(small_agent.config.workload_dir), client.get("/healthz").json()["pcr23"]
        evil = make_zip({**WORKLOAD, "config/../../../../tmp/evil": b"x"})
        _error(client.post("/update-workload", content=evil, headers=ZIP_AUTH), 400, "workload.archive.unsafe_path")
        _error(client.post("/update-workload", content=b"garbage", headers=ZIP_AUTH), 400, "workload.archive.invalid")
        assert tree_digest(small_agent.config.workload_dir) == before
        assert client.get("/healthz").json()["pcr23"] == pcr23


@pytest.mark.parametrize("content_type", [None, "text/plain", "multipart/form-data; boundary=x", "application/zipx"])
def test_update_must_be_declared_a_zip(small_agent: Agent, content_type: str | None) -> None:
    # Issue 14, defect 12: a body that is not declared application/zip is 415, before anything is read.
    headers = dict(AUTH) if content_type is None else {**AUTH, "Content-Type": content_type}
    with TestClient(create_apps(small_agent, update_token=BearerToken.plain(TOKEN))[1]) as client:
        before = tree_digest(small_agent.config.workload_dir)
        response = client.post("/update-workload", content=make_zip(WORKLOAD), headers=headers)
        _error(response, 415, "http.unsupported_media_type")
        assert tree_digest(small_agent.config.workload_dir) == before
        ok = client.post("/update-workload", content=make_zip(WORKLOAD),
                         headers={**AUTH, "Content-Type": "application/zip; charset=binary"})
        assert ok.status_code == 200, ok.text


def test_update_with_a_forbidden_compose(small_agent: Agent) -> None:
    with TestClient(create_apps(small_agent, update_token=BearerToken.plain(TOKEN))[1]) as client:
        before, health = tree_digest(small_agent.config.workload_dir), client.get("/healthz").json()
        log = client.get("/event-log").json()
        evil = make_zip({**WORKLOAD, "docker-compose.yml": TPM_COMPOSE})
        body = _error(client.post("/update-workload", content=evil, headers=ZIP_AUTH), 400, "workload.compose_forbidden")
        assert [(v["service"], v["key"]) for v in body["context"]["violations"]] == [("app", "devices")]
        broken = make_zip({**WORKLOAD, "docker-compose.yml": b"services: {app: {cap_add: SYS_ADMIN}}\n"})
        _error(client.post("/update-workload", content=broken, headers=ZIP_AUTH), 400, "workload.compose_malformed")
        assert tree_digest(small_agent.config.workload_dir) == before
        assert client.get("/healthz").json() == health  # PCR23, its event count and the workload's status
        assert client.get("/event-log").json() == log


def test_tpm_gone_is_503(swtpm: Swtpm, sim_chain: Path, tmp_path: Path) -> None:
    agent = Agent.start(agent_config(swtpm, tmp_path, sim_chain, ak=AkKind.ECC))
    try:
        with TestClient(create_apps(agent, update_token=None)[1]) as client:
            assert client.get("/healthz").status_code == 200
            swtpm.stop()
            _error(client.get("/collaterals/00"), 503, "tpm.unavailable")
            _error(client.get("/healthz"), 503, "tpm.unavailable")
            _error(client.get("/golden-measurement"), 503, "tpm.unavailable")
    finally:
        agent.close()


# --- consent to golden measurements ----------------------------------------------------------------------


def test_consent_added_at_run_time_is_listed_persisted_and_used(small_agent: Agent) -> None:
    other = OTHER_GOLDEN_ID
    with TestClient(create_apps(small_agent, update_token=BearerToken.plain(TOKEN))[1]) as client:
        assert client.get("/golden-consents", headers=AUTH).json() == {"consents": []}
        _error(client.get(f"{ONCHAIN_BASE}&golden_id={other}"), 403, "agent.golden_not_consented")
        response = client.post("/golden-consents", json={"golden_id": other.upper().replace("0X", "0x")},
                               headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json()["added"] is True and response.json()["golden_id"] == other
        assert client.post("/golden-consents", json={"golden_id": other}, headers=AUTH).json()["added"] is False
        assert client.get("/golden-consents", headers=AUTH).json() == {
            "consents": [{"golden_id": other, "source": "runtime"}]}
        bundle = client.get(f"{ONCHAIN_BASE}&golden_id={other}")
        assert bundle.status_code == 200 and bundle.json()["nonce"]["golden_id"] == other
    # Kept in the state directory, outside the measured workload.
    stored = small_agent.config.consents_path
    assert stored.parent == small_agent.config.state_dir and not stored.is_relative_to(small_agent.config.workload_dir)
    assert stored.stat().st_mode & 0o777 == 0o600
    assert stored.read_text().count(other[2:]) == 1


@pytest.mark.parametrize(
    ("method", "headers", "status", "reason"),
    [
        ("get", {}, 401, "auth.required"),
        ("post", {}, 401, "auth.required"),
        ("post", {"Authorization": "Bearer wrong-token-0123456789"}, 401, "auth.invalid"),
    ],
    ids=["list-without-token", "add-without-token", "add-wrong-token"],
)
def test_consent_routes_need_the_token(small_agent: Agent, method: str, headers: dict[str, str], status: int,
                                       reason: str) -> None:
    with TestClient(create_apps(small_agent, update_token=BearerToken.plain(TOKEN))[1]) as client:
        response = client.request(method, "/golden-consents", json={"golden_id": OTHER_GOLDEN_ID}, headers=headers)
        _error(response, status, reason)
        _error(client.get(f"{ONCHAIN_BASE}&golden_id={OTHER_GOLDEN_ID}"), 403, "agent.golden_not_consented")
    assert not small_agent.config.consents_path.exists()


def test_consent_routes_without_token_file_are_disabled(sim_agent: Agent) -> None:
    with TestClient(create_apps(sim_agent, update_token=None)[1]) as client:
        _error(client.post("/golden-consents", json={"golden_id": OTHER_GOLDEN_ID}, headers=AUTH), 403,
               "workload.update_disabled")
        _error(client.get("/golden-consents", headers=AUTH), 403, "workload.update_disabled")


@pytest.mark.parametrize("body", [{}, {"golden_id": "0x77"}, {"golden_id": "77" * 32}, {"golden_id": GOLDEN_ID, "x": 1},
                                  {"golden_id": "0x" + "zz" * 32}],
                         ids=["missing", "short", "unprefixed", "unknown-field", "not-hex"])
def test_consent_rejects_what_is_not_a_golden_id(small_agent: Agent, body: dict[str, object]) -> None:
    with TestClient(create_apps(small_agent, update_token=BearerToken.plain(TOKEN))[1]) as client:
        _error(client.post("/golden-consents", json=body, headers=AUTH), 422, "input.invalid")
    assert not small_agent.config.consents_path.exists()


def test_consent_routes_are_absent_inside(internal: TestClient) -> None:
    _error(internal.post("/golden-consents", json={"golden_id": OTHER_GOLDEN_ID}, headers=AUTH), 404,
           "http.not_found")


def test_configured_consents_are_listed(sim_agent: Agent, external: TestClient) -> None:
    assert external.get("/golden-consents", headers=AUTH).json()["consents"][0] == {
        "golden_id": GOLDEN_ID, "source": "configured"}


# --- a debug guest has no golden measurement ------------------------------------------------------------


def test_golden_measurement_of_a_debug_guest_is_a_typed_409(swtpm: Swtpm, sim_chain: Path, tmp_path: Path) -> None:
    write_tree(tmp_path / "workload", WORKLOAD)
    agent = Agent.start(agent_config(swtpm, tmp_path, sim_chain, ak=AkKind.ECC, sim_debug=True))
    try:
        assert agent.platform.attest(agent.tpm.ak_public).snp_report.guest_policy.debug
        with TestClient(create_apps(agent, update_token=None)[1], raise_server_exceptions=False) as client:
            _error(client.get("/golden-measurement"), 409, "policy.debug_allowed")
            assert client.get("/collaterals/00").status_code == 200  # evidence is still served, honestly
    finally:
        agent.close()


# --- schemathesis: no input makes either listener answer 5xx ---------------------------------------------


@pytest.fixture(scope="module")
def internal_schema(apps: tuple[FastAPI, FastAPI]) -> object:
    return schemathesis.openapi.from_asgi("/openapi.json", apps[0])


@pytest.fixture(scope="module")
def external_schema(apps: tuple[FastAPI, FastAPI]) -> object:
    return schemathesis.openapi.from_asgi("/openapi.json", apps[1])


# The update route takes a raw zip body: generate arbitrary bytes for it.
schemathesis.serializer.alias("application/zip", "application/octet-stream")
internal_api = schemathesis.pytest.from_fixture("internal_schema")
external_api = schemathesis.pytest.from_fixture("external_schema")


@internal_api.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_internal_listener_never_fails_with_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])


@external_api.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_external_listener_never_fails_with_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])


# --- the OpenAPI contract and the logs (issue 14, defect 12) ------------------------------------------------


TOKEN_ROUTES = {("post", "/update-workload"), ("post", "/secrets"), ("get", "/golden-consents"),
                ("post", "/golden-consents")}


def test_openapi_declares_the_bearer_scheme_on_the_token_routes(apps: tuple[FastAPI, FastAPI]) -> None:
    spec = apps[1].openapi()
    assert spec["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearerToken"]["description"],
    }
    secured = {(method, path) for path, item in spec["paths"].items() for method, op in item.items()
               if op.get("security") == [{"bearerToken": []}]}
    assert secured == TOKEN_ROUTES


def _resolve(spec: dict[str, object], schema: dict[str, object]) -> dict[str, object]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return spec["components"]["schemas"][ref.rsplit("/", 1)[1]]  # type: ignore[index, no-any-return]
    return schema


def test_openapi_models_the_answers(apps: tuple[FastAPI, FastAPI]) -> None:
    """The evidence bundle and the other answers are typed models, not ``additionalProperties: true``."""
    spec = apps[0].openapi()
    for path in ("/collaterals/{nonce}", "/onchain/collaterals", "/sealing/collaterals/{nonce}"):
        schema = _resolve(spec, spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"])
        assert schema["title"] == "EvidenceBundleBody" and schema["additionalProperties"] is False
        assert {"snp_report", "certificates", "ak_public", "quote", "pcrs", "nonce"} <= set(schema["properties"])
    for path, method, title in (("/identity", "get", "IdentityBody"), ("/healthz", "get", "HealthBody"),
                                ("/sign-message", "post", "SignedMessageBody"),
                                ("/sign-transaction", "post", "SignedTransactionBody")):
        schema = _resolve(spec, spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"])
        assert schema["title"] == title, path
    identity = spec["components"]["schemas"]["IdentityBody"]["properties"]
    assert identity["ak_hash"]["deprecated"] is True and "ak_public_sha256" in identity


def test_a_bundle_through_its_model_is_the_bundle(internal: TestClient, sim_agent: Agent) -> None:
    """The wire bytes are the bundle's own: no field the model adds (``null``), none it drops."""
    served = internal.get("/collaterals/" + "ab" * 8).json()
    assert "hcl_report" not in served and served["nonce"] == {"form": "offchain", "value": "ab" * 8}
    assert EvidenceBundle.from_json(served).to_json() == served


def test_access_and_audit_lines(external: TestClient, internal: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="cvm_agent")
    external.get("/healthz")
    external.post("/update-workload", content=b"x", headers={"Authorization": "Bearer wrong-token-0123456789",
                                                             "Content-Type": "application/zip"})
    signed = internal.post("/sign-message", json={"text": "hello"}).json()
    internal.post("/sign-transaction", json={"transaction": {"to": "0x" + "11" * 20, "value": 1, "gas": 21000,
                                                             "gasPrice": 1, "nonce": 3}})
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("cvm_agent.")]
    access = [m for name, _, m in lines if name == "cvm_agent.access"]
    assert any(m.startswith("GET /healthz 200 ") for m in access)
    assert any(m.startswith("POST /update-workload 401 ") for m in access)
    audit = [(level, m) for name, level, m in lines if name == "cvm_agent.audit"]
    assert [level for level, _ in audit] == ["WARNING", "INFO", "WARNING"]
    assert audit[0][1].startswith("token refused on POST /update-workload for ") and "[auth.invalid]" in audit[0][1]
    assert audit[1][1].endswith("message_hash " + signed["message_hash"])
    assert "sign-transaction refused" in audit[2][1] and "nonce 3" in audit[2][1] and "[input.invalid]" in audit[2][1]
    assert "wrong-token" not in " ".join(m for _, _, m in lines)  # a refused token is never logged
