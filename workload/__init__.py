"""The workload next to the agent, as both the agent and the image see it (docs/agent.md).

``workload.archive`` checks, extracts and measures an update archive; ``workload.compose`` holds the
rules a ``docker-compose.yml`` must keep so that no container reaches the TPM, the SEV guest device,
the host's namespaces or the agent's state. ``agent`` (on start and on every update), ``cvm-cli
golden predict`` and the image build call them, so one definition decides everywhere. This package
imports ``offchain`` only.
"""
