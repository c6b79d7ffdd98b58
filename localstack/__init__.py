"""The embedded local stack's parts that more than one layer starts: swtpm (:mod:`localstack.swtpm`).

Below ``agent`` (its development and tests run on swtpm) and ``onchain`` (the demo starts one), above
``offchain`` only, so neither of them imports the other to get a software TPM.
"""
