"""The running agent: TPM, platform, workload and CVM key, and the evidence it serves.

:meth:`Agent.start` brings everything up in the order PROTOCOL.md needs: open the TPM, create
(or, on Azure, adopt) the AK, obtain the platform's report for it once (so a broken platform stops
the agent at start, not at the first request), bring PCR23 and the event log into agreement and
measure the workload if nobody did, then start the workload.

Evidence (docs/formats.md, "Evidence bundle"): the quote's extraData is always one of the three
domain-separated forms of :mod:`offchain.abi.binding` (off-chain, on-chain, sealing), computed
here; no caller chooses it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from offchain.abi.binding import (
    check_nonce,
    golden_consent_digest,
    offchain_extra_data,
    onchain_extra_data,
    parse_address,
    sealing_extra_data,
    sealing_key_digest,
)
from offchain.abi.tcg_log import MAX_LOG_BYTES, parse_tcg_log
from offchain.abi.tcg_log import replay as replay_tcg_log
from offchain.abi.tpm import TpmtPublic, TpmtSignature
from offchain.abi.workload import WORKLOAD_PCR, WorkloadEvent
from offchain.devamd import SIM_PRODUCT
from offchain.cli.output import verdict
from offchain.errors import CvmAttestError, ParseError, PlatformError, Reason, RequestError
from offchain.evidence import (
    EvidenceBundle,
    OffchainNonce,
    OnchainNonce,
    SealingNonce,
    offchain_expected_extra_data,
    verify_evidence,
)
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.seal import SealedBox, unpack_secrets
from offchain.trust.certs import parse_certificate
from offchain.trust.roots import TrustRoots

from agent.challenges import Challenges
from agent.config import AgentConfig, AkKind, PlatformName
from agent.consent import GoldenConsents
from agent.ethkey import CvmKey
from agent.platforms import AttestationPlatform
from agent.platforms.azure import AzurePlatform
from agent.platforms.sim import SimPlatform, SimSvsm, load_or_create_chain
from agent.platforms.svsm import SvsmPlatform, SvsmTsm
from agent.platforms.snp import ConfigfsTsm, SevGuestDevice, SnpPlatform
from agent.sealing import SealingKey
from agent.tpm import AgentTpm, Quote
from agent.workload import EventLog, Runner, Workload, seed_workload

log = logging.getLogger("cvm_agent")


def make_platform(config: AgentConfig, tpm: AgentTpm) -> AttestationPlatform:
    """The platform the configuration names."""
    if config.platform is PlatformName.SIM and config.sim_svsm:
        chain = load_or_create_chain(config.sim_dir, config.product or SIM_PRODUCT)
        simulator = SimSvsm(config.sim_dir / "tsm", chain, config.sim_measurement, tpm.create_ek(AkKind.RSA)).start()
        try:
            return SvsmPlatform(SvsmTsm(simulator.root), tpm, simulator=simulator)
        except BaseException:
            simulator.close()
            raise
    if config.platform is PlatformName.SIM:
        return SimPlatform(
            config.sim_dir, config.product or SIM_PRODUCT, config.sim_measurement, debug=config.sim_debug
        )
    if config.platform is PlatformName.SVSM:
        return SvsmPlatform(SvsmTsm(config.tsm_root), tpm)
    if config.platform is PlatformName.SNP:
        vmpl = config.snp_privlevel or 0
        return SnpPlatform(ConfigfsTsm(config.tsm_root, config.snp_privlevel), SevGuestDevice(config.sev_guest, vmpl))
    return AzurePlatform(tpm.nv_read)


class Agent:
    """Everything the HTTP routes need. Build with :meth:`start`; :meth:`close` at the end."""

    def __init__(
        self,
        config: AgentConfig,
        tpm: AgentTpm,
        platform: AttestationPlatform,
        workload: Workload,
        key: CvmKey,
        consents: GoldenConsents,
    ) -> None:
        self.config = config
        self.tpm = tpm
        self.platform = platform
        self.workload = workload
        self.key = key
        self.consents = consents
        self.sealing = SealingKey()
        #: Quote extraData of the evidence served on the svsm platform: each opens one credential
        #: activation (POST /svsm/activate) for ten minutes.
        self.activations = Challenges()
        self.ak = TpmtPublic.from_bytes(tpm.ak_public)
        self.started_at = dt.datetime.now(dt.timezone.utc)

    @classmethod
    def start(cls, config: AgentConfig, *, platform: AttestationPlatform | None = None) -> Agent:
        """Open the TPM, create the AK, check the platform, measure and start the workload.

        ``platform`` replaces the configured one (tests feed the Azure platform from a file).
        """
        try:
            config.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ParseError(Reason.INPUT_UNREADABLE, f"--state-dir {config.state_dir} cannot be created: "
                             f"{exc.strerror}", path=str(config.state_dir)) from None
        consents = GoldenConsents(config.consented_goldens, config.consents_path)
        if config.workload_from is not None:
            seed_workload(config.workload_from, config.workload_dir)
        tpm = AgentTpm.open(config.tcti)
        chosen_platform: AttestationPlatform | None = None
        try:
            chosen = chosen_platform = platform or make_platform(config, tpm)
            if chosen.persistent_ak is not None:
                tpm.use_persistent_ak(chosen.persistent_ak)
            else:
                tpm.create_ak(config.ak)
            chosen.attest(tpm.ak_public)
            workload = Workload(
                tpm,
                config.workload_dir,
                EventLog(config.event_log_path),
                Runner(config.runner, config.image_loader, config.runner_timeout),
                config.limits,
                config.compose_rules,
            )
            measured = workload.start(reset_pcr23=config.reset_pcr23)
            agent = cls(config, tpm, chosen, workload, CvmKey(), consents)
        except BaseException:
            if chosen_platform is not None:
                chosen_platform.close()
            tpm.close()
            raise
        log.info(
            "agent up: platform %s, AK %s, CVM address %s, %d workload events",
            chosen.platform.value,
            agent.ak_hash().hex(),
            agent.key.address,
            len(workload.events()),
        )
        if measured and config.start_workload:
            workload.run()
        return agent

    def close(self) -> None:
        self.platform.close()
        self.tpm.close()

    # --- evidence ------------------------------------------------------------------------------

    def ak_hash(self) -> bytes:
        """SHA-256 of the AK's TPMT_PUBLIC (the first half of REPORT_DATA in the direct binding)."""
        return hashlib.sha256(self.tpm.ak_public).digest()

    def _quote(self, extra_data: bytes) -> tuple[Quote, list[WorkloadEvent]]:
        with self.tpm.exclusive():  # the log and the quoted PCR23 must describe the same moment
            events = self.workload.events()
            quote = self.tpm.quote(extra_data, self.config.pcrs)
        return quote, events

    def _bundle(self, extra_data: bytes, nonce: OffchainNonce | OnchainNonce | SealingNonce) -> EvidenceBundle:
        quote, events = self._quote(extra_data)
        evidence = self.platform.attest_for(self.tpm.ak_public, extra_data)
        if evidence.svsm is not None:
            self.activations.issue(extra_data)
        return EvidenceBundle(
            platform=self.platform.platform,
            binding=self.platform.binding,
            snp_report=evidence.snp_report,
            ak_public=self.tpm.ak_public,
            ak=self.ak,
            quote_attest=quote.attest,
            quote_signature=TpmtSignature.from_bytes(quote.signature),
            pcrs=MappingProxyType(dict(sorted(quote.pcrs.items()))),
            certificates=MappingProxyType(dict(evidence.certificates)),
            hcl_report=evidence.hcl_report,
            event_log=tuple(events),
            cvm_address=self.key.address_bytes,
            nonce=nonce,
            svsm=evidence.svsm,
        )

    def svsm_activate(self, challenge: bytes, credential_blob: bytes, secret: bytes) -> bytes:
        """TPM2_ActivateCredential for a verifier of evidence this agent served on the svsm platform
        (``challenge`` is that evidence's quote extraData; one activation each, within ten minutes):
        the credential it made for this AK under the SVSM's EK (offchain.credential)."""
        if self.platform.binding is not Binding.SVSM:
            raise RequestError(Reason.HTTP_NOT_FOUND, f"the {self.platform.platform.value} platform has no SVSM vTPM "
                               "to activate a credential with")
        with self.activations.lock:
            if not self.activations.is_open(challenge):
                raise RequestError(Reason.SVSM_CHALLENGE_UNKNOWN, "no evidence served in the last 10 minutes quotes "
                                   "this challenge, or it was activated already: fetch the evidence again")
            self.activations.consume(challenge)
        return self.tpm.activate_credential(credential_blob, secret)

    def collaterals(self, nonce: bytes) -> EvidenceBundle:
        """Off-chain evidence: the quote's extraData is ``SHA-256("cvm-attest/offchain/v1" || nonce)``."""
        check_nonce(nonce)
        return self._bundle(offchain_extra_data(nonce), OffchainNonce(nonce))

    def sealing_collaterals(self, nonce: bytes) -> EvidenceBundle:
        """Evidence that secrets may be sealed to this agent's sealing key: the quote's extraData binds
        the key, this CVM's address and the sender's ``nonce`` (offchain.abi.binding.sealing_extra_data).
        The nonce is remembered as a challenge that one upload box may answer (agent.sealing)."""
        check_nonce(nonce)
        self.sealing.issue(nonce)
        extra = sealing_extra_data(self.sealing.public, self.key.address_bytes, nonce)
        return self._bundle(extra, SealingNonce(nonce, self.sealing.public))

    def onchain_sealing_key(self, chain_id: int, registry: str) -> dict[str, Any]:
        """The sealing key with the CVM key's signature over
        :func:`offchain.abi.binding.sealing_key_digest`: what ``publishSealingKey`` takes."""
        registry_bytes = parse_address(registry)
        digest = sealing_key_digest(chain_id, registry_bytes, self.key.address_bytes, self.sealing.public)
        return {
            "cvm_address": self.key.address,
            "chain_id": chain_id,
            "registry": "0x" + registry_bytes.hex(),
            "sealing_key": "0x" + self.sealing.public.hex(),
            "signature": "0x" + self.key.sign_digest(digest).hex(),
        }

    def install_secrets(self, body: bytes) -> dict[str, Any]:
        """Open an upload box (agent.sealing) and replace the workload's ``secrets/`` with its files."""
        box = SealedBox.loads(body)
        self.workload.check_secrets_in_memory()
        files = unpack_secrets(self.sealing.open_upload(box, self.key.address_bytes))
        names = self.workload.install_secrets(files)
        return {"installed": list(names), "count": len(names)}

    def unseal(self, body: bytes) -> dict[str, Any]:
        """Open a box sealed to the key this CVM published in a registry (cvm-cli secrets seal), for
        the workload; the box's context says which registry."""
        box = SealedBox.loads(body)
        plaintext = self.sealing.open_registry(box, self.key.address_bytes)
        return {"context": box.context.to_json(), "plaintext": base64.b64encode(plaintext).decode()}

    def onchain_collaterals(
        self, chain_id: int, registry: str, block_number: int, block_hash: bytes, golden_id: bytes
    ) -> EvidenceBundle:
        """On-chain evidence: extraData binds chain id, registry, *this agent's* address and a block hash;
        the nonce carries the CVM key's consent to be registered under ``golden_id``.

        ``golden_id`` must be one this CVM consents to (agent.consent), else
        ``agent.golden_not_consented`` and no quote is taken. The agent cannot check that the block
        hash is recent or real; the registry does (``blockhash(block_number)``), so a made-up
        challenge only yields a quote nobody accepts.
        """
        registry_bytes = parse_address(registry)
        if len(golden_id) != 32:
            raise RequestError(Reason.INPUT_INVALID, "a golden id is 32 bytes")
        if not self.consents.allows(golden_id):
            raise RequestError(
                Reason.AGENT_GOLDEN_NOT_CONSENTED,
                f"this CVM does not consent to golden measurement 0x{golden_id.hex()}: its operator adds it with "
                "--consent-golden or POST /golden-consents",
                golden_id="0x" + golden_id.hex(),
            )
        extra = onchain_extra_data(chain_id, registry_bytes, self.key.address_bytes, block_hash)
        consent = self.key.sign_digest(
            golden_consent_digest(chain_id, registry_bytes, self.key.address_bytes, golden_id)
        )
        nonce = OnchainNonce(
            chain_id=chain_id, registry=registry_bytes, block_number=block_number, block_hash=block_hash,
            golden_id=golden_id, consent=consent,
        )
        return self._bundle(extra, nonce)

    def golden_measurement(self) -> GoldenMeasurement:
        """The golden measurement describing this CVM now: its report's policy and TCB, every quoted
        PCR pinned to its current value, and the PCR23 event list."""
        evidence = self.platform.attest(self.tpm.ak_public)
        with self.tpm.exclusive():
            events = self.workload.events()
            pcrs = self.tpm.read_pcrs(self.config.pcrs)
        return GoldenMeasurement.from_report(
            evidence.snp_report,
            evidence.product(self.config.product),
            evidence.signer,
            self.platform.binding,
            pcrs=pcrs,
            events=events,
            lifetime=self.config.golden_lifetime,
            name=f"cvm-agent {self.platform.platform.value} {self.started_at:%Y-%m-%d}",
        )

    # --- facts ---------------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        return {
            "cvm_address": self.key.address,
            "ak_public_sha256": self.ak_hash().hex(),
            "ak_hash": self.ak_hash().hex(),  # deprecated name of ak_public_sha256 (docs/agent.md)
            "ak_public": self.tpm.ak_public.hex(),
            "sealing_key": self.sealing.public.hex(),
            "platform": self.platform.platform.value,
            "binding": self.platform.binding.value,
        }

    def platform_info(self) -> dict[str, Any]:
        info = self.platform.describe()
        info["pcrs"] = list(self.config.pcrs)
        info["ak"] = "persistent" if self.platform.persistent_ak is not None else self.config.ak.value
        return info

    def boot_event_log(self) -> dict[str, Any]:
        """The firmware's TCG event log, parsed and replayed (``GET /boot-event-log``)."""
        path = self.config.boot_event_log
        try:
            if path is None:
                raise FileNotFoundError
            with path.open("rb") as f:
                data = f.read(MAX_LOG_BYTES + 1)
        except OSError:
            raise PlatformError(Reason.BOOT_LOG_UNAVAILABLE, "this machine's firmware left no TCG event log"
                                + ("" if path is None else f" at {path}")) from None
        try:
            log = parse_tcg_log(data)
        except ParseError as exc:
            raise PlatformError(exc.reason, exc.detail, **exc.context) from None
        return {
            "log": base64.b64encode(data).decode(),
            "events": [event.to_json() for event in log.events],
            "replay": {str(pcr): value.hex() for pcr, value in replay_tcg_log(log).items()},
        }

    def health(self) -> dict[str, Any]:
        pcr23 = self.tpm.read_pcrs([WORKLOAD_PCR])[WORKLOAD_PCR]
        return {
            "status": "ok",
            "platform": self.platform.platform.value,
            "workload": self.workload.status,
            "events": len(self.workload.events()),
            "pcr23": pcr23.hex(),
        }

    # --- verification for the workload ------------------------------------------------------------

    def offchain_verify(
        self,
        evidence: Mapping[str, Any],
        nonce: bytes,
        golden: Mapping[str, Any] | None,
        dev_root: str | None,
        now: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """The verdict of :func:`offchain.evidence.verify_evidence` as ``cvm-cli verify --json`` prints it.

        Roots: AMD's pinned ARKs, plus ``dev_root`` (PEM) only when the caller gives it. No
        network: the evidence must carry its certificates. A malformed ``golden`` or ``dev_root`` is
        :class:`RequestError` (``input.invalid``): the request is wrong, the evidence was not judged.
        """
        # The caller's own inputs first: a malformed golden or dev root is the request's fault (HTTP
        # 422), not a verdict on the evidence.
        roots = TrustRoots.amd()
        if dev_root is not None:
            try:
                roots = roots.with_dev_root(parse_certificate(dev_root.encode()))
            except CvmAttestError as exc:
                raise RequestError(Reason.INPUT_INVALID, f"dev_root: {exc.detail}") from None
        try:
            golden_doc = GoldenMeasurement.from_json(dict(golden)) if golden is not None else None
        except CvmAttestError as exc:
            raise RequestError(Reason.INPUT_INVALID, f"golden: {exc.detail}") from None
        try:
            bundle = EvidenceBundle.from_json(dict(evidence))
            verified = verify_evidence(
                bundle,
                expected_extra_data=offchain_expected_extra_data(bundle, nonce),
                golden=golden_doc,
                roots=roots,
                now=now or dt.datetime.now(dt.timezone.utc),
            )
        except CvmAttestError as exc:
            return verdict(ok=False, error=exc)
        return verdict(
            ok=True,
            product=verified.product,
            signer=verified.signer.value,
            report=verified.report,
            extra={"golden_id": None if verified.golden_id is None else "0x" + verified.golden_id.hex()},
        )

