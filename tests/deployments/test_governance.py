"""Governed settings: required approvals, canary policies and API keys change only by admins,
with a reason and an audit record; lowering approvals needs another admin's approval."""

from __future__ import annotations

import io
import threading

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden, ServiceError
from agentconfig.core.roles import ROLES
from agentconfig.models import AuditAction, AuditRecord
from deployments.models import (
    ApiKey,
    CanaryPolicy,
    DeploymentRequest,
    Environment,
    RequestKind,
    RequestStatus,
)
from deployments.services import environments as environment_services
from deployments.services import requests as request_services
from deployments.services.api_keys import create_api_key, revoke_api_key
from deployments.services.environments import (
    NO_POLICY_STATE,
    SettingsApprovalRequired,
    set_canary_policy,
    settings_state,
    update_environment,
)
from tests import factories
from tests.factories import login, member

pytestmark = pytest.mark.django_db

GOVERNANCE_PERMISSIONS = (
    "deployments.add_environment",
    "deployments.change_environment",
    "deployments.add_apikey",
    "deployments.change_apikey",
    "deployments.add_canarypolicy",
    "deployments.change_canarypolicy",
    "evaluations.add_evaluationpolicy",
    "evaluations.change_evaluationpolicy",
)
POLICY = {
    "default_steps": "2,10,50",
    "bake_minutes": 15,
    "margin": 1.25,
    "max_error_increase": 0.0025,
    "promote_confidence": 0.95,
    "rollback_ratio": 1.5,
    "rollback_confidence": 0.99,
    "min_regression": 0.75,
    "power": 0.8,
    "max_latency_ratio": None,
    "latency_quantile": 0.95,
    "max_score_drop": None,
    "srm_tolerance": 0.2,
    "max_duration_minutes": 1440,
    "deadline_action": "rollback",
}


@pytest.fixture
def admins(people):
    return people["admin"], people["admin2"], people["admin3"]


def _raise_to(environment: Environment, value: int, admin) -> Environment:
    return update_environment(
        environment=environment,
        actor=Actor.of(admin),
        reason="stricter for the launch",
        required_approvals=value,
    )


def _propose_lowering(environment: Environment, value: int, admin) -> DeploymentRequest:
    return request_services.propose_change(
        kind=RequestKind.SETTINGS,
        environment=environment,
        proposal={"required_approvals": value},
        actor=Actor.of(admin),
        reason="the launch is over",
    )


def _approve(change_request: DeploymentRequest, admin) -> None:
    request_services.approve_request(
        request=change_request, actor=Actor.of(admin), comment="agreed in the retro"
    )


def _records(action: AuditAction = AuditAction.ENVIRONMENT_SETTINGS) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(action=action).order_by("id"))


# --- roles -----------------------------------------------------------------------------


def test_roles__governance_permissions__held_by_admins_only(db):
    # Given the groups as the migration made them
    from django.contrib.auth.models import Group

    admins = {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name="Admins").permissions.select_related("content_type")
    }

    # Then
    for role, permissions in ROLES.items():
        assert not set(GOVERNANCE_PERMISSIONS) & set(permissions), role
    assert set(GOVERNANCE_PERMISSIONS) <= admins


# --- environment settings: who, why, audit ----------------------------------------------


@pytest.mark.parametrize("role", ["Deployers", "Editors", "Reviewers"])
def test_update_environment__not_an_admin__forbidden_and_nothing_written(production, role):
    person = member(f"someone-{role.lower()}", role)

    with pytest.raises(Forbidden, match=r"deployments\.change_environment"):
        _raise_to(production, 2, person)

    production.refresh_from_db()
    assert production.required_approvals == 1
    assert not AuditRecord.objects.exists()


def test_update_environment__no_reason__refused_and_nothing_written(production, admins):
    with pytest.raises(ValidationError) as error:
        update_environment(
            environment=production, actor=Actor.of(admins[0]), reason="  ", required_approvals=2
        )

    assert "reason" in error.value.message_dict
    production.refresh_from_db()
    assert production.required_approvals == 1
    assert not AuditRecord.objects.exists()


def test_update_environment__raise__applied_at_once_with_audit_record(production, admins):
    _raise_to(production, 3, admins[0])

    production.refresh_from_db()
    assert production.required_approvals == 3
    [record] = _records()
    assert (record.actor, record.actor_label) == (admins[0], "ana")
    assert record.reason == "stricter for the launch"
    assert (record.subject_label, record.environment_id) == ("production", production.pk)
    assert (record.before, record.after) == ({"required_approvals": 1}, {"required_approvals": 3})


def test_update_environment__outer_transaction_rolls_back__record_rolls_back_with_it(
    production, admins
):
    # Given a change whose surrounding transaction fails after the service returned
    with pytest.raises(RuntimeError), transaction.atomic():
        _raise_to(production, 2, admins[0])
        assert len(_records()) == 1
        raise RuntimeError("a later step failed")

    # Then neither the change nor its record exists: they share one transaction
    production.refresh_from_db()
    assert production.required_approvals == 1
    assert not AuditRecord.objects.exists()


def test_update_environment__name_only__recorded_without_the_unchanged_fields(production, admins):
    update_environment(
        environment=production, actor=Actor.of(admins[0]), reason="EU", name="Production (EU)"
    )

    [record] = _records()
    assert (record.before, record.after) == (
        {"name": "Production"},
        {"name": "Production (EU)"},
    )


def test_update_environment__nothing_changes__no_record(production, admins):
    _raise_to(production, 1, admins[0])

    assert not AuditRecord.objects.exists()


def test_update_environment__settings_moved_since_the_page__conflict(production, admins):
    seen = settings_state(production)
    _raise_to(production, 2, admins[1])

    with pytest.raises(Conflict, match="changed while you were editing"):
        update_environment(
            environment=production,
            actor=Actor.of(admins[0]),
            reason="r",
            required_approvals=3,
            expected_state=seen,
        )
    production.refresh_from_db()
    assert production.required_approvals == 2


def test_update_environment__more_than_people_who_may_lower_it__refused(production, admins):
    # Three admins (and no superuser) hold the permission that approves settings changes.
    with pytest.raises(ValidationError, match="could never be lowered again"):
        _raise_to(production, 4, admins[0])

    production.refresh_from_db()
    assert production.required_approvals == 1


def test_create_environment__admin__created_with_audit_record(admins):
    environment = environment_services.create_environment(
        slug="eu-west",
        name="EU west",
        position=30,
        required_approvals=2,
        actor=Actor.of(admins[0]),
        reason="new region",
    )

    [record] = _records()
    assert record.environment_id == environment.pk
    assert record.before == {}
    assert record.after == {"name": "EU west", "position": 30, "required_approvals": 2}


def test_create_environment__deployer__forbidden(db):
    with pytest.raises(Forbidden, match=r"deployments\.add_environment"):
        environment_services.create_environment(
            slug="eu-west", name="EU west", actor=Actor.of(member("op", "Deployers")), reason="r"
        )
    assert not Environment.objects.filter(slug="eu-west").exists()


# --- lowering: a settings request another admin approves --------------------------------


def test_update_environment__lower_directly__refused_and_unchanged(production, admins):
    with pytest.raises(SettingsApprovalRequired, match="needs another administrator's approval"):
        update_environment(
            environment=production, actor=Actor.of(admins[0]), reason="r", required_approvals=0
        )

    production.refresh_from_db()
    assert production.required_approvals == 1
    assert not AuditRecord.objects.exists()


def test_update_environment__lower_from_the_cli__refused_too(production):
    with pytest.raises(SettingsApprovalRequired):
        update_environment(
            environment=production, actor=Actor.cli("tests"), reason="r", required_approvals=0
        )


def test_propose_lowering__request_open_and_value_unchanged(production, admins):
    change_request = _propose_lowering(production, 0, admins[0])

    assert change_request.kind == RequestKind.SETTINGS and change_request.is_open
    assert change_request.proposal == {
        "required_approvals": 0,
        "summary": "required approvals 1 → 0",
    }
    assert change_request.base_state == settings_state(production)
    assert str(change_request) == f"#{change_request.pk} required approvals 1 → 0 in production"
    production.refresh_from_db()
    assert production.required_approvals == 1
    assert not AuditRecord.objects.exists()


def test_propose_raise__refused_raising_applies_at_once(production, admins):
    with pytest.raises(ValidationError, match="raising applies at once"):
        _propose_lowering(production, 2, admins[0])


def test_propose_lowering__deployer__forbidden(production):
    deployer = member("op", "Deployers", permissions=("deployments.add_deploymentrequest",))

    with pytest.raises(Forbidden, match=r"deployments\.change_environment"):
        _propose_lowering(production, 0, deployer)
    assert not DeploymentRequest.objects.exists()


def test_settings_subject__describe__says_what_changes_in_words(production, admins):
    _raise_to(production, 2, admins[0])
    change_request = _propose_lowering(production, 1, admins[0])

    lines = request_services.subject_of(change_request).describe(change_request)

    assert lines[0] == "production: required approvals 2 → 1"


def test_lowering__another_admin_approves__applying_changes_it_with_audit(production, admins):
    # Given
    ana, bea, _ = admins
    change_request = _propose_lowering(production, 0, ana)

    # When another admin approves and the requester applies
    _approve(change_request, bea)
    request_services.apply_request(request=change_request, actor=Actor.of(ana))

    # Then
    production.refresh_from_db()
    assert production.required_approvals == 0
    change_request.refresh_from_db()
    assert change_request.status == RequestStatus.APPLIED
    [record] = _records()
    assert record.actor == ana
    assert record.reason == f"Request #{change_request.pk}: the launch is over"
    assert record.before == {"required_approvals": 1}
    assert record.after == {"required_approvals": 0, "request": change_request.pk}


def test_lowering__two_required__needs_two_other_admins(production, admins):
    ana, bea, cem = admins
    _raise_to(production, 2, ana)
    change_request = _propose_lowering(production, 1, ana)
    _approve(change_request, bea)

    with pytest.raises(Forbidden, match="has 1 of the 2 approval"):
        request_services.apply_request(request=change_request, actor=Actor.of(ana))

    _approve(change_request, cem)
    request_services.apply_request(request=change_request, actor=Actor.of(ana))
    production.refresh_from_db()
    assert production.required_approvals == 1


def test_lowering__self_approval__forbidden(production, admins):
    change_request = _propose_lowering(production, 0, admins[0])

    with pytest.raises(Forbidden, match="cannot review your own request"):
        _approve(change_request, admins[0])
    assert not change_request.reviews.exists()


def test_lowering__reviewer_who_is_not_an_admin__may_not_approve(production, admins):
    change_request = _propose_lowering(production, 0, admins[0])
    reviewer = member("rev", "Reviewers")

    with pytest.raises(Forbidden, match=r"deployments\.change_environment"):
        _approve(change_request, reviewer)
    assert not change_request.reviews.exists()


def test_lowering__not_approved__apply_refused_and_unchanged(production, admins):
    change_request = _propose_lowering(production, 0, admins[0])

    with pytest.raises(Forbidden, match="has 0 of the 1 approval"):
        request_services.apply_request(request=change_request, actor=Actor.of(admins[0]))

    production.refresh_from_db()
    assert production.required_approvals == 1
    assert not AuditRecord.objects.exists()


def test_lowering__settings_changed_after_approval__stale_and_refused(production, admins):
    # Given an approved request to lower 2 -> 1
    ana, bea, cem = admins
    _raise_to(production, 2, ana)
    change_request = _propose_lowering(production, 1, ana)
    _approve(change_request, bea)
    _approve(change_request, cem)

    # When the settings move after the approvals (raised to 3), then the request is applied
    _raise_to(production, 3, cem)
    with pytest.raises(Forbidden, match="no longer count"):
        request_services.apply_request(request=change_request, actor=Actor.of(ana))

    # Then nothing was lowered and the request is still open
    production.refresh_from_db()
    assert production.required_approvals == 3
    change_request.refresh_from_db()
    assert change_request.is_open


def test_lowering__applied_by_a_deployer__forbidden(production, admins):
    change_request = _propose_lowering(production, 0, admins[0])
    _approve(change_request, admins[1])

    with pytest.raises(Forbidden, match=r"deployments\.change_environment"):
        request_services.apply_request(
            request=change_request, actor=Actor.of(member("op", "Deployers"))
        )
    production.refresh_from_db()
    assert production.required_approvals == 1


def test_update_environment__request_for_another_value__refused(production, admins):
    change_request = _propose_lowering(production, 0, admins[0])
    _approve(change_request, admins[1])

    with pytest.raises(ServiceError, match="apply it as it is"), transaction.atomic():
        update_environment(
            environment=production,
            actor=Actor.of(admins[0]),
            reason="r",
            required_approvals=1,
            request=change_request,
        )


# --- canary policies ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["Deployers", "Editors"])
def test_set_canary_policy__not_an_admin__forbidden(production, role):
    with pytest.raises(Forbidden, match=r"deployments\.change_canarypolicy"):
        set_canary_policy(
            environment=production,
            values=POLICY,
            actor=Actor.of(member(f"p-{role}", role)),
            reason="r",
        )
    assert not CanaryPolicy.objects.exists()
    assert not AuditRecord.objects.exists()


def test_set_canary_policy__no_reason__refused(production, admins):
    with pytest.raises(ValidationError, match="reason"):
        set_canary_policy(
            environment=production, values=POLICY, actor=Actor.of(admins[0]), reason=""
        )
    assert not CanaryPolicy.objects.exists()


def test_set_canary_policy__first_then_changed__audit_before_and_after(production, admins):
    # When
    set_canary_policy(
        environment=production, values=POLICY, actor=Actor.of(admins[0]), reason="slower ramp"
    )
    set_canary_policy(
        environment=production,
        values={**POLICY, "max_duration_minutes": 720},
        actor=Actor.of(admins[1]),
        reason="more evidence",
    )

    # Then
    assert CanaryPolicy.objects.get(environment=production).max_duration_minutes == 720
    first, second = _records(AuditAction.CANARY_POLICY)
    assert first.before == {} and first.after["default_steps"] == "2,10,50"
    assert (second.before, second.after) == (
        {"max_duration_minutes": 1440},
        {"max_duration_minutes": 720},
    )
    assert (second.actor, second.reason) == (admins[1], "more evidence")


def test_set_canary_policy__unusable_values__every_field_named(production, admins):
    with pytest.raises(ValidationError) as error:
        set_canary_policy(
            environment=production,
            values={
                **POLICY,
                "default_steps": "5,1",
                "margin": 0.8,
                "rollback_confidence": 1,
                "power": 0.5,
                "max_duration_minutes": 0,
                "min_regression": 0,
                "deadline_action": "wait",
            },
            actor=Actor.of(admins[0]),
            reason="r",
        )

    assert set(error.value.message_dict) == {
        "default_steps",
        "margin",
        "rollback_confidence",
        "power",
        "max_duration_minutes",
        "min_regression",
        "deadline_action",
    }
    assert not CanaryPolicy.objects.exists()


def test_set_canary_policy__regression_below_the_rollback_ratio__refused_naming_both(
    production, admins
):
    with pytest.raises(ValidationError) as error:
        set_canary_policy(
            environment=production,
            values={**POLICY, "rollback_ratio": 2, "min_regression": 0.9},
            actor=Actor.of(admins[0]),
            reason="r",
        )

    assert error.value.message_dict == {
        "min_regression": [
            "must be more than the rollback ratio minus 1 (1): a regression below 2x stable's "
            "is one the rollback test never shows."
        ]
    }


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        ({"margin": 0.9}, "policy_margin"),
        ({"rollback_confidence": 1.0}, "policy_rollback_confidence"),
        ({"promote_confidence": 0.5}, "policy_promote_confidence"),
        ({"power": 1.0}, "policy_power"),
        ({"max_duration_minutes": 0}, "policy_max_duration"),
        ({"min_regression": 0.0}, "policy_min_regression"),
        ({"rollback_ratio": 2.0, "min_regression": 0.5}, "policy_min_regression"),
        ({"deadline_action": "wait"}, "policy_deadline_action"),
    ],
)
def test_canary_policy__bad_values_written_around_the_service__refused_by_the_database(
    production, values, constraint
):
    # A script that saves the model directly meets the same rule in the database.
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        CanaryPolicy.objects.create(environment=production, **values)
    assert not CanaryPolicy.objects.exists()


def test_set_canary_policy__saved_by_someone_else_since_the_page__conflict(production, admins):
    set_canary_policy(environment=production, values=POLICY, actor=Actor.of(admins[1]), reason="r")

    with pytest.raises(Conflict, match="canary policy of production changed"):
        set_canary_policy(
            environment=production,
            values={**POLICY, "bake_minutes": 5},
            actor=Actor.of(admins[0]),
            reason="r",
            expected_state=NO_POLICY_STATE,
        )
    assert CanaryPolicy.objects.get().bake_minutes == 15


# --- API keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["Deployers", "Editors", "Reviewers"])
def test_create_api_key__not_an_admin__forbidden(production, role):
    with pytest.raises(Forbidden, match=r"deployments\.add_apikey"):
        create_api_key(
            environment=production,
            name="eu",
            actor=Actor.of(member(f"k-{role}", role)),
            reason="r",
        )
    assert not ApiKey.objects.exists()


def test_create_api_key__no_reason__refused(production, admins):
    with pytest.raises(ValidationError, match="reason"):
        create_api_key(environment=production, name="eu", actor=Actor.of(admins[0]), reason="")
    assert not ApiKey.objects.exists()


def test_create_and_revoke_api_key__admin__audit_records_without_the_hash(production, admins):
    key, plaintext = create_api_key(
        environment=production, name="eu", actor=Actor.of(admins[0]), reason="EU runtime"
    )
    revoke_api_key(key=key, actor=Actor.of(admins[1]), reason="leaked in a log")

    created, revoked = AuditRecord.objects.filter(
        action__in=[AuditAction.API_KEY_CREATED, AuditAction.API_KEY_REVOKED]
    ).order_by("id")
    expected = {
        "name": "eu",
        "key_id": key.key_id,
        "environment": "production",
        "agents": "all",
        "can_read": True,
        "can_report": True,
    }
    assert (created.action, created.reason, created.actor) == (
        AuditAction.API_KEY_CREATED,
        "EU runtime",
        admins[0],
    )
    assert created.after == {**expected, "active": True}
    assert (revoked.action, revoked.reason, revoked.actor) == (
        AuditAction.API_KEY_REVOKED,
        "leaked in a log",
        admins[1],
    )
    assert (revoked.before, revoked.after) == (
        {**expected, "active": True},
        {**expected, "active": False},
    )
    key.refresh_from_db()
    for record in (created, revoked):
        assert key.key_hash not in str(record.before) + str(record.after)
        assert plaintext not in str(record.before) + str(record.after)


@pytest.mark.parametrize("role", ["Deployers", "Editors", "Reviewers"])
def test_revoke_api_key__not_an_admin__forbidden_and_key_active(production, role):
    key, _ = factories.create_api_key(production)

    with pytest.raises(Forbidden, match=r"deployments\.change_apikey"):
        revoke_api_key(key=key, actor=Actor.of(member(f"r-{role}", role)), reason="r")
    key.refresh_from_db()
    assert key.is_active


def test_revoke_api_key__no_reason__refused_and_key_active(production, admins):
    key, _ = factories.create_api_key(production)

    with pytest.raises(ValidationError, match="reason"):
        revoke_api_key(key=key, actor=Actor.of(admins[0]), reason=" ")
    key.refresh_from_db()
    assert key.is_active
    assert not AuditRecord.objects.filter(action=AuditAction.API_KEY_REVOKED).exists()


def test_cli_create_and_revoke_api_key__reason__recorded_with_the_cli_actor(production):
    out = io.StringIO()
    call_command(
        "create_api_key",
        "--environment",
        "production",
        "--name",
        "eu",
        "--reason",
        "EU runtime",
        stdout=out,
        stderr=io.StringIO(),
    )
    call_command("revoke_api_key", "eu", "--reason", "rotated", stdout=out)

    created, revoked = AuditRecord.objects.order_by("id")
    assert created.actor_label.startswith("create_api_key (cli")
    assert (created.reason, revoked.reason) == ("EU runtime", "rotated")


@pytest.mark.parametrize(
    "args",
    [
        ("create_api_key", "--environment", "production", "--name", "eu"),
        ("revoke_api_key", "eu"),
    ],
)
def test_cli_api_key_commands__without_reason__refused(production, args):
    factories.create_api_key(production, name="eu")

    with pytest.raises(CommandError, match="--reason"):
        call_command(*args, stdout=io.StringIO(), stderr=io.StringIO())
    assert ApiKey.objects.get().is_active


def _cli(*args: str) -> str:
    out = io.StringIO()
    call_command("set_required_approvals", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_cli_set_required_approvals__raise__applied_with_audit(production, admins):
    output = _cli("production", "2", "--reason", "launch week")

    assert "production now requires 2 approval(s)" in output
    production.refresh_from_db()
    assert production.required_approvals == 2
    [record] = _records()
    assert record.actor_label.startswith("set_required_approvals (cli")


def test_cli_set_required_approvals__lower__request_opened_then_applied_once_approved(
    production, admins
):
    # When the CLI asks to lower production's approvals
    output = _cli("production", "0", "--reason", "launch is over")

    # Then a request is open and nothing changed
    change_request = DeploymentRequest.objects.get(kind=RequestKind.SETTINGS)
    assert f"request #{change_request.pk}" in output
    production.refresh_from_db()
    assert production.required_approvals == 1

    # And once an admin approved it, the CLI applies it
    _approve(change_request, admins[0])
    _cli("production", "0", "--reason", "approved", "--request", str(change_request.pk))
    production.refresh_from_db()
    assert production.required_approvals == 0


def test_cli_set_required_approvals__request_not_approved__clear_error(production, admins):
    _cli("production", "0", "--reason", "launch is over")
    change_request = DeploymentRequest.objects.get()

    with pytest.raises(CommandError, match="has 0 of the 1 approval"):
        _cli("production", "0", "--reason", "r", "--request", str(change_request.pk))
    production.refresh_from_db()
    assert production.required_approvals == 1


# --- the admin's forms -------------------------------------------------------------------


def _environment_post(environment: Environment, **overrides: str) -> dict[str, str]:
    return {
        "name": environment.name,
        "position": str(environment.position),
        "required_approvals": str(environment.required_approvals),
        "reason": "launch week",
        "expected_state": settings_state(environment),
        **overrides,
    }


def _change_url(environment: Environment) -> str:
    return reverse("admin:deployments_environment_change", args=[environment.pk])


def test_environment_form__raise__saved_with_reason_in_the_audit(production, admins):
    response = login(admins[0]).post(
        _change_url(production), _environment_post(production, required_approvals="2")
    )

    assert response.status_code == 302
    production.refresh_from_db()
    assert production.required_approvals == 2
    assert _records()[0].reason == "launch week"


def test_environment_form__page__shows_reason_and_required_approvals(production, admins):
    content = login(admins[0]).get(_change_url(production)).content.decode()

    assert 'name="reason"' in content and 'name="required_approvals"' in content
    assert f'value="{settings_state(production)}"' in content


def test_environment_form__lower__request_opened_value_unchanged_no_success_message(
    production, admins
):
    # When an admin saves a lower value (and a new name)
    response = login(admins[0]).post(
        _change_url(production),
        _environment_post(production, required_approvals="0", name="Prod"),
        follow=True,
    )

    # Then the name is saved, the approvals are not: a request waits for another admin
    assert response.status_code == 200
    content = response.content.decode()
    assert "Not lowered yet" in content and "successfully" not in content
    production.refresh_from_db()
    assert (production.name, production.required_approvals) == ("Prod", 1)
    change_request = DeploymentRequest.objects.get(kind=RequestKind.SETTINGS)
    assert change_request.proposal["required_approvals"] == 0
    assert change_request.requested_by == admins[0]
    assert f"Request #{change_request.pk}" in content
    assert [r.after for r in _records()] == [{"name": "Prod"}]


def test_settings_request_pages__another_admin_approves_then_applied_in_the_browser(
    production, admins
):
    # Given ana saved a lower value: a request is open
    ana, bea, _ = admins
    login(ana).post(_change_url(production), _environment_post(production, required_approvals="0"))
    change_request = DeploymentRequest.objects.get(kind=RequestKind.SETTINGS)
    page_url = reverse("admin:deployments_deploymentrequest_change", args=[change_request.pk])

    # When bea reads the request, and approves it on the state the page showed
    page = login(bea).get(page_url)
    assert page.status_code == 200
    assert "production: required approvals 1 → 0" in page.content.decode()
    login(bea).post(
        reverse("admin:deployments_deploymentrequest_review", args=[change_request.pk]),
        {
            "decision": "approve",
            "comment": "launch is over",
            "expected_active": settings_state(production),
        },
    )
    # And ana applies it
    response = login(ana).post(
        reverse("admin:deployments_deploymentrequest_apply", args=[change_request.pk]),
        {"expected_active": settings_state(production)},
    )

    # Then
    assert response.status_code == 302
    production.refresh_from_db()
    assert production.required_approvals == 0
    assert _records()[-1].after == {"required_approvals": 0, "request": change_request.pk}


def test_settings_request_page__deployer_may_not_apply(production, admins):
    change_request = _propose_lowering(production, 0, admins[0])
    _approve(change_request, admins[1])
    deployer = member("op", "Deployers")

    response = login(deployer).post(
        reverse("admin:deployments_deploymentrequest_apply", args=[change_request.pk]),
        {"expected_active": settings_state(production)},
    )

    assert response.status_code == 403
    production.refresh_from_db()
    assert production.required_approvals == 1


def test_environment_form__no_reason__error_on_the_form(production, admins):
    response = login(admins[0]).post(
        _change_url(production), _environment_post(production, required_approvals="2", reason="")
    )

    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    production.refresh_from_db()
    assert production.required_approvals == 1


def test_environment_form__settings_moved_meanwhile__refusal_on_the_form_not_500(
    production, admins
):
    # Given the page was read, then another admin raised the approvals
    post = _environment_post(production, required_approvals="3")
    _raise_to(production, 2, admins[1])

    # When
    response = login(admins[0]).post(_change_url(production), post)

    # Then
    assert response.status_code == 200
    content = response.content.decode()
    assert "changed while you were editing" in content
    assert "successfully" not in content
    production.refresh_from_db()
    assert production.required_approvals == 2


def test_environment_form__admin_who_may_not_open_requests__forbidden_shown_on_the_form(
    production, admins
):
    # Given someone who may change environments but not ask for changes
    person = factories.user_with(
        "deployments.change_environment", "deployments.view_environment", is_staff=True
    )
    client = Client()
    client.force_login(person)

    # When they lower the approvals
    response = client.post(
        _change_url(production), _environment_post(production, required_approvals="0")
    )

    # Then the service's refusal is on the form and nothing changed
    assert response.status_code == 200
    assert "deployments.add_deploymentrequest" in response.content.decode()
    assert not DeploymentRequest.objects.exists()
    assert not AuditRecord.objects.exists()


def test_environment_form__too_many_approvals__error_next_to_the_field(production, admins):
    response = login(admins[0]).post(
        _change_url(production), _environment_post(production, required_approvals="9")
    )

    assert response.status_code == 200
    assert "required_approvals" in response.context["adminform"].form.errors
    assert "could never be lowered again" in response.content.decode()


def test_environment_admin__deployer__403(production):
    client = login(member("op", "Deployers"))

    response = client.post(
        _change_url(production), _environment_post(production, required_approvals="0")
    )

    assert response.status_code == 403
    assert not DeploymentRequest.objects.exists()


def test_environment_admin__delete__refused(admin_client, production):
    response = admin_client.post(
        reverse("admin:deployments_environment_delete", args=[production.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert Environment.objects.filter(pk=production.pk).exists()


def test_environment_add_form__reason__created_through_the_service(admin_client, db):
    response = admin_client.post(
        reverse("admin:deployments_environment_add"),
        {
            "slug": "eu-west",
            "name": "EU west",
            "position": "30",
            "required_approvals": "1",
            "reason": "new region",
        },
    )

    assert response.status_code == 302
    environment = Environment.objects.get(slug="eu-west")
    assert _records()[0].environment_id == environment.pk


def test_canary_policy_form__saved_by_someone_else_meanwhile__refusal_on_the_form(
    production, admins
):
    # Given the add page was read when production had no policy, then one was saved
    set_canary_policy(environment=production, values=POLICY, actor=Actor.of(admins[1]), reason="r")
    post = {
        **{k: "" if v is None else str(v) for k, v in POLICY.items()},
        "environment": str(production.pk),
        "bake_minutes": "5",
        "reason": "faster",
        "expected_state": NO_POLICY_STATE,
    }
    policy = CanaryPolicy.objects.get()

    # When the admin saves the policy's change page with the state of the add page
    response = login(admins[0]).post(
        reverse("admin:deployments_canarypolicy_change", args=[policy.pk]), post
    )

    # Then
    assert response.status_code == 200
    assert "changed while you were editing" in response.content.decode()
    policy.refresh_from_db()
    assert policy.bake_minutes == 15


def test_canary_policy_form__no_reason__error_and_nothing_saved(production, admins):
    post = {k: "" if v is None else str(v) for k, v in POLICY.items()}

    response = login(admins[0]).post(
        reverse("admin:deployments_canarypolicy_add"), {**post, "environment": str(production.pk)}
    )

    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    assert not CanaryPolicy.objects.exists()


def test_api_key_add_form__no_reason__error_and_no_key(admin_client, production):
    response = admin_client.post(
        reverse("admin:deployments_apikey_add"), {"name": "eu", "environment": str(production.pk)}
    )

    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()


def test_api_key_revoke_page__no_reason__error_on_the_page_and_key_active(admin_client, production):
    key, _ = factories.create_api_key(production)

    response = admin_client.post(reverse("admin:deployments_apikey_revoke", args=[key.pk]), {})

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    key.refresh_from_db()
    assert key.is_active


def test_api_key_revoke_action__no_reason__confirmation_again_and_keys_active(
    admin_client, production
):
    key, _ = factories.create_api_key(production)

    response = admin_client.post(
        reverse("admin:deployments_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [key.pk], "post": "yes"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    key.refresh_from_db()
    assert key.is_active


# --- races (PostgreSQL, threads) -----------------------------------------------------------


def _race(*calls) -> list[str]:
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []

    def run(call) -> None:
        try:
            barrier.wait(timeout=10)
            call()
            outcomes.append("done")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(outcomes)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_apply_settings_request__two_admins_at_once__one_applies_the_other_conflicts():
    # Given an approved request to lower production's approvals
    production = factories.environment("production")
    ana, bea, cem = member("ana", "Admins"), member("bea", "Admins"), member("cem", "Admins")
    change_request = _propose_lowering(production, 0, ana)
    _approve(change_request, bea)

    # When two admins apply it at the same moment
    outcomes = _race(
        *(
            lambda actor=actor: request_services.apply_request(request=change_request, actor=actor)
            for actor in (Actor.of(ana), Actor.of(cem))
        )
    )

    # Then
    assert outcomes == ["conflict", "done"]
    production.refresh_from_db()
    assert production.required_approvals == 0
    assert AuditRecord.objects.filter(action=AuditAction.ENVIRONMENT_SETTINGS).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_update_environment__two_admins_at_once_on_the_same_page__the_second_conflicts():
    # Given two admins who read production's settings at the same state
    production = factories.environment("production")
    ana, bea, cem = member("ana", "Admins"), member("bea", "Admins"), member("cem", "Admins")
    seen = settings_state(production)

    # When both save a different raise at the same moment
    outcomes = _race(
        *(
            lambda actor=actor, value=value: update_environment(
                environment=production,
                actor=actor,
                reason="r",
                required_approvals=value,
                expected_state=seen,
            )
            for actor, value in ((Actor.of(ana), 2), (Actor.of(bea), 3))
        )
    )

    # Then one change was made and recorded; the other was refused, not overwritten
    assert outcomes == ["conflict", "done"]
    [record] = AuditRecord.objects.filter(action=AuditAction.ENVIRONMENT_SETTINGS)
    production.refresh_from_db()
    assert production.required_approvals == record.after["required_approvals"]
    assert cem  # a third admin: raising to 3 is allowed


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_set_canary_policy__two_admins_create_at_once__one_policy_the_other_conflicts():
    production = factories.environment("production")
    ana, bea = member("ana", "Admins"), member("bea", "Admins")

    outcomes = _race(
        *(
            lambda actor=actor, bake=bake: set_canary_policy(
                environment=production,
                values={**POLICY, "bake_minutes": bake},
                actor=actor,
                reason="r",
                expected_state=NO_POLICY_STATE,
            )
            for actor, bake in ((Actor.of(ana), 5), (Actor.of(bea), 50))
        )
    )

    assert outcomes == ["conflict", "done"]
    assert CanaryPolicy.objects.count() == 1
    assert AuditRecord.objects.filter(action=AuditAction.CANARY_POLICY).count() == 1
