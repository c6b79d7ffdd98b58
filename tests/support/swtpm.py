"""A real swtpm for tests: start it on free ports, always stop it (product code: agent/swtpm.py).

``swtpm_or_skip()`` is the one place tests decide that swtpm is missing; fixtures use
``running_swtpm`` so the process is stopped whatever the test does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from localstack.swtpm import Swtpm, running_swtpm, start_swtpm, swtpm_available

__all__ = ["Swtpm", "running_swtpm", "start_swtpm", "swtpm_or_skip", "tpm2_tool"]


def swtpm_or_skip(*tools: str) -> None:
    """Skip the test when swtpm (or one of the tpm2-tools ``tools``) is not installed."""
    missing = [] if swtpm_available() else ["swtpm"]
    missing += [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def tpm2_tool(tpm: Swtpm, *args: str, cwd: Path | None = None) -> bytes:
    """Run one tpm2-tools command against ``tpm``; a failure fails the test with its stderr."""
    env = dict(os.environ, TPM2TOOLS_TCTI=tpm.tcti)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def provision_persistent_ak(tpm: Swtpm, handle: int) -> bytes:
    """Create an RSA-2048 AK with an empty authValue and persist it at ``handle``, as Azure's
    paravisor provisions its vTPM AK at 0x81000003; returns its TPMT_PUBLIC."""
    import tpm2_pytss
    from tpm2_pytss.constants import ESYS_TR, TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE

    esapi = tpm2_pytss.ESAPI(tpm2_pytss.TCTILdr("swtpm", f"host=127.0.0.1,port={tpm.port}"))
    try:
        template = TPM2B_PUBLIC.parse(
            "rsa2048:rsassa-sha256:null",
            objectAttributes=TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.FIXEDTPM
            | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.USERWITHAUTH,
        )
        transient, public, *_ = esapi.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT)
        try:
            esapi.evict_control(ESYS_TR.OWNER, transient, handle)
        finally:
            esapi.flush_context(transient)
        return bytes(public.publicArea.marshal())
    finally:
        esapi.close()


def write_nv(tpm: Swtpm, index: int, data: bytes) -> None:
    """Define NV index ``index`` (owner read/write, readable with its own empty auth) holding ``data``."""
    import tpm2_pytss
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPMA_NV
    from tpm2_pytss.types import TPM2B_MAX_NV_BUFFER, TPM2B_NV_PUBLIC, TPMS_NV_PUBLIC

    esapi = tpm2_pytss.ESAPI(tpm2_pytss.TCTILdr("swtpm", f"host=127.0.0.1,port={tpm.port}"))
    try:
        public = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC(
            nvIndex=index, nameAlg=TPM2_ALG.SHA256, dataSize=len(data),
            attributes=TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA))
        handle = esapi.nv_define_space(None, public, ESYS_TR.OWNER)
        for offset in range(0, len(data), 1024):
            esapi.nv_write(handle, TPM2B_MAX_NV_BUFFER(data[offset : offset + 1024]), offset, ESYS_TR.OWNER)
    finally:
        esapi.close()
