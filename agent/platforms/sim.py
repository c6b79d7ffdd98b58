"""The simulated SEV-SNP platform: a software firmware with a development AMD chain.

What it does is what the AMD firmware does for MSG_REPORT_REQ (SEV-SNP ABI specification,
section 7.3 and Table 23 "ATTESTATION_REPORT Structure"), with development keys:

* a development ARK -> ASK -> VCEK hierarchy (:class:`offchain.devamd.DevAmdChain`) generated once
  into ``<state-dir>/sim/`` (``ark.pem``, ``ask.pem``, ``vcek.pem``, ``cert_chain.pem`` and the
  VCEK's private key; the CA private keys are not kept) and reused on every start;
* reports laid out as a version-5 report of the chosen product (CPUID, TCBs, firmware version),
  guest policy 0x30000 (SMT allowed, the reserved bit 17 set, debug and migration forbidden; with
  ``debug`` also bit 19, DEBUG allowed, to play a guest whose memory the host can read), VMPL 0, the configured launch MEASUREMENT, a REPORT_ID chosen at start, and REPORT_DATA from
  the caller; signed with ECDSA P-384 / SHA-384 over bytes 0x000-0x29F.

Verifiers accept it only when they pin ``<state-dir>/sim/ark.pem`` explicitly (``--dev-root``).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from offchain.abi.binding import direct_report_data
from offchain.abi.snp_report import Product, SignerKind
from offchain.devamd import ARK_FILE, SIM_POLICY, SIM_POLICY_DEBUG, SIM_VMPL, DevAmdChain
from offchain.errors import CvmAttestError, PlatformError, Reason
from offchain.evidence import Platform

from agent.platforms import AttestationPlatform, PlatformEvidence


def load_or_create_chain(directory: Path, product: Product) -> DevAmdChain:
    """The development chain in ``directory``; generated (two RSA-4096 keys) when absent."""
    if (directory / ARK_FILE).is_file():
        try:
            chain = DevAmdChain.load(directory)
        except CvmAttestError as exc:
            raise PlatformError(
                Reason.PLATFORM_UNAVAILABLE, f"cannot load the simulated AMD chain in {directory}: {exc.detail}"
            ) from None
        if chain.product is not product:
            raise PlatformError(
                Reason.PLATFORM_UNAVAILABLE,
                f"{directory} holds a {chain.product.value} chain, not {product.value}; use another state directory",
            )
        return chain
    chain = DevAmdChain.generate(product=product, signer=SignerKind.VCEK)
    chain.save(directory)
    return chain


class SimPlatform(AttestationPlatform):
    """Reports signed by a development VCEK, exactly as the firmware lays them out."""

    platform = Platform.SIM

    def __init__(self, directory: Path, product: Product, measurement: bytes, *, debug: bool = False) -> None:
        self.directory = directory
        self.chain = load_or_create_chain(directory, product)
        self.measurement = measurement
        self.policy = SIM_POLICY | (SIM_POLICY_DEBUG if debug else 0)
        self.report_id = secrets.token_bytes(32)
        self._cache: tuple[bytes, PlatformEvidence] | None = None

    def attest(self, ak_public: bytes) -> PlatformEvidence:
        """A signed report with ``REPORT_DATA = direct_report_data(ak_public)``; one per AK."""
        if self._cache is not None and self._cache[0] == ak_public:
            return self._cache[1]
        template = self.chain.report_template(
            report_data=direct_report_data(ak_public),
            measurement=self.measurement,
            policy=self.policy,
            vmpl=SIM_VMPL,
            report_id=self.report_id,
        )
        evidence = PlatformEvidence(
            snp_report=self.chain.sign(template), certificates=self.chain.certificates_pem()
        )
        self._cache = (ak_public, evidence)
        return evidence

    def describe(self) -> dict[str, Any]:
        return {
            "platform": self.platform.value,
            "binding": self.binding.value,
            "development_root": True,
            "dev_root": str(self.directory / ARK_FILE),
            "product": self.chain.product.value,
            "measurement": self.measurement.hex(),
            "policy": hex(self.policy),
        }
