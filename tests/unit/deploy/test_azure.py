"""deploy.azure against Azure's REST API as the SDKs speak it: the requests go through the real
azure-mgmt-* and azure-storage-blob pipelines (RequestsTransport) and ``responses`` answers them
with the REST API's documented shapes (recorded/azure/*.json and the bodies below). Each test
checks the requests the deployment sent, not only what it returned."""

from __future__ import annotations

import copy
import io
import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from click.testing import CliRunner

from deploy.azure import AzureDeployment, SevSnpSize
from deploy.core import DeployRequest, Ledger, Reporter, destroy, run_steps
from offchain.cli.root import cli
from offchain.errors import DeployError, Reason

RECORDED = Path(__file__).parent / "recorded" / "azure"
ARM = "https://management.azure.com"
SUB = "6d1f3c2a-9b0e-4d7c-8a5f-2e4b6c8d0a1f"
RG = "cvm-rg"
REGION = "westeurope"
VM = "cvm-test"
GROUP_URL = f"{ARM}/subscriptions/{SUB}/resourcegroups/{RG}"
PROVIDERS = f"{ARM}/subscriptions/{SUB}/resourceGroups/{RG}/providers"
DISK_URL = f"{PROVIDERS}/Microsoft.Compute/disks/{VM}-osdisk"
VM_URL = f"{PROVIDERS}/Microsoft.Compute/virtualMachines/{VM}"
NSG_URL = f"{PROVIDERS}/Microsoft.Network/networkSecurityGroups/{VM}-nsg"
VNET_URL = f"{PROVIDERS}/Microsoft.Network/virtualNetworks/{VM}-vnet"
IP_URL = f"{PROVIDERS}/Microsoft.Network/publicIPAddresses/{VM}-ip"
NIC_URL = f"{PROVIDERS}/Microsoft.Network/networkInterfaces/{VM}-nic"
SKUS_URL = f"{ARM}/subscriptions/{SUB}/providers/Microsoft.Compute/skus"
USAGES_URL = f"{ARM}/subscriptions/{SUB}/providers/Microsoft.Compute/locations/{REGION}/usages"
PRICES_URL = "https://prices.azure.com/api/retail/prices"
BLOB_URL = "https://md-impexp-q0wz3rbt5k1d.z38.blob.storage.azure.net/v1xkqjbnwfzq/abcd"
SAS = f"{BLOB_URL}?sv=2018-03-28&sr=b&si=9f0c7d6e-upload&sig=c2lnbmF0dXJl"
MIB = 1 << 20
PUBLIC_IP = "20.61.14.7"
NOT_FOUND = {"error": {"code": "ResourceNotFound", "message": "The Resource was not found."}}


def recorded(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return document


class FakeCredential:
    """A TokenCredential that always has a token (the service side is what ``responses`` fakes)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("fake-token", 4_102_444_800)


class RefusingCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token from the included "
                                        "credentials.\nAttempted credentials: ...")


class Azure:
    """Answers for one deployment's requests, registered in the order the deployment sends them."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self._operations = 0

    def operation_url(self) -> str:
        self._operations += 1
        return f"{ARM}/subscriptions/{SUB}/providers/Microsoft.Compute/locations/{REGION}/operations/{self._operations}"

    def missing(self, url: str) -> None:
        self.mock.get(url, status=404, json=NOT_FOUND)

    def put_async(self, url: str, body: dict[str, Any], *, status: int = 201, polls: int = 1,
                  error: tuple[str, str] | None = None) -> None:
        """PUT answered ``status`` with Azure-AsyncOperation (the disk RP answers 202, the others
        201); ``polls`` InProgress answers, then Succeeded and the resource (or Failed with
        ``error``)."""
        operation = self.operation_url()
        creating = copy.deepcopy(body)
        creating["properties"]["provisioningState"] = "Creating"
        self.mock.put(url, status=status, json=creating,
                      headers={"Azure-AsyncOperation": operation, "Location": operation})
        for _ in range(polls):
            self.mock.get(operation, json={"status": "InProgress"})
        if error is not None:
            self.mock.get(operation, json={"status": "Failed", "error": {"code": error[0], "message": error[1]}})
            return
        self.mock.get(operation, json={"status": "Succeeded"})
        self.mock.get(url, json=body)

    def put_done(self, url: str, body: dict[str, Any]) -> None:
        self.mock.put(url, status=201, json=body)

    def delete(self, url: str, *, status: int = 200) -> None:
        if status == 202:
            location = self.operation_url()
            self.mock.delete(url, status=202, headers={"Location": location})
            self.mock.get(location, status=200)
        else:
            self.mock.delete(url, status=status, json=NOT_FOUND if status == 404 else None)

    # one step's answers each

    def preflight(self, *, skus: dict[str, Any] | None = None, usages: dict[str, Any] | None = None,
                  group_exists: bool = False) -> None:
        self.mock.get(SKUS_URL, json=skus or recorded("skus.json"))
        self.mock.get(USAGES_URL, json=usages or recorded("usages.json"))
        self.mock.head(GROUP_URL, status=204 if group_exists else 404)

    def upload(self, *, group_exists: bool = False, disk_error: tuple[str, str] | None = None) -> None:
        self.mock.head(GROUP_URL, status=204 if group_exists else 404)
        if not group_exists:
            self.mock.put(GROUP_URL, status=201, json={"id": f"/subscriptions/{SUB}/resourceGroups/{RG}",
                                                       "name": RG, "location": REGION,
                                                       "properties": {"provisioningState": "Succeeded"}})
        self.missing(DISK_URL)
        self.put_async(DISK_URL, disk(state="ReadyToUpload"), status=202, error=disk_error)
        if disk_error is None:
            self.grant_and_pages()

    def grant_and_pages(self) -> None:
        location = self.operation_url()
        self.mock.post(f"{DISK_URL}/beginGetAccess", status=202, headers={"Location": location})
        self.mock.get(location, status=202, headers={"Location": location})
        self.mock.get(location, json={"accessSAS": SAS})
        self.mock.put(BLOB_URL, status=201, headers={"ETag": '"0x8DC"', "x-ms-blob-sequence-number": "0"})
        self.mock.post(f"{DISK_URL}/endGetAccess", status=200)

    def network(self) -> None:
        for url in (NSG_URL, VNET_URL, IP_URL, NIC_URL):
            self.missing(url)
            if url == NSG_URL:
                self.put_async(url, network_resource(url))
            else:
                self.put_done(url, network_resource(url))

    def vm(self, *, error: tuple[str, str] | None = None) -> None:
        self.missing(VM_URL)
        self.put_async(VM_URL, {"id": VM_URL.removeprefix(ARM), "name": VM, "location": REGION,
                                "properties": {"provisioningState": "Succeeded"}}, polls=2, error=error)
        if error is None:
            self.mock.get(IP_URL, json=network_resource(IP_URL, ipAddress=PUBLIC_IP))


def disk(*, state: str) -> dict[str, Any]:
    return {"id": DISK_URL.removeprefix(ARM), "name": f"{VM}-osdisk", "location": REGION,
            "sku": {"name": "Premium_LRS", "tier": "Premium"},
            "properties": {"provisioningState": "Succeeded", "diskState": state, "osType": "Linux",
                           "hyperVGeneration": "V2", "creationData": {"createOption": "Upload"},
                           "securityProfile": {"securityType":
                                               "ConfidentialVM_VMGuestStateOnlyEncryptedWithPlatformKey"}}}


def network_resource(url: str, **properties: Any) -> dict[str, Any]:
    return {"id": url.removeprefix(ARM), "name": url.rsplit("/", 1)[1], "location": REGION,
            "properties": {"provisioningState": "Succeeded", **properties}}


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    """Every HTTP request of the test goes here; an unregistered one fails, every registered
    answer must have been asked for."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as requests_mock:
        yield requests_mock


@pytest.fixture
def azure(mock: responses.RequestsMock) -> Azure:
    return Azure(mock)


def make_request(image_dir: Path, *, vm_type: str = "Standard_DC2as_v5", additional_ports: tuple[int, ...] = (443,),
                 subscription: str | None = SUB) -> DeployRequest:
    options = {"resource_group": RG}
    if subscription is not None:
        options["subscription_id"] = subscription
    return DeployRequest(cloud="azure", vm_name=VM, region=REGION, vm_type=vm_type, image_dir=image_dir,
                         additional_ports=additional_ports, options=options)


def deployment(request: DeployRequest, credential: Any = None) -> AzureDeployment:
    return AzureDeployment(request, credential=credential or FakeCredential(), sleep=lambda seconds: None)


def address(call: Any) -> str:
    """A recorded call's URL without its query."""
    return str(call.request.url).split("?")[0]


def calls(mock: responses.RequestsMock, method: str, url: str) -> list[Any]:
    return [c.request for c in mock.calls if c.request.method == method and address(c) == url]


def body(request: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(request.body)
    return document


def query(request: Any) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)


def page_puts(mock: responses.RequestsMock) -> list[Any]:
    return [r for r in calls(mock, "PUT", BLOB_URL) if "comp=page" in r.url]


def run(dep: AzureDeployment, ledger: Ledger) -> tuple[dict[str, dict[str, Any]], str]:
    stream = io.StringIO()
    outputs = run_steps(dep.steps(), ledger, Reporter(stream))
    return outputs, stream.getvalue()


# --- sizes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("vm_type", "series", "vcpus", "family"), [
    ("Standard_DC2as_v5", "DCasv5", 2, "standardDCASv5Family"),
    ("Standard_DC4ads_v5", "DCadsv5", 4, "standardDCADSv5Family"),
    ("Standard_EC2as_v5", "ECasv5", 2, "standardECASv5Family"),
    ("Standard_EC16ads_v5", "ECadsv5", 16, "standardECADSv5Family"),
], ids=["DCasv5", "DCadsv5", "ECasv5", "ECadsv5"])
def test_sev_snp_sizes_are_accepted_with_their_quota_family(vm_type: str, series: str, vcpus: int,
                                                            family: str) -> None:
    size = SevSnpSize.parse(vm_type)
    assert (size.series, size.vcpus, size.quota_family) == (series, vcpus, family)


@pytest.mark.parametrize("vm_type", [
    "Standard_DC2es_v5",   # Intel TDX, the seed's default
    "Standard_EC4eds_v5",  # Intel TDX
    "Standard_DC2s_v3",    # Intel SGX
    "Standard_DC1s_v2",    # Intel SGX
    "Standard_D2s_v5",     # not confidential
    "Standard_D2as_v5",    # AMD, not confidential
    "Standard_DC2as_v6",   # AMD confidential, another generation
], ids=["tdx-dces", "tdx-eceds", "sgx-v3", "sgx-v2", "dsv5", "dasv5", "dcasv6"])
def test_other_sizes_are_refused_before_any_request(image_dir: Path, mock: responses.RequestsMock,
                                                    vm_type: str) -> None:
    with pytest.raises(DeployError) as caught:
        deployment(make_request(image_dir, vm_type=vm_type))
    assert caught.value.reason is Reason.DEPLOY_SIZE_NOT_SEV_SNP
    assert "Standard_DC2as_v5" in caught.value.context["hint"]
    assert len(mock.calls) == 0


def test_a_size_azure_lists_as_tdx_is_refused_by_preflight(image_dir: Path, azure: Azure, tmp_path: Path) -> None:
    skus = recorded("skus.json")
    for sku in skus["value"]:
        if sku["name"] == "Standard_DC2as_v5":
            sku["capabilities"] = [c if c["name"] != "ConfidentialComputingType" else {**c, "value": "TDX"}
                                   for c in sku["capabilities"]]
    azure.mock.get(SKUS_URL, json=skus)
    request = make_request(image_dir)
    with pytest.raises(DeployError) as caught:
        run(deployment(request), Ledger.create_or_resume(tmp_path / "ledger.json", request))
    assert caught.value.reason is Reason.DEPLOY_SIZE_NOT_SEV_SNP


# --- a whole deployment ---------------------------------------------------------------------------------


def test_deploy_sends_confidential_settings_and_only_the_requested_ports(image_dir: Path, azure: Azure,
                                                                         tmp_path: Path) -> None:
    azure.preflight()
    azure.upload()
    azure.network()
    azure.vm()
    request = make_request(image_dir)
    credential = FakeCredential()
    ledger = Ledger.create_or_resume(tmp_path / "ledger.json", request)
    outputs, progress = run(deployment(request, credential), ledger)
    mock = azure.mock

    assert outputs["vm"]["public_ip"] == PUBLIC_IP
    assert credential.scopes and set(credential.scopes) == {(f"{ARM}/.default",)}
    assert {c.request.headers["Authorization"] for c in mock.calls if address(c).startswith(ARM)} \
        == {"Bearer fake-token"}
    assert not any("Authorization" in p.headers for p in page_puts(mock))  # the SAS is the page writes' credential

    disk_put = body(calls(mock, "PUT", DISK_URL)[0])
    assert disk_put["properties"]["creationData"] == {"createOption": "Upload",
                                                      "uploadSizeBytes": (image_dir / "disk.vhd").stat().st_size}
    assert disk_put["properties"]["securityProfile"] == {
        "securityType": "ConfidentialVM_VMGuestStateOnlyEncryptedWithPlatformKey"}
    assert (disk_put["properties"]["hyperVGeneration"], disk_put["properties"]["osType"]) == ("V2", "Linux")
    assert body(calls(mock, "POST", f"{DISK_URL}/beginGetAccess")[0])["access"] == "Write"

    # the 4 MiB test disk has data in its first and third MiB and the footer: three pages, zeros skipped
    pages = page_puts(mock)
    vhd = (image_dir / "disk.vhd").read_bytes()
    ranges = [tuple(int(n) for n in p.headers["x-ms-range"].removeprefix("bytes=").split("-")) for p in pages]
    assert ranges == [(0, 64 * 1024 - 1), (2 * MIB, 2 * MIB + 64 * 1024 - 1), (4 * MIB, 4 * MIB + 511)]
    assert [p.body for p in pages] == [vhd[start:end + 1] for start, end in ranges]
    assert all(p.headers["x-ms-page-write"] == "update" and "sig=c2lnbmF0dXJl" in p.url for p in pages)
    assert outputs["upload"]["uploaded_bytes"] == 2 * 64 * 1024 + 512
    assert len(calls(mock, "POST", f"{DISK_URL}/endGetAccess")) == 1

    rules = body(calls(mock, "PUT", NSG_URL)[0])["properties"]["securityRules"]
    assert [(r["properties"]["destinationPortRange"], r["properties"]["protocol"], r["properties"]["access"],
             r["properties"]["direction"], r["properties"]["priority"]) for r in rules] \
        == [("8000", "Tcp", "Allow", "Inbound", 1000), ("443", "Tcp", "Allow", "Inbound", 1001)]
    nic = body(calls(mock, "PUT", NIC_URL)[0])["properties"]
    assert nic["networkSecurityGroup"]["id"] == NSG_URL.removeprefix(ARM)
    assert nic["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"] == IP_URL.removeprefix(ARM)
    ip = body(calls(mock, "PUT", IP_URL)[0])
    assert (ip["sku"]["name"], ip["properties"]["publicIPAllocationMethod"]) == ("Standard", "Static")

    vm = body(calls(mock, "PUT", VM_URL)[0])["properties"]
    assert vm["hardwareProfile"] == {"vmSize": "Standard_DC2as_v5"}
    assert vm["securityProfile"] == {"securityType": "ConfidentialVM",
                                     "uefiSettings": {"secureBootEnabled": False, "vTpmEnabled": True}}
    assert vm["storageProfile"]["osDisk"] == {
        "osType": "Linux", "createOption": "Attach",
        "managedDisk": {"id": DISK_URL.removeprefix(ARM),
                        "securityProfile": {"securityEncryptionType": "VMGuestStateOnly"}}}
    assert "osProfile" not in vm
    assert vm["diagnosticsProfile"] == {"bootDiagnostics": {"enabled": True}}
    assert vm["networkProfile"]["networkInterfaces"][0]["id"] == NIC_URL.removeprefix(ARM)

    assert [e.kind for e in ledger.resources] == ["azure.resource_group", "azure.disk", "azure.nsg", "azure.vnet",
                                                  "azure.public_ip", "azure.nic", "azure.vm"]
    assert outputs["image"] == {"disk_id": DISK_URL.removeprefix(ARM)}
    assert "azure.vm cvm-test: InProgress" in progress
    assert "disk.vhd: 4,194,816 of 4,194,816 bytes (100%)" in progress


def test_only_subscription_of_the_credential_is_used(image_dir: Path, azure: Azure, tmp_path: Path) -> None:
    azure.mock.get(f"{ARM}/subscriptions", json={"value": [
        {"id": f"/subscriptions/{SUB}", "subscriptionId": SUB, "displayName": "dev", "state": "Enabled"},
        {"id": "/subscriptions/x", "subscriptionId": "0000", "displayName": "old", "state": "Disabled"}]})
    azure.preflight(group_exists=True)
    request = make_request(image_dir, subscription=None)
    ledger = Ledger.create_or_resume(tmp_path / "ledger.json", request)
    dep = deployment(request)
    outputs = run_steps(dep.steps()[:1], ledger, Reporter(io.StringIO()))
    assert outputs["preflight"] == {"subscription_id": SUB, "vcpus": 2, "resource_group_existed": True}


def test_several_subscriptions_ask_for_one(image_dir: Path, azure: Azure, tmp_path: Path) -> None:
    azure.mock.get(f"{ARM}/subscriptions", json={"value": [
        {"subscriptionId": SUB, "state": "Enabled"}, {"subscriptionId": "1111", "state": "Enabled"}]})
    request = make_request(image_dir, subscription=None)
    with pytest.raises(DeployError) as caught:
        run(deployment(request), Ledger.create_or_resume(tmp_path / "ledger.json", request))
    assert caught.value.reason is Reason.DEPLOY_CREDENTIALS
    assert "--subscription-id" in caught.value.context["hint"]


# --- preflight failures ---------------------------------------------------------------------------------


def _restricted(kind: str, zones: list[str] | None = None) -> dict[str, Any]:
    skus = recorded("skus.json")
    for sku in skus["value"]:
        if sku["name"] == "Standard_DC2as_v5":
            info: dict[str, Any] = {"locations": [REGION]}
            if zones is not None:
                info["zones"] = zones
            sku["restrictions"] = [{"type": kind, "values": [REGION], "restrictionInfo": info,
                                    "reasonCode": "NotAvailableForSubscription"}]
    return skus


def _without(name: str) -> dict[str, Any]:
    skus = recorded("skus.json")
    skus["value"] = [s for s in skus["value"] if s["name"] != name]
    return skus


def _no_sev_snp() -> dict[str, Any]:
    skus = recorded("skus.json")
    skus["value"] = [s for s in skus["value"] if not str(s.get("family", "")).lower().startswith(("standarddca",
                                                                                                   "standardeca"))]
    return skus


@pytest.mark.parametrize(("skus", "reason"), [
    (_restricted("Location"), Reason.DEPLOY_SIZE_UNAVAILABLE),
    (_restricted("Zone", ["1", "2", "3"]), Reason.DEPLOY_SIZE_UNAVAILABLE),
    (_without("Standard_DC2as_v5"), Reason.DEPLOY_SIZE_UNAVAILABLE),
    (_no_sev_snp(), Reason.DEPLOY_REGION_UNSUPPORTED),
], ids=["location-restricted", "every-zone-restricted", "size-not-offered", "region-without-sev-snp"])
def test_preflight_refuses_a_size_the_region_does_not_offer(image_dir: Path, azure: Azure, tmp_path: Path,
                                                            skus: dict[str, Any], reason: Reason) -> None:
    azure.mock.get(SKUS_URL, json=skus)
    request = make_request(image_dir)
    with pytest.raises(DeployError) as caught:
        run(deployment(request), Ledger.create_or_resume(tmp_path / "ledger.json", request))
    assert caught.value.reason is reason
    assert query(calls(azure.mock, "GET", SKUS_URL)[0])["$filter"] == ["location eq 'westeurope'"]


def test_preflight_passes_when_some_zones_are_restricted(image_dir: Path, azure: Azure, tmp_path: Path) -> None:
    azure.preflight(skus=_restricted("Zone", ["2"]))
    request = make_request(image_dir)
    ledger = Ledger.create_or_resume(tmp_path / "ledger.json", request)
    stream = io.StringIO()
    run_steps(deployment(request).steps()[:1], ledger, Reporter(stream))
    assert "zone(s) 2; the VM is regional" in stream.getvalue()
    assert ledger.outputs("preflight") is not None


@pytest.mark.parametrize(("vm_type", "family_used", "cores_used", "exhausted"), [
    ("Standard_DC4as_v5", 8, 4, "family"),
    ("Standard_DC4as_v5", 0, 98, "cores"),
    ("Standard_DC4as_v5", 6, 96, None),
], ids=["family-exhausted", "regional-exhausted", "exactly-enough"])
def test_preflight_checks_the_vcpu_quota(image_dir: Path, azure: Azure, tmp_path: Path, vm_type: str,
                                         family_used: int, cores_used: int, exhausted: str | None) -> None:
    usages = recorded("usages.json")
    for usage in usages["value"]:
        if usage["name"]["value"] == "standardDCASv5Family":
            usage["currentValue"] = family_used
        if usage["name"]["value"] == "cores":
            usage["currentValue"] = cores_used
    azure.mock.get(SKUS_URL, json=recorded("skus.json"))
    azure.mock.get(USAGES_URL, json=usages)
    if exhausted is None:
        azure.mock.head(GROUP_URL, status=204)
    request = make_request(image_dir, vm_type=vm_type)
    ledger = Ledger.create_or_resume(tmp_path / "ledger.json", request)
    if exhausted is None:
        run_steps(deployment(request).steps()[:1], ledger, Reporter(io.StringIO()))
        assert ledger.outputs("preflight") == {"subscription_id": SUB, "vcpus": 4, "resource_group_existed": True}
        return
    with pytest.raises(DeployError) as caught:
        run(deployment(request), ledger)
    assert caught.value.reason is Reason.DEPLOY_QUOTA_EXHAUSTED
    limit = 10 if exhausted == "family" else 100
    used = family_used if exhausted == "family" else cores_used
    assert (caught.value.context["used"], caught.value.context["limit"], caught.value.context["needed"]) \
        == (used, limit, 4)


def test_a_credential_without_a_token_is_refused(image_dir: Path, mock: responses.RequestsMock,
                                                 tmp_path: Path) -> None:
    request = make_request(image_dir)
    with pytest.raises(DeployError) as caught:
        run(deployment(request, RefusingCredential()), Ledger.create_or_resume(tmp_path / "ledger.json", request))
    assert caught.value.reason is Reason.DEPLOY_CREDENTIALS
    assert "az login" in caught.value.context["hint"]
    assert len(mock.calls) == 0


def test_the_default_credential_chain_with_nothing_configured_is_refused(
        image_dir: Path, mock: responses.RequestsMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
                 "AZURE_USERNAME", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))  # no az, azd or pwsh to ask
    # the managed identity probe (IMDS) reaches responses, which refuses the connection
    mock.get(re.compile(r"http://169\.254\.169\.254/.*"), body=requests.exceptions.ConnectionError("no IMDS"))
    request = make_request(image_dir)
    dep = AzureDeployment(request, sleep=lambda seconds: None)
    with pytest.raises(DeployError) as caught:
        run(dep, Ledger.create_or_resume(tmp_path / "ledger.json", request))
    assert caught.value.reason is Reason.DEPLOY_CREDENTIALS
    assert not [c for c in mock.calls if address(c).startswith(ARM)]


def test_permission_denied_names_the_role(image_dir: Path, azure: Azure, tmp_path: Path) -> None:
    azure.mock.get(SKUS_URL, status=403, json={"error": {
        "code": "AuthorizationFailed", "message": "The client 'x' with object id 'y' does not have authorization to "
        "perform action 'Microsoft.Compute/skus/read' over scope '/subscriptions/...'"}})
    request = make_request(image_dir)
    with pytest.raises(DeployError) as caught:
        run(deployment(request), Ledger.create_or_resume(tmp_path / "ledger.json", request))
    assert caught.value.reason is Reason.DEPLOY_PERMISSION_DENIED
    assert "Contributor" in caught.value.context["hint"]


# --- failures while creating ----------------------------------------------------------------------------


def test_a_failed_upload_disk_is_an_import_failure_and_stays_recorded(image_dir: Path, azure: Azure,
                                                                      tmp_path: Path) -> None:
    azure.preflight()
    azure.upload(disk_error=("InvalidParameter", "The specified upload size is not a multiple of 512."))
    request = make_request(image_dir)
    ledger = Ledger.create_or_resume(tmp_path / "ledger.json", request)
    with pytest.raises(DeployError) as caught:
        run(deployment(request), ledger)
    assert caught.value.reason is Reason.DEPLOY_IMPORT_FAILED
    assert caught.value.context["code"] == "InvalidParameter"
    assert [e.kind for e in ledger.resources] == ["azure.resource_group", "azure.disk"]
    assert page_puts(azure.mock) == []


@pytest.mark.parametrize(("code", "reason"), [
    ("AllocationFailed", Reason.DEPLOY_SIZE_UNAVAILABLE),
    ("ZonalAllocationFailed", Reason.DEPLOY_SIZE_UNAVAILABLE),
    ("OSProvisioningTimedOut", Reason.DEPLOY_CLOUD_ERROR),
], ids=["allocation", "zonal-allocation", "other"])
def test_vm_creation_failing_in_its_operation(image_dir: Path, azure: Azure, tmp_path: Path, code: str,
                                              reason: Reason) -> None:
    azure.preflight()
    azure.upload()
    azure.network()
    azure.vm(error=(code, "Allocation failed. We do not have sufficient capacity for the requested VM size."))
    request = make_request(image_dir)
    ledger = Ledger.create_or_resume(tmp_path / "ledger.json", request)
    with pytest.raises(DeployError) as caught:
        run(deployment(request), ledger)
    assert caught.value.reason is reason
    assert caught.value.context["code"] == code
    assert ledger.find("azure.vm") is not None  # Azure accepted it: destroy must delete it


def test_vm_refused_for_quota_is_not_recorded(image_dir: Path, azure: Azure, tmp_path: Path) -> None:
    azure.preflight()
    azure.upload()
    azure.network()
    azure.missing(VM_URL)
    azure.mock.put(VM_URL, status=409, json={"error": {
        "code": "OperationNotAllowed", "message": "Operation could not be completed as it results in exceeding "
        "approved standardDCASv5Family Cores quota. Current Limit: 10, Current Usage: 10, Additional Required: 2"}})
    request = make_request(image_dir)
    ledger = Ledger.create_or_resume(tmp_path / "ledger.json", request)
    with pytest.raises(DeployError) as caught:
        run(deployment(request), ledger)
    assert caught.value.reason is Reason.DEPLOY_QUOTA_EXHAUSTED
    assert ledger.find("azure.vm") is None


def test_a_resource_of_the_same_name_is_not_taken_over(image_dir: Path, azure: Azure, tmp_path: Path) -> None:
    azure.preflight()
    azure.upload()
    azure.mock.get(NSG_URL, json=network_resource(NSG_URL))
    request = make_request(image_dir)
    ledger = Ledger.create_or_resume(tmp_path / "ledger.json", request)
    with pytest.raises(DeployError) as caught:
        run(deployment(request), ledger)
    assert caught.value.reason is Reason.DEPLOY_CLOUD_ERROR
    assert calls(azure.mock, "PUT", NSG_URL) == []
    assert ledger.find("azure.nsg") is None


# --- resume ---------------------------------------------------------------------------------------------


def test_resume_after_the_upload_does_not_upload_again(image_dir: Path, tmp_path: Path) -> None:
    request = make_request(image_dir)
    ledger_path = tmp_path / "ledger.json"
    with responses.RequestsMock(assert_all_requests_are_fired=True) as first:
        azure = Azure(first)
        azure.preflight()
        azure.upload()
        azure.missing(NSG_URL)
        first.put(NSG_URL, status=403, json={"error": {"code": "AuthorizationFailed", "message": "no write"}})
        with pytest.raises(DeployError) as caught:
            run(deployment(request), Ledger.create_or_resume(ledger_path, request))
        assert caught.value.reason is Reason.DEPLOY_PERMISSION_DENIED
        assert len(page_puts(first)) == 3

    with responses.RequestsMock(assert_all_requests_are_fired=True) as second:
        azure = Azure(second)
        azure.network()
        azure.vm()
        outputs, progress = run(deployment(request), Ledger.create_or_resume(ledger_path, request))
        assert outputs["vm"]["public_ip"] == PUBLIC_IP
        assert page_puts(second) == []
        assert not [c for c in second.calls if "/disks/" in address(c) or "/skus" in address(c)]
        assert "done before, resumed" in progress


def _ledger_with_disk(request: DeployRequest, path: Path) -> Ledger:
    """What an interrupted upload step leaves: preflight finished, the disk recorded."""
    ledger = Ledger.create_or_resume(path, request)
    ledger.finish("preflight", {"subscription_id": SUB, "vcpus": 2, "resource_group_existed": True})
    ledger.record("azure.disk", DISK_URL.removeprefix(ARM), step="upload", subscription_id=SUB, resource_group=RG,
                  name=f"{VM}-osdisk")
    return ledger


def test_resume_of_an_upload_that_had_finished_sends_nothing(image_dir: Path, azure: Azure,
                                                             tmp_path: Path) -> None:
    request = make_request(image_dir)
    ledger = _ledger_with_disk(request, tmp_path / "ledger.json")
    azure.mock.head(GROUP_URL, status=204)
    azure.mock.get(DISK_URL, json=disk(state="Unattached"))
    outputs = run_steps(deployment(request).steps()[:2], ledger, Reporter(io.StringIO()))
    assert outputs["upload"]["uploaded_bytes"] == 0
    assert page_puts(azure.mock) == [] and calls(azure.mock, "PUT", DISK_URL) == []
    assert calls(azure.mock, "POST", f"{DISK_URL}/beginGetAccess") == []


def test_resume_of_an_upload_cut_short_grants_again_and_rewrites(image_dir: Path, azure: Azure,
                                                                 tmp_path: Path) -> None:
    request = make_request(image_dir)
    ledger = _ledger_with_disk(request, tmp_path / "ledger.json")
    azure.mock.head(GROUP_URL, status=204)
    azure.mock.get(DISK_URL, json=disk(state="ActiveUpload"))
    azure.grant_and_pages()
    outputs = run_steps(deployment(request).steps()[:2], ledger, Reporter(io.StringIO()))
    assert outputs["upload"]["uploaded_bytes"] == 2 * 64 * 1024 + 512
    assert len(page_puts(azure.mock)) == 3
    assert calls(azure.mock, "PUT", DISK_URL) == []
    assert [e.kind for e in ledger.resources] == ["azure.disk"]


# --- destroy --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("group_existed", [False, True], ids=["group-created", "group-existed"])
def test_destroy_after_a_partial_deploy_deletes_exactly_what_it_recorded(image_dir: Path, tmp_path: Path,
                                                                         group_existed: bool) -> None:
    request = make_request(image_dir)
    ledger_path = tmp_path / "ledger.json"
    with responses.RequestsMock(assert_all_requests_are_fired=True) as first:
        azure = Azure(first)
        azure.preflight(group_exists=group_existed)
        azure.upload(group_exists=group_existed)
        for url in (NSG_URL, VNET_URL):
            azure.missing(url)
            azure.put_done(url, network_resource(url))
        azure.missing(IP_URL)
        first.put(IP_URL, status=400, json={"error": {
            "code": "PublicIPCountLimitReached", "message": "Cannot create more than 10 public IP addresses"}})
        with pytest.raises(DeployError) as caught:
            run(deployment(request), Ledger.create_or_resume(ledger_path, request))
        assert caught.value.reason is Reason.DEPLOY_QUOTA_EXHAUSTED

    ledger = Ledger.load(ledger_path)
    recorded_kinds = [e.kind for e in ledger.resources]
    assert recorded_kinds == (["azure.disk"] if group_existed else ["azure.resource_group", "azure.disk"]) \
        + ["azure.nsg", "azure.vnet"]
    with responses.RequestsMock(assert_all_requests_are_fired=True) as second:
        azure = Azure(second)
        azure.delete(VNET_URL, status=202)
        azure.delete(NSG_URL, status=404)  # already gone: fine
        second.get(DISK_URL, json=disk(state="Unattached"))
        azure.delete(DISK_URL)
        if not group_existed:
            azure.delete(GROUP_URL, status=202)
        stream = io.StringIO()
        deleted = destroy(deployment(request), ledger, Reporter(stream))
        deletes = [address(c) for c in second.calls if c.request.method == "DELETE"]
    assert deletes == [VNET_URL, NSG_URL, DISK_URL] + ([] if group_existed else [GROUP_URL])
    assert [e.kind for e in deleted] == list(reversed(recorded_kinds))
    assert ledger.resources == ()
    assert "was already gone" in stream.getvalue()


def test_destroy_ends_an_open_upload_before_deleting_the_disk(image_dir: Path, azure: Azure,
                                                              tmp_path: Path) -> None:
    request = make_request(image_dir)
    ledger = _ledger_with_disk(request, tmp_path / "ledger.json")
    azure.mock.get(DISK_URL, json=disk(state="ActiveUpload"))
    azure.mock.post(f"{DISK_URL}/endGetAccess", status=200)
    azure.delete(DISK_URL)
    destroy(deployment(request), ledger, Reporter(io.StringIO()))
    assert [c.request.method for c in azure.mock.calls] == ["GET", "POST", "DELETE"]
    assert ledger.resources == ()


def test_a_failed_delete_stays_in_the_ledger(image_dir: Path, azure: Azure, tmp_path: Path) -> None:
    request = make_request(image_dir)
    ledger = _ledger_with_disk(request, tmp_path / "ledger.json")
    azure.mock.get(DISK_URL, json=disk(state="Attached"))
    azure.mock.delete(DISK_URL, status=409, json={"error": {
        "code": "OperationNotAllowed", "message": "Disk is attached to VM"}})
    with pytest.raises(DeployError) as caught:
        destroy(deployment(request), ledger, Reporter(io.StringIO()))
    assert caught.value.reason is Reason.DEPLOY_DESTROY_INCOMPLETE
    assert [e.kind for e in ledger.resources] == ["azure.disk"]


# --- the plan and the command line ----------------------------------------------------------------------


def test_plan_prices_the_linux_pay_as_you_go_rate(image_dir: Path, mock: responses.RequestsMock) -> None:
    mock.get(PRICES_URL, json=recorded("prices.json"))
    plan = deployment(make_request(image_dir)).plan()
    assert (str(plan.cost.per_hour), plan.cost.currency) == ("0.094", "USD")
    assert query(mock.calls[0].request)["$filter"] == [
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq 'westeurope' and "
        "armSkuName eq 'Standard_DC2as_v5'"]
    assert "Authorization" not in mock.calls[0].request.headers
    assert plan.upload_bytes == (image_dir / "disk.vhd").stat().st_size


def test_plan_cost_is_unknown_when_the_price_list_cannot_be_read(image_dir: Path,
                                                                 mock: responses.RequestsMock) -> None:
    mock.get(PRICES_URL, body=requests.exceptions.ConnectionError("offline"))
    plan = deployment(make_request(image_dir)).plan()
    assert plan.cost.per_hour is None
    assert "Retail Prices API did not answer" in plan.cost.source


def _dry_run(mock: responses.RequestsMock, args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    mock.get(PRICES_URL, json=recorded("prices.json"))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert [address(c) for c in mock.calls] == [PRICES_URL]  # no management-plane request
    plan: dict[str, Any] = json.loads(result.stdout)
    return plan


def test_cli_dry_run_prints_the_plan(image_dir: Path, mock: responses.RequestsMock,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _dry_run(mock, ["deploy", "azure", "--image", str(image_dir), "--resource-group", RG, "--vm-name", VM,
                           "--additional-ports", "443", "--dry-run", "--json"], monkeypatch)
    assert (plan["cloud"], plan["region"], plan["vm_type"]) == ("azure", "westeurope", "Standard_DC2as_v5")
    assert plan["inbound_tcp_ports"] == [8000, 443]
    assert plan["cost"] == {"per_hour": "0.094", "currency": "USD",
                            "source": "Azure Retail Prices API, Linux pay-as-you-go"}
    resources = {r["kind"]: r for r in plan["resources"]}
    assert list(resources) == ["azure.resource_group", "azure.disk", "azure.nsg", "azure.vnet", "azure.public_ip",
                               "azure.nic", "azure.vm"]
    assert resources["azure.vm"]["settings"]["security_type"] == "ConfidentialVM"
    assert resources["azure.vm"]["settings"]["v_tpm_enabled"] is True
    assert resources["azure.nsg"]["settings"]["inbound_allow_tcp"] == [8000, 443]
    assert resources["azure.disk"]["settings"]["security_type"] == \
        "ConfidentialVM_VMGuestStateOnlyEncryptedWithPlatformKey"


def test_cli_seed_spelling(image_dir: Path, mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _dry_run(mock, ["deploy-azure", "--vm_name", "seed-vm", "--resource_group", RG, "--vm_type",
                           "Standard_DC2as_v5", "--additional_ports", "80,443", "--image", str(image_dir),
                           "--dry_run", "--json"], monkeypatch)
    assert plan["inbound_tcp_ports"] == [8000, 80, 443]
    assert {r["name"] for r in plan["resources"]} >= {"seed-vm", "seed-vm-osdisk", "seed-vm-nsg", RG}


def test_cli_refuses_the_seeds_tdx_default(image_dir: Path, mock: responses.RequestsMock) -> None:
    result = CliRunner().invoke(cli, ["deploy-azure", "--vm_type", "Standard_DC2es_v5", "--resource_group", RG,
                                      "--image", str(image_dir), "--dry_run", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["reason"] == Reason.DEPLOY_SIZE_NOT_SEV_SNP.value
    assert len(mock.calls) == 0
