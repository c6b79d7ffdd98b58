"""cvm-agent: the in-CVM sidecar (docs/agent.md).

``agent.main`` (the ``cvm-agent`` command) starts an :class:`agent.service.Agent`: the TPM and its
attestation key (``agent.tpm``), the SEV-SNP report source (``agent.platforms``: snp, azure, sim),
the measured workload and its updates (``agent.workload``, over ``workload.archive`` and
``workload.compose``), the CVM's Ethereum key (``agent.ethkey``), served by two FastAPI
applications (``agent.app``). ``localstack.swtpm`` (below the agent) starts a software TPM for
development, tests and the demo. The agent never imports ``onchain``.
"""
