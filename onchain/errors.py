"""Every custom error the registry can revert with, mapped to a stable :class:`offchain.errors.Reason`.

The contracts revert only with custom errors (CONVENTIONS.md, "Solidity"); :data:`ERROR_REASONS`
names the reason of each, by error name. ``tests/unit/onchain/test_onchain_errors.py`` checks that
the map covers every error in every shipped ABI, so a new error cannot reach a user unnamed.

:func:`decode_revert` turns revert data into a :class:`ChainError` carrying the reason, the error's
name and its decoded arguments; :func:`chain_error` does the same for the exceptions web3 raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError, Web3Exception

from offchain.errors import ChainError, Reason
from offchain.policy.checks import KEYS, REASONS

#: Custom error name -> reason. Names are unique across the registry and the libraries it uses.
ERROR_REASONS: Mapping[str, Reason] = {
    # OpenZeppelin Ownable / Ownable2Step
    "OwnableUnauthorizedAccount": Reason.REGISTRY_NOT_OWNER,
    "OwnableInvalidOwner": Reason.INPUT_INVALID,
    # ICvmRegistry: owner input
    "RegistryGoldenInvalid": Reason.GOLDEN_MALFORMED,
    "RegistryGoldenExists": Reason.REGISTRY_GOLDEN_EXISTS,
    "RegistryGoldenNotFound": Reason.REGISTRY_GOLDEN_NOT_FOUND,
    "RegistryGoldenRevoked": Reason.REGISTRY_GOLDEN_REVOKED,
    "RegistryProductInvalid": Reason.INPUT_INVALID,
    "RegistryRootAlreadyPinned": Reason.REGISTRY_ROOT_ALREADY_PINNED,
    # ICvmRegistry: certificates
    "RegistryRootNotPinned": Reason.CHAIN_ROOT_NOT_PINNED,
    "RegistryCertificateUnknown": Reason.REGISTRY_CERTIFICATE_UNKNOWN,
    "RegistryCertificateRevoked": Reason.REGISTRY_CERTIFICATE_REVOKED,
    "RegistryWrongIssuer": Reason.CHAIN_WRONG_INTERMEDIATE,
    "RegistryRootSignatureInvalid": Reason.CHAIN_ARK_SIGNATURE,
    "RegistryIntermediateSignatureInvalid": Reason.CHAIN_ASK_SIGNATURE,
    "RegistryLeafSignatureInvalid": Reason.CHAIN_LEAF_SIGNATURE,
    "RegistryCertificateExpired": Reason.CHAIN_EXPIRED,
    "RegistryCertificateNotYetValid": Reason.CHAIN_NOT_YET_VALID,
    "RegistryNotALeaf": Reason.REGISTRY_NOT_A_LEAF,
    "RegistryTableNotStored": Reason.CHAIN_TX_FAILED,
    # ICvmRegistry: the SEV-SNP report
    "RegistryReportSignatureInvalid": Reason.SNP_SIGNATURE_INVALID,
    "RegistryTcbMismatch": Reason.SNP_TCB_MISMATCH,
    "RegistryHwIdMismatch": Reason.SNP_HWID_MISMATCH,
    "RegistrySignerMismatch": Reason.SNP_SIGNER_MISMATCH,
    "RegistryProductMismatch": Reason.CHAIN_PRODUCT_MISMATCH,
    # ICvmRegistry: the golden policy
    "RegistryMeasurementMismatch": Reason.POLICY_MEASUREMENT_MISMATCH,
    "RegistryDebugAllowed": Reason.POLICY_DEBUG_ALLOWED,
    "RegistryMigrateMaAllowed": Reason.POLICY_MIGRATE_MA_ALLOWED,
    "RegistrySmtNotAllowed": Reason.POLICY_SMT_NOT_ALLOWED,
    "RegistryAbiTooOld": Reason.POLICY_ABI_TOO_OLD,
    "RegistryVmplMismatch": Reason.POLICY_VMPL_MISMATCH,
    "RegistryTcbTooLow": Reason.POLICY_TCB_TOO_LOW,
    "RegistryProductNotAllowed": Reason.POLICY_PRODUCT_NOT_ALLOWED,
    "RegistrySignerNotAllowed": Reason.POLICY_SIGNER_NOT_ALLOWED,
    "RegistryBindingNotAllowed": Reason.POLICY_BINDING_NOT_ALLOWED,
    "RegistryPcrMismatch": Reason.POLICY_PCR_MISMATCH,
    "RegistryPcrMissing": Reason.POLICY_PCR_MISSING,
    "RegistryReportCheckFailed": Reason.POLICY_REPORT_DATA_MISMATCH,
    # ICvmRegistry: the AK binding
    "RegistryReportDataMismatch": Reason.BINDING_REPORT_DATA_MISMATCH,
    "RegistryRuntimeDataMismatch": Reason.BINDING_RUNTIME_DATA_MISMATCH,
    "RegistryAkJwkOffsets": Reason.REGISTRY_JWK_OFFSETS_INVALID,
    "RegistryAkMismatch": Reason.BINDING_AK_MISMATCH,
    # ICvmRegistry: the quote
    "RegistryQuoteSignatureInvalid": Reason.TPM_QUOTE_SIGNATURE_INVALID,
    "RegistryQuoteNonceMismatch": Reason.TPM_QUOTE_NONCE_MISMATCH,
    "RegistryPcrDigestMismatch": Reason.TPM_QUOTE_PCR_DIGEST_MISMATCH,
    "RegistryPcrCount": Reason.TPM_QUOTE_PCR_SELECTION,
    # ICvmRegistry: freshness and records
    "RegistryStaleBlock": Reason.REGISTRY_NONCE_STALE,
    "RegistryNonceReplayed": Reason.REGISTRY_NONCE_REPLAYED,
    "RegistryZeroAddress": Reason.INPUT_INVALID,
    "RegistryCvmNotRegistered": Reason.REGISTRY_CVM_NOT_REGISTERED,
    "RegistryAttestationExpired": Reason.REGISTRY_ATTESTATION_EXPIRED,
    "RegistryPcrsChanged": Reason.REGISTRY_PCRS_CHANGED,
    "RegistryConsentInvalid": Reason.REGISTRY_CONSENT_INVALID,
    "RegistryCvmNotAttested": Reason.REGISTRY_NOT_ATTESTED,
    "RegistrySealingKeyInvalid": Reason.SEAL_KEY_NOT_BOUND,
    # ICvmRegistry: SVSM activation
    "RegistryActivatorUnknown": Reason.REGISTRY_ACTIVATOR_UNKNOWN,
    "RegistryActivationExpired": Reason.REGISTRY_ACTIVATION_EXPIRED,
    # X509Lite and RsaPss (through CertificateVerifier)
    "X509Malformed": Reason.CERT_MALFORMED,
    "X509UnsupportedAlgorithm": Reason.CERT_MALFORMED,
    "X509UnsupportedKey": Reason.CERT_MALFORMED,
    "X509InvalidTime": Reason.CERT_MALFORMED,
    "X509AmdExtensionMissing": Reason.CERT_EXTENSION_MALFORMED,
    "X509AmdExtensionMalformed": Reason.CERT_EXTENSION_MALFORMED,
    "RsaPssInvalidKey": Reason.CERT_MALFORMED,
    "RsaPssModexpFailed": Reason.CHAIN_TX_FAILED,
    # SnpReport (offchain/abi/snp_report.py raises the same reasons in the same order)
    "SnpReportLength": Reason.SNP_REPORT_LENGTH,
    "SnpReportVersion": Reason.SNP_REPORT_VERSION,
    "SnpReportReserved": Reason.SNP_REPORT_RESERVED,
    "SnpReportSignatureAlgo": Reason.SNP_REPORT_SIG_ALGO,
    "SnpReportSigningKey": Reason.SNP_REPORT_MALFORMED,
    "SnpReportTcbReserved": Reason.SNP_REPORT_RESERVED,
    "SnpReportUnknownProduct": Reason.SNP_PRODUCT_UNKNOWN,
    # P384 / EcdsaVerifier (a leaf key must be a P-384 point; tables are the registry's own)
    "P384InvalidLength": Reason.CERT_MALFORMED,
    "P384InvalidPublicKey": Reason.CERT_MALFORMED,
    "P384InvalidTable": Reason.CHAIN_TX_FAILED,
    "EcdsaVerifierTableMissing": Reason.CHAIN_TX_FAILED,
    # Sha384 (slices are the verifier's own: a report's signed bytes, a certificate's TBS)
    "Sha384OutOfBounds": Reason.INPUT_INVALID,
    # CvmGated
    "CvmGatedNotAttested": Reason.REGISTRY_NOT_ATTESTED,
    "CvmGatedZeroRegistry": Reason.INPUT_INVALID,
    # TpmQuote
    "TpmMalformed": Reason.TPM_ATTEST_MALFORMED,
    "TpmQuoteBadMagic": Reason.TPM_QUOTE_MAGIC,
    "TpmQuoteBadType": Reason.TPM_QUOTE_TYPE,
    "TpmQuoteSelectionUnsupported": Reason.TPM_QUOTE_PCR_SELECTION,
    "TpmAlgorithmUnsupported": Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED,
    "TpmAkAttributes": Reason.TPM_AK_ATTRIBUTES,
}

#: TpmMalformed's first argument names the structure; each has its own parse reason.
_TPM_STRUCTURE_REASONS = {
    1: Reason.TPM_ATTEST_MALFORMED,
    2: Reason.TPM_PUBLIC_MALFORMED,
    3: Reason.TPM_SIGNATURE_MALFORMED,
}


#: RegistryReportCheckFailed's argument numbers the check (ISnpVerifier.ReportChecks order); each has the
#: reason offchain.policy.checks gives the same failure.
REPORT_CHECK_REASONS = {number: REASONS[key] for number, key in enumerate(KEYS, start=1)}


def _signature(item: Mapping[str, Any]) -> str:
    return f"{item['name']}({','.join(_canonical_type(i) for i in item.get('inputs', []))})"


def _canonical_type(param: Mapping[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple'):]}"
    return kind


def abi_errors(abi: Iterable[Mapping[str, Any]]) -> dict[bytes, Mapping[str, Any]]:
    """Selector (4 bytes) -> ABI entry of every custom error in ``abi``."""
    return {keccak(text=_signature(e))[:4]: e for e in abi if e.get("type") == "error"}


def decode_revert(data: bytes, abi: Iterable[Mapping[str, Any]], *, action: str = "call") -> ChainError:
    """The :class:`ChainError` for revert ``data`` of a contract with ``abi``.

    A known custom error gets its mapped reason, with ``error`` (its name) and ``args`` in the
    context; anything else (a panic, an unknown selector, no data) is ``chain.reverted``.
    """
    errors = abi_errors(abi)
    entry = errors.get(bytes(data[:4])) if len(data) >= 4 else None
    if entry is None:
        return ChainError(Reason.CHAIN_REVERTED, f"{action} reverted", data="0x" + bytes(data).hex())
    name = str(entry["name"])
    types = [_canonical_type(i) for i in entry.get("inputs", [])]
    try:
        values = abi_decode(types, bytes(data[4:])) if types else ()
    except Exception:  # noqa: BLE001 - malformed revert data is reported, not raised
        return ChainError(Reason.CHAIN_REVERTED, f"{action} reverted with malformed {name} data")
    args = [_jsonable(v) for v in values]
    reason = ERROR_REASONS.get(name, Reason.CHAIN_REVERTED)
    if name == "TpmMalformed" and values:
        reason = _TPM_STRUCTURE_REASONS.get(int(values[0]), reason)
    if name == "RegistryReportCheckFailed" and values:
        reason = REPORT_CHECK_REASONS.get(int(values[0]), Reason.CHAIN_REVERTED)
    rendered = ", ".join(str(a) for a in args)
    return ChainError(reason, f"{action} reverted: {name}({rendered})", error=name, args=args)


def chain_error(exc: Exception, abi: Iterable[Mapping[str, Any]], *, action: str = "call") -> ChainError:
    """Translate an exception web3 raised for a call or transaction into a :class:`ChainError`."""
    if isinstance(exc, ChainError):
        return exc
    if isinstance(exc, ContractPanicError):
        return ChainError(Reason.CHAIN_REVERTED, f"{action} panicked: {exc}")
    if isinstance(exc, (ContractCustomError, ContractLogicError)):
        data = exc.data if isinstance(exc.data, str) else getattr(exc, "message", None)
        if isinstance(data, str) and data.startswith("0x"):
            try:
                return decode_revert(bytes.fromhex(data[2:]), abi, action=action)
            except ValueError:
                pass
        return ChainError(Reason.CHAIN_REVERTED, f"{action} reverted: {exc}")
    if _is_insufficient_funds(exc):
        return ChainError(Reason.CHAIN_INSUFFICIENT_FUNDS, f"{action}: the sending account cannot pay for it: {exc}")
    if isinstance(exc, (Web3Exception, OSError, ConnectionError)):
        return ChainError(Reason.CHAIN_RPC_UNAVAILABLE, f"{action} failed: {exc}")
    return ChainError(Reason.CHAIN_TX_FAILED, f"{action} failed: {exc}")


def _is_insufficient_funds(exc: Exception) -> bool:
    """The node refused a transaction its sender cannot pay for (geth, anvil, reth: "insufficient funds")."""
    return "insufficient funds" in str(exc).lower()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
