"""API keys scoped to agents and capabilities: config, `?at=`, OFREP, outcomes, rotation.

The incident this pins: one runtime's key posted 400 fabricated failures for another
team's agent, and the analysis advanced and promoted that team's canary.
"""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agentconfig.core.actors import Actor
from agentconfig.core.change_feed import record_change
from agentconfig.models import AuditAction, AuditRecord, ChangeTopic
from delivery.snapshot import Snapshot
from deployments.canary_analysis import Verdict
from deployments.models import (
    ApiKey,
    CanaryPolicy,
    CanaryStatus,
    OutcomeCount,
    OutcomeEventId,
)
from deployments.services import outcomes
from deployments.services.api_keys import create_api_key, revoke_api_key
from deployments.services.canaries import evaluate_canary
from tests import factories
from tests.deployments.canary_helpers import start
from tests.flags.helpers import make_flag, turn_on

OPS = Actor.system("ops")


def new_key(environment, *agents, can_read=True, can_report=True, name=None):
    return create_api_key(
        environment=environment,
        name=name or f"key-{ApiKey.objects.count() + 1}",
        actor=OPS,
        reason="a runtime",
        agents=agents,
        can_read=can_read,
        can_report=can_report,
    )


def config(client, key, slug="support-bot", **query):
    return client.get(
        reverse("runtime-config", args=[slug]), query, HTTP_AUTHORIZATION=f"Bearer {key}"
    )


def report(client, key, events, slug="support-bot"):
    return client.post(
        reverse("runtime-outcomes", args=[slug]),
        data=json.dumps({"events": events}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def ofrep(client, key, flag=None):
    url = reverse("ofrep-evaluate-flag", args=[flag]) if flag else reverse("ofrep-evaluate-flags")
    return client.post(
        url,
        data=json.dumps({"context": {"targetingKey": "ana"}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def outcome(version, index, ok=True, prefix="e"):
    return {
        "event_id": f"{prefix}-{index}",
        "version_id": str(version.id),
        "user_id": f"u{index}",
        "ok": ok,
    }


def error(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.fixture
def two_teams(agent, production, django_capture_on_commit_callbacks):
    """support-bot (team A) and billing-bot (team B), each with a version live."""
    billing = factories.create_agent("billing-bot")
    with django_capture_on_commit_callbacks(execute=True):
        support_v1 = factories.create_version(agent)
        billing_v1 = factories.create_version(billing)
        factories.deploy(support_v1, production)
        factories.deploy(billing_v1, production)
    return agent, billing, support_v1, billing_v1


# --- config endpoint ------------------------------------------------------------------------


def test_config__agent_outside_the_key_scope__403_forbidden_agent(client, two_teams, production):
    _, _, support_v1, _ = two_teams
    _, key = new_key(production, support_v1.agent)

    allowed = config(client, key)
    refused = config(client, key, slug="billing-bot")

    assert allowed.status_code == 200
    assert error(refused) == (403, "forbidden_agent")
    message = refused.json()["error"]["message"]
    assert "support-bot" in message and "'billing-bot'" in message
    assert refused["Cache-Control"] == "no-store"


def test_config__key_without_agents__every_agent_as_before(client, two_teams, production):
    _, key = new_key(production)

    assert config(client, key).status_code == 200
    assert config(client, key, slug="billing-bot").status_code == 200


def test_config__report_only_key__403_forbidden_scope(client, two_teams, production):
    agent, *_ = two_teams
    _, key = new_key(production, agent, can_read=False)

    response = config(client, key)

    assert error(response) == (403, "forbidden_scope")
    assert "--report-only" in response.json()["error"]["message"]


def test_config_at__agent_outside_the_key_scope__403(client, two_teams, production):
    _, billing, *_ = two_teams
    _, key = new_key(production, billing)

    response = config(client, key, at=timezone.now().isoformat())

    assert error(response) == (403, "forbidden_agent")


def test_config__scoped_key_warm__no_query(
    client, two_teams, production, django_assert_num_queries
):
    agent, *_ = two_teams
    _, key = new_key(production, agent, can_report=False)
    config(client, key)

    with django_assert_num_queries(0):
        assert config(client, key).status_code == 200
        assert config(client, key, slug="billing-bot").status_code == 403


def test_snapshot_load__many_scoped_keys__scopes_known_without_a_query_per_key(
    two_teams, production
):
    agent, billing, *_ = two_teams

    def cold_load_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            Snapshot().ensure_fresh()
        return len(queries)

    _, every_agent = new_key(production)
    one_key = cold_load_queries()
    _, both_teams = new_key(production, agent, billing)
    _, report_only = new_key(production, billing, can_read=False)

    assert cold_load_queries() == one_key
    snapshot = Snapshot()
    snapshot.ensure_fresh()
    entries = [snapshot.authenticate(key) for key in (every_agent, report_only, both_teams)]
    scopes = [(e.agent_slugs, e.can_read, e.can_report) for e in entries if e is not None]
    assert scopes == [
        (frozenset(), True, True),
        (frozenset({"billing-bot"}), False, True),
        (frozenset({"billing-bot", "support-bot"}), True, True),
    ]


# --- OFREP ---------------------------------------------------------------------------------------


@pytest.fixture
def team_flags(two_teams, production, django_capture_on_commit_callbacks):
    agent, billing, *_ = two_teams
    with django_capture_on_commit_callbacks(execute=True):
        for key, owner in (("banner", None), ("support-tone", agent), ("billing-limits", billing)):
            turn_on(make_flag(key, agent=owner), production)
    return agent, billing


def test_ofrep_agent_object_flag__agent_outside_the_key_scope__403(client, team_flags, production):
    agent, _ = team_flags
    _, key = new_key(production, agent)

    assert ofrep(client, key, "agent.support-bot").status_code == 200
    refused = ofrep(client, key, "agent.billing-bot")

    assert refused.status_code == 403
    assert "limited to support-bot" in refused.json()["errorDetails"]


def test_ofrep_single_flag__of_another_agent__403_own_and_global_200(
    client, team_flags, production
):
    agent, _ = team_flags
    _, key = new_key(production, agent)

    assert ofrep(client, key, "banner").status_code == 200
    assert ofrep(client, key, "support-tone").status_code == 200
    refused = ofrep(client, key, "billing-limits")
    assert refused.status_code == 403
    assert set(refused.json()) == {"errorDetails"}


def test_ofrep_bulk__key_limited_to_an_agent__global_and_its_flags_only(
    client, team_flags, production
):
    agent, _ = team_flags
    _, scoped = new_key(production, agent)
    _, unscoped = new_key(production)

    def keys(response):
        return sorted(flag["key"] for flag in response.json()["flags"])

    assert keys(ofrep(client, scoped)) == ["banner", "support-tone"]
    assert keys(ofrep(client, unscoped)) == ["banner", "billing-limits", "support-tone"]


def test_ofrep__report_only_key__403_on_both_endpoints(client, team_flags, production):
    agent, _ = team_flags
    _, key = new_key(production, agent, can_read=False)

    assert ofrep(client, key).status_code == 403
    assert ofrep(client, key, "banner").status_code == 403
    assert "--report-only" in ofrep(client, key, "agent.support-bot").json()["errorDetails"]


# --- outcomes ------------------------------------------------------------------------------


def test_outcomes__read_only_key__403_forbidden_scope_nothing_stored(client, two_teams, production):
    agent, _, support_v1, _ = two_teams
    _, key = new_key(production, agent, can_report=False)

    response = report(client, key, [outcome(support_v1, 1)])

    assert error(response) == (403, "forbidden_scope")
    assert "--read-only" in response.json()["error"]["message"]
    assert not OutcomeCount.objects.exists()


def test_outcomes__team_a_key_for_team_b_canary__refused_and_the_canary_is_not_promoted(
    client, two_teams, production
):
    # Given team B's canary, judged without baking
    agent, billing, _, billing_v1 = two_teams
    CanaryPolicy.objects.create(environment=production, bake_minutes=0)
    billing_v2 = factories.create_version(billing)
    rollout = start(
        billing_v2, production, steps="10,50", now=timezone.now() - dt.timedelta(hours=1)
    )
    _, team_a = new_key(production, agent)
    _, team_b = new_key(production, billing)

    # When team A's runtime key posts 400 fabricated stable failures and 400 canary successes
    failures = [outcome(billing_v1, i, ok=False, prefix="s") for i in range(400)]
    successes = [outcome(billing_v2, i, prefix="c") for i in range(400)]
    responses = [
        report(client, team_a, batch, slug="billing-bot") for batch in (failures, successes)
    ]
    decisions = [
        evaluate_canary(rollout, now=timezone.now() + dt.timedelta(minutes=m)) for m in (1, 2)
    ]

    # Then every batch is refused, nothing is counted, and the canary holds at its first step
    assert [error(r) for r in responses] == [(403, "forbidden_agent")] * 2
    assert not OutcomeCount.objects.exists() and not OutcomeEventId.objects.exists()
    assert [d.verdict for d in decisions] == [Verdict.HOLD, Verdict.HOLD]
    rollout.refresh_from_db()
    assert (rollout.status, rollout.step_index) == (CanaryStatus.RUNNING, 0)
    # while team B's own runtime still reports
    assert report(client, team_b, [outcome(billing_v2, 1)], slug="billing-bot").status_code == 202


def test_outcomes__version_not_served__422_names_the_event_nothing_stored(
    client, two_teams, production
):
    # Given v2 of support-bot, created but never deployed
    agent, _, support_v1, _ = two_teams
    v2 = factories.create_version(agent)
    _, key = new_key(production, agent)

    response = report(client, key, [outcome(support_v1, 1), outcome(v2, 2, prefix="forged")])

    assert error(response) == (422, "version_not_served")
    [detail] = response.json()["error"]["details"]
    assert (detail["index"], detail["field"]) == (1, "version_id")
    assert "'forged-2'" in detail["message"] and "v2 of support-bot" in detail["message"]
    assert not OutcomeCount.objects.exists() and not OutcomeEventId.objects.exists()


def test_outcomes__version_replaced_within_the_grace_window__accepted_not_after_it(
    client, two_teams, production
):
    # Given v1 replaced by v2 just now
    agent, _, support_v1, _ = two_teams
    support_v2 = factories.create_version(agent)
    factories.deploy(support_v2, production)
    _, key = new_key(production, agent)

    # Then answers v1 gave just before still count
    assert report(client, key, [outcome(support_v1, 1)]).status_code == 202

    # But once the deploy is older than the grace window, only v2 is served
    later = timezone.now() + outcomes.SERVED_GRACE + dt.timedelta(seconds=1)
    asked = {support_v1.id, support_v2.id}
    assert outcomes.served_versions(agent, production.pk, asked, now=later) == {support_v2.id}


# --- scope changes reach every process -------------------------------------------------------


@pytest.fixture
def other_process(settings):
    """A second process's snapshot (its own feed reader; no local listener pokes it)."""
    settings.AGENTCONFIG_REFRESH_INTERVAL = 0
    other = Snapshot()
    other.ensure_fresh()
    return other


def test_snapshot__scope_changed_with_a_feed_row__other_process_reloads_the_key(
    two_teams, production, other_process
):
    # Given a key limited to support-bot, known to the other process
    agent, billing, *_ = two_teams
    key, plaintext = new_key(production, agent)
    other_process.ensure_fresh()
    assert other_process.authenticate(plaintext).agent_slugs == {"support-bot"}

    # When its scope changes in the database with its feed row (what a rotation's writes do)
    with transaction.atomic():
        ApiKey.objects.filter(pk=key.pk).update(can_report=False)  # test setup only
        key.agents.set([billing])
        record_change(topic=ChangeTopic.API_KEY, api_key_id=key.key_id)
    other_process.ensure_fresh()

    # Then the other process serves the new scope
    entry = other_process.authenticate(plaintext)
    assert (entry.agent_slugs, entry.agent_ids, entry.can_report) == (
        {"billing-bot"},
        {billing.pk},
        False,
    )


def test_rotation__both_keys_work_until_the_old_is_revoked(
    client, two_teams, production, other_process
):
    # Given the old key, used by runtimes
    agent, *_ = two_teams
    old, old_plaintext = new_key(production, name="support-2025")
    assert config(client, old_plaintext).status_code == 200

    # When a scoped successor is created, both work in every process
    _, new_plaintext = new_key(production, agent, name="support-2026")
    other_process.ensure_fresh()
    assert config(client, old_plaintext).status_code == 200
    assert config(client, new_plaintext).status_code == 200
    assert other_process.authenticate(old_plaintext) is not None
    assert other_process.authenticate(new_plaintext).agent_slugs == {"support-bot"}

    # And once the old key is revoked, only the new one does
    revoke_api_key(key=old, actor=OPS, reason="rotated to support-2026")
    other_process.ensure_fresh()
    assert config(client, old_plaintext).status_code == 401
    assert config(client, new_plaintext).status_code == 200
    assert other_process.authenticate(old_plaintext) is None


# --- creating scoped keys: service, CLI, admin -----------------------------------------------


def test_create_api_key__scopes__stored_and_in_the_audit_record(two_teams, production):
    agent, billing, *_ = two_teams

    key, _ = new_key(production, billing, agent, can_report=False)

    assert set(key.agents.all()) == {agent, billing}
    assert (key.can_read, key.can_report) == (True, False)
    record = AuditRecord.objects.get(action=AuditAction.API_KEY_CREATED)
    assert record.after["agents"] == ["billing-bot", "support-bot"]
    assert (record.after["can_read"], record.after["can_report"]) == (True, False)


def test_create_api_key__neither_capability__refused_and_no_key(production):
    with pytest.raises(ValidationError, match="read configurations, report outcomes, or both"):
        new_key(production, can_read=False, can_report=False)

    assert not ApiKey.objects.exists()


def test_cli_create_api_key__agents_and_read_only__scoped_key(two_teams, production):
    stderr = io.StringIO()

    call_command(
        "create_api_key",
        "--environment=production",
        "--name=support-eu",
        "--reason=EU runtime",
        "--agent=support-bot",
        "--agent=billing-bot",
        "--read-only",
        stdout=io.StringIO(),
        stderr=stderr,
    )

    key = ApiKey.objects.get(name="support-eu")
    assert sorted(key.agents.values_list("slug", flat=True)) == ["billing-bot", "support-bot"]
    assert (key.can_read, key.can_report) == (True, False)
    assert "billing-bot, support-bot; it only reads" in stderr.getvalue()


@pytest.mark.parametrize(
    ("arguments", "options", "message"),
    [
        (["--agent=ghost-bot"], {}, "there is no agent 'ghost-bot'"),
        (["--read-only", "--report-only"], {}, "not allowed with argument --read-only"),
        # call_command's keyword options skip argparse's check; the command's own applies
        ([], {"read_only": True, "report_only": True}, "exclude each other"),
    ],
)
def test_cli_create_api_key__bad_scope__command_error_and_no_key(
    two_teams, production, arguments, options, message
):
    with pytest.raises(CommandError, match=message):
        call_command(
            "create_api_key",
            "--environment=production",
            "--name=k",
            "--reason=r",
            *arguments,
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            **options,
        )

    assert not ApiKey.objects.exists()


def test_admin_add_api_key__agents_and_report_only__scoped_key_and_scope_shown(
    admin_client, two_teams, production
):
    _, billing, *_ = two_teams

    response = admin_client.post(
        reverse("admin:deployments_apikey_add"),
        {
            "name": "billing-outcomes",
            "environment": str(production.pk),
            "agents": [str(billing.pk)],
            "capabilities": "report",
            "reason": "billing's outcome reporter",
        },
    )

    assert response.status_code == 201
    key = ApiKey.objects.get()
    assert list(key.agents.all()) == [billing]
    assert (key.can_read, key.can_report) == (False, True)
    assert "billing-bot; reports" in response.content.decode()
    change = admin_client.get(reverse("admin:deployments_apikey_change", args=[key.pk]))
    assert "billing-bot; reports" in change.content.decode()
    assert 'name="_save"' not in change.content.decode()  # the scope is not editable


def test_admin_add_api_key__page__explains_empty_agents_and_rotation(admin_client, two_teams):
    content = admin_client.get(reverse("admin:deployments_apikey_add")).content.decode()

    assert "None ticked: every agent of its environment" in content
    assert "create a new key, deploy it, then revoke this one" in content
