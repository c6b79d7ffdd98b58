"""AWS: an M6a/C6a/R6a instance with AMD SEV-SNP enabled, booted from the image build's disk.vmdk.

The disk goes to an S3 bucket of the user's by multipart upload; VM Import (through the
``vmimport`` service role) turns it into an EBS snapshot; an AMI registered from the snapshot boots
UEFI with a NitroTPM 2.0 and requires IMDSv2. The instance runs in the default VPC behind its own
security group, which admits the request's TCP ports and nothing else, and has no key pair.

Credentials come from the boto3 chain (environment, ``~/.aws``, SSO, instance role), never from
the command line. Every SDK failure becomes a :class:`DeployError` with a fix hint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoAuthTokenError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from offchain.errors import DeployError, Reason

from deploy.core import (
    Cost,
    Deployment,
    DeployRequest,
    ImageDisk,
    Ledger,
    LedgerEntry,
    Plan,
    PlannedResource,
    Reporter,
    Step,
    chunks,
)

#: Sizes with ``amd-sev-snp`` among their processor features (EC2 User Guide, "AMD SEV-SNP
#: requirements"); larger and metal sizes of these families have none.
SEV_SNP_SIZES: Mapping[str, tuple[str, ...]] = {
    "m6a": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge"),
    "c6a": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"),
    "r6a": ("large", "xlarge", "2xlarge", "4xlarge"),
}
#: Where EC2 offers SEV-SNP at the time of writing; preflight asks EC2 itself.
SEV_SNP_REGIONS = ("us-east-2", "eu-west-1")
VM_IMPORT_ROLE = "vmimport"
VM_IMPORT_ROLE_DOCS = "https://docs.aws.amazon.com/vm-import/latest/userguide/required-permissions.html#vmimport-role"
#: Service Quotas: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", in vCPUs.
STANDARD_VCPU_QUOTA = "L-1216C47A"
STANDARD_FAMILIES = frozenset({"a", "c", "d", "h", "i", "im", "is", "m", "r", "t", "z"})
#: The tag on every resource created, valued with the VM name.
TAG_KEY = "cvm-attest:vm"
ROOT_DEVICE = "/dev/xvda"
PART_SIZE = 64 << 20
#: S3's limit on the parts of one multipart upload.
MAX_PARTS = 10_000
IMPORT_POLL_SECONDS = 15.0
IMPORT_POLLS = 480
INSTANCE_POLL_SECONDS = 5.0
INSTANCE_POLLS = 120
GROUP_DELETE_TRIES = 24

_CREDENTIAL_FAILURES = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, ProfileNotFound,
                        SSOError, SSOTokenLoadError, TokenRetrievalError, UnauthorizedSSOTokenError,
                        NoAuthTokenError)
_CREDENTIAL_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "AuthFailure",
                               "UnrecognizedClientException", "SignatureDoesNotMatch", "InvalidAccessKeyId",
                               "RequestExpired"})
_PERMISSION_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"})
_QUOTA_CODES = frozenset({"VcpuLimitExceeded", "InstanceLimitExceeded", "SecurityGroupLimitExceeded",
                          "RulesPerSecurityGroupLimitExceeded", "ResourceLimitExceeded"})
_CAPACITY_CODES = frozenset({"InsufficientInstanceCapacity", "InsufficientCapacity", "Unsupported"})
_GONE_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidGroup.NotFound", "InvalidAMIID.NotFound",
                         "InvalidAMIID.Unavailable", "InvalidSnapshot.NotFound", "NoSuchUpload", "NoSuchKey",
                         "NoSuchBucket", "404"})

CREDENTIALS_HINT = ("configure the boto3 credential chain: aws configure, aws sso login, AWS_PROFILE, or "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


def sev_snp_sizes() -> str:
    """The sizes that work, for hints: ``m6a.large-8xlarge, ...``."""
    return ", ".join(f"{family}.{sizes[0]}-{sizes[-1]}" for family, sizes in SEV_SNP_SIZES.items())


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or _code(exc)


def _error(exc: ClientError, doing: str, failed: Reason, hint: str) -> DeployError:
    """``exc`` as the DeployError a user can act on: credentials, permission, quota, capacity, or
    ``failed`` with ``hint``."""
    code, text = _code(exc), _message(exc)
    if code in _CREDENTIAL_CODES:
        return DeployError(Reason.DEPLOY_CREDENTIALS, f"AWS refused the credentials while {doing}: {text}",
                           hint=CREDENTIALS_HINT)
    if code in _PERMISSION_CODES:
        return DeployError(Reason.DEPLOY_PERMISSION_DENIED, f"AWS denied {exc.operation_name} while {doing}: {text}",
                           hint=f"allow {exc.operation_name} in the caller's IAM policy (docs/deploy.md lists "
                           "every action the deployment calls)")
    if code == "OptInRequired":
        return DeployError(Reason.DEPLOY_REGION_UNSUPPORTED, f"the account has not enabled this region: {text}",
                           hint="enable the region in the AWS console (Account > AWS Regions) or pass another "
                           "--region")
    if code in _QUOTA_CODES:
        return DeployError(Reason.DEPLOY_QUOTA_EXHAUSTED, f"a quota is exhausted while {doing}: {text}",
                           hint="request an increase in the Service Quotas console, or delete resources you no "
                           "longer use")
    if code in _CAPACITY_CODES:
        return DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, f"EC2 cannot provide the size while {doing}: {text}",
                           hint=f"try again later, another size ({sev_snp_sizes()}) or another region "
                           f"({', '.join(SEV_SNP_REGIONS)})")
    return DeployError(failed, f"{doing} failed: {code}: {text}", hint=hint)


@contextlib.contextmanager
def _calling(doing: str, *, failed: Reason = Reason.DEPLOY_CLOUD_ERROR,
             hint: str = "run the same command again to resume; cvm-cli destroy --ledger FILE removes what was "
             "created") -> Iterator[None]:
    """Turn the SDK's exceptions raised inside the block into DeployError."""
    try:
        yield
    except ClientError as exc:
        raise _error(exc, doing, failed, hint) from None
    except _CREDENTIAL_FAILURES as exc:
        raise DeployError(Reason.DEPLOY_CREDENTIALS, f"no usable AWS credentials while {doing}: {exc}",
                          hint=CREDENTIALS_HINT) from None
    except BotoCoreError as exc:
        raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"could not reach AWS while {doing}: {exc}",
                          hint="check the network and the region name, then run the same command again") from None


def _family(vm_type: str) -> tuple[str, str]:
    family, _, size = vm_type.partition(".")
    return family, size


def _vcpus(instance: Mapping[str, Any]) -> int:
    options = instance.get("CpuOptions", {})
    return int(options.get("CoreCount", 0)) * int(options.get("ThreadsPerCore", 1))


class AwsDeployment(Deployment):
    """One SEV-SNP instance on EC2 from ``request.image_dir``'s disk.vmdk, staged in
    ``request.option("bucket")``."""

    cloud = "aws"

    def __init__(self, request: DeployRequest, *, session: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(request)
        family, size = _family(request.vm_type)
        if size not in SEV_SNP_SIZES.get(family, ()):
            why = ("only M6a, C6a and R6a run AMD SEV-SNP on EC2" if family not in SEV_SNP_SIZES
                   else f"EC2 offers AMD SEV-SNP on {family}.{SEV_SNP_SIZES[family][0]} to "
                   f"{family}.{SEV_SNP_SIZES[family][-1]} only")
            raise DeployError(Reason.DEPLOY_SIZE_NOT_SEV_SNP, f"{request.vm_type} is not an AMD SEV-SNP size: {why}",
                              hint=f"sizes that work: {sev_snp_sizes()}")
        self.session = session if session is not None else boto3.session.Session(region_name=request.region)
        self.sleep = sleep
        self.part_size = PART_SIZE
        self._clients: dict[str, Any] = {}
        self._disk: ImageDisk | None = None

    # --- the SDK --------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """The boto3 client of ``service`` in the request's region (the Price List API only answers
        in us-east-1), one per service."""
        if service not in self._clients:
            region = "us-east-1" if service == "pricing" else self.request.region
            with _calling(f"creating the {service} client"):
                self._clients[service] = self.session.client(service, region_name=region)
        return self._clients[service]

    @property
    def disk(self) -> ImageDisk:
        """disk.vmdk, read when first needed: destroy works after the image directory is gone."""
        if self._disk is None:
            self._disk = ImageDisk.from_build(self.request.image_dir, "vmdk")
        return self._disk

    @property
    def bucket(self) -> str:
        return self.request.option("bucket")

    def _key(self) -> str:
        return f"{self.request.vm_name}/disk-{self.disk.sha256[:16]}.vmdk"

    def _image_name(self) -> str:
        return f"{self.request.vm_name}-{self.disk.sha256[:16]}"

    def _tags(self) -> list[dict[str, str]]:
        return [{"Key": "Name", "Value": self.request.vm_name}, {"Key": TAG_KEY, "Value": self.request.vm_name}]

    def _tag_spec(self, resource_type: str) -> dict[str, Any]:
        return {"ResourceType": resource_type, "Tags": self._tags()}

    # --- plan -----------------------------------------------------------------------------------

    def plan(self) -> Plan:
        request, disk = self.request, self.disk
        resources = (
            PlannedResource("aws.s3_object", f"s3://{self.bucket}/{self._key()}",
                            {"temporary": True, "server_side_encryption": "AES256"}),
            PlannedResource("aws.snapshot", f"VM Import of {disk.path.name}",
                            {"format": "VMDK", "service_role": VM_IMPORT_ROLE}),
            PlannedResource("aws.image", self._image_name(),
                            {"boot_mode": "uefi", "tpm_support": "v2.0", "imds_support": "v2.0",
                             "architecture": "x86_64", "ena_support": True, "root_device": ROOT_DEVICE}),
            PlannedResource("aws.security_group", request.vm_name,
                            {"vpc": "default", "ingress_tcp": list(request.ports), "ingress_source": "0.0.0.0/0",
                             "ssh": False}),
            PlannedResource("aws.instance", request.vm_name,
                            {"instance_type": request.vm_type, "cpu_options.amd_sev_snp": "enabled",
                             "metadata.http_tokens": "required", "key_pair": None, "public_ip": True}),
        )
        notes = [f"the S3 object is deleted once the snapshot is imported; bucket {self.bucket} must be in "
                 f"{request.region}",
                 "EC2 bills an hourly AMD SEV-SNP fee on top of the instance's list price",
                 "the EBS root volume (gp3, the disk's size) is billed while the instance exists"]
        if request.additional_ports:
            notes.append(f"--additional-ports {','.join(map(str, request.additional_ports))} are open to the whole "
                         "internet (0.0.0.0/0), like the agent's port")
        if request.region not in SEV_SNP_REGIONS:
            notes.append(f"EC2 offered SEV-SNP only in {', '.join(SEV_SNP_REGIONS)} at the time of writing; "
                         "preflight asks EC2")
        return Plan(request, resources, disk.size, self._price(), tuple(notes))

    def _price(self) -> Cost:
        """The on-demand Linux list price from the Price List API; unknown when it does not answer."""
        filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in (
            ("instanceType", self.request.vm_type), ("regionCode", self.request.region),
            ("operatingSystem", "Linux"), ("tenancy", "Shared"), ("preInstalledSw", "NA"),
            ("capacitystatus", "Used"), ("licenseModel", "No License required"), ("operation", "RunInstances"))]
        try:
            answer = self.client("pricing").get_products(ServiceCode="AmazonEC2", Filters=filters, MaxResults=10)
        except (BotoCoreError, ClientError, DeployError) as exc:
            return Cost.unknown(f"the AWS Price List API did not answer: {exc}")
        try:
            for item in answer.get("PriceList", []):
                for term in json.loads(item)["terms"]["OnDemand"].values():
                    for dimension in term["priceDimensions"].values():
                        price = Decimal(dimension["pricePerUnit"]["USD"])
                        if price > 0:
                            return Cost(price, "USD", "AWS Price List API, on-demand Linux")
        except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as exc:
            return Cost.unknown(f"the AWS Price List API answered an unreadable product: {exc}")
        return Cost.unknown(f"the AWS Price List API lists no on-demand Linux price for {self.request.vm_type} in "
                            f"{self.request.region}")

    # --- steps ----------------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        return [
            Step("preflight", "checking credentials, the size, the bucket, the vmimport role and the vCPU quota",
                 self._preflight),
            Step("upload", f"uploading disk.vmdk to s3://{self.bucket}", self._upload),
            Step("image", "importing the snapshot and registering the AMI (UEFI, NitroTPM)", self._image),
            Step("network", "creating the security group in the default VPC", self._network),
            Step("vm", f"launching the {self.request.vm_type} instance with AMD SEV-SNP", self._vm),
        ]

    # preflight

    def _preflight(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        with _calling("identifying the caller (sts:GetCallerIdentity)"):
            identity = self.client("sts").get_caller_identity()
        reporter.info(f"AWS account {identity['Account']} as {identity['Arn']}")
        size = self._instance_type()
        zones = self._zones()
        reporter.info(f"{self.request.vm_type}: {size['VCpuInfo']['DefaultVCpus']} vCPUs, AMD SEV-SNP, offered in "
                      f"{', '.join(zones)}")
        self._check_bucket()
        notes = [note for note in (self._check_import_role(), self._check_quota(int(size["VCpuInfo"]["DefaultVCpus"])))
                 if note]
        for note in notes:
            reporter.info(note)
        vcpu = size["VCpuInfo"]
        return {"account": identity["Account"], "vcpus": int(vcpu["DefaultVCpus"]),
                "cores": int(vcpu["DefaultCores"]), "threads_per_core": int(vcpu["DefaultThreadsPerCore"]),
                "zones": zones, "notes": notes}

    def _instance_type(self) -> dict[str, Any]:
        vm_type, region = self.request.vm_type, self.request.region
        unavailable = DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, f"EC2 does not offer {vm_type} in {region}",
                                  hint=f"pick another size ({sev_snp_sizes()}) or region "
                                  f"({', '.join(SEV_SNP_REGIONS)})")
        with _calling(f"describing {vm_type}"):
            try:
                types = self.client("ec2").describe_instance_types(InstanceTypes=[vm_type])["InstanceTypes"]
            except ClientError as exc:
                if _code(exc).startswith("InvalidInstanceType"):
                    raise unavailable from None
                raise
        if not types:
            raise unavailable
        if "amd-sev-snp" not in types[0].get("ProcessorInfo", {}).get("SupportedFeatures", []):
            if region not in SEV_SNP_REGIONS:
                raise DeployError(Reason.DEPLOY_REGION_UNSUPPORTED, f"EC2 offers no AMD SEV-SNP for {vm_type} in "
                                  f"{region}", hint=f"pass --region {' or '.join(SEV_SNP_REGIONS)}")
            raise DeployError(Reason.DEPLOY_SIZE_NOT_SEV_SNP, f"EC2 reports no amd-sev-snp feature for {vm_type} in "
                              f"{region}", hint=f"sizes that work: {sev_snp_sizes()}")
        found: dict[str, Any] = types[0]
        return found

    def _zones(self) -> list[str]:
        with _calling(f"listing where {self.request.vm_type} is offered"):
            offerings = self.client("ec2").describe_instance_type_offerings(
                LocationType="availability-zone",
                Filters=[{"Name": "instance-type", "Values": [self.request.vm_type]}])["InstanceTypeOfferings"]
        zones = sorted({str(o["Location"]) for o in offerings})
        if not zones:
            raise DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, f"no availability zone of {self.request.region} offers "
                              f"{self.request.vm_type}",
                              hint=f"pick another size ({sev_snp_sizes()}) or region ({', '.join(SEV_SNP_REGIONS)})")
        return zones

    def _check_bucket(self) -> None:
        bucket, region = self.bucket, self.request.region
        create = f"create one in {region}: aws s3 mb s3://BUCKET --region {region}, and pass --bucket BUCKET"
        with _calling(f"reading the region of s3://{bucket}", failed=Reason.DEPLOY_BUCKET_UNUSABLE, hint=create):
            try:
                answer = self.client("s3").get_bucket_location(Bucket=bucket)
            except ClientError as exc:
                if _code(exc) == "NoSuchBucket":
                    raise DeployError(Reason.DEPLOY_BUCKET_UNUSABLE, f"there is no bucket {bucket}",
                                      hint=create) from None
                if _code(exc) in _PERMISSION_CODES:
                    raise DeployError(Reason.DEPLOY_BUCKET_UNUSABLE, f"s3://{bucket} is not readable by the caller "
                                      f"({_message(exc)})",
                                      hint=f"use a bucket of this account (allow s3:GetBucketLocation), or {create}"
                                      ) from None
                raise
        location = answer.get("LocationConstraint") or "us-east-1"
        location = "eu-west-1" if location == "EU" else location
        if location != region:
            raise DeployError(Reason.DEPLOY_BUCKET_UNUSABLE, f"s3://{bucket} is in {location}, the deployment in "
                              f"{region}: VM Import reads only buckets of its own region", hint=create)

    def _check_import_role(self) -> str | None:
        """Refuse when the ``vmimport`` role is missing or does not trust VM Import; a note when the
        caller may not read IAM (VM Import itself tells then)."""
        missing = f"create the {VM_IMPORT_ROLE} service role with read access to the bucket: {VM_IMPORT_ROLE_DOCS}"
        with _calling(f"reading the {VM_IMPORT_ROLE} role"):
            try:
                role = self.client("iam").get_role(RoleName=VM_IMPORT_ROLE)["Role"]
            except ClientError as exc:
                if _code(exc) == "NoSuchEntity":
                    raise DeployError(Reason.DEPLOY_IMPORT_ROLE_MISSING, f"the account has no IAM role "
                                      f"{VM_IMPORT_ROLE}, which VM Import needs", hint=missing) from None
                if _code(exc) in _PERMISSION_CODES:
                    return f"the {VM_IMPORT_ROLE} role was not checked (iam:GetRole denied); VM Import needs it"
                raise
        trust = role.get("AssumeRolePolicyDocument", "")
        if "vmie.amazonaws.com" not in (trust if isinstance(trust, str) else json.dumps(trust)):
            raise DeployError(Reason.DEPLOY_IMPORT_ROLE_MISSING, f"the IAM role {VM_IMPORT_ROLE} does not let "
                              "vmie.amazonaws.com assume it", hint=missing)
        return None

    def _check_quota(self, vcpus: int) -> str | None:
        """Refuse when the running On-Demand Standard instances leave fewer than ``vcpus`` of the
        quota; a note when the quota cannot be read."""
        try:
            quota = self.client("service-quotas").get_service_quota(ServiceCode="ec2",
                                                                    QuotaCode=STANDARD_VCPU_QUOTA)["Quota"]
            limit = float(quota["Value"])
        except (ClientError, BotoCoreError, DeployError, KeyError, TypeError, ValueError) as exc:
            return (f"the vCPU quota {STANDARD_VCPU_QUOTA} was not checked ({exc}); EC2 refuses the launch if it is "
                    "short")
        used = 0
        with _calling("counting the running instances' vCPUs"):
            pages = self.client("ec2").get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
            for page in pages:
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        family = re.sub(r"[^a-z].*$", "", str(instance.get("InstanceType", "")))
                        if family in STANDARD_FAMILIES and instance.get("InstanceLifecycle") != "spot":
                            used += _vcpus(instance)
        if used + vcpus > limit:
            raise DeployError(Reason.DEPLOY_QUOTA_EXHAUSTED, f"{self.request.vm_type} needs {vcpus} vCPUs; the "
                              f"On-Demand Standard quota in {self.request.region} is {limit:g} and {used} are in use",
                              hint=f"request more in Service Quotas (Amazon EC2, {STANDARD_VCPU_QUOTA} Running "
                              "On-Demand Standard instances) or stop instances")
        return None

    # upload

    def _upload(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        disk, bucket, key = self.disk, self.bucket, self._key()
        s3 = self.client("s3")
        stale = ledger.find("aws.s3_multipart")
        if stale is not None:
            self._abort_upload(stale)
            ledger.forget(stale)
            reporter.info(f"aborted the interrupted multipart upload {stale.id}")
        outputs = {"bucket": bucket, "key": key, "size": disk.size, "sha256": disk.sha256}
        if self._object_size(bucket, key) == disk.size:
            reporter.info(f"s3://{bucket}/{key} is already there with {disk.size:,} bytes: not uploaded again")
            if ledger.find("aws.s3_object") is None:
                ledger.record("aws.s3_object", f"s3://{bucket}/{key}", step="upload", bucket=bucket, key=key)
            return outputs
        where = f"uploading to s3://{bucket}/{key}"
        with _calling(where, failed=Reason.DEPLOY_BUCKET_UNUSABLE,
                      hint="check the bucket accepts writes from the caller (s3:PutObject), then run again"):
            upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ServerSideEncryption="AES256",
                                                   ContentType="application/octet-stream")["UploadId"]
            multipart = ledger.record("aws.s3_multipart", upload_id, step="upload", bucket=bucket, key=key)
            part_size = max(self.part_size, -(-disk.size // MAX_PARTS))
            parts = []
            for number, (offset, data) in enumerate(chunks(disk.path, part_size), 1):
                answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
                reporter.transfer("disk.vmdk", offset + len(data), disk.size)
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
        ledger.record("aws.s3_object", f"s3://{bucket}/{key}", step="upload", bucket=bucket, key=key)
        ledger.forget(multipart)
        reporter.info(f"uploaded s3://{bucket}/{key} in {len(parts)} part(s)")
        return outputs

    def _object_size(self, bucket: str, key: str) -> int | None:
        with _calling(f"looking for s3://{bucket}/{key}", failed=Reason.DEPLOY_BUCKET_UNUSABLE,
                      hint="check the caller may read the bucket (s3:GetObject, s3:ListBucket)"):
            try:
                head = self.client("s3").head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in ("404", "NoSuchKey"):
                    return None
                raise
        return int(head["ContentLength"])

    def _abort_upload(self, entry: LedgerEntry) -> None:
        with _calling(f"aborting the multipart upload {entry.id}"):
            try:
                self.client("s3").abort_multipart_upload(Bucket=entry.attrs["bucket"], Key=entry.attrs["key"],
                                                         UploadId=entry.id)
            except ClientError as exc:
                if _code(exc) not in _GONE_CODES:
                    raise

    # image

    def _image(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        image = ledger.find("aws.image")
        if image is None:
            snapshot = ledger.find("aws.snapshot")
            snapshot_id = snapshot.id if snapshot is not None else self._import(ledger, reporter)
            image_id = self._register(ledger, reporter, snapshot_id)
        else:
            image_id, snapshot_id = image.id, str(image.attrs["snapshot_id"])
        temporary = ledger.find("aws.s3_object")
        if temporary is not None:
            self._delete_object(temporary)
            ledger.forget(temporary)
            reporter.info(f"deleted the temporary {temporary.id}")
        return {"image_id": image_id, "snapshot_id": snapshot_id}

    def _import(self, ledger: Ledger, reporter: Reporter) -> str:
        upload = ledger.outputs("upload") or {}
        bucket, key = str(upload["bucket"]), str(upload["key"])
        ec2 = self.client("ec2")
        failed = (f"check that the {VM_IMPORT_ROLE} role may read s3://{bucket} ({VM_IMPORT_ROLE_DOCS}) and that "
                  "disk.vmdk comes from cvm-cli image build")
        task = ledger.find("aws.import_task")
        if task is None:
            with _calling("starting VM Import", failed=Reason.DEPLOY_IMPORT_FAILED, hint=failed):
                try:
                    task_id = ec2.import_snapshot(
                        Description=f"cvm-attest {self.request.vm_name} disk.vmdk {self.disk.sha256[:16]}",
                        DiskContainer={"Description": "disk.vmdk", "Format": "VMDK",
                                       "UserBucket": {"S3Bucket": bucket, "S3Key": key}},
                        RoleName=VM_IMPORT_ROLE, TagSpecifications=[self._tag_spec("import-snapshot-task")],
                    )["ImportTaskId"]
                except ClientError as exc:
                    if VM_IMPORT_ROLE in _message(exc):
                        raise DeployError(Reason.DEPLOY_IMPORT_ROLE_MISSING, f"VM Import cannot use the "
                                          f"{VM_IMPORT_ROLE} role: {_message(exc)}", hint=failed) from None
                    raise
            task = ledger.record("aws.import_task", task_id, step="image", region=self.request.region)
        for _ in range(IMPORT_POLLS):
            with _calling(f"reading the import task {task.id}"):
                tasks = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task.id])["ImportSnapshotTasks"]
            if not tasks:
                ledger.forget(task)
                raise DeployError(Reason.DEPLOY_IMPORT_FAILED, f"AWS no longer knows the import task {task.id}",
                                  hint="run the same command again to start a new import")
            detail = tasks[0].get("SnapshotTaskDetail", {})
            status, message = str(detail.get("Status", "?")), str(detail.get("StatusMessage", ""))
            progress = f" {detail['Progress']}%" if detail.get("Progress") else ""
            reporter.info(f"import {task.id}: {status}{progress}" + (f" ({message})" if message else ""))
            if status == "completed":
                snapshot_id = str(detail["SnapshotId"])
                ledger.record("aws.snapshot", snapshot_id, step="image", region=self.request.region)
                ledger.forget(task)
                with _calling(f"tagging the snapshot {snapshot_id}"):
                    ec2.create_tags(Resources=[snapshot_id], Tags=self._tags())
                return snapshot_id
            if status in ("deleting", "deleted"):
                ledger.forget(task)
                raise DeployError(Reason.DEPLOY_IMPORT_FAILED, f"VM Import failed: {message or status}", hint=failed)
            self.sleep(IMPORT_POLL_SECONDS)
        raise DeployError(Reason.DEPLOY_IMPORT_FAILED, f"the import task {task.id} did not finish within "
                          f"{IMPORT_POLLS * IMPORT_POLL_SECONDS / 3600:g} h",
                          hint="it may still finish: run the same command again to resume waiting")

    def _register(self, ledger: Ledger, reporter: Reporter, snapshot_id: str) -> str:
        name, ec2 = self._image_name(), self.client("ec2")
        with _calling(f"registering the AMI {name}", failed=Reason.DEPLOY_IMPORT_FAILED,
                      hint="run the same command again; cvm-cli destroy --ledger FILE removes the snapshot"):
            try:
                image_id = str(ec2.register_image(
                    Name=name, Description=f"cvm-attest image build, golden {self.disk.golden_id}",
                    Architecture="x86_64", VirtualizationType="hvm", BootMode="uefi", TpmSupport="v2.0",
                    ImdsSupport="v2.0", EnaSupport=True, RootDeviceName=ROOT_DEVICE,
                    BlockDeviceMappings=[{"DeviceName": ROOT_DEVICE, "Ebs": {"SnapshotId": snapshot_id,
                                                                            "DeleteOnTermination": True,
                                                                            "VolumeType": "gp3"}}],
                    TagSpecifications=[self._tag_spec("image")],
                )["ImageId"])
            except ClientError as exc:
                if _code(exc) != "InvalidAMIName.Duplicate":
                    raise
                image_id = self._own_image(name)
        ledger.record("aws.image", image_id, step="image", region=self.request.region, snapshot_id=snapshot_id)
        reporter.info(f"AMI {image_id} ({name}): UEFI, NitroTPM 2.0, IMDSv2 only")
        return image_id

    def _own_image(self, name: str) -> str:
        """The AMI ``name`` an interrupted run of this deployment registered, by its tag."""
        images = self.client("ec2").describe_images(
            Owners=["self"], Filters=[{"Name": "name", "Values": [name]},
                                      {"Name": f"tag:{TAG_KEY}", "Values": [self.request.vm_name]}])["Images"]
        if not images:
            raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"an AMI named {name} exists and is not this deployment's",
                              hint="pass another --vm-name, or deregister that AMI")
        return str(images[0]["ImageId"])

    def _delete_object(self, entry: LedgerEntry) -> None:
        with _calling(f"deleting {entry.id}"):
            try:
                self.client("s3").delete_object(Bucket=entry.attrs["bucket"], Key=entry.attrs["key"])
            except ClientError as exc:
                if _code(exc) not in _GONE_CODES:
                    raise

    # network

    def _network(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        ec2, region = self.client("ec2"), self.request.region
        zones = list((ledger.outputs("preflight") or {}).get("zones", []))
        with _calling("finding the default VPC"):
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
            if not vpcs:
                raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"{region} has no default VPC",
                                  hint=f"create it: aws ec2 create-default-vpc --region {region}")
            vpc_id = str(vpcs[0]["VpcId"])
            subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                                    {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        usable = sorted((s for s in subnets if s["AvailabilityZone"] in zones), key=lambda s: s["AvailabilityZone"])
        if not usable:
            raise DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, f"the default VPC {vpc_id} has no default subnet in the "
                              f"zones offering {self.request.vm_type} ({', '.join(zones)})",
                              hint="create one: aws ec2 create-default-subnet --availability-zone ZONE (one of "
                              f"{', '.join(zones)})")
        group = ledger.find("aws.security_group")
        group_id = group.id if group is not None else self._create_group(ledger, vpc_id)
        self._open_ports(group_id)
        reporter.info(f"security group {group_id} in {vpc_id}: inbound TCP "
                      f"{', '.join(map(str, self.request.ports))} from anywhere, nothing else")
        return {"vpc_id": vpc_id, "security_group_id": group_id,
                "subnets": [{"id": s["SubnetId"], "zone": s["AvailabilityZone"]} for s in usable]}

    def _create_group(self, ledger: Ledger, vpc_id: str) -> str:
        ec2, name = self.client("ec2"), self.request.vm_name
        with _calling(f"creating the security group {name}"):
            try:
                group_id = str(ec2.create_security_group(
                    GroupName=name, Description=f"cvm-attest {name}: agent and workload ports only", VpcId=vpc_id,
                    TagSpecifications=[self._tag_spec("security-group")])["GroupId"])
            except ClientError as exc:
                if _code(exc) != "InvalidGroup.Duplicate":
                    raise
                found = ec2.describe_security_groups(Filters=[
                    {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]},
                    {"Name": f"tag:{TAG_KEY}", "Values": [name]}])["SecurityGroups"]
                if not found:
                    raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"a security group named {name} exists in {vpc_id} "
                                      "and is not this deployment's",
                                      hint="pass another --vm-name, or delete that security group") from None
                group_id = str(found[0]["GroupId"])
        ledger.record("aws.security_group", group_id, step="network", region=self.request.region, vpc_id=vpc_id)
        return group_id

    def _open_ports(self, group_id: str) -> None:
        permissions = [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                        "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "agent" if port == self.request.agent_port
                                      else "workload"}]} for port in self.request.ports]
        with _calling(f"opening TCP {', '.join(map(str, self.request.ports))} in {group_id}"):
            try:
                self.client("ec2").authorize_security_group_ingress(GroupId=group_id, IpPermissions=permissions)
            except ClientError as exc:
                if _code(exc) != "InvalidPermission.Duplicate":
                    raise

    # vm

    def _vm(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        entry = ledger.find("aws.instance")
        if entry is None:
            instance_id = self._launch(ledger, reporter)
        else:
            instance_id = entry.id
            reporter.info(f"instance {instance_id} was launched before: waiting for it")
        instance = self._wait_running(instance_id, reporter)
        snp = instance.get("CpuOptions", {}).get("AmdSevSnp")
        if snp != "enabled":
            raise DeployError(Reason.DEPLOY_SIZE_NOT_SEV_SNP, f"instance {instance_id} runs with CpuOptions.AmdSevSnp "
                              f"{snp!r}, not enabled: its memory is not SEV-SNP protected",
                              hint=f"remove it with cvm-cli destroy --ledger {ledger.path}")
        ip = str(instance["PublicIpAddress"])
        reporter.info(f"instance {instance_id} running in {instance['Placement']['AvailabilityZone']} at {ip}, "
                      "AMD SEV-SNP enabled")
        return {"instance_id": instance_id, "public_ip": ip, "zone": instance["Placement"]["AvailabilityZone"],
                "amd_sev_snp": snp}

    def _launch(self, ledger: Ledger, reporter: Reporter) -> str:
        preflight, network = ledger.outputs("preflight") or {}, ledger.outputs("network") or {}
        image_id = str((ledger.outputs("image") or {})["image_id"])
        group_id = str(network["security_group_id"])
        refusals = []
        for subnet in network["subnets"]:
            # Same token for the same launch: a retry after a lost answer returns the same instance.
            token = hashlib.sha256(f"{self.request.vm_name}/{image_id}/{subnet['id']}".encode()).hexdigest()[:32]
            with _calling(f"launching {self.request.vm_type} in {subnet['zone']}"):
                try:
                    answer = self.client("ec2").run_instances(
                        ImageId=image_id, InstanceType=self.request.vm_type, MinCount=1, MaxCount=1,
                        CpuOptions={"CoreCount": int(preflight["cores"]),
                                    "ThreadsPerCore": int(preflight["threads_per_core"]), "AmdSevSnp": "enabled"},
                        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled",
                                         "InstanceMetadataTags": "disabled"},
                        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet["id"], "Groups": [group_id],
                                            "AssociatePublicIpAddress": True, "DeleteOnTermination": True}],
                        TagSpecifications=[self._tag_spec("instance"), self._tag_spec("volume")],
                        ClientToken=token,
                    )
                except ClientError as exc:
                    if _code(exc) not in ("InsufficientInstanceCapacity", "Unsupported"):
                        raise
                    refusals.append(f"{subnet['zone']}: {_message(exc)}")
                    reporter.info(f"{subnet['zone']} refused: {_message(exc)}")
                    continue
            instance_id = str(answer["Instances"][0]["InstanceId"])
            ledger.record("aws.instance", instance_id, step="vm", region=self.request.region)
            return instance_id
        raise DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, f"no zone could launch {self.request.vm_type}: "
                          + "; ".join(refusals),
                          hint=f"try again later, another size ({sev_snp_sizes()}) or another region "
                          f"({', '.join(SEV_SNP_REGIONS)})")

    def _describe_instance(self, instance_id: str) -> dict[str, Any] | None:
        with _calling(f"reading the instance {instance_id}"):
            try:
                reservations = self.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
            except ClientError as exc:
                if _code(exc) == "InvalidInstanceID.NotFound":
                    return None
                raise
        instances = [i for r in reservations for i in r["Instances"]]
        return dict(instances[0]) if instances else None

    def _wait_running(self, instance_id: str, reporter: Reporter) -> dict[str, Any]:
        state = "not visible yet"
        for _ in range(INSTANCE_POLLS):
            instance = self._describe_instance(instance_id)
            if instance is not None:
                state = str(instance["State"]["Name"])
                if state == "running" and instance.get("PublicIpAddress"):
                    return instance
                if state in ("shutting-down", "terminated", "stopping", "stopped"):
                    why = instance.get("StateReason", {}).get("Message", "no reason given")
                    raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"instance {instance_id} is {state}: {why}",
                                      hint=f"read its console: aws ec2 get-console-output --instance-id {instance_id} "
                                      "--latest; then cvm-cli destroy --ledger FILE")
            reporter.info(f"instance {instance_id}: {state}")
            self.sleep(INSTANCE_POLL_SECONDS)
        raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"instance {instance_id} was not running with a public IP within "
                          f"{INSTANCE_POLLS * INSTANCE_POLL_SECONDS:g} s (last {state})",
                          hint="run the same command again to keep waiting, or cvm-cli destroy --ledger FILE")

    # --- delete ---------------------------------------------------------------------------------

    def delete(self, entry: LedgerEntry, reporter: Reporter) -> None:
        ec2 = self.client("ec2")
        gone = True
        with _calling(f"deleting {entry.kind} {entry.id}"):
            try:
                if entry.kind == "aws.instance":
                    ec2.terminate_instances(InstanceIds=[entry.id])
                    self._wait_terminated(entry.id, reporter)
                elif entry.kind == "aws.security_group":
                    self._delete_group(entry.id, reporter)
                elif entry.kind == "aws.image":
                    ec2.deregister_image(ImageId=entry.id)
                elif entry.kind == "aws.snapshot":
                    ec2.delete_snapshot(SnapshotId=entry.id)
                elif entry.kind == "aws.import_task":
                    self._cancel_import(entry.id, reporter)
                elif entry.kind == "aws.s3_object":
                    self._delete_object(entry)
                elif entry.kind == "aws.s3_multipart":
                    self._abort_upload(entry)
                else:
                    raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"the ledger lists {entry.kind}, which the AWS "
                                      "deployment never creates")
                gone = False
            except ClientError as exc:
                if _code(exc) not in _GONE_CODES:
                    raise
        reporter.info(f"{entry.kind} {entry.id}: {'already gone' if gone else 'deleted'}")

    def _wait_terminated(self, instance_id: str, reporter: Reporter) -> None:
        for _ in range(INSTANCE_POLLS):
            instance = self._describe_instance(instance_id)
            if instance is None or instance["State"]["Name"] == "terminated":
                return
            reporter.info(f"instance {instance_id}: {instance['State']['Name']}")
            self.sleep(INSTANCE_POLL_SECONDS)
        raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"instance {instance_id} did not terminate within "
                          f"{INSTANCE_POLLS * INSTANCE_POLL_SECONDS:g} s",
                          hint="run cvm-cli destroy --ledger FILE again")

    def _delete_group(self, group_id: str, reporter: Reporter) -> None:
        """Delete the group, waiting while the terminated instance's network interface still holds it."""
        for _ in range(GROUP_DELETE_TRIES):
            try:
                self.client("ec2").delete_security_group(GroupId=group_id)
                return
            except ClientError as exc:
                if _code(exc) != "DependencyViolation":
                    raise
                reporter.info(f"security group {group_id} still in use: waiting")
                self.sleep(INSTANCE_POLL_SECONDS)
        raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"security group {group_id} stayed in use",
                          hint="run cvm-cli destroy --ledger FILE again in a minute")

    def _cancel_import(self, task_id: str, reporter: Reporter) -> None:
        """Cancel an import still running; one that finished leaves a snapshot, deleted here."""
        ec2 = self.client("ec2")
        try:
            tasks = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])["ImportSnapshotTasks"]
        except ClientError as exc:
            if _code(exc).startswith("InvalidConversionTaskId"):
                return
            raise
        detail = tasks[0].get("SnapshotTaskDetail", {}) if tasks else {}
        if detail.get("Status") == "active":
            ec2.cancel_import_task(ImportTaskId=task_id, CancelReason="cvm-cli destroy")
        elif detail.get("Status") == "completed" and detail.get("SnapshotId"):
            reporter.info(f"import {task_id} had finished: deleting its snapshot {detail['SnapshotId']}")
            ec2.delete_snapshot(SnapshotId=detail["SnapshotId"])
