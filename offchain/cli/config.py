"""Where ``cvm-cli`` options come from besides the command line: the environment and a config file.

Precedence, highest first: the command line, an environment variable, the config file, the
option's default.

* **Environment**: every option of every command, as click's ``auto_envvar_prefix`` names it:
  ``CVM_ATTEST_`` + the command path + the option's parameter name, upper case, ``-`` as ``_``
  (``cvm-cli verify snp --kds-url`` is ``CVM_ATTEST_VERIFY_SNP_KDS_URL``, ``cvm-cli golden publish
  --key`` is ``CVM_ATTEST_GOLDEN_PUBLISH_KEY_SOURCE``). A flag takes ``1``/``true``/``0``/``false``,
  an option given several times a space-separated list.
* **Config file**: TOML, from ``--config FILE``, else ``$CVM_ATTEST_CONFIG``, else
  ``~/.config/cvm-attest/config.toml`` when it exists. One table per command path; a group's table
  applies to every command under it that has the option, a deeper table wins::

      [golden]                       # every golden subcommand
      rpc = "http://127.0.0.1:8545"
      registry = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

      [verify.snp]
      kds = true
      cache-dir = "/var/cache/cvm-attest/kds"

  Keys are an option's long name without ``--`` (``cache-dir``) or its parameter name
  (``cache_dir``). A key no command under its table has, or a table that names no command, is
  ``input.invalid``: a typo never silently does nothing.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from offchain.errors import ParseError, Reason
from offchain.inputs import read_input

ENV_PREFIX = "CVM_ATTEST"
DEFAULT_CONFIG = Path("~/.config/cvm-attest/config.toml")
MAX_CONFIG_BYTES = 1 << 20


def config_path(given: Path | None) -> Path | None:
    """The config file to read: ``--config``/``$CVM_ATTEST_CONFIG`` (which must exist), else the
    default location when a file is there, else none."""
    if given is not None:
        return given
    default = DEFAULT_CONFIG.expanduser()
    return default if default.is_file() else None


def load_config(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(read_input(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ParseError(Reason.INPUT_INVALID, f"config file {path}: {exc}") from None


def _commands(command: click.Command, ctx: click.Context, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...],
                                                                                                  click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from _commands(sub, ctx, (*path, name))


def _param_name(command: click.Command, key: str) -> str | None:
    for param in command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        longs = [opt.lstrip("-") for opt in param.opts + param.secondary_opts if opt.startswith("--")]
        if key == param.name or key in longs:
            return param.name
    return None


def default_map(root: click.Group, ctx: click.Context, config: dict[str, Any], source: Path) -> dict[str, Any]:
    """The click ``default_map`` of ``config``: for each table, every command under it that has the
    key gets it as its default (deeper tables win)."""
    out: dict[str, Any] = {}
    applied: list[tuple[int, tuple[str, ...], str, str, Any]] = []

    def tables(node: dict[str, Any], path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        values = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if path:
            yield path, values
        elif values:
            raise ParseError(Reason.INPUT_INVALID, f"config file {source}: {sorted(values)} outside any [command] table")
        for key, value in node.items():
            if isinstance(value, dict):
                yield from tables(value, (*path, key))

    for path, values in tables(config, ()):
        command: click.Command | None = root
        for part in path:
            command = command.get_command(ctx, part) if isinstance(command, click.Group) else None
            if command is None:
                raise ParseError(Reason.INPUT_INVALID, f"config file {source}: [{'.'.join(path)}] is not a command")
        assert command is not None
        for key, value in values.items():
            hits = [(sub_path, name) for sub_path, sub in _commands(command, ctx, path)
                    if (name := _param_name(sub, key)) is not None]
            if not hits:
                raise ParseError(Reason.INPUT_INVALID, f"config file {source}: no command under"
                                 f" [{'.'.join(path)}] has an option {key!r}")
            applied += [(len(path), sub_path, name, key, value) for sub_path, name in hits]
    for _depth, sub_path, name, _key, value in sorted(applied, key=lambda item: item[0]):
        node = out
        for part in sub_path:
            node = node.setdefault(part, {})
        node[name] = value
    return out

