"""``cvm-cli deploy gcp``: an N2D Confidential VM (AMD SEV-SNP) on Compute Engine from the build's
``disk.tar.gz``, through google-cloud-compute (REST) and google-cloud-storage.

The disk goes to ``gs://BUCKET/VM/disk-SHA.tar.gz`` (a resumable upload), becomes an image with the
``SEV_SNP_CAPABLE`` guest OS feature, and boots an instance with ``confidentialInstanceType
SEV_SNP`` on AMD Milan in a VPC network of its own whose only ingress rule opens the requested TCP
ports. The project's ``default`` network is not used: its predefined rules open SSH, RDP and ICMP
to the internet. Credentials are Application Default Credentials (``google.auth.default()``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any, TypeVar
from urllib.parse import quote

import google.auth
import google_crc32c
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import Credentials
from google.cloud import billing_v1, compute_v1
from google.cloud import storage
# google-cloud-storage ships neither stubs nor py.typed: its objects are Any here.
from google.cloud.storage import exceptions as storage_exceptions

from offchain.errors import DeployError, Reason, RequestError

from deploy.core import (Cost, Deployment, DeployRequest, ImageDisk, Ledger, LedgerEntry, Plan, PlannedResource,
                         Reporter, Step, chunks)

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: Compute Engine's service id in the Cloud Billing Catalog.
COMPUTE_SERVICE = "services/6F81-5844-456A"
CPU_PLATFORM = "AMD Milan"
SUBNET_RANGE = "10.8.0.0/24"
GUEST_OS_FEATURES = ("SEV_SNP_CAPABLE", "UEFI_COMPATIBLE", "GVNIC")
#: GiB of memory per vCPU of each N2D shape (Compute Engine's machine family table).
N2D_GIB_PER_VCPU = {"standard": 4, "highmem": 8, "highcpu": 1}
_N2D = re.compile(r"n2d-(standard|highmem|highcpu)-([1-9][0-9]*)")
#: The longest VM name whose derived names (``NAME-allow-agent``, ``NAME-SHA16``) stay within
#: Compute Engine's 63 characters.
_VM_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?")
#: Regions outside the European Union (hence outside the EU multi-region) that the ``europe-`` prefix
#: names: London and Zurich.
_EUROPE_OUTSIDE_EU = frozenset({"europe-west2", "europe-west6"})
SIZE_HINT = "sizes that work: n2d-standard-4 (default), n2d-standard-N, n2d-highmem-N, n2d-highcpu-N"
ROLES_HINT = ("grant the caller roles/compute.instanceAdmin.v1, roles/compute.networkAdmin, "
              "roles/compute.securityAdmin and roles/compute.storageAdmin on the project")
BUCKET_ROLES_HINT = "grant roles/storage.objectAdmin and roles/storage.legacyBucketReader on the bucket"
CREDENTIALS_HINT = ("run gcloud auth application-default login, or point GOOGLE_APPLICATION_CREDENTIALS at a "
                    "service account key file")
#: Operation error codes that mean the zone cannot host the machine type now or at all.
_UNAVAILABLE_CODES = frozenset({"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                                "UNSUPPORTED_OPERATION", "CONDITION_NOT_MET"})
_QUOTA_CODES = frozenset({"QUOTA_EXCEEDED", "quotaExceeded"})

_Client = TypeVar("_Client")
#: ``extend(crc, data) -> crc``: CRC32C as Cloud Storage computes it (google_crc32c has no annotations).
_crc32c_extend: Callable[[int, bytes], int] = google_crc32c.extend


def _sev_snp_shape(vm_type: str) -> tuple[int, int]:
    """``(vCPUs, GiB)`` of an N2D machine type; any other type is refused with why it is not SEV-SNP."""
    match = _N2D.fullmatch(vm_type)
    if match is not None:
        vcpus = int(match.group(2))
        return vcpus, vcpus * N2D_GIB_PER_VCPU[match.group(1)]
    family = vm_type.split("-", 1)[0].lower()
    if family == "c3":
        why = "C3 confidential VMs are Intel TDX, not AMD SEV-SNP"
    elif family in {"c2d", "c3d"}:
        why = f"{family.upper()} confidential VMs are AMD SEV, without SNP's attestation report"
    elif family == "n2d":
        why = "only the predefined N2D shapes (standard, highmem, highcpu) are deployed"
    else:
        why = "Compute Engine offers AMD SEV-SNP on N2D machine types only"
    raise DeployError(Reason.DEPLOY_SIZE_NOT_SEV_SNP, f"{vm_type}: {why}", hint=SIZE_HINT)


def _bucket_covers(location: str, data_locations: list[str], region: str) -> bool:
    """Whether a bucket in ``location`` keeps its data in or next to ``region``."""
    location = location.lower()
    if location == region or region in {d.lower() for d in data_locations}:
        return True
    if location == "us":
        return region.startswith("us-")
    if location == "eu":
        return region.startswith("europe-") and region not in _EUROPE_OUTSIDE_EU
    return location == "asia" and region.startswith("asia-")


def _error_reasons(exc: api_exceptions.GoogleAPICallError) -> set[str]:
    reasons = {str(e.get("reason")) for e in exc.errors if isinstance(e, Mapping) and e.get("reason")}
    if exc.reason:
        reasons.add(exc.reason)
    return reasons


def _api_error(action: str, exc: api_exceptions.GoogleAPICallError) -> DeployError:
    """A Google API error as the user's next move: login, roles, quota, enable the API, or retry."""
    message = exc.message or str(exc)
    reasons = _error_reasons(exc)
    if isinstance(exc, api_exceptions.Unauthorized):
        return DeployError(Reason.DEPLOY_CREDENTIALS, f"{action}: the credentials were refused ({message})",
                           hint=CREDENTIALS_HINT)
    if reasons & {"accessNotConfigured", "SERVICE_DISABLED"}:
        return DeployError(Reason.DEPLOY_CLOUD_ERROR, f"{action}: {message}",
                           hint="enable the API: gcloud services enable compute.googleapis.com storage.googleapis.com")
    if reasons & _QUOTA_CODES:
        return DeployError(Reason.DEPLOY_QUOTA_EXHAUSTED, f"{action}: {message}",
                           hint="request more quota: console.cloud.google.com/iam-admin/quotas")
    if isinstance(exc, api_exceptions.Forbidden):
        return DeployError(Reason.DEPLOY_PERMISSION_DENIED, f"{action}: {message}", hint=ROLES_HINT)
    return DeployError(Reason.DEPLOY_CLOUD_ERROR, f"{action}: {message}",
                       hint="run the same command again to resume; cvm-cli destroy --ledger FILE removes what exists")


@contextlib.contextmanager
def _google(action: str) -> Iterator[None]:
    """Translate what the Google SDKs raise inside the block into :class:`DeployError`."""
    try:
        yield
    except api_exceptions.GoogleAPICallError as exc:
        raise _api_error(action, exc) from None
    except (auth_exceptions.DefaultCredentialsError, auth_exceptions.RefreshError) as exc:
        raise DeployError(Reason.DEPLOY_CREDENTIALS, f"{action}: no usable Google credentials ({exc})",
                          hint=CREDENTIALS_HINT) from None
    except storage_exceptions.InvalidResponse as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise DeployError(Reason.DEPLOY_PERMISSION_DENIED, f"{action}: HTTP {status} from Cloud Storage",
                              hint=BUCKET_ROLES_HINT) from None
        raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"{action}: HTTP {status} from Cloud Storage",
                          hint="run the same command again: the upload starts over") from None
    except storage_exceptions.DataCorruption as exc:
        raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"{action}: the uploaded object's checksum differs from the "
                          f"file's ({exc})", hint="run the same command again: the upload starts over") from None
    except (auth_exceptions.TransportError, requests.RequestException) as exc:
        raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"{action}: cannot reach Google Cloud ({exc})",
                          hint="check the network connection, then run the same command again") from None


def _money(units: int, nanos: int) -> Decimal:
    return Decimal(units) + Decimal(nanos) / Decimal(1_000_000_000)


@dataclass(frozen=True, slots=True)
class _Names:
    """Every name the deployment gives a resource, derived from the VM name and the disk digest."""

    vm: str
    object: str
    image: str
    network: str
    subnetwork: str
    firewall: str
    tag: str

    @classmethod
    def of(cls, vm_name: str, sha256: str) -> _Names:
        return cls(vm=vm_name, object=f"{vm_name}/disk-{sha256[:16]}.tar.gz", image=f"{vm_name}-{sha256[:16]}",
                   network=f"{vm_name}-net", subnetwork=f"{vm_name}-subnet", firewall=f"{vm_name}-allow-agent",
                   tag=f"{vm_name}-cvm")


class _ProgressReader:
    """The disk as the upload reads it, reporting the bytes handed over: the upload sends each chunk
    right after reading it, so the figure runs ahead of the wire by at most one chunk."""

    def __init__(self, file: IO[bytes], total: int, label: str, reporter: Reporter) -> None:
        self._file, self._total, self._label, self._reporter = file, total, label, reporter

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._reporter.transfer(self._label, self._file.tell(), self._total)
        return data

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)


class GcpDeployment(Deployment):
    """An N2D Confidential VM (SEV_SNP) on Compute Engine, from ``disk.tar.gz``.

    ``credentials`` default to Application Default Credentials; without any, :meth:`plan` still
    works (its cost is unknown) and every step and deletion fails with ``deploy.credentials_unavailable``.
    """

    cloud = "gcp"
    #: Bytes per request of the resumable upload (a multiple of 256 KiB, as Cloud Storage requires).
    chunk_bytes = 16 << 20
    poll_seconds = 5.0

    def __init__(self, request: DeployRequest, *, credentials: Credentials | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(request)
        self.vcpus, self.memory_gib = _sev_snp_shape(request.vm_type)
        if _VM_NAME.fullmatch(request.vm_name) is None:
            raise RequestError(Reason.INPUT_INVALID, f"--vm-name {request.vm_name!r}: Compute Engine names are "
                               "lowercase letters, digits and hyphens, start with a letter, at most 40 here",
                               hint="e.g. --vm-name cvm-attest")
        self.project = request.option("project_id")
        self.bucket = request.option("bucket")
        self.zone = request.options.get("zone") or f"{request.region}-a"
        self.disk = ImageDisk.from_build(request.image_dir, "gcp")
        self.names = _Names.of(request.vm_name, self.disk.sha256)
        self.sleep = sleep
        self._credential_error: DeployError | None = None
        if credentials is None:
            try:
                credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
            except auth_exceptions.DefaultCredentialsError as exc:
                self._credential_error = DeployError(Reason.DEPLOY_CREDENTIALS, f"no Google Application Default "
                                                     f"Credentials: {exc}", hint=CREDENTIALS_HINT)
        self._credentials_value = credentials
        self._clients: dict[type[Any], Any] = {}
        self._storage_client: Any = None

    # --- clients --------------------------------------------------------------------------------

    def _credentials(self) -> Credentials:
        if self._credentials_value is None:
            raise self._credential_error or DeployError(Reason.DEPLOY_CREDENTIALS, "no Google credentials",
                                                        hint=CREDENTIALS_HINT)
        return self._credentials_value

    def _client(self, factory: type[_Client]) -> _Client:
        """One Compute Engine client per API, made on first use (so that :meth:`plan` needs no
        credentials)."""
        if factory not in self._clients:
            self._clients[factory] = factory(credentials=self._credentials(), transport="rest")  # type: ignore[call-arg]
        client: _Client = self._clients[factory]
        return client

    def _storage(self) -> Any:
        if self._storage_client is None:
            self._storage_client = storage.Client(project=self.project, credentials=self._credentials())
        return self._storage_client

    # --- what is created ------------------------------------------------------------------------

    @property
    def object_url(self) -> str:
        return f"https://storage.googleapis.com/{self.bucket}/{quote(self.names.object)}"

    def _image_resource(self) -> compute_v1.Image:
        return compute_v1.Image(
            name=self.names.image, architecture="X86_64",
            raw_disk=compute_v1.RawDisk(source=self.object_url, container_type="TAR"),
            guest_os_features=[compute_v1.GuestOsFeature(type_=f) for f in GUEST_OS_FEATURES],
            labels={"cvm-attest-vm": self.names.vm},
            description=f"cvm-attest image {self.disk.sha256} (golden {self.disk.golden_id})",
        )

    def _network_resource(self) -> compute_v1.Network:
        return compute_v1.Network(name=self.names.network, auto_create_subnetworks=False,
                                  description=f"cvm-attest VM {self.names.vm}: no rule but its agent's ports")

    def _subnetwork_resource(self) -> compute_v1.Subnetwork:
        return compute_v1.Subnetwork(name=self.names.subnetwork, ip_cidr_range=SUBNET_RANGE,
                                     network=f"projects/{self.project}/global/networks/{self.names.network}")

    def _firewall_resource(self) -> compute_v1.Firewall:
        return compute_v1.Firewall(
            name=self.names.firewall, direction="INGRESS", priority=1000,
            network=f"projects/{self.project}/global/networks/{self.names.network}",
            allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=[str(p) for p in self.request.ports])],
            source_ranges=["0.0.0.0/0"], target_tags=[self.names.tag],
        )

    def _instance_resource(self) -> compute_v1.Instance:
        # No service account: omitted, the API attaches none (gcloud would attach the default one).
        return compute_v1.Instance(
            name=self.names.vm,
            machine_type=f"zones/{self.zone}/machineTypes/{self.request.vm_type}",
            min_cpu_platform=CPU_PLATFORM,
            confidential_instance_config=compute_v1.ConfidentialInstanceConfig(confidential_instance_type="SEV_SNP"),
            scheduling=compute_v1.Scheduling(on_host_maintenance="TERMINATE", automatic_restart=True),
            # Secure Boot off: the image's UKI is not signed by a key in Google's UEFI db. The vTPM
            # still measures it, and the agent's quote is what proves the boot chain.
            shielded_instance_config=compute_v1.ShieldedInstanceConfig(
                enable_vtpm=True, enable_integrity_monitoring=True, enable_secure_boot=False),
            disks=[compute_v1.AttachedDisk(
                boot=True, auto_delete=True, type_="PERSISTENT", interface="NVME",
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=f"projects/{self.project}/global/images/{self.names.image}",
                    disk_type=f"zones/{self.zone}/diskTypes/pd-balanced"),
            )],
            network_interfaces=[compute_v1.NetworkInterface(
                subnetwork=f"projects/{self.project}/regions/{self.request.region}/subnetworks/"
                           f"{self.names.subnetwork}",
                nic_type="GVNIC",
                access_configs=[compute_v1.AccessConfig(name="external-nat", type_="ONE_TO_ONE_NAT",
                                                        network_tier="PREMIUM")],
            )],
            tags=compute_v1.Tags(items=[self.names.tag]),
            metadata=compute_v1.Metadata(items=[compute_v1.Items(key="block-project-ssh-keys", value="TRUE"),
                                                compute_v1.Items(key="serial-port-enable", value="FALSE")]),
            labels={"cvm-attest-vm": self.names.vm},
        )

    # --- the plan -------------------------------------------------------------------------------

    def plan(self) -> Plan:
        image, firewall, instance = self._image_resource(), self._firewall_resource(), self._instance_resource()
        shielded = instance.shielded_instance_config
        resources = (
            PlannedResource("gcp.object", f"gs://{self.bucket}/{self.names.object}",
                            {"temporary": "deleted once the image exists", "bytes": self.disk.size}),
            PlannedResource("gcp.image", image.name, {
                "guest_os_features": [f.type_ for f in image.guest_os_features],
                "architecture": image.architecture, "source": image.raw_disk.source}),
            PlannedResource("gcp.network", self.names.network, {"auto_create_subnetworks": False}),
            PlannedResource("gcp.subnetwork", self.names.subnetwork,
                            {"region": self.request.region, "ip_cidr_range": SUBNET_RANGE}),
            PlannedResource("gcp.firewall", firewall.name, {
                "direction": firewall.direction, "allowed_tcp": list(firewall.allowed[0].ports),
                "source_ranges": list(firewall.source_ranges), "target_tags": list(firewall.target_tags)}),
            PlannedResource("gcp.instance", instance.name, {
                "zone": self.zone, "machine_type": self.request.vm_type,
                "confidential_instance_type": instance.confidential_instance_config.confidential_instance_type,
                "min_cpu_platform": instance.min_cpu_platform,
                "on_host_maintenance": instance.scheduling.on_host_maintenance,
                "enable_vtpm": shielded.enable_vtpm, "enable_integrity_monitoring": shielded.enable_integrity_monitoring,
                "enable_secure_boot": shielded.enable_secure_boot,
                "nic_type": instance.network_interfaces[0].nic_type, "external_ip": "ephemeral",
                "metadata": {i.key: i.value for i in instance.metadata.items},
                "service_account": "none", "ssh_keys": "none"}),
        )
        notes = (
            f"own VPC network {self.names.network}: its only ingress rule is TCP "
            f"{', '.join(str(p) for p in self.request.ports)} (the default network would also open SSH, RDP, ICMP)",
            "Secure Boot is off: the UKI is not signed by a key Google's firmware trusts; the vTPM measures it",
            "SEV-SNP runs in a few zones only (e.g. us-central1-a, europe-west4-a, asia-southeast1-a)",
        )
        return Plan(self.request, resources, upload_bytes=self.disk.size, cost=self._cost(), notes=notes)

    def _cost(self) -> Cost:
        """The Cloud Billing Catalog's on-demand N2D core and RAM prices in the region, with the
        confidential VM SKUs when the catalog lists them. Boot disk and external IP are extra."""
        if self._credentials_value is None:
            return Cost.unknown("no Google credentials to ask the Cloud Billing Catalog API")
        try:
            catalog = billing_v1.CloudCatalogClient(credentials=self._credentials_value, transport="rest")
            prices: dict[str, Decimal] = {}
            for sku in catalog.list_skus(request=billing_v1.ListSkusRequest(
                    parent=COMPUTE_SERVICE, currency_code="USD", page_size=5000)):
                part = self._price_part(sku)
                if part is not None and part not in prices and sku.pricing_info:
                    rate = sku.pricing_info[0].pricing_expression.tiered_rates[-1].unit_price
                    prices[part] = _money(rate.units, rate.nanos)
        except (api_exceptions.GoogleAPICallError, auth_exceptions.GoogleAuthError,
                requests.RequestException, IndexError) as exc:
            return Cost.unknown(f"Cloud Billing Catalog API unavailable: {str(exc).splitlines()[0][:200]}")
        if "core" not in prices or "ram" not in prices:
            return Cost.unknown(f"the Cloud Billing Catalog lists no on-demand N2D core and RAM prices for "
                                f"{self.request.region}")
        per_hour = self.vcpus * prices["core"] + self.memory_gib * prices["ram"]
        source = f"Cloud Billing Catalog API, {self.vcpus} N2D vCPU + {self.memory_gib} GiB in {self.request.region}"
        if "confidential_core" in prices and "confidential_ram" in prices:
            per_hour += self.vcpus * prices["confidential_core"] + self.memory_gib * prices["confidential_ram"]
            source += " with the Confidential VM surcharge"
        else:
            source += "; the catalog lists no Confidential VM surcharge, not included"
        return Cost(per_hour, "USD", source + "; boot disk and external IP extra")

    def _price_part(self, sku: billing_v1.Sku) -> str | None:
        """Which part of the price ``sku`` is, when it is an on-demand N2D price in the region."""
        if sku.category.usage_type != "OnDemand" or self.request.region not in sku.service_regions:
            return None
        description = sku.description
        if description.startswith("N2D AMD Instance Core running in"):
            return "core"
        if description.startswith("N2D AMD Instance Ram running in"):
            return "ram"
        lowered = description.lower()
        if "confidential" in lowered and "n2d" in lowered and not re.search(r"spot|preemptible|commit", lowered):
            if " core" in lowered:
                return "confidential_core"
            if " ram" in lowered:
                return "confidential_ram"
        return None

    # --- the steps ------------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        return [
            Step("preflight", f"checking project {self.project}, zone {self.zone}, {self.request.vm_type}, "
                 f"gs://{self.bucket}", self._preflight),
            Step("upload", f"uploading {self.disk.path.name} to gs://{self.bucket}", self._upload),
            Step("image", f"creating image {self.names.image} (SEV_SNP_CAPABLE)", self._image),
            Step("network", f"creating network {self.names.network} and its firewall rule", self._network),
            Step("vm", f"creating Confidential VM {self.names.vm} (SEV_SNP)", self._vm),
        ]

    def _preflight(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        region = self.request.region
        with _google(f"reading project {self.project}"):
            try:
                project = self._client(compute_v1.ProjectsClient).get(project=self.project)
            except api_exceptions.NotFound:
                raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"project {self.project} does not exist",
                                  hint="check --project-id (gcloud projects list)") from None
        with _google(f"reading region {region}"):
            try:
                region_info = self._client(compute_v1.RegionsClient).get(project=self.project, region=region)
            except api_exceptions.NotFound:
                raise DeployError(Reason.DEPLOY_REGION_UNSUPPORTED, f"Compute Engine has no region {region}",
                                  hint="pick one with SEV-SNP, e.g. --region us-central1") from None
        with _google(f"reading zone {self.zone}"):
            try:
                zone = self._client(compute_v1.ZonesClient).get(project=self.project, zone=self.zone)
            except api_exceptions.NotFound:
                raise DeployError(Reason.DEPLOY_REGION_UNSUPPORTED, f"Compute Engine has no zone {self.zone}",
                                  hint=f"pass --zone with one of {region}'s zones") from None
        if zone.region.rsplit("/", 1)[-1] != region:
            raise DeployError(Reason.DEPLOY_REGION_UNSUPPORTED, f"zone {self.zone} is in "
                              f"{zone.region.rsplit('/', 1)[-1]}, not in {region}",
                              hint=f"pass --zone with one of {region}'s zones, or --region to match the zone")
        if zone.status != "UP":
            raise DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, f"zone {self.zone} is {zone.status}",
                              hint=f"pass --zone with another of {region}'s zones")
        if CPU_PLATFORM not in zone.available_cpu_platforms:
            raise DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, f"zone {self.zone} has no {CPU_PLATFORM} CPUs "
                              f"(it has {', '.join(zone.available_cpu_platforms) or 'none listed'})",
                              hint="SEV-SNP needs AMD Milan: try us-central1-a, europe-west4-a or asia-southeast1-a")
        with _google(f"reading machine type {self.request.vm_type}"):
            try:
                machine = self._client(compute_v1.MachineTypesClient).get(
                    project=self.project, zone=self.zone, machine_type=self.request.vm_type)
            except api_exceptions.NotFound:
                raise DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, f"{self.request.vm_type} is not offered in "
                                  f"zone {self.zone}", hint=f"pass another --zone, or {SIZE_HINT}") from None
        needs = {"N2D_CPUS": machine.guest_cpus, "CPUS": machine.guest_cpus, "IN_USE_ADDRESSES": 1}
        self._check_quota(needs, region_info.quotas, f"region {region}")
        self._check_quota({"NETWORKS": 1, "SUBNETWORKS": 1, "FIREWALLS": 1, "IMAGES": 1}, project.quotas,
                          f"project {self.project}")
        location = self._check_bucket()
        reporter.info(f"{self.request.vm_type}: {machine.guest_cpus} vCPU, {machine.memory_mb} MB in {self.zone}; "
                      f"bucket in {location}")
        return {"project": self.project, "zone": self.zone, "vcpus": machine.guest_cpus,
                "memory_mb": machine.memory_mb, "bucket_location": location}

    @staticmethod
    def _check_quota(needs: Mapping[str, int], quotas: Any, where: str) -> None:
        for quota in quotas:
            need = needs.get(quota.metric)
            if need is not None and quota.limit - quota.usage < need:
                raise DeployError(Reason.DEPLOY_QUOTA_EXHAUSTED, f"{where}: quota {quota.metric} has "
                                  f"{quota.limit - quota.usage:g} left (limit {quota.limit:g}, in use "
                                  f"{quota.usage:g}); the deployment needs {need}",
                                  hint=f"free some {quota.metric} or request more: "
                                  "console.cloud.google.com/iam-admin/quotas")

    def _check_bucket(self) -> str:
        with _google(f"reading bucket gs://{self.bucket}"):
            try:
                bucket = self._storage().get_bucket(self.bucket)
            except api_exceptions.Forbidden as exc:
                raise DeployError(Reason.DEPLOY_PERMISSION_DENIED, f"reading bucket gs://{self.bucket}: "
                                  f"{exc.message}", hint=BUCKET_ROLES_HINT) from None
            except api_exceptions.NotFound:
                raise DeployError(Reason.DEPLOY_BUCKET_UNUSABLE, f"bucket gs://{self.bucket} does not exist",
                                  hint=f"create it: gcloud storage buckets create gs://{self.bucket} "
                                  f"--location {self.request.region}") from None
            location = str(bucket.location)
            data_locations = list(bucket.data_locations or [])
            granted = set(bucket.test_iam_permissions(
                ["storage.objects.create", "storage.objects.get", "storage.objects.delete"]))
        if not _bucket_covers(location, data_locations, self.request.region):
            raise DeployError(Reason.DEPLOY_BUCKET_UNUSABLE, f"bucket gs://{self.bucket} is in {location}, which "
                              f"does not cover {self.request.region}",
                              hint=f"use a bucket in {self.request.region} or its multi-region (US, EU, ASIA)")
        missing = {"storage.objects.create", "storage.objects.get", "storage.objects.delete"} - granted
        if missing:
            raise DeployError(Reason.DEPLOY_PERMISSION_DENIED, f"on gs://{self.bucket} the caller lacks "
                              f"{', '.join(sorted(missing))}", hint=BUCKET_ROLES_HINT)
        return location

    def _upload(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        crc32c, md5 = self._local_checksums()
        name = self.names.object
        outputs = {"bucket": self.bucket, "object": name, "url": self.object_url, "bytes": self.disk.size,
                   "crc32c": crc32c}
        with _google(f"uploading gs://{self.bucket}/{name}"):
            bucket = self._storage().bucket(self.bucket)
            existing = bucket.get_blob(name)
            if existing is not None and existing.size == self.disk.size and existing.crc32c == crc32c \
                    and existing.md5_hash in (None, md5):
                reporter.info(f"gs://{self.bucket}/{name} already holds this disk: not uploaded again")
            else:
                blob = bucket.blob(name, chunk_size=self.chunk_bytes)
                with self.disk.path.open("rb") as f:
                    blob.upload_from_file(_ProgressReader(f, self.disk.size, "disk.tar.gz", reporter),
                                          size=self.disk.size, content_type="application/gzip",
                                          checksum="crc32c")
        ledger.record("gcp.object", f"gs://{self.bucket}/{name}", step="upload", bucket=self.bucket, name=name)
        return outputs

    def _local_checksums(self) -> tuple[str, str]:
        """The disk's CRC32C and MD5, base64 as Cloud Storage reports them."""
        crc = 0
        md5 = hashlib.md5(usedforsecurity=False)
        for _, data in chunks(self.disk.path, 1 << 20):
            crc = _crc32c_extend(crc, data)
            md5.update(data)
        return base64.b64encode(crc.to_bytes(4, "big")).decode(), base64.b64encode(md5.digest()).decode()

    def _image(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        image = self._image_resource()
        self._ensure(ledger, reporter, kind="gcp.image", name=image.name, step="image", attrs={},
                     create=lambda: self._client(compute_v1.ImagesClient).insert_unary(
                         project=self.project, image_resource=image),
                     failed=Reason.DEPLOY_IMPORT_FAILED)
        temporary = ledger.find("gcp.object")
        if temporary is not None:
            self.delete(temporary, reporter)
            ledger.forget(temporary)
        return {"image": image.name, "self_link": f"projects/{self.project}/global/images/{image.name}"}

    def _network(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        network, subnetwork, firewall = self._network_resource(), self._subnetwork_resource(), self._firewall_resource()
        self._ensure(ledger, reporter, kind="gcp.network", name=network.name, step="network", attrs={},
                     create=lambda: self._client(compute_v1.NetworksClient).insert_unary(
                         project=self.project, network_resource=network))
        self._ensure(ledger, reporter, kind="gcp.subnetwork", name=subnetwork.name, step="network",
                     attrs={"region": self.request.region},
                     create=lambda: self._client(compute_v1.SubnetworksClient).insert_unary(
                         project=self.project, region=self.request.region, subnetwork_resource=subnetwork))
        self._ensure(ledger, reporter, kind="gcp.firewall", name=firewall.name, step="network", attrs={},
                     create=lambda: self._client(compute_v1.FirewallsClient).insert_unary(
                         project=self.project, firewall_resource=firewall))
        reporter.info(f"ingress: TCP {', '.join(str(p) for p in self.request.ports)} from 0.0.0.0/0 to tag "
                      f"{self.names.tag}; nothing else")
        return {"network": network.name, "subnetwork": subnetwork.name, "firewall": firewall.name,
                "tag": self.names.tag, "allowed_tcp": list(self.request.ports)}

    def _vm(self, ledger: Ledger, reporter: Reporter) -> dict[str, Any]:
        instance = self._instance_resource()
        self._ensure(ledger, reporter, kind="gcp.instance", name=instance.name, step="vm", attrs={"zone": self.zone},
                     create=lambda: self._client(compute_v1.InstancesClient).insert_unary(
                         project=self.project, zone=self.zone, instance_resource=instance))
        with _google(f"reading instance {instance.name}"):
            created = self._client(compute_v1.InstancesClient).get(project=self.project, zone=self.zone,
                                                                   instance=instance.name)
        addresses = [a.nat_i_p for n in created.network_interfaces for a in n.access_configs if a.nat_i_p]
        if not addresses:
            raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"instance {instance.name} has no external IP",
                              hint="run the same command again; cvm-cli destroy --ledger FILE removes it")
        reporter.info(f"{instance.name}: {created.status} on {created.cpu_platform or CPU_PLATFORM}, "
                      f"IP {addresses[0]}")
        return {"instance": instance.name, "zone": self.zone, "public_ip": addresses[0],
                "self_link": created.self_link, "status": created.status}

    # --- creating, resuming, waiting --------------------------------------------------------------

    def _ensure(self, ledger: Ledger, reporter: Reporter, *, kind: str, name: str, step: str, attrs: dict[str, str],
                create: Callable[[], compute_v1.Operation], failed: Reason = Reason.DEPLOY_CLOUD_ERROR) -> None:
        """Create ``name`` and wait until it exists. Resumed, a recorded one is waited for instead;
        one whose creation failed is deleted and created again."""
        entry = ledger.find(kind)
        if entry is not None and entry.id == name:
            operation = self._operation(entry)
            # Compute Engine keeps an operation for days after it finished: one it no longer knows
            # finished long ago, and the next step's use of the resource tells if it failed.
            if operation is None:
                return
            if not operation.error.errors:
                self._wait(entry, reporter, failed)
                return
            self.delete(entry, reporter)
            ledger.forget(entry)
        with _google(f"creating {kind} {name}"):
            try:
                operation = create()
            except api_exceptions.Conflict:
                raise DeployError(Reason.DEPLOY_CLOUD_ERROR, f"a {kind.removeprefix('gcp.')} named {name} already "
                                  f"exists in project {self.project} and this ledger did not create it",
                                  hint="delete it, or pass another --vm-name") from None
        entry = ledger.record(kind, name, step=step, project=self.project, operation=operation.name, **attrs)
        self._wait(entry, reporter, failed)

    def _operation_client(self, attrs: Mapping[str, Any]) -> Callable[[str], compute_v1.Operation]:
        project = str(attrs["project"])
        if "zone" in attrs:
            zonal = self._client(compute_v1.ZoneOperationsClient)
            return lambda name: zonal.get(project=project, zone=str(attrs["zone"]), operation=name)
        if "region" in attrs:
            regional = self._client(compute_v1.RegionOperationsClient)
            return lambda name: regional.get(project=project, region=str(attrs["region"]), operation=name)
        global_ = self._client(compute_v1.GlobalOperationsClient)
        return lambda name: global_.get(project=project, operation=name)

    def _operation(self, entry: LedgerEntry) -> compute_v1.Operation | None:
        """The recorded creation's operation as it is now; None once Compute Engine forgot it."""
        with _google(f"reading the operation of {entry.kind} {entry.id}"):
            try:
                return self._operation_client(entry.attrs)(str(entry.attrs["operation"]))
            except api_exceptions.NotFound:
                return None

    def _wait(self, entry: LedgerEntry, reporter: Reporter, failed: Reason,
              operation: str | None = None) -> None:
        """Poll ``entry``'s operation (its creation, or ``operation``) until done; its errors raised."""
        name = operation or str(entry.attrs["operation"])
        get = self._operation_client(entry.attrs)
        label = f"{entry.kind.removeprefix('gcp.')} {entry.id}"
        while True:
            with _google(f"waiting for {label}"):
                try:
                    status = get(name)
                except api_exceptions.NotFound:
                    return
            if status.status == compute_v1.Operation.Status.DONE:
                break
            reporter.info(f"{label}: {status.operation_type} {status.status.name.lower()}, {status.progress}%")
            self.sleep(self.poll_seconds)
        errors = [(e.code, e.message) for e in status.error.errors]
        if not errors:
            return
        codes = {code for code, _ in errors}
        detail = f"{status.operation_type} {label} failed: " + "; ".join(f"{c}: {m}" for c, m in errors)
        if codes & _QUOTA_CODES:
            raise DeployError(Reason.DEPLOY_QUOTA_EXHAUSTED, detail,
                              hint="request more quota (console.cloud.google.com/iam-admin/quotas), then run again")
        if entry.kind == "gcp.instance" and codes & _UNAVAILABLE_CODES:
            raise DeployError(Reason.DEPLOY_SIZE_UNAVAILABLE, detail,
                              hint=f"run again later, or pass another --zone of {self.request.region} "
                              "(SEV-SNP zones: us-central1-a, europe-west4-a, asia-southeast1-a)")
        if codes == {"RESOURCE_NOT_FOUND"} and status.operation_type == "delete":
            return
        raise DeployError(failed, detail, hint="fix the cause, then run the same command again (it resumes); "
                          "cvm-cli destroy --ledger FILE removes what was created")

    # --- deleting ---------------------------------------------------------------------------------

    def delete(self, entry: LedgerEntry, reporter: Reporter) -> None:
        name = entry.id
        project = str(entry.attrs.get("project", self.project))
        calls: dict[str, Callable[[], compute_v1.Operation]] = {
            "gcp.instance": lambda: self._client(compute_v1.InstancesClient).delete_unary(
                project=project, zone=str(entry.attrs.get("zone")), instance=name),
            "gcp.firewall": lambda: self._client(compute_v1.FirewallsClient).delete_unary(
                project=project, firewall=name),
            "gcp.subnetwork": lambda: self._client(compute_v1.SubnetworksClient).delete_unary(
                project=project, region=str(entry.attrs.get("region")), subnetwork=name),
            "gcp.network": lambda: self._client(compute_v1.NetworksClient).delete_unary(
                project=project, network=name),
            "gcp.image": lambda: self._client(compute_v1.ImagesClient).delete_unary(project=project, image=name),
        }
        if entry.kind == "gcp.object":
            with _google(f"deleting {name}"):
                try:
                    self._storage().bucket(str(entry.attrs["bucket"])).blob(
                        str(entry.attrs["name"])).delete()
                except api_exceptions.NotFound:
                    reporter.info(f"{name}: already gone")
                    return
            reporter.info(f"deleted {name}")
            return
        if entry.kind not in calls:
            raise DeployError(Reason.DEPLOY_LEDGER_MALFORMED, f"the ledger names a resource kind {entry.kind!r} "
                              "that cvm-cli deploy gcp does not create")
        with _google(f"deleting {entry.kind} {name}"):
            try:
                operation = calls[entry.kind]()
            except api_exceptions.NotFound:
                reporter.info(f"{entry.kind} {name}: already gone")
                return
        self._wait(entry, reporter, Reason.DEPLOY_CLOUD_ERROR, operation=operation.name)
        reporter.info(f"deleted {entry.kind} {name}")
