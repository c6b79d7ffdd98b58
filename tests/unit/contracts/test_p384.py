"""P384.sol (ECDSA P-384 over SHA-384 digests, SEC 1 v2 section 4.1.4) against `cryptography` and real
AMD SEV-SNP reports signed by their real VCEK/VLEK.

The library is exercised through contracts/test/P384Harness.sol on the session anvil (default hardfork,
EIP-7825 cap enforced). Special cases that random signatures never reach (the accumulator meeting a
table point, the point at infinity, x(R) in [n, p)) are built with a small affine reference below: a
signature equation only needs R = u1 G + u2 Q, so choosing R first and solving for Q gives a valid
(digest, r, s, Q) without knowing any private key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3
from web3.exceptions import ContractCustomError

from offchain.abi.snp_report import SnpReport
from offchain.trust.certs import parse_certificate
from tests.conftest import vectors_root
from tests.support.evm import TX_GAS_CAP, compile_contracts, deploy, reverts_with

# ---------------------------------------------------------------------------------------------------
# P-384 domain parameters (FIPS 186-5 / SEC 2 secp384r1) and an affine reference implementation.
P = 2**384 - 2**128 - 2**96 + 2**32 - 1
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
B = 0xB3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF
G = (
    0xAA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A385502F25DBF55296C3A545E3872760AB7,
    0x3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C00A60B1CE1D7E819D7A431D7C90EA0E5F,
)
Point = tuple[int, int] | None  # None is the point at infinity


def _add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    (x1, y1), (x2, y2) = a, b
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        slope = (3 * x1 * x1 - 3) * pow(2 * y1, -1, P) % P
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (slope * slope - x1 - x2) % P
    return x3, (slope * (x1 - x3) - y1) % P


def _mul(k: int, pt: Point) -> Point:
    acc: Point = None
    while k:
        if k & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        k >>= 1
    return acc


def _neg(pt: tuple[int, int]) -> tuple[int, int]:
    return pt[0], (P - pt[1]) % P


def _lift_x(x: int) -> tuple[int, int] | None:
    """A curve point with this x (p = 3 mod 4, so a square root is a single exponentiation)."""
    rhs = (x**3 - 3 * x + B) % P
    y = pow(rhs, (P + 1) // 4, P)
    return (x, y) if y * y % P == rhs else None


def _forge(r_point: tuple[int, int], e: int, s: int) -> tuple[int, int, tuple[int, int]]:
    """(r, s, Q) such that u1 G + u2 Q = r_point for u1 = e/s, u2 = r/s: a valid signature of digest e."""
    r = r_point[0] % N
    w = pow(s, -1, N)
    u1, u2 = e * w % N, r * w % N
    q = _mul(pow(u2, -1, N), _add(r_point, _neg(_mul(u1, G))))  # type: ignore[arg-type]
    assert q is not None
    return r, s, q


def _b48(value: int) -> bytes:
    return value.to_bytes(48, "big")


# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def p384(w3: Web3) -> Any:
    return deploy(w3, compile_contracts(["P384Harness"])["P384Harness"])


Verifier = Callable[[int, int, int, tuple[int, int]], bool]


@pytest.fixture(scope="module", params=["verify", "verifyPrecomputed"])
def verifier(request: pytest.FixtureRequest, p384: Any) -> Verifier:
    """Both entry points: P384.verify(e, r, s, qx, qy), and P384.verifyPrecomputed(e, r, s, table)
    with the table P384.precompute(qx, qy) returned for that key (computed once per key)."""
    if request.param == "verify":

        def plain(e: int, r: int, s: int, q: tuple[int, int]) -> bool:
            return bool(p384.functions.verify(_b48(e), _b48(r), _b48(s), _b48(q[0]), _b48(q[1])).call())

        return plain
    tables: dict[tuple[int, int], bytes] = {}

    def precomputed(e: int, r: int, s: int, q: tuple[int, int]) -> bool:
        if q not in tables:
            tables[q] = p384.functions.precompute(_b48(q[0]), _b48(q[1])).call()
        return bool(p384.functions.verifyPrecomputed(_b48(e), _b48(r), _b48(s), tables[q]).call())

    return precomputed


def _sign(secret: int, message: bytes) -> tuple[int, int, int, tuple[int, int]]:
    """(digest, r, s, Q) from `cryptography`: SHA-384 over the message, ECDSA P-384."""
    key = ec.derive_private_key(secret, ec.SECP384R1())
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA384())))
    numbers = key.public_key().public_numbers()
    return int.from_bytes(hashlib.sha384(message).digest(), "big"), r, s, (numbers.x, numbers.y)


# ---------------------------------------------------------------------------------------------------
# Real evidence: every SEV-SNP report (bare and Azure) against the key of its own VCEK/VLEK. The report
# is parsed by offchain.abi (signed bytes 0x000..0x29F, little-endian R and S) and the leaf by
# offchain.trust, so the offsets live in one place.
LEAF_NAMES = ("vcek.der", "vcek.pem", "vlek.der", "vlek.pem")


def _report_dirs() -> list[str]:
    root = vectors_root()
    found = []
    for group in ("snp", "azure"):
        base = root / group
        if base.is_dir():
            found += [f"{group}/{d.name}" for d in sorted(base.iterdir()) if (d / "report.bin").is_file()]
    return found


def _leaf_point(directory: Path) -> tuple[int, int]:
    path = next(directory / name for name in LEAF_NAMES if (directory / name).is_file())
    key = parse_certificate(path.read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    numbers = key.public_numbers()
    return numbers.x, numbers.y


def _report_signature(data: bytes) -> tuple[int, int, int]:
    report = SnpReport.from_bytes(data)
    digest = int.from_bytes(hashlib.sha384(report.signed_bytes()).digest(), "big")
    return digest, report.signature_r, report.signature_s


@pytest.mark.parametrize("name", _report_dirs())
def test_real_report_signature_matches_expected(verifier: Verifier, vectors: Path, name: str) -> None:
    expected = json.loads((vectors / "expected.json").read_text())[name]["signature_ok"]
    report = (vectors / name / "report.bin").read_bytes()
    e, r, s = _report_signature(report)
    assert verifier(e, r, s, _leaf_point(vectors / name)) is expected


@pytest.mark.parametrize("name", [n for n in _report_dirs() if "negative" not in n])
def test_real_report_with_one_flipped_bit_is_rejected(verifier: Verifier, vectors: Path, name: str) -> None:
    report = SnpReport.from_bytes((vectors / name / "report.bin").read_bytes())
    flipped = bytes([report.measurement[0] ^ 0x01]) + report.measurement[1:]  # one bit, inside the signed bytes
    e, r, s = _report_signature(dataclasses.replace(report, measurement=flipped).to_bytes())
    assert verifier(e, r, s, _leaf_point(vectors / name)) is False


def test_key_mismatch_vector_is_the_only_rejected_real_report(vectors: Path) -> None:
    expected = json.loads((vectors / "expected.json").read_text())
    rejected = [n for n in _report_dirs() if not expected[n]["signature_ok"]]
    assert rejected == ["snp/negative-milan-vlek-v2-key-mismatch-constellation"]


# ---------------------------------------------------------------------------------------------------
# Differential against `cryptography` with random keys and messages.
TAMPERS = ["r+1", "s+1", "message", "key", "swap-r-s", "digest-as-r"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.integers(1, N - 1), message=st.binary(max_size=256), tamper=st.sampled_from(TAMPERS))
def test_random_signatures_and_their_tampered_twins(
    verifier: Verifier, secret: int, message: bytes, tamper: str
) -> None:
    e, r, s, q = _sign(secret, message)
    assert verifier(e, r, s, q) is True
    if tamper == "r+1":
        r = r + 1 if r + 1 < N else 1
    elif tamper == "s+1":
        s = s + 1 if s + 1 < N else 1
    elif tamper == "message":
        e = int.from_bytes(hashlib.sha384(message + b"\x00").digest(), "big")
    elif tamper == "key":
        q = _mul(secret % (N - 1) + 1, G)  # type: ignore[assignment]
    elif tamper == "swap-r-s":
        r, s = s, r
    else:
        r = e % N or 1
    assert verifier(e, r, s, q) is False


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.integers(1, N - 1), message=st.binary(max_size=64))
def test_high_s_is_accepted_like_cryptography(verifier: Verifier, secret: int, message: bytes) -> None:
    # ECDSA verification (SEC 1 4.1.4) accepts s and n - s alike; `cryptography` does too.
    e, r, s, q = _sign(secret, message)
    assert verifier(e, r, N - s, q) is True


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    e=st.integers(0, 2**384 - 1),
    r=st.integers(1, N - 1),
    s=st.integers(1, N - 1),
    secret=st.integers(1, N - 1),
)
def test_random_scalars_are_rejected(verifier: Verifier, e: int, r: int, s: int, secret: int) -> None:
    q = _mul(secret, G)
    assert q is not None
    assert verifier(e, r, s, q) is False


# ---------------------------------------------------------------------------------------------------
# Scalars out of range: r and s must lie in [1, n - 1]; anything else is an invalid signature.
OUT_OF_RANGE = {"zero": 0, "n": N, "n+1": N + 1, "max": 2**384 - 1}


@pytest.mark.parametrize("value", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
@pytest.mark.parametrize("which", ["r", "s"])
def test_out_of_range_scalar_is_rejected(verifier: Verifier, which: str, value: int) -> None:
    e, r, s, q = _sign(7, b"range")
    assert verifier(e, r, s, q) is True
    if which == "r":
        r = value
    else:
        s = value
    assert verifier(e, r, s, q) is False


@pytest.mark.parametrize("s", [1, N - 1], ids=["s=1", "s=n-1"])
def test_extreme_s_in_range_verifies_when_forged(verifier: Verifier, s: int) -> None:
    r_point = _mul(0xC0FFEE, G)
    assert r_point is not None
    e = 0x1234
    r, s, q = _forge(r_point, e, s)
    assert verifier(e, r, s, q) is True
    assert verifier(e + 1, r, s, q) is False


def test_r_equal_n_minus_1_verifies_when_forged(verifier: Verifier) -> None:
    r_point = _lift_x(N - 1)  # a point with x = n - 1 exists, so r = n - 1
    assert r_point is not None
    e, s = 0xABCDEF, 0x5151
    r, s, q = _forge(r_point, e, s)
    assert r == N - 1
    assert verifier(e, r, s, q) is True
    assert verifier(e, r, s + 1, q) is False


def test_r_equal_1_is_in_range_but_unreachable(verifier: Verifier) -> None:
    # r = 1 needs x(R) in {1, n + 1}; neither is the x of a P-384 point, so no key verifies it, and the
    # library answers false rather than reverting.
    assert _lift_x(1) is None and _lift_x(N + 1) is None
    e, _, s, q = _sign(19, b"r=1")
    assert verifier(e, 1, s, q) is False
    assert verifier(e, _, s, q) is True


# ---------------------------------------------------------------------------------------------------
# Branches random signatures never reach.
def _small_x_point() -> tuple[int, int]:
    """A point whose x lies in [n, p): its r = x - n is small, and r + n < p must be tried."""
    x = N + 1  # x = n itself is a point, but it gives r = 0
    while True:
        pt = _lift_x(x)
        if pt is not None:
            return pt
        x += 1


def test_x_of_r_between_n_and_p_verifies(verifier: Verifier) -> None:
    r_point = _small_x_point()
    e, s = 0xFEED, 0xBEEF
    r, s, q = _forge(r_point, e, s)
    assert r == r_point[0] - N
    assert verifier(e, r, s, q) is True
    # Twin: the same R with r = x mod n replaced by another small value.
    assert verifier(e, r + 1, s, q) is False


def test_accumulator_equal_to_table_point_takes_the_doubling_branch(verifier: Verifier) -> None:
    # Q = G and u1 = u2 = 1 (e = r = s): the loop adds G to G, so R = 2G.
    two_g = _add(G, G)
    assert two_g is not None
    r = two_g[0] % N
    assert verifier(r, r, r, G) is True
    assert verifier(r, r, r + 1, G) is False


def test_sum_at_infinity_is_rejected(verifier: Verifier) -> None:
    # Q = -G and u1 = u2 (e = r): R = u1 G - u1 G is the point at infinity, which has no x.
    minus_g = _neg(G)
    for r, s in [(5, 5), (0x1234567, 3)]:
        assert verifier(r, r, s, minus_g) is False
    # Twin: with the same key, R = (u1 - u2) G = k G for e = k s + r, a real point, verifies.
    k, s = 0xBADC0DE, 0x77
    r_point = _mul(k, G)
    assert r_point is not None
    r = r_point[0] % N
    assert verifier((k * s + r) % N, r, s, minus_g) is True


# ---------------------------------------------------------------------------------------------------
# Malformed public keys revert (a key is checked once when it is registered; a bad one is a caller bug).
BAD_KEYS = {
    "off-curve": lambda q: (q[0], (q[1] + 1) % P),
    "infinity-as-zero": lambda q: (0, 0),
    "x=p": lambda q: (P, q[1]),
    "y=p": lambda q: (q[0], P),
    "x+p": lambda q: (q[0] + P, q[1]) if q[0] + P < 2**384 else (2**384 - 1, q[1]),
    "y-max": lambda q: (q[0], 2**384 - 1),
}


@pytest.mark.parametrize("make", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_malformed_public_key_reverts(p384: Any, make: Any) -> None:
    e, r, s, q = _sign(11, b"key")
    args = [_b48(e), _b48(r), _b48(s), _b48(q[0]), _b48(q[1])]
    assert p384.functions.verify(*args).call() is True
    assert len(p384.functions.precompute(args[3], args[4]).call()) == TABLE_LENGTH
    bad = make(q)
    args[3:] = [_b48(bad[0]), _b48(bad[1])]
    assert reverts_with(p384, lambda: p384.functions.verify(*args).call())[0] == "P384InvalidPublicKey"
    assert reverts_with(p384, lambda: p384.functions.precompute(args[3], args[4]).call())[0] == "P384InvalidPublicKey"


@pytest.mark.parametrize("slot", range(5), ids=["digest", "r", "s", "qx", "qy"])
@pytest.mark.parametrize("length", [0, 47, 49, 96])
def test_wrong_length_reverts(p384: Any, slot: int, length: int) -> None:
    e, r, s, q = _sign(13, b"len")
    args = [_b48(e), _b48(r), _b48(s), _b48(q[0]), _b48(q[1])]
    table = p384.functions.precompute(args[3], args[4]).call()
    assert p384.functions.verify(*args).call() is True
    assert p384.functions.verifyPrecomputed(*args[:3], table).call() is True
    args[slot] = bytes(length)
    expected = ("P384InvalidLength", (length,))
    assert reverts_with(p384, lambda: p384.functions.verify(*args).call()) == expected
    if slot < 3:
        assert reverts_with(p384, lambda: p384.functions.verifyPrecomputed(*args[:3], table).call()) == expected
    else:
        assert reverts_with(p384, lambda: p384.functions.precompute(args[3], args[4]).call()) == expected


def test_verification_fits_in_one_transaction(p384: Any, w3: Web3) -> None:
    # The registry verifies inside a transaction; EIP-7825 caps one at 16,777,216 gas (anvil enforces it).
    e, r, s, q = _sign(17, b"tx")
    table = p384.functions.precompute(_b48(q[0]), _b48(q[1])).call()
    calls = [
        p384.functions.verify(_b48(e), _b48(r), _b48(s), _b48(q[0]), _b48(q[1])),
        p384.functions.precompute(_b48(q[0]), _b48(q[1])),
        p384.functions.verifyPrecomputed(_b48(e), _b48(r), _b48(s), table),
    ]
    for call in calls:
        receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": w3.eth.accounts[0], "gas": TX_GAS_CAP}))
        assert receipt["status"] == 1
        assert receipt["gasUsed"] < TX_GAS_CAP


# ---------------------------------------------------------------------------------------------------
# Tables: G_TABLES and precompute(Q) hold (2 i + 1) 2^(32 j) P at byte 768 j + 96 i (j < 12), as x || y.
TABLE_LENGTH = 9216


def _reference_table(base: tuple[int, int]) -> bytes:
    out = b""
    point: Point = base
    for _ in range(12):
        assert point is not None
        double = _add(point, point)
        odd: Point = point
        for _ in range(8):
            assert odd is not None
            out += _b48(odd[0]) + _b48(odd[1])
            odd = _add(odd, double)
        point = _mul(2**32, point)
    return out


def test_g_tables_are_the_documented_multiples(p384: Any) -> None:
    assert p384.functions.gTables().call() == _reference_table(G)


@pytest.mark.parametrize("secret", [1, 2, 0xDEADBEEF, N - 1])
def test_precompute_matches_the_reference(p384: Any, secret: int) -> None:
    q = _mul(secret, G)
    assert q is not None
    table = p384.functions.precompute(_b48(q[0]), _b48(q[1])).call()
    assert table == _reference_table(q)


@pytest.mark.parametrize("x", [0, 2, 3, P - 1])
@pytest.mark.parametrize("negate", [False, True])
def test_precompute_of_small_and_minus_one_x_matches_the_reference(p384: Any, x: int, negate: bool) -> None:
    """The doubling halves 3 (X - Z^2)(X + Z^2): for x = -1 that product is 0 (a horizontal tangent),
    for x = 0, 2, 3 it is a small or negative value of either parity; every table doubles Q first."""
    q = _lift_x(x)
    assert q is not None
    if negate:
        q = _neg(q)
    table = p384.functions.precompute(_b48(q[0]), _b48(q[1])).call()
    assert table == _reference_table(q)


def test_table_of_another_key_does_not_verify(p384: Any) -> None:
    e, r, s, q = _sign(23, b"table")
    _, _, _, other = _sign(29, b"table")
    own = p384.functions.precompute(_b48(q[0]), _b48(q[1])).call()
    foreign = p384.functions.precompute(_b48(other[0]), _b48(other[1])).call()
    assert p384.functions.verifyPrecomputed(_b48(e), _b48(r), _b48(s), own).call() is True
    assert p384.functions.verifyPrecomputed(_b48(e), _b48(r), _b48(s), foreign).call() is False


@pytest.mark.parametrize("length", [0, TABLE_LENGTH - 1, TABLE_LENGTH + 1, 2 * TABLE_LENGTH])
def test_wrong_table_length_reverts(p384: Any, length: int) -> None:
    e, r, s, q = _sign(31, b"table")
    table = p384.functions.precompute(_b48(q[0]), _b48(q[1])).call()
    assert p384.functions.verifyPrecomputed(_b48(e), _b48(r), _b48(s), table).call() is True
    bad = (table * 2)[:length]
    name, params = reverts_with(p384, lambda: p384.functions.verifyPrecomputed(_b48(e), _b48(r), _b48(s), bad).call())
    assert (name, params) == ("P384InvalidTable", (length,))


# ---------------------------------------------------------------------------------------------------
# Random bytes: a verdict or one of the library's own errors, never a panic or an empty revert.
def _outcome(p384: Any, call: Callable[[], Any]) -> str:
    try:
        return f"returned {bool(call())}"
    except ContractCustomError:
        return reverts_with(p384, call)[0]


_FIELD = st.one_of(st.binary(min_size=48, max_size=48), st.binary(max_size=100))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.tuples(_FIELD, _FIELD, _FIELD, _FIELD, _FIELD))
def test_random_inputs_give_a_verdict_or_a_typed_error(p384: Any, args: tuple[bytes, ...]) -> None:
    outcome = _outcome(p384, lambda: p384.functions.verify(*args).call())
    assert outcome in {"returned False", "P384InvalidLength", "P384InvalidPublicKey"}, outcome


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=st.tuples(_FIELD, _FIELD, _FIELD),
    table=st.one_of(st.binary(max_size=200), st.binary(min_size=TABLE_LENGTH, max_size=TABLE_LENGTH)),
)
def test_random_tables_give_a_verdict_or_a_typed_error(p384: Any, args: tuple[bytes, ...], table: bytes) -> None:
    # A table that precompute did not produce is a caller bug; the library still answers or reverts typed.
    outcome = _outcome(p384, lambda: p384.functions.verifyPrecomputed(*args, table).call())
    assert outcome in {"returned False", "P384InvalidLength", "P384InvalidTable"}, outcome
