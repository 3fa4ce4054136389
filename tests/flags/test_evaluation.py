"""flags.evaluation: operators, rule order, targeting, sticky and monotonic splits, tool gates."""

from __future__ import annotations

import itertools
import pickle
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentconfig.core.bucketing import bucket
from flags import rules as schema
from flags.evaluation import (
    FlagSnapshot,
    FlagState,
    Resolution,
    evaluate,
    evaluate_all,
    filter_tools,
    namespace_of,
)


def flag(
    rules: list[dict[str, Any]] | None = None,
    *,
    key: str = "web-search",
    kind: str = "boolean",
    variants: list[dict[str, Any]] | None = None,
    enabled: bool = True,
    default: str | None = None,
    off: str | None = None,
) -> FlagState:
    """A compiled flag state, its rules validated exactly as the services validate them."""
    canonical_variants = schema.validate_variants(kind, variants)
    names = schema.variant_names(canonical_variants)
    initial_default, initial_off = schema.initial_variants(kind, names)
    return FlagState(
        key=key,
        kind=kind,
        variants={v["name"]: v["value"] for v in canonical_variants},
        enabled=enabled,
        off_variant=off or initial_off,
        default_variant=default or initial_default,
        rules=schema.compile_rules(schema.validate_rules(rules or [], names)),
    )


def condition(attribute: str, operator: str, value: Any) -> list[dict[str, Any]]:
    """One rule serving "on" when the condition holds; otherwise the default "off"."""
    return [
        {
            "conditions": [{"attribute": attribute, "operator": operator, "value": value}],
            "variant": "on",
        }
    ]


def value_for(rules, context, targeting_key="user-1") -> Any:
    return evaluate(flag(rules, default="off"), targeting_key, context).value


# --- operators -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "expected", "actual", "matches"),
    [
        ("equals", "DE", "DE", True),
        ("equals", "DE", "de", False),
        ("equals", 30, 30, True),
        ("equals", 30, 30.0, True),
        ("equals", 30, "30", True),  # query parameters are text
        ("equals", 30, "thirty", False),
        ("equals", True, True, True),
        ("equals", True, "true", True),
        ("equals", True, 1, False),
        ("equals", 1, True, False),
        ("equals", "1", 1, False),
        ("not_equals", "DE", "FR", True),
        ("not_equals", "DE", "DE", False),
        ("in", ["DE", "AT"], "AT", True),
        ("in", ["DE", "AT"], "FR", False),
        ("in", [1, 2], "2", True),
        ("not_in", ["DE", "AT"], "FR", True),
        ("not_in", ["DE", "AT"], "DE", False),
        ("contains", "@example.com", "ana@example.com", True),
        ("contains", "@example.com", "ana@example.org", False),
        ("contains", "beta", ["staff", "beta"], True),
        ("contains", "beta", ["staff"], False),
        ("contains", "beta", 7, False),
        ("starts_with", "internal-", "internal-42", True),
        ("starts_with", "internal-", "user-internal-42", False),
        ("starts_with", "1", 12, False),
        ("ends_with", ".de", "shop.de", True),
        ("ends_with", ".de", "shop.de.com", False),
        ("gt", 18, 19, True),
        ("gt", 18, 18, False),
        ("gt", 18, "19.5", True),
        ("gt", 18, "abc", False),
        ("gt", 18, True, False),
        ("gte", 18, 18, True),
        ("gte", 18, 17.99, False),
        ("lt", 0.5, 0.25, True),
        ("lt", 0.5, 0.5, False),
        ("lte", 0.5, 0.5, True),
        ("lte", 0.5, "1e-3", True),
        ("lte", 100, "1e400", False),
        ("semver_eq", "2.4.0", "2.4.0", True),
        ("semver_eq", "2.4.0", "v2.4.0+build.1", True),
        ("semver_eq", "2.4.0", "2.4.1", False),
        ("semver_gt", "2.4.0", "2.10.0", True),  # numeric, not text, comparison
        ("semver_gt", "2.4.0", "2.4.0", False),
        ("semver_gte", "2.4.0", "2.4.0", True),
        ("semver_gte", "2.4.0", "2.4.0-rc.1", False),  # a pre-release comes before its release
        ("semver_lt", "2.4.0", "2.4.0-rc.1", True),
        ("semver_lt", "2.4.0", "2.3.99", True),
        ("semver_lt", "2.4.0", "2.4", False),  # unparsable never matches
        ("semver_lte", "2.4.0", "2.4.0", True),
        ("semver_lte", "2.4.0", "3.0.0", False),
    ],
)
def test_evaluate__operator__matches_as_documented(operator, expected, actual, matches):
    result = value_for(condition("attr", operator, expected), {"attr": actual})

    assert result is matches


@pytest.mark.parametrize("operator", schema.OPERATORS)
def test_evaluate__missing_or_null_attribute__no_operator_matches(operator):
    operand = {
        "in": ["x"],
        "not_in": ["x"],
        "gt": 1,
        "gte": 1,
        "lt": 1,
        "lte": 1,
    }.get(operator, "1.0.0" if operator.startswith("semver") else "x")
    rules = condition("attr", operator, operand)

    assert value_for(rules, {}) is False
    assert value_for(rules, {"attr": None}) is False


def test_evaluate__conditions__combined_with_and():
    rules = [
        {
            "conditions": [
                {"attribute": "country", "operator": "equals", "value": "DE"},
                {"attribute": "plan", "operator": "in", "value": ["pro", "team"]},
            ],
            "variant": "on",
        }
    ]

    assert value_for(rules, {"country": "DE", "plan": "pro"}) is True
    assert value_for(rules, {"country": "DE", "plan": "free"}) is False
    assert value_for(rules, {"country": "FR", "plan": "pro"}) is False


def test_evaluate__condition_on_targeting_key__reads_the_user_id():
    rules = condition("targetingKey", "starts_with", "staff-")

    assert value_for(rules, {}, targeting_key="staff-7") is True
    assert value_for(rules, {}, targeting_key="user-7") is False
    assert value_for(rules, {}, targeting_key=None) is False


# --- rule order and targeting -------------------------------------------------------------


def test_evaluate__several_rules_match__first_wins_with_its_number():
    state = flag(
        [
            {"users": ["ana"], "variant": "off"},
            {
                "conditions": [{"attribute": "country", "operator": "equals", "value": "DE"}],
                "variant": "on",
            },
            {"split": [{"variant": "off", "weight": 10000}]},
        ],
        default="on",
    )

    ana = evaluate(state, "ana", {"country": "DE"})
    ben = evaluate(state, "ben", {"country": "DE"})
    cleo = evaluate(state, "cleo", {"country": "FR"})

    assert (ana.value, ana.reason, ana.rule_number) == (False, "TARGETING_MATCH", 1)
    assert (ben.value, ben.reason, ben.rule_number) == (True, "TARGETING_MATCH", 2)
    assert (cleo.value, cleo.reason, cleo.rule_number) == (False, "SPLIT", 3)


def test_evaluate__user_ids__exact_match_only():
    state = flag([{"users": ["user-1", "user-2"], "variant": "on"}], default="off")

    assert evaluate(state, "user-1", {}).value is True
    assert evaluate(state, "user-10", {}).value is False
    assert evaluate(state, None, {}).value is False


def test_evaluate__users_and_conditions_in_one_rule__both_required():
    state = flag(
        [
            {
                "users": ["ana"],
                "conditions": [{"attribute": "country", "operator": "equals", "value": "DE"}],
                "variant": "on",
            }
        ],
        default="off",
    )

    assert evaluate(state, "ana", {"country": "DE"}).value is True
    assert evaluate(state, "ana", {"country": "FR"}).value is False
    assert evaluate(state, "ben", {"country": "DE"}).value is False


def test_evaluate__no_rule_matches__default_variant_reason_default():
    resolution = evaluate(flag([{"users": ["ana"], "variant": "off"}]), "ben", {})

    assert resolution == Resolution("web-search", True, "on", "DEFAULT")


def test_evaluate__no_rules__default_variant_reason_static():
    assert evaluate(flag(), "ben", {}) == Resolution("web-search", True, "on", "STATIC")


def test_evaluate__off__off_variant_whatever_the_rules():
    state = flag(
        [{"users": ["ana"], "variant": "on"}, {"split": [{"variant": "on", "weight": 10000}]}],
        enabled=False,
    )

    assert evaluate(state, "ana", {}) == Resolution("web-search", False, "off", "DISABLED")
    assert evaluate(state, None, {}).reason == "DISABLED"


def test_evaluate__multivariate_off__serves_chosen_off_variant():
    state = flag(
        kind="json",
        variants=[{"name": "small", "value": {"k": 3}}, {"name": "large", "value": {"k": 20}}],
        enabled=False,
        off="large",
    )

    assert evaluate(state, "u", {}) == Resolution("web-search", {"k": 20}, "large", "DISABLED")


def test_evaluate__split_without_targeting_key__error_targeting_key_missing():
    state = flag(
        [{"split": [{"variant": "on", "weight": 5000}, {"variant": "off", "weight": 5000}]}]
    )

    resolution = evaluate(state, None, {})

    assert resolution.is_error
    assert (resolution.error_code, resolution.rule_number, resolution.value) == (
        "TARGETING_KEY_MISSING",
        1,
        None,
    )


def test_evaluate__flag_with_stored_problem__general_error():
    state = FlagState("broken", "boolean", {"on": True}, True, "on", "on", problem="invalid")

    resolution = evaluate(state, "u", {})

    assert (resolution.reason, resolution.error_code) == ("ERROR", "GENERAL")


# --- splits -------------------------------------------------------------------------------


def rollout(percent_bp: int) -> list[dict[str, Any]]:
    return [
        {
            "split": [
                {"variant": "on", "weight": percent_bp},
                {"variant": "off", "weight": 10000 - percent_bp},
            ]
        }
    ]


USERS = [f"user-{n}" for n in range(100_000)]


def test_evaluate__split__sticky_and_equal_to_the_documented_bucket():
    state = flag(rollout(1000))

    for user in USERS[:2000]:
        first = evaluate(state, user, {"country": "DE"}).value
        assert evaluate(state, user, {}).value is first  # context does not move a user
        assert first is (bucket("flag:web-search", user) < 1000)


def test_evaluate__percentage_rises__nobody_who_was_in_drops_out():
    steps = [100, 1000, 2000, 5000, 10000]
    cohorts = [
        {u for u in USERS[:20_000] if evaluate(flag(rollout(bp)), u, {}).value is True}
        for bp in steps
    ]

    for smaller, larger in itertools.pairwise(cohorts):
        assert smaller <= larger
    assert len(cohorts[-1]) == 20_000


@pytest.mark.parametrize(
    "weights",
    [(1000, 9000), (2500, 2500, 5000), (3333, 3333, 3334), (1, 9999), (9000, 500, 500)],
)
def test_evaluate__weighted_split__proportions_within_tolerance_over_100000_ids(weights):
    variants = [{"name": f"v{i}", "value": f"value-{i}"} for i in range(len(weights))]
    split = [{"variant": f"v{i}", "weight": w} for i, w in enumerate(weights)]
    state = flag([{"split": split}], kind="string", variants=variants, key="banner-copy")
    counts = dict.fromkeys(range(len(weights)), 0)

    for user in USERS:
        resolution = evaluate(state, user, {})
        assert resolution.reason == "SPLIT"
        counts[int(resolution.variant[1:])] += 1

    for index, weight in enumerate(weights):
        p = weight / 10000
        sigma = (p * (1 - p) / len(USERS)) ** 0.5
        # 5 sigma; and a floor for the 0.01 % share, whose sigma is 0.003 %.
        assert abs(counts[index] / len(USERS) - p) <= max(5 * sigma, 0.0001), (index, counts)


def test_evaluate__two_flags_at_10_percent__overlap_close_to_1_percent():
    first, second = flag(rollout(1000), key="web-search"), flag(rollout(1000), key="refunds")

    in_first = {u for u in USERS if evaluate(first, u, {}).value is True}
    in_second = {u for u in USERS if evaluate(second, u, {}).value is True}

    overlap = len(in_first & in_second) / len(USERS)
    # Independent: 10 % x 10 % = 1 %; sigma at n = 100,000 is 0.03 %.
    assert abs(overlap - 0.01) < 0.0015
    assert abs(len(in_first) / len(USERS) - 0.10) < 0.005


def test_namespace_of__salted_with_flag_prefix():
    assert namespace_of("web-search") == "flag:web-search"


# --- evaluate_all and filter_tools ------------------------------------------------------


def snapshot(*states: FlagState, gates: dict[str, str] | None = None) -> FlagSnapshot:
    return FlagSnapshot(1, 7, {s.key: s for s in states}, gates or {})


def test_evaluate_all__every_flag_by_key():
    snap = snapshot(flag(key="a"), flag(key="b", enabled=False))

    results = evaluate_all(snap, "u", {})

    assert {k: (r.value, r.reason) for k, r in results.items()} == {
        "a": (True, "STATIC"),
        "b": (False, "DISABLED"),
    }


def test_filter_tools__gated_tool__only_when_its_flag_is_true():
    snap = snapshot(
        flag([{"users": ["ana"], "variant": "on"}], key="search-beta", default="off"),
        flag(key="refunds", enabled=False),
        gates={"web_search": "search-beta", "issue_refund": "refunds"},
    )
    tools = ["lookup_order", "web_search", "issue_refund", "escalate"]

    for_ana = filter_tools(snap, tools, evaluate_all(snap, "ana", {}))
    for_ben = filter_tools(snap, tools, evaluate_all(snap, "ben", {}))

    assert for_ana == ["lookup_order", "web_search", "escalate"]
    assert for_ben == ["lookup_order", "escalate"]


def test_filter_tools__flag_errors_or_is_missing__tool_hidden():
    split = flag([{"split": [{"variant": "on", "weight": 10000}]}], key="search-beta")
    snap = snapshot(split, gates={"web_search": "search-beta", "ghost": "no-such-flag"})

    tools = filter_tools(snap, ["web_search", "ghost", "plain"], evaluate_all(snap, None, {}))

    assert tools == ["plain"]


def test_snapshot_and_resolution__picklable():
    snap = snapshot(
        flag(condition("v", "semver_gte", "1.2.3") + rollout(500), key="x"), gates={"t": "x"}
    )

    copy = pickle.loads(pickle.dumps(snap))  # noqa: S301 (our own bytes)

    assert copy == snap
    assert evaluate_all(copy, "u", {"v": "2.0.0"}) == evaluate_all(snap, "u", {"v": "2.0.0"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300)
@given(
    context=st.dictionaries(
        st.sampled_from(["attr", "other", "targetingKey"]), json_values, max_size=3
    ),
    targeting_key=st.none() | st.text(max_size=10),
)
def test_evaluate__any_json_context__never_raises(context, targeting_key):
    rules = []
    for operator in schema.OPERATORS:
        operand = (
            ["x", 1]
            if operator in ("in", "not_in")
            else 1
            if operator in ("gt", "gte", "lt", "lte")
            else "1.0.0"
            if operator.startswith("semver")
            else "x"
        )
        rules += condition("attr", operator, operand)
    state = flag([*rules, *rollout(5000)])

    resolution = evaluate(state, targeting_key, context)

    assert resolution.reason in {"TARGETING_MATCH", "SPLIT", "DEFAULT", "ERROR"}
    if resolution.reason == "ERROR":
        assert resolution.error_code == "TARGETING_KEY_MISSING"


def test_users_list__random_order_and_duplicates__same_evaluation():
    ids = [f"u{n}" for n in range(50)]
    shuffled = random.Random(4).sample(ids * 2, 100)

    a = flag([{"users": ids, "variant": "on"}], default="off")
    b = flag([{"users": shuffled, "variant": "on"}], default="off")

    assert all(evaluate(a, u, {}) == evaluate(b, u, {}) for u in [*ids, "x"])
