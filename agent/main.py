"""``cvm-agent``: the command line that starts the in-CVM sidecar.

::

    cvm-agent --platform {snp,azure,sim} --tpm TCTI --state-dir DIR [--workload-dir DIR]
              [--internal unix:PATH|HOST:PORT] [--internal-group GROUP] [--external HOST:PORT|off]
              [--token-file FILE] [--consent-golden 0xID ...] [--consent-file FILE]
              [--tls-cert F --tls-key F] [--ak rsa|ecc] [--sim-measurement HEX] ...

Defaults suit a real CVM (``snp``, ``device:/dev/tpmrm0``, ``/var/lib/cvm-agent``, the internal
listener on ``/run/cvm-agent/internal.sock``). Startup problems (no TPM, no configfs-tsm, a port
taken, an unsafe socket path, a log that does not replay to PCR23) print ``[reason] message`` on
stderr and exit with status 2; nothing is served half-started.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import shlex
import signal
import socket
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import uvicorn

from offchain.abi.snp_report import Product
from offchain.errors import CvmAttestError, ParseError, PlatformError, Reason

from agent.app import BearerToken, create_apps, read_token
from agent.config import (
    DEFAULT_BOOT_EVENT_LOG,
    DEFAULT_EXTERNAL,
    DEFAULT_IMAGE_LOADER,
    DEFAULT_INTERNAL,
    DEFAULT_PCRS,
    DEFAULT_RUNNER,
    DEFAULT_SEV_GUEST,
    DEFAULT_STATE_DIR,
    DEFAULT_TCTI,
    DEFAULT_TSM_ROOT,
    AgentConfig,
    AkKind,
    Listen,
    PlatformName,
    Tcti,
    UnixListen,
    parse_golden_id,
    parse_group,
    parse_internal,
    parse_measurement,
    parse_pcrs,
    read_consent_file,
)
from agent.listeners import UnixSocketListener, bind_tcp
from agent.service import Agent
from workload.archive import ArchiveLimits

EXIT_STARTUP = 2
log = logging.getLogger("cvm_agent")


def _internal(text: str, remote: bool) -> Listen | UnixListen:
    """``--internal``; a TCP address that is not loopback only with ``--internal-remote``."""
    listen: Listen | UnixListen = _option(parse_internal, text, "--internal")
    if isinstance(listen, Listen) and not remote and not _is_loopback(listen.host):
        raise ParseError(Reason.INPUT_INVALID, f"--internal {text} would serve /sign-message and /sign-transaction to "
                         "the network: use the Unix socket (the default), a loopback address, or --internal-remote")
    return listen


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    return ipaddress.ip_address(host).is_loopback


def bind_internal(config: AgentConfig) -> tuple[socket.socket, Callable[[], None]]:
    """The internal listener's socket and what closes it (and removes a Unix socket)."""
    if isinstance(config.internal, UnixListen):
        listener = UnixSocketListener.bind(config.internal, config.internal_group)
        return listener.socket, listener.close
    log.warning("the internal listener is TCP %s: every process that reaches it can have the CVM key sign",
                config.internal)
    sock = bind_tcp(config.internal)
    return sock, sock.close


async def serve(agent: Agent, sockets: list[socket.socket], update_token: BearerToken | None) -> None:
    """Run the internal listener (``sockets[0]``) and the external one (``sockets[1]``, when
    configured) until SIGINT/SIGTERM."""
    config = agent.config
    internal_app, external_app = create_apps(agent, update_token=update_token)
    tls: dict[str, Any] = {}
    if config.tls_cert is not None:
        tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
    plan: list[tuple[Any, socket.socket, dict[str, Any]]] = [(internal_app, sockets[0], {})]
    plan += [(external_app, sock, tls) for sock in sockets[1:]]
    servers = []
    for app, sock, extra in plan:
        # Each Server.serve captures SIGINT/SIGTERM, shuts down and re-raises the signal to the handler
        # it replaced: the servers stop one after the other, and last the loop's handler below runs.
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", **extra))
        servers.append((server, sock))
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    for _, sock in servers:
        where = str(config.internal) if sock.family == socket.AF_UNIX else "%s:%d" % sock.getsockname()[:2]
        log.info("listening on %s", where)
    await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))


def _option(parse: Callable[[Any], Any], value: Any, name: str) -> Any:
    """``parse(value)``, its typed error a usage error naming the option."""
    try:
        return parse(value)
    except CvmAttestError as exc:
        raise click.BadParameter(exc.detail, param_hint=name) from None


#: Every option also from the environment: CVM_ATTEST_AGENT_<OPTION> (``--state-dir`` is
#: CVM_ATTEST_AGENT_STATE_DIR), as cvm-cli's options are CVM_ATTEST_<COMMAND>_<OPTION>.
@click.command(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "CVM_ATTEST_AGENT"})
@click.option(
    "--platform", "platform_name", type=click.Choice([p.value for p in PlatformName]), default="snp", show_default=True,
    help="Where the SEV-SNP report comes from: snp (configfs-tsm or /dev/sev-guest), azure (HCL report in "
    "vTPM NV), sim (software firmware with a development AMD chain).",
)
@click.option("--tpm", "tcti", default=DEFAULT_TCTI, show_default=True, metavar="TCTI",
              help="device:/dev/tpmrm0, or swtpm:host=127.0.0.1,port=N.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True, help="Event log, the sim platform's dev chain (sim/ark.pem), upload spool.")
@click.option("--workload-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The workload (docker-compose.yml, config/, secrets/). Default: STATE_DIR/workload.")
@click.option("--workload-from", type=click.Path(file_okay=False, path_type=Path),
              help="Copy this directory into --workload-dir at start when that does not exist yet (the image: its "
              "read-only workload partition into memory, where updates and secrets can go and the bytes measured "
              "are the bytes that run).")
@click.option("--internal", default=DEFAULT_INTERNAL, show_default=True, metavar="unix:PATH|HOST:PORT",
              help="Listener for the workload (signing, offchain-verify): a Unix socket in a directory of its own "
              "(0750, socket 0660), or HOST:PORT to opt in to TCP, which every process reaching it may use.")
@click.option("--internal-remote", is_flag=True,
              help="Allow --internal HOST:PORT on an address other than loopback: the CVM key then signs for "
              "anyone on that network (refused without this flag).")
@click.option("--internal-group", metavar="GROUP",
              help="Group (name or gid) of the socket and its directory: what the workload's containers run with.")
@click.option("--external", default=DEFAULT_EXTERNAL, show_default=True, metavar="HOST:PORT|off",
              help="Listener for verifiers and operators (update-workload).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Bearer token for POST /update-workload and /golden-consents; without it both are disabled.")
@click.option("--consent-golden", "consent_goldens", multiple=True, metavar="0xID",
              help="A golden id this CVM consents to be attested against (repeatable); GET /onchain/collaterals "
              "refuses any other.")
@click.option("--consent-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Golden ids to consent to, one per line (# comments); outside the workload directory.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="TLS certificate (external).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="TLS private key (external).")
@click.option("--ak", "ak_kind", type=click.Choice([k.value for k in AkKind]), default="rsa", show_default=True,
              help="AK algorithm: RSA-2048 RSASSA-SHA256 or ECC P-256 ECDSA-SHA256 (not on azure).")
@click.option("--pcrs", default=",".join(map(str, DEFAULT_PCRS)), show_default=True, metavar="LIST",
              help="SHA-256 PCRs every quote covers, e.g. 0-9,11,12; PCR23 is always added.")
@click.option("--sim-measurement", metavar="HEX", help="sim: the 48-byte launch MEASUREMENT (96 hex digits).")
@click.option("--sim-svsm", is_flag=True,
              help="sim platform: play an SVSM with a vTPM at VMPL0 (the svsm platform's code path on a simulated "
              "configfs-tsm entry; VMPL0 reports over swtpm's endorsement key).")
@click.option("--sim-debug", is_flag=True,
              help="sim: report a guest policy that allows debugging (a CVM no golden measurement may accept).")
@click.option("--product", type=click.Choice([p.value for p in Product]),
              help="The product line: sim: of the development chain (default genoa); snp/azure: used only when "
              "a version 2 report and the certificates do not name it.")
@click.option("--reset-pcr23/--no-reset-pcr23", default=None,
              help="Reset PCR23 and the event log at start and measure the workload (default: on for sim only; a "
              "real CVM's boot step measures and the agent only appends).")
@click.option("--runner", default=shlex.join(DEFAULT_RUNNER), show_default=True,
              help="Command that (re)starts the workload, run in the workload directory.")
@click.option("--image-loader", default=shlex.join(DEFAULT_IMAGE_LOADER), show_default=True,
              help="Command run with each images/*.tar path before the runner.")
@click.option("--start-workload/--no-start-workload", default=True, show_default=True,
              help="Run the runner at start when the agent measured the workload itself.")
@click.option("--max-upload-bytes", type=click.IntRange(min=1), default=ArchiveLimits().max_upload_bytes,
              show_default=True)
@click.option("--max-total-bytes", type=click.IntRange(min=1), default=ArchiveLimits().max_total_bytes,
              show_default=True, help="Upper bound of the extracted archive.")
@click.option("--max-file-bytes", type=click.IntRange(min=1), default=ArchiveLimits().max_file_bytes,
              show_default=True)
@click.option("--max-entries", type=click.IntRange(min=1), default=ArchiveLimits().max_entries, show_default=True)
@click.option("--golden-lifetime", type=click.IntRange(min=1), default=86400, show_default=True,
              help="lifetime_seconds of GET /golden-measurement.")
@click.option("--tsm-root", type=click.Path(path_type=Path), default=DEFAULT_TSM_ROOT, show_default=True)
@click.option("--sev-guest", type=click.Path(path_type=Path), default=DEFAULT_SEV_GUEST, show_default=True)
@click.option("--snp-privlevel", type=click.IntRange(0, 3), help="snp: VMPL to request the report for.")
@click.option("--boot-event-log", default=str(DEFAULT_BOOT_EVENT_LOG), show_default=True, metavar="PATH|off",
              help="The firmware's TCG event log that GET /boot-event-log serves.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def main(**options: Any) -> None:
    """The cvm-attest agent: measures the workload into PCR23, binds its vTPM key to the SEV-SNP report,
    and serves evidence over HTTP (see docs/agent.md)."""
    logging.basicConfig(level=options["log_level"].upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # tpm2-tss logs to stderr on its own (ERROR:tcti:… before our one [reason] line); the agent reports
    # every TPM failure itself. TSS2_LOG set by the operator still wins.
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    # Real VCEKs (and the sim chain, built like them) have serial number 0: cryptography warns on every
    # load; pyproject.toml bounds its version and a test watches for the release that refuses them.
    warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
    try:
        config = _config(options)
    except CvmAttestError as exc:
        raise click.UsageError(exc.detail) from None
    sockets: list[socket.socket] = []
    closers: list[Callable[[], None]] = []
    try:
        token = read_token(config.token_file) if config.token_file is not None else None
        internal, close_internal = bind_internal(config)
        sockets.append(internal)
        closers.append(close_internal)
        if config.external is not None:
            sockets.append(bind_tcp(config.external))
            closers.append(sockets[-1].close)
        agent = Agent.start(config)
    except CvmAttestError as exc:
        for close in closers:
            close()
        click.echo(f"[{exc.reason.value}] {exc.detail}", err=True)
        sys.exit(EXIT_STARTUP)
    try:
        asyncio.run(serve(agent, sockets, token))
    finally:
        agent.close()
        for close in closers:
            close()


def _config(options: dict[str, Any]) -> AgentConfig:
    platform = PlatformName(options["platform_name"])
    state_dir: Path = options["state_dir"]
    external = None if options["external"] == "off" else _option(Listen.parse, options["external"], "--external")
    workload_dir: Path = options["workload_dir"] or state_dir / "workload"
    extra: dict[str, Any] = {}
    if options["sim_measurement"] is not None:
        extra["sim_measurement"] = parse_measurement(options["sim_measurement"])
    if options["internal_group"] is not None:
        extra["internal_group"] = _option(parse_group, options["internal_group"], "--internal-group")
    consents = [_option(parse_golden_id, text, "--consent-golden") for text in options["consent_goldens"]]
    if options["consent_file"] is not None:
        consent_file: Path = options["consent_file"]
        if consent_file.resolve().is_relative_to(workload_dir.resolve()):
            # config/ is measured into PCR23, which the golden id covers; an update replaces the rest.
            raise click.BadParameter("must be outside the workload directory", param_hint="--consent-file")
        consents += _option(read_consent_file, consent_file, "--consent-file")
    reset = options["reset_pcr23"]
    return AgentConfig(
        platform=platform,
        tcti=Tcti.parse(options["tcti"]),
        state_dir=state_dir,
        workload_dir=workload_dir,
        workload_from=options["workload_from"],
        internal=_internal(options["internal"], bool(options["internal_remote"])),
        external=external,
        token_file=options["token_file"],
        tls_cert=options["tls_cert"],
        tls_key=options["tls_key"],
        ak=AkKind(options["ak_kind"]),
        pcrs=parse_pcrs(options["pcrs"]),
        product=Product(options["product"]) if options["product"] else None,
        reset_pcr23=platform is PlatformName.SIM if reset is None else reset,
        start_workload=options["start_workload"],
        runner=tuple(shlex.split(options["runner"])),
        image_loader=tuple(shlex.split(options["image_loader"])),
        limits=ArchiveLimits(
            max_upload_bytes=options["max_upload_bytes"],
            max_total_bytes=options["max_total_bytes"],
            max_file_bytes=options["max_file_bytes"],
            max_entries=options["max_entries"],
        ),
        golden_lifetime=options["golden_lifetime"],
        tsm_root=options["tsm_root"],
        sev_guest=options["sev_guest"],
        snp_privlevel=options["snp_privlevel"],
        sim_debug=options["sim_debug"],
        sim_svsm=options["sim_svsm"],
        boot_event_log=None if options["boot_event_log"] == "off" else Path(options["boot_event_log"]),
        consented_goldens=tuple(dict.fromkeys(consents)),
        **extra,
    )
