"""Options from the environment and a config file (offchain/cli/config.py), -v/-q, as a user sets them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.main import main as agent_main
from offchain.cli.root import cli, log_level
from tests.support.snp_vectors import Vector, load_vector

VECTOR = "snp/milan-vcek-v2-virtee"


@pytest.fixture(scope="module")
def vector(vectors: Path) -> Vector:
    return load_vector(vectors, VECTOR)


def run(args: list[str | Path], env: dict[str, str] | None = None) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli, [str(a) for a in args], env=env)


def _snp(v: Vector) -> list[str | Path]:
    return ["verify", "snp", "--report", v.file("report.bin"), "--vcek", v.leaf_file]


def test_an_option_from_the_environment(vector: Vector) -> None:
    """--at from CVM_ATTEST_VERIFY_SNP_AT: inside the leaf's validity accepted, far after it expired."""
    ok = run([*_snp(vector), "--json"], env={"CVM_ATTEST_VERIFY_SNP_AT": vector.now.isoformat()})
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    late = run([*_snp(vector), "--json"], env={"CVM_ATTEST_VERIFY_SNP_AT": "2099-01-01"})
    assert (late.exit_code, json.loads(late.stdout)["reason"]) == (1, "snp.chain.certificate_expired")
    # The command line wins over the environment.
    both = run([*_snp(vector), "--json", "--at", vector.now.isoformat()], env={"CVM_ATTEST_VERIFY_SNP_AT": "2099-01-01"})
    assert both.exit_code == 0
    flag = run(_snp(vector), env={"CVM_ATTEST_VERIFY_SNP_AT": vector.now.isoformat(), "CVM_ATTEST_VERIFY_SNP_AS_JSON": "1"})
    assert json.loads(flag.stdout)["ok"] is True  # a flag from the environment


def test_options_from_the_config_file(vector: Vector, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[verify]\nat = "2099-01-01"\njson = true\n\n[verify.snp]\nat = "{vector.now.isoformat()}"\n')
    ok = run(["--config", config, *_snp(vector)])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True  # [verify.snp] beats [verify]; json from [verify]
    env = run(["--config", config, *_snp(vector)], env={"CVM_ATTEST_VERIFY_SNP_AT": "2099-01-01"})
    assert json.loads(env.stdout)["reason"] == "snp.chain.certificate_expired"  # the environment beats the file
    by_env = run(_snp(vector), env={"CVM_ATTEST_CONFIG": str(config)})
    assert by_env.exit_code == 0 and json.loads(by_env.stdout)["ok"] is True  # the file named by $CVM_ATTEST_CONFIG


@pytest.mark.parametrize(("text", "message"), [
    ("[verify]\nbogus = 1\n", "no command under [verify] has an option 'bogus'"),
    ("[nonsense]\nat = 1\n", "[nonsense] is not a command"),
    ("at = 1\n", "outside any [command] table"),
    ("[verify\n", "config file"),
], ids=["unknown-key", "unknown-table", "top-level-key", "not-toml"])
def test_a_config_typo_is_refused(vector: Vector, tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    result = run(["--config", config, *_snp(vector)])
    assert result.exit_code == 2 and result.stderr.startswith("[input.invalid]") and message in result.stderr


def test_verbosity(vector: Vector) -> None:
    assert [log_level(0, 0), log_level(1, 0), log_level(2, 0), log_level(0, 1), log_level(3, 1)] == [
        logging.WARNING, logging.INFO, logging.DEBUG, logging.ERROR, logging.ERROR]
    root = logging.getLogger()
    before = root.level
    try:
        for flags, level in ((["-vv"], logging.DEBUG), (["-q"], logging.ERROR), ([], logging.WARNING)):
            result = run([*flags, *_snp(vector), "--at", vector.now.isoformat()])  # -v/-q are the root's options
            assert (result.exit_code, root.level) == (0, level)
    finally:
        root.setLevel(before)


def test_the_agent_takes_its_options_from_the_environment(tmp_path: Path) -> None:
    """cvm-agent's --internal from CVM_ATTEST_AGENT_INTERNAL: refused as on the command line."""
    refused = CliRunner(mix_stderr=False).invoke(agent_main, ["--state-dir", str(tmp_path)],
                                                 env={"CVM_ATTEST_AGENT_INTERNAL": "0.0.0.0:7999"})
    assert refused.exit_code == 2 and "--internal-remote" in refused.stderr
