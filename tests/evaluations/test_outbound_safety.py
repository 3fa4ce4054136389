"""Evaluation runs call only allowed endpoints, with allowed keys; remote text reaches only admins.

The red team's findings, each as a test: a policy pointing at loopback, a private address
or the metadata service; a policy naming SECRET_KEY or DATABASE_URL as its key variable;
an internal server's reply shown to editors. A real listener on 127.0.0.1 counts the
connections that reach it: there must be none.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from agentconfig.core.actors import Actor
from evaluations.endpoint import EndpointRefused
from evaluations.models import CaseResult, EvaluationPolicy, EvaluationRun, RunStatus
from evaluations.runner import MAX_RESPONSE_BYTES, execute_run
from evaluations.services import suites
from evaluations.services.policies import set_evaluation_policy
from tests import factories
from tests.evaluations.chat_server import Reply, error
from tests.evaluations.helpers import ACTOR, case, make_suite, run_now
from tests.factories import login, member
from tests.listener import Listener

pytestmark = pytest.mark.django_db

# What the policy points at, and what the refusal says. The listener's port on
# 127.0.0.1 is not allow-listed (eval_settings lists only the chat server's port).
TARGETS = {
    "loopback over http": ("http://{listener}/v1", "plain http is accepted only for the hosts"),
    "loopback": ("https://{listener}/v1", "127.0.0.1 is a loopback address"),
    "loopback, IPv4-mapped": (
        "https://[::ffff:127.0.0.1]:{port}/v1",
        "loopback address (IPv4-mapped form of 127.0.0.1)",
    ),
    "loopback, decimal": ("https://2130706433:{port}/v1", "(127.0.0.1) is a loopback address"),
    "private": ("https://10.0.0.5/v1", "10.0.0.5 is a private address"),
    "metadata": (
        "https://169.254.169.254/latest/",
        "169.254.169.254 is a link-local address (cloud metadata); outbound calls go only to "
        "public addresses",
    ),
    "metadata over http": ("http://169.254.169.254/latest/", "plain http is accepted only"),
    "ftp": ("ftp://models.example.com/v1", "ftp:// is not accepted"),
}
SECRET_NAMES = ["SECRET_KEY", "DATABASE_URL"]


@pytest.fixture
def listener():
    with Listener() as server:
        yield server


@pytest.fixture
def suite(agent):
    return make_suite(agent, [case("one", "q?", scorer="contains", golden="answer")])


def _url(target: str, listener: Listener) -> str:
    return TARGETS[target][0].format(listener=listener.host_port, port=listener.port)


# --- base URLs -------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_start_run__policy_row_pointing_inside__refused_when_queued_nothing_connects(
    agent, production, suite, eval_settings, chat_server, listener, target
):
    # Given a policy row saved before the outbound rules (the service refuses it now)
    EvaluationPolicy.objects.create(environment=production, base_url=_url(target, listener))

    # When
    with pytest.raises(EndpointRefused) as refused:
        suites.start_run(
            version=factories.create_version(agent),
            suite_version=suite,
            environment=production,
            actor=ACTOR,
            enqueue=False,
        )

    # Then
    assert TARGETS[target][1] in refused.value.message
    assert "the evaluation policy of production" in refused.value.message
    assert not EvaluationRun.objects.exists()
    assert listener.accepted == 0 and chat_server.requests == []


@pytest.mark.parametrize("target", TARGETS)
def test_worker__run_recorded_with_an_inside_url__fails_before_any_connection(
    agent, suite, eval_settings, chat_server, listener, target
):
    # Given a run queued before the rules, whose recorded endpoint points inside
    run = suites.start_run(
        version=factories.create_version(agent), suite_version=suite, actor=ACTOR, enqueue=False
    )
    EvaluationRun.objects.filter(pk=run.pk).update(base_url=_url(target, listener))

    # When the worker executes it
    finished = execute_run(run.pk)

    # Then it failed, saying why, and nothing was connected to or recorded
    assert finished.status == RunStatus.FAILED and finished.score is None
    assert finished.failure.startswith("not started: The evaluation endpoint ")
    assert TARGETS[target][1] in finished.failure
    assert listener.accepted == 0 and chat_server.requests == []
    assert not CaseResult.objects.filter(run=run).exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:6379/", "plain http is accepted only"),
        ("https://[::1]:6379/", "::1 is a loopback address"),
        ("https://169.254.169.254/latest/", "(cloud metadata)"),
        ("ftp://models.example.com/", "ftp:// is not accepted"),
        ("https://user:pw@models.example.com/v1", "the URL contains credentials"),
    ],
)
def test_set_evaluation_policy__base_url_not_allowed__refused_naming_the_field(
    production, url, reason
):
    with pytest.raises(ValidationError) as refused:
        set_evaluation_policy(
            environment=production,
            values={"base_url": url},
            actor=Actor.of(member("ana", "Admins")),
            reason="point at the model server",
        )

    assert reason in " ".join(refused.value.message_dict["base_url"])
    assert not EvaluationPolicy.objects.exists()


def test_policy_form__metadata_base_url__error_on_the_field(production):
    response = login(member("ana", "Admins")).post(
        reverse("admin:evaluations_evaluationpolicy_add"),
        {
            "environment": str(production.pk),
            "tolerance": "0.05",
            "base_url": "http://169.254.169.254/latest/",
            "api_key_env": "",
            "reason": "point at the model server",
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "plain http is accepted only" in " ".join(errors["base_url"])
    assert not EvaluationPolicy.objects.exists()


# --- key variables -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_set_evaluation_policy__server_secret_as_key_variable__refused(production, name):
    with pytest.raises(ValidationError) as refused:
        set_evaluation_policy(
            environment=production,
            values={"api_key_env": name},
            actor=Actor.of(member("ana", "Admins")),
            reason="use another key",
        )

    message = " ".join(refused.value.message_dict["api_key_env"])
    assert f"{name} is not one of the variables an evaluation key may be read from" in message
    assert "EVAL_API_KEY_NAMES: EVAL_API_KEY" in message
    assert not EvaluationPolicy.objects.exists()


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_policy_form__server_secret_as_key_variable__error_on_the_field(production, name):
    response = login(member("ana", "Admins")).post(
        reverse("admin:evaluations_evaluationpolicy_add"),
        {
            "environment": str(production.pk),
            "tolerance": "0.05",
            "api_key_env": name,
            "reason": "use another key",
        },
    )

    assert response.status_code == 200
    assert "api_key_env" in response.context["adminform"].form.errors
    assert not EvaluationPolicy.objects.exists()


def test_policy_form__saved_name_no_longer_allowed__shown_as_such_not_silently_changed(production):
    EvaluationPolicy.objects.create(environment=production, api_key_env="SECRET_KEY")
    policy = EvaluationPolicy.objects.get()

    response = login(member("ana", "Admins")).get(
        reverse("admin:evaluations_evaluationpolicy_change", args=[policy.pk])
    )

    assert response.status_code == 200
    assert b'<option value="SECRET_KEY" selected>' in response.content
    assert b"SECRET_KEY (not allowed: not in EVAL_API_KEY_NAMES)" in response.content


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_start_run__policy_row_naming_a_server_secret__refused_nothing_sent(
    agent, production, suite, eval_settings, chat_server, monkeypatch, name
):
    # Given a policy row saved before the allow-list, naming a variable the worker holds
    monkeypatch.setenv(name, "the-server-secret")
    EvaluationPolicy.objects.create(
        environment=production, base_url=chat_server.base_url, api_key_env=name
    )

    with pytest.raises(EndpointRefused) as refused:
        suites.start_run(
            version=factories.create_version(agent),
            suite_version=suite,
            environment=production,
            actor=ACTOR,
            enqueue=False,
        )

    assert f"{name} is not one of the variables" in refused.value.message
    assert "the-server-secret" not in refused.value.message
    assert chat_server.requests == []


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_worker__run_recorded_with_a_server_secret_as_key__fails_nothing_sent(
    agent, suite, eval_settings, chat_server, monkeypatch, name
):
    # Given a run queued before the allow-list, whose key variable is a server secret
    monkeypatch.setenv(name, "the-server-secret")
    run = suites.start_run(
        version=factories.create_version(agent), suite_version=suite, actor=ACTOR, enqueue=False
    )
    EvaluationRun.objects.filter(pk=run.pk).update(api_key_env=name)

    # When
    finished = execute_run(run.pk)

    # Then nothing reached the endpoint, so the secret went nowhere
    assert finished.status == RunStatus.FAILED
    assert finished.failure.startswith(f"not started: {name} is not one of the variables")
    assert "the-server-secret" not in finished.failure
    assert chat_server.requests == []


def test_run__allowed_local_server_and_key_variable__still_works(
    agent, staging, suite, eval_settings, chat_server, monkeypatch
):
    # Given a policy pointing at the allow-listed local model server, with an allowed key
    eval_settings.EVAL_API_KEY_NAMES = ["EVAL_API_KEY", "EVAL_API_KEY_STAGING"]
    monkeypatch.setenv("EVAL_API_KEY_STAGING", "staging-key")
    set_evaluation_policy(
        environment=staging,
        values={"base_url": chat_server.base_url, "api_key_env": "EVAL_API_KEY_STAGING"},
        actor=Actor.of(member("ana", "Admins")),
        reason="staging runs on the local model server",
    )

    # When
    run = run_now(factories.create_version(agent), suite, environment=staging)

    # Then
    assert run.status == RunStatus.COMPLETED and run.score == 1.0
    assert run.base_url == chat_server.base_url
    assert [h["authorization"] for h in chat_server.headers] == ["Bearer staging-key"]
    assert all(h["accept-encoding"] == "identity" for h in chat_server.headers)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(raw=b"x" * (MAX_RESPONSE_BYTES + 1)), "more than the 4,194,304 read"),
        (Reply(headers={"Content-Encoding": "gzip"}), "the server compressed its response"),
    ],
)
def test_run__reply_the_client_does_not_read__case_error_not_retried(
    agent, suite, eval_settings, chat_server, llm, reply, reason
):
    llm.queue = [reply]

    run = run_now(factories.create_version(agent), suite)

    result = CaseResult.objects.get(run=run)
    assert result.error.startswith("model: refused: The evaluation endpoint http://127.0.0.1:")
    assert reason in result.error
    assert len(chat_server.requests) == 1  # a refusal is not retried


# --- what the endpoint said ----------------------------------------------------------


@pytest.fixture
def failed_run(agent, suite, eval_settings, llm):
    """A run whose endpoint answered HTTP 400 with a long body holding a script."""
    body = "<script>alert('pwned')</script> internal banner " + "x" * 2000
    llm.hook = lambda request: error(400, body)
    return run_now(factories.create_version(agent), suite)


def test_run__endpoint_error_body__kept_apart_and_truncated(failed_run):
    result = CaseResult.objects.get(run=failed_run)

    assert result.error.startswith("model: HTTP 400 from http://127.0.0.1:")
    assert result.error.endswith("the endpoint answered with an error")
    assert "script" not in result.error and "banner" not in result.error
    assert "<script>alert('pwned')</script>" in result.error_detail
    assert len(result.error_detail) <= 300
    assert "script" not in failed_run.failure


def test_run_page__editor__sees_the_status_not_the_body(failed_run):
    editor = member("eddie", "Editors")

    response = login(editor).get(failed_run.get_absolute_url())

    assert response.status_code == 200
    content = response.content.decode()
    assert "HTTP 400 from" in content and "the endpoint answered with an error" in content
    assert "pwned" not in content and "banner" not in content
    assert "shown to those who may see the evaluation policy" in content


@pytest.mark.parametrize(
    "permission", ["evaluations.view_evaluationpolicy", "evaluations.change_evaluationpolicy"]
)
def test_run_page__who_may_see_the_policy__sees_the_body_truncated_and_escaped(
    failed_run, permission
):
    viewer = member("vic", "Editors", permissions=(permission,))

    response = login(viewer).get(failed_run.get_absolute_url())

    content = response.content.decode()
    assert "what the endpoint answered" in content
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in content
    assert "<script>alert(" not in content
    assert "x" * 300 not in content


def test_compare_page__editor_and_admin__body_only_for_the_admin(agent, suite, failed_run):
    # Given a second run to compare with
    other = run_now(factories.create_version(agent), suite)
    url = reverse("admin:evaluations_evaluationrun_compare", args=[failed_run.pk, other.pk])

    # When
    as_editor = login(member("eddie", "Editors")).get(url).content.decode()
    as_admin = login(member("ana", "Admins")).get(url).content.decode()

    # Then
    assert "pwned" not in as_editor
    assert "&lt;script&gt;alert(" in as_admin and "<script>alert(" not in as_admin
