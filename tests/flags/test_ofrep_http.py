"""The OFREP endpoints over raw HTTP: statuses, bodies against the protocol's schemas, ETag/304,
authentication, query budget and invalidation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from agentconfig.core.actors import Actor
from deployments.services.api_keys import revoke_api_key
from flags.services import flags as flag_services
from tests import factories
from tests.flags.helpers import ACTOR, banner_and_limits, make_flag, set_rules, turn_on
from tests.flags.ofrep_schema import problems

SINGLE = "ofrep-evaluate-flag"
BULK = "ofrep-evaluate-flags"


def post(
    client: Client,
    key: str | None,
    body: Any,
    flag: str | None = None,
    raw: bool = False,
    **headers: str,
):
    url = reverse(SINGLE, args=[flag]) if flag else reverse(BULK)
    if key is not None:
        headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {key}")
    data = body if raw else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


def body_of(response, schema: str) -> dict[str, Any]:
    body = json.loads(response.content)
    assert problems(body, schema) == [], body
    return body


@pytest.fixture
def flags(agent, production, staging, django_capture_on_commit_callbacks):
    """web-search: on in production for ana and 10 % of users; banner: a string flag on;
    limits: a JSON flag scoped to support-bot, off."""
    with django_capture_on_commit_callbacks(execute=True):
        search = make_flag("web-search")
        set_rules(
            search,
            production,
            [
                {"users": ["ana"], "variant": "on"},
                {
                    "conditions": [{"attribute": "plan", "operator": "equals", "value": "pro"}],
                    "variant": "on",
                },
            ],
            default_variant="off",
        )
        turn_on(search, production)
        banner_and_limits(agent, production)
    return search


# --- single flag ------------------------------------------------------------------------------


def test_evaluate_flag__user_targeted__200_targeting_match_with_rule(client, flags, api_key):
    response = post(client, api_key, {"context": {"targetingKey": "ana"}}, flag="web-search")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert body_of(response, "serverEvaluationSuccess") == {
        "key": "web-search",
        "value": True,
        "reason": "TARGETING_MATCH",
        "variant": "on",
        "metadata": {"rule": 1},
    }


def test_evaluate_flag__attribute_targeted__matched_by_context(client, flags, api_key):
    response = post(
        client, api_key, {"context": {"targetingKey": "ben", "plan": "pro"}}, flag="web-search"
    )

    assert body_of(response, "serverEvaluationSuccess")["metadata"] == {"rule": 2}


def test_evaluate_flag__no_rule_matches__default_variant_reported_unknown(client, flags, api_key):
    response = post(client, api_key, {"context": {"targetingKey": "ben"}}, flag="web-search")

    # OFREP's reason enum has no DEFAULT (see docs/decisions/0009-...).
    assert body_of(response, "serverEvaluationSuccess") == {
        "key": "web-search",
        "value": False,
        "reason": "UNKNOWN",
        "variant": "off",
    }


def test_evaluate_flag__string_flag_without_rules__static(client, flags, api_key):
    response = post(client, api_key, {"context": {}}, flag="banner")

    assert body_of(response, "serverEvaluationSuccess") == {
        "key": "banner",
        "value": "Hello there",
        "reason": "STATIC",
        "variant": "long",
    }


def test_evaluate_flag__agent_scoped_json_flag_off__disabled_object(client, flags, api_key):
    response = post(client, api_key, {"context": {"targetingKey": "u"}}, flag="limits")

    assert body_of(response, "serverEvaluationSuccess") == {
        "key": "limits",
        "value": {"max": 3},
        "reason": "DISABLED",
        "variant": "small",
    }


def test_evaluate_flag__staging_key__staging_state(client, flags, staging):
    _, staging_key = factories.create_api_key(environment=staging)

    response = post(client, staging_key, {"context": {"targetingKey": "ana"}}, flag="web-search")

    assert body_of(response, "serverEvaluationSuccess")["reason"] == "DISABLED"


def test_evaluate_flag__x_api_key_header__accepted(client, flags, api_key):
    response = post(
        client,
        None,
        {"context": {"targetingKey": "ana"}},
        flag="web-search",
        HTTP_X_API_KEY=api_key,
    )

    assert response.status_code == 200


def test_evaluate_flag__unknown_flag__404_flag_not_found(client, flags, api_key):
    response = post(client, api_key, {"context": {"targetingKey": "ana"}}, flag="no-such-flag")

    assert response.status_code == 404
    assert body_of(response, "flagNotFound") == {
        "key": "no-such-flag",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "Flag 'no-such-flag' was not found in this environment.",
    }


@pytest.mark.parametrize("key", ["a/b", "Web Search", "agent.support-bot", "x" * 300])
def test_evaluate_flag__key_that_cannot_exist__json_404(client, flags, api_key, key):
    response = post(client, api_key, {"context": {}}, flag=key)

    assert response.status_code == 404
    assert body_of(response, "flagNotFound")["key"] == key


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        ("{not json", "PARSE_ERROR", "The request body is not valid JSON"),
        ("", "PARSE_ERROR", "The request body is not valid JSON"),
        (b"\xff\xfe", "PARSE_ERROR", "The request body is not valid JSON"),
        ('{"context": {"x": NaN}}', "PARSE_ERROR", "The request body is not valid JSON"),
        ("[1]", "PARSE_ERROR", "The request body must be a JSON object"),
        ("{}", "INVALID_CONTEXT", 'The request body needs a "context" object'),
        ('{"context": "ana"}', "INVALID_CONTEXT", 'The request body needs a "context" object'),
        ('{"context": {"targetingKey": 7}}', "INVALID_CONTEXT", "context.targetingKey must be"),
    ],
)
def test_evaluate_flag__bad_request__400_with_protocol_error_code(
    client, flags, api_key, body, code, details
):
    response = post(client, api_key, body, flag="web-search", raw=True)

    assert response.status_code == 400
    failure = body_of(response, "evaluationFailure")
    assert (failure["key"], failure["errorCode"]) == ("web-search", code)
    assert failure["errorDetails"].startswith(details)


def test_evaluate_flag__body_over_the_upload_limit__400_parse_error(
    client, flags, api_key, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    body = {"context": {"targetingKey": "ana", "padding": "x" * 2_000}}

    response = post(client, api_key, body, flag="web-search")

    assert response.status_code == 400
    assert (
        body_of(response, "evaluationFailure")["errorDetails"] == "The request body is too large."
    )


def test_evaluate_flag__split_reached_without_targeting_key__400_targeting_key_missing(
    client, flags, api_key, production
):
    set_rules(
        flags,
        production,
        [{"split": [{"variant": "on", "weight": 1000}, {"variant": "off", "weight": 9000}]}],
    )

    response = post(client, api_key, {"context": {"plan": "free"}}, flag="web-search")

    assert response.status_code == 400
    assert body_of(response, "evaluationFailure")["errorCode"] == "TARGETING_KEY_MISSING"


@pytest.mark.parametrize("method", ["get", "put", "delete", "head"])
def test_evaluate_flag__not_post__405_allow_post(client, flags, api_key, method):
    response = getattr(client, method)(
        reverse(SINGLE, args=["web-search"]), HTTP_AUTHORIZATION=f"Bearer {api_key}"
    )

    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_evaluate_flag__no_csrf_token__accepted(flags, api_key):
    client = Client(enforce_csrf_checks=True)

    response = post(client, api_key, {"context": {"targetingKey": "ana"}}, flag="web-search")

    assert response.status_code == 200


# --- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer"},
        {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
        {"HTTP_AUTHORIZATION": "Bearer acfg_000000000000_wrongwrongwrongwrongwrong"},
        {"HTTP_AUTHORIZATION": "Bearer not-a-key"},
        {"HTTP_X_API_KEY": "acfg_000000000000_wrongwrongwrongwrongwrong"},
    ],
)
@pytest.mark.parametrize("flag", ["web-search", None])
def test_ofrep__missing_or_wrong_key__401(client, flags, headers, flag):
    response = post(client, None, {"context": {"targetingKey": "ana"}}, flag=flag, **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="agentconfig"'
    assert problems(json.loads(response.content), "generalErrorResponse") == []


def test_ofrep__revoked_key__401_on_next_request(
    client, flags, api_key, django_capture_on_commit_callbacks
):
    from deployments.models import ApiKey

    assert post(client, api_key, {"context": {}}, flag="banner").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        revoke_api_key(key=ApiKey.objects.get(), actor=Actor.system("tests"), reason="leaked")

    assert post(client, api_key, {"context": {}}, flag="banner").status_code == 401


# --- bulk -------------------------------------------------------------------------------------


def test_evaluate_flags__every_flag_of_the_environment_sorted_with_etag(client, flags, api_key):
    response = post(client, api_key, {"context": {"targetingKey": "ana"}})

    assert response.status_code == 200
    assert body_of(response, "bulkEvaluationSuccess") == {
        "flags": [
            {"key": "banner", "value": "Hello there", "reason": "STATIC", "variant": "long"},
            {"key": "limits", "value": {"max": 3}, "reason": "DISABLED", "variant": "small"},
            {
                "key": "web-search",
                "value": True,
                "reason": "TARGETING_MATCH",
                "variant": "on",
                "metadata": {"rule": 1},
            },
        ]
    }
    assert response["ETag"].startswith('"') and len(response["ETag"]) == 42
    assert response["Cache-Control"] == "private, no-cache"
    assert "Authorization" in response["Vary"]


def test_evaluate_flags__if_none_match_current__304_without_body(client, flags, api_key):
    etag = post(client, api_key, {"context": {"targetingKey": "ana"}})["ETag"]

    response = post(client, api_key, {"context": {"targetingKey": "ana"}}, HTTP_IF_NONE_MATCH=etag)
    weak = post(
        client, api_key, {"context": {"targetingKey": "ana"}}, HTTP_IF_NONE_MATCH=f'"x", W/{etag}'
    )

    assert (response.status_code, response.content, response["ETag"]) == (304, b"", etag)
    assert weak.status_code == 304


def test_evaluate_flags__other_context_or_flag_change__new_etag_and_200(
    client, flags, api_key, production, django_capture_on_commit_callbacks
):
    etag = post(client, api_key, {"context": {"targetingKey": "ana"}})["ETag"]

    other_user = post(
        client, api_key, {"context": {"targetingKey": "ben"}}, HTTP_IF_NONE_MATCH=etag
    )
    with django_capture_on_commit_callbacks(execute=True):
        flag_services.kill_flag(flag=flags, environment=production, actor=ACTOR, reason="loops")
    after_kill = post(
        client, api_key, {"context": {"targetingKey": "ana"}}, HTTP_IF_NONE_MATCH=etag
    )

    assert other_user.status_code == 200 and other_user["ETag"] != etag
    assert after_kill.status_code == 200 and after_kill["ETag"] != etag
    search = next(f for f in json.loads(after_kill.content)["flags"] if f["key"] == "web-search")
    assert search["reason"] == "DISABLED"


def test_evaluate_flags__if_none_match_without_valid_key__401_not_304(client, flags, api_key):
    etag = post(client, api_key, {"context": {"targetingKey": "ana"}})["ETag"]

    response = post(
        client,
        "acfg_000000000000_wrongwrongwrongwrongwrong",
        {"context": {"targetingKey": "ana"}},
        HTTP_IF_NONE_MATCH=etag,
    )

    assert response.status_code == 401


def test_evaluate_flags__split_without_targeting_key__failure_item_others_succeed(
    client, flags, api_key, production
):
    set_rules(flags, production, [{"split": [{"variant": "on", "weight": 10000}]}])

    response = post(client, api_key, {"context": {}})

    assert response.status_code == 200
    items = {f["key"]: f for f in body_of(response, "bulkEvaluationSuccess")["flags"]}
    assert items["web-search"] == {
        "key": "web-search",
        "errorCode": "TARGETING_KEY_MISSING",
        "errorDetails": "rule 1 of flag 'web-search' splits users by their targeting key, and "
        "the request has none.",
    }
    assert items["banner"]["value"] == "Hello there"


@pytest.mark.parametrize(
    ("body", "code"),
    [("nope", "PARSE_ERROR"), ("{}", "INVALID_CONTEXT"), ('{"context": []}', "INVALID_CONTEXT")],
)
def test_evaluate_flags__bad_request__400_bulk_failure(client, flags, api_key, body, code):
    response = post(client, api_key, body, raw=True)

    assert response.status_code == 400
    failure = body_of(response, "bulkEvaluationFailure")
    assert failure["errorCode"] == code and "key" not in failure


def test_evaluate_flags__no_flags__empty_list(client, production, api_key):
    response = post(client, api_key, {"context": {"targetingKey": "u"}})

    assert body_of(response, "bulkEvaluationSuccess") == {"flags": []}


def test_evaluate_flags__event_stream_query_parameters__ignored(client, flags, api_key):
    url = reverse(BULK) + "?flagConfigEtag=abc&flagConfigLastModified=1771622898"

    response = client.post(
        url,
        data=json.dumps({"context": {"targetingKey": "ana"}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )

    assert response.status_code == 200


# --- query budget and freshness ---------------------------------------------------------------


def test_ofrep__cold_then_warm__three_queries_then_none(
    client, flags, api_key, django_assert_num_queries
):
    body = {"context": {"targetingKey": "ana"}}
    with django_assert_num_queries(3):  # feed position, the API keys, every flag and state
        assert post(client, api_key, body).status_code == 200

    with django_assert_num_queries(0):
        assert post(client, api_key, body).status_code == 200
        assert post(client, api_key, body, flag="web-search").status_code == 200
        assert post(client, api_key, body, flag="missing").status_code == 404


def test_ofrep__flag_changed__served_on_the_next_request(
    client, flags, api_key, production, django_capture_on_commit_callbacks
):
    body = {"context": {"targetingKey": "ben"}}
    assert json.loads(post(client, api_key, body, flag="web-search").content)["value"] is False

    with django_capture_on_commit_callbacks(execute=True):
        set_rules(flags, production, [{"users": ["ben"], "variant": "on"}])

    assert json.loads(post(client, api_key, body, flag="web-search").content)["value"] is True


def test_ofrep__new_flag__found_on_the_next_request(
    client, flags, api_key, django_capture_on_commit_callbacks
):
    assert post(client, api_key, {"context": {}}, flag="fresh").status_code == 404

    with django_capture_on_commit_callbacks(execute=True):
        make_flag("fresh")

    assert post(client, api_key, {"context": {}}, flag="fresh").status_code == 200
