"""Evaluation cases: validation, canonical form, hash and YAML text. Pure module (no Django).

A case, as written in a suite file or in the admin's case editor::

    - id: refund-window                 # optional, default case-<n>; unique in the suite
      input: How long do I have to return an item?   # or a list of {role, content}
      golden_answer: 30 days from delivery.
      criteria: Mentions the 30 days; no invented exceptions.   # optional
      tags: [refunds]                   # optional
      weight: 2                         # optional, default 1
      scorer: llm_judge                 # llm_judge (default), exact, contains, regex, valid_json

Invariants it keeps:
- Unknown keys are errors (with the closest known key suggested); every problem in every
  case is reported at once, by location (`cases[3].scorer`, cases counted from 1).
- `input` becomes a list of chat messages whose roles are user or assistant and whose
  last message is the user's: the system prompt always comes from the agent version.
- Each scorer gets what it needs: a golden answer for llm_judge, exact and contains; a
  regular expression that compiles for regex; nothing for valid_json.
- `content_hash` depends only on the cases' values, never on the order of keys, so an
  unchanged suite file hashes the same on every import.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

# One 'where and what' type, and one wording of type and key mistakes, for all files.
from versions.file_format import Problem, kind, unknown_field

SCORERS = ("llm_judge", "exact", "contains", "regex", "valid_json")
DETERMINISTIC_SCORERS = ("exact", "contains", "regex", "valid_json")
DEFAULT_SCORER = "llm_judge"
CASE_FIELDS = ("id", "input", "golden_answer", "criteria", "tags", "weight", "scorer")
ROLES = ("user", "assistant")

MAX_CASES = 1000
MAX_MESSAGES = 50
MAX_TEXT_CHARS = 50_000
MAX_TAGS = 20
MAX_TAG_CHARS = 50
MAX_WEIGHT = 1000.0
CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class CaseError(ValueError):
    """Every problem found in a list of cases."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def normalize_cases(raw: Any, *, location: str = "cases") -> list[dict[str, Any]]:
    """Validate a list of cases; return them in canonical form (every field present)."""
    if raw is None:
        raise CaseError([Problem(location, "is required: give at least one case.")])
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise CaseError([Problem(location, f"must be a list of cases, not {kind(raw)}.")])
    if not raw:
        raise CaseError([Problem(location, "is empty: give at least one case.")])
    problems: list[Problem] = []
    if len(raw) > MAX_CASES:
        problems.append(Problem(location, f"has {len(raw):,} cases; the maximum is {MAX_CASES:,}."))
    cases: list[dict[str, Any]] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(raw[:MAX_CASES], start=1):
        where = f"{location}[{index}]"
        # Checked before the case's own rules, so a duplicate of an invalid case is reported too.
        case_id = item.get("id", f"case-{index}") if isinstance(item, Mapping) else None
        if isinstance(case_id, str) and case_id in first_index:
            problems.append(
                Problem(
                    f"{where}.id",
                    f"{case_id!r} is also the id of case {first_index[case_id]}. "
                    "Case ids must be unique in a suite.",
                )
            )
        elif isinstance(case_id, str):
            first_index[case_id] = index
        case = _normalize_case(item, index, where, problems)
        if case is not None:
            cases.append(case)
    if problems:
        raise CaseError(problems)
    return cases


def content_hash(cases: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the canonical JSON of normalised cases (key order never matters)."""
    text = json.dumps(list(cases), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def case_for_file(case: Mapping[str, Any]) -> dict[str, Any]:
    """A normalised case as written in a file: defaults left out, one user message as text."""
    messages = case["messages"]
    single = len(messages) == 1 and messages[0]["role"] == "user"
    data: dict[str, Any] = {
        "id": case["id"],
        "input": messages[0]["content"] if single else [dict(m) for m in messages],
    }
    if case["golden_answer"] or case["scorer"] != "valid_json":
        data["golden_answer"] = case["golden_answer"]
    if case["criteria"]:
        data["criteria"] = case["criteria"]
    if case["tags"]:
        data["tags"] = list(case["tags"])
    if case["weight"] != 1.0:
        weight = case["weight"]
        data["weight"] = int(weight) if weight.is_integer() else weight
    if case["scorer"] != DEFAULT_SCORER:
        data["scorer"] = case["scorer"]
    return data


def dump_cases(cases: Sequence[Mapping[str, Any]]) -> str:
    """Normalised cases as the YAML list the admin's editor and suite files use."""
    data = [case_for_file(case) for case in cases]
    text = yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)
    if yaml.safe_load(text) != data:
        # Text that reads back differently in a block or plain (trailing spaces, U+0085 and
        # other YAML 1.1 line breaks): every string double-quoted, non-ASCII escaped.
        text = yaml.safe_dump(
            data, allow_unicode=False, sort_keys=False, width=100, default_style='"'
        )
    return text


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML falls back to double quotes by itself when a literal block cannot hold the text.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def check_text(value: Any, where: str, problems: list[Problem], *, required: bool) -> str | None:
    """`value` as text, or None after appending a problem (or when absent and optional)."""
    if value is None:
        if required:
            problems.append(Problem(where, "is required."))
        return None
    if not isinstance(value, str):
        problems.append(Problem(where, f"must be text, not {kind(value)}. Put it in quotes."))
        return None
    if "\x00" in value:
        problems.append(Problem(where, "contains a NUL character (\\x00), which cannot be stored."))
        return None
    if len(value) > MAX_TEXT_CHARS:
        problems.append(
            Problem(where, f"is {len(value):,} characters long; the maximum is {MAX_TEXT_CHARS:,}.")
        )
        return None
    if required and not value.strip():
        problems.append(Problem(where, "is empty."))
        return None
    return value


def _normalize_case(
    item: Any, index: int, where: str, problems: list[Problem]
) -> dict[str, Any] | None:
    if not isinstance(item, Mapping):
        problems.append(
            Problem(
                where,
                f"must be a mapping with the keys {', '.join(CASE_FIELDS)}, not {kind(item)}.",
            )
        )
        return None
    before = len(problems)
    for key in item:
        if key not in CASE_FIELDS:
            problems.append(Problem(f"{where}.{key}", unknown_field(str(key), CASE_FIELDS)))

    case_id = item.get("id", f"case-{index}")
    if not isinstance(case_id, str) or not CASE_ID.match(case_id):
        problems.append(
            Problem(
                f"{where}.id",
                f"{case_id!r} is not a case id: use 1-100 letters, digits, '-', '_' or '.', "
                "starting with a letter or digit (for example refund-window).",
            )
        )

    messages = _messages(item.get("input"), f"{where}.input", problems)

    scorer = item.get("scorer", DEFAULT_SCORER)
    if scorer not in SCORERS:
        hint = difflib.get_close_matches(str(scorer), SCORERS, n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        problems.append(
            Problem(
                f"{where}.scorer",
                f"{scorer!r} is not a scorer.{suggestion} Use one of {', '.join(SCORERS)}.",
            )
        )
        scorer = None

    golden = check_text(
        item.get("golden_answer"),
        f"{where}.golden_answer",
        problems,
        required=scorer is not None and scorer != "valid_json",
    )
    if scorer == "regex" and golden is not None:
        try:
            re.compile(golden)
        except re.error as exc:
            problems.append(
                Problem(
                    f"{where}.golden_answer",
                    f"is not a regular expression the regex scorer can use: {exc}.",
                )
            )

    criteria = check_text(item.get("criteria"), f"{where}.criteria", problems, required=False)
    tags = _tags(item.get("tags"), f"{where}.tags", problems)
    weight = _weight(item.get("weight", 1), f"{where}.weight", problems)

    if len(problems) > before:
        return None
    return {
        "id": case_id,
        "messages": messages,
        "golden_answer": golden or "",
        "criteria": (criteria or "").strip(),
        "tags": tags,
        "weight": weight,
        "scorer": scorer,
    }


def _messages(value: Any, where: str, problems: list[Problem]) -> list[dict[str, str]]:
    if value is None:
        problems.append(
            Problem(where, "is required: a user message, or a list of {role, content}.")
        )
        return []
    if isinstance(value, str):
        text = check_text(value, where, problems, required=True)
        return [{"role": "user", "content": text}] if text is not None else []
    if not isinstance(value, Sequence) or isinstance(value, bytes):
        problems.append(
            Problem(
                where,
                f"must be a message (text) or a list of {{role, content}}, not {kind(value)}.",
            )
        )
        return []
    if not value:
        problems.append(Problem(where, "is an empty list: give at least the user's message."))
        return []
    if len(value) > MAX_MESSAGES:
        problems.append(
            Problem(where, f"has {len(value)} messages; the maximum is {MAX_MESSAGES}.")
        )
        return []
    messages: list[dict[str, str]] = []
    for number, message in enumerate(value, start=1):
        at = f"{where}[{number}]"
        if not isinstance(message, Mapping):
            problems.append(
                Problem(at, f"must be a mapping {{role, content}}, not {kind(message)}.")
            )
            continue
        for key in message:
            if key not in ("role", "content"):
                problems.append(
                    Problem(f"{at}.{key}", unknown_field(str(key), ("role", "content")))
                )
        role = message.get("role")
        if role not in ROLES:
            extra = " (the system prompt comes from the agent version)" if role == "system" else ""
            problems.append(
                Problem(f"{at}.role", f"must be user or assistant, not {role!r}{extra}.")
            )
        content = check_text(message.get("content"), f"{at}.content", problems, required=True)
        if role in ROLES and content is not None:
            messages.append({"role": role, "content": content})
    if messages and len(messages) == len(value) and messages[-1]["role"] != "user":
        problems.append(
            Problem(where, "must end with a user message: that is what the agent answers.")
        )
    return messages


def _tags(value: Any, where: str, problems: list[Problem]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        problems.append(Problem(where, f"must be a list of short texts, not {kind(value)}."))
        return []
    if len(value) > MAX_TAGS:
        problems.append(Problem(where, f"has {len(value)} tags; the maximum is {MAX_TAGS}."))
        return []
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_CHARS or "\x00" in tag:
            problems.append(
                Problem(where, f"{tag!r} is not a tag: use text of 1-{MAX_TAG_CHARS} characters.")
            )
            continue
        if tag.strip() not in tags:
            tags.append(tag.strip())
    return tags


def _weight(value: Any, where: str, problems: list[Problem]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(Problem(where, f"must be a number, not {kind(value)}."))
        return 1.0
    if not math.isfinite(value) or not (0 < value <= MAX_WEIGHT):
        problems.append(
            Problem(where, f"must be more than 0 and at most {MAX_WEIGHT:g}; got {value}.")
        )
        return 1.0
    return float(value)
