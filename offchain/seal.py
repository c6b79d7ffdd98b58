"""Secrets sealed to a CVM's sealing key: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, ChaCha20-Poly1305, through ``cryptography``'s HPKE.

The agent holds an X25519 key created in memory at its start (agent.sealing). Its public half
reaches a sender in one of two authenticated ways, never as the host hands it over:

* off chain, in evidence of the sealing form (``GET /sealing/collaterals/{nonce}``), whose quote
  binds the key, the CVM address and the sender's fresh nonce (offchain.abi.binding.sealing_extra_data):
  ``cvm-cli upload`` seals only after that evidence verified against the user's golden measurement;
* on chain, published in the registry under the attested CVM's address, signed by the CVM's own key
  (offchain.abi.binding.sealing_key_digest): ``cvm-cli secrets seal --to CVM --registry ADDR``.

A :class:`SealedBox` names its recipient (the key and the CVM address) and the context it was sealed
for; the context is the HPKE ``info``, so a box moved to another context or recipient does not
open. Plaintexts of ``cvm-cli upload`` are :func:`pack_secrets` documents: the files of ``secrets/``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from offchain.abi.binding import SEALING_KEY_BYTES, parse_address
from offchain.abi.jsontext import loads_bounded
from offchain.errors import ParseError, Reason, VerificationError

SEALED_FORMAT = "cvm-attest/sealed/v1"
SUITE_NAME = "DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/ChaCha20Poly1305"
SECRETS_FORMAT = "cvm-attest/secrets/v1"
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
#: X25519 enc (32) and the Poly1305 tag (16) around the plaintext.
_OVERHEAD = 48
MAX_SEALED_BYTES = 16 << 20
MAX_SECRET_FILES = 256
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_PURPOSES = {"upload": ("nonce",), "registry": ("chain_id", "registry")}


def _malformed(message: str, **context: Any) -> ParseError:
    return ParseError(Reason.SEAL_MALFORMED, message, **context)


def public_bytes(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public(raw: bytes) -> X25519PublicKey:
    if len(raw) != SEALING_KEY_BYTES:
        raise ParseError(Reason.INPUT_INVALID, f"a sealing key is {SEALING_KEY_BYTES} bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, slots=True)
class SealContext:
    """What a box was sealed for: ``upload`` (to the agent that answered the sender's ``nonce``) or
    ``registry`` (to the CVM a registry on ``chain_id`` attests). Its canonical JSON is the HPKE info."""

    purpose: str
    cvm_address: bytes
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def upload(cls, cvm_address: bytes, nonce: bytes) -> SealContext:
        return cls("upload", parse_address(cvm_address), {"nonce": nonce.hex()})

    @classmethod
    def registry(cls, cvm_address: bytes, chain_id: int, registry: bytes) -> SealContext:
        return cls("registry", parse_address(cvm_address),
                   {"chain_id": chain_id, "registry": "0x" + parse_address(registry).hex()})

    def to_json(self) -> dict[str, Any]:
        return {"purpose": self.purpose, "cvm_address": "0x" + self.cvm_address.hex(), **self.fields}

    def info(self) -> bytes:
        body = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return SEALED_FORMAT.encode() + b"\0" + body

    @classmethod
    def from_json(cls, value: Any) -> SealContext:
        if not isinstance(value, dict) or value.get("purpose") not in _PURPOSES:
            raise _malformed(f"context.purpose must be one of {', '.join(_PURPOSES)}")
        purpose = str(value["purpose"])
        expected = {"purpose", "cvm_address", *_PURPOSES[purpose]}
        if set(value) != expected:
            raise _malformed(f"a {purpose} context has exactly {', '.join(sorted(expected))}")
        try:
            address = parse_address(str(value["cvm_address"]))
        except ParseError:
            raise _malformed("context.cvm_address is not an address") from None
        if purpose == "upload":
            nonce = value["nonce"]
            if not isinstance(nonce, str) or not re.fullmatch(r"(?:[0-9a-f]{2}){1,64}", nonce):
                raise _malformed("context.nonce is 1 to 64 bytes in lowercase hex")
            return cls(purpose, address, {"nonce": nonce})
        chain_id, registry = value["chain_id"], value["registry"]
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 0 < chain_id < 1 << 256:
            raise _malformed("context.chain_id is a positive integer")
        try:
            registry_bytes = parse_address(str(registry))
        except ParseError:
            raise _malformed("context.registry is not an address") from None
        return cls(purpose, address, {"chain_id": chain_id, "registry": "0x" + registry_bytes.hex()})


@dataclass(frozen=True, slots=True)
class SealedBox:
    """``{"format", "suite", "recipient_key", "context", "ciphertext"}``: ``ciphertext`` is HPKE's
    ``enc || ct`` in base64, ``recipient_key`` the X25519 key (hex) it was sealed to."""

    recipient_key: bytes
    context: SealContext
    ciphertext: bytes

    def to_json(self) -> dict[str, Any]:
        return {"format": SEALED_FORMAT, "suite": SUITE_NAME, "recipient_key": self.recipient_key.hex(),
                "context": self.context.to_json(), "ciphertext": base64.b64encode(self.ciphertext).decode()}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def loads(cls, data: str | bytes) -> SealedBox:
        """Parse a sealed box; ``seal.malformed`` for anything but exactly this shape."""
        if len(data) > MAX_SEALED_BYTES * 2:
            raise _malformed(f"a sealed box is at most {MAX_SEALED_BYTES * 2} bytes of JSON")
        value = loads_bounded(data, Reason.SEAL_MALFORMED)
        if not isinstance(value, dict) or value.get("format") != SEALED_FORMAT:
            raise _malformed(f"not a sealed box (format {SEALED_FORMAT})")
        if set(value) != {"format", "suite", "recipient_key", "context", "ciphertext"}:
            raise _malformed("a sealed box has exactly format, suite, recipient_key, context and ciphertext")
        if value["suite"] != SUITE_NAME:
            raise _malformed(f"suite {value['suite']!r} is not supported; only {SUITE_NAME}")
        key = value["recipient_key"]
        if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{64}", key):
            raise _malformed("recipient_key is 32 bytes in lowercase hex")
        if not isinstance(value["ciphertext"], str):
            raise _malformed("ciphertext is base64")
        try:
            ciphertext = base64.b64decode(value["ciphertext"], validate=True)
        except (binascii.Error, ValueError):
            raise _malformed("ciphertext is not base64") from None
        if not _OVERHEAD <= len(ciphertext) <= MAX_SEALED_BYTES + _OVERHEAD:
            raise _malformed(f"ciphertext is {len(ciphertext)} bytes: not an HPKE box of at most "
                             f"{MAX_SEALED_BYTES} bytes")
        return cls(bytes.fromhex(key), SealContext.from_json(value["context"]), ciphertext)


def seal(plaintext: bytes, recipient_key: bytes, context: SealContext) -> SealedBox:
    """Encrypt ``plaintext`` to ``recipient_key`` for ``context`` (a fresh ephemeral key each time).
    The caller must have authenticated ``recipient_key`` (module docstring)."""
    if len(plaintext) > MAX_SEALED_BYTES:
        raise ParseError(Reason.INPUT_INVALID, f"at most {MAX_SEALED_BYTES} bytes can be sealed, got {len(plaintext)}")
    ciphertext = _SUITE.encrypt(plaintext, load_public(recipient_key), info=context.info())
    return SealedBox(recipient_key, context, ciphertext)


def open_box(box: SealedBox, private_key: X25519PrivateKey, cvm_address: bytes) -> bytes:
    """The plaintext of ``box`` for the holder of ``private_key`` at ``cvm_address``.

    ``seal.key_not_bound`` when the box names another key or CVM (sealed to someone else, e.g. to a
    key a host put in place of the agent's); ``seal.decrypt_failed`` when HPKE refuses it (altered,
    or moved to another context)."""
    own = public_bytes(private_key.public_key())
    if box.recipient_key != own:
        raise VerificationError(Reason.SEAL_KEY_NOT_BOUND, "the box is sealed to another key than this agent's "
                                "sealing key", expected=own.hex(), actual=box.recipient_key.hex())
    if box.context.cvm_address != parse_address(cvm_address):
        raise VerificationError(Reason.SEAL_KEY_NOT_BOUND, "the box is sealed for another CVM address",
                                expected="0x" + parse_address(cvm_address).hex(),
                                actual="0x" + box.context.cvm_address.hex())
    try:
        return _SUITE.decrypt(box.ciphertext, private_key, info=box.context.info())
    except (InvalidTag, ValueError):
        raise VerificationError(Reason.SEAL_DECRYPT_FAILED, "the box does not open with this agent's sealing key: "
                                "altered, or sealed for another context") from None


# --- the secrets of a workload ------------------------------------------------------------------


def check_secret_name(name: str) -> str:
    """A path under ``secrets/``: relative, ``/``-separated segments of letters, digits, ``._-``
    (not starting with ``.`` or ``-``), at most 8 deep."""
    segments = name.split("/")
    if not 1 <= len(segments) <= 8 or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise _malformed(f"{name!r} is not a secret's name: relative path segments of letters, digits and ._- "
                         "(not starting with . or -), at most 8 deep")
    return name


def pack_secrets(files: Mapping[str, bytes]) -> bytes:
    """The plaintext ``cvm-cli upload`` seals: ``{"format", "files": {name: base64}}``."""
    if len(files) > MAX_SECRET_FILES:
        raise ParseError(Reason.INPUT_INVALID, f"at most {MAX_SECRET_FILES} secret files, got {len(files)}")
    body = {"format": SECRETS_FORMAT,
            "files": {check_secret_name(n): base64.b64encode(files[n]).decode() for n in sorted(files)}}
    return json.dumps(body, separators=(",", ":")).encode()


def unpack_secrets(plaintext: bytes) -> dict[str, bytes]:
    """Inverse of :func:`pack_secrets`; ``seal.malformed`` for anything else. No name is a prefix
    directory of another (``a`` and ``a/b``)."""
    value = loads_bounded(plaintext, Reason.SEAL_MALFORMED)
    if not isinstance(value, dict) or set(value) != {"format", "files"} or value["format"] != SECRETS_FORMAT:
        raise _malformed(f"the sealed secrets are not a {SECRETS_FORMAT} document")
    files = value["files"]
    if not isinstance(files, dict) or len(files) > MAX_SECRET_FILES:
        raise _malformed(f"files is an object of at most {MAX_SECRET_FILES} entries")
    out: dict[str, bytes] = {}
    for name, content in files.items():
        check_secret_name(name)
        if not isinstance(content, str):
            raise _malformed(f"{name}: content is base64")
        try:
            out[name] = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise _malformed(f"{name}: content is not base64") from None
    for name in out:
        if any(other.startswith(name + "/") for other in out):
            raise _malformed(f"{name!r} is both a file and a directory")
    return out
