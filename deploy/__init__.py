"""Deploying a cvm-attest image to a cloud's SEV-SNP confidential VMs, and uploading a workload.

``deploy.core`` is what every cloud shares (the request, the plan, the ledger, the step runner,
progress, waiting for the agent); ``deploy.azure``, ``deploy.gcp`` and ``deploy.aws`` drive each
cloud's official Python SDK; ``deploy.upload`` sends a workload (and its sealed secrets) to a
running CVM after verifying its evidence. docs/deploy.md is the user's guide.
"""
