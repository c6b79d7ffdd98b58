"""deploy.upload's pieces that need no agent: the target address, the token forms, the packed
workload (secrets apart, the same archive for the same files, nothing the agent would refuse), and
the seed's ``cvm-cli <VM-IP> <TOKEN>`` routing. The flow itself: tests/integration/agent/test_upload.py."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from deploy.upload import Verifier, agent_url, check_secrets_protected
from deploy.upload_cli import _token
from offchain.cli.root import cli
from offchain.errors import CvmAttestError, Reason, RequestError
from offchain.policy.golden import Binding
from offchain.trust.roots import TrustRoots
from tests.support.agent import SECRET, TPM_COMPOSE, WORKLOAD, write_tree
from workload.archive import measure_archive, pack_workload


@pytest.mark.parametrize(
    ("target", "url"),
    [("203.0.113.7", "http://203.0.113.7:8000"), ("203.0.113.7:9000", "http://203.0.113.7:9000"),
     ("cvm.example.org", "http://cvm.example.org:8000"), ("[2001:db8::1]", "http://[2001:db8::1]:8000"),
     ("[2001:db8::1]:8443", "http://[2001:db8::1]:8443"), ("https://cvm.example.org:8443/", "https://cvm.example.org:8443")],
)
def test_the_target_is_an_address_or_a_url(target: str, url: str) -> None:
    assert agent_url(target) == url


@pytest.mark.parametrize("target", ["", "a b", "ftp://x", "host/path", "x;rm"])
def test_a_target_that_is_neither_is_refused(target: str) -> None:
    with pytest.raises(RequestError) as caught:
        agent_url(target)
    assert caught.value.reason is Reason.INPUT_INVALID


def test_token_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("from-a-file-0123\n")
    monkeypatch.setenv("CVM_TOKEN", "from-the-env-0123")
    assert _token("literal-0123") == "literal-0123"
    assert _token(f"@{tmp_path / 'token'}") == "from-a-file-0123"
    assert _token("env:CVM_TOKEN") == "from-the-env-0123"
    for bad, reason in ((f"@{tmp_path / 'absent'}", Reason.INPUT_UNREADABLE), ("env:UNSET_TOKEN_X", Reason.INPUT_UNREADABLE),
                        ("", Reason.INPUT_INVALID)):
        with pytest.raises(CvmAttestError) as caught:
            _token(bad)
        assert caught.value.reason is reason


@pytest.mark.parametrize(
    ("binding", "development", "accepted", "sealed"),
    [(Binding.AZURE, False, False, True), (Binding.DIRECT, True, False, True), (Binding.DIRECT, False, True, True),
     (Binding.DIRECT, False, False, False)],
    ids=["azure-paravisor-vtpm", "sim-dev-root", "host-vtpm-accepted", "host-vtpm"],
)
def test_secrets_are_sealed_only_where_the_host_cannot_forge_the_quote(
    binding: Binding, development: bool, accepted: bool, sealed: bool
) -> None:
    verified = SimpleNamespace(binding=binding, chain=SimpleNamespace(root=SimpleNamespace(development=development)))
    if sealed:
        check_secrets_protected(verified, accept_host_vtpm=accepted)  # type: ignore[arg-type]
        return
    with pytest.raises(CvmAttestError) as caught:
        check_secrets_protected(verified, accept_host_vtpm=accepted)  # type: ignore[arg-type]
    assert caught.value.reason is Reason.SEAL_PLATFORM_UNPROTECTED and "--accept-host-vtpm" in caught.value.detail


def test_a_verifier_names_a_golden() -> None:
    with pytest.raises(RequestError) as caught:
        Verifier(roots=TrustRoots())
    assert caught.value.reason is Reason.INPUT_INVALID and "--golden" in caught.value.detail


def test_the_packed_workload_keeps_secrets_apart_and_is_reproducible(tmp_path: Path) -> None:
    files = {**WORKLOAD, **SECRET, "secrets/db/password": b"pw", "images.txt": b"example/app sha256:" + b"ab" * 32 + b"\n"}
    first = pack_workload(write_tree(tmp_path / "a", files))
    second = pack_workload(write_tree(tmp_path / "b", files))
    assert first.archive == second.archive
    assert dict(first.secrets) == {"api-key": SECRET["secrets/api-key"], "db/password": b"pw"}
    with zipfile.ZipFile(io.BytesIO(first.archive)) as archive:
        names = archive.namelist()
    assert names == sorted(names) and not [n for n in names if n.startswith("secrets")]
    assert [e.name for e in measure_archive(io.BytesIO(first.archive))] == [
        "example/app", "docker-compose.yml", "config/app.toml", "config/nested/limits.json"]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [({"docker-compose.yml": TPM_COMPOSE}, Reason.WORKLOAD_COMPOSE_FORBIDDEN),
     ({"notes.txt": b"x"}, Reason.WORKLOAD_ARCHIVE_INVALID)],
    ids=["compose-gives-the-tpm", "outside-the-layout"],
)
def test_nothing_the_agent_would_refuse_is_packed(tmp_path: Path, extra: dict[str, bytes], reason: Reason) -> None:
    with pytest.raises(CvmAttestError) as caught:
        pack_workload(write_tree(tmp_path / "w", {**WORKLOAD, **extra}))
    assert caught.value.reason is reason


def test_a_link_is_not_packed(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "w", WORKLOAD)
    (root / "config" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(CvmAttestError) as caught:
        pack_workload(root)
    assert caught.value.reason is Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH
    with pytest.raises(RequestError) as caught:
        pack_workload(tmp_path / "absent")
    assert caught.value.reason is Reason.INPUT_UNREADABLE


def test_the_seeds_form_is_upload(tmp_path: Path) -> None:
    """``cvm-cli 203.0.113.7 TOKEN`` is ``cvm-cli upload 203.0.113.7 TOKEN``; a word that is neither a
    command nor an address is still an unknown command."""
    seed = CliRunner().invoke(cli, ["203.0.113.7", "tok", "--workload", str(tmp_path / "absent"), "--json"])
    assert seed.exit_code == 2 and json.loads(seed.output)["reason"] == "input.invalid"
    assert "name the golden measurement" in json.loads(seed.output)["detail"]
    unknown = CliRunner().invoke(cli, ["uplaod", "x"])
    assert unknown.exit_code == 2 and "No such command 'uplaod'" in unknown.output
