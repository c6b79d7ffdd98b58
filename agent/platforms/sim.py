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

import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from offchain.abi.binding import SVSM_NONCE_BYTES, direct_report_data, svsm_report_data
from offchain.abi.snp_report import Product, SignerKind
from offchain.devamd import ARK_FILE, SIM_POLICY, SIM_POLICY_DEBUG, SIM_VMPL, DevAmdChain
from offchain.errors import CvmAttestError, PlatformError, Reason
from offchain.evidence import Platform

from agent.platforms import AttestationPlatform, PlatformEvidence
from agent.platforms.snp import ARK_GUID, ASK_GUID, VCEK_GUID, CertTable, CertTableEntry
from agent.platforms.svsm import ENTRY_NAME as SVSM_ENTRY_NAME
from agent.platforms.svsm import VTPM_SERVICE_GUID


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


class SimSvsm:
    """The sim's SVSM mode: a configfs-tsm entry ``<root>/cvm-agent-svsm`` laid out as the kernel
    lays it out under an SVSM (``provider``, ``service_provider``, ``service_guid``,
    ``service_manifest_version``, ``inblob``, ``generation``; ``outblob``, ``auxblob`` and
    ``manifestblob`` as FIFOs, so reading blocks until this thread answers, as reading configfs
    does), answered as an SVSM and the firmware answer: with ``service_provider`` = ``svsm`` and the
    vTPM service's GUID, a report at VMPL 0 over ``SHA-512(inblob || manifest)``, the manifest being
    the vTPM's EK (``ek_public``, the swtpm's); otherwise the guest's own report, at VMPL 1, with
    ``REPORT_DATA = inblob`` (what a guest kernel at VMPL > 0 gets). The agent reads it through
    agent.platforms.svsm, the code path of a real SVSM guest. ``generation`` moves once per report."""

    def __init__(self, root: Path, chain: DevAmdChain, measurement: bytes, ek_public: bytes) -> None:
        self.root = root
        self.entry = root / SVSM_ENTRY_NAME
        self.chain = chain
        self.measurement = measurement
        self.ek_public = ek_public
        self.table = CertTable((
            CertTableEntry(VCEK_GUID, chain.leaf.public_bytes(Encoding.DER)),
            CertTableEntry(ASK_GUID, chain.ask.public_bytes(Encoding.DER)),
            CertTableEntry(ARK_GUID, chain.ark.public_bytes(Encoding.DER)),
        )).to_bytes()
        self.report_id = secrets.token_bytes(32)
        self.generation = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sim-svsm", daemon=True)

    def start(self) -> SimSvsm:
        if self.entry.exists():
            shutil.rmtree(self.entry)
        self.entry.mkdir(parents=True)
        for name, text in (("provider", "sev_guest\n"), ("service_provider", "\n"), ("service_guid",
                           "00000000-0000-0000-0000-000000000000\n"), ("service_manifest_version", "0\n")):
            (self.entry / name).write_text(text)
        (self.entry / "inblob").write_bytes(b"")
        (self.entry / "generation").write_text("0\n")
        for fifo in ("outblob", "auxblob", "manifestblob"):
            os.mkfifo(self.entry / fifo)
        self._thread.start()
        return self

    def _answer(self, inblob: bytes) -> tuple[bytes, bytes]:
        provider = (self.entry / "service_provider").read_text().strip()
        guid = (self.entry / "service_guid").read_text().strip()
        if provider == "svsm" and guid == str(VTPM_SERVICE_GUID) and len(inblob) == SVSM_NONCE_BYTES:
            report_data, vmpl, manifest = svsm_report_data(inblob, self.ek_public), 0, self.ek_public
        else:
            report_data, vmpl, manifest = inblob.ljust(64, b"\x00")[:64], 1, b""
        template = self.chain.report_template(report_data=report_data, measurement=self.measurement, policy=SIM_POLICY,
                                              vmpl=vmpl, report_id=self.report_id)
        return self.chain.sign(template).to_bytes(), manifest

    def _serve(self) -> None:
        while not self._stop.is_set():
            with open(self.entry / "outblob", "wb") as out:  # blocks until the agent reads
                if self._stop.is_set():
                    return
                self.generation += 1  # the agent's write to inblob
                (self.entry / "generation").write_text(f"{self.generation}\n")
                report, manifest = self._answer((self.entry / "inblob").read_bytes())
                out.write(report)
            for name, data in (("auxblob", self.table), ("manifestblob", manifest)):
                with open(self.entry / name, "wb") as blob:
                    if self._stop.is_set():
                        return
                    blob.write(data)

    def describe(self) -> dict[str, Any]:
        return {"simulated_svsm": True, "development_root": True, "dev_root": str(self.root.parent / ARK_FILE),
                "product": self.chain.product.value, "measurement": self.measurement.hex()}

    def close(self) -> None:
        self._stop.set()
        for name in ("outblob", "auxblob", "manifestblob"):  # unblock the thread waiting for a reader
            try:
                os.close(os.open(self.entry / name, os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                pass
        self._thread.join(timeout=10)
