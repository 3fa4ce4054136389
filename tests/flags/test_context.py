"""flags.context.parse_context: the config endpoint's context from query parameters and a header."""

import base64
import json

import pytest
from django.http import QueryDict

from flags.context import ContextError, parse_context


def b64(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_parse_context__query_parameters__prefixed_ones_as_text():
    query = QueryDict("ctx.country=DE&ctx.seats=12&user=u-1&other=x")

    assert parse_context(query, None) == {"country": "DE", "seats": "12"}


def test_parse_context__repeated_query_parameter__list():
    query = QueryDict("ctx.groups=beta&ctx.groups=staff")

    assert parse_context(query, None) == {"groups": ["beta", "staff"]}


def test_parse_context__plain_mapping__accepted():
    assert parse_context({"ctx.country": "DE", "ctx.tags": ["a", "b"]}, None) == {
        "country": "DE",
        "tags": ["a", "b"],
    }


def test_parse_context__json_header__typed_values():
    header = '{"country": "DE", "seats": 12, "beta": true, "ratio": 0.5, "groups": ["a"]}'

    assert parse_context({}, header) == {
        "country": "DE",
        "seats": 12,
        "beta": True,
        "ratio": 0.5,
        "groups": ["a"],
    }


def test_parse_context__base64url_header_without_padding__non_ascii_values():
    assert parse_context({}, b64({"city": "Köln", "plan": "pro"})) == {
        "city": "Köln",
        "plan": "pro",
    }


def test_parse_context__both_sources__merged():
    assert parse_context(QueryDict("ctx.plan=pro"), '{"country": "DE"}') == {
        "country": "DE",
        "plan": "pro",
    }


def test_parse_context__nothing__empty():
    assert parse_context(QueryDict(""), None) == {}
    assert parse_context({}, "   ") == {}


@pytest.mark.parametrize(
    ("query", "header", "message"),
    [
        ("ctx.country=DE", '{"country": "FR"}', "the attribute 'country' is given both"),
        ("", "{not json", "the X-Agentconfig-Context header is not valid JSON"),
        ("", "%%%", "must be a JSON object or base64url-encoded JSON"),
        ("", "[1, 2]", "must be a JSON object or base64url"),
        ("", b64([1, 2]), "the X-Agentconfig-Context header must hold a JSON object"),
        ("", '{"a": 1, "a": 2}', "the key 'a' appears twice"),
        ("", '{"user": {"plan": "pro"}}', "attribute 'user': values are text, numbers"),
        ("", '{"plan": null}', "values are text, numbers, true/false or a list of those, not null"),
        ("", '{"n": NaN}', "is not valid JSON"),
        ("", '{"": 1}', "attribute names are 1-100 characters long"),
        ("ctx.targetingKey=u-1", None, "'targetingKey' is reserved"),
        ("ctx.=x", None, "query parameter 'ctx.': attribute names are 1-100"),
        ("", "{" + '"a": "' + "x" * 9000 + '"}', "header is 9,009 characters long"),
        ("", json.dumps({"l": list(range(101))}), "lists hold at most 100 values"),
        ("", json.dumps({"l": [[1]]}), "not a list"),
        ("", json.dumps({f"a{i}": i for i in range(101)}), "the context has 101 attributes"),
    ],
)
def test_parse_context__invalid__context_error_says_what(query, header, message):
    with pytest.raises(ContextError) as caught:
        parse_context(QueryDict(query), header)

    assert message in caught.value.message
