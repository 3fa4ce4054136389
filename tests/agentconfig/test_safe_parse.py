"""agentconfig.core.safe_parse: one policy for hostile JSON, YAML and numbers; pure, no database."""

from __future__ import annotations

import contextlib
import json
import math
import time
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agentconfig.core.safe_parse import (
    MAX_SAFE_INTEGER,
    SYNTAX,
    TOO_DEEP,
    TOO_LARGE,
    InputError,
    check_number,
    load_json,
    load_yaml,
)

MB = 1_000_000


def nested_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# --- load_json: accepted ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": [1, 2.5, "x", true, null]}', {"a": [1, 2.5, "x", True, None]}),
        (nested_lists(32), json.loads(nested_lists(32))),
        (nested_objects(32), json.loads(nested_objects(32))),
        # Brackets inside strings are text, not nesting.
        ('["' + "[" * 100 + '"]', ["[" * 100]),
        ('["\\"' + "{" * 100 + '"]', ['"' + "{" * 100]),
        (str(MAX_SAFE_INTEGER), MAX_SAFE_INTEGER),
        (str(-MAX_SAFE_INTEGER), -MAX_SAFE_INTEGER),
        ("1e308", 1e308),
        ('"\\u00e9\\ud83d\\ude00"', "é😀"),  # a surrogate pair is one character
        (b'\xef\xbb\xbf{"bom": 1}', {"bom": 1}),
    ],
)
def test_load_json__within_the_limits__parsed(text, expected):
    assert load_json(text, max_bytes=MB) == expected


# --- load_json: refused -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        (nested_lists(33), TOO_DEEP, "body: nested deeper than 32 levels"),
        (nested_objects(33), TOO_DEEP, "body: nested deeper than 32 levels"),
        (nested_lists(100_000), TOO_DEEP, "body: nested deeper than 32 levels"),
        ("[" * 100_000, TOO_DEEP, "body: nested deeper than 32 levels"),
        ('{"a": ' + nested_lists(40) + ', "b": "]]]]"}', TOO_DEEP, "nested deeper than 32"),
        ('{"n": NaN}', SYNTAX, "not valid JSON: NaN at n is not a JSON number"),
        ("[1, -Infinity]", SYNTAX, "not valid JSON: -Infinity at [1] is not a JSON number"),
        ('{"n": 1e400}', "invalid", "body.n: the number is too large"),
        (f'{{"n": {MAX_SAFE_INTEGER + 1}}}', "invalid", "body.n: the integer 9007199254740993"),
        ('{"n": ' + "9" * 400 + "}", "invalid", "(400 digits) is beyond ±2**53"),
        ('{"n": -' + "9" * 5000 + "}", "invalid", "(5,000 digits) is beyond ±2**53"),
        ('{"ids": ["a\\u0000b"]}', "invalid", "body.ids[0]: the text contains a NUL"),
        ('{"a\\u0000": 1}', "invalid", "the key contains a NUL"),
        ('{"id": "\\ud800"}', "invalid", "body.id: the text contains a lone surrogate"),
        ('{"a": 1, "a": 2}', "invalid", "the key 'a' appears twice in one object"),
        ('{"odd key": NaN}', SYNTAX, "NaN at ['odd key']"),
        ("{not json", SYNTAX, "not valid JSON: Expecting property name"),
        ("", SYNTAX, "not valid JSON: Expecting value (line 1, column 1)"),
        (b"\xff\xfe{}", SYNTAX, "not valid JSON: not UTF-8 text (byte 1"),
        ("x" * 2_000, TOO_LARGE, "2,000 bytes; the maximum is 1,000"),
        ("é" * 600, TOO_LARGE, "1,200 bytes; the maximum is 1,000"),
        (b"1" * 1_001, TOO_LARGE, "1,001 bytes; the maximum is 1,000"),
    ],
)
def test_load_json__hostile__input_error_says_what_and_where(text, kind, message):
    with pytest.raises(InputError) as caught:
        load_json(text, max_bytes=1_000 if kind == TOO_LARGE else 10 * MB)

    assert caught.value.kind == kind
    assert message in str(caught.value)


def test_load_json__where__names_the_input_and_the_path():
    with pytest.raises(InputError) as caught:
        load_json('{"events": [{}, {}, {}, {"latency_ms": 1e999}]}', max_bytes=MB, where="body")

    assert caught.value.where == "body.events[3].latency_ms"
    with pytest.raises(InputError) as caught:
        load_json('{"country": "\\u0000"}', max_bytes=MB, where="context header")
    assert str(caught.value).startswith("context header, at country: ")
    with pytest.raises(InputError) as caught:
        load_json(nested_lists(40), max_bytes=MB, where="context header")
    assert str(caught.value) == "context header: nested deeper than 32 levels"


def test_load_json__syntax_error__line_and_column():
    with pytest.raises(InputError) as caught:
        load_json('{\n  "a": [1,]\n}', max_bytes=MB)

    assert (caught.value.kind, caught.value.line, caught.value.column) == (SYNTAX, 2, 11)


def test_load_json__a_megabyte_of_brackets__refused_quickly():
    started = time.perf_counter()
    for text in ("[" * MB, nested_lists(MB // 2), "[" * 31 + "[]," * (MB // 3)):
        with pytest.raises(InputError):
            load_json(text, max_bytes=2 * MB)

    assert time.perf_counter() - started < 2


def test_load_json__custom_depth():
    assert load_json(nested_lists(3), max_bytes=MB, max_depth=3) == [[[]]]
    with pytest.raises(InputError, match="nested deeper than 2 levels"):
        load_json(nested_lists(3), max_bytes=MB, max_depth=2)


# --- load_json: the property ---------------------------------------------------------------

MAX_BYTES = 3_000
MAX_DEPTH = 8

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: far beyond ±2**53
    st.floats(),  # NaN and ±Infinity included: json.dumps writes NaN / Infinity
    st.text(max_size=40),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=5),  # NUL, controls
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),  # surrogates
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


def _dumped(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)


documents = st.one_of(
    values.map(_dumped),
    # Deep nesting, balanced or not, lists and objects.
    st.integers(0, 5_000).map(nested_lists),
    st.integers(0, 2_000).map(nested_objects),
    st.integers(0, 5_000).map(lambda depth: "[" * depth),
    st.tuples(st.integers(0, 60), values.map(_dumped)).map(
        lambda pair: "[" * pair[0] + pair[1] + "]" * pair[0]
    ),
    # Huge numbers as text.
    st.integers(1, 6_000).map(lambda digits: "-" * (digits % 2) + "9" * digits),
    st.tuples(st.integers(-400, 400), st.integers(1, 9)).map(lambda p: f"[{p[1]}e{p[0]}]"),
    # Very long strings (over the limit or not).
    st.integers(0, 2 * MAX_BYTES).map(lambda n: json.dumps("x" * n)),
    # Arbitrary bytes (not UTF-8, or UTF-8 that is not JSON), and text cut anywhere.
    st.binary(max_size=200),
    st.tuples(values.map(_dumped), st.integers(0, 100)).map(lambda pair: pair[0][: pair[1]]),
    st.text(alphabet='[]{}",:0123456789.eE-+\\u nulltruefalseNaInfity', max_size=200),
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _within_policy(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_within_policy(k) and _within_policy(v) for k, v in value.items())
    if isinstance(value, list):
        return all(map(_within_policy, value))
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_SAFE_INTEGER
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    return False


@settings(derandomize=True, max_examples=400, deadline=None)
@given(documents)
def test_load_json__any_hostile_document__value_within_the_limits_or_input_error(document):
    try:
        value = load_json(document, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH, where="body")
    except InputError as exc:
        assert str(exc).startswith("body")
        return
    size = len(document) if isinstance(document, bytes) else len(document.encode("utf-8"))
    assert size <= MAX_BYTES
    assert _depth(value) <= MAX_DEPTH
    assert _within_policy(value)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(values.filter(_within_policy).filter(lambda v: _depth(v) <= MAX_DEPTH))
def test_load_json__ordinary_json__same_value_as_json_loads(value):
    text = _dumped(value)
    if len(text) > MAX_BYTES:
        return
    # The only JSON it refuses is JSON with duplicate keys, which json.dumps never writes.
    assert load_json(text, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH) == json.loads(text)


# --- check_number ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (840, 840), (2.5, 2.5), ("2.5", 2.5), (" 5 ", 5), (".5", 0.5), ("1e3", 1000.0)],
)
def test_check_number__within_range__returned(value, expected):
    assert check_number(value, field="f", minimum=0, maximum=3_600_000) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1e200, "events[3].latency_ms: must be between 0 and 3,600,000; got 1e+200"),
        (-1e200, "must be between 0 and 3,600,000; got -1e+200"),
        (int("9" * 400), "must be between 0 and 3,600,000; got 99999999999999999999…"),
        (float("nan"), "must be a finite number, not nan"),
        (float("inf"), "must be a finite number, not inf"),
        ("nan", "must be a number, e.g. 2.5; got 'nan'"),
        ("inf", "must be a number, e.g. 2.5; got 'inf'"),
        ("1e308,inf", "must be a number, e.g. 2.5; got '1e308,inf'"),
        ("1_000", "got '1_000'"),
        ("0x10", "got '0x10'"),
        ("9" * 200, "must be a number"),
        (True, "must be a number, not true/false"),
        (None, "must be a number, not null"),
        ([1], "must be a number, not a list"),
    ],
)
def test_check_number__hostile__input_error_names_the_field(value, message):
    with pytest.raises(InputError) as caught:
        check_number(value, field="events[3].latency_ms", minimum=0, maximum=3_600_000)

    assert caught.value.where == "events[3].latency_ms"
    assert message in str(caught.value)


def test_check_number__open_ranges_and_whole_numbers():
    assert check_number(-1e300, field="f") == -1e300
    assert check_number(7.0, field="f", integer=True) == 7
    with pytest.raises(InputError, match="must be at least 1; got 0"):
        check_number(0, field="f", minimum=1)
    with pytest.raises(InputError, match="must be at most 10; got 11"):
        check_number(11, field="f", maximum=10)
    with pytest.raises(InputError, match=r"must be a whole number; got 1\.5"):
        check_number(1.5, field="f", integer=True)
    with pytest.raises(InputError, match="beyond ±2\\*\\*53"):
        check_number(MAX_SAFE_INTEGER + 1, field="f")


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    st.one_of(st.integers(), st.floats(), st.text(max_size=30), st.booleans(), st.none()),
    st.floats(-1e6, 0),
    st.floats(0, 1e6),
)
def test_check_number__anything__finite_number_in_range_or_input_error(value, low, high):
    try:
        number = check_number(value, field="f", minimum=low, maximum=high)
    except InputError:
        return
    assert math.isfinite(number) and low <= number <= high


# --- load_yaml ----------------------------------------------------------------------------

BILLION_LAUGHS = (
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
    )
)


def test_load_yaml__ordinary_document__parsed_like_safe_load():
    text = "a: {b: [1, 2.5, x, true, null]}\nc: 2024-02-29\nd: &d [1]\ne: *d\n"

    assert load_yaml(text, max_bytes=MB) == yaml.safe_load(text)


@pytest.mark.parametrize(
    ("text", "kind", "message", "line"),
    [
        ("a: " + nested_lists(100_000), TOO_DEEP, "nested deeper than 32 levels", 1),
        ("a: " + "{a: " * 100_000, TOO_DEEP, "nested deeper than 32 levels", 1),
        ("".join(" " * i + "a:\n" for i in range(200)) + " " * 200 + "b\n", TOO_DEEP, "32", 33),
        ("- " * 100_000 + "x\n", TOO_DEEP, "nested deeper than 32 levels", 1),
        (BILLION_LAUGHS, TOO_LARGE, "expands to more than 100,000 values (through aliases)", 1),
        ("a: &a [*a]\n", TOO_DEEP, "nested deeper than 32 levels", 1),
        ("d: 2024-02-30\n", SYNTAX, "a value cannot be read: day is out of range", None),
        ("n: " + "9" * 5_000 + "\n", SYNTAX, "a value cannot be read: Exceeds the limit", None),
        ("a: [1, 2\n", SYNTAX, "expected ',' or ']'", 2),
        ("a: 1\n---\nb: 2\n", SYNTAX, "but found another document", 2),
        ("a: \x07\n", SYNTAX, "invalid YAML: unacceptable character #x0007", None),
        ("!!python/object:os.system x\n", SYNTAX, "could not determine a constructor", 1),
        (b"\xff\xfe", SYNTAX, "not UTF-8 text", None),
        ("x" * 2_000_001, TOO_LARGE, "2,000,001 bytes; the maximum is 2,000,000", None),
    ],
)
def test_load_yaml__hostile__input_error_with_line(text, kind, message, line):
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        load_yaml(text, max_bytes=2 * MB, where="suite file")

    assert time.perf_counter() - started < 2
    assert (caught.value.kind, caught.value.line) == (kind, line)
    assert message in str(caught.value)
    assert str(caught.value).startswith("suite file: ")


def test_load_yaml__loader_subclass__its_own_rules_kept():
    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(
                    None, None, "no aliases", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)

    assert load_yaml("a: [1]\n", max_bytes=MB, loader=NoAliases) == {"a": [1]}
    with pytest.raises(InputError) as caught:
        load_yaml("a: &x 1\nb: *x\n", max_bytes=MB, loader=NoAliases)
    assert caught.value.message == "no aliases"
    assert isinstance(caught.value.__cause__, yaml.composer.ComposerError)
    with pytest.raises(InputError, match="nested deeper than 32 levels"):
        load_yaml(nested_lists(33), max_bytes=MB, loader=NoAliases)


def test_load_yaml__more_nodes_than_the_limit__refused_before_constructing():
    with pytest.raises(InputError) as caught:
        load_yaml("[" + ", ".join(["1"] * 1_001) + "]", max_bytes=MB, max_nodes=1_000)

    assert (caught.value.kind, caught.value.message) == (TOO_LARGE, "has more than 1,000 values")


def test_load_yaml__empty__none():
    assert load_yaml("", max_bytes=MB) is None
    assert load_yaml("# only a comment\n", max_bytes=MB) is None


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="[]{}-:,&*ab 0123\n\t'\"!.#|>?", max_size=150),
        st.integers(0, 2_000).map(lambda depth: "a: " + "[" * depth),
        st.binary(max_size=100),
    )
)
def test_load_yaml__any_text__value_or_input_error(text):
    with contextlib.suppress(InputError):
        load_yaml(text, max_bytes=MB, max_depth=MAX_DEPTH, max_nodes=1_000)
