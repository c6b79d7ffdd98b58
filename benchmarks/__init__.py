"""Benchmarks behind ``scripts/bench``; the README quotes figures only from these."""

import warnings

# Real and development VCEKs carry serial number 0 (see offchain/cli/root.py); keep the output clean.
warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
