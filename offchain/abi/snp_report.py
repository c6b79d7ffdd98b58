"""The SEV-SNP ATTESTATION_REPORT (AMD SEV-SNP ABI specification, Table 23 "ATTESTATION_REPORT
Structure"; TCB_VERSION in Table 3 / "TCB_VERSION Structure"; guest policy in section 4.3 "Guest
Policy", Table 9).

Structure only: :meth:`SnpReport.from_bytes` checks the length, the version, the signature
algorithm, that every reserved byte is zero and that the bit fields hold defined values. Whether a
value is *acceptable* (measurement, TCB, debug...) is the policy's business, and whether the
signature verifies is the verifier's.

Layout (all integers little-endian; offsets as in the ABI table)::

    0x000 VERSION u32            0x004 GUEST_SVN u32        0x008 POLICY u64
    0x010 FAMILY_ID [16]         0x020 IMAGE_ID [16]        0x030 VMPL u32
    0x034 SIGNATURE_ALGO u32     0x038 CURRENT_TCB u64      0x040 PLATFORM_INFO u64
    0x048 flags u32: bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2-4 SIGNING_KEY, 5-31 reserved
    0x04C reserved [4]           0x050 REPORT_DATA [64]     0x090 MEASUREMENT [48]
    0x0C0 HOST_DATA [32]         0x0E0 ID_KEY_DIGEST [48]   0x110 AUTHOR_KEY_DIGEST [48]
    0x140 REPORT_ID [32]         0x160 REPORT_ID_MA [32]    0x180 REPORTED_TCB u64
    0x188 CPUID_FAM_ID u8        0x189 CPUID_MOD_ID u8      0x18A CPUID_STEP u8   (version >= 3)
    0x18B reserved [21]          0x1A0 CHIP_ID [64]         0x1E0 COMMITTED_TCB u64
    0x1E8 CURRENT_BUILD/MINOR/MAJOR u8, reserved u8
    0x1EC COMMITTED_BUILD/MINOR/MAJOR u8, reserved u8
    0x1F0 LAUNCH_TCB u64
    0x1F8 LAUNCH_MIT_VECTOR u64  0x200 CURRENT_MIT_VECTOR u64                     (version >= 5)
    0x208 reserved [152]
    0x2A0 SIGNATURE [512]: R [72] little-endian, S [72] little-endian, reserved [368]

The signed bytes are ``0x000..0x29F``; the signature is ECDSA P-384 over their SHA-384, so R and S
occupy only the low 48 bytes of their 72-byte fields.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Self

from offchain.errors import ParseError, Reason

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = (2, 3, 5)
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1
SIGNATURE_COMPONENT_SIZE = 72
ECDSA_P384_SIZE = 48


class Product(str, enum.Enum):
    """AMD EPYC product lines that run SEV-SNP, named as AMD KDS names them (lower case here)."""

    MILAN = "milan"
    GENOA = "genoa"
    TURIN = "turin"

    @classmethod
    def from_name(cls, name: str) -> Product:
        """The product from any AMD spelling: ``Milan-B0``, ``SEV-Genoa``, ``ARK-Turin``, ``SEV-VLEK-Milan``.

        Certificate productName extensions, ASK/ASVK/ARK common names and KDS path segments all
        name the product line with a prefix and/or a stepping suffix; this accepts each of them.
        """
        text = name.strip().lower()
        for prefix in ("sev-vlek-", "sev-", "ark-", "ask-", "asvk-"):
            if text.startswith(prefix):
                text = text[len(prefix) :]
                break
        for product in cls:
            if text == product.value or text.startswith(product.value + "-"):
                return product
        raise ParseError(Reason.SNP_PRODUCT_UNKNOWN, f"unknown AMD product name {name!r}", name=name)

    @property
    def display_name(self) -> str:
        """``Milan``, ``Genoa``, ``Turin``: the spelling in certificate names and KDS URLs."""
        return self.value.capitalize()


class SignerKind(str, enum.Enum):
    """Which key signed the report (the SIGNING_KEY field): the chip's VCEK or the CSP's VLEK."""

    VCEK = "vcek"
    VLEK = "vlek"


_SIGNING_KEY_CODES = {0: SignerKind.VCEK, 1: SignerKind.VLEK}


def _check_u8(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ParseError(Reason.INPUT_INVALID, f"{name} must be 0..255, got {value!r}", field=name)


@dataclass(frozen=True, slots=True)
class TcbVersion:
    """One TCB_VERSION: the security patch levels of each firmware component.

    The u64 layout depends on the product line, not on the report version (ABI spec, "TCB_VERSION
    Structure"): Milan and Genoa put BOOT_LOADER in byte 0, TEE in byte 1, SNP in byte 6 and
    MICROCODE in byte 7; Turin puts FMC in byte 0, BOOT_LOADER in byte 1, TEE in byte 2, SNP in
    byte 3 and MICROCODE in byte 7. All other bytes are reserved and must be zero.

    ``product`` records which layout the value was decoded with; it does not take part in
    equality, so a TCB from a certificate compares equal to the same TCB from a report.
    """

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int = 0
    product: Product | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("bootloader", "tee", "snp", "microcode", "fmc"):
            _check_u8(name, getattr(self, name))
        if self.fmc and self.product not in (None, Product.TURIN):
            raise ParseError(Reason.INPUT_INVALID, f"{self.product.display_name} TCBs have no FMC field", field="fmc")

    @classmethod
    def from_raw(cls, raw: int, product: Product) -> Self:
        """Decode a TCB_VERSION u64 with the layout of ``product``; reserved bytes must be zero."""
        if not isinstance(raw, int) or not 0 <= raw < 1 << 64:
            raise ParseError(Reason.INPUT_INVALID, f"a TCB_VERSION is a u64, got {raw!r}")
        b = raw.to_bytes(8, "little")
        if product is Product.TURIN:
            reserved = b[4:7]
            fields = dict(fmc=b[0], bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7])
        else:
            reserved = b[2:6]
            fields = dict(bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])
        if any(reserved):
            raise ParseError(
                Reason.SNP_REPORT_RESERVED,
                f"TCB_VERSION {raw:#018x} has reserved bytes set for the {product.display_name} layout",
                raw=f"{raw:#x}",
                product=product.value,
            )
        return cls(product=product, **fields)

    def to_raw(self, product: Product | None = None) -> int:
        """Encode as the u64 TCB_VERSION of ``product`` (default: the product it was decoded with)."""
        product = product or self.product
        if product is None:
            raise ParseError(Reason.INPUT_INVALID, "a TCB_VERSION layout needs a product")
        b = bytearray(8)
        if product is Product.TURIN:
            b[0], b[1], b[2], b[3] = self.fmc, self.bootloader, self.tee, self.snp
        else:
            if self.fmc:
                raise ParseError(Reason.INPUT_INVALID, f"{product.display_name} TCBs have no FMC field", field="fmc")
            b[0], b[1], b[6] = self.bootloader, self.tee, self.snp
        b[7] = self.microcode
        return int.from_bytes(b, "little")

    def to_json(self) -> dict[str, Any]:
        """``{"bootloader", "tee", "snp", "microcode"}`` plus ``fmc`` for Turin and ``raw`` when the layout is known."""
        out: dict[str, Any] = {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.product is Product.TURIN or (self.product is None and self.fmc):
            out["fmc"] = self.fmc
        if self.product is not None:
            out["raw"] = f"{self.to_raw():#018x}"
        return out

    def components(self) -> dict[str, int]:
        """The SVNs by name, fmc included (0 outside Turin): what a minimum-TCB policy compares."""
        return {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
            "fmc": self.fmc,
        }


# Guest policy bits (ABI spec section 4.3, Table 9 "Guest Policy Structure").
_POLICY_ABI_MINOR = 0
_POLICY_ABI_MAJOR = 8
_POLICY_FLAGS = {
    "smt": 16,
    "migrate_ma": 18,
    "debug": 19,
    "single_socket": 20,
    "cxl_allow": 21,
    "mem_aes_256_xts": 22,
    "rapl_dis": 23,
    "ciphertext_hiding_dram": 24,
    "page_swap_disable": 25,
}
POLICY_RESERVED_ONE_BIT = 17
POLICY_DEFINED_MASK = (
    0xFFFF | (1 << POLICY_RESERVED_ONE_BIT) | sum(1 << bit for bit in _POLICY_FLAGS.values())
)


@dataclass(frozen=True, slots=True)
class GuestPolicy:
    """The guest policy u64 the guest owner set at launch (ABI spec 4.3, Table 9).

    Bits 0-7 ABI_MINOR, 8-15 ABI_MAJOR, 16 SMT allowed, 17 reserved (must be one), 18 MIGRATE_MA
    allowed, 19 DEBUG allowed, 20 SINGLE_SOCKET required, 21 CXL_ALLOW, 22 MEM_AES_256_XTS
    required, 23 RAPL_DIS required, 24 CIPHERTEXT_HIDING_DRAM required, 25 PAGE_SWAP_DISABLE;
    bits 26-63 are reserved and must be zero.
    """

    abi_minor: int = 0
    abi_major: int = 0
    smt: bool = True
    migrate_ma: bool = False
    debug: bool = False
    single_socket: bool = False
    cxl_allow: bool = False
    mem_aes_256_xts: bool = False
    rapl_dis: bool = False
    ciphertext_hiding_dram: bool = False
    page_swap_disable: bool = False

    def __post_init__(self) -> None:
        _check_u8("abi_minor", self.abi_minor)
        _check_u8("abi_major", self.abi_major)

    @classmethod
    def from_raw(cls, raw: int) -> Self:
        if not isinstance(raw, int) or not 0 <= raw < 1 << 64:
            raise ParseError(Reason.SNP_REPORT_MALFORMED, f"a guest policy is a u64, got {raw!r}")
        if not raw >> POLICY_RESERVED_ONE_BIT & 1:
            raise ParseError(
                Reason.SNP_REPORT_RESERVED, f"guest policy {raw:#x}: reserved bit 17 must be one", field="policy"
            )
        if raw & ~POLICY_DEFINED_MASK:
            raise ParseError(
                Reason.SNP_REPORT_RESERVED,
                f"guest policy {raw:#x}: reserved bits {raw & ~POLICY_DEFINED_MASK:#x} set",
                field="policy",
            )
        flags = {name: bool(raw >> bit & 1) for name, bit in _POLICY_FLAGS.items()}
        return cls(abi_minor=raw & 0xFF, abi_major=raw >> _POLICY_ABI_MAJOR & 0xFF, **flags)

    def to_raw(self) -> int:
        raw = self.abi_minor << _POLICY_ABI_MINOR | self.abi_major << _POLICY_ABI_MAJOR
        raw |= 1 << POLICY_RESERVED_ONE_BIT
        for name, bit in _POLICY_FLAGS.items():
            if getattr(self, name):
                raw |= 1 << bit
        return raw


# flags u32 @0x48
FLAG_AUTHOR_KEY_EN = 1 << 0
FLAG_MASK_CHIP_KEY = 1 << 1
SIGNING_KEY_SHIFT = 2
SIGNING_KEY_MASK = 0b111 << SIGNING_KEY_SHIFT
FLAGS_DEFINED_MASK = FLAG_AUTHOR_KEY_EN | FLAG_MASK_CHIP_KEY | SIGNING_KEY_MASK

# (name, offset, size, kind): kind "int" is a little-endian unsigned integer, "bytes" a byte array.
_LAYOUT: tuple[tuple[str, int, int, str], ...] = (
    ("version", 0x000, 4, "int"),
    ("guest_svn", 0x004, 4, "int"),
    ("policy", 0x008, 8, "int"),
    ("family_id", 0x010, 16, "bytes"),
    ("image_id", 0x020, 16, "bytes"),
    ("vmpl", 0x030, 4, "int"),
    ("signature_algo", 0x034, 4, "int"),
    ("current_tcb", 0x038, 8, "int"),
    ("platform_info", 0x040, 8, "int"),
    ("flags", 0x048, 4, "int"),
    ("report_data", 0x050, 64, "bytes"),
    ("measurement", 0x090, 48, "bytes"),
    ("host_data", 0x0C0, 32, "bytes"),
    ("id_key_digest", 0x0E0, 48, "bytes"),
    ("author_key_digest", 0x110, 48, "bytes"),
    ("report_id", 0x140, 32, "bytes"),
    ("report_id_ma", 0x160, 32, "bytes"),
    ("reported_tcb", 0x180, 8, "int"),
    ("cpuid_fam_id", 0x188, 1, "int"),
    ("cpuid_mod_id", 0x189, 1, "int"),
    ("cpuid_step", 0x18A, 1, "int"),
    ("chip_id", 0x1A0, 64, "bytes"),
    ("committed_tcb", 0x1E0, 8, "int"),
    ("current_build", 0x1E8, 1, "int"),
    ("current_minor", 0x1E9, 1, "int"),
    ("current_major", 0x1EA, 1, "int"),
    ("committed_build", 0x1EC, 1, "int"),
    ("committed_minor", 0x1ED, 1, "int"),
    ("committed_major", 0x1EE, 1, "int"),
    ("launch_tcb", 0x1F0, 8, "int"),
    ("launch_mit_vector", 0x1F8, 8, "int"),
    ("current_mit_vector", 0x200, 8, "int"),
    ("signature_r", 0x2A0, SIGNATURE_COMPONENT_SIZE, "int"),
    ("signature_s", 0x2E8, SIGNATURE_COMPONENT_SIZE, "int"),
)
_FIELD_SIZES = {name: (size, kind) for name, _, size, kind in _LAYOUT}

# Byte ranges that are reserved in every version (must be zero). The high 24 bytes of R and S
# are included: an ECDSA P-384 component is 48 bytes.
RESERVED_RANGES: tuple[tuple[int, int], ...] = (
    (0x04C, 0x050),
    (0x18B, 0x1A0),
    (0x1EB, 0x1EC),
    (0x1EF, 0x1F0),
    (0x208, 0x2A0),
    (0x2A0 + ECDSA_P384_SIZE, 0x2E8),
    (0x2E8 + ECDSA_P384_SIZE, 0x330),
    (0x330, REPORT_SIZE),
)
CPUID_RANGE = (0x188, 0x18B)  # reserved before version 3
MIT_VECTOR_RANGE = (0x1F8, 0x208)  # reserved before version 5

# CPUID family / extended-model high nibble -> product line (AMD family 19h: Milan models 0x0X,
# Genoa 0x1X and its Bergamo/Siena relatives 0xAX; family 1Ah: Turin models 0x0X and 0x1X).
_CPUID_PRODUCTS = {
    (0x19, 0x0): Product.MILAN,
    (0x19, 0x1): Product.GENOA,
    (0x19, 0xA): Product.GENOA,
    (0x1A, 0x0): Product.TURIN,
    (0x1A, 0x1): Product.TURIN,
}

TCB_NAMES = ("current", "reported", "committed", "launch")


@dataclass(frozen=True, slots=True)
class SnpReport:
    """One parsed ATTESTATION_REPORT; every field of ABI Table 23 is an attribute.

    Integers hold u8/u32/u64 fields (the four TCB_VERSIONs raw: decode them with :meth:`tcb`);
    ``bytes`` hold the byte arrays; ``signature_r``/``signature_s`` are the ECDSA components as
    integers. An instance always satisfies what :meth:`from_bytes` checks, whichever way it was made
    (``from_bytes``, :meth:`build`, ``dataclasses.replace``), so :meth:`to_bytes` always yields a
    report that parses back to an equal object.
    """

    version: int = 5
    guest_svn: int = 0
    policy: int = 0x30000
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    vmpl: int = 0
    signature_algo: int = SIGNATURE_ALGO_ECDSA_P384_SHA384
    current_tcb: int = 0
    platform_info: int = 0
    flags: int = 0
    report_data: bytes = bytes(64)
    measurement: bytes = bytes(48)
    host_data: bytes = bytes(32)
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    report_id: bytes = bytes(32)
    report_id_ma: bytes = bytes(32)
    reported_tcb: int = 0
    cpuid_fam_id: int = 0
    cpuid_mod_id: int = 0
    cpuid_step: int = 0
    chip_id: bytes = bytes(64)
    committed_tcb: int = 0
    current_build: int = 0
    current_minor: int = 0
    current_major: int = 0
    committed_build: int = 0
    committed_minor: int = 0
    committed_major: int = 0
    launch_tcb: int = 0
    launch_mit_vector: int = 0
    current_mit_vector: int = 0
    signature_r: int = 0
    signature_s: int = 0

    def __post_init__(self) -> None:
        for name, (size, kind) in _FIELD_SIZES.items():
            value = getattr(self, name)
            if kind == "bytes":
                if not isinstance(value, bytes) or len(value) != size:
                    raise ParseError(
                        Reason.SNP_REPORT_MALFORMED, f"{name} must be {size} bytes", field=name
                    )
            elif not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << (8 * size):
                raise ParseError(
                    Reason.SNP_REPORT_MALFORMED, f"{name} must be a {8 * size}-bit unsigned integer", field=name
                )
        if self.version not in SUPPORTED_VERSIONS:
            raise ParseError(
                Reason.SNP_REPORT_VERSION,
                f"report version {self.version} is not one of {SUPPORTED_VERSIONS}",
                version=self.version,
            )
        if self.signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
            raise ParseError(
                Reason.SNP_REPORT_SIG_ALGO,
                f"signature algorithm {self.signature_algo} is not 1 (ECDSA P-384 with SHA-384)",
                signature_algo=self.signature_algo,
            )
        for name in ("signature_r", "signature_s"):
            if getattr(self, name) >> (8 * ECDSA_P384_SIZE):
                raise ParseError(
                    Reason.SNP_REPORT_RESERVED, f"{name} is wider than 48 bytes (P-384)", field=name
                )
        if self.flags & ~FLAGS_DEFINED_MASK:
            raise ParseError(
                Reason.SNP_REPORT_RESERVED,
                f"reserved flag bits {self.flags & ~FLAGS_DEFINED_MASK:#x} set at 0x48",
                field="flags",
            )
        code = (self.flags & SIGNING_KEY_MASK) >> SIGNING_KEY_SHIFT
        if code not in _SIGNING_KEY_CODES:
            raise ParseError(
                Reason.SNP_REPORT_MALFORMED, f"SIGNING_KEY {code} is neither VCEK (0) nor VLEK (1)", field="flags"
            )
        GuestPolicy.from_raw(self.policy)
        if self.version < 3 and (self.cpuid_fam_id or self.cpuid_mod_id or self.cpuid_step):
            raise ParseError(
                Reason.SNP_REPORT_RESERVED,
                f"version {self.version} reports have no CPUID fields (0x188..0x18A must be zero)",
                field="cpuid",
            )
        if self.version < 5 and (self.launch_mit_vector or self.current_mit_vector):
            raise ParseError(
                Reason.SNP_REPORT_RESERVED,
                f"version {self.version} reports have no mitigation vectors (0x1F8..0x207 must be zero)",
                field="mit_vector",
            )

    # --- wire format ----------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Parse exactly 1184 bytes; raises ParseError with a ``snp.report.*`` reason."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ParseError(Reason.SNP_REPORT_MALFORMED, "an SNP report is bytes")
        data = bytes(data)
        if len(data) != REPORT_SIZE:
            raise ParseError(
                Reason.SNP_REPORT_LENGTH,
                f"an SNP report is {REPORT_SIZE} bytes, got {len(data)}",
                length=len(data),
            )
        version = int.from_bytes(data[0:4], "little")
        if version not in SUPPORTED_VERSIONS:
            raise ParseError(
                Reason.SNP_REPORT_VERSION, f"report version {version} is not one of {SUPPORTED_VERSIONS}", version=version
            )
        for start, end in RESERVED_RANGES:
            if any(data[start:end]):
                raise ParseError(
                    Reason.SNP_REPORT_RESERVED,
                    f"reserved bytes {start:#05x}..{end - 1:#05x} are not zero",
                    start=start,
                    end=end,
                )
        values: dict[str, Any] = {}
        for name, offset, size, kind in _LAYOUT:
            raw = data[offset : offset + size]
            values[name] = raw if kind == "bytes" else int.from_bytes(raw, "little")
        return cls(**values)

    def to_bytes(self) -> bytes:
        out = bytearray(REPORT_SIZE)
        for name, offset, size, kind in _LAYOUT:
            value = getattr(self, name)
            out[offset : offset + size] = value if kind == "bytes" else value.to_bytes(size, "little")
        return bytes(out)

    def signed_bytes(self) -> bytes:
        """Bytes 0x000..0x29F: what the firmware hashes with SHA-384 and signs."""
        return self.to_bytes()[:SIGNED_SIZE]

    @classmethod
    def build(cls, **fields: Any) -> Self:
        """A report from keyword fields; every field not given is zero (version 5, algorithm 1,
        policy 0x30000). Used by the simulated firmware and by tests to lay out a report."""
        unknown = set(fields) - set(_FIELD_SIZES)
        if unknown:
            raise ParseError(Reason.INPUT_INVALID, f"unknown report fields: {sorted(unknown)}")
        return cls(**fields)

    # --- decoded views --------------------------------------------------------------------

    @property
    def signing_key(self) -> SignerKind:
        """SIGNING_KEY (flags bits 2-4): the VCEK or the VLEK signed this report."""
        return _SIGNING_KEY_CODES[(self.flags & SIGNING_KEY_MASK) >> SIGNING_KEY_SHIFT]

    @property
    def mask_chip_key(self) -> bool:
        """MASK_CHIP_KEY (flags bit 1): when set the firmware left the signature zero."""
        return bool(self.flags & FLAG_MASK_CHIP_KEY)

    @property
    def author_key_en(self) -> bool:
        """AUTHOR_KEY_EN (flags bit 0): AUTHOR_KEY_DIGEST is present."""
        return bool(self.flags & FLAG_AUTHOR_KEY_EN)

    @property
    def guest_policy(self) -> GuestPolicy:
        return GuestPolicy.from_raw(self.policy)

    def tcb(self, name: str, product: Product) -> TcbVersion:
        """Decode ``current``/``reported``/``committed``/``launch`` TCB with ``product``'s layout."""
        if name not in TCB_NAMES:
            raise ParseError(Reason.INPUT_INVALID, f"no TCB named {name!r}; one of {TCB_NAMES}")
        return TcbVersion.from_raw(getattr(self, f"{name}_tcb"), product)

    def product_hint(self) -> Product | None:
        """The product line from CPUID_FAM_ID/CPUID_MOD_ID (version 3 and later), else None."""
        if self.version < 3:
            return None
        return _CPUID_PRODUCTS.get((self.cpuid_fam_id, self.cpuid_mod_id >> 4))

    @property
    def current_firmware(self) -> str:
        return f"{self.current_major}.{self.current_minor}.{self.current_build}"

    @property
    def committed_firmware(self) -> str:
        return f"{self.committed_major}.{self.committed_minor}.{self.committed_build}"

    def to_json(self, product: Product | None = None) -> dict[str, Any]:
        """A JSON view: byte arrays as hex, policy/platform_info as ``0x`` hex, TCBs decoded when
        the product is known (else ``{"raw": "0x..."}``). CPUID fields appear from version 3 on,
        mitigation vectors from version 5 on, as in the specification."""

        def tcb(name: str) -> dict[str, Any]:
            if product is None:
                return {"raw": f"{getattr(self, f'{name}_tcb'):#018x}"}
            return self.tcb(name, product).to_json()

        out: dict[str, Any] = {
            "version": self.version,
            "guest_svn": self.guest_svn,
            "policy": hex(self.policy),
            "family_id": self.family_id.hex(),
            "image_id": self.image_id.hex(),
            "vmpl": self.vmpl,
            "signature_algo": self.signature_algo,
            "current_tcb": tcb("current"),
            "platform_info": hex(self.platform_info),
            "author_key_en": int(self.author_key_en),
            "mask_chip_key": int(self.mask_chip_key),
            "signing_key": (self.flags & SIGNING_KEY_MASK) >> SIGNING_KEY_SHIFT,
            "report_data": self.report_data.hex(),
            "measurement": self.measurement.hex(),
            "host_data": self.host_data.hex(),
            "id_key_digest": self.id_key_digest.hex(),
            "author_key_digest": self.author_key_digest.hex(),
            "report_id": self.report_id.hex(),
            "report_id_ma": self.report_id_ma.hex(),
            "reported_tcb": tcb("reported"),
            "chip_id": self.chip_id.hex(),
            "committed_tcb": tcb("committed"),
            "current_fw": self.current_firmware,
            "committed_fw": self.committed_firmware,
            "launch_tcb": tcb("launch"),
            "signature_r": f"{self.signature_r:096x}",
            "signature_s": f"{self.signature_s:096x}",
        }
        if self.version >= 3:
            out["cpuid_fam_id"] = hex(self.cpuid_fam_id)
            out["cpuid_mod_id"] = hex(self.cpuid_mod_id)
            out["cpuid_step"] = hex(self.cpuid_step)
        if self.version >= 5:
            out["launch_mit_vector"] = hex(self.launch_mit_vector)
            out["current_mit_vector"] = hex(self.current_mit_vector)
        if product is not None:
            out["product"] = product.value
        return out

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (validated like any other instance)."""
        return dataclasses.replace(self, **changes)
