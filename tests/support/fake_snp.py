"""Faithful stand-ins for what cannot exist here: the SEV-SNP guest kernel interfaces and an Azure
paravisor. Each answers exactly as the real one does, with reports signed by a development chain.

* :class:`FakeConfigfsTsm`: a directory laid out like a configfs-tsm report entry of the
  ``sev_guest`` provider. ``outblob`` and ``auxblob`` are FIFOs, so reading them blocks until the
  "firmware" thread answers, as reading configfs does; it signs a report over the ``inblob`` just
  written and bumps ``generation`` once per write, as the kernel does.
* :func:`fake_sev_guest_ioctl`: ``SNP_GET_EXT_REPORT`` on ``/dev/sev-guest``, reading the request
  and writing the response and certificate table through the pointers in the ioctl structure
  (the kernel's copy_from_user/copy_to_user), including the "certificate buffer too small" answer.
* :func:`azure_hcl_report`: an HCL report as Azure's paravisor writes it to vTPM NV 0x01400001,
  for a given vTPM AK.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from agent.platforms.snp import (
    ARK_GUID,
    ASK_GUID,
    ENTRY_NAME,
    SNP_GET_EXT_REPORT,
    SNP_GUEST_VMM_ERR_INVALID_LEN,
    VCEK_GUID,
    CertTable,
    CertTableEntry,
    GuestRequestIoctl,
    _ExtReportReq,
)
from offchain.abi.hcl import HclReport
from offchain.devamd import DevAmdChain

SIM_POLICY = 0x30000


def dev_cert_table(chain: DevAmdChain) -> bytes:
    """The certificate table a host would supply: VCEK, ASK, ARK (DER)."""
    return CertTable((
        CertTableEntry(VCEK_GUID, chain.leaf.public_bytes(Encoding.DER)),
        CertTableEntry(ASK_GUID, chain.ask.public_bytes(Encoding.DER)),
        CertTableEntry(ARK_GUID, chain.ark.public_bytes(Encoding.DER)),
    )).to_bytes()


def signed_report(chain: DevAmdChain, report_data: bytes, measurement: bytes = bytes(48)) -> bytes:
    report = chain.report_template(report_data=report_data.ljust(64, b"\x00"), measurement=measurement,
                                   policy=SIM_POLICY, vmpl=0)
    return chain.sign(report).to_bytes()


class FakeConfigfsTsm:
    """``<root>/cvm-agent``: a configfs-tsm entry answered by a software firmware thread.

    ``interfere`` is how many times another "process" writes the entry while a request is in flight
    (the generation then moves by more than the agent's own writes). ``provider`` and
    ``answer`` (which maps inblob to outblob) let a test make the firmware misbehave.
    """

    def __init__(
        self,
        root: Path,
        chain: DevAmdChain,
        *,
        certificates: bytes | None = None,
        interfere: int = 0,
        provider: str = "sev_guest",
        answer: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.root = root
        self.entry = root / ENTRY_NAME
        self.chain = chain
        self.table = dev_cert_table(chain) if certificates is None else certificates
        self.interfere = interfere
        self.provider = provider
        self.answer = answer or (lambda inblob: signed_report(chain, inblob))
        self.generation = 0
        self.served = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeConfigfsTsm:
        self.entry.mkdir(parents=True)
        (self.entry / "provider").write_text(self.provider + "\n")
        (self.entry / "inblob").write_bytes(b"")
        self._write_generation()
        os.mkfifo(self.entry / "outblob")
        os.mkfifo(self.entry / "auxblob")
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for name in ("outblob", "auxblob"):  # unblock a writer waiting for a reader
            try:
                fd = os.open(self.entry / name, os.O_RDONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
        self._thread.join(timeout=10)

    def _write_generation(self) -> None:
        (self.entry / "generation").write_text(f"{self.generation}\n")

    def _serve(self) -> None:
        while not self._stop.is_set():
            with open(self.entry / "outblob", "wb") as out:  # blocks until the agent reads
                if self._stop.is_set():
                    return
                self.generation += 1  # the agent's write to inblob
                if self.interfere > 0:
                    self.interfere -= 1
                    self.generation += 1  # another writer meanwhile
                self._write_generation()
                self.served += 1
                out.write(self.answer((self.entry / "inblob").read_bytes()))
            with open(self.entry / "auxblob", "wb") as aux:
                if self._stop.is_set():
                    return
                aux.write(self.table)


def fake_sev_guest_ioctl(chain: DevAmdChain, table: bytes, *, firmware_status: int = 0) -> Callable[..., None]:
    """An ``ioctl`` replacement for ``SevGuestDevice`` that behaves like the sev-guest driver."""

    def ioctl(fd: int, request: int, guest: GuestRequestIoctl) -> None:
        if request != SNP_GET_EXT_REPORT or guest.msg_version != 1:
            raise OSError(errno.ENOTTY, "inappropriate ioctl")
        req = _ExtReportReq.from_address(guest.req_data)
        if req.certs_len < len(table):
            req.certs_len = -(-len(table) // 4096) * 4096
            guest.exitinfo2 = SNP_GUEST_VMM_ERR_INVALID_LEN << 32
            raise OSError(errno.EINVAL, "certificate buffer too small")
        ctypes.memmove(req.certs_address, table, len(table))
        report = signed_report(chain, bytes(req.data.user_data))
        response = firmware_status.to_bytes(4, "little") + len(report).to_bytes(4, "little") + bytes(24) + report
        ctypes.memmove(guest.resp_data, response, len(response))

    return ioctl


def _b64url(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def azure_hcl_report(chain: DevAmdChain, ak: rsa.RSAPublicKey, measurement: bytes = bytes(48)) -> bytes:
    """An HCL report binding ``ak`` as ``HCLAkPub``, its SNP report signed by ``chain``."""
    numbers = ak.public_numbers()
    runtime = json.dumps(
        {
            "keys": [{"kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA", "e": _b64url(numbers.e),
                      "n": _b64url(numbers.n)}],
            "vm-configuration": {"console-enabled": False, "secure-boot": True, "tpm-enabled": True},
        },
        separators=(",", ":"),
    ).encode()
    report_data = hashlib.sha256(runtime).digest() + bytes(32)
    report = chain.sign(chain.report_template(report_data=report_data, measurement=measurement,
                                              policy=SIM_POLICY, vmpl=0))
    return HclReport(snp_report=report, runtime_data=runtime, version=2).to_bytes()
