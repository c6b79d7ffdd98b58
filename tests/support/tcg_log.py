"""Crypto-agile TCG event logs built field by field (PFP 1.05 section 10), for tests."""

from __future__ import annotations

import hashlib
import struct

from offchain.abi.tcg_log import EV_NO_ACTION, SPEC_ID_SIGNATURE, TPM_ALG_SHA1, TPM_ALG_SHA256

EV_SEPARATOR, EV_EFI_ACTION = 0x4, 0x80000007


def spec_id(banks: dict[int, int]) -> bytes:
    body = SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(banks))
    body += b"".join(struct.pack("<HH", alg, size) for alg, size in banks.items()) + b"\0"
    return struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(body)) + body


def event(pcr: int, kind: int, data: bytes, digests: dict[int, bytes] | None = None) -> bytes:
    if digests is None:
        digests = {TPM_ALG_SHA1: hashlib.sha1(data).digest(), TPM_ALG_SHA256: hashlib.sha256(data).digest()}
    out = struct.pack("<III", pcr, kind, len(digests))
    out += b"".join(struct.pack("<H", alg) + digest for alg, digest in digests.items())
    return out + struct.pack("<I", len(data)) + data


BANKS = {TPM_ALG_SHA1: 20, TPM_ALG_SHA256: 32}


def extend(*datas: bytes, start: bytes = bytes(32)) -> bytes:
    value = start
    for data in datas:
        value = hashlib.sha256(value + hashlib.sha256(data).digest()).digest()
    return value
