"""One exception hierarchy for all of cvm-attest, with stable machine-readable reasons.

Every failure anywhere in the toolkit (parser, verifier, policy, collateral fetch, chain) is a
:class:`CvmAttestError` carrying a :class:`Reason`. The reason strings are an API: tools, logs and
tests match on them. Never rename, renumber or reuse one; add new ones instead.

The edges translate these errors: FastAPI into ``4xx`` JSON ``{"reason", "detail", ...}``, the CLI
into ``[reason] message`` with a non-zero exit, ``onchain`` maps every custom Solidity error to one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any


class Reason(str, enum.Enum):
    """Stable dotted reason strings. Append only."""

    # --- input / parsing -------------------------------------------------------------------
    INPUT_UNREADABLE = "input.unreadable"
    INPUT_INVALID = "input.invalid"
    SNP_REPORT_LENGTH = "snp.report.length"
    SNP_REPORT_VERSION = "snp.report.version_unsupported"
    SNP_REPORT_RESERVED = "snp.report.reserved_nonzero"
    SNP_REPORT_SIG_ALGO = "snp.report.signature_algo_unsupported"
    SNP_REPORT_MALFORMED = "snp.report.malformed"
    CERT_MALFORMED = "cert.malformed"
    CERT_EXTENSION_MALFORMED = "cert.extension_malformed"
    HCL_REPORT_MALFORMED = "azure.hcl.malformed"
    HCL_RUNTIME_DATA_MALFORMED = "azure.runtime_data.malformed"
    TPM_ATTEST_MALFORMED = "tpm.attest.malformed"
    TPM_PUBLIC_MALFORMED = "tpm.public.malformed"
    TPM_SIGNATURE_MALFORMED = "tpm.signature.malformed"
    EVENT_LOG_MALFORMED = "workload.event_log.malformed"
    EVIDENCE_MALFORMED = "evidence.malformed"
    GOLDEN_MALFORMED = "golden.malformed"
    SNP_PRODUCT_UNKNOWN = "snp.product.unknown"

    # --- AMD certificate chain ---------------------------------------------------------------
    CHAIN_ROOT_NOT_PINNED = "snp.chain.root_not_pinned"
    CHAIN_ARK_SIGNATURE = "snp.chain.ark_signature_invalid"
    CHAIN_ASK_SIGNATURE = "snp.chain.ask_signature_invalid"
    CHAIN_LEAF_SIGNATURE = "snp.chain.leaf_signature_invalid"
    CHAIN_EXPIRED = "snp.chain.certificate_expired"
    CHAIN_NOT_YET_VALID = "snp.chain.certificate_not_yet_valid"
    CHAIN_PRODUCT_MISMATCH = "snp.chain.product_mismatch"
    CHAIN_INCOMPLETE = "snp.chain.incomplete"
    CHAIN_WRONG_INTERMEDIATE = "snp.chain.wrong_intermediate_kind"
    CHAIN_REVOKED = "snp.chain.revoked"
    CRL_MALFORMED = "snp.crl.malformed"
    CRL_INVALID = "snp.crl.invalid"
    CRL_STALE = "snp.crl.stale"

    # --- SNP report ------------------------------------------------------------------------
    SNP_SIGNATURE_INVALID = "snp.signature.invalid"
    SNP_TCB_MISMATCH = "snp.leaf.tcb_mismatch"
    SNP_HWID_MISMATCH = "snp.leaf.hwid_mismatch"
    SNP_SIGNER_MISMATCH = "snp.leaf.signer_kind_mismatch"

    # --- AK binding ------------------------------------------------------------------------
    BINDING_REPORT_DATA_MISMATCH = "binding.report_data_mismatch"
    BINDING_RUNTIME_DATA_MISMATCH = "binding.runtime_data_hash_mismatch"
    BINDING_AK_MISMATCH = "binding.ak_mismatch"
    BINDING_MODE_MISMATCH = "binding.mode_mismatch"
    BINDING_HCL_REPORT_MISMATCH = "binding.hcl_report_mismatch"

    # --- TPM quote -------------------------------------------------------------------------
    TPM_QUOTE_SIGNATURE_INVALID = "tpm.quote.signature_invalid"
    TPM_QUOTE_NONCE_MISMATCH = "tpm.quote.nonce_mismatch"
    TPM_QUOTE_MAGIC = "tpm.quote.bad_magic"
    TPM_QUOTE_TYPE = "tpm.quote.bad_type"
    TPM_QUOTE_PCR_DIGEST_MISMATCH = "tpm.quote.pcr_digest_mismatch"
    TPM_QUOTE_PCR_SELECTION = "tpm.quote.pcr_selection_mismatch"
    TPM_QUOTE_ALGORITHM_UNSUPPORTED = "tpm.quote.algorithm_unsupported"
    EVIDENCE_NONCE_FORM_MISMATCH = "evidence.nonce_form_mismatch"

    # --- workload (PCR23) ------------------------------------------------------------------
    EVENT_LOG_REPLAY_MISMATCH = "workload.event_log.replay_mismatch"
    WORKLOAD_COMPOSE_MALFORMED = "workload.compose_malformed"
    WORKLOAD_COMPOSE_FORBIDDEN = "workload.compose_forbidden"

    # --- policy ----------------------------------------------------------------------------
    POLICY_VIOLATIONS = "policy.violations"
    POLICY_MEASUREMENT_MISMATCH = "policy.measurement_mismatch"
    POLICY_DEBUG_ALLOWED = "policy.debug_allowed"
    POLICY_MIGRATE_MA_ALLOWED = "policy.migrate_ma_allowed"
    POLICY_SMT_NOT_ALLOWED = "policy.smt_not_allowed"
    POLICY_ABI_TOO_OLD = "policy.abi_too_old"
    POLICY_VMPL_MISMATCH = "policy.vmpl_mismatch"
    POLICY_TCB_TOO_LOW = "policy.tcb_too_low"
    POLICY_PRODUCT_NOT_ALLOWED = "policy.product_not_allowed"
    POLICY_SIGNER_NOT_ALLOWED = "policy.signer_not_allowed"
    POLICY_BINDING_NOT_ALLOWED = "policy.binding_not_allowed"
    POLICY_PCR_MISMATCH = "policy.pcr_mismatch"
    POLICY_PCR_MISSING = "policy.pcr_missing"
    POLICY_WORKLOAD_MISMATCH = "policy.workload_mismatch"
    POLICY_GOLDEN_ALLOWS_DEBUG = "policy.golden_allows_debug"
    POLICY_QUOTE_REQUIRED = "policy.quote_required"

    # --- collateral (retryable) ------------------------------------------------------------
    COLLATERAL_UNAVAILABLE = "collateral.unavailable"
    COLLATERAL_FETCH_FAILED = "collateral.fetch_failed"

    # --- platform / agent ------------------------------------------------------------------
    PLATFORM_UNAVAILABLE = "platform.unavailable"
    TPM_UNAVAILABLE = "tpm.unavailable"
    AUTH_REQUIRED = "auth.required"
    AUTH_INVALID = "auth.invalid"
    WORKLOAD_ARCHIVE_INVALID = "workload.archive.invalid"
    WORKLOAD_ARCHIVE_UNSAFE_PATH = "workload.archive.unsafe_path"
    WORKLOAD_ARCHIVE_TOO_LARGE = "workload.archive.too_large"
    WORKLOAD_RUNNER_FAILED = "workload.runner_failed"
    WORKLOAD_IMAGE_UNMEASURED = "workload.image_unmeasured"
    WORKLOAD_UPDATE_DISABLED = "workload.update_disabled"
    HTTP_NOT_FOUND = "http.not_found"
    HTTP_METHOD_NOT_ALLOWED = "http.method_not_allowed"
    HTTP_UNSUPPORTED_MEDIA_TYPE = "http.unsupported_media_type"
    AGENT_INTERNAL_ERROR = "agent.internal_error"
    AGENT_GOLDEN_NOT_CONSENTED = "agent.golden_not_consented"
    AGENT_SOCKET_SYMLINK = "agent.socket.symlink"
    AGENT_SOCKET_NOT_A_SOCKET = "agent.socket.not_a_socket"
    AGENT_SOCKET_DIRECTORY_UNSAFE = "agent.socket.directory_unsafe"

    # --- chain -----------------------------------------------------------------------------
    CHAIN_REVERTED = "chain.reverted"
    CHAIN_RPC_UNAVAILABLE = "chain.rpc_unavailable"
    CHAIN_TX_FAILED = "chain.tx_failed"
    CHAIN_INSUFFICIENT_FUNDS = "chain.insufficient_funds"
    REGISTRY_NOT_OWNER = "chain.not_owner"
    REGISTRY_GOLDEN_EXISTS = "chain.golden_exists"
    REGISTRY_GOLDEN_NOT_FOUND = "chain.golden_not_found"
    REGISTRY_GOLDEN_REVOKED = "chain.golden_revoked"
    REGISTRY_ROOT_ALREADY_PINNED = "chain.root_already_pinned"
    REGISTRY_CERTIFICATE_UNKNOWN = "chain.certificate_unknown"
    REGISTRY_CERTIFICATE_REVOKED = "chain.certificate_revoked"
    REGISTRY_NOT_A_LEAF = "chain.certificate_not_a_leaf"
    REGISTRY_JWK_OFFSETS_INVALID = "binding.jwk_offsets_invalid"
    REGISTRY_NONCE_STALE = "chain.nonce_stale"
    REGISTRY_NONCE_REPLAYED = "chain.nonce_replayed"
    REGISTRY_CVM_NOT_REGISTERED = "chain.cvm_not_registered"
    REGISTRY_ATTESTATION_EXPIRED = "chain.attestation_expired"
    REGISTRY_PCRS_CHANGED = "chain.pcrs_changed"
    REGISTRY_CONSENT_INVALID = "chain.consent_invalid"
    REGISTRY_NO_CONTRACT = "chain.no_contract"
    TPM_AK_ATTRIBUTES = "tpm.public.ak_attributes_invalid"
    REGISTRY_NOT_ATTESTED = "chain.cvm_not_attested"

    # --- keys and relaying -----------------------------------------------------------------
    KEY_UNAVAILABLE = "key.unavailable"
    RELAY_AGENT_UNREACHABLE = "relay.agent_unreachable"
    RELAY_EVIDENCE_REJECTED = "relay.evidence_rejected"
    RELAY_PASS_FAILED = "relay.pass_failed"
    RELAY_JOURNAL_CORRUPT = "relay.journal_corrupt"
    RELAY_FEE_CAP_REACHED = "relay.fee_cap_reached"
    SIGNED_REQUEST_INVALID = "sdk.signed_request.invalid"
    SIGNED_REQUEST_STALE = "sdk.signed_request.stale"

    # --- image (build and golden-value prediction) ------------------------------------------
    IMAGE_PE_MALFORMED = "image.pe.malformed"
    IMAGE_UKI_INVALID = "image.uki.invalid"
    IMAGE_TOOL_FAILED = "image.tool_failed"
    IMAGE_DISK_MALFORMED = "image.disk.malformed"
    IMAGE_PARTITION_MISSING = "image.disk.partition_missing"
    IMAGE_VERITY_MISMATCH = "image.verity.mismatch"
    IMAGE_ROOT_HASH_MISMATCH = "image.root_hash.mismatch"
    IMAGE_PREDICTION_MISMATCH = "image.prediction_mismatch"
    IMAGE_LOCK_MALFORMED = "image.lock.malformed"
    IMAGE_PACKAGE_UNLOCKED = "image.package_unlocked"
    IMAGE_PACKAGE_UNAVAILABLE = "image.package_unavailable"
    IMAGE_LAUNCH_MEASUREMENT_UNKNOWN = "image.launch_measurement_unknown"
    TCG_LOG_MALFORMED = "tcg_log.malformed"
    BOOT_LOG_UNAVAILABLE = "boot_log.unavailable"

    # --- deploy (cloud SDKs) ---------------------------------------------------------------
    DEPLOY_CREDENTIALS = "deploy.credentials_unavailable"
    DEPLOY_PERMISSION_DENIED = "deploy.permission_denied"
    DEPLOY_REGION_UNSUPPORTED = "deploy.region_unsupported"
    DEPLOY_SIZE_NOT_SEV_SNP = "deploy.size_not_sev_snp"
    DEPLOY_SIZE_UNAVAILABLE = "deploy.size_unavailable"
    DEPLOY_QUOTA_EXHAUSTED = "deploy.quota_exhausted"
    DEPLOY_BUCKET_UNUSABLE = "deploy.bucket_unusable"
    DEPLOY_IMPORT_ROLE_MISSING = "deploy.import_role_missing"
    DEPLOY_IMPORT_FAILED = "deploy.import_failed"
    DEPLOY_CLOUD_ERROR = "deploy.cloud_error"
    DEPLOY_IMAGE_MISSING = "deploy.image_missing"
    DEPLOY_LEDGER_MALFORMED = "deploy.ledger.malformed"
    DEPLOY_LEDGER_MISMATCH = "deploy.ledger.mismatch"
    DEPLOY_AGENT_UNREACHABLE = "deploy.agent_unreachable"
    DEPLOY_DESTROY_INCOMPLETE = "deploy.destroy_incomplete"

    # --- upload and sealed secrets -----------------------------------------------------------
    UPLOAD_TARGET_UNVERIFIED = "upload.target_unverified"
    UPLOAD_FAILED = "upload.failed"
    SEAL_MALFORMED = "seal.malformed"
    SEAL_KEY_NOT_BOUND = "seal.key_not_bound"
    SEAL_DECRYPT_FAILED = "seal.decrypt_failed"
    SEAL_CHALLENGE_UNKNOWN = "seal.challenge_unknown"
    SEAL_PLATFORM_UNPROTECTED = "seal.platform_unprotected"
    SECRETS_NOT_IN_MEMORY = "secrets.not_in_memory"
    WORKLOAD_ARCHIVE_SECRETS_IN_CLEAR = "workload.archive.secrets_in_clear"

    # --- SVSM vTPM (credential activation) -----------------------------------------------------
    SVSM_MANIFEST_MALFORMED = "svsm.manifest_malformed"
    SVSM_VMPL_NOT_ZERO = "binding.svsm_vmpl_not_zero"
    SVSM_NONCE_MISMATCH = "binding.svsm_nonce_mismatch"
    SVSM_NOT_ACTIVATED = "binding.svsm_not_activated"
    SVSM_ACTIVATION_MISMATCH = "binding.svsm_activation_mismatch"
    SVSM_CHALLENGE_UNKNOWN = "svsm.challenge_unknown"
    SVSM_ACTIVATION_FAILED = "svsm.activation_failed"

    # --- relayer fleet (shared journal, leases) ----------------------------------------------
    RELAY_JOURNAL_UNAVAILABLE = "relay.journal_unavailable"
    RELAY_JOURNAL_TOO_NEW = "relay.journal_too_new"
    RELAY_LEASE_LOST = "relay.lease_lost"
    RELAY_BALANCE_LOW = "relay.balance_low"

    # --- SVSM on chain (registerCvmSvsm) ------------------------------------------------------
    REGISTRY_ACTIVATOR_UNKNOWN = "chain.activator_unknown"
    REGISTRY_ACTIVATION_EXPIRED = "chain.activation_expired"

    # --- report checks (a golden measurement's "checks", cvm-cli verify's flags) --------------
    POLICY_REPORT_DATA_MISMATCH = "policy.report_data_mismatch"
    POLICY_HOST_DATA_MISMATCH = "policy.host_data_mismatch"
    POLICY_ID_KEY_MISMATCH = "policy.id_key_mismatch"
    POLICY_AUTHOR_KEY_MISMATCH = "policy.author_key_mismatch"
    POLICY_FAMILY_ID_MISMATCH = "policy.family_id_mismatch"
    POLICY_IMAGE_ID_MISMATCH = "policy.image_id_mismatch"
    POLICY_GUEST_SVN_TOO_LOW = "policy.guest_svn_too_low"
    POLICY_CHIP_NOT_ALLOWED = "policy.chip_not_allowed"
    POLICY_PLATFORM_INFO_MISMATCH = "policy.platform_info_mismatch"
    POLICY_FIRMWARE_TOO_OLD = "policy.firmware_too_old"

    def __str__(self) -> str:
        return self.value


class CvmAttestError(Exception):
    """Root of every error cvm-attest raises on purpose.

    ``reason`` is the stable :class:`Reason`; ``detail`` a human sentence; ``context`` small
    JSON-able facts (field names, expected/actual values) for logs and API responses.
    """

    retryable: bool = False

    def __init__(self, reason: Reason, detail: str = "", **context: Any) -> None:
        self.reason = reason
        self.detail = detail or reason.value
        self.context: dict[str, Any] = context
        super().__init__(f"[{reason.value}] {self.detail}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by the agent's HTTP errors and ``--json`` output."""
        out: dict[str, Any] = {"reason": self.reason.value, "detail": self.detail}
        if self.context:
            out["context"] = self.context
        return out


class ParseError(CvmAttestError):
    """Bytes or a document do not have the structure the specification requires."""


class VerificationError(CvmAttestError):
    """A signature, certificate chain, binding or digest does not verify."""


class CollateralError(CvmAttestError):
    """Certificates or other collateral could not be obtained. Retrying may help."""

    retryable = True


class PlatformError(CvmAttestError):
    """The TPM or the SEV-SNP firmware interface is unavailable or failed."""

    retryable = True


class RequestError(CvmAttestError):
    """A caller's request is not acceptable (bad token, unsafe archive, ...)."""


class ChainError(CvmAttestError):
    """An on-chain call reverted or the RPC failed."""


class BuildError(CvmAttestError):
    """A step of the image build could not run: a tool is missing or failed."""


class DeployError(CvmAttestError):
    """A cloud deployment step failed or cannot start. ``context["hint"]`` says what to fix."""


class Violation:
    """One policy rule that evidence breaks: which field, what was expected, what was found."""

    __slots__ = ("reason", "field", "expected", "actual")

    def __init__(self, reason: Reason, field: str, expected: Any, actual: Any) -> None:
        self.reason = reason
        self.field = field
        self.expected = expected
        self.actual = actual

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason.value,
            "field": self.field,
            "expected": self.expected,
            "actual": self.actual,
        }

    def __repr__(self) -> str:
        return f"Violation({self.reason.value}, {self.field}: expected {self.expected!r}, got {self.actual!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Violation) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.reason, self.field))


class PolicyError(CvmAttestError):
    """Evidence verified cryptographically but breaks the golden measurement.

    Carries *every* violation. ``reason`` is the first violation's reason when there is exactly
    one, else ``policy.violations``; ``violations`` lists them all in a stable order.
    """

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations: list[Violation] = list(violations)
        if not self.violations:
            raise ValueError("PolicyError needs at least one violation")
        reason = self.violations[0].reason if len(self.violations) == 1 else Reason.POLICY_VIOLATIONS
        detail = "; ".join(
            f"{v.field}: expected {v.expected}, got {v.actual}" for v in self.violations
        )
        super().__init__(reason, detail, violations=[v.to_dict() for v in self.violations])

    @property
    def reasons(self) -> list[Reason]:
        return [v.reason for v in self.violations]

