"""``cvm-cli deploy azure``: a DCasv5/DCadsv5/ECasv5/ECadsv5 confidential VM (AMD SEV-SNP) booted
from the image build's ``disk.vhd``.

The VHD becomes a managed disk created for upload (``createOption: Upload``) with the confidential
security type ``ConfidentialVM_VMGuestStateOnlyEncryptedWithPlatformKey``; its non-zero ranges are
written as pages through a write SAS. Azure attaches that disk to the VM as its OS disk, so the
"image" step creates nothing. The VM is ``securityType: ConfidentialVM`` with the vTPM on, Secure
Boot off (the image's UKI is not signed by a key Azure's UEFI trusts; the vTPM's measured boot and
the SNP report still cover it), no ``osProfile`` (no SSH key, no password: the image has no login)
and boot diagnostics on, so the serial console shows the boot. Inbound TCP is open on the agent's
port and ``--additional-ports`` only.

Every call goes through the Azure SDKs' own pipelines (azure-mgmt-compute, -network, -resource,
azure-storage-blob); credentials come from ``DefaultAzureCredential`` (``az login``, the
``AZURE_*`` environment variables, a managed identity). The dry run's price comes from the public
Azure Retail Prices API.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any, TypeVar

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.core.pipeline import policies
from azure.core.pipeline.transport import HttpTransport
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute import models as compute_models
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.core.polling.arm_polling import ARMPolling
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network import models as network_models
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.storage.blob import BlobClient

from offchain.errors import DeployError, Reason, RequestError

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

ARM = "https://management.azure.com"
ARM_SCOPE = f"{ARM}/.default"
PRICES = "https://prices.azure.com"
SUBSCRIPTIONS_API = "2022-12-01"
PRICES_API = "2023-01-01-preview"
DISK_SECURITY_TYPE = "ConfidentialVM_VMGuestStateOnlyEncryptedWithPlatformKey"
DISK_SKU = "Premium_LRS"
VNET_PREFIX = "10.0.0.0/16"
SUBNET_PREFIX = "10.0.0.0/24"
FIRST_RULE_PRIORITY = 1000
#: Put Page takes at most 4 MiB; zero ranges are found per 64 KiB block.
PAGE_PUT_MAX = 4 << 20
ZERO_BLOCK = 64 << 10
VHD_FOOTER = 512
SAS_SECONDS = 4 * 3600
POLL_SECONDS = 5.0
SIZES_THAT_WORK = ("Standard_DC2as_v5 (DCasv5), Standard_DC4ads_v5 (DCadsv5), Standard_EC2as_v5 (ECasv5), "
                   "Standard_EC4ads_v5 (ECadsv5)")

_SNP_SIZE = re.compile(r"^Standard_(?P<series>DC|EC)(?P<vcpus>\d+)(?P<kind>as|ads)_v5$", re.IGNORECASE)
_TDX_SIZE = re.compile(r"^Standard_(DC|EC)\d+e(d)?s_v[56]$", re.IGNORECASE)
_SGX_SIZE = re.compile(r"^Standard_DC\d+(d)?s_v[23]$", re.IGNORECASE)
_OTHER_AMD_CONFIDENTIAL = re.compile(r"^Standard_(DC|EC)\d+a(d)?s(_cc)?_v\d+$", re.IGNORECASE)
#: The SEV-SNP series' ``family`` in the resource SKU list (and the usages list), lower case.
_FAMILY_NAMES = {"standarddcasv5family", "standarddcadsv5family", "standardecasv5family", "standardecadsv5family"}
#: Azure's rule for a Linux VM's name (and so for the names derived from it).
_VM_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,55}[A-Za-z0-9_])?$")

_QUOTA_CODES = {"QuotaExceeded", "OperationNotAllowed", "PublicIPCountLimitReached"}
_UNAVAILABLE_CODES = {"SkuNotAvailable", "ZonalAllocationFailed", "AllocationFailed",
                      "OverconstrainedAllocationRequest", "OverconstrainedZonalAllocationRequest"}
_PERMISSION_CODES = {"AuthorizationFailed", "LinkedAuthorizationFailed", "AuthorizationPermissionMismatch",
                     "RequestDisallowedByPolicy"}
_REGION_CODES = {"LocationNotAvailableForResourceType", "NoRegisteredProviderFound", "InvalidLocation"}

CREDENTIALS_HINT = ("run az login, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or run where a "
                    "managed identity is assigned")
PERMISSION_HINT = ("give the identity the Contributor role on the resource group (on the subscription when the group "
                   "must be created)")
RESUME_HINT = "the ledger keeps what exists: fix the cause and run the same command again to resume, or cvm-cli destroy"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SevSnpSize:
    """A VM size of one of Azure's AMD SEV-SNP confidential series."""

    name: str
    series: str
    vcpus: int
    #: The family's name in the Compute usages (quota) list.
    quota_family: str

    @classmethod
    def parse(cls, vm_type: str) -> SevSnpSize:
        """``vm_type`` when it is a DCasv5/DCadsv5/ECasv5/ECadsv5 size; refused otherwise."""
        match = _SNP_SIZE.match(vm_type)
        if match:
            series, kind = match["series"].upper(), match["kind"].lower()
            return cls(name=vm_type, series=f"{series}{kind}v5", vcpus=int(match["vcpus"]),
                       quota_family=f"standard{series}{kind.upper()}v5Family")
        if _TDX_SIZE.match(vm_type):
            why = f"{vm_type} is an Intel TDX size; this toolkit verifies SEV-SNP (use Standard_DC2as_v5)"
        elif _SGX_SIZE.match(vm_type):
            why = f"{vm_type} is an Intel SGX enclave size, not a confidential VM"
        elif _OTHER_AMD_CONFIDENTIAL.match(vm_type):
            why = (f"{vm_type} is an AMD confidential size this toolkit does not deploy (only DCasv5, DCadsv5, "
                   "ECasv5, ECadsv5)")
        else:
            why = f"{vm_type} is not an AMD SEV-SNP confidential VM size"
        raise DeployError(Reason.DEPLOY_SIZE_NOT_SEV_SNP, why, hint=f"sizes that work: {SIZES_THAT_WORK}")


@dataclass(frozen=True, slots=True)
class Names:
    """What each resource of one VM is called; all derive from ``--vm-name``."""

    vm: str

    @property
    def disk(self) -> str:
        return f"{self.vm}-osdisk"

    @property
    def nsg(self) -> str:
        return f"{self.vm}-nsg"

    @property
    def vnet(self) -> str:
        return f"{self.vm}-vnet"

    @property
    def subnet(self) -> str:
        return "default"

    @property
    def public_ip(self) -> str:
        return f"{self.vm}-ip"

    @property
    def nic(self) -> str:
        return f"{self.vm}-nic"


def resource_id(subscription: str, group: str, provider_type: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{provider_type}/{name}"


# --- errors -------------------------------------------------------------------------------------------


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _error_code(exc: HttpResponseError) -> tuple[str, str]:
    """Azure's error code and message of ``exc`` (ARM's ``{"error": {"code", "message"}}``)."""
    if exc.error is not None and exc.error.code:
        return exc.error.code, exc.error.message or exc.message
    return f"HTTP {exc.status_code}", exc.message


def cloud_error(exc: HttpResponseError, doing: str, fallback: Reason = Reason.DEPLOY_CLOUD_ERROR) -> DeployError:
    """The DeployError of an Azure error answer to ``doing``; ``fallback`` for a code that names no
    cause the user can fix (quota, size, region, permission, credential)."""
    code, message = _error_code(exc)
    detail = f"{doing}: Azure answered {code}: {_first_line(message) or code}"
    if code in _PERMISSION_CODES or exc.status_code == 403:
        return DeployError(Reason.DEPLOY_PERMISSION_DENIED, detail, hint=PERMISSION_HINT, code=code)
    if exc.status_code == 401 or code in {"InvalidAuthenticationToken", "ExpiredAuthenticationToken"}:
        return DeployError(Reason.DEPLOY_CREDENTIALS, detail, hint=CREDENTIALS_HINT, code=code)
    if code in _QUOTA_CODES:
        return DeployError(Reason.DEPLOY_QUOTA_EXHAUSTED, detail, code=code,
                           hint="request more vCPU quota for the VM's family in this region (Azure portal > Quotas > "
                           "Compute), or pass a smaller --vm-type")
    if code in _UNAVAILABLE_CODES:
        return DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, detail, code=code,
                           hint="try again later, another --region, or another size of the series")
    if code in _REGION_CODES:
        return DeployError(Reason.DEPLOY_REGION_UNSUPPORTED, detail, code=code,
                           hint="pick a region with DCasv5 confidential VMs, e.g. westeurope, northeurope, eastus")
    return DeployError(fallback, detail, hint=RESUME_HINT, code=code)


@contextlib.contextmanager
def azure_errors(doing: str, fallback: Reason = Reason.DEPLOY_CLOUD_ERROR) -> Iterator[None]:
    """Turn what the Azure SDKs raise while ``doing`` into a DeployError with a fix hint."""
    try:
        yield
    except ClientAuthenticationError as exc:
        raise DeployError(Reason.DEPLOY_CREDENTIALS, f"{doing}: no usable Azure credential "
                          f"({_first_line(exc.message)})", hint=CREDENTIALS_HINT) from None
    except HttpResponseError as exc:
        raise cloud_error(exc, doing, fallback) from None
    except AzureError as exc:
        raise DeployError(fallback, f"{doing}: {_first_line(exc.message)}",
                          hint=f"check the connection to Azure; {RESUME_HINT}") from None


class ReportingPolling(ARMPolling):
    """ARM's long-running-operation polling, waiting with the deployment's ``sleep`` and reporting
    the status after each poll."""

    def __init__(self, label: str, reporter: Reporter, sleep: Callable[[float], None],
                 interval: float = POLL_SECONDS) -> None:
        super().__init__(timeout=interval)
        self._label = label
        self._reporter = reporter
        self._wait = sleep

    def _sleep(self, delay: float) -> None:
        self._wait(delay)

    def update_status(self) -> None:
        super().update_status()
        self._reporter.info(f"{self._label}: {self.status()}")


# --- the deployment -----------------------------------------------------------------------------------


class AzureDeployment(Deployment):
    """An Azure confidential VM (AMD SEV-SNP) from ``disk.vhd``, in ``--resource-group``."""

    cloud = "azure"

    def __init__(self, request: DeployRequest, *, credential: TokenCredential | None = None,
                 sleep: Callable[[float], None] = time.sleep, transport: HttpTransport[Any, Any] | None = None) -> None:
        super().__init__(request)
        self.size = SevSnpSize.parse(request.vm_type)
        if not _VM_NAME.match(request.vm_name):
            raise RequestError(Reason.INPUT_INVALID, f"--vm-name {request.vm_name!r} is not an Azure VM name: 1-57 "
                               "letters, digits, '.', '-' or '_', starting with a letter or digit")
        self.group = request.option("resource_group")
        self.names = Names(request.vm_name)
        self.credential: TokenCredential = credential if credential is not None else DefaultAzureCredential()
        self.sleep = sleep
        self._client_options: dict[str, Any] = {} if transport is None else {"transport": transport}
        self._subscription = request.options.get("subscription_id") or None

    # clients

    def _compute(self, subscription: str) -> ComputeManagementClient:
        return ComputeManagementClient(self.credential, subscription, **self._client_options)

    def _network(self, subscription: str) -> NetworkManagementClient:
        return NetworkManagementClient(self.credential, subscription, **self._client_options)

    def _resources(self, subscription: str) -> ResourceManagementClient:
        return ResourceManagementClient(self.credential, subscription, **self._client_options)

    def _polling(self, label: str, reporter: Reporter) -> ReportingPolling:
        return ReportingPolling(label, reporter, self.sleep)

    @cached_property
    def disk(self) -> ImageDisk:
        """``disk.vhd``, checked to be a fixed VHD Azure accepts for upload."""
        disk = ImageDisk.from_build(self.request.image_dir, "vhd")
        with disk.path.open("rb") as f:
            f.seek(max(disk.size - VHD_FOOTER, 0))
            cookie = f.read(8)
        if cookie != b"conectix" or (disk.size - VHD_FOOTER) % (1 << 20) != 0:
            raise DeployError(Reason.DEPLOY_IMAGE_MISSING, f"{disk.path} is not a fixed VHD of a whole number of MiB "
                              "(Azure's upload format)", hint=f"rebuild it with: cvm-cli image build WORKLOAD_DIR "
                              f"--out {self.request.image_dir} --format vhd")
        return disk

    @property
    def tags(self) -> dict[str, str]:
        tags = {"created-by": "cvm-attest", "cvm-attest-vm": self.request.vm_name}
        if self.disk.golden_id:
            tags["cvm-attest-golden-id"] = self.disk.golden_id
        return tags

    # the plan

    def plan(self) -> Plan:
        names, region = self.names, self.request.region
        resources = (
            PlannedResource("azure.resource_group", self.group,
                            {"created": "only when absent; then destroy deletes it"}),
            PlannedResource("azure.disk", names.disk, {
                "create_option": "Upload", "upload_size_bytes": self.disk.size, "hyper_v_generation": "V2",
                "os_type": "Linux", "security_type": DISK_SECURITY_TYPE, "sku": DISK_SKU}),
            PlannedResource("azure.nsg", names.nsg, {
                "inbound_allow_tcp": list(self.request.ports), "other_inbound": "denied (Azure's default rules)"}),
            PlannedResource("azure.vnet", names.vnet, {"address_space": VNET_PREFIX, "subnet": SUBNET_PREFIX}),
            PlannedResource("azure.public_ip", names.public_ip, {"sku": "Standard", "allocation": "Static"}),
            PlannedResource("azure.nic", names.nic, {"network_security_group": names.nsg,
                                                     "public_ip": names.public_ip}),
            PlannedResource("azure.vm", self.request.vm_name, {
                "vm_size": self.size.name, "series": self.size.series, "security_type": "ConfidentialVM",
                "security_encryption_type": "VMGuestStateOnly", "v_tpm_enabled": True, "secure_boot_enabled": False,
                "os_profile": "none (no SSH key, no password)", "os_disk": f"{names.disk} (Attach)",
                "boot_diagnostics": "on (managed storage)"}),
        )
        notes = (
            f"Azure boots the VM from the uploaded disk {names.disk}: no image resource is created",
            "Secure Boot is off: the image's UKI is not signed by a key Azure's UEFI trusts; the vTPM's measured "
            "boot and the SNP report cover the boot instead",
            "all-zero ranges of disk.vhd are not sent: the upload is at most the size shown",
            f"the price is the VM's Linux pay-as-you-go rate in {region}; the {DISK_SKU} disk and the Standard "
            "public IP are billed besides",
        )
        return Plan(self.request, resources, upload_bytes=self.disk.size, cost=self.price(), notes=notes)

    def price(self) -> Cost:
        """The size's Linux pay-as-you-go hourly list price from the Azure Retail Prices API
        (public, no credential), or unknown and why."""
        client: PipelineClient[HttpRequest, Any] = PipelineClient(
            PRICES, policies=[policies.HeadersPolicy(), policies.UserAgentPolicy(sdk_moniker="cvm-attest"),
                              policies.RetryPolicy(retry_total=0)], **self._client_options)
        odata = (f"serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq "
                 f"'{self.request.region.lower()}' and armSkuName eq '{self.size.name}'")
        request = HttpRequest("GET", f"{PRICES}/api/retail/prices",
                              params={"api-version": PRICES_API, "$filter": odata})
        try:
            response = client.send_request(request, connection_timeout=5, read_timeout=10)
            response.raise_for_status()
            items = response.json()["Items"]
            linux = [item for item in items
                     if item.get("unitOfMeasure") == "1 Hour" and item.get("type") == "Consumption"
                     and "Windows" not in str(item.get("productName", ""))
                     and not any(word in str(item.get("skuName", "")) for word in ("Spot", "Low Priority"))]
            if not linux:
                return Cost.unknown(f"the Azure Retail Prices API lists no Linux pay-as-you-go price for "
                                    f"{self.size.name} in {self.request.region}")
            linux.sort(key=lambda item: not item.get("isPrimaryMeterRegion", False))  # the primary meter first
            return Cost(Decimal(str(linux[0]["retailPrice"])), str(linux[0]["currencyCode"]),
                        "Azure Retail Prices API, Linux pay-as-you-go")
        except AzureError as exc:
            return Cost.unknown(f"the Azure Retail Prices API did not answer: {_first_line(exc.message)}")
        except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
            return Cost.unknown(f"the Azure Retail Prices API answered something unexpected: {exc!r}")

    # the steps

    def steps(self) -> list[Step]:
        return [
            Step("preflight", "checking credentials, the size, the region and the quota", self._preflight),
            Step("upload", f"uploading disk.vhd to the managed disk {self.names.disk}", self._upload),
            Step("image", "using the uploaded disk as the VM's OS disk", self._image),
            Step("network", "creating the network security group, network and public IP", self._network_step),
            Step("vm", f"creating the confidential VM {self.request.vm_name}", self._vm),
        ]

    def _subscription_of(self, ledger: Ledger) -> str:
        preflight = ledger.outputs("preflight")
        if preflight is None:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"{ledger.path} has no finished preflight step")
        return str(preflight["subscription_id"])

    def _resolve_subscription(self) -> str:
        """``--subscription-id``, else the credential's only enabled subscription."""
        if self._subscription:
            return self._subscription
        client: ARMPipelineClient[HttpRequest, Any] = ARMPipelineClient(ARM, policies=[
            policies.RequestIdPolicy(), policies.HeadersPolicy(), policies.UserAgentPolicy(sdk_moniker="cvm-attest"),
            policies.RetryPolicy(), ARMChallengeAuthenticationPolicy(self.credential, ARM_SCOPE),
            policies.NetworkTraceLoggingPolicy()], **self._client_options)
        with azure_errors("listing the credential's subscriptions"):
            response = client.send_request(HttpRequest("GET", f"{ARM}/subscriptions",
                                                       params={"api-version": SUBSCRIPTIONS_API}))
            response.raise_for_status()
            listed = response.json().get("value", [])
        enabled = [str(s["subscriptionId"]) for s in listed if s.get("state") == "Enabled"]
        if len(enabled) != 1:
            found = "no enabled subscription" if not enabled else f"{len(enabled)} subscriptions ({', '.join(enabled)})"
            raise DeployError(Reason.DEPLOY_CREDENTIALS, f"the Azure credential sees {found}",
                              hint="pass --subscription-id or set AZURE_SUBSCRIPTION_ID")
        self._subscription = enabled[0]
        return enabled[0]

    def _preflight(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        with azure_errors("getting an Azure token"):
            self.credential.get_token(ARM_SCOPE)
        subscription = self._resolve_subscription()
        reporter.info(f"subscription {subscription}")
        compute = self._compute(subscription)
        region = self.request.region.lower()
        with azure_errors(f"listing the VM sizes of {region}"):
            skus = [sku for sku in compute.resource_skus.list(filter=f"location eq '{region}'")
                    if sku.resource_type == "virtualMachines"]
        if not any(sku.family and sku.family.lower() in _FAMILY_NAMES for sku in skus):
            raise DeployError(Reason.DEPLOY_REGION_UNSUPPORTED, f"{region} offers no AMD SEV-SNP confidential VM "
                              "(DCasv5/ECasv5) to this subscription",
                              hint="pick a region with DCasv5 confidential VMs, e.g. westeurope, northeurope, eastus")
        sku = next((s for s in skus if (s.name or "").lower() == self.size.name.lower()), None)
        if sku is None:
            raise DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, f"{self.size.name} is not offered in {region}",
                              hint=f"another size of the {self.size.series} series, or another --region")
        capabilities = {c.name: c.value for c in sku.capabilities or [] if c.name}
        technology = capabilities.get("ConfidentialComputingType")
        if technology is not None and technology.upper() != "SNP":
            raise DeployError(Reason.DEPLOY_SIZE_NOT_SEV_SNP, f"Azure lists {self.size.name} as {technology}, not "
                              "SEV-SNP", hint=f"sizes that work: {SIZES_THAT_WORK}")
        self._check_restrictions(sku.restrictions or [], sku.location_info or [], region, reporter)
        vcpus = int(capabilities.get("vCPUs") or self.size.vcpus)
        reporter.info(f"{self.size.name} is offered in {region} ({technology or 'SEV-SNP'}, {vcpus} vCPUs)")
        self._check_quota(compute, region, vcpus, reporter)
        with azure_errors(f"looking up the resource group {self.group}"):
            exists = self._resources(subscription).resource_groups.check_existence(self.group)
        reporter.info(f"resource group {self.group} " + ("exists" if exists else "will be created"))
        return {"subscription_id": subscription, "vcpus": vcpus, "resource_group_existed": exists}

    def _check_restrictions(self, restrictions: list[Any], locations: list[Any], region: str,
                            reporter: Reporter) -> None:
        """Refuse a size Azure restricts for this subscription in the region, or in every zone it has
        there (the VM is regional, so some zones restricted still leave others)."""
        zones = {zone for info in locations if (info.location or "").lower() == region for zone in info.zones or []}
        for restriction in restrictions:
            info = restriction.restriction_info
            restricted_zones = set(info.zones or []) if info is not None else set()
            why = f"{self.size.name} is restricted in {region} ({restriction.reason_code or 'no reason given'})"
            if restriction.type == "Location" or (restriction.type == "Zone" and zones and zones <= restricted_zones):
                raise DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, why + " for this subscription",
                                  hint="another --region, another size of the series, or ask Azure support to "
                                  "lift the restriction")
            if restriction.type == "Zone":
                reporter.info(f"{why} in zone(s) {', '.join(sorted(restricted_zones))}; the VM is regional")

    def _check_quota(self, compute: ComputeManagementClient, region: str, vcpus: int, reporter: Reporter) -> None:
        with azure_errors(f"reading the vCPU quota of {region}"):
            usages = {(u.name.value or "").lower(): u for u in compute.usage.list(region)}
        for key, label in ((self.size.quota_family.lower(), f"the {self.size.series} family's vCPUs"),
                           ("cores", "the region's total vCPUs")):
            usage = usages.get(key)
            if usage is None:
                reporter.info(f"Azure reports no quota for {label}; it checks when the VM is created")
                continue
            reporter.info(f"quota: {label}: {usage.current_value} of {usage.limit} used, {vcpus} needed")
            if usage.current_value + vcpus > usage.limit:
                raise DeployError(Reason.DEPLOY_QUOTA_EXHAUSTED, f"{label} in {region}: {usage.current_value} of "
                                  f"{usage.limit} in use, {self.size.name} needs {vcpus} more",
                                  hint=f"request a quota increase for {usage.name.localized_value or key} in {region} "
                                  "(Azure portal > Quotas > Compute), or pass a smaller --vm-type",
                                  used=usage.current_value, limit=usage.limit, needed=vcpus)

    def _ensure_group(self, ledger: Ledger, reporter: Reporter, subscription: str) -> None:
        """Create the resource group when absent, and record it: destroy deletes only a group it created."""
        groups = self._resources(subscription).resource_groups
        with azure_errors(f"creating the resource group {self.group}"):
            if groups.check_existence(self.group):
                return
            groups.create_or_update(self.group, {"location": self.request.region, "tags": self.tags})
        ledger.record("azure.resource_group", f"/subscriptions/{subscription}/resourceGroups/{self.group}",
                      step="upload", subscription_id=subscription, resource_group=self.group, name=self.group)
        reporter.info(f"created the resource group {self.group} in {self.request.region}")

    def _existing(self, get: Callable[[], T], doing: str) -> T | None:
        with azure_errors(doing):
            try:
                return get()
            except ResourceNotFoundError:
                return None

    def _create(self, ledger: Ledger, reporter: Reporter, *, kind: str, name: str, provider_type: str, step: str,
                subscription: str, get: Callable[[], object],
                begin: Callable[[ReportingPolling], LROPoller[T]]) -> T:
        """PUT one resource and wait for it. One of that name already in the group but not in the
        ledger is someone else's: refused rather than overwritten (destroy would delete it). One
        in the ledger (a resume) is PUT again: the same body is idempotent."""
        recorded = ledger.find(kind)
        if recorded is None and self._existing(get, f"looking up {kind} {name}") is not None:
            raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"{kind} {name} already exists in {self.group} and this "
                              "deployment did not create it", hint="pass another --vm-name, or delete it yourself")
        with azure_errors(f"creating {kind} {name}"):
            poller = begin(self._polling(f"{kind} {name}", reporter))
            if recorded is None:
                ledger.record(kind, resource_id(subscription, self.group, provider_type, name), step=step,
                              subscription_id=subscription, resource_group=self.group, name=name)
            return poller.result()

    def _upload(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        subscription = self._subscription_of(ledger)
        self._ensure_group(ledger, reporter, subscription)
        disks = self._compute(subscription).disks
        name, disk = self.names.disk, self.disk
        disk_id = resource_id(subscription, self.group, "Microsoft.Compute/disks", name)
        current = self._existing(lambda: disks.get(self.group, name), f"looking up the disk {name}")
        if current is not None and ledger.find("azure.disk") is None:
            raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"a disk {name} already exists in {self.group} and this "
                              "deployment did not create it", hint="pass another --vm-name, or delete it yourself")
        if current is None:
            body: dict[str, Any] = {
                "location": self.request.region, "tags": self.tags, "sku": {"name": DISK_SKU},
                "properties": {
                    "osType": "Linux", "hyperVGeneration": "V2",
                    "creationData": {"createOption": "Upload", "uploadSizeBytes": disk.size},
                    "securityProfile": {"securityType": DISK_SECURITY_TYPE},
                },
            }
            with azure_errors(f"creating the upload disk {name}", Reason.DEPLOY_IMPORT_FAILED):
                poller = disks.begin_create_or_update(self.group, name, compute_models.Disk(body),
                                                      polling=self._polling(f"disk {name}", reporter))
                ledger.record("azure.disk", disk_id, step="upload", subscription_id=subscription,
                              resource_group=self.group, name=name)
                current = poller.result()
        state = current.properties.disk_state if current.properties is not None else None
        outputs = {"disk_id": disk_id, "disk_name": name, "disk_bytes": disk.size}
        if state == "Unattached":
            reporter.info(f"{name} was uploaded before (state Unattached): nothing to send")
            return {**outputs, "uploaded_bytes": 0}
        if state not in ("ReadyToUpload", "ActiveUpload"):
            raise DeployError(Reason.DEPLOY_IMPORT_FAILED, f"the disk {name} is in state {state}, not ready for an "
                              "upload",
                              hint=f"delete it with cvm-cli destroy --ledger {ledger.path}, then deploy again")
        with azure_errors(f"getting a write SAS for {name}", Reason.DEPLOY_IMPORT_FAILED):
            access = disks.begin_grant_access(self.group, name, {"access": "Write", "durationInSeconds": SAS_SECONDS},
                                              polling=self._polling(f"disk {name} access", reporter)).result()
        if not access.access_sas:
            raise DeployError(Reason.DEPLOY_IMPORT_FAILED, f"Azure granted write access to {name} without a SAS URL",
                              hint=RESUME_HINT)
        uploaded = self._write_pages(access.access_sas, disk, reporter)
        with azure_errors(f"finishing the upload of {name}", Reason.DEPLOY_IMPORT_FAILED):
            disks.begin_revoke_access(self.group, name, polling=self._polling(f"disk {name} access", reporter)).result()
        reporter.info(f"sent {uploaded:,} of {disk.size:,} bytes; the rest is zeros")
        return {**outputs, "uploaded_bytes": uploaded}

    def _write_pages(self, sas_url: str, disk: ImageDisk, reporter: Reporter) -> int:
        """Put the non-zero ranges of ``disk`` as pages (a fresh upload disk reads as zeros); the
        bytes sent."""
        blob = BlobClient.from_blob_url(sas_url, **self._client_options)
        zeros = bytes(ZERO_BLOCK)
        sent = 0
        with azure_errors("writing disk.vhd to the disk", Reason.DEPLOY_IMPORT_FAILED):
            for offset, data in chunks(disk.path, PAGE_PUT_MAX):
                start: int | None = None
                # one block past the end, so that a run reaching the end is written too
                for block in range(0, len(data) + ZERO_BLOCK, ZERO_BLOCK):
                    piece = data[block:block + ZERO_BLOCK]
                    if piece and piece != zeros[:len(piece)]:
                        start = block if start is None else start
                        continue
                    if start is not None:
                        end = min(block, len(data))
                        blob.upload_page(data[start:end], offset=offset + start, length=end - start)
                        sent += end - start
                        start = None
                reporter.transfer("disk.vhd", offset + len(data), disk.size)
        return sent

    def _image(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        upload = ledger.outputs("upload")
        if upload is None:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"{ledger.path} has no finished upload step")
        reporter.info(f"Azure attaches the managed disk {upload['disk_name']} as the OS disk: no image to create")
        return {"disk_id": upload["disk_id"]}

    def _network_step(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        subscription = self._subscription_of(ledger)
        network = self._network(subscription)
        names, region, group, tags = self.names, self.request.region, self.group, self.tags
        nsg_body: dict[str, Any] = {
            "location": region, "tags": tags,
            "properties": {"securityRules": [
                {"name": f"allow-tcp-{port}", "properties": {
                    "description": "cvm-attest: the agent" if port == self.request.agent_port else "--additional-ports",
                    "protocol": "Tcp", "access": "Allow", "direction": "Inbound",
                    "priority": FIRST_RULE_PRIORITY + index, "sourceAddressPrefix": "*", "sourcePortRange": "*",
                    "destinationAddressPrefix": "*", "destinationPortRange": str(port)}}
                for index, port in enumerate(self.request.ports)]},
        }
        nsg = self._create(ledger, reporter, kind="azure.nsg", name=names.nsg, step="network",
                           provider_type="Microsoft.Network/networkSecurityGroups", subscription=subscription,
                           get=lambda: network.network_security_groups.get(group, names.nsg),
                           begin=lambda p: network.network_security_groups.begin_create_or_update(
                               group, names.nsg, network_models.NetworkSecurityGroup(nsg_body), polling=p))
        vnet_body: dict[str, Any] = {
            "location": region, "tags": tags,
            "properties": {"addressSpace": {"addressPrefixes": [VNET_PREFIX]},
                           "subnets": [{"name": names.subnet, "properties": {"addressPrefix": SUBNET_PREFIX}}]},
        }
        vnet = self._create(ledger, reporter, kind="azure.vnet", name=names.vnet, step="network",
                            provider_type="Microsoft.Network/virtualNetworks", subscription=subscription,
                            get=lambda: network.virtual_networks.get(group, names.vnet),
                            begin=lambda p: network.virtual_networks.begin_create_or_update(
                                group, names.vnet, network_models.VirtualNetwork(vnet_body), polling=p))
        ip_body: dict[str, Any] = {
            "location": region, "tags": tags, "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
        }
        public_ip = self._create(ledger, reporter, kind="azure.public_ip", name=names.public_ip, step="network",
                                 provider_type="Microsoft.Network/publicIPAddresses", subscription=subscription,
                                 get=lambda: network.public_ip_addresses.get(group, names.public_ip),
                                 begin=lambda p: network.public_ip_addresses.begin_create_or_update(
                                     group, names.public_ip, network_models.PublicIPAddress(ip_body), polling=p))
        nsg_id = nsg.id or resource_id(subscription, group, "Microsoft.Network/networkSecurityGroups", names.nsg)
        vnet_id = vnet.id or resource_id(subscription, group, "Microsoft.Network/virtualNetworks", names.vnet)
        ip_id = public_ip.id or resource_id(subscription, group, "Microsoft.Network/publicIPAddresses",
                                            names.public_ip)
        nic_body: dict[str, Any] = {
            "location": region, "tags": tags,
            "properties": {
                "networkSecurityGroup": {"id": nsg_id},
                "ipConfigurations": [{"name": "ipconfig1", "properties": {
                    "primary": True, "privateIPAllocationMethod": "Dynamic",
                    "subnet": {"id": f"{vnet_id}/subnets/{names.subnet}"}, "publicIPAddress": {"id": ip_id}}}],
            },
        }
        nic = self._create(ledger, reporter, kind="azure.nic", name=names.nic, step="network",
                           provider_type="Microsoft.Network/networkInterfaces", subscription=subscription,
                           get=lambda: network.network_interfaces.get(group, names.nic),
                           begin=lambda p: network.network_interfaces.begin_create_or_update(
                               group, names.nic, network_models.NetworkInterface(nic_body), polling=p))
        nic_id = nic.id or resource_id(subscription, group, "Microsoft.Network/networkInterfaces", names.nic)
        reporter.info(f"inbound TCP open on {', '.join(str(p) for p in self.request.ports)} only")
        return {"nic_id": nic_id, "public_ip_name": names.public_ip, "nsg_id": nsg_id,
                "inbound_tcp_ports": list(self.request.ports)}

    def _vm(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        subscription = self._subscription_of(ledger)
        upload, network_outputs = ledger.outputs("upload"), ledger.outputs("network")
        if upload is None or network_outputs is None:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"{ledger.path} lacks the upload or network outputs")
        compute, name, group = self._compute(subscription), self.request.vm_name, self.group
        body: dict[str, Any] = {
            "location": self.request.region, "tags": self.tags,
            "properties": {
                "hardwareProfile": {"vmSize": self.size.name},
                "storageProfile": {"osDisk": {
                    "osType": "Linux", "createOption": "Attach",
                    "managedDisk": {"id": str(upload["disk_id"]),
                                    "securityProfile": {"securityEncryptionType": "VMGuestStateOnly"}}}},
                "securityProfile": {"securityType": "ConfidentialVM",
                                    "uefiSettings": {"secureBootEnabled": False, "vTpmEnabled": True}},
                "networkProfile": {"networkInterfaces": [{"id": str(network_outputs["nic_id"]),
                                                          "properties": {"primary": True}}]},
                "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
            },
        }
        vm = self._create(ledger, reporter, kind="azure.vm", name=name, step="vm",
                          provider_type="Microsoft.Compute/virtualMachines", subscription=subscription,
                          get=lambda: compute.virtual_machines.get(group, name),
                          begin=lambda p: compute.virtual_machines.begin_create_or_update(
                              group, name, compute_models.VirtualMachine(body), polling=p))
        ip_name = str(network_outputs["public_ip_name"])
        with azure_errors(f"reading the public IP {ip_name}"):
            public_ip = self._network(subscription).public_ip_addresses.get(group, ip_name)
        address = public_ip.properties.ip_address if public_ip.properties is not None else None
        if not address:
            raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"the public IP {ip_name} has no address", hint=RESUME_HINT)
        reporter.info(f"{name} runs at {address}; serial console: az vm boot-diagnostics get-boot-log "
                      f"-g {group} -n {name}")
        return {"vm_id": vm.id or resource_id(subscription, group, "Microsoft.Compute/virtualMachines", name),
                "public_ip": address}

    # teardown

    def delete(self, entry: LedgerEntry, reporter: Reporter) -> None:
        try:
            subscription, group, name = (str(entry.attrs[k]) for k in ("subscription_id", "resource_group", "name"))
        except KeyError as exc:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"the ledger's {entry.kind} {entry.id} lacks {exc}") \
                from None
        deleters: Mapping[str, Callable[[ReportingPolling], LROPoller[None]]] = {
            "azure.vm": lambda p: self._compute(subscription).virtual_machines.begin_delete(group, name, polling=p),
            "azure.nic": lambda p: self._network(subscription).network_interfaces.begin_delete(group, name, polling=p),
            "azure.public_ip": lambda p: self._network(subscription).public_ip_addresses.begin_delete(
                group, name, polling=p),
            "azure.vnet": lambda p: self._network(subscription).virtual_networks.begin_delete(group, name, polling=p),
            "azure.nsg": lambda p: self._network(subscription).network_security_groups.begin_delete(
                group, name, polling=p),
            "azure.disk": lambda p: self._delete_disk(subscription, group, name, p, reporter),
            "azure.resource_group": lambda p: self._resources(subscription).resource_groups.begin_delete(
                name, polling=p),
        }
        deleter = deleters.get(entry.kind)
        if deleter is None:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"the ledger names {entry.kind}, not an Azure resource "
                              "this deployment creates")
        with azure_errors(f"deleting {entry.kind} {name}"):
            try:
                deleter(self._polling(f"deleting {entry.kind} {name}", reporter)).result()
            except ResourceNotFoundError:
                reporter.info(f"{entry.kind} {name} was already gone")

    def _delete_disk(self, subscription: str, group: str, name: str, polling: ReportingPolling,
                     reporter: Reporter) -> LROPoller[None]:
        """Delete a disk, first ending an upload left open (Azure refuses to delete it then)."""
        disks = self._compute(subscription).disks
        disk = disks.get(group, name)
        if disk.properties is not None and disk.properties.disk_state in ("ActiveUpload", "ActiveSAS"):
            disks.begin_revoke_access(group, name, polling=self._polling(f"disk {name} access", reporter)).result()
        return disks.begin_delete(group, name, polling=polling)
