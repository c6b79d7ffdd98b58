"""agent.config: TCTI strings, listener addresses, PCR selections, the simulated measurement."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import (
    DEFAULT_PCRS,
    AgentConfig,
    Listen,
    PlatformName,
    Tcti,
    UnixListen,
    parse_golden_id,
    parse_group,
    parse_internal,
    parse_measurement,
    parse_pcrs,
    read_consent_file,
)
from offchain.errors import CvmAttestError, Reason
from workload.compose import ComposeRules


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


def test_internal_listener_is_a_unix_socket_unless_tcp_is_asked_for() -> None:
    assert parse_internal("unix:/run/cvm-agent/internal.sock") == UnixListen(Path("/run/cvm-agent/internal.sock"))
    assert parse_internal("127.0.0.1:7999") == Listen("127.0.0.1", 7999)
    assert str(parse_internal("unix:/run/x/s")) == "unix:/run/x/s"


@pytest.mark.parametrize(
    "text",
    ["unix:", "unix:relative/s.sock", "unix:/", "unix:/run/dir/", "unix:/run/../etc/s", "unix:/run/x\0y",
     "unix:/" + "a" * 107, "unix/run/s"],
    ids=["empty", "relative", "root", "trailing-slash", "dot-dot", "nul", "too-long", "no-colon"],
)
def test_unix_listener_rejects(text: str) -> None:
    with pytest.raises(CvmAttestError) as exc:
        parse_internal(text)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_group_by_name_or_number() -> None:
    assert parse_group("0") == 0 and parse_group("root") == 0
    with pytest.raises(CvmAttestError) as exc:
        parse_group("no-such-group-cvm-attest")
    assert exc.value.reason is Reason.INPUT_INVALID


def test_golden_ids_and_the_consent_file(tmp_path: Path) -> None:
    assert parse_golden_id("0x" + "Ab" * 32) == bytes([0xAB]) * 32
    (tmp_path / "consents").write_text(f"# goldens we accept\n0x{'11' * 32}\n\n  0x{'22' * 32}  # v2\n")
    assert read_consent_file(tmp_path / "consents") == (b"\x11" * 32, b"\x22" * 32)


@pytest.mark.parametrize("text", ["", "0x", "11" * 32, "0x" + "11" * 31, "0x" + "11" * 33, "0x" + "zz" * 32,
                                  "0X" + "11" * 32],
                         ids=["empty", "bare-prefix", "unprefixed", "short", "long", "not-hex", "upper-prefix"])
def test_golden_id_rejects(text: str, tmp_path: Path) -> None:
    with pytest.raises(CvmAttestError) as exc:
        parse_golden_id(text)
    assert exc.value.reason is Reason.INPUT_INVALID
    (tmp_path / "consents").write_text(f"0x{'11' * 32}\n{text or '-'}\n")
    with pytest.raises(CvmAttestError) as exc:
        read_consent_file(tmp_path / "consents")
    assert exc.value.reason is Reason.INPUT_INVALID and ":2:" in exc.value.detail


def test_consent_file_unreadable(tmp_path: Path) -> None:
    with pytest.raises(CvmAttestError) as exc:
        read_consent_file(tmp_path / "absent")
    assert exc.value.reason is Reason.INPUT_INVALID
    (tmp_path / "binary").write_bytes(b"\xff\xfe")
    with pytest.raises(CvmAttestError) as exc:
        read_consent_file(tmp_path / "binary")
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
    assert config.internal == UnixListen(Path("/run/cvm-agent/internal.sock")) and config.internal_group is None
    assert config.consented_goldens == () and config.consents_path == Path("/s/golden-consents.json")
    assert config.external is not None and str(config.external) == "0.0.0.0:8000"
    assert config.runner == ("podman-compose", "up", "-d", "--force-recreate")
    assert config.event_log_path == Path("/s/event-log.jsonl")
    assert config.sim_dir == Path("/s/sim")
    assert config.compose_rules == ComposeRules(
        PurePosixPath("/s"), PurePosixPath("/w"), PurePosixPath("/run/cvm-agent")
    ) == ComposeRules(workload_dir=PurePosixPath("/w"), state_dir=PurePosixPath("/s"))


def test_compose_rules_follow_the_configured_directories(tmp_path: Path) -> None:
    config = _config(state_dir=tmp_path / "state", workload_dir=tmp_path / "app",
                     internal=UnixListen(tmp_path / "sock/internal.sock"))
    base = PurePosixPath(tmp_path.resolve())
    assert config.compose_rules == ComposeRules(base / "state", base / "app", base / "sock")
    assert _config(internal=Listen("127.0.0.1", 7999)).compose_rules.socket_dir is None  # no socket to mount


@pytest.mark.parametrize(
    "changes",
    [
        {"pcrs": (0, 1)},
        {"pcrs": (23, 0)},
        {"tls_cert": Path("/c.pem")},
        {"sim_measurement": b"\x00" * 47},
        {"runner": ()},
        {"snp_privlevel": 4},
        {"internal": Listen("127.0.0.1", 7999), "internal_group": 0},
        {"consented_goldens": (b"\x01" * 31,)},
        {"consented_goldens": tuple(i.to_bytes(32, "big") for i in range(257))},
        {"sim_debug": True, "platform": PlatformName.SNP},
        {"workload_dir": Path("/s")},
        {"state_dir": Path("/w/state")},
    ],
    ids=["no-pcr23", "unsorted-pcrs", "cert-without-key", "short-measurement", "empty-runner", "privlevel",
         "group-on-tcp", "short-golden-id", "too-many-consents", "sim-debug-on-snp", "workload-is-state",
         "state-in-workload"],
)
def test_config_rejects(changes: dict[str, object]) -> None:
    with pytest.raises(CvmAttestError) as exc:
        _config(**changes)
    assert exc.value.reason is Reason.INPUT_INVALID


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parsers_give_only_typed_errors(text: str) -> None:
    for parse in (Tcti.parse, Listen.parse, parse_internal, parse_pcrs, parse_measurement, parse_golden_id):
        try:
            parse(text)
        except CvmAttestError as exc:
            assert exc.reason is Reason.INPUT_INVALID


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_unix_listener_gives_only_typed_errors(text: str) -> None:
    for candidate in ("unix:" + text, "unix:/" + text):
        try:
            listen = parse_internal(candidate)
        except CvmAttestError as exc:
            assert exc.reason is Reason.INPUT_INVALID
        else:
            assert isinstance(listen, UnixListen) and listen.path.is_absolute() and ".." not in listen.path.parts
