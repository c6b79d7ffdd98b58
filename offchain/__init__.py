"""cvm-attest's reference verifier: AMD SEV-SNP reports, vTPM quotes, golden measurements.

Depends on the standard library and ``cryptography`` only. ``offchain.abi`` holds the wire
formats every other package imports; ``verify``, ``policy`` and ``trust`` decide.
"""
