"""agent.config: TCTI strings, listener addresses, PCR selections, the simulated measurement."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import (
    DEFAULT_PCRS,
    AgentConfig,
    Listen,
    PlatformName,
    Tcti,
    parse_measurement,
    parse_pcrs,
)
from offchain.errors import CvmAttestError, Reason


@pytest.mark.parametrize(
    ("text", "name", "conf"),
    [
        ("device:/dev/tpmrm0", "device", "/dev/tpmrm0"),
        ("swtpm:host=127.0.0.1,port=2321", "swtpm", "host=127.0.0.1,port=2321"),
        ("mssim:host=localhost,port=2321", "mssim", "host=localhost,port=2321"),
    ],
    ids=["device", "swtpm", "mssim"],
)
def test_tcti_parses(text: str, name: str, conf: str) -> None:
    tcti = Tcti.parse(text)
    assert (tcti.name, tcti.conf, str(tcti)) == (name, conf, text)


@pytest.mark.parametrize("text", ["", "device", "device:", "tabrmd:bus=session", "/dev/tpmrm0"],
                         ids=["empty", "no-colon", "no-conf", "unknown-tcti", "bare-path"])
def test_tcti_rejects(text: str) -> None:
    with pytest.raises(CvmAttestError) as exc:
        Tcti.parse(text)
    assert exc.value.reason is Reason.INPUT_INVALID


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:7999", "127.0.0.1", 7999), ("0.0.0.0:8000", "0.0.0.0", 8000), ("[::1]:80", "::1", 80),
     ("localhost:1", "localhost", 1)],
    ids=["v4", "any", "v6", "localhost"],
)
def test_listen_parses(text: str, host: str, port: int) -> None:
    listen = Listen.parse(text)
    assert (listen.host, listen.port) == (host, port)
    assert Listen.parse(str(listen)) == listen


@pytest.mark.parametrize("text", ["7999", "127.0.0.1:", "127.0.0.1:99999", "example.com:80", "1.2.3.4:-1"],
                         ids=["port-only", "no-port", "port-range", "hostname", "negative"])
def test_listen_rejects(text: str) -> None:
    with pytest.raises(CvmAttestError) as exc:
        Listen.parse(text)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_pcr_selection_always_has_pcr23() -> None:
    assert parse_pcrs("0-3,7") == (0, 1, 2, 3, 7, 23)
    assert parse_pcrs("") == (23,)
    assert 23 in DEFAULT_PCRS and 10 not in DEFAULT_PCRS


@pytest.mark.parametrize("text", ["0-24", "a", "3-1", "-1", "1-2-3"], ids=["too-high", "letters", "reversed",
                                                                          "negative", "two-dashes"])
def test_pcr_selection_rejects(text: str) -> None:
    with pytest.raises(CvmAttestError) as exc:
        parse_pcrs(text)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_sim_measurement() -> None:
    assert parse_measurement("ab" * 48) == bytes([0xAB]) * 48
    for bad in ("ab" * 47, "zz" * 48, "ab" * 49):
        with pytest.raises(CvmAttestError) as exc:
            parse_measurement(bad)
        assert exc.value.reason is Reason.INPUT_INVALID


def _config(**changes: object) -> AgentConfig:
    base: dict[str, object] = dict(
        platform=PlatformName.SIM, tcti=Tcti.parse("swtpm:host=127.0.0.1,port=1"), state_dir=Path("/s"),
        workload_dir=Path("/w"),
    )
    base.update(changes)
    return AgentConfig(**base)  # type: ignore[arg-type]


def test_config_defaults_describe_a_real_cvm() -> None:
    config = _config()
    assert str(config.internal) == "127.0.0.1:7999"
    assert config.external is not None and str(config.external) == "0.0.0.0:8000"
    assert config.runner == ("podman-compose", "up", "-d")
    assert config.event_log_path == Path("/s/event-log.jsonl")
    assert config.sim_dir == Path("/s/sim")


@pytest.mark.parametrize(
    "changes",
    [
        {"pcrs": (0, 1)},
        {"pcrs": (23, 0)},
        {"tls_cert": Path("/c.pem")},
        {"sim_measurement": b"\x00" * 47},
        {"runner": ()},
        {"snp_privlevel": 4},
    ],
    ids=["no-pcr23", "unsorted-pcrs", "cert-without-key", "short-measurement", "empty-runner", "privlevel"],
)
def test_config_rejects(changes: dict[str, object]) -> None:
    with pytest.raises(CvmAttestError) as exc:
        _config(**changes)
    assert exc.value.reason is Reason.INPUT_INVALID


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parsers_give_only_typed_errors(text: str) -> None:
    for parse in (Tcti.parse, Listen.parse, parse_pcrs, parse_measurement):
        try:
            parse(text)
        except CvmAttestError as exc:
            assert exc.reason is Reason.INPUT_INVALID


def test_agent_never_imports_onchain() -> None:
    """CONVENTIONS.md: ``agent`` does not import ``onchain`` (it may import ``offchain``)."""
    root = Path(__file__).resolve().parents[3] / "agent"
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "onchain" or n.startswith("onchain.") for n in names), path
