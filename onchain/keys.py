"""Where owners' and relayers' signing keys come from.

A key is never given on the command line (``ps`` would show it). ``--key`` names its *source*:

* ``--key PATH``: an eth-account (Web3 Secret Storage) keystore file; the password comes from
  ``--password-file`` or, on a terminal, a prompt.
* ``--key env:NAME``: the hex private key in the environment variable ``NAME`` (for CI and the demo).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from eth_account import Account
from eth_account.signers.local import LocalAccount

from offchain.errors import Reason, RequestError

ENV_PREFIX = "env:"


def load_account(source: str, password_file: Path | None = None, *, prompt: bool = True) -> LocalAccount:
    """The account behind ``source`` (a keystore path or ``env:NAME``)."""
    if source.startswith(ENV_PREFIX):
        name = source[len(ENV_PREFIX):]
        value = os.environ.get(name)
        if not value:
            raise RequestError(Reason.KEY_UNAVAILABLE, f"environment variable {name} is not set", source=source)
        try:
            account: LocalAccount = Account.from_key(value.strip())
            return account
        except (ValueError, TypeError):
            raise RequestError(Reason.KEY_UNAVAILABLE, f"{name} does not hold a 32-byte hex private key") from None
    path = Path(source)
    try:
        keystore = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RequestError(Reason.KEY_UNAVAILABLE, f"cannot read keystore {path}: {exc}") from None
    if password_file is not None:
        try:
            password = password_file.read_text().rstrip("\n")
        except OSError as exc:
            raise RequestError(Reason.KEY_UNAVAILABLE, f"cannot read password file: {exc}") from None
    elif prompt:
        password = click.prompt(f"Password for {path}", hide_input=True)
    else:
        raise RequestError(Reason.KEY_UNAVAILABLE, "a keystore needs --password-file when not on a terminal")
    try:
        decrypted: LocalAccount = Account.from_key(Account.decrypt(keystore, password))
        return decrypted
    except (ValueError, TypeError, KeyError):
        raise RequestError(Reason.KEY_UNAVAILABLE, f"cannot decrypt keystore {path} (wrong password?)") from None


def key_options(func: Callable[..., Any] | None = None, *, required: bool = True) -> Callable[..., Any]:
    """The ``--key`` and ``--password-file`` options of every signing command.

    Use as ``@key_options`` or ``@key_options(required=False)`` (when the command checks itself).
    """

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option(
            "--password-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="File holding the keystore password (otherwise prompted).",
        )(f)
        return click.option(
            "--key",
            "key_source",
            required=required,
            help="Signing key: a keystore file, or env:NAME for a hex key in an environment variable.",
        )(f)

    return decorate(func) if func is not None else decorate
