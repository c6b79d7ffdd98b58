"""deploy.aws against botocore's own request pipeline: every request is validated against the EC2,
S3, IAM, STS, Service Quotas and Price List service models and serialized as it would go on the
wire (recorded by :class:`Wire`), then answered by botocore's Stubber (recorded responses) or by
moto where moto implements the call. moto has no VM Import and keeps no CpuOptions; those two are
answered by :func:`add_vm_import`, as EC2 answers them."""

from __future__ import annotations

import io
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.httpsession
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from click.testing import CliRunner
from moto import mock_aws

from deploy.aws import STANDARD_VCPU_QUOTA, AwsDeployment
from deploy.core import DeployRequest, Ledger, Reporter, destroy, run_steps
from offchain.cli.root import cli
from offchain.errors import DeployError, Reason

REGION = "us-east-2"
BUCKET = "cvm-images"
ACCOUNT = "123456789012"
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "vmie.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}
M6A_LARGE = {"InstanceType": "m6a.large",
             "ProcessorInfo": {"SupportedArchitectures": ["x86_64"], "SupportedFeatures": ["amd-sev-snp"]},
             "VCpuInfo": {"DefaultVCpus": 2, "DefaultCores": 1, "DefaultThreadsPerCore": 2}}
#: A Price List product as get_products returns it (one JSON string per product).
PRICE_PRODUCT = {
    "product": {"productFamily": "Compute Instance", "sku": "8VCNEHQMSCQS4P39",
                "attributes": {"instanceType": "m6a.large", "regionCode": REGION, "operatingSystem": "Linux",
                               "tenancy": "Shared", "vcpu": "2", "memory": "8 GiB"}},
    "serviceCode": "AmazonEC2",
    "terms": {"OnDemand": {"8VCNEHQMSCQS4P39.JRTCKXETXF": {
        "offerTermCode": "JRTCKXETXF", "sku": "8VCNEHQMSCQS4P39",
        "priceDimensions": {"8VCNEHQMSCQS4P39.JRTCKXETXF.6YS6EN2CT7": {
            "unit": "Hrs", "pricePerUnit": {"USD": "0.0864000000"},
            "description": "$0.0864 per On Demand Linux m6a.large Instance Hour"}}}}},
}


@pytest.fixture(autouse=True)
def no_aws_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's ~/.aws, environment credentials or an instance role."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def fake_session(region: str = REGION) -> boto3.session.Session:
    return boto3.session.Session(region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")


class Wire:
    """Every request the deployment's clients send, as botocore serialized it (after validating it
    against the service model): ``(operation, request_dict)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def attach(self, client: Any) -> None:
        client.meta.events.register_first("before-call.*.*", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, params))

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def bodies(self, operation: str) -> list[Any]:
        return [params["body"] for name, params in self.calls if name == operation]


class Cloud:
    """The deployment's clients behind Stubber: each answers only what was queued for it, in order."""

    def __init__(self, deployment: AwsDeployment) -> None:
        self.deployment = deployment
        self.wire = Wire()
        self._stubbers: dict[str, Stubber] = {}

    def stub(self, service: str) -> Stubber:
        if service not in self._stubbers:
            client = self.deployment.client(service)
            self.wire.attach(client)
            stubber = Stubber(client)
            stubber.activate()
            self._stubbers[service] = stubber
        return self._stubbers[service]

    def ok(self, service: str, method: str, response: dict[str, Any] | None = None,
           params: dict[str, Any] | None = None) -> None:
        self.stub(service).add_response(method, response or {}, params)

    def fail(self, service: str, method: str, code: str, message: str = "refused", status: int = 400) -> None:
        self.stub(service).add_client_error(method, service_error_code=code, service_message=message,
                                            http_status_code=status)

    def done(self) -> None:
        for stubber in self._stubbers.values():
            stubber.assert_no_pending_responses()


class Setup:
    """A deployment of ``image_dir`` with its ledger, captured progress and recorded sleeps."""

    def __init__(self, image_dir: Path, tmp_path: Path, *, vm_type: str = "m6a.large", region: str = REGION,
                 session: Any = None, ports: tuple[int, ...] = (443,)) -> None:
        self.request = DeployRequest(cloud="aws", vm_name="cvm-test", region=region, vm_type=vm_type,
                                     image_dir=image_dir, additional_ports=ports, options={"bucket": BUCKET})
        self.sleeps: list[float] = []
        self.session = session if session is not None else fake_session(region)
        self.deployment = AwsDeployment(self.request, session=self.session, sleep=self.sleeps.append)
        self.cloud = Cloud(self.deployment)
        self.ledger = Ledger.create_or_resume(tmp_path / "cvm-test.aws.ledger.json", self.request)
        self.progress = io.StringIO()
        self.reporter = Reporter(self.progress)

    def run(self, *names: str) -> dict[str, dict[str, Any]]:
        steps = [s for s in self.deployment.steps() if not names or s.name in names]
        return run_steps(steps, self.ledger, self.reporter)

    def kinds(self) -> list[str]:
        return [r.kind for r in self.ledger.resources]


# --- recorded answers of each step ---------------------------------------------------------------


def answer_preflight(cloud: Cloud, *, running: list[dict[str, Any]] | None = None, quota: float = 32.0) -> None:
    cloud.ok("sts", "get_caller_identity", {"UserId": "AIDAEXAMPLE", "Account": ACCOUNT,
                                            "Arn": f"arn:aws:iam::{ACCOUNT}:user/deployer"})
    cloud.ok("ec2", "describe_instance_types", {"InstanceTypes": [M6A_LARGE]}, {"InstanceTypes": ["m6a.large"]})
    cloud.ok("ec2", "describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": "m6a.large", "LocationType": "availability-zone", "Location": f"{REGION}b"},
        {"InstanceType": "m6a.large", "LocationType": "availability-zone", "Location": f"{REGION}a"}]})
    cloud.ok("s3", "get_bucket_location", {"LocationConstraint": REGION}, {"Bucket": BUCKET})
    cloud.ok("iam", "get_role", {"Role": {"Path": "/", "RoleName": "vmimport", "RoleId": "AROAEXAMPLEEXAMPLE1",
                                          "Arn": f"arn:aws:iam::{ACCOUNT}:role/vmimport",
                                          "CreateDate": "2024-01-01T00:00:00Z",
                                          # On the wire, IAM sends the policy URL-encoded; botocore decodes it.
                                          "AssumeRolePolicyDocument": urllib.parse.quote(json.dumps(TRUST))}},
             {"RoleName": "vmimport"})
    cloud.ok("service-quotas", "get_service_quota",
             {"Quota": {"ServiceCode": "ec2", "QuotaCode": STANDARD_VCPU_QUOTA, "Value": quota}},
             {"ServiceCode": "ec2", "QuotaCode": STANDARD_VCPU_QUOTA})
    cloud.ok("ec2", "describe_instances", {"Reservations": [{"Instances": running or []}]})


def answer_upload(cloud: Cloud, parts: int) -> None:
    cloud.fail("s3", "head_object", "404", "Not Found", status=404)
    cloud.ok("s3", "create_multipart_upload", {"UploadId": "upload-1"})
    for number in range(1, parts + 1):
        cloud.ok("s3", "upload_part", {"ETag": f'"etag-{number}"'})
    cloud.ok("s3", "complete_multipart_upload", {})


def answer_import(cloud: Cloud) -> None:
    cloud.ok("ec2", "import_snapshot", {"ImportTaskId": "import-snap-0a1"})
    for detail in ({"Status": "active", "Progress": "19", "StatusMessage": "pending"},
                   {"Status": "active", "Progress": "57", "StatusMessage": "converting"},
                   {"Status": "completed", "SnapshotId": "snap-0a1", "Format": "VMDK"}):
        cloud.ok("ec2", "describe_import_snapshot_tasks", {"ImportSnapshotTasks": [
            {"ImportTaskId": "import-snap-0a1", "SnapshotTaskDetail": detail}]}, {"ImportTaskIds": ["import-snap-0a1"]})
    cloud.ok("ec2", "create_tags")


def answer_image(cloud: Cloud) -> None:
    answer_import(cloud)
    cloud.ok("ec2", "register_image", {"ImageId": "ami-0a1"})
    cloud.ok("s3", "delete_object")


def answer_network(cloud: Cloud) -> None:
    cloud.ok("ec2", "describe_vpcs", {"Vpcs": [{"VpcId": "vpc-0a1", "IsDefault": True}]})
    cloud.ok("ec2", "describe_subnets", {"Subnets": [
        {"SubnetId": "subnet-c", "AvailabilityZone": f"{REGION}c"},
        {"SubnetId": "subnet-b", "AvailabilityZone": f"{REGION}b"},
        {"SubnetId": "subnet-a", "AvailabilityZone": f"{REGION}a"}]})
    cloud.ok("ec2", "create_security_group", {"GroupId": "sg-0a1"})
    cloud.ok("ec2", "authorize_security_group_ingress", {"Return": True})


def instance(state: str, *, snp: str = "enabled") -> dict[str, Any]:
    return {"Reservations": [{"Instances": [{
        "InstanceId": "i-0a1", "InstanceType": "m6a.large", "State": {"Name": state},
        "Placement": {"AvailabilityZone": f"{REGION}a"},
        "CpuOptions": {"CoreCount": 1, "ThreadsPerCore": 2, "AmdSevSnp": snp},
        **({"PublicIpAddress": "203.0.113.7"} if state == "running" else {})}]}]}


def answer_vm(cloud: Cloud, *, snp: str = "enabled") -> None:
    cloud.ok("ec2", "run_instances", {"Instances": [{"InstanceId": "i-0a1"}]})
    cloud.ok("ec2", "describe_instances", instance("pending"))
    cloud.ok("ec2", "describe_instances", instance("running", snp=snp))


def finish_before_vm(setup: Setup) -> None:
    """The ledger of a deployment whose first four steps finished."""
    setup.ledger.finish("preflight", {"account": ACCOUNT, "vcpus": 2, "cores": 1, "threads_per_core": 2,
                                      "zones": [f"{REGION}a", f"{REGION}b"], "notes": []})
    setup.ledger.finish("upload", {"bucket": BUCKET, "key": "cvm-test/disk.vmdk", "size": 1, "sha256": "0"})
    setup.ledger.finish("image", {"image_id": "ami-0a1", "snapshot_id": "snap-0a1"})
    setup.ledger.finish("network", {"vpc_id": "vpc-0a1", "security_group_id": "sg-0a1",
                                    "subnets": [{"id": "subnet-a", "zone": f"{REGION}a"},
                                                {"id": "subnet-b", "zone": f"{REGION}b"}]})


# --- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("vm_type", ["t3.large", "m7i.large", "m6i.large", "c7a.large", "m6a.12xlarge",
                                     "m6a.metal", "r6a.8xlarge", "M6A.LARGE"],
                         ids=["burstable-intel", "intel-sapphire-rapids", "intel-ice-lake", "amd-genoa-no-snp",
                              "m6a-above-limit", "metal", "r6a-above-limit", "wrong-case"])
def test_sizes_without_sev_snp_are_refused(image_dir: Path, vm_type: str) -> None:
    request = DeployRequest(cloud="aws", vm_name="x", region=REGION, vm_type=vm_type, image_dir=image_dir,
                            options={"bucket": BUCKET})
    with pytest.raises(DeployError) as caught:
        AwsDeployment(request, session=fake_session())
    assert caught.value.reason is Reason.DEPLOY_SIZE_NOT_SEV_SNP
    assert "m6a.large" in caught.value.context["hint"]


@pytest.mark.parametrize("vm_type", ["m6a.large", "m6a.8xlarge", "c6a.16xlarge", "r6a.4xlarge"])
def test_sev_snp_sizes_are_accepted(image_dir: Path, tmp_path: Path, vm_type: str) -> None:
    assert Setup(image_dir, tmp_path, vm_type=vm_type).deployment.request.vm_type == vm_type


# --- plan ---------------------------------------------------------------------------------------


def test_plan_shows_security_settings_and_the_list_price_and_writes_nothing(image_dir: Path,
                                                                             tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    for service in ("ec2", "s3", "iam", "sts"):
        setup.cloud.stub(service)  # nothing queued: any call would raise
    setup.cloud.ok("pricing", "get_products", {"PriceList": [json.dumps(PRICE_PRODUCT)], "FormatVersion": "aws_v1"})
    plan = setup.deployment.plan()
    setup.cloud.done()
    [filters] = [json.loads(body)["Filters"] for body in setup.cloud.wire.bodies("GetProducts")]
    asked = {f["Field"]: f["Value"] for f in filters}
    assert asked.items() >= {"instanceType": "m6a.large", "regionCode": REGION, "operatingSystem": "Linux",
                             "tenancy": "Shared"}.items()
    assert setup.cloud.wire.operations() == ["GetProducts"]
    assert str(plan.cost.per_hour) == "0.0864000000" and plan.cost.currency == "USD"
    assert plan.upload_bytes == (image_dir / "disk.vmdk").stat().st_size
    resources = {r.kind: r for r in plan.resources}
    assert list(resources) == ["aws.s3_object", "aws.snapshot", "aws.image", "aws.security_group", "aws.instance"]
    assert resources["aws.instance"].settings["cpu_options.amd_sev_snp"] == "enabled"
    assert resources["aws.instance"].settings["metadata.http_tokens"] == "required"
    assert resources["aws.instance"].settings["key_pair"] is None
    assert resources["aws.image"].settings["boot_mode"] == "uefi"
    assert resources["aws.image"].settings["tpm_support"] == "v2.0"
    assert resources["aws.security_group"].settings["ingress_tcp"] == [8000, 443]
    assert resources["aws.security_group"].settings["ssh"] is False


def test_a_failing_price_list_makes_the_cost_unknown(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    setup.cloud.fail("pricing", "get_products", "AccessDeniedException", "not allowed to call pricing")
    plan = setup.deployment.plan()
    assert plan.cost.per_hour is None
    assert plan.cost.currency is None


# --- a whole deployment ---------------------------------------------------------------------------


def test_deploy_sends_sev_snp_uefi_tpm_imdsv2_requests_and_opens_only_the_ports(image_dir: Path,
                                                                                 tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    disk_size = (image_dir / "disk.vmdk").stat().st_size
    setup.deployment.part_size = disk_size // 3 + 1
    cloud = setup.cloud
    answer_preflight(cloud, running=[{"InstanceId": "i-other", "InstanceType": "m5.large",
                                      "CpuOptions": {"CoreCount": 1, "ThreadsPerCore": 2}}])
    answer_upload(cloud, parts=3)
    answer_image(cloud)
    answer_network(cloud)
    answer_vm(cloud)

    outputs = setup.run()
    cloud.done()

    assert outputs["vm"]["public_ip"] == "203.0.113.7"
    assert outputs["vm"]["amd_sev_snp"] == "enabled"
    [run] = cloud.wire.bodies("RunInstances")
    assert run["CpuOptions.AmdSevSnp"] == "enabled"
    assert (run["CpuOptions.CoreCount"], run["CpuOptions.ThreadsPerCore"]) == (1, 2)
    assert run["MetadataOptions.HttpTokens"] == "required"
    assert run["ImageId"] == "ami-0a1" and run["InstanceType"] == "m6a.large"
    assert run["NetworkInterface.1.SubnetId"] == "subnet-a"
    assert run["NetworkInterface.1.SecurityGroupId.1"] == "sg-0a1"
    assert not [k for k in run if k.startswith(("KeyName", "UserData", "IamInstanceProfile"))]
    [image] = cloud.wire.bodies("RegisterImage")
    assert (image["BootMode"], image["TpmSupport"], image["ImdsSupport"]) == ("uefi", "v2.0", "v2.0")
    assert (image["Architecture"], image["EnaSupport"], image["RootDeviceName"]) == ("x86_64", "true", "/dev/xvda")
    assert image["BlockDeviceMapping.1.Ebs.SnapshotId"] == "snap-0a1"
    [ingress] = cloud.wire.bodies("AuthorizeSecurityGroupIngress")
    opened = {v for k, v in ingress.items() if k.endswith(".FromPort")}
    assert opened == {v for k, v in ingress.items() if k.endswith(".ToPort")} == {8000, 443}
    assert {v for k, v in ingress.items() if k.endswith(".IpProtocol")} == {"tcp"}
    [task] = cloud.wire.bodies("ImportSnapshot")
    assert task["DiskContainer.Format"] == "VMDK" and task["RoleName"] == "vmimport"
    assert (task["DiskContainer.UserBucket.S3Bucket"], task["DiskContainer.UserBucket.S3Key"]) == (
        BUCKET, outputs["upload"]["key"])
    created = [p for name, p in cloud.wire.calls if name == "CreateMultipartUpload"]
    assert created[0]["headers"]["x-amz-server-side-encryption"] == "AES256"
    assert cloud.wire.operations().count("UploadPart") == 3
    # The temporary object is gone, the multipart upload finished: only what the VM needs stays.
    assert setup.kinds() == ["aws.snapshot", "aws.image", "aws.security_group", "aws.instance"]
    progress = setup.progress.getvalue()
    assert "import import-snap-0a1: active 57% (converting)" in progress
    assert f"disk.vmdk: {disk_size:,} of {disk_size:,} bytes (100%)" in progress
    assert setup.sleeps == [15.0, 15.0, 5.0]


# --- preflight refusals ------------------------------------------------------------------------


def test_exhausted_vcpu_quota_is_refused(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    answer_preflight(setup.cloud, quota=4.0, running=[
        {"InstanceId": "i-1", "InstanceType": "m6a.large", "CpuOptions": {"CoreCount": 1, "ThreadsPerCore": 2}},
        {"InstanceId": "i-2", "InstanceType": "c6a.large", "CpuOptions": {"CoreCount": 1, "ThreadsPerCore": 2}},
        {"InstanceId": "i-3", "InstanceType": "m6a.large", "InstanceLifecycle": "spot",
         "CpuOptions": {"CoreCount": 1, "ThreadsPerCore": 2}},
        {"InstanceId": "i-4", "InstanceType": "g5.xlarge", "CpuOptions": {"CoreCount": 2, "ThreadsPerCore": 2}}])
    with pytest.raises(DeployError) as caught:
        setup.run("preflight")
    assert caught.value.reason is Reason.DEPLOY_QUOTA_EXHAUSTED


def test_quota_that_leaves_room_passes_when_spot_and_gpu_instances_run(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    answer_preflight(setup.cloud, quota=4.0, running=[
        {"InstanceId": "i-1", "InstanceType": "m6a.large", "CpuOptions": {"CoreCount": 1, "ThreadsPerCore": 2}},
        {"InstanceId": "i-3", "InstanceType": "m6a.large", "InstanceLifecycle": "spot",
         "CpuOptions": {"CoreCount": 1, "ThreadsPerCore": 2}},
        {"InstanceId": "i-4", "InstanceType": "g5.xlarge", "CpuOptions": {"CoreCount": 2, "ThreadsPerCore": 2}}])
    outputs = setup.run("preflight")
    assert outputs["preflight"]["zones"] == [f"{REGION}a", f"{REGION}b"]
    assert outputs["preflight"]["notes"] == []


def test_unreadable_quota_and_role_are_notes_not_failures(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    cloud = setup.cloud
    cloud.ok("sts", "get_caller_identity", {"UserId": "AIDAEXAMPLE", "Account": ACCOUNT,
                                            "Arn": f"arn:aws:iam::{ACCOUNT}:user/deployer"})
    cloud.ok("ec2", "describe_instance_types", {"InstanceTypes": [M6A_LARGE]})
    cloud.ok("ec2", "describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": "m6a.large", "LocationType": "availability-zone", "Location": f"{REGION}a"}]})
    cloud.ok("s3", "get_bucket_location", {"LocationConstraint": REGION})
    cloud.fail("iam", "get_role", "AccessDenied", "not authorized to perform iam:GetRole", status=403)
    cloud.fail("service-quotas", "get_service_quota", "AccessDeniedException", "not authorized")
    notes = setup.run("preflight")["preflight"]["notes"]
    cloud.done()
    assert len(notes) == 2
    assert "DescribeInstances" not in cloud.wire.operations()


def _identity(cloud: Cloud) -> None:
    cloud.ok("sts", "get_caller_identity", {"UserId": "AIDAEXAMPLE", "Account": ACCOUNT,
                                            "Arn": f"arn:aws:iam::{ACCOUNT}:user/deployer"})


def _no_snp_feature(cloud: Cloud) -> None:
    _identity(cloud)
    cloud.ok("ec2", "describe_instance_types", {"InstanceTypes": [{**M6A_LARGE, "ProcessorInfo": {
        "SupportedArchitectures": ["x86_64"], "SupportedFeatures": []}}]})


def _not_offered(cloud: Cloud) -> None:
    _identity(cloud)
    cloud.ok("ec2", "describe_instance_types", {"InstanceTypes": [M6A_LARGE]})
    cloud.ok("ec2", "describe_instance_type_offerings", {"InstanceTypeOfferings": []})


def _unknown_type(cloud: Cloud) -> None:
    _identity(cloud)
    cloud.fail("ec2", "describe_instance_types", "InvalidInstanceType", "The following supplied instance types "
               "do not exist: [m6a.large]")


def _bucket(location: str | None = None, code: str | None = None) -> Any:
    def answer(cloud: Cloud) -> None:
        _not_refused_until_bucket(cloud)
        if code is None:
            cloud.ok("s3", "get_bucket_location", {"LocationConstraint": location} if location else {})
        else:
            cloud.fail("s3", "get_bucket_location", code, status=404 if code == "NoSuchBucket" else 403)
    return answer


def _not_refused_until_bucket(cloud: Cloud) -> None:
    _identity(cloud)
    cloud.ok("ec2", "describe_instance_types", {"InstanceTypes": [M6A_LARGE]})
    cloud.ok("ec2", "describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": "m6a.large", "LocationType": "availability-zone", "Location": f"{REGION}a"}]})


def _role(code: str | None = None, trust: dict[str, Any] | None = None) -> Any:
    def answer(cloud: Cloud) -> None:
        _not_refused_until_bucket(cloud)
        cloud.ok("s3", "get_bucket_location", {"LocationConstraint": REGION})
        if code is not None:
            cloud.fail("iam", "get_role", code, "The role with name vmimport cannot be found.", status=404)
            return
        cloud.ok("iam", "get_role", {"Role": {"Path": "/", "RoleName": "vmimport", "RoleId": "AROAEXAMPLEEXAMPLE1",
                                              "Arn": f"arn:aws:iam::{ACCOUNT}:role/vmimport",
                                              "CreateDate": "2024-01-01T00:00:00Z",
                                              "AssumeRolePolicyDocument": urllib.parse.quote(json.dumps(trust))}})
    return answer


def _expired(cloud: Cloud) -> None:
    cloud.fail("sts", "get_caller_identity", "ExpiredToken", "The security token included in the request is expired",
               status=403)


EC2_TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}


@pytest.mark.parametrize(("region", "answer", "reason"), [
    (REGION, _no_snp_feature, Reason.DEPLOY_SIZE_NOT_SEV_SNP),
    ("us-east-1", _no_snp_feature, Reason.DEPLOY_REGION_UNSUPPORTED),
    (REGION, _not_offered, Reason.DEPLOY_SIZE_UNAVAILABLE),
    (REGION, _unknown_type, Reason.DEPLOY_SIZE_UNAVAILABLE),
    (REGION, _bucket("eu-west-1"), Reason.DEPLOY_BUCKET_UNUSABLE),
    (REGION, _bucket(None), Reason.DEPLOY_BUCKET_UNUSABLE),
    (REGION, _bucket(code="NoSuchBucket"), Reason.DEPLOY_BUCKET_UNUSABLE),
    (REGION, _bucket(code="AccessDenied"), Reason.DEPLOY_BUCKET_UNUSABLE),
    (REGION, _role(code="NoSuchEntity"), Reason.DEPLOY_IMPORT_ROLE_MISSING),
    (REGION, _role(trust=EC2_TRUST), Reason.DEPLOY_IMPORT_ROLE_MISSING),
    (REGION, _expired, Reason.DEPLOY_CREDENTIALS),
], ids=["no-snp-feature", "region-without-snp", "not-offered-in-any-zone", "unknown-type", "bucket-in-eu-west-1",
        "bucket-in-us-east-1", "no-bucket", "bucket-of-another-account", "no-vmimport-role",
        "vmimport-role-not-trusting-vm-import", "expired-token"])
def test_preflight_refusals(image_dir: Path, tmp_path: Path, region: str, answer: Any, reason: Reason) -> None:
    setup = Setup(image_dir, tmp_path, region=region)
    answer(setup.cloud)
    with pytest.raises(DeployError) as caught:
        setup.run("preflight")
    setup.cloud.done()
    assert caught.value.reason is reason
    assert caught.value.context["hint"]
    assert setup.ledger.resources == ()


def test_bucket_in_the_deployment_region_passes_the_bucket_check(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    answer_preflight(setup.cloud)
    assert setup.run("preflight")["preflight"]["account"] == ACCOUNT


def test_missing_credentials_are_refused_before_any_request(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path, session=boto3.session.Session(region_name=REGION))
    with pytest.raises(DeployError) as caught:
        setup.run("preflight")
    assert caught.value.reason is Reason.DEPLOY_CREDENTIALS
    assert "aws configure" in caught.value.context["hint"]


# --- vm launch failures --------------------------------------------------------------------------


@pytest.mark.parametrize(("codes", "reason"), [
    (["VcpuLimitExceeded"], Reason.DEPLOY_QUOTA_EXHAUSTED),
    (["InsufficientInstanceCapacity", "InsufficientInstanceCapacity"], Reason.DEPLOY_SIZE_UNAVAILABLE),
    (["Unsupported", "Unsupported"], Reason.DEPLOY_SIZE_UNAVAILABLE),
    (["UnauthorizedOperation"], Reason.DEPLOY_PERMISSION_DENIED),
], ids=["vcpu-limit", "no-capacity-in-every-zone", "unsupported-in-every-zone", "not-allowed"])
def test_launch_refusals(image_dir: Path, tmp_path: Path, codes: list[str], reason: Reason) -> None:
    setup = Setup(image_dir, tmp_path)
    finish_before_vm(setup)
    for code in codes:
        setup.cloud.fail("ec2", "run_instances", code, f"{code} in this zone")
    with pytest.raises(DeployError) as caught:
        setup.run("vm")
    setup.cloud.done()
    assert caught.value.reason is reason
    assert [b["NetworkInterface.1.SubnetId"] for b in setup.cloud.wire.bodies("RunInstances")] == [
        "subnet-a", "subnet-b"][:len(codes)]
    assert setup.ledger.find("aws.instance") is None


def test_no_capacity_in_the_first_zone_launches_in_the_next(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    finish_before_vm(setup)
    setup.cloud.fail("ec2", "run_instances", "InsufficientInstanceCapacity", "no m6a.large in us-east-2a")
    answer_vm(setup.cloud)
    assert setup.run("vm")["vm"]["public_ip"] == "203.0.113.7"
    first, second = setup.cloud.wire.bodies("RunInstances")
    assert (first["NetworkInterface.1.SubnetId"], second["NetworkInterface.1.SubnetId"]) == ("subnet-a", "subnet-b")
    assert first["ClientToken"] != second["ClientToken"]


def test_an_instance_running_without_sev_snp_is_refused_and_kept_for_destroy(image_dir: Path,
                                                                              tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    finish_before_vm(setup)
    answer_vm(setup.cloud, snp="disabled")
    with pytest.raises(DeployError) as caught:
        setup.run("vm")
    assert caught.value.reason is Reason.DEPLOY_SIZE_NOT_SEV_SNP
    assert setup.kinds() == ["aws.instance"]


def test_a_resumed_vm_step_waits_for_the_recorded_instance_without_launching(image_dir: Path,
                                                                             tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    finish_before_vm(setup)
    setup.ledger.record("aws.instance", "i-0a1", step="vm", region=REGION)
    setup.cloud.ok("ec2", "describe_instances", instance("running"))
    assert setup.run("vm")["vm"]["instance_id"] == "i-0a1"
    assert "RunInstances" not in setup.cloud.wire.operations()


# --- import failures -------------------------------------------------------------------------------


def _finish_upload(setup: Setup) -> None:
    setup.ledger.finish("upload", {"bucket": BUCKET, "key": "cvm-test/disk-0.vmdk", "size": 1, "sha256": "0"})
    setup.ledger.record("aws.s3_object", f"s3://{BUCKET}/cvm-test/disk-0.vmdk", step="upload", bucket=BUCKET,
                        key="cvm-test/disk-0.vmdk")


def test_a_failed_import_task_is_an_import_failure(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    _finish_upload(setup)
    setup.cloud.ok("ec2", "import_snapshot", {"ImportTaskId": "import-snap-0a1"})
    setup.cloud.ok("ec2", "describe_import_snapshot_tasks", {"ImportSnapshotTasks": [{
        "ImportTaskId": "import-snap-0a1", "SnapshotTaskDetail": {
            "Status": "deleted", "StatusMessage": "ClientError: Disk validation failed [Unsupported VMDK File Format]"}}]})
    with pytest.raises(DeployError) as caught:
        setup.run("image")
    assert caught.value.reason is Reason.DEPLOY_IMPORT_FAILED
    assert setup.kinds() == ["aws.s3_object"]


def test_import_refused_for_the_vmimport_role_is_a_missing_role(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    _finish_upload(setup)
    setup.cloud.fail("ec2", "import_snapshot", "InvalidParameter", "The service role vmimport provided does not "
                     "exist or does not have sufficient permissions")
    with pytest.raises(DeployError) as caught:
        setup.run("image")
    assert caught.value.reason is Reason.DEPLOY_IMPORT_ROLE_MISSING


def test_a_refused_ami_registration_is_an_import_failure_and_keeps_the_snapshot(image_dir: Path,
                                                                                tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    _finish_upload(setup)
    answer_import(setup.cloud)
    setup.cloud.fail("ec2", "register_image", "InvalidParameterValue", "Snapshot snap-0a1 is not UEFI bootable")
    with pytest.raises(DeployError) as caught:
        setup.run("image")
    assert caught.value.reason is Reason.DEPLOY_IMPORT_FAILED
    assert setup.kinds() == ["aws.s3_object", "aws.snapshot"]


# --- destroy -------------------------------------------------------------------------------------


def test_destroy_after_a_failed_network_step_deletes_exactly_the_image_and_snapshot(image_dir: Path,
                                                                                   tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    answer_preflight(setup.cloud)
    answer_upload(setup.cloud, parts=1)
    answer_image(setup.cloud)
    setup.cloud.ok("ec2", "describe_vpcs", {"Vpcs": []})
    with pytest.raises(DeployError) as caught:
        setup.run()
    assert caught.value.reason is Reason.DEPLOY_CLOUD_ERROR
    assert setup.kinds() == ["aws.snapshot", "aws.image"]
    setup.cloud.ok("ec2", "deregister_image", {"Return": True}, {"ImageId": "ami-0a1"})
    setup.cloud.ok("ec2", "delete_snapshot", {}, {"SnapshotId": "snap-0a1"})
    sent = len(setup.cloud.wire.calls)
    deleted = destroy(setup.deployment, setup.ledger, setup.reporter)
    setup.cloud.done()
    assert [e.kind for e in deleted] == ["aws.image", "aws.snapshot"]
    assert [name for name, _ in setup.cloud.wire.calls[sent:]] == ["DeregisterImage", "DeleteSnapshot"]
    assert Ledger.load(setup.ledger.path).resources == ()


def test_destroy_during_the_import_cancels_it_and_deletes_the_temporary_object(image_dir: Path,
                                                                               tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    _finish_upload(setup)
    setup.ledger.record("aws.import_task", "import-snap-0a1", step="image", region=REGION)
    setup.cloud.ok("ec2", "describe_import_snapshot_tasks", {"ImportSnapshotTasks": [{
        "ImportTaskId": "import-snap-0a1", "SnapshotTaskDetail": {"Status": "active", "Progress": "30"}}]})
    setup.cloud.ok("ec2", "cancel_import_task", {"ImportTaskId": "import-snap-0a1", "State": "deleting"},
                   {"ImportTaskId": "import-snap-0a1", "CancelReason": "cvm-cli destroy"})
    setup.cloud.ok("s3", "delete_object", {}, {"Bucket": BUCKET, "Key": "cvm-test/disk-0.vmdk"})
    destroy(setup.deployment, setup.ledger, setup.reporter)
    setup.cloud.done()
    assert setup.cloud.wire.operations() == ["DescribeImportSnapshotTasks", "CancelImportTask", "DeleteObject"]
    assert setup.ledger.resources == ()


def test_destroy_treats_already_deleted_resources_as_deleted(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    for kind, resource in (("aws.snapshot", "snap-0a1"), ("aws.image", "ami-0a1"),
                           ("aws.security_group", "sg-0a1"), ("aws.instance", "i-0a1")):
        setup.ledger.record(kind, resource, step="x", region=REGION)
    setup.cloud.fail("ec2", "terminate_instances", "InvalidInstanceID.NotFound", "The instance ID does not exist")
    setup.cloud.fail("ec2", "delete_security_group", "InvalidGroup.NotFound", "The security group does not exist")
    setup.cloud.fail("ec2", "deregister_image", "InvalidAMIID.Unavailable", "The image id is no longer available")
    setup.cloud.fail("ec2", "delete_snapshot", "InvalidSnapshot.NotFound", "The snapshot does not exist")
    assert len(destroy(setup.deployment, setup.ledger, setup.reporter)) == 4
    setup.cloud.done()
    assert "already gone" in setup.progress.getvalue()


def test_a_failed_deletion_stays_in_the_ledger(image_dir: Path, tmp_path: Path) -> None:
    setup = Setup(image_dir, tmp_path)
    setup.ledger.record("aws.snapshot", "snap-0a1", step="image", region=REGION)
    setup.ledger.record("aws.image", "ami-0a1", step="image", region=REGION)
    setup.cloud.fail("ec2", "deregister_image", "UnauthorizedOperation", "not authorized", status=403)
    setup.cloud.ok("ec2", "delete_snapshot", {}, {"SnapshotId": "snap-0a1"})
    with pytest.raises(DeployError) as caught:
        destroy(setup.deployment, setup.ledger, setup.reporter)
    assert caught.value.reason is Reason.DEPLOY_DESTROY_INCOMPLETE
    assert setup.kinds() == ["aws.image"]


# --- moto: S3, IAM, STS and most of EC2 as moto implements them ----------------------------------------


@pytest.fixture
def moto_session() -> Iterator[boto3.session.Session]:
    with mock_aws():
        session = fake_session()
        session.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        session.client("iam").create_role(RoleName="vmimport", AssumeRolePolicyDocument=json.dumps(TRUST))
        yield session


def add_vm_import(deployment: AwsDeployment, session: boto3.session.Session) -> Wire:
    """Answer what moto lacks as EC2 does: ImportSnapshot and DescribeImportSnapshotTasks (the task
    completes at once, with a real moto snapshot), and DescribeInstances' CpuOptions (moto keeps
    none; EC2 reports what RunInstances asked for). Returns the recorder of every request sent."""
    ec2 = deployment.client("ec2")
    wire = Wire()
    for service in ("ec2", "s3", "iam", "sts", "service-quotas"):
        wire.attach(deployment.client(service))
    tasks: dict[str, str] = {}

    def import_snapshot(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        helper = session.client("ec2")
        volume = helper.create_volume(Size=1, AvailabilityZone=f"{REGION}a")["VolumeId"]
        snapshot = helper.create_snapshot(VolumeId=volume)["SnapshotId"]
        helper.delete_volume(VolumeId=volume)
        task_id = f"import-snap-{len(tasks):017x}"
        tasks[task_id] = snapshot
        return AWSResponse("https://ec2", 200, {}, None), {"ImportTaskId": task_id}

    def describe_tasks(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        task_id = params["body"]["ImportTaskId.1"]
        return AWSResponse("https://ec2", 200, {}, None), {"ImportSnapshotTasks": [{
            "ImportTaskId": task_id, "SnapshotTaskDetail": {"Status": "completed", "SnapshotId": tasks[task_id]}}]}

    def cpu_options(parsed: dict[str, Any], **_: Any) -> None:
        [run] = wire.bodies("RunInstances")
        options = {key.split(".")[1]: value for key, value in run.items() if key.startswith("CpuOptions.")}
        for reservation in parsed.get("Reservations", []):
            for described in reservation["Instances"]:
                described["CpuOptions"] = options

    ec2.meta.events.register("before-call.ec2.ImportSnapshot", import_snapshot)
    ec2.meta.events.register("before-call.ec2.DescribeImportSnapshotTasks", describe_tasks)
    ec2.meta.events.register("after-call.ec2.DescribeInstances", cpu_options)
    return wire


class Interrupt(Reporter):
    """Progress that stops the deployment (as Ctrl-C would) at the first line starting with ``at``."""

    def __init__(self, at: str) -> None:
        super().__init__(io.StringIO())
        self.at = at

    def _emit(self, text: str) -> None:
        if text.strip().startswith(self.at):
            raise KeyboardInterrupt(text)


def test_moto_deploy_then_destroy_leaves_nothing(image_dir: Path, tmp_path: Path,
                                                 moto_session: boto3.session.Session) -> None:
    setup = Setup(image_dir, tmp_path, session=moto_session)
    wire = add_vm_import(setup.deployment, moto_session)
    outputs = setup.run()
    ec2, s3 = moto_session.client("ec2"), moto_session.client("s3")

    assert ec2.describe_images(Filters=[{"Name": "name", "Values": [f"cvm-test-{outputs['upload']['sha256'][:16]}"]}]
                               )["Images"][0]["ImageId"] == outputs["image"]["image_id"]
    [described] = ec2.describe_instances(InstanceIds=[outputs["vm"]["instance_id"]])["Reservations"][0]["Instances"]
    assert described["State"]["Name"] == "running"
    assert described["PublicIpAddress"] == outputs["vm"]["public_ip"]
    assert described["MetadataOptions"]["HttpTokens"] == "required"
    assert "KeyName" not in described
    [group] = ec2.describe_security_groups(GroupIds=[outputs["network"]["security_group_id"]])["SecurityGroups"]
    assert sorted((p["IpProtocol"], p["FromPort"], p["ToPort"], p["IpRanges"][0]["CidrIp"])
                  for p in group["IpPermissions"]) == [("tcp", 443, 443, "0.0.0.0/0"), ("tcp", 8000, 8000, "0.0.0.0/0")]
    [run] = wire.bodies("RunInstances")
    assert run["CpuOptions.AmdSevSnp"] == "enabled"
    assert not [k for k in run if k.startswith("KeyName")]
    [register] = wire.bodies("RegisterImage")
    assert (register["BootMode"], register["TpmSupport"]) == ("uefi", "v2.0")
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)

    deleted = destroy(setup.deployment, setup.ledger, setup.reporter)

    assert [e.kind for e in deleted] == ["aws.instance", "aws.security_group", "aws.image", "aws.snapshot"]
    sha = outputs["upload"]["sha256"]
    [gone] = ec2.describe_instances(InstanceIds=[outputs["vm"]["instance_id"]])["Reservations"][0]["Instances"]
    assert gone["State"]["Name"] == "terminated"
    assert not ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["cvm-test"]}])["SecurityGroups"]
    assert ec2.describe_images(Filters=[{"Name": "name", "Values": [f"cvm-test-{sha[:16]}"]}])["Images"] == []
    with pytest.raises(ClientError) as missing:
        ec2.describe_snapshots(SnapshotIds=[outputs["image"]["snapshot_id"]])
    assert missing.value.response["Error"]["Code"] == "InvalidSnapshot.NotFound"


def test_resume_after_the_upload_does_not_upload_again(image_dir: Path, tmp_path: Path,
                                                       moto_session: boto3.session.Session) -> None:
    first = Setup(image_dir, tmp_path, session=moto_session)
    first.reporter = Interrupt("uploaded s3://")
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert first.ledger.outputs("upload") is None
    assert first.kinds() == ["aws.s3_object"]

    again = Setup(image_dir, tmp_path, session=moto_session)
    wire = add_vm_import(again.deployment, moto_session)
    assert again.run()["vm"]["public_ip"]
    s3_calls = [name for name in wire.operations() if name in {"HeadObject", "CreateMultipartUpload", "UploadPart",
                                                                "CompleteMultipartUpload", "DeleteObject"}]
    assert s3_calls == ["HeadObject", "DeleteObject"]
    assert "already there" in again.progress.getvalue()
    assert moto_session.client("s3").list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_resume_in_the_middle_of_the_upload_aborts_the_partial_upload(image_dir: Path, tmp_path: Path,
                                                                      moto_session: boto3.session.Session) -> None:
    first = Setup(image_dir, tmp_path, session=moto_session)
    first.deployment.part_size = 1 << 16
    first.reporter = Interrupt("disk.vmdk:")
    with pytest.raises(KeyboardInterrupt):
        first.run()
    [multipart] = first.ledger.resources
    assert multipart.kind == "aws.s3_multipart"

    again = Setup(image_dir, tmp_path, session=moto_session)
    wire = add_vm_import(again.deployment, moto_session)
    again.run("preflight", "upload")
    [abort] = [p for name, p in wire.calls if name == "AbortMultipartUpload"]
    assert abort["query_string"] == {"uploadId": multipart.id}
    s3 = moto_session.client("s3")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=BUCKET)
    key = again.ledger.outputs("upload")["key"]  # type: ignore[index]
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == (image_dir / "disk.vmdk").stat().st_size
    assert again.kinds() == ["aws.s3_object"]


# --- the command line ------------------------------------------------------------------------------


@pytest.fixture
def no_http(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any HTTP request botocore would send; the list of URLs it tried."""
    tried: list[str] = []

    def send(self: Any, request: Any) -> Any:
        tried.append(request.url)
        raise AssertionError(f"HTTP request to {request.url}")

    monkeypatch.setattr(botocore.httpsession.URLLib3Session, "send", send)
    return tried


def test_cli_dry_run_json_prints_the_plan_without_any_http_call(image_dir: Path, no_http: list[str]) -> None:
    result = CliRunner().invoke(cli, ["deploy", "aws", "--image", str(image_dir), "--bucket", BUCKET,
                                      "--additional-ports", "443", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert no_http == []
    assert (plan["cloud"], plan["region"], plan["vm_type"]) == ("aws", "us-east-2", "m6a.large")
    assert plan["inbound_tcp_ports"] == [8000, 443]
    assert plan["cost"]["per_hour"] is None
    instance_plan = {r["kind"]: r for r in plan["resources"]}["aws.instance"]
    assert instance_plan["settings"]["cpu_options.amd_sev_snp"] == "enabled"


def test_cli_seed_spelling(image_dir: Path, no_http: list[str]) -> None:
    result = CliRunner().invoke(cli, ["deploy-aws", "--vm_name", "seed-vm", "--vm_type", "c6a.xlarge",
                                      "--additional_ports", "80,443", "--image", str(image_dir), "--bucket", BUCKET,
                                      "--dry_run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert no_http == []
    assert plan["vm_type"] == "c6a.xlarge" and plan["inbound_tcp_ports"] == [8000, 80, 443]
    assert {r["kind"]: r["name"] for r in plan["resources"]}["aws.instance"] == "seed-vm"


def test_cli_refuses_a_size_without_sev_snp(image_dir: Path, no_http: list[str]) -> None:
    result = CliRunner().invoke(cli, ["deploy", "aws", "--vm-type", "m7i.large", "--image", str(image_dir),
                                      "--bucket", BUCKET, "--dry-run", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["reason"] == Reason.DEPLOY_SIZE_NOT_SEV_SNP.value
