"""The six configuration fields of an agent version: validation, canonical form and hash.

Pure module (no Django): it takes plain data and returns plain data or a ConfigError
listing every problem by field. Invariants it keeps:
- `normalize_config` accepts exactly the six fields; an unknown key is an error (a typo
  such as `temprature` must never be silently ignored).
- `config_hash` depends only on the values, never on the order of keys in any mapping.
- The system prompt is kept exactly as written, whitespace included.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

CONFIG_FIELDS = ("system_prompt", "model", "temperature", "max_tokens", "tools", "guardrails")
REQUIRED_FIELDS = ("system_prompt", "model", "temperature", "max_tokens")

MAX_PROMPT_CHARS = 200_000
MAX_MODEL_CHARS = 200
MAX_TOKENS_LIMIT = 1_000_000
MAX_TOOLS = 256
MAX_GUARDRAILS_BYTES = 100_000
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 2.0
# The function-name rule of the common tool-calling APIs (OpenAI, Anthropic).
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class ConfigError(ValueError):
    """Every problem found in one configuration, as {field: [message, ...]}."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__(
            "; ".join(f"{field}: {msg}" for field, msgs in errors.items() for msg in msgs)
        )


def normalize_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a configuration and return it with defaults filled and numbers normalised."""
    if not isinstance(raw, Mapping):
        raise ConfigError({"config": [f"must be a mapping of fields, not {_kind(raw)}"]})
    errors: dict[str, list[str]] = {}

    def fail(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    for key in raw:
        if key not in CONFIG_FIELDS:
            hint = difflib.get_close_matches(str(key), CONFIG_FIELDS, n=1)
            suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
            fail(str(key), f"unknown field.{suggestion} Allowed: {', '.join(CONFIG_FIELDS)}.")
    for key in REQUIRED_FIELDS:
        if key not in raw or raw[key] is None:
            fail(key, "is required.")

    out: dict[str, Any] = {}
    prompt = _text(
        raw, "system_prompt", "is empty. Write the instructions the agent should follow.", fail
    )
    if prompt is not None:
        if len(prompt) > MAX_PROMPT_CHARS:
            fail(
                "system_prompt",
                f"is {len(prompt):,} characters long; the maximum is {MAX_PROMPT_CHARS:,}.",
            )
        elif _unstorable(prompt):
            fail("system_prompt", f"{_unstorable(prompt)}.")
        else:
            out["system_prompt"] = prompt

    model = _text(raw, "model", "must not be empty (for example 'gpt-4o-mini').", fail)
    if model is not None:
        if _unstorable(model):
            fail("model", f"{_unstorable(model)}.")
        elif model != model.strip() or any(ch.isspace() for ch in model):
            fail("model", f"must not contain spaces: {model!r}.")
        elif len(model) > MAX_MODEL_CHARS:
            fail("model", f"is longer than {MAX_MODEL_CHARS} characters.")
        else:
            out["model"] = model

    if "temperature" in raw and raw["temperature"] is not None:
        temperature = raw["temperature"]
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            fail("temperature", f"must be a number between 0 and 2, not {_kind(temperature)}.")
        elif not math.isfinite(temperature) or not (
            MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE
        ):
            fail("temperature", f"must be between 0 and 2; got {temperature}.")
        else:
            out["temperature"] = float(temperature)

    if "max_tokens" in raw and raw["max_tokens"] is not None:
        max_tokens = raw["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            fail("max_tokens", f"must be a whole number, not {_kind(max_tokens)}.")
        elif not (1 <= max_tokens <= MAX_TOKENS_LIMIT):
            fail("max_tokens", f"must be between 1 and {MAX_TOKENS_LIMIT:,}; got {max_tokens}.")
        else:
            out["max_tokens"] = max_tokens

    tools = raw.get("tools")
    if tools is None:
        out["tools"] = []
    elif not isinstance(tools, list | tuple):
        fail("tools", f"must be a list of tool names, not {_kind(tools)}.")
    else:
        seen: set[str] = set()
        for index, name in enumerate(tools):
            if not isinstance(name, str) or not TOOL_NAME.match(name):
                fail(
                    "tools",
                    f"item {index} ({name!r}) is not a valid tool name: use letters, digits, "
                    "'_' and '-', starting with a letter or '_', at most 64 characters.",
                )
            elif name in seen:
                fail("tools", f"item {index} ({name!r}) appears more than once.")
            else:
                seen.add(name)
        if len(tools) > MAX_TOOLS:
            fail("tools", f"has {len(tools)} entries; the maximum is {MAX_TOOLS}.")
        out["tools"] = list(tools)

    guardrails = raw.get("guardrails")
    if guardrails is None:
        out["guardrails"] = {}
    elif not isinstance(guardrails, Mapping):
        fail("guardrails", f"must be a JSON object, not {_kind(guardrails)}.")
    else:
        problem = _json_problem(guardrails, "guardrails")
        if problem:
            fail("guardrails", problem)
        else:
            size = len(canonical_json(guardrails).encode())
            if size > MAX_GUARDRAILS_BYTES:
                fail(
                    "guardrails",
                    f"is {size:,} bytes as JSON; the maximum is {MAX_GUARDRAILS_BYTES:,}.",
                )
            else:
                out["guardrails"] = json.loads(canonical_json(guardrails))

    if errors:
        raise ConfigError(errors)
    return {field: out[field] for field in CONFIG_FIELDS}


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: the same value always gives the same text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the six configuration fields."""
    payload = {field: config[field] for field in CONFIG_FIELDS}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _json_problem(value: Any, path: str) -> str | None:
    """The first place where `value` is not plain JSON, or None."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a non-text key {key!r}; JSON object keys are text."
            if _unstorable(key):
                return f"{path} has a key that {_unstorable(key)}."
            found = _json_problem(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _json_problem(item, f"{path}[{index}]")
            if found:
                return found
    elif isinstance(value, float):
        if not math.isfinite(value):
            return f"{path} is {value}, which JSON cannot represent."
    elif isinstance(value, str):
        if _unstorable(value):
            return f"{path} {_unstorable(value)}."
    elif not (value is None or isinstance(value, int | bool)):
        return f"{path} is {_kind(value)}, which is not a JSON value."
    return None


def _text(
    raw: Mapping[str, Any], field: str, when_blank: str, fail: Callable[[str, str], None]
) -> str | None:
    """`raw[field]` if it is non-blank text; else None, and a failure unless it is missing
    (missing required fields fail on their own)."""
    value = raw.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        fail(field, f"must be text, not {_kind(value)}.")
        return None
    if not value.strip():
        fail(field, when_blank)
        return None
    return value


def _unstorable(text: str) -> str | None:
    """Why `text` cannot be stored (PostgreSQL refuses NUL; UTF-8 refuses lone surrogates)."""
    if "\x00" in text:
        return "contains a NUL character (\\x00), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains an invalid character at position {exc.start} (a lone UTF-16 surrogate)"
    return None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    for type_, name in names.items():
        if isinstance(value, type_):
            return name
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__
