"""Golden measurements and policy: which verified values are acceptable (reports every violation)."""

from offchain.policy.check import check_policy, policy_violations
from offchain.policy.golden import GOLDEN_TYPEHASH, Binding, GoldenMeasurement, PolicyRules

__all__ = ["GOLDEN_TYPEHASH", "Binding", "GoldenMeasurement", "PolicyRules", "check_policy", "policy_violations"]
