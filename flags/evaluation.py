"""Flag evaluation for one user: pure functions over a snapshot of flag rules.

A FlagSnapshot holds every flag in scope for one environment (and agent) with its
compiled rules and the agent's tool gates; flags.selectors builds it from the database.
Everything here is plain, picklable data and plain Python, so the runtime endpoint and
OFREP can cache a snapshot and evaluate per request without touching the database.

Evaluation of one flag:
1. off in this environment            -> its off variant, reason DISABLED;
2. rules, top to bottom, first match  -> its variant (TARGETING_MATCH) or its split (SPLIT);
3. no rule matched                    -> the default variant, reason STATIC when the flag
                                         has no rules, DEFAULT when it has some.

Invariants:
- Deterministic: the same snapshot, targeting key and context give the same result in
  every process (bucketing is agentconfig.core.bucketing, salted with "flag:<key>").
- A split needs a targeting key; without one the flag resolves to an ERROR with
  TARGETING_KEY_MISSING (no value), never to a random variant.
- A missing context attribute matches no condition, negated ones included, so
  "country not_in [DE]" does not target everyone who sent no country.
- Evaluation never raises for any context: JSON of any shape is compared safely.
- A gated tool is kept only when its flag resolves to the value true; an error or a
  flag that is absent from the snapshot hides it (fail closed).

Pure module (no Django).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentconfig.core.bucketing import bucket
from flags import semver
from flags.context import CONTEXT_HEADER, QUERY_PREFIX, ContextError, parse_context
from flags.rules import Condition, Rule

__all__ = [
    "CONTEXT_HEADER",
    "QUERY_PREFIX",
    "ContextError",
    "FlagSnapshot",
    "FlagState",
    "Resolution",
    "evaluate",
    "evaluate_all",
    "filter_tools",
    "namespace_of",
    "parse_context",
]

logger = logging.getLogger(__name__)

# OpenFeature resolution reasons.
STATIC = "STATIC"
DEFAULT = "DEFAULT"
TARGETING_MATCH = "TARGETING_MATCH"
SPLIT = "SPLIT"
DISABLED = "DISABLED"
ERROR = "ERROR"
# OpenFeature error codes.
TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
GENERAL = "GENERAL"

TARGETING_KEY_ATTRIBUTE = "targetingKey"
_NUMERIC_TEXT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$", re.ASCII)


@dataclass(frozen=True)
class FlagState:
    """One flag as configured in one environment, ready to evaluate."""

    key: str
    kind: str
    variants: dict[str, Any]
    enabled: bool
    off_variant: str
    default_variant: str
    rules: tuple[Rule, ...] = ()
    # Set when the stored configuration could not be compiled; the flag then resolves
    # to an ERROR (GENERAL) instead of a guessed value.
    problem: str | None = None


@dataclass(frozen=True)
class FlagSnapshot:
    """Every flag in scope for one environment (and agent), with the agent's tool gates.

    `agent_id` None means global flags only, unless the snapshot was built for OFREP,
    which serves every flag of the environment (flags.selectors says which).
    """

    environment_id: int
    agent_id: int | None
    flags: dict[str, FlagState] = field(default_factory=dict)
    # tool name -> key of the boolean flag that gates it
    tool_gates: dict[str, str] = field(default_factory=dict)
    # key -> agent id of each agent-scoped flag (OFREP's snapshot; global flags absent)
    flag_agents: dict[str, int] = field(default_factory=dict)

    def visible_to(self, agent_ids: frozenset[int]) -> FlagSnapshot:
        """The global flags and those of `agent_ids` (every flag when it is empty)."""
        if not agent_ids:
            return self
        flags = {
            key: state
            for key, state in self.flags.items()
            if (owner := self.flag_agents.get(key)) is None or owner in agent_ids
        }
        return FlagSnapshot(
            self.environment_id, self.agent_id, flags, self.tool_gates, self.flag_agents
        )


@dataclass(frozen=True)
class Resolution:
    """A flag's value for one user and why; `rule_number` counts from 1, as the admin shows."""

    key: str
    value: Any
    variant: str | None
    reason: str
    rule_number: int | None = None
    error_code: str | None = None
    error_details: str | None = None

    @property
    def is_error(self) -> bool:
        return self.reason == ERROR

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for response bodies (None fields left out)."""
        out: dict[str, Any] = {"reason": self.reason}
        if not self.is_error:
            out["value"] = self.value
            out["variant"] = self.variant
        for name in ("rule_number", "error_code", "error_details"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def namespace_of(flag_key: str) -> str:
    """The bucketing namespace (salt) of a flag: two flags never deal the same users."""
    return f"flag:{flag_key}"


def evaluate(flag: FlagState, targeting_key: str | None, context: Mapping[str, Any]) -> Resolution:
    """Resolve one flag for one user (see the module docstring for the order)."""
    try:
        return _evaluate(flag, targeting_key, context)
    except Exception:
        # A defect must cost one flag, not the whole response (its tools stay hidden).
        logger.exception("evaluating flag %s failed", flag.key)
        return _error(flag, GENERAL, "the flag could not be evaluated.")


def evaluate_all(
    snapshot: FlagSnapshot, targeting_key: str | None, context: Mapping[str, Any]
) -> dict[str, Resolution]:
    """Every flag of the snapshot resolved for one user, by key."""
    return {key: evaluate(flag, targeting_key, context) for key, flag in snapshot.flags.items()}


def filter_tools(
    snapshot: FlagSnapshot, tools: Sequence[str], resolutions: Mapping[str, Resolution]
) -> list[str]:
    """`tools` without the gated ones whose flag is not true for this user, order kept."""
    kept = []
    for tool in tools:
        flag_key = snapshot.tool_gates.get(tool)
        if flag_key is None:
            kept.append(tool)
            continue
        resolution = resolutions.get(flag_key)
        if resolution is not None and resolution.value is True:
            kept.append(tool)
    return kept


# --- internals --------------------------------------------------------------------------


def _evaluate(flag: FlagState, targeting_key: str | None, context: Mapping[str, Any]) -> Resolution:
    if flag.problem is not None:
        return _error(flag, GENERAL, flag.problem)
    if not flag.enabled:
        return _serve(flag, flag.off_variant, DISABLED)
    for number, rule in enumerate(flag.rules, start=1):
        if not _matches(rule, targeting_key, context):
            continue
        if rule.variant is not None:
            return _serve(flag, rule.variant, TARGETING_MATCH, number)
        if not targeting_key:
            return _error(
                flag,
                TARGETING_KEY_MISSING,
                f"rule {number} of flag {flag.key!r} splits users by their targeting key, "
                "and the request has none.",
                number,
            )
        position = bucket(namespace_of(flag.key), targeting_key)
        for variant, upper in rule.split:
            if position < upper:
                return _serve(flag, variant, SPLIT, number)
    return _serve(flag, flag.default_variant, DEFAULT if flag.rules else STATIC)


def _serve(flag: FlagState, variant: str, reason: str, rule: int | None = None) -> Resolution:
    return Resolution(flag.key, flag.variants[variant], variant, reason, rule)


def _error(flag: FlagState, code: str, details: str, rule: int | None = None) -> Resolution:
    return Resolution(flag.key, None, None, ERROR, rule, code, details)


def _matches(rule: Rule, targeting_key: str | None, context: Mapping[str, Any]) -> bool:
    if rule.users is not None and (not targeting_key or targeting_key not in rule.users):
        return False
    return all(_holds(c, targeting_key, context) for c in rule.conditions)


_MISSING = object()


def _holds(condition: Condition, targeting_key: str | None, context: Mapping[str, Any]) -> bool:
    if condition.attribute == TARGETING_KEY_ATTRIBUTE:
        actual: Any = targeting_key if targeting_key else _MISSING
    else:
        actual = context.get(condition.attribute, _MISSING)
    if actual is _MISSING or actual is None:
        return False
    operator, expected = condition.operator, condition.value
    if operator == "equals":
        return _same(actual, expected)
    if operator == "not_equals":
        return not _same(actual, expected)
    if operator == "in":
        return any(_same(actual, option) for option in expected)
    if operator == "not_in":
        return not any(_same(actual, option) for option in expected)
    if operator == "contains":
        if isinstance(actual, str):
            return expected in actual
        if isinstance(actual, list):
            return any(_same(item, expected) for item in actual)
        return False
    if operator == "starts_with":
        return isinstance(actual, str) and actual.startswith(expected)
    if operator == "ends_with":
        return isinstance(actual, str) and actual.endswith(expected)
    if operator in ("gt", "gte", "lt", "lte"):
        number = _number(actual)
        if number is None:
            return False
        return _compare(operator, number, expected)
    if operator.startswith("semver_"):
        version = semver.parse(actual)
        if version is None:
            return False
        return _compare(operator.removeprefix("semver_"), version, expected)
    return False


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    if operator == "eq":
        return bool(actual == expected)
    if operator == "gt":
        return bool(actual > expected)
    if operator == "gte":
        return bool(actual >= expected)
    if operator == "lt":
        return bool(actual < expected)
    return bool(actual <= expected)


def _same(actual: Any, expected: Any) -> bool:
    """Equality in the rule value's type; text attributes (query parameters) are read as it."""
    if isinstance(expected, bool):
        if isinstance(actual, bool):
            return actual is expected
        return isinstance(actual, str) and actual.lower() == ("true" if expected else "false")
    if isinstance(expected, int | float):
        number = _number(actual)
        return number is not None and number == expected
    return isinstance(actual, str) and actual == expected


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 64 and _NUMERIC_TEXT.match(value.strip()):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        number = float(text)
        return number if math.isfinite(number) else None
    return None
