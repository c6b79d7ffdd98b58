"""workload.compose: a docker-compose.yml that gives a container the TPM, the SEV guest device, the
host's namespaces or the agent's state is refused, every violation named by service and key; a safe
one passes; a malformed one is a typed error."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offchain.errors import CvmAttestError, ParseError, Reason, RequestError
from tests.support.agent import COMPOSE, TPM_COMPOSE
from workload.compose import (
    MAX_COMPOSE_BYTES,
    SAFE_CAPABILITIES,
    UNCHECKED_COMPOSE_FILES,
    ComposeRules,
    check_compose,
    check_workload_dir,
    parse_compose,
)

RULES = ComposeRules()

#: What a workload reasonably does: images by digest, its config read-only, a named volume, a tmpfs,
#: the agent's socket directory read-only, a GPU by CDI name, Docker's default capabilities back.
SAFE = b"""
x-common: &common
  restart: unless-stopped
  security_opt: [no-new-privileges:true, seccomp=./config/seccomp.json, label=level:s0:c1]
services:
  web:
    <<: *common
    image: registry.example/web@sha256:%(d)s
    privileged: false
    cap_drop: [ALL]
    cap_add: [NET_BIND_SERVICE, cap_chown, setuid, SETGID]
    network_mode: bridge
    ipc: shareable
    devices: [/dev/fuse, "nvidia.com/gpu=all", {source: /dev/net/tun, target: /dev/net/tun}]
    volumes:
      - ./config/web:/etc/web:ro
      - ./secrets/api-key:/run/secrets/api-key:ro
      - data:/var/lib/web
      - /cache
      - /run/cvm-agent:/run/cvm-agent:ro
      - {type: bind, source: ./config/extra, target: /extra}
      - {type: bind, source: /run/cvm-agent, target: /agent, read_only: true}
      - {type: tmpfs, target: /tmp}
      - /srv/shared:/shared
    runtime: crun
  worker:
    extends: web
    pid: "service:web"
    build: {context: ./config/worker, network: default}
volumes:
  data:
  local: {driver: local, driver_opts: {type: nfs, o: "addr=10.0.0.1", device: ":/export"}}
networks:
  front: {external: true, name: front}
secrets:
  api: {file: ./secrets/api-key}
x-podman: {in_pod: false}
""" % {b"d": b"ab" * 32}


def _violations(data: bytes, rules: ComposeRules = RULES) -> list[tuple[str | None, str]]:
    with pytest.raises(RequestError) as exc:
        check_compose(data, rules)
    assert exc.value.reason is Reason.WORKLOAD_COMPOSE_FORBIDDEN
    found: list[dict[str, Any]] = exc.value.context["violations"]
    assert all(v["why"] and v["value"] != "" for v in found)
    return [(v["service"], v["key"]) for v in found]


def _service(body: str) -> bytes:
    lines = "".join(f"    {line}\n" for line in body.splitlines())
    return f"services:\n  web:\n    image: example/web\n{lines}".encode()


def test_a_safe_compose_passes() -> None:
    check_compose(SAFE, RULES)
    check_compose(COMPOSE, RULES)
    check_compose(b"services: {}\n", RULES)


# One row per rule: the service's extra keys, and the key the refusal names. Each has a twin in
# ACCEPTED below that differs in the one thing the rule looks at.
FORBIDDEN = [
    ("privileged: true", "privileged"),
    ("privileged: 'false'", "privileged"),
    ("devices: [/dev/tpmrm0]", "devices"),
    ("devices: ['/dev/tpm0:/dev/tpm0:rwm']", "devices"),
    ("devices: [{source: /dev/tpmrm0, target: /dev/tpm}]", "devices"),
    ("devices: [/dev/sev-guest]", "devices"),
    ("devices: [/dev/sev]", "devices"),
    ("devices: [/dev/../dev/tpmrm0]", "devices"),
    ("devices: [/dev]", "devices"),
    ("devices: [/dev/char/10:224]", "devices"),
    ("devices: [/dev/mem]", "devices"),
    ("devices: [/dev/vda]", "devices"),
    ("devices: ['${DEVICE}']", "devices"),
    ("device_cgroup_rules: ['c 10:* rmw']", "device_cgroup_rules"),
    ("cap_add: [SYS_ADMIN]", "cap_add"),
    ("cap_add: [CAP_SYS_RAWIO]", "cap_add"),
    ("cap_add: [sys_ptrace]", "cap_add"),
    ("cap_add: [NET_ADMIN]", "cap_add"),
    ("cap_add: [ALL]", "cap_add"),
    ("cap_add: [DAC_READ_SEARCH]", "cap_add"),
    ("network_mode: host", "network_mode"),
    ("network_mode: ns:/proc/1/ns/net", "network_mode"),
    ("pid: host", "pid"),
    ("ipc: host", "ipc"),
    ("uts: host", "uts"),
    ("userns_mode: host", "userns_mode"),
    ("cgroup: host", "cgroup"),
    ("pid: '${PID_MODE}'", "pid"),
    ("security_opt: [seccomp=unconfined]", "security_opt"),
    ("security_opt: ['seccomp:unconfined']", "security_opt"),
    ("security_opt: [apparmor=unconfined]", "security_opt"),
    ("security_opt: ['label:disable']", "security_opt"),
    ("security_opt: [label=type:spc_t]", "security_opt"),
    ("security_opt: [systempaths=unconfined]", "security_opt"),
    ("security_opt: [unmask=ALL]", "security_opt"),
    ("volumes: ['/:/host']", "volumes"),
    ("volumes: ['/dev:/dev']", "volumes"),
    ("volumes: ['/dev/tpmrm0:/dev/tpmrm0']", "volumes"),
    ("volumes: ['/sys:/sys:ro']", "volumes"),
    ("volumes: ['/proc:/host-proc']", "volumes"),
    ("volumes: ['/run:/run']", "volumes"),
    ("volumes: ['/run/podman/podman.sock:/var/run/docker.sock']", "volumes"),
    ("volumes: ['/var/run/docker.sock:/var/run/docker.sock']", "volumes"),
    ("volumes: ['/run/user/1000/podman/podman.sock:/sock']", "volumes"),
    ("volumes: ['/var/lib/containers:/c']", "volumes"),
    ("volumes: ['/var/lib/cvm-agent:/state']", "volumes"),
    ("volumes: ['/var/lib/cvm-agent/event-log.jsonl:/log']", "volumes"),
    ("volumes: ['/var:/var']", "volumes"),
    ("volumes: ['.:/workload']", "volumes"),
    ("volumes: ['./docker-compose.yml:/c']", "volumes"),
    ("volumes: ['./images.txt:/i']", "volumes"),
    ("volumes: ['./config/../../event-log.jsonl:/log']", "volumes"),
    ("volumes: ['/run/cvm-agent:/run/cvm-agent']", "volumes"),
    ("volumes: ['/run/cvm-agent/internal.sock:/agent.sock:ro']", "volumes"),
    ("volumes: ['~/.config:/c']", "volumes"),
    ("volumes: ['${HOST_DIR}:/data']", "volumes"),
    ("volumes: [{type: bind, source: /dev, target: /dev}]", "volumes"),
    ("volumes: [{source: /sys, target: /sys}]", "volumes"),
    ("volumes: [{type: bind, source: /run/cvm-agent, target: /agent}]", "volumes"),
    ("x-podman.rootfs: /", "x-podman.rootfs"),
    ("runtime: ./config/runc", "runtime"),
    ("extends: {file: config/base.yml, service: base}", "extends.file"),
    ("build: {context: ./config/app, privileged: true}", "build.privileged"),
    ("build: {context: ./config/app, network: host}", "build.network"),
    ("build: {context: ./config/app, entitlements: [security.insecure]}", "build.entitlements"),
]

ACCEPTED = [
    "privileged: false",
    "devices: [/dev/fuse]",
    "devices: ['/dev/net/tun:/dev/net/tun:rwm']",
    "devices: [{source: /dev/fuse}]",
    "devices: [nvidia.com/gpu=all]",
    "cap_add: [NET_BIND_SERVICE]",
    "cap_add: [CAP_CHOWN, kill]",
    "network_mode: bridge",
    "network_mode: none",
    "pid: 'service:db'",
    "ipc: private",
    "userns_mode: keep-id",
    "cgroup: private",
    "security_opt: [no-new-privileges:true]",
    "security_opt: [apparmor=docker-default]",
    "security_opt: ['label=level:s0:c100']",
    "volumes: ['./config:/etc/app:ro']",
    "volumes: ['./config:/etc/app']",
    "volumes: ['./secrets/key:/key:ro']",
    "volumes: ['./data:/data']",
    "volumes: ['/var/lib/cvm-agent/workload/config:/c:ro']",
    "volumes: ['/srv/data:/data']",
    "volumes: ['/run/cvm-agent:/run/cvm-agent:ro']",
    "volumes: ['/run/cvm-agent/:/agent:ro,z']",
    "volumes: [named:/data]",
    "volumes: [/anonymous]",
    "volumes: ['/anonymous:ro']",
    "volumes: [{type: bind, source: ./config, target: /c}]",
    "volumes: [{type: bind, source: /run/cvm-agent, target: /agent, read_only: true}]",
    "volumes: [{type: volume, source: named, target: /data}]",
    "volumes: [{type: tmpfs, target: /tmp}]",
    "x-podman.rootfs: ./config/rootfs",
    "runtime: crun",
    "extends: {service: base}",
    "build: {context: ./config/app}",
]


@pytest.mark.parametrize(("body", "key"), FORBIDDEN, ids=[body for body, _ in FORBIDDEN])
def test_each_rule_refuses_and_names_the_service_and_the_key(body: str, key: str) -> None:
    assert _violations(_service(body)) == [("web", key)]


@pytest.mark.parametrize("body", ACCEPTED, ids=ACCEPTED)
def test_its_twin_passes(body: str) -> None:
    check_compose(_service(body), RULES)


TOP_LEVEL = [
    ("include: [other.yml]", "include"),
    ("x-podman: {pod_args: ['--pid=host']}", "x-podman.pod_args"),
    ("networks: {outside: {external: true, name: host}}", "networks.outside"),
    ("networks: {host: {external: true}}", "networks.host"),
    ("volumes: {state: {driver_opts: {type: none, o: bind, device: /var/lib/cvm-agent}}}",
     "volumes.state.driver_opts.device"),
    ("volumes: {disk: {driver_opts: {type: ext4, device: /dev/vdb1}}}", "volumes.disk.driver_opts.device"),
    ("secrets: {engine: {file: /run/podman/podman.sock}}", "secrets.engine.file"),
    ("configs: {log: {file: /var/lib/cvm-agent/event-log.jsonl}}", "configs.log.file"),
]


@pytest.mark.parametrize(("body", "key"), TOP_LEVEL, ids=[key for _, key in TOP_LEVEL])
def test_top_level_keys_are_checked_too(body: str, key: str) -> None:
    assert _violations(b"services: {}\n" + body.encode() + b"\n") == [(None, key)]


def test_every_violation_is_reported_with_its_service() -> None:
    data = (b"services:\n"
            b"  web: {image: a, privileged: true, cap_add: [SYS_ADMIN, CHOWN, SYS_MODULE], pid: host}\n"
            b"  db: {image: b, devices: [/dev/tpmrm0], volumes: ['/dev:/dev', './config:/c', '/proc:/p']}\n"
            b"include: [x.yml]\n")
    assert _violations(data) == [
        ("web", "privileged"), ("web", "cap_add"), ("web", "cap_add"), ("web", "pid"),
        ("db", "devices"), ("db", "volumes"), ("db", "volumes"), (None, "include"),
    ]


def test_a_merged_key_is_checked_where_it_lands() -> None:
    data = b"x-base: &base {privileged: true}\nservices:\n  web:\n    <<: *base\n    image: a\n"
    assert _violations(data) == [("web", "privileged")]


def test_the_agents_own_directories_decide() -> None:
    rules = ComposeRules(
        state_dir=PurePosixPath("/srv/agent"), workload_dir=PurePosixPath("/srv/workload"),
        socket_dir=PurePosixPath("/srv/socket"),
    )
    assert _violations(_service("volumes: ['/srv/agent:/s', '..:/up', '/srv/socket:/a']"), rules) == [
        ("web", "volumes"), ("web", "volumes"), ("web", "volumes"),  # state, the workload's parent, writable socket
    ]
    check_compose(_service("volumes: ['/var/lib/cvm-agent:/s', '/srv/socket:/a:ro', '/srv/workload/config:/c']"), rules)
    # Without a Unix socket (the internal API on TCP) nothing under /run may be mounted.
    no_socket = ComposeRules(socket_dir=None)
    assert _violations(_service("volumes: ['/run/cvm-agent:/run/cvm-agent:ro']"), no_socket) == [("web", "volumes")]


def test_the_safe_capability_list_is_dockers_default_set() -> None:
    # moby oci/caps/defaults.go; adding ALL or SYS_ADMIN must never become "safe".
    assert len(SAFE_CAPABILITIES) == 14 and {"ALL", "SYS_ADMIN", "SYS_RAWIO", "NET_ADMIN"}.isdisjoint(SAFE_CAPABILITIES)
    check_compose(_service(f"cap_add: [{', '.join(sorted(SAFE_CAPABILITIES))}]"), RULES)


def test_rules_take_absolute_directories_only() -> None:
    with pytest.raises(ValueError):
        ComposeRules(state_dir=PurePosixPath("var/lib/cvm-agent"))
    with pytest.raises(ValueError):
        ComposeRules(workload_dir=PurePosixPath("/"))


# --- malformed ---------------------------------------------------------------------------------------

MALFORMED = [
    (b"services: [web\n", "not-yaml"),
    (b"services: {}\nservices: {}\n", "duplicate-top-level-key"),
    (b"services:\n  web: {image: a, privileged: false, privileged: true}\n", "duplicate-service-key"),
    (b"- a\n- b\n", "not-a-mapping"),
    (b"", "empty"),
    (b"services: {}\n---\nservices: {}\n", "two-documents"),
    (b"services: [web]\n", "services-not-a-mapping"),
    (b"services: {web: privileged}\n", "service-not-a-mapping"),
    (b"services: {1: {image: a}}\n", "service-name-not-a-string"),
    (b"services: {web: {cap_add: SYS_ADMIN}}\n", "cap-add-not-a-list"),
    (b"services: {web: {cap_add: [1]}}\n", "cap-add-not-strings"),
    (b"services: {web: {devices: /dev/tpm0}}\n", "devices-not-a-list"),
    (b"services: {web: {devices: [{target: /dev/tpm0}]}}\n", "device-without-source"),
    (b"services: {web: {volumes: ['/a:/b:ro:x']}}\n", "volume-four-fields"),
    (b"services: {web: {volumes: [{type: bind, target: /b}]}}\n", "bind-without-source"),
    (b"services: {web: {network_mode: [host]}}\n", "network-mode-not-a-string"),
    (b"services: {web: {volumes: !reset []}}\n", "unknown-tag"),
    (b"services: !!python/object:os.system {}\n", "python-tag"),
    (b"\xff\xfeservices: {}\n", "not-utf8"),
    (b"services: {}\n#" + b"x" * MAX_COMPOSE_BYTES, "too-large"),
    (b"[" * 5000 + b"]" * 5000, "nested-too-deeply"),
]


@pytest.mark.parametrize("data", [d for d, _ in MALFORMED], ids=[i for _, i in MALFORMED])
def test_a_malformed_compose_is_a_typed_error(data: bytes) -> None:
    with pytest.raises(ParseError) as exc:
        check_compose(data, RULES)
    assert exc.value.reason is Reason.WORKLOAD_COMPOSE_MALFORMED


@given(st.binary(max_size=512))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        check_compose(data, RULES)
    except CvmAttestError as exc:
        assert exc.reason in (Reason.WORKLOAD_COMPOSE_MALFORMED, Reason.WORKLOAD_COMPOSE_FORBIDDEN)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
))
def test_any_document_shape_is_parsed_or_refused_with_a_reason(value: Any) -> None:
    data = repr({"services": {"web": value}}).encode()  # a Python literal is a YAML flow mapping here
    try:
        check_compose(data, RULES)
    except CvmAttestError as exc:
        assert exc.reason in (Reason.WORKLOAD_COMPOSE_MALFORMED, Reason.WORKLOAD_COMPOSE_FORBIDDEN)


# --- a workload directory --------------------------------------------------------------------------------


def test_a_workload_directory_is_checked(tmp_path: Path) -> None:
    check_workload_dir(tmp_path, RULES)  # nothing to start
    (tmp_path / "docker-compose.yml").write_bytes(COMPOSE)
    check_workload_dir(tmp_path, RULES)
    (tmp_path / "docker-compose.yml").write_bytes(TPM_COMPOSE)
    with pytest.raises(RequestError) as exc:
        check_workload_dir(tmp_path, RULES)
    assert exc.value.reason is Reason.WORKLOAD_COMPOSE_FORBIDDEN
    assert [(v["service"], v["key"]) for v in exc.value.context["violations"]] == [("app", "devices")]


@pytest.mark.parametrize("name", UNCHECKED_COMPOSE_FILES)
def test_a_compose_file_the_runner_would_also_read_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "docker-compose.yml").write_bytes(COMPOSE)
    (tmp_path / name).write_bytes(b"services: {app: {privileged: true}}\n")
    with pytest.raises(RequestError) as exc:
        check_workload_dir(tmp_path, RULES)
    assert [(v["service"], v["key"]) for v in exc.value.context["violations"]] == [(None, name)]


def test_parse_compose_returns_the_document() -> None:
    assert parse_compose(b"services: {web: {image: a}}\n") == {"services": {"web": {"image": "a"}}}
