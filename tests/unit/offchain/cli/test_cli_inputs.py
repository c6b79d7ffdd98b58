"""``cvm-cli verify`` as a user drives it (issue 14, defects 8 and 10): ``-`` reads stdin, a binary
input may be raw, hex or base64, and the exit status says accepted (0), rejected (1), malformed or
unreadable input (2) or a transient failure (3)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from offchain.cli.output import EXIT_CODES_HELP
from offchain.cli.root import cli
from offchain.cli.verify import verify
from offchain.errors import ParseError, Reason
from offchain.inputs import decode_binary
from offchain.trust.certs import to_pem
from tests.support.evidence import DEV_NOW, NONCE, make_parts
from tests.support.snp_vectors import Vector, load_vector

ROOT = Path(__file__).resolve().parents[4]
VECTOR = "snp/milan-vcek-v2-virtee"


def run(args: list[str | Path], stdin: bytes | None = None) -> Result:
    return CliRunner(mix_stderr=False).invoke(verify, [str(a) for a in args], input=stdin)


def _snp(v: Vector, report: str | Path) -> list[str | Path]:
    return ["snp", "--report", report, "--vcek", v.leaf_file, "--ask", v.intermediate_file, "--ark", v.file("ark.pem"),
            "--at", v.now.isoformat(), "--json"]


@pytest.fixture(scope="module")
def vector(vectors: Path) -> Vector:
    return load_vector(vectors, VECTOR)


@pytest.mark.parametrize("encoding", ["raw", "hex", "0x-hex-lines", "base64", "base64url"])
def test_the_report_from_stdin_in_every_encoding(vector: Vector, encoding: str) -> None:
    raw = vector.file("report.bin").read_bytes()
    given = {
        "raw": raw,
        "hex": raw.hex().encode(),
        "0x-hex-lines": b"0x" + b"\n".join(raw.hex().encode()[i:i + 64] for i in range(0, 2 * len(raw), 64)) + b"\n",
        "base64": base64.b64encode(raw) + b"\n",
        "base64url": base64.urlsafe_b64encode(raw).rstrip(b"="),
    }[encoding]
    result = run(_snp(vector, "-"), stdin=given)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["report"]["measurement"] == vector.expected["report"]["measurement"]


def test_the_report_as_a_hex_file(vector: Vector, tmp_path: Path) -> None:
    text = tmp_path / "report.hex"
    text.write_text(vector.file("report.bin").read_bytes().hex())
    assert run(_snp(vector, text)).exit_code == 0


def test_text_that_is_neither_hex_nor_base64_is_malformed_input(vector: Vector) -> None:
    result = run(_snp(vector, "-"), stdin=b"not a report!\n")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["reason"] == Reason.INPUT_INVALID.value
    with pytest.raises(ParseError) as exc:
        decode_binary(b"zz!", "--report")
    assert exc.value.reason is Reason.INPUT_INVALID


def test_stdin_is_for_one_option(vector: Vector) -> None:
    result = run(["snp", "--report", "-", "--vcek", "-"], stdin=b"")
    assert result.exit_code == 2
    assert "standard input ('-') is already read by '--report'" in result.stderr


def test_evidence_from_stdin(tmp_path: Path) -> None:
    parts = make_parts()
    doc = json.dumps(parts.to_json()).encode()
    (tmp_path / "ark.pem").write_text(to_pem(parts.chain.ark))
    args: list[str | Path] = ["evidence", "-", "--nonce", NONCE.hex(), "--at", DEV_NOW.isoformat(),
                              "--dev-root", tmp_path / "ark.pem", "--json"]
    ok = run(args, stdin=doc)
    assert (ok.exit_code, json.loads(ok.stdout)["ok"]) == (0, True)


# --- defect 8: the exit status ------------------------------------------------------------------


def test_a_truncated_report_is_exit_2(vector: Vector, tmp_path: Path) -> None:
    short = tmp_path / "short.bin"
    short.write_bytes(vector.file("report.bin").read_bytes()[:600])
    result = run(_snp(vector, short))
    assert (result.exit_code, json.loads(result.stdout)["reason"]) == (2, Reason.SNP_REPORT_LENGTH.value)


def test_truncated_evidence_json_is_exit_2(tmp_path: Path) -> None:
    half = tmp_path / "evidence.json"
    text = json.dumps(make_parts().to_json())
    half.write_text(text[: len(text) // 2])
    result = run(["evidence", half, "--nonce", NONCE.hex(), "--json"])
    assert (result.exit_code, json.loads(result.stdout)["reason"]) == (2, Reason.EVIDENCE_MALFORMED.value)


def test_a_rejected_report_is_exit_1(vector: Vector, tmp_path: Path) -> None:
    flipped = bytearray(vector.file("report.bin").read_bytes())
    flipped[0x90] ^= 1  # one bit of the measurement: still a well-formed report, no longer AMD's signature
    (tmp_path / "flipped.bin").write_bytes(bytes(flipped))
    result = run(_snp(vector, tmp_path / "flipped.bin"))
    assert (result.exit_code, json.loads(result.stdout)["reason"]) == (1, Reason.SNP_SIGNATURE_INVALID.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_kds_down_is_exit_3(vector: Vector, tmp_path: Path) -> None:
    """Nothing listens on the KDS URL: a transient failure, distinct from a rejection."""
    url = f"http://127.0.0.1:{_closed_port()}"
    args = ["snp", "--report", vector.file("report.bin"), "--at", vector.now.isoformat(), "--kds", "--kds-url", url,
            "--cache-dir", tmp_path / "cache"]
    as_json = run([*args, "--json"])
    assert (as_json.exit_code, json.loads(as_json.stdout)["reason"]) == (3, Reason.COLLATERAL_FETCH_FAILED.value)
    human = run(args)
    assert human.exit_code == 3 and human.stderr.startswith(f"[{Reason.COLLATERAL_FETCH_FAILED.value}]")


def test_every_help_ends_with_the_exit_codes() -> None:
    for name in ("snp", "azure", "evidence"):
        result = CliRunner().invoke(cli, ["verify", name, "--help"], terminal_width=200)
        assert result.exit_code == 0 and EXIT_CODES_HELP in " ".join(result.output.split())
    # The root's own --help lists every installed command (loading each); its epilog is the same table.
    assert cli.epilog == EXIT_CODES_HELP


def test_the_installed_command_reads_stdin(vector: Vector) -> None:
    cvm_cli = Path(sys.executable).parent / "cvm-cli"
    done = subprocess.run([cvm_cli, "verify", *map(str, _snp(vector, "-"))], input=vector.file("report.bin").read_bytes().hex().encode(),
                          capture_output=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True
