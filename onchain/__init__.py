"""cvm-attest on chain: the CvmRegistry client, the relayer, the SDK for dApp backends.

Builds calldata from ``offchain.abi`` objects; ships the compiled contracts in ``onchain/artifacts``.
"""

import logging

# A library logs; the application decides where to (``cvm-cli relay`` sets up its handlers).
logging.getLogger("cvm_attest").addHandler(logging.NullHandler())
