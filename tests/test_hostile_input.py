"""Hostile input thrown at the real entry points: every case of the red-team pass that gave a
500 (security hardening, item 2), and fuzzing of the three runtime bodies and headers.

Each test asserts a 4xx (or a form or file error) and that nothing was written.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, OperationalError
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentconfig.core.actors import Actor
from agentconfig.wsgi import application
from delivery.views import database_error
from deployments.models import (
    CanaryPolicy,
    CanaryRollout,
    OutcomeCount,
    OutcomeEventId,
    ReleaseLogEntry,
)
from deployments.services.environments import set_canary_policy
from deployments.services.outcomes import InvalidBatch, parse_events
from evaluations.models import EvaluationSuite, SuiteVersion
from evaluations.sync import sync_evals
from flags.models import Flag, FlagEnvironment
from tests import factories
from tests.deployments.canary_helpers import start
from tests.evaluations.helpers import post_add_suite
from tests.flags.helpers import make_flag, set_rules
from versions.file_format import AgentFileError, parse_agent_file
from versions.models import AgentVersion
from versions.sync import SyncError, sync_agents

pytestmark = pytest.mark.django_db

CONFIG = "runtime-config"
OUTCOMES = "runtime-outcomes"
CONTEXT = "HTTP_X_AGENTCONFIG_CONTEXT"


def deep_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.fixture
def stable(agent, production, django_capture_on_commit_callbacks) -> AgentVersion:
    with django_capture_on_commit_callbacks(execute=True):
        version = factories.create_version(agent)
        factories.deploy(version, production)
    return version


def post_outcomes(client, key: str | None, body: str | bytes):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return client.post(
        reverse(OUTCOMES, args=["support-bot"]),
        data=body,
        content_type="application/json",
        **headers,
    )


def event(version: AgentVersion, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "version_id": str(version.id),
        "user_id": "u-1",
        "ok": True,
        **fields,
    }


def assert_no_outcomes() -> None:
    assert OutcomeEventId.objects.count() == 0
    assert OutcomeCount.objects.count() == 0


def error_of(response) -> dict[str, Any]:
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)["error"]


# --- outcomes ----------------------------------------------------------------------------


def test_outcomes__100_000_nested_brackets__400_nothing_written(client, stable, api_key):
    response = post_outcomes(client, api_key, deep_lists(100_000))

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_json"
    assert (
        error["message"]
        == "the body: nested deeper than 32 levels; nothing of this batch was stored."
    )
    assert_no_outcomes()


def test_outcomes__nested_body_without_key__401_before_the_body_is_read(client, stable):
    assert post_outcomes(client, None, deep_lists(100_000)).status_code == 401
    assert post_outcomes(client, "acfg_nope_x", deep_lists(100_000)).status_code == 401


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("latency_ms", "1e200", "must be between 0 and 3,600,000; got 1e+200."),
        ("latency_ms", "-1e200", "must be between 0 and 3,600,000; got -1e+200."),
        ("score", "1e200", "must be between -1,000,000 and 1,000,000; got 1e+200."),
        ("score", "-1e200", "must be between -1,000,000 and 1,000,000; got -1e+200."),
    ],
)
def test_outcomes__number_out_of_range__400_names_event_and_field(
    client, stable, api_key, field, raw, message
):
    events = [event(stable, event_id=f"e-{i}") for i in range(4)]
    body = json.dumps({"events": events}).replace(
        '"event_id": "e-3"', f'"{field}": {raw}, "event_id": "e-3"'
    )

    response = post_outcomes(client, api_key, body)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_events"
    assert error["details"] == [{"index": 3, "field": field, "message": message}]
    assert_no_outcomes()


@pytest.mark.parametrize("field", ["latency_ms", "score"])
def test_outcomes__400_digit_integer__400_nothing_written(client, stable, api_key, field):
    body = json.dumps({"events": [event(stable, **{field: int("9" * 400)})]})

    response = post_outcomes(client, api_key, body)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_json"
    assert f"the body, at events[0].{field}: the integer 9999" in error["message"]
    assert "(400 digits) is beyond ±2**53" in error["message"]
    assert_no_outcomes()


@pytest.mark.parametrize(
    "event_id", ["a\\u0000b", "\\ud800", "\\udfff-tail"], ids=["nul", "surrogate", "low-surrogate"]
)
def test_outcomes__unstorable_event_id__400_before_the_database(
    client, stable, api_key, event_id, caplog
):
    body = json.dumps({"events": [event(stable, event_id="PLACEHOLDER")]})
    body = body.replace("PLACEHOLDER", event_id)

    with caplog.at_level(logging.WARNING, logger="delivery.views"):
        response = post_outcomes(client, api_key, body)

    assert response.status_code == 400
    assert "the body, at events[0].event_id: the text contains" in error_of(response)["message"]
    # Refused as input, never by the database (which would log a database error).
    assert not [r for r in caplog.records if r.name == "delivery.views"]
    assert_no_outcomes()


def test_outcomes__nul_in_parsed_event_id__refused_by_parse_events(stable):
    with pytest.raises(InvalidBatch) as refused:
        parse_events({"events": [event(stable, user_id="u\x00")]}, now=timezone.now())

    assert [e.as_dict()["field"] for e in refused.value.errors] == ["user_id"]


def test_outcomes__body_over_the_byte_limit__413(client, stable, api_key, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5_000_000
    body = json.dumps({"events": [event(stable, user_id="x" * 1_100_000)]})

    response = post_outcomes(client, api_key, body)

    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"
    assert_no_outcomes()


# --- the context header and ?at= ----------------------------------------------------------


def config(client, key: str, query: dict[str, str] | None = None, **headers: str):
    return client.get(
        reverse(CONFIG, args=["support-bot"]),
        query or {},
        HTTP_AUTHORIZATION=f"Bearer {key}",
        **headers,
    )


DEEP_HEADER = "the X-Agentconfig-Context header: nested deeper than 32 levels."


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ('{"a": ' + deep_lists(4_000) + "}", DEEP_HEADER),
        (deep_objects(1_300), DEEP_HEADER),
        (base64.urlsafe_b64encode(deep_lists(3_000).encode()).decode().rstrip("="), DEEP_HEADER),
        # Deeper still does not fit in the header: its length is refused first.
        (deep_objects(4_000), "the X-Agentconfig-Context header is 24,001 characters long"),
    ],
    ids=["lists", "objects", "base64", "too-long"],
)
def test_config__context_header_nested_deep__400_invalid_context(
    client, stable, api_key, header, message
):
    response = config(client, api_key, **{CONTEXT: header})

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_context"
    assert error["message"].startswith(message)


@pytest.mark.parametrize(
    "at",
    ["9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59"],
)
def test_config_at__out_of_range__400_not_503(client, stable, api_key, at):
    response = config(client, api_key, {"at": at, "user_id": "u-1"})

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_at"


def test_config_at__nul_in_environment__400_before_the_database(admin_client, stable):
    response = admin_client.get(
        reverse(CONFIG, args=["support-bot"]),
        {"at": "2020-01-01T00:00:00Z", "environment": "prod\x00uction"},
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_environment"


@pytest.mark.parametrize(
    ("exc", "status", "code", "level"),
    [
        (OperationalError("connection refused"), 503, "database_unavailable", logging.WARNING),
        (DataError("invalid byte sequence"), 400, "invalid_input", logging.ERROR),
        (IntegrityError("duplicate key"), 500, "internal_error", logging.ERROR),
    ],
)
def test_database_error__only_unreachable_is_503__the_rest_logged_as_what_it_is(
    exc, status, code, level, caplog
):
    with caplog.at_level(logging.WARNING, logger="delivery.views"):
        answer = database_error(exc, "the outcomes of support-bot")

    assert answer[:2] == (status, code)
    (record,) = [r for r in caplog.records if r.name == "delivery.views"]
    assert record.levelno == level
    assert "the outcomes of support-bot" in record.getMessage()
    assert (record.exc_info is not None) == (status != 503)


# --- OFREP -------------------------------------------------------------------------------


def ofrep(client, key: str, body: str, flag: str | None = None):
    url = reverse("ofrep-evaluate-flag", args=[flag]) if flag else reverse("ofrep-evaluate-flags")
    return client.post(
        url, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


@pytest.mark.parametrize(
    "body",
    [
        '{"context": ' + deep_lists(4_000) + "}",
        '{"context": {"plan": ' + deep_objects(4_000) + "}}",
        deep_lists(4_000),
    ],
    ids=["context-lists", "attribute-objects", "top-level"],
)
@pytest.mark.parametrize("flag", [None, "web-search"], ids=["bulk", "single"])
def test_ofrep__body_nested_4000_deep__400_parse_error_in_ofrep_format(
    client, production, api_key, body, flag
):
    make_flag("web-search")

    response = ofrep(client, api_key, body, flag)

    assert response.status_code == 400
    answer = json.loads(response.content)
    assert answer["errorCode"] == "PARSE_ERROR"
    assert answer["errorDetails"] == "The request body: nested deeper than 32 levels."
    assert ("key" in answer) == (flag is not None)


# --- admin JSON fields --------------------------------------------------------------------


@pytest.fixture
def flag(production, staging) -> Flag:
    search = make_flag("web-search")
    set_rules(search, production, [{"users": ["ana"], "variant": "on"}], default_variant="off")
    return search


def test_flag_rules_form__nested_5000_deep__error_on_rules_nothing_saved(
    admin_client, flag, production
):
    response = admin_client.post(
        reverse("admin:flags_flag_rules", args=[flag.pk, "production"]),
        {
            "default_variant": "off",
            "off_variant": "off",
            "rules": deep_lists(5_000),
            "revision": "2",
        },
    )

    assert response.status_code == 200
    assert response.context["form"].errors["rules"] == ["nested deeper than 32 levels."]
    state = FlagEnvironment.objects.get(flag=flag, environment=production)
    assert state.rules == [{"users": ["ana"], "variant": "on"}]


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        (deep_objects(5_000), "nested deeper than 32 levels."),
        ('[{"name": "a", "value": 1e999}]', "[0].value: the number is too large"),
        ('[{"name": "a", "value": "\\u0000"}]', "[0].value: the text contains a NUL"),
        ('[{"name": "a", "value": NaN}]', "is not valid JSON: NaN at [0].value"),
    ],
)
def test_flag_add_form__hostile_variants__error_on_variants_nothing_saved(
    admin_client, production, variants, message
):
    response = admin_client.post(
        reverse("admin:flags_flag_add"), {"key": "copy", "kind": "json", "variants": variants}
    )

    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["variants"])
    assert message in errors
    assert not Flag.objects.exists()


def test_flag_variants_change_form__nested_5000_deep__error_nothing_saved(admin_client, production):
    copy = make_flag("copy", kind="string", variants=[{"name": "a", "value": "x"}])

    response = admin_client.post(
        reverse("admin:flags_flag_change", args=[copy.pk]),
        {"description": "", "owner": "", "variants": deep_lists(5_000)},
    )

    assert response.status_code == 200
    assert "nested deeper than 32 levels." in response.content.decode()
    copy.refresh_from_db()
    assert copy.variants == [{"name": "a", "value": "x"}]


def test_flag_evaluate_page__context_nested_5000_deep__form_error(admin_client, flag, production):
    response = admin_client.get(
        reverse("admin:flags_flag_evaluate", args=[flag.pk]),
        {"environment": production.pk, "targeting_key": "ana", "context": deep_objects(5_000)},
    )

    assert response.status_code == 200
    assert "nested deeper than 32 levels." in response.content.decode()


@pytest.mark.parametrize(
    ("guardrails", "message"),
    [
        (deep_objects(5_000), "guardrails: nested deeper than 32 levels."),
        ('{"limit": ' + "9" * 400 + "}", "guardrails.limit: the integer 9999"),
        ('{"topics": ["\\ud800"]}', "guardrails.topics[0]: the text contains a lone surrogate"),
    ],
)
def test_new_version_form__hostile_guardrails__error_on_field_nothing_created(
    admin_client, agent, guardrails, message
):
    current = factories.create_version(agent)

    response = admin_client.post(
        reverse("admin:agentconfig_agent_new_version", args=[agent.pk]),
        {
            "system_prompt": current.system_prompt,
            "model": current.model,
            "temperature": "0.2",
            "max_tokens": "800",
            "tools": "",
            "guardrails": guardrails,
            "change_description": "Deeper guardrails.",
            "derived_from": str(current.pk),
        },
    )

    assert response.status_code == 200
    assert any(message in error for error in response.context["form"].errors["guardrails"])
    assert AgentVersion.objects.count() == 1


# --- canary plans and policies --------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"steps": "nan"},
        {"steps": "1e308,inf"},
        {"steps": "1,5,1e308"},
        {"percent": "nan"},
        {"percent": "inf"},
        {"percent": "1e308"},
        {"percent": float("nan")},
        {"steps": "1,5", "bake_minutes": 10**30},
    ],
)
def test_start_canary__junk_plan__validation_error_nothing_written(agent, production, options):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    logged = ReleaseLogEntry.objects.count()

    with pytest.raises(ValidationError) as refused:
        start(v2, production, **options)

    assert set(refused.value.message_dict) <= {"steps", "percent", "bake_minutes"}
    assert not CanaryRollout.objects.exists()
    assert ReleaseLogEntry.objects.count() == logged


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"mode": "steps", "steps": "nan"}, "steps"),
        ({"mode": "steps", "steps": "1e308,inf"}, "steps"),
        ({"mode": "percent", "percent": "nan"}, "percent"),
        ({"mode": "percent", "percent": "1e308"}, "percent"),
        ({"mode": "steps", "steps": "1,5", "bake_minutes": "9" * 30}, "bake_minutes"),
    ],
)
def test_canary_start_page__junk_plan__error_on_the_field_nothing_written(
    admin_client, agent, production, data, field
):
    production.required_approvals = 0
    production.save()
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)

    for name in ("start", "start_apply"):
        response = admin_client.post(
            reverse(f"admin:agentconfig_agent_canary_{name}", args=[agent.pk, "production"]),
            {"version": str(v2.pk), "reason": "try it", **data},
        )

        assert response.status_code == 200
        assert field in response.context["form"].errors
    assert not CanaryRollout.objects.exists()


VALID_POLICY = {
    **factories.CANARY_POLICY_FORM,
    "max_latency_ratio": "",
    "reason": "red-team values",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("default_steps", "nan"),
        ("default_steps", "1e308,inf"),
        ("default_steps", "1,2,inf"),
        ("bake_minutes", "99999999999"),
        ("bake_minutes", "9" * 30),
        ("max_duration_minutes", "99999999999"),
        ("min_regression", "inf"),
        ("power", "nan"),
        ("srm_tolerance", "-inf"),
        ("latency_quantile", "1e308"),
        ("max_error_increase", "nan"),
        ("rollback_ratio", "nan"),
        ("rollback_ratio", "inf"),
        ("rollback_ratio", "1e308"),
        ("margin", "1e200"),
        ("rollback_confidence", "nan"),
        ("promote_confidence", "-inf"),
        ("max_score_drop", "1e308"),
        ("max_score_drop", "nan"),
        ("max_latency_ratio", "1e200"),
        ("max_latency_ratio", "inf"),
    ],
)
def test_canary_policy_form__junk_value__error_on_the_field_nothing_saved(
    admin_client, production, field, value
):
    response = admin_client.post(
        reverse("admin:deployments_canarypolicy_add"),
        {**VALID_POLICY, "environment": str(production.pk), field: value},
    )

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not CanaryPolicy.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rollback_ratio", "nan", "give a number; got 'nan'."),
        ("max_latency_ratio", 1e200, "must be between 1 and 100; got 1e+200."),
        ("bake_minutes", 10**12, "must be between 0 and 10,080; got 1000000000000."),
        ("default_steps", "1e308,inf", "must be more than 0 and less than 100"),
    ],
)
def test_set_canary_policy__junk_value__validation_error_names_the_field(
    production, field, value, message
):
    values = {k: v for k, v in VALID_POLICY.items() if k != "reason"}
    values.update(
        bake_minutes=30, max_duration_minutes=1440, max_score_drop=None, max_latency_ratio=None
    )
    values[field] = value
    admin = factories.UserFactory(is_staff=True, is_superuser=True)

    with pytest.raises(ValidationError) as refused:
        set_canary_policy(environment=production, values=values, actor=Actor.of(admin), reason="r")

    assert any(message in m for m in refused.value.message_dict[field])
    assert not CanaryPolicy.objects.exists()


# --- files: agent files and suite files ------------------------------------------------------

AGENT_FILE = """\
slug: support-bot
name: Support bot
config:
  model: gpt-4o-mini
  temperature: 0.2
  max_tokens: 800
  guardrails: {guardrails}
  system_prompt: Be helpful.
"""


@pytest.mark.parametrize(
    ("guardrails", "location", "message"),
    [
        (deep_lists(5_000), "line 7, column ", "nested deeper than 40 levels."),
        ("{a: " * 5_000 + "}" * 5_000, "line 7, column ", "nested deeper than 40 levels."),
        ("{day: 2024-02-30}", "", "a value cannot be read: day is out of range for month"),
        ("{n: " + "9" * 5_000 + "}", "", "a value cannot be read: Exceeds the limit"),
    ],
)
def test_agent_file__hostile_yaml__problem_with_location(guardrails, location, message):
    with pytest.raises(AgentFileError) as refused:
        parse_agent_file(AGENT_FILE.format(guardrails=guardrails), file_stem="support-bot")

    (problem,) = refused.value.problems
    assert problem.location.startswith(location) and message in problem.message


def test_agent_file__block_nesting_100_deep__problem_not_crash():
    deep = "".join("  " * (i + 2) + "a:\n" for i in range(100)) + "  " * 102 + "x\n"
    text = AGENT_FILE.format(guardrails="").replace("  guardrails: \n", "  guardrails:\n" + deep)

    with pytest.raises(AgentFileError) as refused:
        parse_agent_file(text, file_stem="support-bot")

    assert "nested deeper than 40 levels." in str(refused.value)


def test_sync_agents__deeply_nested_file__error_names_the_file_nothing_written(tmp_path):
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "support-bot.yaml").write_text(AGENT_FILE.format(guardrails=deep_lists(5_000)))

    with pytest.raises(SyncError) as refused:
        sync_agents(path=folder, actor=Actor.system("tests"))

    (error,) = refused.value.errors
    assert error.startswith(f"{folder / 'support-bot.yaml'}: line 7, column ")
    assert "nested deeper than 40 levels." in error
    assert not AgentVersion.objects.exists()


SUITE_FILE = """\
agent: support-bot
suites:
  smoke:
    cases:
      - id: deep
        input: {input}
        golden_answer: yes
"""


@pytest.mark.parametrize(
    "input_",
    [
        deep_lists(5_000),
        "{a: " * 5_000 + "}" * 5_000,
        "&a [*a, *a]",
    ],
    ids=["lists", "mappings", "alias"],
)
def test_sync_evals__deeply_nested_cases__error_names_the_file_nothing_written(
    tmp_path, agent, input_
):
    folder = tmp_path / "evals"
    folder.mkdir()
    (folder / "support-bot.yaml").write_text(SUITE_FILE.format(input=input_))

    with pytest.raises(SyncError) as refused:
        sync_evals(path=folder, actor=Actor.system("tests"))

    (error,) = refused.value.errors
    assert error.startswith(f"{folder / 'support-bot.yaml'}: line 6, column ")
    assert EvaluationSuite.objects.count() == 0 and SuiteVersion.objects.count() == 0


def test_suite_add_form__deeply_nested_cases__form_error_nothing_written(admin_client, agent):
    response = post_add_suite(
        admin_client, agent, "- id: a\n  input: " + deep_lists(5_000) + "\n  golden_answer: g\n"
    )

    assert response.status_code == 200
    assert "nested deeper than 40 levels." in response.content.decode()
    assert not EvaluationSuite.objects.exists()


# --- the lean WSGI path (what the production server runs) -----------------------------------


def wsgi_call(path: str, key: str, *, method: str = "GET", body: bytes = b"", **headers: str):
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "HTTP_HOST": "testserver",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **headers,
    }
    setup_testing_defaults(environ)
    started: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        started["status"] = int(status.split()[0])

    result = application(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return started["status"], json.loads(content)


@pytest.mark.django_db(transaction=True)
def test_lean_wsgi_path__deep_bodies_and_header__400_in_each_format():
    # Given a deployed agent (committed: the WSGI path manages its own connections)
    _, production = factories.live_agent()
    key = factories.create_api_key(production)[1]
    deep = deep_lists(100_000).encode()

    # When / Then
    status, body = wsgi_call("/api/v1/agents/support-bot/outcomes", key, method="POST", body=deep)
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    status, body = wsgi_call(
        "/api/v1/agents/support-bot/config", key, **{CONTEXT: '{"a": ' + deep_lists(4_000) + "}"}
    )
    assert (status, body["error"]["message"]) == (400, DEEP_HEADER)
    status, body = wsgi_call("/ofrep/v1/evaluate/flags", key, method="POST", body=deep)
    assert (status, body["errorCode"]) == (400, "PARSE_ERROR")
    assert OutcomeEventId.objects.count() == 0


# --- fuzzing through the test client ---------------------------------------------------------

FUZZ = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.text(st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=3),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
hostile_texts = st.one_of(
    json_values.map(json.dumps),
    st.integers(0, 3_000).map(deep_lists),
    st.integers(0, 3_000).map(deep_objects),
    st.binary(max_size=100).map(lambda raw: raw.decode("latin-1")),
    st.text(alphabet='[]{}",:0123456789.eE-+\\u NaInfity', max_size=100),
)


def _event_shaped(version_id: str) -> st.SearchStrategy[str]:
    fields = st.fixed_dictionaries(
        {"event_id": st.text(max_size=5), "version_id": st.just(version_id), "ok": st.booleans()},
        optional={
            "user_id": st.text(max_size=5) | st.integers(),
            "latency_ms": st.floats() | st.integers(),
            "score": st.floats() | st.integers(),
            "timestamp": st.floats() | st.text(max_size=30) | st.integers(),
            "extra": json_values,
        },
    )
    return st.lists(fields, max_size=3).map(lambda events: json.dumps({"events": events}))


@FUZZ
@given(data=st.data())
def test_fuzz__outcomes_body__never_5xx_and_nothing_written_unless_accepted(
    client, stable, api_key, data
):
    body = data.draw(st.one_of(hostile_texts, _event_shaped(str(stable.id))))
    before = OutcomeEventId.objects.count()

    response = post_outcomes(client, api_key, body.encode("utf-8", "surrogatepass"))

    assert response.status_code in (202, 400, 413), response.content
    if response.status_code != 202:
        assert OutcomeEventId.objects.count() == before


@FUZZ
@given(header=hostile_texts.map(lambda text: text.encode("utf-8", "replace").decode("latin-1")))
def test_fuzz__context_header__never_5xx(client, stable, api_key, header):
    response = config(client, api_key, **{CONTEXT: header})

    assert response.status_code in (200, 400), response.content


@FUZZ
@given(body=st.one_of(hostile_texts, json_values.map(lambda v: json.dumps({"context": v}))))
def test_fuzz__ofrep_body__never_5xx_and_ofrep_error_format(client, production, api_key, body):
    response = ofrep(client, api_key, body.encode("utf-8", "surrogatepass"))

    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert json.loads(response.content)["errorCode"] in ("PARSE_ERROR", "INVALID_CONTEXT")
