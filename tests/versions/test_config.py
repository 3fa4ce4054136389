"""versions.config: validation messages, normalisation and the order-independent hash."""

import hashlib
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from versions.config import (
    MAX_PROMPT_CHARS,
    MAX_TOKENS_LIMIT,
    ConfigError,
    config_hash,
    normalize_config,
)

VALID = {
    "system_prompt": "  You help with billing.\n\nBe brief.\n",
    "model": "gpt-4o-mini",
    "temperature": 0.7,
    "max_tokens": 512,
    "tools": ["lookup_invoice", "refund-order"],
    "guardrails": {"pii": {"redact": True, "fields": ["email", "phone"]}, "max_turns": 20},
}

# PostgreSQL cannot store NUL in text or JSON; normalize_config refuses it (tested below).
storable_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | storable_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(storable_text, children, max_size=4)
    ),
    max_leaves=20,
)


def _shuffled(value):
    """The same JSON value with every object's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        random.shuffle(items)
        return {key: _shuffled(item) for key, item in items}
    if isinstance(value, list):
        return [_shuffled(item) for item in value]
    return value


def test_normalize_config__valid__keeps_prompt_exactly_and_fills_nothing_else():
    result = normalize_config(VALID)

    assert result == {**VALID, "temperature": 0.7}
    assert result["system_prompt"] == "  You help with billing.\n\nBe brief.\n"


def test_normalize_config__tools_and_guardrails_missing__defaults_to_empty():
    raw = {key: VALID[key] for key in ("system_prompt", "model", "temperature", "max_tokens")}

    result = normalize_config(raw)

    assert result["tools"] == [] and result["guardrails"] == {}


def test_normalize_config__integer_temperature__becomes_float_so_hash_is_the_same():
    assert config_hash(normalize_config({**VALID, "temperature": 1})) == config_hash(
        normalize_config({**VALID, "temperature": 1.0})
    )


@given(guardrails=st.dictionaries(storable_text, json_values, max_size=6))
def test_config_hash__keys_in_any_order__same_hash(guardrails):
    config = normalize_config({**VALID, "guardrails": guardrails})
    reordered = _shuffled(dict(reversed(list(config.items()))))

    assert config_hash(reordered) == config_hash(config)


def test_config_hash__any_field_changes__hash_changes():
    base = config_hash(normalize_config(VALID))
    changes = {
        "system_prompt": VALID["system_prompt"] + " ",
        "model": "gpt-4o",
        "temperature": 0.71,
        "max_tokens": 513,
        "tools": list(reversed(VALID["tools"])),
        "guardrails": {**VALID["guardrails"], "max_turns": 21},
    }
    for field, value in changes.items():
        assert config_hash(normalize_config({**VALID, field: value})) != base, field


def test_config_hash__known_vector__is_sha256_of_canonical_json():
    # Pinned so that the hash of stored versions can never change silently.
    config = {
        "system_prompt": "Hi",
        "model": "m",
        "temperature": 0.5,
        "max_tokens": 10,
        "tools": [],
        "guardrails": {},
    }
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert canonical == (
        '{"guardrails":{},"max_tokens":10,"model":"m","system_prompt":"Hi",'
        '"temperature":0.5,"tools":[]}'
    )
    assert config_hash(config) == hashlib.sha256(canonical.encode()).hexdigest()
    assert config_hash(config) == (
        "929f21f0fbcdff7e0cab87b73c50546f8a96081847402ce5e4c229caa08cfd91"
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("temperature", 2.5, "must be between 0 and 2; got 2.5"),
        ("temperature", -0.1, "must be between 0 and 2"),
        ("temperature", float("nan"), "must be between 0 and 2"),
        ("temperature", "0.5", "must be a number between 0 and 2, not text"),
        ("temperature", True, "must be a number"),
        ("max_tokens", 0, "must be between 1 and"),
        ("max_tokens", MAX_TOKENS_LIMIT + 1, "must be between 1 and"),
        ("max_tokens", 10.5, "must be a whole number"),
        ("model", "", "must not be empty"),
        ("model", "gpt 4", "must not contain spaces"),
        ("model", 4, "must be text"),
        ("system_prompt", "   \n", "is empty"),
        ("system_prompt", "x" * (MAX_PROMPT_CHARS + 1), "the maximum is 200,000"),
        ("system_prompt", "a\x00b", "NUL character"),
        ("tools", "search", "must be a list of tool names"),
        ("tools", ["search", "search"], "item 1 ('search') appears more than once"),
        ("tools", ["web search"], "item 0 ('web search') is not a valid tool name"),
        ("tools", ["9lives"], "is not a valid tool name"),
        ("guardrails", ["no"], "must be a JSON object, not a list"),
        ("guardrails", {"limit": float("inf")}, "guardrails.limit is inf"),
        ("guardrails", {"a": {1: "x"}}, "non-text key 1"),
        ("guardrails", {"a": ["ok", "b\x00"]}, "guardrails.a[1] contains a NUL character"),
        ("guardrails", {"a\x00": 1}, "has a key that contains a NUL character"),
        ("guardrails", {"a": "\ud800"}, "guardrails.a contains an invalid character"),
        ("system_prompt", "ok \udfff", "lone UTF-16 surrogate"),
        ("model", "gpt\x00", "NUL character"),
    ],
)
def test_normalize_config__invalid_field__names_field_and_problem(field, value, expected):
    with pytest.raises(ConfigError) as excinfo:
        normalize_config({**VALID, field: value})

    assert list(excinfo.value.errors) == [field]
    assert expected in " ".join(excinfo.value.errors[field])


def test_normalize_config__typo_in_key__unknown_field_with_suggestion():
    raw = {**VALID, "temprature": 0.3}

    with pytest.raises(ConfigError) as excinfo:
        normalize_config(raw)

    assert "Did you mean 'temperature'?" in excinfo.value.errors["temprature"][0]


def test_normalize_config__missing_required_fields__each_reported():
    with pytest.raises(ConfigError) as excinfo:
        normalize_config({"tools": []})

    assert set(excinfo.value.errors) == {"system_prompt", "model", "temperature", "max_tokens"}


def test_normalize_config__not_a_mapping__clear_error():
    with pytest.raises(ConfigError, match="must be a mapping of fields, not a list"):
        normalize_config(["system_prompt"])
