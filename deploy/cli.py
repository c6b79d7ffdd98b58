"""``cvm-cli deploy azure|gcp|aws`` and ``cvm-cli destroy --ledger FILE``.

The seed's spellings work as written: ``cvm-cli deploy-azure --vm_name x --resource_group y`` is
``cvm-cli deploy azure --vm-name x --resource-group y``. Each cloud's SDK is imported only when its
command runs (``deploy.azure``, ``deploy.gcp``, ``deploy.aws``), so ``--help`` stays quick.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from offchain.cli.output import EXIT_USAGE, USAGE_REASONS, exit_code_for
from offchain.errors import CvmAttestError, Reason

from deploy.core import Deployment, DeployRequest, Ledger, Reporter, deploy, destroy, parse_ports

#: Reasons that mean the user's input or setup must change before anything can run (exit 2).
_USAGE = USAGE_REASONS | {Reason.DEPLOY_CREDENTIALS, Reason.DEPLOY_SIZE_NOT_SEV_SNP, Reason.DEPLOY_IMAGE_MISSING,
                          Reason.DEPLOY_LEDGER_MALFORMED, Reason.DEPLOY_LEDGER_MISMATCH}


@dataclass(frozen=True, slots=True)
class CloudSpec:
    """A cloud's command: its defaults, its own options, and where its deployment class lives."""

    name: str
    title: str
    deployment: str
    default_region: str
    default_vm_type: str
    options: tuple[tuple[tuple[str, ...], str, dict[str, Any]], ...]
    summary: str

    def load(self) -> Callable[[DeployRequest], Deployment]:
        module, _, attribute = self.deployment.partition(":")
        factory: Callable[[DeployRequest], Deployment] = getattr(importlib.import_module(module), attribute)
        return factory


CLOUDS: dict[str, CloudSpec] = {
    "azure": CloudSpec(
        name="azure", title="Azure", deployment="deploy.azure:AzureDeployment",
        default_region="westeurope", default_vm_type="Standard_DC2as_v5",
        options=(
            (("--resource-group", "--resource_group"), "resource_group",
             {"required": True, "help": "Resource group to create the resources in (created when absent)."}),
            (("--subscription-id", "--subscription_id"), "subscription_id",
             {"default": None, "envvar": "AZURE_SUBSCRIPTION_ID",
              "help": "Subscription (default: $AZURE_SUBSCRIPTION_ID, else the credential's only subscription)."}),
        ),
        summary="A DCasv5 confidential VM (SEV-SNP, VMGuestStateOnly, vTPM) from disk.vhd.",
    ),
    "gcp": CloudSpec(
        name="gcp", title="Google Cloud", deployment="deploy.gcp:GcpDeployment",
        default_region="us-central1", default_vm_type="n2d-standard-4",
        options=(
            (("--project-id", "--project_id"), "project_id", {"required": True, "help": "Google Cloud project."}),
            (("--bucket",), "bucket", {"required": True, "help": "Cloud Storage bucket for disk.tar.gz (exists)."}),
            (("--zone",), "zone", {"default": None, "help": "Zone (default: REGION-a)."}),
        ),
        summary="An N2D confidential VM (SEV_SNP, AMD Milan, TERMINATE on maintenance) from disk.tar.gz.",
    ),
    "aws": CloudSpec(
        name="aws", title="AWS", deployment="deploy.aws:AwsDeployment",
        default_region="us-east-2", default_vm_type="m6a.large",
        options=(
            (("--bucket",), "bucket", {"required": True, "help": "S3 bucket in the same region, for disk.vmdk."}),
        ),
        summary="An M6a/C6a/R6a instance with AmdSevSnp enabled, UEFI and TPM 2.0, from disk.vmdk.",
    ),
}


def fail(error: CvmAttestError, as_json: bool) -> NoReturn:
    """Print ``error`` (``[reason] detail`` and its hint, or one JSON object) and exit 2 for input or
    setup the user must change, 3 for a transient failure, 1 otherwise (offchain.cli.output)."""
    hint = error.context.get("hint")
    if as_json:
        click.echo(json.dumps({"ok": False, "reason": error.reason.value, "detail": error.detail, "hint": hint,
                               "context": {k: v for k, v in error.context.items() if k != "hint"}}))
    else:
        click.echo(f"[{error.reason.value}] {error.detail}", err=True)
        if hint:
            click.echo(f"  hint: {hint}", err=True)
    sys.exit(EXIT_USAGE if error.reason in _USAGE else exit_code_for(error))


def _default_ledger(cloud: str, vm_name: str) -> Path:
    return Path(f"{vm_name}.{cloud}.ledger.json")


def _cloud_command(spec: CloudSpec, name: str) -> click.Command:
    def run(vm_name: str, region: str | None, vm_type: str | None, additional_ports: str, image: Path,
            ledger: Path | None, dry_run: bool, as_json: bool, wait: float, **cloud_options: str | None) -> None:
        reporter = Reporter(quiet=as_json)
        try:
            request = DeployRequest(
                cloud=spec.name, vm_name=vm_name, region=region or spec.default_region,
                vm_type=vm_type or spec.default_vm_type, image_dir=image.resolve(),
                additional_ports=parse_ports(additional_ports),
                options={k: v for k, v in cloud_options.items() if v is not None},
            )
            deployment = spec.load()(request)
            if dry_run:
                plan = deployment.plan()
                click.echo(json.dumps(plan.to_json(), indent=2) if as_json else plan.render())
                return
            ledger_path = ledger or _default_ledger(spec.name, vm_name)
            result = deploy(deployment, Ledger.create_or_resume(ledger_path, request), reporter, wait_seconds=wait)
        except CvmAttestError as exc:
            fail(exc, as_json)
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2))
        else:
            click.echo(f"public IP  {result.public_ip}\nagent      {result.agent_url}\n"
                       f"teardown   {result.teardown}")

    params: list[click.Parameter] = [
        click.Option(["--vm-name", "--vm_name", "vm_name"], default="cvm-attest", show_default=True,
                     help="Name of the VM (and the prefix of every resource created)."),
        click.Option(["--region"], default=None, help=f"Region (default {spec.default_region})."),
        click.Option(["--vm-type", "--vm_type", "vm_type"], default=None,
                     help=f"VM size, SEV-SNP capable (default {spec.default_vm_type})."),
        click.Option(["--additional-ports", "--additional_ports", "additional_ports"], default="",
                     help='Inbound TCP ports to open besides the agent\'s 8000, e.g. "80,443".'),
        click.Option(["--image"], type=click.Path(file_okay=False, path_type=Path), default=Path("cvm-image"),
                     show_default=True, help="The output directory of cvm-cli image build."),
        click.Option(["--ledger"], type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Where the deployment records what it created (default VM_NAME.CLOUD.ledger.json); "
                     "run again with it to resume."),
        click.Option(["--dry-run", "--dry_run", "dry_run"], is_flag=True,
                     help="Print the plan: resources, security settings, bytes to upload, cost. Creates nothing."),
        click.Option(["--json", "as_json"], is_flag=True, help="One JSON object on stdout."),
        click.Option(["--wait"], type=click.FloatRange(min=0), default=600.0, show_default=True,
                     help="Seconds to wait for the agent to answer after the VM started."),
    ]
    for decls, dest, attrs in spec.options:
        params.append(click.Option([*decls, dest], **attrs))
    return click.Command(
        name, callback=run, params=params, short_help=spec.summary,
        help=f"Deploy a cvm-cli image build to {spec.title}. {spec.summary} SEV-SNP only: sizes of other "
        "confidential technologies (Intel TDX) and non-confidential sizes are refused. Credentials come from the "
        "SDK's own chain, never from the command line. Exit 0 deployed, 1 a cloud step failed, 2 unusable input or "
        "setup, 3 a transient failure.",
    )


@click.group("deploy")
def deploy_group() -> None:
    """Deploy the image to a cloud's AMD SEV-SNP confidential VMs (docs/deploy.md)."""


for _spec in CLOUDS.values():
    deploy_group.add_command(_cloud_command(_spec, _spec.name))

#: The seed's spellings, as their own top-level commands.
deploy_azure = _cloud_command(CLOUDS["azure"], "deploy-azure")
deploy_gcp = _cloud_command(CLOUDS["gcp"], "deploy-gcp")
deploy_aws = _cloud_command(CLOUDS["aws"], "deploy-aws")


@click.command("destroy")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The ledger a deploy wrote.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def destroy_command(ledger_path: Path, as_json: bool) -> None:
    """Delete exactly what a deployment created (also its temporary blobs and bucket objects), newest
    first. What could not be deleted stays in the ledger; run it again."""
    reporter = Reporter(quiet=as_json)
    try:
        ledger = Ledger.load(ledger_path)
        spec = CLOUDS.get(ledger.request.cloud)
        if spec is None:
            raise CvmAttestError(Reason.DEPLOY_LEDGER_MALFORMED, f"{ledger_path} names an unknown cloud "
                                 f"{ledger.request.cloud!r}")
        deleted = destroy(spec.load()(ledger.request), ledger, reporter)
    except CvmAttestError as exc:
        fail(exc, as_json)
    if as_json:
        click.echo(json.dumps({"ok": True, "deleted": [e.to_json() for e in deleted], "ledger": str(ledger_path)}))
    else:
        click.echo(f"deleted {len(deleted)} resource(s); {ledger_path} lists nothing more")
