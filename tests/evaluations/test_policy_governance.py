"""The evaluation gate's policy is governed: admins only, with a reason, recorded in the audit."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden
from agentconfig.models import AuditAction, AuditRecord
from evaluations.models import EvaluationPolicy
from evaluations.services.policies import (
    NO_POLICY_STATE,
    evaluation_policy_state,
    set_evaluation_policy,
)
from tests import factories
from tests.factories import login, member

pytestmark = pytest.mark.django_db

GATE = {"required": True, "tolerance": 0.05, "suite_slug": "smoke"}


@pytest.fixture
def admins(people):
    return people["admin"], people["admin2"]


def _records() -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(action=AuditAction.EVALUATION_POLICY).order_by("id"))


def _set(environment, actor, values=GATE, reason="gate production", **kwargs):
    return set_evaluation_policy(
        environment=environment, values=values, actor=Actor.of(actor), reason=reason, **kwargs
    )


@pytest.mark.parametrize("role", ["Deployers", "Editors", "Reviewers"])
def test_set_evaluation_policy__not_an_admin__forbidden_and_nothing_written(production, role):
    with pytest.raises(Forbidden, match=r"evaluations\.change_evaluationpolicy"):
        _set(production, member(f"p-{role}", role))

    assert not EvaluationPolicy.objects.exists()
    assert not _records()


def test_set_evaluation_policy__no_reason__refused(production, admins):
    with pytest.raises(ValidationError) as error:
        _set(production, admins[0], reason="")

    assert "reason" in error.value.message_dict
    assert not EvaluationPolicy.objects.exists()


def test_set_evaluation_policy__first_then_turned_off__audit_before_and_after(production, admins):
    # When the gate is turned on, then off again by another admin
    _set(production, admins[0])
    _set(production, admins[1], values={"required": False}, reason="suite is being rewritten")

    # Then
    policy = EvaluationPolicy.objects.get(environment=production)
    assert (policy.required, policy.tolerance, policy.suite_slug) == (False, 0.05, "smoke")
    first, second = _records()
    assert first.before == {} and first.after["required"] is True
    assert (first.environment_id, first.subject_label) == (
        production.pk,
        "evaluation policy of production",
    )
    assert (second.before, second.after) == ({"required": True}, {"required": False})
    assert (second.actor, second.reason) == (admins[1], "suite is being rewritten")


def test_set_evaluation_policy__record_shares_the_change_transaction(production, admins):
    with pytest.raises(RuntimeError), transaction.atomic():
        _set(production, admins[0])
        raise RuntimeError("a later step failed")

    assert not EvaluationPolicy.objects.exists()
    assert not _records()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"tolerance": 2}, "tolerance"),
        ({"api_key_env": "sk-proj-abc/123"}, "api_key_env"),
        ({"suite_slug": "Not A Slug"}, "suite_slug"),
        ({"base_url": "not a url"}, "base_url"),
    ],
)
def test_set_evaluation_policy__invalid_value__refused_naming_the_field(
    production, admins, values, field
):
    with pytest.raises(ValidationError) as error:
        _set(production, admins[0], values={**GATE, **values})

    assert field in error.value.message_dict
    assert not EvaluationPolicy.objects.exists()


def test_set_evaluation_policy__saved_meanwhile__conflict(production, admins):
    _set(production, admins[1])

    with pytest.raises(Conflict, match="evaluation policy of production changed"):
        _set(production, admins[0], values={"required": False}, expected_state=NO_POLICY_STATE)

    assert EvaluationPolicy.objects.get().required is True


def test_set_evaluation_policy__state_as_seen__applied(production, admins):
    _set(production, admins[1])

    _set(
        production,
        admins[0],
        values={"tolerance": 0.1},
        expected_state=evaluation_policy_state(production),
    )

    assert EvaluationPolicy.objects.get().tolerance == 0.1


# --- the admin's form --------------------------------------------------------------------


def _post(environment, **overrides):
    return {
        "environment": str(environment.pk),
        "required": "on",
        "tolerance": "0.05",
        "suite_slug": "smoke",
        "base_url": "",
        "api_key_env": "",
        "judge_model": "",
        "judge_prompt": "",
        "reason": "gate production",
        **overrides,
    }


def test_policy_form__no_reason__error_on_the_form(production, admins):
    response = login(admins[0]).post(
        reverse("admin:evaluations_evaluationpolicy_add"), _post(production, reason="")
    )

    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    assert not EvaluationPolicy.objects.exists()


def test_policy_form__saved_through_the_service__reason_recorded(production, admins):
    response = login(admins[0]).post(
        reverse("admin:evaluations_evaluationpolicy_add"), _post(production)
    )

    assert response.status_code == 302
    [record] = _records()
    assert (record.actor, record.reason) == (admins[0], "gate production")


def test_policy_form__changed_by_someone_else_meanwhile__refusal_on_the_form_not_500(
    production, admins
):
    # Given the page was read, then another admin changed the policy
    policy = _set(production, admins[1])
    seen = evaluation_policy_state(production)
    _set(production, admins[1], values={"tolerance": 0.2}, reason="looser")

    # When
    response = login(admins[0]).post(
        reverse("admin:evaluations_evaluationpolicy_change", args=[policy.pk]),
        _post(production, required="", expected_state=seen),
    )

    # Then
    assert response.status_code == 200
    content = response.content.decode()
    assert "changed while you were editing" in content and "successfully" not in content
    assert EvaluationPolicy.objects.get().required is True


def test_policy_admin__editor__403_and_nothing_saved(production):
    response = login(member("pm", "Editors")).post(
        reverse("admin:evaluations_evaluationpolicy_add"), _post(production)
    )

    assert response.status_code == 403
    assert not EvaluationPolicy.objects.exists()


def test_policy_admin__delete__refused(admin_client, production, admins):
    policy = _set(production, admins[0])

    response = admin_client.post(
        reverse("admin:evaluations_evaluationpolicy_delete", args=[policy.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert EvaluationPolicy.objects.filter(pk=policy.pk).exists()


# --- race (PostgreSQL, threads) -------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_set_evaluation_policy__two_admins_at_once_on_the_same_page__the_second_conflicts():
    # Given two admins who read the same policy
    production = factories.environment("production")
    ana, bea = member("ana", "Admins"), member("bea", "Admins")
    _set(production, ana)
    seen = evaluation_policy_state(production)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def save(actor, tolerance: float) -> None:
        try:
            barrier.wait(timeout=10)
            _set(production, actor, values={"tolerance": tolerance}, expected_state=seen)
            outcomes.append("saved")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    # When both save at the same moment
    threads = [threading.Thread(target=save, args=args) for args in ((ana, 0.1), (bea, 0.3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then one change was made and recorded; the other was refused, not overwritten
    assert sorted(outcomes) == ["conflict", "saved"]
    first, second = _records()
    assert EvaluationPolicy.objects.get().tolerance == second.after["tolerance"]
    assert first.after["required"] is True
