"""The demos, on top of everything: the local flow (onchain.demo) and the flow against a booted image."""
