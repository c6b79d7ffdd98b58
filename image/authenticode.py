"""The Authenticode digest of a PE/COFF image: what UEFI firmware extends into PCR4.

When firmware loads an EFI application from a disk (edk2 ``DxeTpm2MeasureBootLib``,
``Tcg2MeasurePeImage``), it logs an ``EV_EFI_BOOT_SERVICES_APPLICATION`` event whose SHA-256 digest
is the image's Authenticode hash, computed as Microsoft's "Windows Authenticode Portable Executable
Signature Format" (1.0, "Calculating the PE Image Hash") describes:

1. hash the headers from the start of the file up to the optional header's ``CheckSum``;
2. skip ``CheckSum`` (4 bytes); hash on up to the Certificate Table data-directory entry;
3. skip that entry (8 bytes); hash on to ``SizeOfHeaders`` (when the header has no entry 4, hash
   from after ``CheckSum`` straight to ``SizeOfHeaders``);
4. hash each section's raw data (``SizeOfRawData`` bytes at ``PointerToRawData``), sections sorted
   by ``PointerToRawData``, sections without raw data skipped; ``SUM_OF_BYTES_HASHED`` is
   ``SizeOfHeaders`` plus every ``SizeOfRawData``;
5. hash the rest of the file from offset ``SUM_OF_BYTES_HASHED``, less the attribute certificate
   table at its end: ``FILE_SIZE - (SUM_OF_BYTES_HASHED + certificate table size)`` bytes.

Signing a file therefore leaves its digest unchanged, provided the signer does not pad the file
first (signers align the certificate table to 8 bytes: :func:`image.uki.build_uki` writes images
whose length is already a multiple of 8).
"""

from __future__ import annotations

import hashlib

from image.pe import CHECKSUM, PeImage
from offchain.errors import ParseError, Reason


def authenticode_digest(image: PeImage | bytes) -> bytes:
    """SHA-256 Authenticode digest of ``image`` (bytes are parsed first)."""
    pe = image if isinstance(image, PeImage) else PeImage.from_bytes(image)
    data = pe.data
    digest = hashlib.sha256()
    checksum_at = pe.optional_header_offset + CHECKSUM
    digest.update(data[:checksum_at])
    directory_at = pe.certificate_directory_offset
    if directory_at is None:
        digest.update(data[checksum_at + 4 : pe.size_of_headers])
    else:
        digest.update(data[checksum_at + 4 : directory_at])
        digest.update(data[directory_at + 8 : pe.size_of_headers])
    hashed = pe.size_of_headers
    for section in sorted(pe.sections, key=lambda s: s.pointer_to_raw_data):
        if section.size_of_raw_data == 0:
            continue
        digest.update(data[section.pointer_to_raw_data : section.pointer_to_raw_data + section.size_of_raw_data])
        hashed += section.size_of_raw_data
    _, certificate_size = pe.certificate_table
    if len(data) > hashed:  # edk2 hashes nothing more when sections already cover the file
        if len(data) < hashed + certificate_size:
            raise ParseError(
                Reason.IMAGE_PE_MALFORMED,
                f"headers and sections ({hashed} bytes) and the certificate table ({certificate_size}) "
                f"exceed the file ({len(data)} bytes)",
            )
        digest.update(data[hashed : len(data) - certificate_size])
    return digest.digest()
