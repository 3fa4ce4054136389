"""Parsing input that may be hostile: JSON bodies and headers, admin JSON fields, YAML files.

One policy for every entry point, one exception (`InputError`) whose message names the
input and the place in it ("context header: nested deeper than 32 levels",
"events[3].latency_ms: must be between 0 and 3,600,000"). Pure module (no Django).

Invariants:
- Size, then depth, are checked before the parser runs: a JSON text's nesting is measured
  by a linear scan outside its strings; YAML nesting and the number of nodes are counted
  while composing, and aliases are expanded against the node limit BEFORE anything is
  constructed (a "billion laughs" document stops at the limit, not at the memory limit).
  Neither parser can recurse deeper than `max_depth`, so RecursionError never escapes.
- JSON numbers are numbers every client reads alike: no NaN or Infinity, integers within
  ±2**53 (JavaScript's exact range), floats finite. `check_number` adds a field's range.
- JSON text is valid Unicode without NUL: neither a lone surrogate (cannot be encoded to
  UTF-8) nor \\u0000 (PostgreSQL refuses it in text and jsonb) gets past the parser.
- Duplicate keys in a JSON object are refused: parsers disagree on which one wins.
- Anything else that goes wrong while parsing (a YAML date such as 2024-02-30, an
  integer of 5,000 digits) is an InputError too, never another exception.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from typing import Any

import yaml

DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_NODES = 100_000
# JavaScript's Number.MAX_SAFE_INTEGER + 1: integers beyond it are not exact in every client.
MAX_SAFE_INTEGER = 2**53

# Kinds of InputError, so callers can choose a status (413 for size) or keep their wording.
TOO_LARGE = "too_large"
TOO_DEEP = "too_deep"
SYNTAX = "syntax"
INVALID = "invalid"


class InputError(ValueError):
    """The input cannot be accepted; `where` names the input (and the place in it).

    str(error) is "<where>: <message>"; messages end without a full stop. A JSON text
    that is not JSON at all (kind SYNTAX: broken syntax, not UTF-8, NaN) has a message
    that starts "not valid JSON: ", so a caller can write "<the input> is <message>";
    `line` and `column` (1-based) are set when known, and a YAML parser's own error is
    the `__cause__`.
    """

    def __init__(
        self,
        message: str,
        where: str,
        *,
        kind: str = INVALID,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.where = where
        self.kind = kind
        self.line = line
        self.column = column

    @property
    def too_large(self) -> bool:
        return self.kind == TOO_LARGE


# --- JSON -------------------------------------------------------------------------------


def load_json(
    text_or_bytes: str | bytes | bytearray,
    *,
    max_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    where: str = "body",
) -> Any:
    """The JSON value in the input, or InputError; see the module's invariants."""
    text = _text_within(text_or_bytes, max_bytes, where)
    _check_json_depth(text, max_depth, where)
    try:
        value = json.loads(
            text,
            object_pairs_hook=lambda pairs: _object(pairs, where),
            parse_int=_parse_int,
            parse_constant=_Constant,
        )
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            where,
            kind=SYNTAX,
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except RecursionError:  # unreachable after the scan; kept so it can never be a 500
        raise _too_deep(max_depth, where) from None
    _check_values(value, where, [])
    return value


def _text_within(data: str | bytes | bytearray, max_bytes: int, where: str) -> str:
    if isinstance(data, bytes | bytearray):
        if len(data) > max_bytes:
            raise _too_large(len(data), max_bytes, where)
        try:
            return bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"not valid JSON: not UTF-8 text (byte {exc.start + 1}: {exc.reason})",
                where,
                kind=SYNTAX,
            ) from None
    if not isinstance(data, str):
        raise InputError(f"must be text, not {type(data).__name__}", where, kind=SYNTAX)
    # A character takes at most 4 bytes in UTF-8: short texts need no encoding.
    if len(data) * 4 > max_bytes:
        size = len(data.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise _too_large(size, max_bytes, where)
    return data


# A JSON string, or an unterminated one running to the end (so a failed match never
# rescans: the scan stays linear whatever the input).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)


def _check_json_depth(text: str, max_depth: int, where: str) -> None:
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot be deeper: most bodies stop here
    outside_strings = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    steps = outside_strings.translate(_OPEN_CLOSE, _NOT_BRACKETS)
    # The depth is the highest running count of "+" (opening) minus "-" (closing),
    # taken 8 steps at a time from a table (a Python loop per character is too slow).
    depth = 0
    for start in range(0, len(steps), _PIECE):
        change, highest = _PIECES[steps[start : start + _PIECE]]
        if depth + highest > max_depth:
            raise _too_deep(max_depth, where)
        depth += change


_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"++--")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[{]}")))
_PIECE = 8


def _piece_table() -> dict[bytes, tuple[int, int]]:
    """(net change, highest running count) of every string of up to _PIECE "+" and "-"."""
    table: dict[bytes, tuple[int, int]] = {b"": (0, 0)}
    for length in range(1, _PIECE + 1):
        for piece in map(bytes, itertools.product(b"+-", repeat=length)):
            change, highest = table[piece[:-1]]
            change += 1 if piece[-1:] == b"+" else -1
            table[piece] = (change, max(highest, change))
    return table


_PIECES = _piece_table()


class _Constant:
    """NaN, Infinity or -Infinity as read, refused with its place by _check_values."""

    def __init__(self, name: str) -> None:
        self.name = name


class _BigInteger:
    """An integer too long to be within ±2**53, refused with its place by _check_values."""

    def __init__(self, digits: str) -> None:
        self.digits = digits


def _parse_int(digits: str) -> int | _BigInteger:
    # Never int() on a long digit string: it is slow and beyond 4,300 digits a ValueError.
    return int(digits) if len(digits) <= 20 else _BigInteger(digits)


def _object(pairs: list[tuple[str, Any]], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InputError(
                f"the key {_short(key)!r} appears twice in one object; send it once",
                where,
            )
        out[key] = value
    return out


def _check_values(value: Any, where: str, path: list[str]) -> None:
    """Numbers and strings anywhere in a parsed value (depth is already bounded)."""
    if isinstance(value, dict):
        for key, item in value.items():
            path.append(f".{key}" if _PLAIN_KEY.match(key) else f"[{_short(key)!r}]")
            _check_text(key, where, path, "key")
            _check_values(item, where, path)
            path.pop()
    elif isinstance(value, list):
        for index, item in enumerate(value):
            path.append(f"[{index}]")
            _check_values(item, where, path)
            path.pop()
    elif isinstance(value, str):
        _check_text(value, where, path, "text")
    elif isinstance(value, _Constant):
        at = f" at {''.join(path).removeprefix('.')}" if path else ""
        raise InputError(
            f"not valid JSON: {value.name}{at} is not a JSON number (send a finite number or null)",
            where,
            kind=SYNTAX,
        )
    elif isinstance(value, _BigInteger):
        raise InputError(_too_big_integer(value.digits), _at(where, path))
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise InputError(_too_big_integer(str(value)), _at(where, path))
    elif isinstance(value, float) and not math.isfinite(value):
        raise InputError(
            "the number is too large (beyond ±1.8e308); JSON numbers are finite",
            _at(where, path),
        )


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _check_text(text: str, where: str, path: list[str], what: str) -> None:
    if "\x00" in text:
        raise InputError(
            f"the {what} contains a NUL character (\\u0000), which cannot be stored",
            _at(where, path),
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                f"the {what} contains a lone surrogate (\\ud800-\\udfff without its pair), "
                "which is not Unicode text",
                _at(where, path),
            ) from None


def _too_big_integer(digits: str) -> str:
    shown = digits if len(digits) <= 24 else f"{digits[:20]}… ({len(digits.lstrip('-')):,} digits)"
    return (
        f"the integer {shown} is beyond ±2**53 ({MAX_SAFE_INTEGER:,}), "
        "which not every client can read exactly"
    )


def _at(where: str, path: list[str]) -> str:
    inner = "".join(path)
    if not inner or not where:
        return where or inner.removeprefix(".")
    # "body.events[3].ok" for a field-like name; "context header, at country" otherwise.
    if " " in where:
        return f"{where}, at {inner.removeprefix('.')}"
    return f"{where}{inner}"


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"


def _too_large(size: int, max_bytes: int, where: str) -> InputError:
    return InputError(f"{size:,} bytes; the maximum is {max_bytes:,}", where, kind=TOO_LARGE)


def _too_deep(max_depth: int, where: str) -> InputError:
    return InputError(f"nested deeper than {max_depth} levels", where, kind=TOO_DEEP)


# --- numbers ----------------------------------------------------------------------------

# A decimal number as people type it: 5, -0.5, .25, 1e-3. Not "nan", "inf", "1_000" or hex.
_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
MAX_NUMBER_TEXT = 100


def check_number(
    value: Any,
    *,
    field: str,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
) -> int | float:
    """`value` if it is a finite number (a whole one if `integer`) in [minimum, maximum].

    Text is read as a decimal number ("2.5", "1e3"; never "nan", "inf" or "1_000"), so a
    form's or a command line's text gets the same rule as a JSON number.
    """
    number = _as_number(value, field)
    if integer and isinstance(number, float):
        if not number.is_integer():
            raise InputError(f"must be a whole number; got {_shown(number)}", field)
        number = int(number)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise InputError(f"{_range(minimum, maximum)}; got {_shown(number)}", field)
    if isinstance(number, int) and abs(number) > MAX_SAFE_INTEGER:
        raise InputError(_too_big_integer(str(number)), field)
    return number


def _as_number(value: Any, field: str) -> int | float:
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_NUMBER_TEXT or not _DECIMAL.match(text):
            raise InputError(f"must be a number, e.g. 2.5; got {_short(text)!r}", field)
        value = float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"must be a number, not {_kind(value)}", field)
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"must be a finite number, not {value}", field)
    return value


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"must be between {_bound(minimum)} and {_bound(maximum)}"
    if minimum is not None:
        return f"must be at least {_bound(minimum)}"
    if maximum is not None:
        return f"must be at most {_bound(maximum)}"
    return ""


def _bound(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


def _shown(number: float) -> str:
    text = f"{number:g}" if isinstance(number, float) else str(number)
    return text if len(text) <= 24 else f"{text[:20]}… ({len(text):,} digits)"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", bool: "true/false", str: "text"}
    return next((name for t, name in names.items() if isinstance(value, t)), type(value).__name__)


# --- YAML -------------------------------------------------------------------------------


def load_yaml(
    text: str | bytes,
    *,
    max_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
    where: str = "file",
    loader: type[yaml.SafeLoader] = yaml.SafeLoader,
) -> Any:
    """The single YAML document in `text` (None if empty), or InputError.

    `loader` is yaml.SafeLoader or a subclass of it (e.g. one that refuses duplicate keys);
    the limits are added to it. Aliases count as the nodes they expand to.
    """
    source = _text_within(text, max_bytes, where)
    limited = None
    try:
        limited = _limited(loader)(source)  # the reader checks for control characters
        limited.ac_limits = (max_depth, max_nodes, where)
        node = limited.get_single_node()
        if node is None:
            return None
        if limited.ac_aliases:
            _check_expanded(node, max_depth, max_nodes, where)
        return limited.construct_document(node)
    except InputError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(
            _first_line(exc.problem or exc.context or "invalid YAML"),
            where,
            kind=SYNTAX,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from exc
    except yaml.YAMLError as exc:  # e.g. a ReaderError for a control character
        raise InputError(f"invalid YAML: {_first_line(str(exc))}", where, kind=SYNTAX) from exc
    except RecursionError:  # unreachable with the depth limit; never a 500
        raise _too_deep(max_depth, where) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # A value the constructors cannot build: 2024-02-30, an integer of 5,000 digits.
        raise InputError(
            f"a value cannot be read: {_first_line(str(exc))}", where, kind=SYNTAX
        ) from exc
    finally:
        if limited is not None:
            limited.dispose()


class _LimitedComposer:
    """Mixed in before a SafeLoader: counts depth and nodes while the document is composed."""

    ac_limits: tuple[int, int, str]
    ac_depth = 0
    ac_nodes = 0
    ac_aliases = False

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # PyYAML's scanner slows down with each open flow collection ("[[[[..."): refuse
        # before it looks further than the limit.
        max_depth, _, where = self.ac_limits
        # A mixin of PyYAML's loader: flow_level, get_mark, the super() method and
        # peek_event come from the scanner and parser it is mixed with.
        if self.flow_level >= max_depth:  # type: ignore[attr-defined]
            mark = self.get_mark()  # type: ignore[attr-defined]
            raise InputError(
                f"nested deeper than {max_depth} levels",
                where,
                kind=TOO_DEEP,
                line=mark.line + 1,
                column=mark.column + 1,
            )
        super().fetch_flow_collection_start(token_class)  # type: ignore[misc]

    def compose_node(self, parent: Any, index: Any) -> Any:
        max_depth, max_nodes, where = self.ac_limits
        event = self.peek_event()  # type: ignore[attr-defined]
        self.ac_nodes += 1
        if self.ac_nodes > max_nodes:
            raise _marked(f"has more than {max_nodes:,} values", where, event, TOO_LARGE)
        if isinstance(event, yaml.AliasEvent):
            self.ac_aliases = True
        if not isinstance(event, yaml.CollectionStartEvent):
            return super().compose_node(parent, index)  # type: ignore[misc]
        self.ac_depth += 1
        try:
            if self.ac_depth > max_depth:
                raise _marked(f"nested deeper than {max_depth} levels", where, event, TOO_DEEP)
            return super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self.ac_depth -= 1


_LIMITED: dict[type, type] = {}


def _limited(loader: type[yaml.SafeLoader]) -> Callable[[str], Any]:
    if not issubclass(loader, yaml.SafeLoader):
        raise TypeError("load_yaml needs yaml.SafeLoader or a subclass")
    if loader not in _LIMITED:
        _LIMITED[loader] = type(f"Limited{loader.__name__}", (_LimitedComposer, loader), {})
    return _LIMITED[loader]


def _check_expanded(root: yaml.Node, max_depth: int, max_nodes: int, where: str) -> None:
    """Walk the composed tree as construction would, aliases expanded, within the limits."""
    visited = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        visited += 1
        if visited > max_nodes:
            raise _marked(
                f"expands to more than {max_nodes:,} values (through aliases)",
                where,
                node,
                TOO_LARGE,
            )
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            continue
        if depth > max_depth:
            raise _marked(f"nested deeper than {max_depth} levels", where, node, TOO_DEEP)
        stack.extend((child, depth + 1) for child in children)


def _marked(message: str, where: str, at: yaml.Event | yaml.Node, kind: str) -> InputError:
    mark = at.start_mark
    if mark is None:
        return InputError(message, where, kind=kind)
    return InputError(message, where, kind=kind, line=mark.line + 1, column=mark.column + 1)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unreadable"
