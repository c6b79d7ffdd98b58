"""tpm2-tools against a real software TPM, for tests that cross-check the parsers with an independent TPM.

The swtpm process is agent/swtpm.py's (free consecutive ports, always stopped); this adds a work
directory for the files tpm2-tools writes and a ``run`` that fails the test loudly.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localstack.swtpm import Swtpm as SwtpmProcess
from localstack.swtpm import running_swtpm as running_swtpm_process
from tests.support.swtpm import tpm2_tool

REQUIRED_TOOLS = ("swtpm", "tpm2_pcrextend", "tpm2_pcrread", "tpm2_createprimary", "tpm2_quote")


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


class Swtpm:
    """A started swtpm and a work directory for tpm2-tools' output files."""

    def __init__(self, process: SwtpmProcess, workdir: Path) -> None:
        self.process = process
        self.workdir = workdir

    def run(self, *args: str) -> bytes:
        """Run one tpm2-tools command in the work directory; returns its stdout."""
        return tpm2_tool(self.process, *args, cwd=self.workdir)

    def flush_transient(self) -> None:
        """swtpm has no resource manager: drop transient objects after each use."""
        self.run("tpm2_flushcontext", "-t")


@contextmanager
def running_swtpm() -> Iterator[Swtpm]:
    """A fresh swtpm (new state, TPM2_Startup done) with its own work directory, stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="cvm-attest-tpm2-tools-") as tmp, running_swtpm_process() as process:
        yield Swtpm(process, Path(tmp))
