"""The evaluation pages in the admin: render, permissions, editing cases, runs, cancel, gate."""

from __future__ import annotations

import pytest
from django.urls import reverse

from evaluations.models import (
    EvaluationPolicy,
    EvaluationRun,
    EvaluationSuite,
    GateOverride,
    RunStatus,
    SuiteVersion,
)
from evaluations.selectors import build_run_comparison
from evaluations.services import suites
from tests import factories
from tests.evaluations.helpers import (
    ACTOR,
    case,
    make_suite,
    post_add_suite,
    require_evaluation,
    run_now,
)

pytestmark = pytest.mark.django_db

VIEW_ALL = (
    "evaluations.view_evaluationsuite",
    "evaluations.view_suiteversion",
    "evaluations.view_evaluationrun",
)


@pytest.fixture
def suite_version(agent):
    return make_suite(
        agent,
        [
            case("refund", "How long?", golden="30 days"),
            case("json", "JSON?", golden="", scorer="valid_json"),
        ],
    )


def test_admin__every_list_page__renders(admin_client, suite_version, agent, eval_settings):
    run_now(factories.create_version(agent), suite_version)
    for model in (
        "evaluationsuite",
        "suiteversion",
        "evaluationrun",
        "evaluationpolicy",
        "gateoverride",
    ):
        response = admin_client.get(reverse(f"admin:evaluations_{model}_changelist"))
        assert response.status_code == 200, model
    for model in ("evaluationsuite", "evaluationrun", "evaluationpolicy", "gateoverride"):
        response = admin_client.get(reverse(f"admin:evaluations_{model}_add"))
        assert response.status_code == 200, model


def test_suite_list__many_suites__one_query_for_the_rows(
    admin_client, agent, django_assert_max_num_queries
):
    for slug in ("a", "b", "c", "d"):
        make_suite(agent, [case("x")], slug=slug)

    with django_assert_max_num_queries(8):
        response = admin_client.get(reverse("admin:evaluations_evaluationsuite_changelist"))

    assert response.status_code == 200 and response.content.decode().count(">v1</a>") == 4


def test_suite_page__versions_listed_with_the_edit_button(admin_client, suite_version):
    response = admin_client.get(
        reverse("admin:evaluations_evaluationsuite_change", args=[suite_version.suite.pk])
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert "Edit cases (creates a new version)" in content and ">v1</a>" in content


def test_new_suite_version__edited_cases__creates_v2_and_keeps_v1(
    client_with_permissions, suite_version
):
    # Given
    client = client_with_permissions(
        "evaluations.view_evaluationsuite", "evaluations.add_suiteversion"
    )
    url = reverse("admin:evaluations_evaluationsuite_new_version", args=[suite_version.suite.pk])
    form = client.get(url)
    assert form.status_code == 200
    prefilled = form.context["form"].initial["cases"]
    assert "id: refund" in prefilled and "golden_answer: 30 days" in prefilled

    # When
    response = client.post(
        url,
        {
            "cases": prefilled.replace("30 days", "Thirty days"),
            "change_description": "Spell it out.",
        },
    )

    # Then
    assert response.status_code == 302
    v2 = SuiteVersion.objects.get(suite=suite_version.suite, version_number=2)
    assert v2.source == "browser" and v2.change_description == "Spell it out."
    assert v2.cases.get(key="refund").golden_answer == "Thirty days"
    assert suite_version.cases.get(key="refund").golden_answer == "30 days"


def test_new_suite_version__unchanged_or_invalid__errors_on_the_form(
    client_with_permissions, suite_version
):
    client = client_with_permissions(
        "evaluations.view_evaluationsuite", "evaluations.add_suiteversion"
    )
    url = reverse("admin:evaluations_evaluationsuite_new_version", args=[suite_version.suite.pk])
    prefilled = client.get(url).context["form"].initial["cases"]

    unchanged = client.post(url, {"cases": prefilled, "change_description": "nothing"})
    invalid = client.post(
        url, {"cases": "- id: x\n  input: q\n  scorer: regexp\n", "change_description": "typo"}
    )

    assert (
        unchanged.status_code == 200
        and "no changes compared to smoke v1" in unchanged.content.decode()
    )
    content = invalid.content.decode()
    assert (
        invalid.status_code == 200
        and "cases[1].scorer: &#x27;regexp&#x27; is not a scorer" in content
    )
    assert SuiteVersion.objects.count() == 1


def test_new_suite_version__without_permission__403_names_it(
    client_with_permissions, suite_version
):
    client = client_with_permissions("evaluations.view_evaluationsuite")

    response = client.get(
        reverse("admin:evaluations_evaluationsuite_new_version", args=[suite_version.suite.pk])
    )

    assert response.status_code == 403
    assert "evaluations.add_suiteversion" in response.content.decode()


def test_add_suite__with_cases__suite_and_v1_created(admin_client, agent):
    response = post_add_suite(
        admin_client,
        agent,
        "- id: a\n  input: q\n  golden_answer: g\n",
        name="Release",
        change_description="First.",
    )

    assert response.status_code == 302
    suite = EvaluationSuite.objects.get(slug="release")
    assert suite.versions.get().case_count == 1


def test_add_suite__invalid_cases__nothing_created(admin_client, agent):
    response = post_add_suite(admin_client, agent, "- input: q\n")

    assert response.status_code == 200
    assert "cases[1].golden_answer: is required." in response.content.decode()
    assert not EvaluationSuite.objects.exists()


def test_suite_version_page__cases_and_run_form(admin_client, suite_version):
    response = admin_client.get(suite_version.get_absolute_url())

    content = response.content.decode()
    assert response.status_code == 200
    assert "<code>refund</code>" in content and "Queue the run" in content


def test_start_run_from_the_suite_version__queued_and_redirected(
    client_with_permissions, suite_version, agent, eval_settings, chat_server
):
    client = client_with_permissions(
        "evaluations.view_suiteversion", "evaluations.add_evaluationrun"
    )
    version = factories.create_version(agent)

    response = client.post(
        reverse("admin:evaluations_suiteversion_run", args=[suite_version.pk]),
        {"suite_version": suite_version.pk, "version": version.pk, "environment": ""},
    )

    run = EvaluationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert run.status == RunStatus.QUEUED and run.task_id
    assert chat_server.requests == []  # the request never waits for the model


def test_start_run__no_endpoint__form_says_what_to_set(
    client_with_permissions, suite_version, agent, no_endpoint
):
    client = client_with_permissions(
        "evaluations.view_suiteversion", "evaluations.add_evaluationrun"
    )

    response = client.post(
        reverse("admin:evaluations_suiteversion_run", args=[suite_version.pk]),
        {"suite_version": suite_version.pk, "version": factories.create_version(agent).pk},
    )

    assert response.status_code == 200
    assert "set EVAL_API_BASE_URL" in response.content.decode()
    assert not EvaluationRun.objects.exists()


def test_run_page__queued__progress_reload_and_cancel_button(
    client_with_permissions, suite_version, agent, eval_settings
):
    client = client_with_permissions(
        "evaluations.view_evaluationrun", "evaluations.change_evaluationrun"
    )
    run = suites.start_run(
        version=factories.create_version(agent), suite_version=suite_version, actor=ACTOR
    )

    response = client.get(run.get_absolute_url())

    content = response.content.decode()
    assert response.status_code == 200
    assert "0 / 2 cases" in content and 'http-equiv="refresh"' in content
    assert reverse("admin:evaluations_evaluationrun_cancel", args=[run.pk]) in content


def test_run_page__viewer_without_change_permission__no_cancel_button(
    client_with_permissions, suite_version, agent, eval_settings
):
    client = client_with_permissions("evaluations.view_evaluationrun")
    run = suites.start_run(
        version=factories.create_version(agent), suite_version=suite_version, actor=ACTOR
    )

    content = client.get(run.get_absolute_url()).content.decode()

    assert "Cancel the run" not in content


def test_cancel__confirm_then_post__run_cancelled(
    client_with_permissions, suite_version, agent, eval_settings
):
    client = client_with_permissions(
        "evaluations.view_evaluationrun", "evaluations.change_evaluationrun"
    )
    run = suites.start_run(
        version=factories.create_version(agent), suite_version=suite_version, actor=ACTOR
    )
    url = reverse("admin:evaluations_evaluationrun_cancel", args=[run.pk])

    confirmation = client.get(url)
    assert (
        confirmation.status_code == 200 and "Yes, cancel the run" in confirmation.content.decode()
    )
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED  # GET changes nothing

    response = client.post(url)

    run.refresh_from_db()
    assert response.status_code == 302 and run.status == RunStatus.CANCELLED
    assert run.cancelled_by_label and run.cancel_requested_at


def test_cancel__without_permission__403(
    client_with_permissions, suite_version, agent, eval_settings
):
    client = client_with_permissions("evaluations.view_evaluationrun")
    run = suites.start_run(
        version=factories.create_version(agent), suite_version=suite_version, actor=ACTOR
    )

    response = client.post(reverse("admin:evaluations_evaluationrun_cancel", args=[run.pk]))

    run.refresh_from_db()
    assert response.status_code == 403 and run.status == RunStatus.QUEUED
    assert "evaluations.change_evaluationrun" in response.content.decode()


def test_cancel__finished_run__error_message_not_success(
    admin_client, suite_version, agent, eval_settings
):
    run = run_now(factories.create_version(agent), suite_version)

    response = admin_client.post(
        reverse("admin:evaluations_evaluationrun_cancel", args=[run.pk]), follow=True
    )

    assert "Not cancelled: the run is already completed." in response.content.decode()


def test_run_page__finished__answers_rationales_and_escaped_output(
    admin_client, suite_version, agent, eval_settings, llm
):
    # Given a model that answers with markup
    llm.answers["How long?"] = "<script>alert('x')</script> 30 days"
    run = run_now(factories.create_version(agent), suite_version)

    # When
    response = admin_client.get(run.get_absolute_url())

    # Then
    content = response.content.decode()
    assert response.status_code == 200 and "http-equiv" not in content
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; 30 days" in content
    assert "<script>alert(" not in content
    assert "Matches the golden answer." in content


def test_run_page__without_view_permission__403(
    client_with_permissions, suite_version, agent, eval_settings
):
    run = suites.start_run(
        version=factories.create_version(agent), suite_version=suite_version, actor=ACTOR
    )

    response = client_with_permissions().get(run.get_absolute_url())

    assert response.status_code == 403


def test_compare__two_runs__regressions_first_and_escaped(admin_client, agent, eval_settings, llm):
    # Given v1 answers every case right, v2 gets "b" wrong and its answer has markup
    suite_version = make_suite(
        agent, [case(k, f"{k}?", golden="yes", scorer="contains") for k in ("a", "b", "c")]
    )
    v1 = factories.create_version(agent, model="one")
    v2 = factories.create_version(agent, model="two")
    for k in ("a", "b", "c"):
        llm.answers[("one", f"{k}?")] = "yes"
        llm.answers[("two", f"{k}?")] = "yes"
    llm.answers[("two", "b?")] = "<b>no</b>"
    baseline, candidate = run_now(v1, suite_version), run_now(v2, suite_version)

    # When
    comparison = build_run_comparison(candidate, baseline)
    response = admin_client.get(
        reverse("admin:evaluations_evaluationrun_compare", args=[candidate.pk, baseline.pk])
    )

    # Then
    assert [row["key"] for row in comparison["rows"]] == ["b", "a", "c"]
    assert (
        comparison["rows"][0]["change"] == "regression" and comparison["rows"][0]["delta"] == -1.0
    )
    assert comparison["regressions"] == 1 and comparison["unchanged"] == 2
    content = response.content.decode()
    assert response.status_code == 200
    assert "&lt;b&gt;no&lt;/b&gt;" in content and "<b>no</b>" not in content
    assert content.index("<code>b</code>") < content.index("<code>a</code>")


def test_gate_page__regression__shows_verdict_and_records_override(
    client_with_permissions, agent, production, eval_settings, llm
):
    # Given a candidate that regressed in production
    suite_version = make_suite(agent, [case("a", "a?", golden="yes", scorer="contains")])
    stable, candidate = (
        factories.create_version(agent, model="one"),
        factories.create_version(agent, model="two"),
    )
    factories.deploy(stable, production)
    llm.answers[("one", "a?")] = "yes"
    run_now(stable, suite_version)
    run_now(candidate, suite_version)
    require_evaluation(production, tolerance=0.0)
    client = client_with_permissions("evaluations.override_gate")
    url = reverse("admin:evaluations_gateoverride_add")
    params = {"agent": "support-bot", "version": "2", "environment": "production"}

    # When
    page = client.get(url, params)

    # Then
    content = page.content.decode()
    assert page.status_code == 200 and "Evaluation regression" in content
    assert "ac-eval-compare" in content and "gate_override_form" in content

    # When the reviewer overrides
    response = client.post(url, {**params, "reason": "The case tests a retired policy."})

    # Then
    assert response.status_code == 302
    override = GateOverride.objects.get()
    assert override.version == candidate and override.reason == "The case tests a retired policy."


def test_gate_page__without_override_permission__403(client_with_permissions, agent, production):
    client = client_with_permissions("evaluations.view_gateoverride")

    response = client.get(reverse("admin:evaluations_gateoverride_add"))

    assert response.status_code == 403


def test_policy_admin__key_variable_name__saved_and_never_a_key(admin_client, production, settings):
    settings.EVAL_API_KEY_NAMES = ["EVAL_API_KEY", "EVAL_API_KEY_PRODUCTION"]

    response = admin_client.post(
        reverse("admin:evaluations_evaluationpolicy_add"),
        {
            "environment": production.pk,
            "required": "on",
            "tolerance": "0.05",
            "suite_slug": "smoke",
            "base_url": "https://llm.internal.example/v1",
            "api_key_env": "EVAL_API_KEY_PRODUCTION",
            "judge_model": "",
            "judge_prompt": "",
            "reason": "gate production on the smoke suite",
        },
    )

    assert response.status_code == 302
    policy = EvaluationPolicy.objects.get()
    assert policy.required and policy.api_key_env == "EVAL_API_KEY_PRODUCTION"


def test_policy_admin__key_pasted_instead_of_a_name__refused(admin_client, production):
    response = admin_client.post(
        reverse("admin:evaluations_evaluationpolicy_add"),
        {
            "environment": production.pk,
            "tolerance": "0.05",
            "api_key_env": "sk-proj-abc123/xyz",
            "reason": "r",
        },
    )

    assert response.status_code == 200
    assert not EvaluationPolicy.objects.exists()
