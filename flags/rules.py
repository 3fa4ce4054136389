"""The stored form of a flag's variants and targeting rules: validation and compilation.

A flag's variants are a list (order matters: the first is the fallback of a multivariate
flag) of {"name", "value"}. A flag's rules in one environment are a JSON list, evaluated
top to bottom; the first rule that matches serves its variant:

    [
      {"description": "staff", "users": ["u-17", "u-42"], "variant": "on"},
      {"conditions": [{"attribute": "country", "operator": "in", "value": ["DE", "AT"]},
                      {"attribute": "app_version", "operator": "semver_gte", "value": "2.4.0"}],
       "variant": "on"},
      {"split": [{"variant": "on", "weight": 1000}, {"variant": "off", "weight": 9000}]}
    ]

- A rule matches when the targeting key is in `users` (if given) AND every condition
  holds (if any). A rule with neither matches everyone.
- It serves either one `variant` or a `split`: weights in basis points (1/100 %) that
  sum to 10000. Users are dealt by agentconfig.core.bucketing.bucket("flag:<key>", targeting
  key): the first entry gets buckets [0, w1), the next [w1, w1 + w2), … so raising the
  first entry's weight only ever adds users to it (monotonic rollouts).

Invariants:
- `validate_rules` returns the canonical JSON (what is stored) or raises RulesError
  listing every problem with its place ("rule 2, condition 1 (country): …"); it never
  stores something `compile_rules` cannot compile.
- Compiled rules are plain, picklable data (frozensets, tuples, parsed versions).

Pure module (no Django).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentconfig.core.bucketing import BUCKETS
from flags import semver

BOOLEAN, STRING, JSON = "boolean", "string", "json"
KINDS = (BOOLEAN, STRING, JSON)
BOOLEAN_VARIANTS: tuple[dict[str, Any], ...] = (
    {"name": "on", "value": True},
    {"name": "off", "value": False},
)

VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", re.ASCII)
MAX_VARIANTS = 50
MAX_STRING_VALUE = 10_000
MAX_VARIANTS_BYTES = 100_000
MAX_RULES = 100
MAX_USERS = 10_000
MAX_CONDITIONS = 20
MAX_LIST_VALUES = 1_000
MAX_TEXT = 500
MAX_ATTRIBUTE = 100

EQUALITY_OPERATORS = ("equals", "not_equals")
LIST_OPERATORS = ("in", "not_in")
TEXT_OPERATORS = ("contains", "starts_with", "ends_with")
NUMBER_OPERATORS = ("gt", "gte", "lt", "lte")
SEMVER_OPERATORS = ("semver_eq", "semver_gt", "semver_gte", "semver_lt", "semver_lte")
OPERATORS = (
    EQUALITY_OPERATORS + LIST_OPERATORS + TEXT_OPERATORS + NUMBER_OPERATORS + SEMVER_OPERATORS
)
RULE_KEYS = ("description", "users", "conditions", "variant", "split")
CONDITION_KEYS = ("attribute", "operator", "value")
SPLIT_KEYS = ("variant", "weight")
VARIANT_KEYS = ("name", "value")

Scalar = str | int | float | bool


class RulesError(ValueError):
    """Every problem found, each message saying where it is."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("; ".join(messages))


@dataclass(frozen=True)
class Condition:
    attribute: str
    operator: str
    # equals/not_equals: a scalar; in/not_in: a tuple of scalars; text operators: a str;
    # number operators: an int or float; semver operators: a semver.Version.
    value: Any


@dataclass(frozen=True)
class Rule:
    users: frozenset[str] | None
    conditions: tuple[Condition, ...]
    variant: str | None
    # (variant, exclusive upper bucket), cumulative; the last bound is BUCKETS.
    split: tuple[tuple[str, int], ...] = ()


# --- variants -------------------------------------------------------------------------


def default_variants(kind: str) -> list[dict[str, Any]]:
    """The variants a new flag of `kind` starts with."""
    if kind == BOOLEAN:
        return [dict(v) for v in BOOLEAN_VARIANTS]
    if kind == STRING:
        return [{"name": "control", "value": "control"}]
    return [{"name": "default", "value": {}}]


def initial_variants(kind: str, names: Sequence[str]) -> tuple[str, str]:
    """(default variant, off variant) of a flag in an environment that has no state yet."""
    if kind == BOOLEAN:
        return "on", "off"
    first = names[0] if names else ""
    return first, first


def validate_variants(kind: str, variants: Any) -> list[dict[str, Any]]:
    """The canonical variant list for a flag of `kind`, or RulesError."""
    if kind not in KINDS:
        raise RulesError([f"unknown kind {kind!r}; use one of {', '.join(KINDS)}."])
    if kind == BOOLEAN:
        if variants is not None and _plain(variants) != _plain(list(BOOLEAN_VARIANTS)):
            raise RulesError(
                ['a boolean flag has exactly the variants "on" (true) and "off" (false).']
            )
        return [dict(v) for v in BOOLEAN_VARIANTS]
    errors: list[str] = []
    if not isinstance(variants, list) or not variants:
        raise RulesError(['must be a non-empty list such as [{"name": "short", "value": "…"}, …].'])
    if len(variants) > MAX_VARIANTS:
        errors.append(f"has {len(variants)} variants; the maximum is {MAX_VARIANTS}.")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, variant in enumerate(variants, start=1):
        where = f"variant {position}"
        if not isinstance(variant, dict):
            errors.append(f'{where}: must be an object {{"name": …, "value": …}}.')
            continue
        name = variant.get("name")
        if not isinstance(name, str) or not VARIANT_NAME.match(name):
            errors.append(
                f"{where}: the name {name!r} is not valid; use 1-64 letters, digits, '_', '-' "
                "or '.', starting with a letter or digit."
            )
        elif name in seen:
            errors.append(f"{where}: the name {name!r} is used twice; variant names are unique.")
        else:
            seen.add(name)
            where = f"variant {position} ({name})"
        errors.extend(_unknown_keys(where, variant, VARIANT_KEYS))
        if "value" not in variant:
            errors.append(f"{where}: has no value.")
            continue
        value = variant["value"]
        if kind == STRING and not isinstance(value, str):
            errors.append(f"{where}: a string flag's values are text, not {_kind(value)}.")
        elif kind == STRING and len(value) > MAX_STRING_VALUE:
            errors.append(f"{where}: the value is longer than {MAX_STRING_VALUE:,} characters.")
        elif kind == JSON and not isinstance(value, dict):
            errors.append(
                f"{where}: a JSON flag's values are objects ({{…}}), not {_kind(value)}; "
                "OpenFeature reads them as object flags."
            )
        out.append({"name": name, "value": value})
    if not errors and len(_plain(out)) > MAX_VARIANTS_BYTES:
        errors.append(f"the variants are larger than {MAX_VARIANTS_BYTES:,} bytes in total.")
    if errors:
        raise RulesError(errors)
    return out


def variant_names(variants: Sequence[Mapping[str, Any]]) -> list[str]:
    return [v["name"] for v in variants]


def check_variant(name: Any, names: Sequence[str], where: str) -> list[str]:
    """Messages if `name` is not one of the flag's variants."""
    if isinstance(name, str) and name in names:
        return []
    return [f"{where}: {name!r} is not a variant of this flag; use one of {_listing(names)}."]


# --- rules ----------------------------------------------------------------------------


def validate_rules(rules: Any, names: Sequence[str]) -> list[dict[str, Any]]:
    """The canonical rules (what is stored), or RulesError listing every problem."""
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise RulesError([f"the rules must be a list ([…]), not {_kind(rules)}."])
    if len(rules) > MAX_RULES:
        raise RulesError([f"there are {len(rules)} rules; the maximum is {MAX_RULES}."])
    errors: list[str] = []
    out = []
    for number, rule in enumerate(rules, start=1):
        canonical, problems = _validate_rule(rule, f"rule {number}", names)
        errors.extend(problems)
        out.append(canonical)
    if errors:
        raise RulesError(errors)
    return out


def _validate_rule(rule: Any, where: str, names: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    if not isinstance(rule, dict):
        return {}, [f"{where}: must be an object, not {_kind(rule)}."]
    errors = _unknown_keys(where, rule, RULE_KEYS)
    out: dict[str, Any] = {}
    description = rule.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_TEXT:
        errors.append(f"{where}: the description must be text of at most {MAX_TEXT} characters.")
    elif description.strip():
        out["description"] = description.strip()
    if "users" in rule:
        users = rule["users"]
        if not isinstance(users, list) or not users:
            errors.append(f"{where}: users must be a non-empty list of targeting keys.")
        elif len(users) > MAX_USERS:
            errors.append(f"{where}: lists {len(users):,} users; the maximum is {MAX_USERS:,}.")
        elif not all(isinstance(u, str) and u for u in users):
            bad = next(u for u in users if not (isinstance(u, str) and u))
            errors.append(f"{where}: users are non-empty strings; {bad!r} is not.")
        else:
            # Sorted and deduplicated, so the stored text (and its history diff) is stable.
            out["users"] = sorted(set(users))
    if "conditions" in rule:
        conditions = rule["conditions"]
        if not isinstance(conditions, list) or not conditions:
            errors.append(f"{where}: conditions must be a non-empty list.")
        elif len(conditions) > MAX_CONDITIONS:
            errors.append(
                f"{where}: has {len(conditions)} conditions; the maximum is {MAX_CONDITIONS}."
            )
        else:
            out["conditions"] = []
            for number, condition in enumerate(conditions, start=1):
                canonical, problems = _validate_condition(condition, f"{where}, condition {number}")
                errors.extend(problems)
                out["conditions"].append(canonical)
    has_variant, has_split = "variant" in rule, "split" in rule
    if has_variant == has_split:
        errors.append(
            f'{where}: give either "variant" (serve one variant) or "split" (a weighted split), '
            "not both or neither."
        )
    elif has_variant:
        problems = check_variant(rule["variant"], names, where)
        errors.extend(problems)
        if not problems:
            out["variant"] = rule["variant"]
    else:
        split, problems = _validate_split(rule["split"], where, names)
        errors.extend(problems)
        out["split"] = split
    return out, errors


def _validate_condition(condition: Any, where: str) -> tuple[dict[str, Any], list[str]]:
    if not isinstance(condition, dict):
        return {}, [
            f'{where}: must be an object such as {{"attribute": "country", "operator": '
            f'"equals", "value": "DE"}}, not {_kind(condition)}.'
        ]
    errors = _unknown_keys(where, condition, CONDITION_KEYS)
    attribute = condition.get("attribute")
    if not isinstance(attribute, str) or not attribute.strip() or len(attribute) > MAX_ATTRIBUTE:
        errors.append(
            f"{where}: attribute must be the name of a context attribute "
            f"(1-{MAX_ATTRIBUTE} characters), e.g. 'country'."
        )
        attribute = None
    else:
        where = f"{where} ({attribute})"
    operator = condition.get("operator")
    if operator not in OPERATORS:
        hint = difflib.get_close_matches(str(operator), OPERATORS, n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        errors.append(
            f"{where}: unknown operator {operator!r}.{suggestion} "
            f"Operators: {', '.join(OPERATORS)}."
        )
        return {}, errors
    if "value" not in condition:
        errors.append(f"{where}: has no value.")
        return {}, errors
    value = condition["value"]
    problem = _check_operand(operator, value)
    if problem:
        errors.append(f"{where}: {problem}")
    out = {"attribute": attribute, "operator": operator, "value": value}
    return out, errors


def _check_operand(operator: str, value: Any) -> str | None:
    if operator in EQUALITY_OPERATORS:
        return None if _is_scalar(value) else f"{operator} needs text, a number or true/false."
    if operator in LIST_OPERATORS:
        if not isinstance(value, list) or not value:
            return f'{operator} needs a non-empty list of values, e.g. ["DE", "AT"].'
        if len(value) > MAX_LIST_VALUES:
            return f"{operator} lists {len(value):,} values; the maximum is {MAX_LIST_VALUES:,}."
        bad = [v for v in value if not _is_scalar(v)]
        if bad:
            return f"{operator} values are text, numbers or true/false; {bad[0]!r} is not."
        return None
    if operator in TEXT_OPERATORS:
        return None if isinstance(value, str) and value else f"{operator} needs non-empty text."
    if operator in NUMBER_OPERATORS:
        ok = _is_number(value)
        return None if ok else f"{operator} needs a number, not {_kind(value)}."
    if semver.parse(value) is None:
        return (
            f"{value!r} is not a semantic version; write MAJOR.MINOR.PATCH such as '2.4.0' "
            "(optionally '-beta.1' or a leading 'v')."
        )
    return None


def _validate_split(
    split: Any, where: str, names: Sequence[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    example = '[{"variant": "on", "weight": 1000}, {"variant": "off", "weight": 9000}]'
    if not isinstance(split, list) or not split:
        return [], [f"{where}: split must be a non-empty list such as {example}."]
    errors: list[str] = []
    out: list[dict[str, Any]] = []
    seen: set[object] = set()  # entries are unchecked input
    total = 0
    for number, entry in enumerate(split, start=1):
        here = f"{where}, split entry {number}"
        if not isinstance(entry, dict):
            errors.append(f'{here}: must be {{"variant": …, "weight": …}}.')
            continue
        errors.extend(_unknown_keys(here, entry, SPLIT_KEYS))
        variant, weight = entry.get("variant"), entry.get("weight")
        errors.extend(check_variant(variant, names, here))
        if variant in seen:
            errors.append(f"{here}: {variant!r} appears twice in the split.")
        seen.add(variant)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= BUCKETS:
            errors.append(
                f"{here}: weight must be a whole number of basis points between 0 and {BUCKETS} "
                f"(1000 = 10 %), not {weight!r}."
            )
        else:
            total += weight
        out.append({"variant": variant, "weight": weight})
    if not errors and total != BUCKETS:
        errors.append(
            f"{where}: the split's weights add up to {total} basis points ({total / 100:g} %); "
            f"they must add up to {BUCKETS} (100 %)."
        )
    return out, errors


def compile_rules(rules: Sequence[Mapping[str, Any]]) -> tuple[Rule, ...]:
    """Stored (validated) rules as evaluation-ready data."""
    compiled = []
    for rule in rules:
        users = rule.get("users")
        conditions = tuple(_compile_condition(c) for c in rule.get("conditions", ()))
        split: list[tuple[str, int]] = []
        upper = 0
        for entry in rule.get("split", ()):
            upper += entry["weight"]
            split.append((entry["variant"], upper))
        compiled.append(
            Rule(
                users=frozenset(users) if users is not None else None,
                conditions=conditions,
                variant=rule.get("variant"),
                split=tuple(split),
            )
        )
    return tuple(compiled)


def _compile_condition(condition: Mapping[str, Any]) -> Condition:
    operator, value = condition["operator"], condition["value"]
    if operator in LIST_OPERATORS:
        value = tuple(value)
    elif operator in SEMVER_OPERATORS:
        value = semver.parse(value)
        if value is None:
            raise RulesError([f"stored rule has an unparsable version {condition['value']!r}"])
    return Condition(condition["attribute"], operator, value)


# --- helpers ----------------------------------------------------------------------------


def _unknown_keys(where: str, obj: Mapping[str, Any], allowed: Sequence[str]) -> list[str]:
    errors = []
    for key in obj:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
            errors.append(
                f"{where}: unknown key {key!r}.{suggestion} Allowed: {', '.join(allowed)}."
            )
    return errors


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _plain(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _listing(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "(none)"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
