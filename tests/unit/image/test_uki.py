"""image.uki: a UKI built from the real systemd stub reads back with binutils, is byte-identical
across builds, and its predicted PCRs equal replays written here from the sources' rules (and
systemd-measure 252's PCR11)."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from image.pe import PeImage, pe_checksum
from image.uki import (
    EDK2_AUTO_BOOT_OPTION_DATA,
    PLAIN_LAUNCH,
    FirmwareLaunch,
    KernelEntry,
    Uki,
    build_uki,
    pcr9_events,
    pcr11_events,
    predict_pcr4,
    predict_pcr11,
    predict_pcrs,
)
from offchain.errors import BuildError, ParseError, Reason, RequestError
from tests.unit.image.tools import EPOCH, Payload, as_kernel, objdump_sections, pesign_digest, run, tool_or_skip

SYSTEMD_MEASURE = "/usr/lib/systemd/systemd-measure"
ZERO = bytes(32)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def chain(*digests: bytes) -> bytes:
    """PCR replay written out here, independently of image.boot_events: extend from zero."""
    pcr = ZERO
    for digest in digests:
        pcr = sha256(pcr + digest)
    return pcr


def stub_pcr11(sections: list[tuple[str, bytes]]) -> bytes:
    """systemd-stub 252 by its documentation: per section, SHA-256 of the name with NUL, then of the data."""
    return chain(*(sha256(part) for name, data in sections for part in (name.encode() + b"\0", data)))


def ucs2(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\0\0"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- assembly ------------------------------------------------------------------------------------------


def test_sections_read_back_with_objdump(stub: bytes, uki: bytes, payload: Payload, tmp_path: Path) -> None:
    stub_sections = objdump_sections(_write(tmp_path, "stub.efi", stub))
    sections = objdump_sections(_write(tmp_path, "uki.efi", uki))
    assert sections[: len(stub_sections)] == stub_sections
    added = sections[len(stub_sections) :]
    assert payload.uname is not None
    expected = [(".osrel", payload.osrel), (".cmdline", payload.cmdline.encode()), (".uname", payload.uname.encode()),
                (".initrd", payload.initrd), (".linux", payload.linux)]
    assert [(s.name, s.size) for s in added] == [(name, len(data)) for name, data in expected]
    stub_end = max(s.vma + s.size for s in stub_sections)
    assert added[0].vma == -(-stub_end // 0x1000) * 0x1000
    for before, after in zip(added, added[1:]):
        assert after.vma % 0x1000 == 0 and after.vma >= before.vma + before.size
    objcopy = tool_or_skip("objcopy")
    for name, data in expected:  # binutils extracts each section's contents
        out = tmp_path / f"dump{name}"
        run(objcopy, f"--dump-section={name}={out}", tmp_path / "uki.efi", tmp_path / "scratch.efi")
        assert out.read_bytes() == data


def test_builds_are_byte_identical(stub: bytes, uki: bytes, payload: Payload) -> None:
    assert payload.build(stub) == uki


def test_another_timestamp_changes_only_timestamp_and_checksum(stub: bytes, uki: bytes, payload: Payload) -> None:
    other = payload.build(stub, timestamp=EPOCH + 1)
    pe = PeImage.from_bytes(other)
    assert pe.timestamp == EPOCH + 1 and PeImage.from_bytes(uki).timestamp == EPOCH
    changed = {i for i, (a, b) in enumerate(zip(uki, other)) if a != b}
    assert changed and changed <= set(range(pe.timestamp_offset, pe.timestamp_offset + 4)) | set(
        range(pe.checksum_offset, pe.checksum_offset + 4))


def test_uki_is_aligned_for_signing_and_checksummed(uki: bytes) -> None:
    pe = PeImage.from_bytes(uki)
    assert len(uki) % 8 == 0
    assert pe_checksum(uki, pe.checksum_offset) == pe.checksum


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"cmdline": "root=/dev/vda ro quiet\n"}, Reason.INPUT_INVALID),
        ({"cmdline": "root=PARTUUID=ü"}, Reason.INPUT_INVALID),
        ({"cmdline": ""}, Reason.INPUT_INVALID),
        ({"uname": "6.1\t"}, Reason.INPUT_INVALID),
        ({"initrd": b""}, Reason.INPUT_INVALID),
        ({"linux": b""}, Reason.INPUT_INVALID),
        ({"osrel": b""}, Reason.INPUT_INVALID),
    ],
    ids=["cmdline_newline", "cmdline_non_ascii", "cmdline_empty", "uname_tab", "initrd_empty", "linux_empty",
         "osrel_empty"],
)
def test_bad_inputs_are_refused(stub: bytes, payload: Payload, change: dict[str, object], reason: Reason) -> None:
    with pytest.raises(RequestError) as exc:
        replace(payload, **change).build(stub)  # type: ignore[arg-type]
    assert exc.value.reason is reason


@pytest.mark.parametrize("timestamp", [-1, 1 << 32], ids=["negative", "past_u32"])
def test_a_timestamp_outside_u32_is_refused(stub: bytes, payload: Payload, timestamp: int) -> None:
    with pytest.raises(RequestError) as exc:
        payload.build(stub, timestamp=timestamp)
    assert exc.value.reason is Reason.INPUT_INVALID


def test_a_stub_that_is_already_a_uki_is_refused(uki: bytes, payload: Payload) -> None:
    with pytest.raises(ParseError) as exc:
        payload.build(uki)
    assert exc.value.reason is Reason.IMAGE_UKI_INVALID


def test_a_stub_that_is_not_a_pe_image_is_refused(payload: Payload) -> None:
    with pytest.raises(ParseError) as exc:
        payload.build(b"MZ" + bytes(200))
    assert exc.value.reason is Reason.IMAGE_PE_MALFORMED


def _build(stub: bytes, payload: Payload, objcopy: str) -> bytes:
    return build_uki(stub, linux=payload.linux, initrd=payload.initrd, cmdline=payload.cmdline, osrel=payload.osrel,
                     uname=payload.uname, timestamp=EPOCH, objcopy=objcopy)


def test_objcopy_missing_or_failing_is_a_build_error(stub: bytes, payload: Payload, tmp_path: Path) -> None:
    for objcopy in (str(tmp_path / "no-such-objcopy"), "false"):
        with pytest.raises(BuildError) as exc:
            _build(stub, payload, objcopy)
        assert exc.value.reason is Reason.IMAGE_TOOL_FAILED


def test_an_objcopy_that_ignores_the_sections_is_caught(stub: bytes, payload: Payload, tmp_path: Path) -> None:
    lazy = tmp_path / "objcopy"
    lazy.write_text('#!/bin/sh\nfor last; do :; done\neval "in=\\${$(($#-1))}"\ncp "$in" "$last"\n')
    lazy.chmod(0o755)
    with pytest.raises(BuildError) as exc:
        _build(stub, payload, str(lazy))
    assert exc.value.reason is Reason.IMAGE_TOOL_FAILED


# --- PCR11 ---------------------------------------------------------------------------------------------


def test_pcr11_is_the_stubs_replay(uki: bytes, payload: Payload) -> None:
    # .uname is in the image but systemd-stub 252 does not know it: it is not measured
    expected = stub_pcr11([(".linux", payload.linux), (".osrel", payload.osrel),
                           (".cmdline", payload.cmdline.encode()), (".initrd", payload.initrd)])
    assert predict_pcr11(uki) == expected
    assert [e.description for e in pcr11_events(Uki.from_bytes(uki))] == [
        ".linux", ".linux", ".osrel", ".osrel", ".cmdline", ".cmdline", ".initrd", ".initrd"]


def test_pcr11_ignores_uname_but_not_one_byte_of_the_kernel(stub: bytes, uki: bytes, payload: Payload) -> None:
    assert predict_pcr11(replace(payload, uname=None).build(stub)) == predict_pcr11(uki)
    assert predict_pcr11(replace(payload, uname="other").build(stub)) == predict_pcr11(uki)
    flipped = bytes([payload.linux[0] ^ 1]) + payload.linux[1:]
    assert predict_pcr11(replace(payload, linux=flipped).build(stub)) != predict_pcr11(uki)
    assert predict_pcr11(replace(payload, cmdline=payload.cmdline + " quiet").build(stub)) != predict_pcr11(uki)


def _section_header_offset(uki: bytes, name: str) -> int:
    pe = PeImage.from_bytes(uki)
    table = pe.optional_header_offset + int(struct.unpack_from("<H", uki, pe.pe_offset + 20)[0])
    index = [h.display_name for h in pe.sections].index(name)
    return table + 40 * index


def _renamed(uki: bytes, old: str, new: bytes) -> bytes:
    at = _section_header_offset(uki, old)
    return uki[:at] + new.ljust(8, b"\0") + uki[at + 8 :]


def test_section_names_match_by_prefix_and_the_last_header_wins(uki: bytes, payload: Payload) -> None:
    """pe.c compares only the known name's length: '.osrelX' after '.osrel' in the table replaces it."""
    assert payload.uname is not None
    renamed = _renamed(uki, ".uname", b".osrelX")
    expected = stub_pcr11([(".linux", payload.linux), (".osrel", payload.uname.encode()),
                           (".cmdline", payload.cmdline.encode()), (".initrd", payload.initrd)])
    assert predict_pcr11(renamed) == expected != predict_pcr11(uki)


def test_a_section_with_virtual_size_zero_is_not_measured(uki: bytes, payload: Payload) -> None:
    at = _section_header_offset(uki, ".osrel")
    empty = uki[: at + 8] + bytes(4) + uki[at + 12 :]
    expected = stub_pcr11([(".linux", payload.linux), (".cmdline", payload.cmdline.encode()),
                           (".initrd", payload.initrd)])
    assert predict_pcr11(empty) == expected


def _measure(tmp_path: Path, payload: Payload, phase: str) -> bytes:
    measure = tool_or_skip(SYSTEMD_MEASURE)
    files = {"linux": payload.linux, "initrd": payload.initrd, "osrel": payload.osrel,
             "cmdline": payload.cmdline.encode()}
    args = [f"--{name}={_write(tmp_path, name, data)}" for name, data in files.items()]
    out = run(measure, "calculate", *args, "--bank=sha256", f"--phase={phase}", "--json=short")
    (entry,) = json.loads(out)["sha256"]
    assert entry["pcr"] == 11
    return bytes.fromhex(entry["hash"])


def test_pcr11_is_what_systemd_measure_252_calculates(uki: bytes, payload: Payload, tmp_path: Path) -> None:
    assert predict_pcr11(uki) == _measure(tmp_path, payload, "")


def test_pcr11_after_the_pcrphase_words_is_what_systemd_measure_calculates(
    uki: bytes, payload: Payload, tmp_path: Path
) -> None:
    assert predict_pcr11(uki, ["sysinit", "ready"]) == _measure(tmp_path, payload, "sysinit:ready")
    assert predict_pcr11(uki, ["sysinit"]) != predict_pcr11(uki, ["sysinit", "ready"])


@pytest.mark.parametrize("phases", [[""], "sysinit"], ids=["empty_word", "a_string_not_a_list"])
def test_bad_phases_are_refused(uki: bytes, phases: list[str]) -> None:
    with pytest.raises(RequestError) as exc:
        predict_pcr11(uki, phases)
    assert exc.value.reason is Reason.INPUT_INVALID


# --- PCR4 ----------------------------------------------------------------------------------------------

CALLING = sha256(b"Calling EFI Application from Boot Option")
SEPARATOR = sha256(b"\0\0\0\0")


def test_pcr4_is_action_separator_and_the_ukis_authenticode_digest(uki: bytes, tmp_path: Path) -> None:
    """Under Secure Boot the stub keeps the kernel from the firmware's measurement."""
    secure = replace(PLAIN_LAUNCH, secure_boot=True)
    assert predict_pcr4(uki, secure) == chain(CALLING, SEPARATOR, pesign_digest(_write(tmp_path, "u.efi", uki)))


@pytest.fixture(scope="module")
def pe_kernel(stub: bytes) -> bytes:
    """A PE stand-in for Linux 6.1 (image version 1): systemd-stub 252 starts it with LoadImage."""
    return as_kernel(stub, 1)


@pytest.fixture(scope="module")
def loadimage_uki(stub: bytes, payload: Payload, pe_kernel: bytes) -> bytes:
    return replace(payload, linux=pe_kernel).build(stub)


def test_without_secure_boot_the_firmware_also_measures_the_kernel(
    loadimage_uki: bytes, pe_kernel: bytes, tmp_path: Path
) -> None:
    """Stub 252 installs its security override only under Secure Boot; without it, edk2 measures
    the kernel it is asked to LoadImage (what the QEMU boot test reads from the event log)."""
    unsigned = chain(CALLING, SEPARATOR, pesign_digest(_write(tmp_path, "u.efi", loadimage_uki)))
    expected = chain(CALLING, SEPARATOR, pesign_digest(_write(tmp_path, "u.efi", loadimage_uki)),
                     pesign_digest(_write(tmp_path, "k.efi", pe_kernel)))
    assert predict_pcr4(loadimage_uki, PLAIN_LAUNCH) == expected
    assert predict_pcr4(loadimage_uki, replace(PLAIN_LAUNCH, secure_boot=True)) == unsigned


def test_a_handover_kernel_is_never_loaded_with_loadimage(stub: bytes, payload: Payload) -> None:
    handover = replace(payload, linux=as_kernel(stub, 0)).build(stub)
    assert Uki.from_bytes(handover).kernel_entry() is KernelEntry.EFI_HANDOVER
    assert predict_pcr4(handover, PLAIN_LAUNCH) == predict_pcr4(handover, replace(PLAIN_LAUNCH, secure_boot=True))


# --- PCR9 and PCR12 ------------------------------------------------------------------------------------


def test_pcrs_of_a_plain_launch(loadimage_uki: bytes, payload: Payload) -> None:
    pcrs = predict_pcrs(loadimage_uki, PLAIN_LAUNCH)
    assert pcrs[9] == chain(sha256(ucs2(payload.cmdline)), sha256(payload.initrd))
    assert pcrs[11] == predict_pcr11(loadimage_uki)
    assert pcrs[12] == ZERO  # the embedded command line is measured in PCR11 only
    assert pcrs[4] == predict_pcr4(loadimage_uki, PLAIN_LAUNCH)
    assert [e.description for e in pcr9_events(Uki.from_bytes(loadimage_uki), PLAIN_LAUNCH)] == [
        "LOADED_IMAGE::LoadOptions", "Linux initrd"]


def test_the_handover_path_measures_nothing_into_pcr9(stub: bytes, payload: Payload) -> None:
    handover = replace(payload, linux=as_kernel(stub, 0)).build(stub)
    assert predict_pcrs(handover, PLAIN_LAUNCH)[9] == ZERO


def test_edk2_auto_boot_option_replaces_the_command_line_without_secure_boot(
    loadimage_uki: bytes, payload: Payload
) -> None:
    """OVMF's own boot options carry a GUID as OptionalData; stub 252 takes it for a command line."""
    launch = replace(PLAIN_LAUNCH, load_options=EDK2_AUTO_BOOT_OPTION_DATA)
    pcrs = predict_pcrs(loadimage_uki, launch)
    assert pcrs[12] == chain(sha256(EDK2_AUTO_BOOT_OPTION_DATA + b"\0\0"))
    assert pcrs[9] == chain(sha256(EDK2_AUTO_BOOT_OPTION_DATA + b"\0\0"), sha256(payload.initrd))
    secure = predict_pcrs(loadimage_uki, replace(launch, secure_boot=True))
    assert secure[12] == ZERO and secure[9] == predict_pcrs(loadimage_uki, PLAIN_LAUNCH)[9]


@pytest.mark.parametrize(
    ("options", "secure_boot", "text", "from_options"),
    [
        (b"", False, "root=/dev/vda ro", False),
        (b"\x01", False, "root=/dev/vda ro", False),
        (ucs2("\x1fquiet")[:-2], False, "root=/dev/vda ro", False),
        (ucs2("quiet\tsplash  \r\n")[:-2], False, "quiet splash", True),
        (ucs2("quiet") + ucs2("ignored"), False, "quiet", True),
        (ucs2("quiet")[:-2] + b"x", False, "quiet", True),
        (ucs2("quiet")[:-2], True, "root=/dev/vda ro", False),
        (ucs2("   ")[:-2], False, "", True),
    ],
    ids=["none", "one_byte", "control_first", "mangled", "nul_inside", "odd_length", "secure_boot", "only_spaces"],
)
def test_which_command_line_the_stub_uses(
    uki: bytes, options: bytes, secure_boot: bool, text: str, from_options: bool
) -> None:
    cmdline = Uki.from_bytes(uki).command_line(FirmwareLaunch(options, secure_boot))
    assert cmdline is not None
    assert (cmdline.text, cmdline.from_load_options) == (text, from_options)
    assert cmdline.load_options == ucs2(text)


def _with_cmdline(uki: bytes, content: bytes) -> bytes:
    pe = PeImage.from_bytes(uki)
    (header,) = [h for h in pe.sections if h.display_name == ".cmdline"]
    assert len(content) == header.virtual_size
    at = header.pointer_to_raw_data
    return uki[:at] + content + uki[at + len(content) :]


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b"root=/dev/vda   ", "root=/dev/vda"),
        (b"a\xc3\xa9b".ljust(16, b" "), "a\u00e9b"),
        (b"a\xffb".ljust(16, b" "), "ab"),
        (b"a\xc3Ab".ljust(16, b" "), "ab"),
        (b"a\xf0\x9f\x98\x80b".ljust(16, b" "), "ab"),
        (b"a\xed\xa0\x80b".ljust(16, b" "), "ab"),
        (b"a\nb\0c".ljust(16, b" "), "a b"),
        (b"a\xc0\x80b".ljust(16, b" "), "a"),
        (b"abcdefghijklmn\xe2\x82", "abcdefghijklmn"),
    ],
    ids=["trailing_spaces", "two_byte", "bad_lead", "bad_continuation", "outside_bmp", "surrogate", "newline_nul",
         "overlong_nul", "short_sequence_at_end"],
)
def test_embedded_command_line_is_converted_as_the_stub_does(uki: bytes, content: bytes, text: str) -> None:
    cmdline = Uki.from_bytes(_with_cmdline(uki, content)).command_line(PLAIN_LAUNCH)
    assert cmdline is not None and cmdline.text == text and not cmdline.from_load_options


def test_no_command_line_at_all(uki: bytes) -> None:
    assert Uki.from_bytes(_renamed(uki, ".cmdline", b".cmdlinX")).command_line(PLAIN_LAUNCH) is None


# --- what systemd-stub 252 would refuse ---------------------------------------------------------------


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def test_a_valid_uki_is_accepted(uki: bytes) -> None:
    assert set(Uki.from_bytes(uki).sections) == {".linux", ".osrel", ".cmdline", ".initrd"}


def test_the_stub_alone_has_no_linux_section(stub: bytes) -> None:
    with pytest.raises(ParseError) as exc:
        Uki.from_bytes(stub)
    assert exc.value.reason is Reason.IMAGE_UKI_INVALID


def test_uki_negatives(uki: bytes) -> None:
    pe = PeImage.from_bytes(uki)
    initrd_va = _section_header_offset(uki, ".initrd") + 12
    cmdline_va = struct.unpack_from("<I", uki, _section_header_offset(uki, ".cmdline") + 12)[0]
    cases = {
        "machine_i386": _patched(uki, pe.pe_offset + 4, "<H", 0x14C),
        "linux_virtual_size_zero": _patched(uki, _section_header_offset(uki, ".linux") + 8, "<I", 0),
        "overlapping_sections": _patched(uki, initrd_va, "<I", cmdline_va),
        "linux_renamed": _renamed(uki, ".linux", b".linu"),
    }
    for name, data in cases.items():
        with pytest.raises(ParseError) as exc:
            Uki.from_bytes(data)
        assert exc.value.reason is Reason.IMAGE_UKI_INVALID, name


def test_a_kernel_that_is_not_an_x64_pe_cannot_be_started(stub: bytes, uki: bytes, payload: Payload) -> None:
    i386 = bytearray(as_kernel(stub, 1))
    struct.pack_into("<H", i386, struct.unpack_from("<I", stub, 0x3C)[0] + 4, 0x14C)
    for bad in (uki, replace(payload, linux=bytes(i386)).build(stub)):
        with pytest.raises(ParseError) as exc:
            predict_pcrs(bad, PLAIN_LAUNCH)
        assert exc.value.reason is Reason.IMAGE_UKI_INVALID


def test_a_corrupt_uki_is_a_typed_error_never_a_crash(uki: bytes) -> None:
    for cut in (10, 300, 0x11000):
        with pytest.raises(ParseError) as exc:
            predict_pcr11(uki[:cut])
        assert exc.value.reason in {Reason.IMAGE_PE_MALFORMED, Reason.IMAGE_UKI_INVALID}


def test_objdump_agrees_the_built_uki_is_a_pe_image(uki: bytes, tmp_path: Path) -> None:
    done = subprocess.run([tool_or_skip("objdump"), "-f", str(_write(tmp_path, "u.efi", uki))],
                          capture_output=True, text=True, check=False)
    assert "file format pei-x86-64" in done.stdout


@settings(max_examples=200, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 0x6FF), st.integers(0, 255)), min_size=1, max_size=4))
def test_damaged_uki_headers_predict_or_raise_a_typed_error(loadimage_uki: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(loadimage_uki)
    for offset, value in edits:
        data[offset] = value
    try:
        pcrs = predict_pcrs(bytes(data), PLAIN_LAUNCH)
    except ParseError as exc:
        assert exc.reason in {Reason.IMAGE_PE_MALFORMED, Reason.IMAGE_UKI_INVALID}
    else:
        assert set(pcrs) == {4, 9, 11, 12}
