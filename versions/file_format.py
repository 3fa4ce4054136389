"""The agent file: one agent per YAML file, parsed and validated, and rendered back.

Pure module (no Django). An agent file looks like this::

    slug: support-bot            # must equal the file name without .yaml
    name: Support bot
    description: Answers questions about orders.   # optional, default empty
    change_description: Shorter answers.           # optional
    config:
      model: gpt-4o-mini
      temperature: 0.2
      max_tokens: 800
      tools: [lookup_order]                        # optional, default []
      guardrails: {blocked_topics: [medical advice]}   # optional, default {}
      system_prompt: |
        You are a helpful support agent.

Invariants it keeps:
- Unknown keys are errors, at the top level and inside `config` (the latter through
  versions.config.normalize_config); the message suggests the closest known key.
- Duplicate keys in any mapping are errors: plain PyYAML silently keeps the last one.
- Aliases (`*name`) are refused: a handful of nested aliases expands exponentially once
  the guardrails are serialised (the "billion laughs"), and agent files do not need them.
- Only the safe YAML constructors are used (the loader subclasses yaml.SafeLoader).
- Size, nesting depth and node count are limited by agentconfig.core.safe_parse while the
  file is composed, before anything is constructed (MAX_FILE_BYTES, MAX_DEPTH); a value
  the constructors cannot build (2024-02-30) is a problem of the file, never a crash.
- The system prompt is kept exactly as YAML reads it, whitespace included. `name` and
  `description` are display text and are stripped.
- `dump_agent_file` output parses back to an equal AgentFile. Text with line breaks is
  written as a literal block (`|`) when that reads back identically, otherwise
  double-quoted with escapes: trailing spaces on a line (editors strip them), control
  characters, and U+0085/U+2028/U+2029 (line breaks in YAML 1.1 but not in YAML 1.2).
- Every problem in a file is reported at once, each as a location (a field such as
  `config.temperature`, or a line and column for YAML syntax) and a message.
"""

from __future__ import annotations

import datetime
import difflib
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from agentconfig.core import safe_parse
from versions.config import CONFIG_FIELDS, ConfigError, normalize_config

FILE_SUFFIX = ".yaml"
TOP_LEVEL_FIELDS = ("slug", "name", "description", "change_description", "config")
REQUIRED_TOP_LEVEL = ("slug", "name", "config")
# The prompt goes last when writing, so the short settings are not lost below a long prompt.
_DUMP_CONFIG_ORDER = (*(f for f in CONFIG_FIELDS if f != "system_prompt"), "system_prompt")
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NUL_MESSAGE = "contains a NUL character (\\x00), which cannot be stored."
_YAML11_ONLY_BREAKS = "\x85\u2028\u2029"
MAX_FILE_BYTES = 2_000_000  # the prompt (200,000 characters) and guardrails fit many times over
# Guardrails sit two levels down (config, guardrails) and may nest as deep as the admin's
# JSON field accepts (safe_parse.DEFAULT_MAX_DEPTH), so every version can be written out
# and read back; suite files nest less.
MAX_DEPTH = safe_parse.DEFAULT_MAX_DEPTH + 8
# A suite of 1,000 cases of 50 messages each, with room to spare.
MAX_NODES = 1_000_000


@dataclass(frozen=True)
class AgentFile:
    """One agent as written in its file; `config` is normalised (all six fields present)."""

    slug: str
    name: str
    config: dict[str, Any]
    description: str = ""
    change_description: str | None = None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file: where (a field, or a line and column) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class AgentFileError(ValueError):
    """Every problem found in one agent file."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def parse_agent_file(text: str, *, file_stem: str) -> AgentFile:
    """Parse and validate one agent file's text; `file_stem` is its name without `.yaml`."""
    data = load_yaml(text)
    if data is None:
        raise AgentFileError(
            [Problem("", f"the file is empty. Expected the keys {_listing(TOP_LEVEL_FIELDS)}.")]
        )
    if not isinstance(data, Mapping):
        raise AgentFileError(
            [
                Problem(
                    "",
                    f"the top level must be a mapping with the keys {_listing(TOP_LEVEL_FIELDS)}, "
                    f"not {_kind(data)}.",
                )
            ]
        )

    problems: list[Problem] = []
    for key in data:
        if key not in TOP_LEVEL_FIELDS:
            problems.append(Problem(str(key), unknown_field(str(key), TOP_LEVEL_FIELDS)))
    for key in REQUIRED_TOP_LEVEL:
        if data.get(key) is None:
            problems.append(Problem(key, "is required."))

    slug = data.get("slug")
    if slug is not None:
        if not isinstance(slug, str):
            problems.append(Problem("slug", f"must be text, not {_kind(slug)}."))
        elif slug != file_stem:
            problems.append(Problem("slug", file_name_mismatch("slug", slug, file_stem)))

    name = _text(data, "name", problems)
    if name is not None and not name:
        problems.append(Problem("name", "must not be empty."))
    description = _text(data, "description", problems)
    change_description = data.get("change_description")
    if change_description is not None and not isinstance(change_description, str):
        problems.append(
            Problem("change_description", f"must be text, not {_kind(change_description)}.")
        )
    elif change_description is not None and "\x00" in change_description:
        problems.append(Problem("change_description", _NUL_MESSAGE))

    config: dict[str, Any] = {}
    raw_config = data.get("config")
    if raw_config is not None:
        if not isinstance(raw_config, Mapping):
            problems.append(
                Problem(
                    "config",
                    f"must be a mapping with the keys {_listing(CONFIG_FIELDS)}, "
                    f"not {_kind(raw_config)}.",
                )
            )
        else:
            try:
                config = normalize_config(raw_config)
            except ConfigError as exc:
                problems.extend(
                    Problem(f"config.{field}", message)
                    for field, messages in exc.errors.items()
                    for message in messages
                )

    if problems:
        raise AgentFileError(problems)
    return AgentFile(
        slug=str(slug),
        name=name or "",
        description=description or "",
        change_description=change_description,
        config=config,
    )


def dump_agent_file(agent: AgentFile) -> str:
    """The agent as YAML text that `parse_agent_file` reads back to an equal AgentFile."""
    data: dict[str, Any] = {"slug": agent.slug, "name": agent.name}
    if agent.description:
        data["description"] = agent.description
    if agent.change_description is not None:
        data["change_description"] = agent.change_description
    data["config"] = {field: agent.config[field] for field in _DUMP_CONFIG_ORDER}
    text = _dump(data, _Dumper)
    if load_yaml(text) != data:
        # Safety net: the per-string check in _represent_str should make this unreachable,
        # but a file that reads back differently must never be written.
        text = _dump(data, _QuotedDumper)
    return text


def load_yaml(text: str) -> Any:
    """The YAML document in `text`; AgentFileError (with line and column) if it is not valid."""
    try:
        return safe_parse.load_yaml(
            text,
            max_bytes=MAX_FILE_BYTES,
            max_depth=MAX_DEPTH,
            max_nodes=MAX_NODES,
            where="",
            loader=_StrictLoader,
        )
    except safe_parse.InputError as exc:
        cause = exc.__cause__
        if isinstance(cause, yaml.MarkedYAMLError):
            raise AgentFileError([_syntax_problem(cause)]) from None
        where = f"line {exc.line}, column {exc.column}" if exc.line is not None else ""
        message = exc.message if exc.kind == safe_parse.SYNTAX else f"{exc.message}."
        raise AgentFileError([Problem(where, message)]) from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and aliases instead of guessing."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            # types-PyYAML leaves Parser.peek_event unannotated; it returns the AliasEvent.
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases such as *{event.anchor} are not supported in agent files; "
                "write the value out in full.",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Hashable, int] = {}
        pairs = node.value if isinstance(node, yaml.MappingNode) else []
        for key_node, _ in pairs:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:
                continue  # super() reports unhashable keys with its own message
            if seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first defined on line {first_line[key]}). "
                    "Remove one of them: only one value can apply.",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key, text with line breaks as `|` blocks."""

    literal_blocks = True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)

    def analyze_scalar(self, scalar: str) -> Any:
        analysis = super().analyze_scalar(scalar)
        if "\t" in scalar and not analysis.allow_block:
            # PyYAML refuses every tab in block scalars, but YAML allows them as content.
            # Judge the text as if the tabs were spaces, so a trailing tab still disqualifies
            # it; _represent_str then confirms the block reads back identically.
            analysis.allow_block = super().analyze_scalar(scalar.replace("\t", " ")).allow_block
        return analysis


class _QuotedDumper(_Dumper):
    literal_blocks = False


def _represent_str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    if (
        dumper.literal_blocks
        and "\n" in value
        # Line breaks only in YAML 1.1: a YAML 1.2 reader would see other text in a block.
        and not any(ch in value for ch in _YAML11_ONLY_BREAKS)
        and _reads_back(value, "|")
    ):
        return dumper.represent_scalar(_STR_TAG, value, style="|")
    if "\n" in value or not _reads_back(value, None):
        return dumper.represent_scalar(_STR_TAG, value, style='"')
    return dumper.represent_scalar(_STR_TAG, value)


_Dumper.add_representer(str, _represent_str)


def _reads_back(value: str, style: str | None) -> bool:
    """Whether `value`, written in `style` as a nested mapping value, loads back unchanged."""
    sample = {"k": {"k": value}}
    dumper_style = {"|": _LiteralProbe, None: _PlainProbe}[style]
    try:
        loaded: object = load_yaml(_dump(sample, dumper_style))
        return loaded == sample
    except AgentFileError:
        return False


class _PlainProbe(_Dumper):
    pass


class _LiteralProbe(_Dumper):
    pass


_PlainProbe.add_representer(str, lambda d, v: d.represent_scalar(_STR_TAG, v))
_LiteralProbe.add_representer(
    str, lambda d, v: d.represent_scalar(_STR_TAG, v, style="|" if "\n" in v else None)
)


def _dump(data: Any, dumper: type[yaml.SafeDumper]) -> str:
    return yaml.dump(
        data,
        Dumper=dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        # No folding of long lines: a long line stays one line, in every style.
        width=math.inf,
    )


def _syntax_problem(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    message = exc.problem or exc.context or "invalid YAML"
    if (
        isinstance(exc, yaml.composer.ComposerError)
        and exc.context
        and "single document" in (exc.context)
    ):
        return Problem(
            where, "a second YAML document starts here ('---'); write one agent per file."
        )
    if exc.problem and exc.context:
        context_line = f" on line {exc.context_mark.line + 1}" if exc.context_mark else ""
        message = f"{exc.problem} ({exc.context}{context_line})"
    if not isinstance(exc, yaml.constructor.ConstructorError | yaml.composer.ComposerError):
        message = f"invalid YAML: {message}"
    return Problem(where, message)


def _text(data: Mapping[str, Any], key: str, problems: list[Problem]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(Problem(key, f"must be text, not {_kind(value)}. Put it in quotes."))
        return None
    if "\x00" in value:
        problems.append(Problem(key, _NUL_MESSAGE))
        return None
    return value.strip()


def unknown_field(key: str, allowed: Sequence[str]) -> str:
    """The message for an unknown key, with the closest allowed one suggested."""
    hint = difflib.get_close_matches(key, list(allowed), n=1)
    suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
    return f"unknown field.{suggestion} Allowed: {', '.join(allowed)}."


def file_name_mismatch(key: str, value: str, file_stem: str) -> str:
    """The message for a `key: value` that does not name the file it is in (`file_stem`)."""
    return (
        f"{value!r} does not match the file name {file_stem + FILE_SUFFIX!r}. "
        f"Rename the file to {value + FILE_SUFFIX!r} or set {key}: {file_stem}."
    )


def _listing(fields: tuple[str, ...]) -> str:
    return ", ".join(fields)


def _kind(value: Any) -> str:
    # Agent files name dates in words; suite files have always given the type's name.
    return "a date" if isinstance(value, datetime.date) else kind(value)


def kind(value: Any) -> str:
    """How a YAML value of the wrong type is named in messages ("a mapping", "text" …)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    names = {dict: "a mapping", list: "a list", str: "text", bytes: "binary data"}
    for type_, name in names.items():
        if isinstance(value, type_):
            return name
    if value is None:
        return "empty"
    return type(value).__name__
