"""offchain.seal: HPKE boxes bound to a recipient and a context, their JSON, and the secrets document."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.abi.binding import sealing_extra_data, sealing_key_digest
from offchain.errors import ParseError, Reason, VerificationError
from offchain.seal import (
    SealContext,
    SealedBox,
    check_secret_name,
    open_box,
    pack_secrets,
    public_bytes,
    seal,
    unpack_secrets,
)

ADDRESS = bytes.fromhex("11" * 20)
KEY = X25519PrivateKey.generate()
PUBLIC = public_bytes(KEY.public_key())


def _box(plaintext: bytes = b"secret", context: SealContext | None = None) -> SealedBox:
    return seal(plaintext, PUBLIC, context or SealContext.upload(ADDRESS, b"\x01\x02"))


def test_a_box_opens_for_its_recipient_and_context() -> None:
    box = _box(b"the plaintext")
    assert open_box(SealedBox.loads(box.dumps()), KEY, ADDRESS) == b"the plaintext"
    registry = SealContext.registry(ADDRESS, 1, bytes.fromhex("22" * 20))
    assert open_box(SealedBox.loads(_box(b"x", registry).dumps()), KEY, ADDRESS) == b"x"
    # A fresh ephemeral key each time: the same plaintext never seals to the same bytes.
    assert _box(b"same").ciphertext != _box(b"same").ciphertext


def test_a_box_does_not_open_for_anyone_else() -> None:
    box = _box()
    with pytest.raises(VerificationError) as caught:
        open_box(box, X25519PrivateKey.generate(), ADDRESS)
    assert caught.value.reason is Reason.SEAL_KEY_NOT_BOUND
    with pytest.raises(VerificationError) as caught:
        open_box(box, KEY, bytes.fromhex("33" * 20))
    assert caught.value.reason is Reason.SEAL_KEY_NOT_BOUND
    relabelled = SealedBox(box.recipient_key, SealContext.upload(ADDRESS, b"\x09"), box.ciphertext)
    with pytest.raises(VerificationError) as caught:
        open_box(relabelled, KEY, ADDRESS)
    assert caught.value.reason is Reason.SEAL_DECRYPT_FAILED


def _json(**changes: Any) -> str:
    data = _box().to_json()
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{",
        _json(format="cvm-attest/sealed/v0"),
        _json(suite="DHKEM(P-256,HKDF-SHA256)/HKDF-SHA256/AES-128-GCM"),
        _json(recipient_key="AB" * 32),
        _json(recipient_key="ab" * 31),
        _json(ciphertext="not base64!"),
        _json(ciphertext=base64.b64encode(b"short").decode()),
        _json(ciphertext=7),
        _json(extra=1),
        _json(context={"purpose": "upload", "cvm_address": "0x" + "11" * 20}),
        _json(context={"purpose": "upload", "cvm_address": "0x" + "11" * 20, "nonce": "0102", "x": 1}),
        _json(context={"purpose": "upload", "cvm_address": "0x11", "nonce": "0102"}),
        _json(context={"purpose": "upload", "cvm_address": "0x" + "11" * 20, "nonce": ""}),
        _json(context={"purpose": "registry", "cvm_address": "0x" + "11" * 20, "chain_id": 0,
                       "registry": "0x" + "22" * 20}),
        _json(context={"purpose": "registry", "cvm_address": "0x" + "11" * 20, "chain_id": True,
                       "registry": "0x" + "22" * 20}),
        _json(context={"purpose": "mail", "cvm_address": "0x" + "11" * 20}),
    ],
    ids=["array", "truncated", "format", "suite", "key-uppercase", "key-short", "ciphertext-not-base64",
         "ciphertext-short", "ciphertext-number", "extra-key", "upload-without-nonce", "upload-extra",
         "bad-address", "empty-nonce", "chain-id-zero", "chain-id-bool", "unknown-purpose"],
)
def test_malformed_boxes_are_refused_with_one_reason(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        SealedBox.loads(text)
    assert caught.value.reason is Reason.SEAL_MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_never_a_box(data: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        SealedBox.loads(data)
    assert caught.value.reason is Reason.SEAL_MALFORMED


def test_the_secrets_document_round_trips() -> None:
    files = {"api-key": b"k\x00\xff", "db/password": b"", "tls/server.key": b"-----BEGIN"}
    assert unpack_secrets(pack_secrets(files)) == files


@pytest.mark.parametrize("name", ["", "/abs", "../up", "a/../b", ".hidden", "-rf", "a//b", "a b", "x/" * 9 + "y",
                                  "ü"])
def test_a_secret_name_is_a_plain_relative_path(name: str) -> None:
    with pytest.raises(ParseError) as caught:
        check_secret_name(name)
    assert caught.value.reason is Reason.SEAL_MALFORMED


@pytest.mark.parametrize(
    "document",
    [
        {"format": "cvm-attest/secrets/v0", "files": {}},
        {"format": "cvm-attest/secrets/v1"},
        {"format": "cvm-attest/secrets/v1", "files": {"a": 1}},
        {"format": "cvm-attest/secrets/v1", "files": {"a": "!!"}},
        {"format": "cvm-attest/secrets/v1", "files": {"a": "", "a/b": ""}},
        {"format": "cvm-attest/secrets/v1", "files": {"../a": ""}},
    ],
    ids=["format", "no-files", "not-base64-type", "not-base64", "file-and-directory", "traversal"],
)
def test_malformed_secrets_documents(document: dict[str, Any]) -> None:
    with pytest.raises(ParseError) as caught:
        unpack_secrets(json.dumps(document).encode())
    assert caught.value.reason is Reason.SEAL_MALFORMED


def test_the_binding_digests_are_domain_separated_and_sized() -> None:
    a = sealing_extra_data(PUBLIC, ADDRESS, b"\x01")
    assert a != sealing_extra_data(PUBLIC, ADDRESS, b"\x02") != sealing_extra_data(bytes(32), ADDRESS, b"\x01")
    assert len(a) == 32 and len(sealing_key_digest(1, bytes(20), ADDRESS, PUBLIC)) == 32
    for bad in (b"", b"\x00" * 31):
        with pytest.raises(ParseError):
            sealing_extra_data(bad, ADDRESS, b"\x01")
    with pytest.raises(ParseError):
        sealing_extra_data(PUBLIC, ADDRESS, b"")
