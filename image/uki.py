"""The unified kernel image (UKI): assembled from systemd's EFI stub, and what its boot measures.

Assembly (:func:`build_uki`) is ukify's: ``objcopy --add-section`` puts ``.osrel``, ``.cmdline``,
``.uname`` (optional), ``.initrd`` and ``.linux``, in that order, into a copy of the stub, each at
the next page (4 KiB) boundary after the stub's last section and the section before it. The result
is reproducible: the COFF TimeDateStamp is the caller's (``SOURCE_DATE_EPOCH``), the file is padded
with zeros to a multiple of 8 bytes (so that a later Secure Boot signature, which signers align to
8 bytes, leaves the Authenticode digest unchanged), and the PE CheckSum is recomputed over it.

Prediction models exactly **systemd-stub 252** (Debian bookworm's systemd-boot-efi 252.39;
src/boot/efi/stub.c, pe.c, measure.c, linux.c, src/fundamental/tpm-pcr.h of that release) started
directly by edk2 firmware (OVMF) from ``\\EFI\\BOOT\\BOOTX64.EFI``, and the EFI stub of Debian's
Linux 6.1 kernel (6.1.192, which carries the initrd and load-options measurements):

* **PCR11** (stub): for each section the stub knows, in the fixed order ``.linux``, ``.osrel``,
  ``.cmdline``, ``.initrd``, ``.splash``, ``.dtb``, ``.pcrpkey`` (``.pcrsig`` is never measured;
  ``.uname`` and ``.sbat`` are unknown to 252), two ``EV_IPL`` events: SHA-256 of the section name
  with its NUL, then SHA-256 of the ``VirtualSize`` bytes the firmware loaded. A section is found
  when the 8-byte header name *starts with* the known name; the last such header wins; one with
  ``VirtualSize`` 0 is skipped.
* **PCR4** (firmware): ``EV_EFI_ACTION`` "Calling EFI Application from Boot Option", the
  ``EV_SEPARATOR`` (four zero bytes), then ``EV_EFI_BOOT_SERVICES_APPLICATION`` with the UKI's
  Authenticode digest. The stub 252 starts a kernel whose PE ``MajorImageVersion`` is at least 1
  with ``LoadImage`` from memory. Under Secure Boot it first installs its security override, which
  answers the firmware's ``EFI_SECURITY2_ARCH_PROTOCOL`` for that buffer itself, so edk2's
  measure-boot handler never sees the kernel. Without Secure Boot it installs none, and edk2
  measures the kernel's Authenticode digest as a fourth ``EV_EFI_BOOT_SERVICES_APPLICATION`` (seen
  on OVMF 2022.11 booting the image here: docs/image.md, "Booting it here").
* **PCR12** (stub): only when the stub takes the firmware's load options as the command line
  (Secure Boot off or no ``.cmdline``, and options whose first UCS-2 unit is above 0x1F): one
  ``EV_IPL`` event, SHA-256 of that command line in UCS-2 with its NUL. The embedded ``.cmdline`` is
  measured in PCR11 only. (Credentials and system extensions from the ESP would also go into PCR12
  and PCR13; the image puts none there.) PCR8 compatibility is off in Debian's build.
* **PCR9** (kernel, ``LoadImage`` path only; the EFI handover path measures nothing): an
  ``EV_EVENT_TAG`` of the ``LoadOptions`` the stub gives the kernel (the command line in UCS-2 with
  its NUL), then an ``EV_EVENT_TAG`` of the initrd served through ``LINUX_EFI_INITRD_MEDIA_GUID``.

Later, from userspace, systemd 252's ``systemd-pcrphase`` services (enabled by Debian's package)
extend PCR11 with SHA-256 of each boot-phase word: "sysinit" after sysinit.target, "ready" before
user sessions ("enter-initrd"/"leave-initrd" only in a systemd initrd). ``phases`` names the words
extended by the time PCR11 is read; an image that masks those services has none.
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Self

from image.authenticode import authenticode_digest
from image.boot_events import (
    EV_EFI_ACTION,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EVENT_TAG,
    EV_IPL,
    EV_SEPARATOR,
    BootEvent,
    replay_pcr,
)
from image.pe import MACHINE_X64, PeImage, SectionHeader, with_timestamp
from offchain.errors import BuildError, CvmAttestError, ParseError, Reason, RequestError

#: Debian's systemd-boot-efi package installs the stub here.
SYSTEMD_STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
PAGE = 0x1000
SIGNATURE_ALIGNMENT = 8

#: systemd 252 src/fundamental/tpm-pcr.h: the sections the stub knows, in its measuring order.
UNIFIED_SECTIONS = (".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrsig", ".pcrpkey")
UNMEASURED_SECTIONS = frozenset({".pcrsig"})

PCR_BOOT_APPLICATIONS = 4
PCR_KERNEL_LOADER = 9
PCR_KERNEL_IMAGE = 11
PCR_KERNEL_PARAMETERS = 12

CALLING_EFI_APPLICATION = b"Calling EFI Application from Boot Option"
SEPARATOR = bytes(4)
#: edk2 MdeModulePkg BmBoot.c ``mBmAutoCreateBootOptionGuid``: the OptionalData of the boot options
#: OVMF creates by itself, hence the load options of an image started from one of them.
EDK2_AUTO_BOOT_OPTION_DATA = bytes.fromhex("4eac0881119f594d850ee21a522c59b2")


class KernelEntry(enum.Enum):
    """How systemd-stub 252 starts the embedded kernel (linux.c, ``linux_exec``)."""

    LOAD_IMAGE = "load_image"  # PE entry point via LoadImage/StartImage; initrd via LoadFile2
    EFI_HANDOVER = "efi_handover"  # kernel's PE MajorImageVersion < 1: legacy handover protocol


@dataclass(frozen=True, slots=True)
class FirmwareLaunch:
    """What the boot measures that the UKI itself does not say: how the firmware starts it."""

    load_options: bytes  # EFI_LOADED_IMAGE_PROTOCOL.LoadOptions (the boot option's OptionalData)
    secure_boot: bool


#: OVMF started from a boot option without OptionalData, Secure Boot off.
PLAIN_LAUNCH = FirmwareLaunch(load_options=b"", secure_boot=False)


@dataclass(frozen=True, slots=True)
class StubCommandLine:
    """The command line systemd-stub hands the kernel, as UCS-2 code units without the NUL."""

    units: tuple[int, ...]
    from_load_options: bool

    @property
    def load_options(self) -> bytes:
        """The kernel's LoadOptions: UCS-2 little-endian with the terminating NUL."""
        return struct.pack(f"<{len(self.units) + 1}H", *self.units, 0)

    @property
    def text(self) -> str:
        return "".join(map(chr, self.units))


@dataclass(frozen=True, slots=True)
class Uki:
    """A UKI as systemd-stub 252 sees it: its PE headers and the unified sections it finds."""

    pe: PeImage
    sections: Mapping[str, bytes]  # known section name -> loaded bytes, only those with VirtualSize > 0

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        pe = PeImage.from_bytes(data)
        if pe.machine != MACHINE_X64 or not pe.sections:
            raise _invalid(f"systemd-stub for x86-64 refuses machine {pe.machine:#x} or an image without sections")
        found: dict[str, SectionHeader] = {}
        for header in pe.sections:
            for name in UNIFIED_SECTIONS:
                if header.name.startswith(name.encode("ascii")):  # pe.c locate_sections: a prefix match
                    found[name] = header
        present = {name: header for name, header in found.items() if header.virtual_size}
        _refuse_overlaps(pe)
        if ".linux" not in present:
            raise _invalid("no .linux section: systemd-stub refuses to boot")
        return cls(pe=pe, sections=MappingProxyType({n: pe.loaded_section(h) for n, h in present.items()}))

    def to_bytes(self) -> bytes:
        return self.pe.data

    def kernel_entry(self) -> KernelEntry:
        """pe.c ``pe_kernel_info``: LoadImage for an x86-64 PE kernel of image version 1 or later."""
        try:
            kernel = PeImage.from_bytes(self.sections[".linux"])
        except ParseError:
            raise _invalid(".linux is not a PE image: systemd-stub 252 refuses it") from None
        if kernel.machine != MACHINE_X64 or not kernel.sections:
            raise _invalid(f".linux is a PE image for machine {kernel.machine:#x}: systemd-stub refuses it")
        return KernelEntry.LOAD_IMAGE if kernel.major_image_version >= 1 else KernelEntry.EFI_HANDOVER

    def command_line(self, launch: FirmwareLaunch) -> StubCommandLine | None:
        """stub.c ``use_load_options`` and the ``.cmdline`` fallback; None when there is neither."""
        embedded = self.sections.get(".cmdline")
        options = launch.load_options[: len(launch.load_options) // 2 * 2]
        first = int.from_bytes(options[:2], "little") if options else 0
        if not (launch.secure_boot and embedded is not None) and first > 0x1F:
            units = struct.unpack(f"<{len(options) // 2}H", options)
            return StubCommandLine(_mangle(units), from_load_options=True)
        if embedded is None:
            return None
        return StubCommandLine(_mangle(_utf8_to_ucs2(embedded)), from_load_options=False)


def _invalid(detail: str) -> ParseError:
    return ParseError(Reason.IMAGE_UKI_INVALID, detail)


def _refuse_overlaps(pe: PeImage) -> None:
    spans = sorted(
        (h.virtual_address, h.virtual_address + h.virtual_size, h.display_name) for h in pe.sections if h.virtual_size
    )
    for (_, end, name), (start, _, following) in zip(spans, spans[1:]):
        if start < end:
            raise _invalid(f"sections {name!r} and {following!r} overlap in memory: what the stub reads is undefined")


def _until_nul(units: tuple[int, ...]) -> tuple[int, ...]:
    return units[: units.index(0)] if 0 in units else units


def _mangle(units: tuple[int, ...]) -> tuple[int, ...]:
    """util.c ``mangle_stub_cmdline``: control characters become spaces, trailing spaces go."""
    out = [0x20 if unit <= 0x1F else unit for unit in _until_nul(units)]
    while out and out[-1] == 0x20:
        out.pop()
    return tuple(out)


#: (sequence length, mask, value) of a UTF-8 lead byte, as efi-string.c ``utf8_to_unichar`` reads them.
_UTF8_LEADS = ((1, 0x80, 0x00), (2, 0xE0, 0xC0), (3, 0xF0, 0xE0), (4, 0xF8, 0xF0), (5, 0xFC, 0xF8), (6, 0xFE, 0xFC))


def _utf8_to_ucs2(data: bytes) -> tuple[int, ...]:
    """efi-string.c ``xstrn8_to_16``: stops at NUL; a malformed or short sequence is skipped whole;
    code points outside the BMP and surrogates are dropped."""
    out: list[int] = []
    i = 0
    while i < len(data) and data[i] != 0:
        lead = data[i]
        for length, mask, value in _UTF8_LEADS:
            if lead & mask == value:
                break
        else:
            i += 1
            continue
        if length == 1:
            out.append(lead)
            i += 1
            continue
        sequence = data[i : i + length]
        i += length
        if len(sequence) < length or any(b & 0xC0 != 0x80 for b in sequence[1:]):
            continue
        code = lead & (0xFF >> (length + 1))
        for b in sequence[1:]:
            code = code << 6 | b & 0x3F
        if code <= 0xD7FF or 0xE000 <= code <= 0xFFFF:
            out.append(code)
    return tuple(out)


# --- measurements -------------------------------------------------------------------------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def pcr11_events(uki: Uki, phases: Sequence[str] = ()) -> list[BootEvent]:
    """What systemd-stub 252 extends into PCR11 (name with NUL, then contents, per known section),
    then systemd-pcrphase's SHA-256 of each word of ``phases``."""
    events = []
    for name in UNIFIED_SECTIONS:
        if name in UNMEASURED_SECTIONS or name not in uki.sections:
            continue
        events.append(BootEvent(PCR_KERNEL_IMAGE, EV_IPL, _sha256(name.encode("ascii") + b"\0"), name))
        events.append(BootEvent(PCR_KERNEL_IMAGE, EV_IPL, _sha256(uki.sections[name]), name))
    if isinstance(phases, str):
        raise RequestError(Reason.INPUT_INVALID, "phases is a sequence of words, not one string")
    for word in phases:
        if not word:
            raise RequestError(Reason.INPUT_INVALID, "systemd-pcrphase refuses an empty phase word")
        events.append(BootEvent(PCR_KERNEL_IMAGE, None, _sha256(word.encode("utf-8")), f"phase {word}"))
    return events


def pcr4_events(uki: Uki, launch: FirmwareLaunch) -> list[BootEvent]:
    """What edk2 extends into PCR4 when it starts the UKI as the first boot option."""
    events = [
        BootEvent(PCR_BOOT_APPLICATIONS, EV_EFI_ACTION, _sha256(CALLING_EFI_APPLICATION), CALLING_EFI_APPLICATION.decode()),
        BootEvent(PCR_BOOT_APPLICATIONS, EV_SEPARATOR, _sha256(SEPARATOR), "separator"),
        BootEvent(PCR_BOOT_APPLICATIONS, EV_EFI_BOOT_SERVICES_APPLICATION, authenticode_digest(uki.pe), "UKI"),
    ]
    if not launch.secure_boot and uki.kernel_entry() is KernelEntry.LOAD_IMAGE:
        kernel = authenticode_digest(uki.sections[".linux"])
        events.append(BootEvent(PCR_BOOT_APPLICATIONS, EV_EFI_BOOT_SERVICES_APPLICATION, kernel, ".linux"))
    return events


def pcr12_events(uki: Uki, launch: FirmwareLaunch) -> list[BootEvent]:
    """What systemd-stub 252 extends into PCR12: the load options, when it uses them."""
    cmdline = uki.command_line(launch)
    if cmdline is None or not cmdline.from_load_options:
        return []
    return [BootEvent(PCR_KERNEL_PARAMETERS, EV_IPL, _sha256(cmdline.load_options), cmdline.text)]


def pcr9_events(uki: Uki, launch: FirmwareLaunch) -> list[BootEvent]:
    """What the Linux 6.1 EFI stub extends into PCR9 when systemd-stub starts it via LoadImage."""
    if uki.kernel_entry() is KernelEntry.EFI_HANDOVER:
        return []
    events = []
    cmdline = uki.command_line(launch)
    if cmdline is not None:
        events.append(BootEvent(PCR_KERNEL_LOADER, EV_EVENT_TAG, _sha256(cmdline.load_options), "LOADED_IMAGE::LoadOptions"))
    if ".initrd" in uki.sections:
        events.append(BootEvent(PCR_KERNEL_LOADER, EV_EVENT_TAG, _sha256(uki.sections[".initrd"]), "Linux initrd"))
    return events


def boot_events(uki: Uki, launch: FirmwareLaunch, phases: Sequence[str] = ()) -> list[BootEvent]:
    """Every event of the boot path that the UKI, ``launch`` and ``phases`` determine, PCR by PCR."""
    return (
        pcr4_events(uki, launch) + pcr9_events(uki, launch) + pcr11_events(uki, phases) + pcr12_events(uki, launch)
    )


def predict_pcrs(uki_bytes: bytes, launch: FirmwareLaunch, phases: Sequence[str] = ()) -> dict[int, bytes]:
    """PCRs 4, 9, 11 and 12 (SHA-256 bank): as the kernel starts, and PCR11 after ``phases``."""
    events = boot_events(Uki.from_bytes(uki_bytes), launch, phases)
    pcrs = (PCR_BOOT_APPLICATIONS, PCR_KERNEL_LOADER, PCR_KERNEL_IMAGE, PCR_KERNEL_PARAMETERS)
    return {pcr: replay_pcr(events, pcr) for pcr in pcrs}


def predict_pcr11(uki_bytes: bytes, phases: Sequence[str] = ()) -> bytes:
    return replay_pcr(pcr11_events(Uki.from_bytes(uki_bytes), phases), PCR_KERNEL_IMAGE)


def predict_pcr4(uki_bytes: bytes, launch: FirmwareLaunch) -> bytes:
    return replay_pcr(pcr4_events(Uki.from_bytes(uki_bytes), launch), PCR_BOOT_APPLICATIONS)


# --- assembly -----------------------------------------------------------------------------------


def _align(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def _printable_ascii(what: str, text: str) -> bytes:
    if not text or any(not 0x20 <= ord(c) <= 0x7E for c in text):
        raise RequestError(Reason.INPUT_INVALID, f"{what} must be non-empty printable ASCII: {text!r}")
    return text.encode("ascii")


def build_uki(
    stub: bytes,
    *,
    linux: bytes,
    initrd: bytes,
    cmdline: str,
    osrel: bytes,
    uname: str | None,
    timestamp: int,
    objcopy: str = "objcopy",
) -> bytes:
    """The UKI's bytes: ``stub`` (systemd's ``linuxx64.efi.stub``) with the given sections.

    ``cmdline`` and ``uname`` are printable ASCII, so that the text the stub hands the kernel is
    exactly what was written (the stub converts and mangles anything else). The result is checked
    back: every section must read as given, at the address chosen.
    """
    if not 0 <= timestamp <= 0xFFFFFFFF:
        raise RequestError(Reason.INPUT_INVALID, f"the COFF timestamp is a u32 (seconds since 1970), got {timestamp}")
    stub_pe = PeImage.from_bytes(stub)
    taken = [h.display_name for h in stub_pe.sections if h.name.startswith(tuple(n.encode() for n in UNIFIED_SECTIONS))]
    if taken:
        raise _invalid(f"the stub already has unified sections {taken}")
    contents = [(".osrel", osrel), (".cmdline", _printable_ascii("the kernel command line", cmdline))]
    if uname is not None:
        contents.append((".uname", _printable_ascii("uname", uname)))
    contents += [(".initrd", initrd), (".linux", linux)]
    for name, content in contents:
        if not content:
            raise RequestError(Reason.INPUT_INVALID, f"section {name} is empty")
    alignment = max(PAGE, stub_pe.section_alignment)
    address = _align(max(h.virtual_address + max(h.virtual_size, h.size_of_raw_data) for h in stub_pe.sections), alignment)
    layout = []
    for name, content in contents:
        layout.append((name, content, address))
        address = _align(address + len(content), alignment)
    built = _run_objcopy(objcopy, stub, stub_pe.image_base, layout)
    built += bytes(-len(built) % SIGNATURE_ALIGNMENT)
    uki = with_timestamp(built, timestamp)
    _check_layout(uki, layout)
    return uki


def _run_objcopy(objcopy: str, stub: bytes, image_base: int, layout: list[tuple[str, bytes, int]]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="cvm-attest-uki-") as tmp:
        work = Path(tmp)
        (work / "stub.efi").write_bytes(stub)
        args = [objcopy]
        for name, content, address in layout:
            (work / name.lstrip(".")).write_bytes(content)
            args += [
                "--add-section", f"{name}={work / name.lstrip('.')}",
                "--change-section-vma", f"{name}={image_base + address:#x}",
                "--set-section-flags", f"{name}=data,readonly",
            ]
        args += [str(work / "stub.efi"), str(work / "uki.efi")]
        try:
            done = subprocess.run(args, capture_output=True, timeout=120, check=False, env={**os.environ, "LC_ALL": "C"})
        except FileNotFoundError:
            raise BuildError(Reason.IMAGE_TOOL_FAILED, f"{objcopy} not found (Debian package binutils)") from None
        if done.returncode != 0:
            raise BuildError(
                Reason.IMAGE_TOOL_FAILED, f"objcopy failed: {done.stderr.decode(errors='replace').strip()}",
                returncode=done.returncode,
            )
        return (work / "uki.efi").read_bytes()


def _check_layout(uki: bytes, layout: list[tuple[str, bytes, int]]) -> None:
    try:
        parsed = Uki.from_bytes(uki)
    except CvmAttestError as exc:
        raise BuildError(Reason.IMAGE_TOOL_FAILED, f"objcopy wrote an image systemd-stub cannot use: {exc.detail}") from None
    by_name = {h.display_name: h for h in parsed.pe.sections}
    for name, content, address in layout:
        header = by_name.get(name)
        loaded = parsed.pe.loaded_section(header) if header is not None else b""
        if header is None or header.virtual_address != address or loaded != content:
            raise BuildError(Reason.IMAGE_TOOL_FAILED, f"objcopy did not place {name} as asked", section=name)
