"""``cvm-cli``: one command line, assembled at run time.

Each package registers its own click group under the ``cvm_attest.cli`` entry-point group
(``verify`` from ``offchain``, ``contract``/``golden``/``relay``/``onchain`` from ``onchain``), so
``offchain`` never imports ``onchain`` just to offer its commands.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
import warnings
from importlib.metadata import EntryPoint, distribution, entry_points
from pathlib import Path

import click

from offchain.cli.config import DEFAULT_CONFIG, ENV_PREFIX, config_path, default_map, load_config
from offchain.cli.output import EXIT_CODES_HELP, EXIT_USAGE, fail
from offchain.errors import CvmAttestError, Reason

ENTRY_POINT_GROUP = "cvm_attest.cli"


class DiscoveredGroup(click.Group):
    """A click group whose subcommands are the installed ``cvm_attest.cli`` entry points.

    Listing reads only the entry points' names; a command's module is imported when the command is
    asked for, so ``cvm-cli verify`` works on the base install. A command whose module needs an extra
    that is not installed is replaced by one that says which extra to install (exit 2).

    An entry point named ``GROUP.SUB`` adds the subcommand ``SUB`` to the group ``GROUP`` of another
    package when that group is loaded (``snp.report``: the agent's guest-side ``cvm-cli snp
    report`` joins offchain's ``cvm-cli snp``), so neither package imports the other.
    """

    @staticmethod
    def _entry_points() -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        top = {name for name in self._entry_points() if "." not in name}
        return sorted(set(super().list_commands(ctx)) | top)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The seed's ``cvm-cli <VM-IP> <API-TOKEN>``: a first word that is no command but an IP
        address or a URL is ``cvm-cli upload <VM-IP> <API-TOKEN>`` (no command name is an address)."""
        if args and self.get_command(ctx, args[0]) is None and _looks_like_target(args[0]):
            upload = self.get_command(ctx, "upload")
            if upload is not None:
                return "upload", upload, args
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        found = self._entry_points()
        ep = found.get(cmd_name) if "." not in cmd_name else None
        if ep is None:
            return None
        try:
            loaded: click.Command = ep.load()
        except ModuleNotFoundError as exc:
            return _needs_extra(cmd_name, exc.name or "?", ep.value.split(".")[0])
        if isinstance(loaded, click.Group):
            attach_nested(loaded, cmd_name, found)
        with_exit_codes(loaded)
        return loaded


def attach_nested(group: click.Group, name: str, found: dict[str, EntryPoint]) -> None:
    """Add to ``group`` (the command ``name``) the subcommands entry points name ``name.SUB``; one
    whose module needs a missing extra says which to install, as a top-level command does."""
    for full, ep in sorted(found.items()):
        parent, _, sub = full.partition(".")
        if parent != name or not sub or sub in group.commands:
            continue
        try:
            group.add_command(ep.load(), sub)
        except ModuleNotFoundError as exc:
            group.add_command(_needs_extra(f"{name} {sub}", exc.name or "?", ep.value.split(".")[0]), sub)


def with_exit_codes(command: click.Command) -> None:
    """End the ``--help`` of ``command`` and of every subcommand with the exit-code table
    (offchain/cli/output.py), unless it already has an epilog of its own."""
    if command.epilog is None:
        command.epilog = EXIT_CODES_HELP
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            with_exit_codes(sub)


def _looks_like_target(word: str) -> bool:
    if word.startswith(("http://", "https://")):
        return True
    host = word.rsplit(":", 1)[0] if word.count(":") == 1 else word
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def extra_providing(module: str, package: str | None = None) -> str | None:
    """The optional-dependency group of this distribution that requires the distribution ``module``
    comes from (``web3`` -> ``onchain``), or None. When several do (``eth_account``: ``agent`` and
    ``onchain``), the one named like the command's ``package``, else the first."""
    wanted = module.split(".")[0].replace("-", "_").lower()
    extras: list[str] = []
    for requirement in distribution("cvm-attest").requires or ():
        name, _, marker = requirement.partition(";")
        dist = re.split(r"[<>=!~\[ ]", name.strip(), maxsplit=1)[0].replace("-", "_").lower()
        found = re.search(r"extra\s*==\s*[\"']([^\"']+)[\"']", marker)
        if dist == wanted and found:
            extras.append(found.group(1))
    if package in extras:
        return package
    return extras[0] if extras else None


def _needs_extra(name: str, module: str, package: str) -> click.Command:
    extra = extra_providing(module, package)
    hint = f"pip install 'cvm-attest[{extra}]'" if extra else f"install the Python package {module}"
    message = f"cvm-cli {name} needs {module}, which this installation lacks: {hint}"

    @click.command(name, help=message, short_help=f"unavailable: {hint}",
                   context_settings={"ignore_unknown_options": True,
                                     "allow_extra_args": True, "help_option_names": []})
    def missing() -> None:
        click.echo(f"[{Reason.INPUT_UNREADABLE.value}] {message}", err=True)
        sys.exit(EXIT_USAGE)

    return missing


@click.group(cls=DiscoveredGroup, epilog=EXIT_CODES_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": ENV_PREFIX})
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help=f"TOML file of option defaults per command (default: {DEFAULT_CONFIG}; also ${ENV_PREFIX}_CONFIG).")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", count=True, help="Less log output (errors only).")
@click.version_option(package_name="cvm-attest")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, verbose: int, quiet: int) -> None:
    """cvm-attest: prove a workload runs in a genuine AMD SEV-SNP confidential VM.

    Every option can also come from the environment (CVM_ATTEST_<COMMAND>_<OPTION>, e.g.
    CVM_ATTEST_VERIFY_SNP_KDS_URL) or the config file (docs/offchain.md, "Configuration").
    """
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(log_level(verbose, quiet))
    path = config_path(config)
    if path is not None:
        try:
            ctx.default_map = default_map(cli, ctx, load_config(path), path)
        except CvmAttestError as exc:
            fail(exc, as_json=False)


def log_level(verbose: int, quiet: int) -> int:
    """WARNING by default; each -v one step more (INFO, DEBUG), -q only errors."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


def main() -> None:
    # Every real VCEK/VLEK has serial number 0; cryptography warns on each load. The dependency bound
    # in pyproject.toml and tests/unit/offchain/test_real_vcek_serial.py watch for the release that
    # refuses them; users need not see the warning on every command.
    warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
    cli()
