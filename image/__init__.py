"""The CVM image: its unified kernel image, and the golden measurement its boot path determines.

``image.pe`` reads PE/COFF headers; ``image.authenticode`` computes the digest firmware extends
into PCR4; ``image.uki`` assembles a UKI from systemd's EFI stub and predicts what its boot
measures into PCRs 4, 9, 11 and 12 (docs/image.md, "What the boot measures"); ``image.boot_events``
holds those events and replays them. This package imports ``offchain`` and ``workload`` only.
"""
