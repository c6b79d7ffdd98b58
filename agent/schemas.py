"""The agent's HTTP response bodies as pydantic models, so OpenAPI describes what each route returns.

The evidence bundle is docs/formats.md's, field for field (offchain.evidence.EvidenceBundle.to_json);
the routes return it through :class:`EvidenceBundleBody` with ``None`` fields left out, so the bytes
on the wire are the bundle's own. A route's tests read its answers back through the same parsers a
verifier uses, so a model that drifted from the wire format fails them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

_HEX = r"^(?:[0-9a-f]{2})*$"
_0X_HEX = r"^0x(?:[0-9a-f]{2})*$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkloadEventBody(_Body):
    """One extend of PCR23 (docs/formats.md, "The workload event log")."""

    pcr: int = Field(description="Always 23.")
    kind: str = Field(description="image, compose or config.")
    name: str
    content_digest: str = Field(pattern=_HEX, description="SHA-256 of the item, hex.")
    event_digest: str = Field(pattern=_HEX, description="The digest extended into PCR23, hex.")


class QuoteBody(_Body):
    attest: str = Field(pattern=_HEX, description="TPMS_ATTEST as the TPM marshalled it, hex.")
    signature: str = Field(pattern=_HEX, description="TPMT_SIGNATURE, hex.")


class PcrBanksBody(_Body):
    sha256: dict[str, str] = Field(description="Quoted SHA-256 PCRs: decimal index -> hex value.")


class OffchainNonceBody(_Body):
    form: Literal["offchain"]
    value: str = Field(pattern=_HEX, description="The verifier's nonce, hex.")


class OnchainNonceBody(_Body):
    form: Literal["onchain"]
    chain_id: int
    registry: str = Field(pattern=_0X_HEX)
    block_number: int
    block_hash: str = Field(pattern=_0X_HEX)
    golden_id: str = Field(pattern=_0X_HEX)
    consent: str = Field(pattern=_0X_HEX, description="The CVM key's signature r||s||v over its consent.")


class SealingNonceBody(_Body):
    form: Literal["sealing"]
    value: str = Field(pattern=_HEX)
    sealing_key: str = Field(pattern=_HEX, description="The agent's X25519 sealing key, hex.")


NonceBody = Annotated[OffchainNonceBody | OnchainNonceBody | SealingNonceBody, Field(discriminator="form")]


class SvsmBody(_Body):
    """The svsm binding's SVSM attestation (docs/formats.md, "SVSM evidence")."""

    nonce: str = Field(pattern=_HEX, description="The 64-byte nonce the agent gave the SVSM, hex.")
    manifest: str = Field(pattern=_HEX, description="The vTPM's endorsement key (TPMT_PUBLIC), hex.")


class EvidenceBundleBody(_Body):
    """The evidence bundle (docs/formats.md, "Evidence bundle")."""

    version: int
    platform: Literal["snp", "azure", "sim", "svsm"]
    binding: Literal["direct", "azure", "svsm"]
    snp_report: str = Field(pattern=_HEX, description="ATTESTATION_REPORT, 1184 bytes, hex.")
    hcl_report: str | None = Field(default=None, pattern=_HEX, description="Azure only: the HCL report, hex.")
    svsm: SvsmBody | None = Field(default=None, description="svsm only: the SVSM's nonce and manifest.")
    certificates: dict[str, str] = Field(description="Role (vcek, vlek, ask, asvk, ark) -> PEM.")
    ak_public: str = Field(pattern=_HEX, description="The AK's TPMT_PUBLIC, hex.")
    quote: QuoteBody
    pcrs: PcrBanksBody
    event_log: list[WorkloadEventBody] | None = None
    cvm_address: str | None = Field(default=None, pattern=r"^0x[0-9a-f]{40}$")
    nonce: NonceBody | None = None


class IdentityBody(_Body):
    cvm_address: str = Field(description="The CVM key's Ethereum address (EIP-55).")
    ak_public_sha256: str = Field(pattern=_HEX, description="SHA-256 of the AK's TPMT_PUBLIC: what REPORT_DATA binds.")
    ak_hash: str = Field(
        pattern=_HEX, deprecated=True,
        description="Deprecated: the same value as ak_public_sha256. Not the registry's akHash (keccak256 of the "
        "AK's key, the SDK's ak_key_keccak).",
    )
    ak_public: str = Field(pattern=_HEX, description="The AK's TPMT_PUBLIC, hex.")
    sealing_key: str = Field(pattern=_HEX, description="The agent's X25519 sealing key, hex.")
    platform: str
    binding: str


class HealthBody(_Body):
    status: Literal["ok"]
    platform: str
    workload: str = Field(description="The workload's status (running, stopped, failed, ...).")
    events: int = Field(description="Entries in the PCR23 event log.")
    pcr23: str = Field(pattern=_HEX)


class SignedMessageBody(_Body):
    address: str
    message_hash: str
    signature: str = Field(description="r||s||v, 0x-hex.")
    v: int
    r: str
    s: str


class SignedTransactionBody(_Body):
    address: str
    raw_transaction: str = Field(description="The signed transaction, 0x-hex, for eth_sendRawTransaction.")
    hash: str
    v: int
    r: str
    s: str


class WorkloadUpdateBody(_Body):
    status: str
    pcr23: str = Field(pattern=_HEX, description="PCR23 after the new workload was measured.")
    events: list[WorkloadEventBody]
    files: list[str]
