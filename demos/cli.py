"""``cvm-cli demo [--image] [--keep DIR]``: the whole flow on this machine.

Without ``--image``: anvil, swtpm, the agent on the simulated platform as a local process, the
registry, the relayer and a gated dApp (onchain.demo). With ``--image``: the same chain, with the
agent inside the CVM image built from a sample workload and booted under QEMU, and the golden
measurement published from the build's prediction (demos.image_flow).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from offchain.cli.output import guarded


@click.command("demo")
@click.option("--image", "with_image", is_flag=True,
              help="Build the CVM image, boot it under QEMU, and run the flow against the agent inside it, "
              "with the golden measurement the build predicted.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="Work in this directory and keep it (logs, relayer journal, the image); default: a temporary one.")
@guarded()
def demo(with_image: bool, keep: Path | None) -> None:
    """Run the whole flow locally: anvil, swtpm, the agent (sim), registry, relayer, dApp."""
    def run(workdir: Path) -> None:
        if with_image:
            from demos.image_flow import run_image_demo

            run_image_demo(workdir)
        else:
            from onchain.demo import run_demo

            run_demo(workdir)

    try:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            run(keep)
            return
        with tempfile.TemporaryDirectory(prefix="cvm-attest-demo-") as tmp:
            run(Path(tmp))
    except KeyboardInterrupt:
        click.echo("interrupted: everything the demo started has been stopped", err=True)
        raise SystemExit(130) from None
