"""A real deployment with the user's own credentials (the SDKs' chains), then its destroy: the one
test that meets a real cloud API. Skipped unless ``CVM_ATTEST_LIVE_CLOUD=azure|gcp|aws``; CI never
sets it. It costs a few cents to a dollar: one VM for a few minutes and its disk image.

Needs ``CVM_ATTEST_LIVE_IMAGE`` (a ``cvm-cli image build`` directory, platform snp or azure, with the
cloud's disk format) and, per cloud:

- azure: ``CVM_ATTEST_AZURE_RESOURCE_GROUP`` (``CVM_ATTEST_AZURE_REGION``, ``…_VM_TYPE`` optional);
- gcp: ``CVM_ATTEST_GCP_PROJECT``, ``CVM_ATTEST_GCP_BUCKET`` (``CVM_ATTEST_GCP_REGION``, ``…_ZONE``);
- aws: ``CVM_ATTEST_AWS_BUCKET`` (``CVM_ATTEST_AWS_REGION``, ``…_VM_TYPE``).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from offchain.cli.root import cli

CLOUD = os.environ.get("CVM_ATTEST_LIVE_CLOUD", "")
pytestmark = pytest.mark.skipif(CLOUD not in ("azure", "gcp", "aws"),
                                reason="live cloud test: set CVM_ATTEST_LIVE_CLOUD=azure|gcp|aws (creates billable VMs)")

#: Per cloud: (environment variable, option, required) and the resource kind of the VM in the plan.
SETTINGS = {
    "azure": ([("CVM_ATTEST_AZURE_RESOURCE_GROUP", "--resource-group", True), ("CVM_ATTEST_AZURE_REGION", "--region",
                                                                               False),
               ("CVM_ATTEST_AZURE_VM_TYPE", "--vm-type", False)], "azure.vm"),
    "gcp": ([("CVM_ATTEST_GCP_PROJECT", "--project-id", True), ("CVM_ATTEST_GCP_BUCKET", "--bucket", True),
             ("CVM_ATTEST_GCP_REGION", "--region", False), ("CVM_ATTEST_GCP_ZONE", "--zone", False)], "gcp.instance"),
    "aws": ([("CVM_ATTEST_AWS_BUCKET", "--bucket", True), ("CVM_ATTEST_AWS_REGION", "--region", False),
             ("CVM_ATTEST_AWS_VM_TYPE", "--vm-type", False)], "aws.instance"),
}


def _args(ledger: Path) -> list[str]:
    image = os.environ.get("CVM_ATTEST_LIVE_IMAGE")
    if not image:
        pytest.fail("CVM_ATTEST_LIVE_CLOUD needs CVM_ATTEST_LIVE_IMAGE")
    args = ["deploy", CLOUD, "--vm-name", f"cvm-live-{uuid.uuid4().hex[:8]}", "--image", image, "--ledger",
            str(ledger), "--json"]
    for variable, option, required in SETTINGS[CLOUD][0]:
        value = os.environ.get(variable)
        if value:
            args += [option, value]
        elif required:
            pytest.fail(f"CVM_ATTEST_LIVE_CLOUD={CLOUD} needs {variable}")
    return args


def test_dry_run_then_deploy_then_destroy(tmp_path: Path) -> None:
    ledger = tmp_path / "live.ledger.json"
    args = _args(ledger)
    runner = CliRunner(mix_stderr=False)
    planned = runner.invoke(cli, [*args, "--dry-run"])
    assert planned.exit_code == 0, planned.stdout + planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["inbound_tcp_ports"] == [8000]
    assert any(r["kind"] == SETTINGS[CLOUD][1] for r in plan["resources"])
    assert not ledger.exists()
    try:
        deployed = runner.invoke(cli, args)
        assert deployed.exit_code == 0, deployed.stdout + deployed.stderr
        result = json.loads(deployed.stdout)
        assert result["ok"] is True and result["agent_url"] == f"http://{result['public_ip']}:8000"
    finally:
        if ledger.exists():
            destroyed = runner.invoke(cli, ["destroy", "--ledger", str(ledger), "--json"])
            assert destroyed.exit_code == 0, destroyed.stdout + destroyed.stderr
            assert json.loads(destroyed.stdout)["deleted"]
