"""flags.rules: every malformed rule is refused with a message that says where and what."""

import pytest

from flags import rules
from flags.rules import RulesError, compile_rules, validate_rules, validate_variants

NAMES = ["on", "off"]


def errors_of(raw, names=NAMES) -> list[str]:
    with pytest.raises(RulesError) as caught:
        validate_rules(raw, names)
    return caught.value.messages


def test_validate_rules__every_rule_shape__canonical_and_compilable():
    raw = [
        {"description": " staff ", "users": ["u2", "u1", "u2"], "variant": "on"},
        {
            "conditions": [{"attribute": "country", "operator": "in", "value": ["DE"]}],
            "variant": "on",
        },
        {
            "conditions": [{"attribute": "plan", "operator": "equals", "value": "pro"}],
            "split": [{"variant": "on", "weight": 2500}, {"variant": "off", "weight": 7500}],
        },
        {"split": [{"variant": "on", "weight": 0}, {"variant": "off", "weight": 10000}]},
    ]

    canonical = validate_rules(raw, NAMES)

    assert canonical[0] == {"description": "staff", "users": ["u1", "u2"], "variant": "on"}
    compiled = compile_rules(canonical)
    assert compiled[0].users == frozenset({"u1", "u2"})
    assert compiled[2].split == (("on", 2500), ("off", 10000))
    assert compiled[3].split == (("on", 0), ("off", 10000))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            [
                {
                    "conditions": [{"attribute": "country", "operator": "equal", "value": "DE"}],
                    "variant": "on",
                }
            ],
            "rule 1, condition 1 (country): unknown operator 'equal'. Did you mean 'equals'?",
        ),
        (
            [{"split": [{"variant": "on", "weight": 1000}, {"variant": "off", "weight": 8000}]}],
            "rule 1: the split's weights add up to 9000 basis points (90 %); they must add up "
            "to 10000 (100 %).",
        ),
        (
            [{"variant": "maybe"}],
            "rule 1: 'maybe' is not a variant of this flag; use one of 'on', 'off'.",
        ),
        (
            [
                {
                    "conditions": [{"attribute": "v", "operator": "semver_gte", "value": "2.4"}],
                    "variant": "on",
                }
            ],
            "rule 1, condition 1 (v): '2.4' is not a semantic version",
        ),
        (
            [
                {
                    "conditions": [{"attribute": "age", "operator": "gt", "value": "18"}],
                    "variant": "on",
                }
            ],
            "rule 1, condition 1 (age): gt needs a number, not text.",
        ),
        (
            [
                {
                    "conditions": [{"attribute": "c", "operator": "in", "value": "DE"}],
                    "variant": "on",
                }
            ],
            "rule 1, condition 1 (c): in needs a non-empty list of values",
        ),
        ([{"users": [], "variant": "on"}], "rule 1: users must be a non-empty list"),
        ([{"users": ["a", 7], "variant": "on"}], "rule 1: users are non-empty strings; 7 is not."),
        ([{"variant": "on", "split": []}], 'rule 1: give either "variant"'),
        ([{}], 'rule 1: give either "variant"'),
        (
            [{"variant": "on", "condition": []}],
            "rule 1: unknown key 'condition'. Did you mean 'conditions'?",
        ),
        (
            [{"split": [{"variant": "on", "weight": 5000}, {"variant": "on", "weight": 5000}]}],
            "rule 1, split entry 2: 'on' appears twice in the split.",
        ),
        (
            [{"split": [{"variant": "on", "weight": 12.5}, {"variant": "off", "weight": 9987.5}]}],
            "rule 1, split entry 1: weight must be a whole number of basis points",
        ),
        ({"variant": "on"}, "the rules must be a list ([…]), not an object."),
        (["on"], "rule 1: must be an object, not text."),
        (
            [{"conditions": [{"operator": "equals", "value": 1}], "variant": "on"}],
            "rule 1, condition 1: attribute must be the name of a context attribute",
        ),
        (
            [{"conditions": [{"attribute": "a", "operator": "equals"}], "variant": "on"}],
            "rule 1, condition 1 (a): has no value.",
        ),
        (
            [
                {
                    "conditions": [{"attribute": "a", "operator": "equals", "value": None}],
                    "variant": "on",
                }
            ],
            "rule 1, condition 1 (a): equals needs text, a number or true/false.",
        ),
        (
            [
                {
                    "conditions": [{"attribute": "a", "operator": "gte", "value": float("nan")}],
                    "variant": "on",
                }
            ],
            "rule 1, condition 1 (a): gte needs a number",
        ),
    ],
)
def test_validate_rules__invalid__message_names_the_place(raw, expected):
    messages = errors_of(raw)

    assert any(m.startswith(expected) for m in messages), messages


def test_validate_rules__several_problems__all_reported_in_order():
    raw = [
        {"variant": "on"},
        {"variant": "nope"},
        {"conditions": [{"attribute": "x", "operator": "bogus", "value": 1}], "variant": "off"},
    ]

    messages = errors_of(raw)

    assert [m.split(":")[0] for m in messages] == ["rule 2", "rule 3, condition 1 (x)"]


def test_validate_rules__too_many_rules__refused():
    assert errors_of([{"variant": "on"}] * 101) == ["there are 101 rules; the maximum is 100."]


def test_validate_variants__boolean__fixed_on_off():
    assert validate_variants("boolean", None) == [
        {"name": "on", "value": True},
        {"name": "off", "value": False},
    ]
    with pytest.raises(RulesError, match="exactly the variants"):
        validate_variants("boolean", [{"name": "yes", "value": True}])


@pytest.mark.parametrize(
    ("kind", "variants", "expected"),
    [
        ("string", [], "must be a non-empty list"),
        ("string", [{"name": "a", "value": 1}], "variant 1 (a): a string flag's values are text"),
        ("json", [{"name": "a", "value": [1]}], "variant 1 (a): a JSON flag's values are objects"),
        (
            "string",
            [{"name": "a", "value": "x"}, {"name": "a", "value": "y"}],
            "variant 2: the name 'a' is used twice",
        ),
        (
            "string",
            [{"name": "bad name", "value": "x"}],
            "variant 1: the name 'bad name' is not valid",
        ),
        ("string", [{"name": "a"}], "variant 1 (a): has no value."),
        (
            "string",
            [{"name": "a", "value": "x", "weight": 1}],
            "variant 1 (a): unknown key 'weight'",
        ),
        ("number", [], "unknown kind 'number'"),
    ],
)
def test_validate_variants__invalid__message_names_the_variant(kind, variants, expected):
    with pytest.raises(RulesError) as caught:
        validate_variants(kind, variants)

    assert any(m.startswith(expected) for m in caught.value.messages), caught.value.messages


def test_initial_variants__by_kind():
    assert rules.initial_variants("boolean", ["on", "off"]) == ("on", "off")
    assert rules.initial_variants("string", ["short", "long"]) == ("short", "short")
