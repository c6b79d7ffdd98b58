"""The agent's TPM: attestation key, PCR quote, PCR23 extend/reset and NV reads, over tpm2-pytss.

Commands follow TPM 2.0 Part 3 (TPM2_CreatePrimary, TPM2_Create, TPM2_Load, TPM2_Quote,
TPM2_PCR_Read, TPM2_PCR_Extend, TPM2_PCR_Reset, TPM2_NV_Read); structures TPM 2.0 Part 2
(TPMT_PUBLIC 12.2.4, TPMS_ATTEST 10.12.8, TPMT_SIGNATURE 11.3.4).

The attestation key (AK) is created fresh at every start as a child of an owner-hierarchy storage
key: a restricted signing key (``fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth |
noDA | restricted | sign``) with a random 32-byte authValue that exists only in this process, so
no other TPM user can make it sign even if it reaches the object. Its private part never leaves
the TPM; its TPMT_PUBLIC is what REPORT_DATA binds (offchain.abi.binding.direct_report_data).

The AK stays loaded for the life of the agent; every other transient object (the storage key) is
flushed as soon as it is not needed, since swtpm has no resource manager. All calls are
serialised by one lock: ESAPI contexts are not thread safe, and a quote must not interleave
with an extend of PCR23.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from offchain.abi.tpm import TpmsAttest, TpmtPublic
from offchain.credential import EK_AUTH_POLICY
from offchain.errors import CvmAttestError, PlatformError, Reason

from agent.config import AkKind, Tcti

PCR_SIZE = 32
_QUOTE_ATTEMPTS = 3
_NV_CHUNK_DEFAULT = 512


@dataclass(frozen=True, slots=True)
class Quote:
    """One TPM2_Quote: the signed TPMS_ATTEST, its TPMT_SIGNATURE and the PCR values it covers."""

    attest: bytes
    signature: bytes
    pcrs: Mapping[int, bytes]


def _tss() -> Any:
    """tpm2-pytss, imported on first use so a missing libtss2 is a typed error, not an ImportError."""
    try:
        import tpm2_pytss
    except ImportError as exc:  # pragma: no cover - the agent extra installs it
        raise PlatformError(Reason.TPM_UNAVAILABLE, f"tpm2-pytss is not usable: {exc}") from None
    return tpm2_pytss


def _tpm_error(action: str, exc: Exception) -> PlatformError:
    return PlatformError(Reason.TPM_UNAVAILABLE, f"TPM {action} failed: {exc}", action=action)


class AgentTpm:
    """A connection to one TPM and the agent's AK on it. Create with :meth:`open`."""

    def __init__(self, esapi: Any, tcti_ctx: Any, tcti: Tcti) -> None:
        self._esapi = esapi
        self._tcti_ctx = tcti_ctx
        self.tcti = tcti
        self._lock = threading.RLock()
        self._ak: Any = None
        self._ak_transient = False
        self._ak_public: bytes | None = None
        self._ek: Any = None
        self._ek_public: bytes | None = None

    # --- connection ------------------------------------------------------------------------

    @classmethod
    def open(cls, tcti: Tcti) -> AgentTpm:
        """Connect through the TCTI (``device:/dev/tpmrm0``, ``swtpm:host=..,port=..``)."""
        tss = _tss()
        try:
            ctx = tss.TCTILdr(tcti.name, tcti.conf)
            esapi = tss.ESAPI(ctx)
        except Exception as exc:
            raise PlatformError(
                Reason.TPM_UNAVAILABLE, f"cannot open the TPM at {tcti}: {exc}", tcti=str(tcti)
            ) from None
        return cls(esapi, ctx, tcti)

    def close(self) -> None:
        """Flush the AK (when it is a transient object) and close the connection."""
        with self._lock:
            if self._esapi is None:
                return
            try:
                if self._ak is not None and self._ak_transient:
                    self._esapi.flush_context(self._ak)
                if self._ek is not None:
                    self._esapi.flush_context(self._ek)
            except Exception:
                pass  # closing anyway; the TPM drops transient objects at its next reset
            finally:
                self._ak = None
                self._esapi.close()
                self._esapi = None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the TPM lock across several calls (e.g. read PCR23, then extend it)."""
        with self._lock:
            yield

    def _call(self, action: str, fn: Any, *args: Any) -> Any:
        with self._lock:
            if self._esapi is None:
                raise PlatformError(Reason.TPM_UNAVAILABLE, "the TPM connection is closed")
            try:
                return fn(self._esapi, *args)
            except CvmAttestError:
                raise
            except Exception as exc:
                raise _tpm_error(action, exc) from None

    # --- attestation key -----------------------------------------------------------------------

    @property
    def ak_public(self) -> bytes:
        """The AK's TPMT_PUBLIC as the TPM marshals it."""
        if self._ak_public is None:
            raise PlatformError(Reason.TPM_UNAVAILABLE, "no attestation key yet")
        return self._ak_public

    def create_ak(self, kind: AkKind) -> bytes:
        """Create and load a fresh AK; returns its TPMT_PUBLIC. Replaces any previous transient AK."""
        tss = _tss()
        t = tss.types
        c = tss.constants
        storage_template = t.TPM2B_PUBLIC.parse(
            "ecc256:aes128cfb",
            objectAttributes=c.TPMA_OBJECT.RESTRICTED
            | c.TPMA_OBJECT.DECRYPT
            | c.TPMA_OBJECT.FIXEDTPM
            | c.TPMA_OBJECT.FIXEDPARENT
            | c.TPMA_OBJECT.SENSITIVEDATAORIGIN
            | c.TPMA_OBJECT.USERWITHAUTH
            | c.TPMA_OBJECT.NODA,
        )
        ak_template = t.TPM2B_PUBLIC.parse(
            "rsa2048:rsassa-sha256:null" if kind is AkKind.RSA else "ecc256:ecdsa-sha256:null",
            objectAttributes=c.TPMA_OBJECT.RESTRICTED
            | c.TPMA_OBJECT.SIGN_ENCRYPT
            | c.TPMA_OBJECT.FIXEDTPM
            | c.TPMA_OBJECT.FIXEDPARENT
            | c.TPMA_OBJECT.SENSITIVEDATAORIGIN
            | c.TPMA_OBJECT.USERWITHAUTH
            | c.TPMA_OBJECT.NODA,
        )
        auth = secrets.token_bytes(32)
        sensitive = t.TPM2B_SENSITIVE_CREATE(t.TPMS_SENSITIVE_CREATE(userAuth=t.TPM2B_AUTH(auth)))

        def create(esapi: Any) -> tuple[Any, bytes]:
            parent, *_ = esapi.create_primary(t.TPM2B_SENSITIVE_CREATE(), storage_template, c.ESYS_TR.OWNER)
            try:
                private, public, *_ = esapi.create(parent, sensitive, ak_template)
                handle = esapi.load(parent, private, public)
            finally:
                esapi.flush_context(parent)
            esapi.tr_set_auth(handle, auth)
            return handle, bytes(public.publicArea.marshal())

        with self._lock:
            handle, public = self._call("create the attestation key", create)
            self._replace_ak(handle, public, transient=True)
        return bytes(public)

    def create_ek(self, kind: AkKind) -> bytes:
        """Create (TPM2_CreatePrimary in the endorsement hierarchy) and keep loaded the endorsement key
        of the TCG default template, RSA-2048 (L-1) or ECC P-256 (L-2); returns its TPMT_PUBLIC. The
        same template gives the same key on the same TPM: on an SVSM it is the EK the SVSM's manifest
        carries."""
        tss = _tss()
        t, c = tss.types, tss.constants
        attributes = (c.TPMA_OBJECT.FIXEDTPM | c.TPMA_OBJECT.FIXEDPARENT | c.TPMA_OBJECT.SENSITIVEDATAORIGIN
                      | c.TPMA_OBJECT.ADMINWITHPOLICY | c.TPMA_OBJECT.RESTRICTED | c.TPMA_OBJECT.DECRYPT)
        template = t.TPM2B_PUBLIC.parse("rsa2048:aes128cfb" if kind is AkKind.RSA else "ecc256:aes128cfb",
                                        objectAttributes=attributes, authPolicy=EK_AUTH_POLICY)
        if kind is AkKind.RSA:
            template.publicArea.unique.rsa = t.TPM2B_PUBLIC_KEY_RSA(bytes(256))
        else:
            template.publicArea.unique.ecc.x = t.TPM2B_ECC_PARAMETER(bytes(32))
            template.publicArea.unique.ecc.y = t.TPM2B_ECC_PARAMETER(bytes(32))

        def create(esapi: Any) -> tuple[Any, bytes]:
            handle, public, *_ = esapi.create_primary(t.TPM2B_SENSITIVE_CREATE(), template, c.ESYS_TR.ENDORSEMENT)
            return handle, bytes(public.publicArea.marshal())

        with self._lock:
            if self._ek is not None:
                self._call("flush the previous EK", lambda e: e.flush_context(self._ek))
            self._ek, self._ek_public = self._call("create the endorsement key", create)
        return bytes(self._ek_public)

    @property
    def ek_public(self) -> bytes:
        if self._ek_public is None:
            raise PlatformError(Reason.TPM_UNAVAILABLE, "no endorsement key yet")
        return self._ek_public

    def activate_credential(self, credential_blob: bytes, secret: bytes) -> bytes:
        """TPM2_ActivateCredential of the AK under the EK: the credential a verifier made for the AK's
        Name (offchain.credential), which the TPM releases only if it holds both. The EK's policy
        (PolicySecret of the endorsement hierarchy) is satisfied in a fresh policy session."""
        tss = _tss()
        t, c = tss.types, tss.constants
        if self._ak is None or self._ek is None:
            raise PlatformError(Reason.TPM_UNAVAILABLE, "no attestation or endorsement key yet")

        def activate(esapi: Any) -> bytes:
            session = esapi.start_auth_session(
                c.ESYS_TR.NONE, c.ESYS_TR.NONE, c.TPM2_SE.POLICY,
                t.TPMT_SYM_DEF(algorithm=c.TPM2_ALG.NULL), c.TPM2_ALG.SHA256,
            )
            try:
                esapi.policy_secret(c.ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
                value = esapi.activate_credential(
                    self._ak, self._ek, t.TPM2B_ID_OBJECT(credential_blob), t.TPM2B_ENCRYPTED_SECRET(secret),
                    session1=c.ESYS_TR.PASSWORD, session2=session,
                )
            finally:
                esapi.flush_context(session)
            return bytes(value)

        try:
            with self._lock:
                if self._esapi is None:
                    raise PlatformError(Reason.TPM_UNAVAILABLE, "the TPM connection is closed")
                return activate(self._esapi)
        except CvmAttestError:
            raise
        except Exception as exc:
            raise PlatformError(Reason.SVSM_ACTIVATION_FAILED, f"the TPM refused to activate the credential: {exc}") \
                from None

    def use_persistent_ak(self, handle: int) -> bytes:
        """Use an AK the platform provisioned at a persistent handle (Azure: 0x81000003)."""

        def read(esapi: Any) -> tuple[Any, bytes]:
            tr = esapi.tr_from_tpmpublic(handle)
            public, _, _ = esapi.read_public(tr)
            return tr, bytes(public.publicArea.marshal())

        with self._lock:
            tr, public = self._call(f"read the AK at {handle:#x}", read)
            self._replace_ak(tr, public, transient=False)
        return bytes(public)

    def _replace_ak(self, handle: Any, public: bytes, *, transient: bool) -> None:
        TpmtPublic.from_bytes(public)  # the TPM's own bytes must parse; a ParseError here is a bug
        if self._ak is not None and self._ak_transient:
            self._call("flush the previous AK", lambda e: e.flush_context(self._ak))
        self._ak, self._ak_public, self._ak_transient = handle, public, transient

    # --- PCRs ----------------------------------------------------------------------------------

    @staticmethod
    def _selection(pcrs: Sequence[int]) -> Any:
        t = _tss().types
        return t.TPML_PCR_SELECTION.parse("sha256:" + ",".join(str(p) for p in pcrs))

    def read_pcrs(self, pcrs: Sequence[int]) -> dict[int, bytes]:
        """SHA-256 bank values of ``pcrs``; TPM2_PCR_Read returns at most 8 per call, so loop."""
        wanted = sorted(set(pcrs))

        def read(esapi: Any) -> dict[int, bytes]:
            values: dict[int, bytes] = {}
            remaining = list(wanted)
            while remaining:
                _, selection, digests = esapi.pcr_read(self._selection(remaining))
                got = _selected(selection)
                if not got:
                    raise PlatformError(Reason.TPM_UNAVAILABLE, f"the TPM returned no SHA-256 PCR of {remaining}")
                for index, digest in zip(got, digests):
                    values[index] = bytes(digest)
                remaining = [p for p in remaining if p not in values]
            return values

        values: dict[int, bytes] = self._call("PCR read", read)
        return values

    def extend_pcr(self, index: int, digest: bytes) -> None:
        """TPM2_PCR_Extend of the SHA-256 bank: ``PCR = SHA-256(PCR || digest)``."""
        tss = _tss()
        t, c = tss.types, tss.constants
        if len(digest) != PCR_SIZE:
            raise ValueError("a SHA-256 PCR is extended with 32 bytes")
        values = t.TPML_DIGEST_VALUES([t.TPMT_HA(hashAlg=c.TPM2_ALG.SHA256, digest=t.TPMU_HA(sha256=digest))])
        self._call(f"PCR{index} extend", lambda e: e.pcr_extend(getattr(c.ESYS_TR, f"PCR{index}"), values))

    def reset_pcr(self, index: int) -> None:
        """TPM2_PCR_Reset; the PC Client profile allows it at locality 0 for PCR 16 and 23 only."""
        c = _tss().constants
        self._call(f"PCR{index} reset", lambda e: e.pcr_reset(getattr(c.ESYS_TR, f"PCR{index}")))

    # --- quote ---------------------------------------------------------------------------------

    def quote(self, extra_data: bytes, pcrs: Sequence[int]) -> Quote:
        """TPM2_Quote with the AK over ``pcrs`` (SHA-256 bank) and the PCR values it covers.

        ``extra_data`` is always one of the agent's domain-separated digests, never caller bytes.
        The PCRs are read right after the quote under the same lock; if another TPM user extended
        one in between (the digest no longer matches), the quote is taken again.
        """
        tss = _tss()
        t, c = tss.types, tss.constants
        if self._ak is None:
            raise PlatformError(Reason.TPM_UNAVAILABLE, "no attestation key yet")
        selection = sorted(set(pcrs))
        with self._lock:
            for _ in range(_QUOTE_ATTEMPTS):
                attest, signature = self._call(
                    "quote",
                    lambda e: e.quote(
                        self._ak, self._selection(selection), t.TPM2B_DATA(extra_data),
                        t.TPMT_SIG_SCHEME(scheme=c.TPM2_ALG.NULL),
                    ),
                )
                attest_bytes = bytes(attest)
                values = self.read_pcrs(selection)
                digest = hashlib.sha256(b"".join(values[p] for p in selection)).digest()
                if hmac.compare_digest(digest, TpmsAttest.from_bytes(attest_bytes).pcr_digest):
                    return Quote(attest_bytes, bytes(signature.marshal()), MappingProxyType(values))
        raise PlatformError(Reason.TPM_UNAVAILABLE, "PCRs kept changing while quoting; try again")

    # --- NV ------------------------------------------------------------------------------------

    def nv_read(self, index: int) -> bytes:
        """The whole content of NV index ``index`` (e.g. Azure's HCL report at 0x01400001)."""
        tss = _tss()
        c = tss.constants

        def read(esapi: Any) -> bytes:
            handle = esapi.tr_from_tpmpublic(index)
            public, _ = esapi.nv_read_public(handle)
            size = public.nvPublic.dataSize
            auth = c.ESYS_TR.OWNER if public.nvPublic.attributes & c.TPMA_NV.OWNERREAD else handle
            chunk = _nv_buffer_max(esapi, tss)
            out = bytearray()
            while len(out) < size:
                n = min(chunk, size - len(out))
                out += bytes(esapi.nv_read(handle, n, len(out), auth))
            esapi.tr_close(handle)
            return bytes(out)

        return bytes(self._call(f"NV read of {index:#x}", read))


def _nv_buffer_max(esapi: Any, tss: Any) -> int:
    c = tss.constants
    _, data = esapi.get_capability(c.TPM2_CAP.TPM_PROPERTIES, c.TPM2_PT_NV.BUFFER_MAX, 1)
    for prop in data.data.tpmProperties:
        if prop.property == c.TPM2_PT_NV.BUFFER_MAX and prop.value:
            return int(prop.value)
    return _NV_CHUNK_DEFAULT


def _selected(selection: Any) -> list[int]:
    """PCR indices of the SHA-256 bank in a TPML_PCR_SELECTION returned by TPM2_PCR_Read."""
    c = _tss().constants
    out: list[int] = []
    for i in range(selection.count):
        sel = selection.pcrSelections[i]
        if sel.hash != c.TPM2_ALG.SHA256:
            continue
        bitmap = bytes(sel.pcrSelect)[: sel.sizeofSelect]
        out.extend(8 * byte_i + bit for byte_i, byte in enumerate(bitmap) for bit in range(8) if byte >> bit & 1)
    return out
