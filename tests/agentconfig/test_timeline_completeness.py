"""Nothing invisible: every change to what runtimes receive, or to the rules that govern
releases, shows on the audit timeline with who, why and a link that resolves.

CASES enumerates those changes, each made through its real service. Each case names the
model it changes (checked against the rows it really writes), the audit records and
change-feed topics it writes (checked too), and the event the timeline must gain. The
guards below fail when the enumeration falls behind the code:
- every AuditAction and every change-feed topic is written by some case;
- every model of the apps below that ties to an agent or an environment (a foreign key,
  or the base layer's integer agent_id / environment_id) or keeps simple-history is
  either changed by a case or listed in NOT_ON_THE_TIMELINE with the reason it is not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agentconfig.core import people
from agentconfig.core.actors import Actor
from agentconfig.models import Agent, AuditAction, AuditRecord, Change, ChangeTopic
from agentconfig.site.timeline import AuditEvent, list_audit_events
from deployments.models import Environment, RequestKind
from deployments.services import canaries, environments, requests
from deployments.services.api_keys import create_api_key, revoke_api_key
from deployments.services.releases import deploy_version, rollback
from evaluations.services import policies
from evaluations.services.gate_overrides import record_gate_override
from flags.approvals import ApprovalRequired
from flags.services import flags as flag_services
from flags.services.requests import propose_flag_change
from tests import factories
from tests.deployments.canary_helpers import start

APPS = ("agentconfig", "versions", "deployments", "flags", "evaluations")


# --- the world every case starts from --------------------------------------------------


@dataclass
class World:
    """support-bot (v1 live in production, v2 and v3 not yet) and another agent (v1 live in
    production), staging empty; ada makes the changes, bob reviews."""

    agent: Agent
    other: Agent
    production: Environment
    staging: Environment
    ada: Actor
    bob: Actor
    versions: list[Any]
    client: Client
    saved: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Expect:
    """The event a change must add: a piece of its title, its why, where it shows."""

    title: str
    reason: str
    environment: str | None = None  # None: no single environment
    everywhere: bool = False  # on every agent's timeline (global flags, keys, settings, roles)
    all_environments: bool = False  # on every environment's filtered timeline
    actor: str = "ada"
    alert: str = ""


def _environment_wide(title: str, reason: str, environment: str, alert: str = "") -> Expect:
    """A change to one environment that concerns every agent: on every agent's timeline."""
    return Expect(title, reason, environment, everywhere=True, alert=alert)


@dataclass(frozen=True)
class Case:
    model: str  # "app_label.ModelName" the change writes
    name: str
    change: Callable[[World], Expect]
    setup: Callable[[World], None] = lambda world: None
    audit: tuple[str, ...] = ()  # AuditActions it records
    topics: tuple[str, ...] = ()  # change-feed topics it records


@pytest.fixture
def world(db) -> World:
    ada, bob = (
        factories.user_with(username=name, is_staff=True, is_superuser=True)
        for name in ("ada", "bob")
    )
    production, staging = factories.environment("production"), factories.environment("staging")
    agent = factories.create_agent(slug="support-bot")
    other = factories.create_agent(slug="billing-bot")
    versions = [factories.create_version(agent) for _ in range(3)]
    factories.deploy(versions[0], production)
    factories.deploy(factories.create_version(other), production)
    client = factories.login(ada)
    return World(
        agent=agent,
        other=other,
        production=production,
        staging=staging,
        ada=Actor.of(ada),
        bob=Actor.of(bob),
        versions=versions,
        client=client,
    )


# --- the changes -------------------------------------------------------------------------
# Pointer and CanaryRollout changes write the release log; flags, gates and keys the
# change feed; governance changes an AuditRecord.


def _deploy(w: World) -> Expect:
    deploy_version(
        agent=w.agent,
        environment=w.production,
        version=w.versions[1],
        actor=w.ada,
        reason="ship the billing fix",
        break_glass="INC-1 billing broken",
    )
    return Expect("Deployed v2 (was v1)", "ship the billing fix", "production", alert="Break glass")


def _first_deploy(w: World) -> Expect:
    deploy_version(
        agent=w.agent, environment=w.staging, version=w.versions[0], actor=w.ada, reason="try it"
    )
    return Expect("Deployed v1 (was nothing)", "try it", "staging")


def _rollback(w: World) -> Expect:
    rollback(agent=w.agent, environment=w.production, actor=w.ada, reason="v2 is rude")
    return Expect("Rolled back from v2 to v1", "v2 is rude", "production")


def _deploy_v2(w: World) -> None:
    factories.deploy(w.versions[1], w.production)


def _canary_start(w: World) -> Expect:
    canaries.start_canary(
        agent=w.agent,
        environment=w.production,
        version=w.versions[1],
        actor=w.ada,
        reason="a few users first",
        percent="5",
        break_glass="INC-2",
    )
    return Expect(
        "Started a canary of v2 against v1", "a few users first", "production", alert="Break glass"
    )


def _running_canary(w: World) -> None:
    start(w.versions[1], w.production, steps="1,5,25,50")


def _canary_advance(w: World) -> Expect:
    canaries.advance_canary(
        agent=w.agent,
        environment=w.production,
        actor=w.ada,
        reason="errors look normal",
        expected_step=(0, 100),
    )
    return Expect("Canary of v2: 1 % -> 5 %", "errors look normal", "production")


def _canary_percent(w: World) -> Expect:
    canaries.set_canary_percent(
        agent=w.agent, environment=w.production, percent=3, actor=w.ada, reason="more data"
    )
    return Expect("Canary of v2: 1 % -> 3 %", "more data", "production")


def _canary_promote(w: World) -> Expect:
    canaries.promote_canary(agent=w.agent, environment=w.production, actor=w.ada, reason="better")
    return Expect("Promoted the canary v2 to stable (was v1)", "better", "production")


def _canary_abort(w: World) -> Expect:
    canaries.abort_canary(agent=w.agent, environment=w.production, actor=w.ada, reason="latency")
    return Expect("Aborted the canary of v2", "latency", "production")


def _version(w: World) -> Expect:
    factories.create_version(w.agent, actor=w.ada, change_description="warmer tone")
    return Expect("Created v4", "warmer tone")


def _global_flag(w: World) -> None:
    w.saved["flag"] = flag_services.create_flag(key="refunds", kind="boolean", actor=w.ada)


def _flag_create(w: World) -> Expect:
    flag_services.create_flag(key="refunds", kind="boolean", actor=w.ada)
    return Expect(
        "Created flag refunds (boolean, global)", "created", everywhere=True, all_environments=True
    )


def _string_flag(w: World) -> None:
    w.saved["flag"] = flag_services.create_flag(
        key="tone",
        kind="string",
        actor=w.ada,
        agent=w.agent,
        variants=[{"name": "plain", "value": "plain"}, {"name": "warm", "value": "warm"}],
    )


def _flag_variants(w: World) -> Expect:
    flag = w.saved["flag"]
    flag_services.update_flag(
        flag=flag,
        actor=w.ada,
        description=flag.description,
        owner=flag.owner,
        variants=[{"name": "plain", "value": "plain, short"}, {"name": "warm", "value": "warm"}],
        reason="shorter answers",
        break_glass="INC-4",
    )
    return Expect("Flag tone: variant values changed", "shorter answers", all_environments=True)


def _flag_delete(w: World) -> Expect:
    flag_services.delete_flag(flag=w.saved["flag"], actor=w.ada)
    return Expect(
        "Deleted flag refunds (global)", "deleted", everywhere=True, all_environments=True
    )


def _flag_rules(w: World) -> Expect:
    flag_services.set_flag_rules(
        flag=w.saved["flag"],
        environment=w.staging,
        actor=w.ada,
        rules=[{"users": ["ana"], "variant": "on"}],
        default_variant="off",
        off_variant="off",
        reason="ana tries it",
    )
    return _environment_wide("Flag refunds: off, 1 rule(s)", "ana tries it", "staging")


def _flag_on(w: World) -> Expect:
    flag_services.set_flag_enabled(
        flag=w.saved["flag"], environment=w.staging, enabled=True, actor=w.ada, reason="launch"
    )
    return _environment_wide("Flag refunds: on, 0 rule(s)", "launch", "staging")


def _flag_on_in_production(w: World) -> None:
    _global_flag(w)
    flag_services.set_flag_enabled(
        flag=w.saved["flag"],
        environment=w.production,
        enabled=True,
        actor=w.ada,
        reason="launch",
        break_glass="test setup",
    )


def _flag_kill(w: World) -> Expect:
    flag_services.kill_flag(
        flag=w.saved["flag"], environment=w.production, actor=w.ada, reason="refunds doubled"
    )
    return _environment_wide(
        "Kill switch: flag refunds turned off in production",
        "Kill switch: refunds doubled",
        "production",
        alert="Kill switch",
    )


def _flag_request(w: World) -> Expect:
    # A global flag: the request has no agent, and concerns every agent.
    try:
        flag_services.set_flag_enabled(
            flag=w.saved["flag"], environment=w.production, enabled=True, actor=w.ada
        )
    except ApprovalRequired as required:
        request = propose_flag_change(required=required, actor=w.ada, reason="go live")
    else:
        pytest.fail("production takes flag changes only by request")
    assert request.agent is None and request.version is None
    return _environment_wide(
        f"Requested a flag change: turn refunds on in production (request #{request.pk})",
        "go live",
        "production",
    )


def _gate_lookup_order(w: World, break_glass: str) -> Any:
    return flag_services.create_tool_gate(
        agent=w.agent,
        tool_name="lookup_order",
        flag=w.saved["flag"],
        actor=w.ada,
        break_glass=break_glass,
    )


def _gate_add(w: World) -> Expect:
    _gate_lookup_order(w, break_glass="INC-5 tool leaks")
    return Expect(
        "Gated the tool lookup_order behind flag refunds",
        "Break glass: INC-5 tool leaks",
        all_environments=True,
    )


def _gate(w: World) -> None:
    _global_flag(w)
    w.saved["gate"] = _gate_lookup_order(w, break_glass="test setup")


def _gate_remove(w: World) -> Expect:
    flag_services.delete_tool_gate(gate=w.saved["gate"], actor=w.ada, break_glass="INC-6")
    return Expect(
        "Removed the gate of the tool lookup_order (flag refunds)",
        "Break glass: INC-6",
        all_environments=True,
    )


def _create_runtime_eu_key(w: World) -> Any:
    key, _ = create_api_key(
        environment=w.production, name="runtime-eu", actor=w.ada, reason="new region"
    )
    return key


def _key_create(w: World) -> Expect:
    _create_runtime_eu_key(w)
    return _environment_wide("Created API key runtime-eu", "new region", "production")


def _key(w: World) -> None:
    w.saved["key"] = _create_runtime_eu_key(w)


def _key_revoke(w: World) -> Expect:
    revoke_api_key(key=w.saved["key"], actor=w.ada, reason="leaked in a log")
    return _environment_wide(
        "Revoked API key runtime-eu", "leaked in a log", "production", alert="Key revoked"
    )


def _approvals_raised(w: World) -> Expect:
    environments.update_environment(
        environment=w.production, actor=w.ada, reason="two eyes more", required_approvals=2
    )
    return _environment_wide("Changed the settings of production", "two eyes more", "production")


def _propose_no_approvals(w: World) -> Any:
    return requests.propose_change(
        kind=RequestKind.SETTINGS,
        environment=w.production,
        proposal={"required_approvals": 0},
        actor=w.ada,
        reason="night releases",
    )


def _settings_request(w: World) -> Expect:
    request = _propose_no_approvals(w)
    return _environment_wide(
        f"Requested a settings change: required approvals 1 → 0 (request #{request.pk})",
        "night releases",
        "production",
    )


def _approved_settings_request(w: World) -> None:
    request = _propose_no_approvals(w)
    requests.approve_request(request=request, actor=w.bob, comment="for this week")
    w.saved["request"] = request


def _settings_request_applied(w: World) -> Expect:
    requests.apply_request(request=w.saved["request"], actor=w.ada, reason="as approved")
    return _environment_wide("Changed the settings of production", "as approved", "production")


def _canary_policy(w: World) -> Expect:
    values = environments.canary_policy_values(canaries.get_policy(w.production))
    environments.set_canary_policy(
        environment=w.production,
        values={**values, "bake_minutes": 45},
        actor=w.ada,
        reason="slower ramps",
    )
    return _environment_wide("Set the canary policy of production", "slower ramps", "production")


def _evaluation_policy(w: World) -> Expect:
    policies.set_evaluation_policy(
        environment=w.production,
        values={"required": True, "tolerance": 0.05},
        actor=w.ada,
        reason="gate on the smoke suite",
    )
    return _environment_wide(
        "Set the evaluation policy of production", "gate on the smoke suite", "production"
    )


def _evaluation_required(w: World) -> None:
    policies.set_evaluation_policy(
        environment=w.production, values={"required": True}, actor=w.ada, reason="gate"
    )


def _gate_override(w: World) -> Expect:
    record_gate_override(
        agent=w.agent,
        environment=w.production,
        version=w.versions[1],
        actor=w.ada,
        reason="the suite is being rewritten",
    )
    return Expect(
        "Overrode the evaluation gate for v2",
        "the suite is being rewritten",
        "production",
        alert="Gate overridden",
    )


def _carol(w: World) -> None:
    w.saved["carol"] = get_user_model().objects.create_user("carol", "carol@example.com")


def _roles(w: World) -> Expect:
    people.set_roles(
        user=w.saved["carol"],
        groups=["Reviewers"],
        is_staff=True,
        is_superuser=False,
        actor=w.ada,
        reason="joins the review rota",
    )
    return Expect(
        "Changed the roles of carol",
        "joins the review rota",
        everywhere=True,
        all_environments=True,
    )


def _user_created(w: World) -> Expect:
    people.create_user(
        username="dave",
        email="dave@example.com",
        actor=w.ada,
        reason="new hire",
        groups=["Editors"],
    )
    return Expect("Created the user dave", "new hire", everywhere=True, all_environments=True)


def _request_v2(w: World) -> Any:
    return requests.create_request(
        agent=w.agent,
        environment=w.production,
        version=w.versions[1],
        actor=w.ada,
        reason="billing paragraph",
    )


def _release_request(w: World) -> Expect:
    request = _request_v2(w)
    return Expect(
        f"Requested deploying v2 (request #{request.pk})", "billing paragraph", "production"
    )


def _open_release_request(w: World) -> None:
    w.saved["request"] = _request_v2(w)


def _approve(w: World) -> Expect:
    request = w.saved["request"]
    requests.approve_request(request=request, actor=w.bob, comment="paragraph is back")
    return Expect(
        f"Approved request #{request.pk} (v2)", "paragraph is back", "production", actor="bob"
    )


def _reject(w: World) -> Expect:
    request = w.saved["request"]
    requests.reject_request(request=request, actor=w.bob, comment="wrong tone")
    return Expect(
        f"Rejected request #{request.pk} (v2)",
        "wrong tone",
        "production",
        actor="bob",
        alert="Rejected",
    )


FEED_AGENT, FEED_FLAGS, FEED_KEY = ChangeTopic.AGENT, ChangeTopic.FLAGS, ChangeTopic.API_KEY
A = AuditAction

CASES = [
    Case("deployments.Pointer", "deploy", _deploy, topics=(FEED_AGENT,)),
    Case("deployments.Pointer", "first deploy", _first_deploy, topics=(FEED_AGENT,)),
    Case("deployments.Pointer", "rollback", _rollback, _deploy_v2, topics=(FEED_AGENT,)),
    Case("deployments.CanaryRollout", "canary start", _canary_start, topics=(FEED_AGENT,)),
    Case(
        "deployments.CanaryRollout",
        "canary advance",
        _canary_advance,
        _running_canary,
        topics=(FEED_AGENT,),
    ),
    Case(
        "deployments.CanaryRollout",
        "canary percent",
        _canary_percent,
        _running_canary,
        topics=(FEED_AGENT,),
    ),
    Case(
        "deployments.CanaryRollout",
        "canary promote",
        _canary_promote,
        _running_canary,
        topics=(FEED_AGENT,),
    ),
    Case(
        "deployments.CanaryRollout",
        "canary abort",
        _canary_abort,
        _running_canary,
        topics=(FEED_AGENT,),
    ),
    Case("versions.AgentVersion", "version", _version),
    Case("flags.Flag", "flag create", _flag_create, topics=(FEED_FLAGS,)),
    Case("flags.Flag", "flag variants", _flag_variants, _string_flag, topics=(FEED_FLAGS,)),
    Case("flags.Flag", "flag delete", _flag_delete, _global_flag, topics=(FEED_FLAGS,)),
    Case("flags.FlagEnvironment", "flag rules", _flag_rules, _global_flag, topics=(FEED_FLAGS,)),
    Case("flags.FlagEnvironment", "flag on", _flag_on, _global_flag, topics=(FEED_FLAGS,)),
    Case(
        "flags.FlagEnvironment",
        "kill switch",
        _flag_kill,
        _flag_on_in_production,
        topics=(FEED_FLAGS,),
    ),
    Case("flags.ToolGate", "gate add", _gate_add, _global_flag, topics=(FEED_FLAGS,)),
    Case("flags.ToolGate", "gate remove", _gate_remove, _gate, topics=(FEED_FLAGS,)),
    Case("deployments.DeploymentRequest", "flag request", _flag_request, _global_flag),
    Case("deployments.DeploymentRequest", "settings request", _settings_request),
    Case("deployments.DeploymentRequest", "release request", _release_request),
    Case("deployments.RequestReview", "approve", _approve, _open_release_request),
    Case("deployments.RequestReview", "reject", _reject, _open_release_request),
    Case(
        "deployments.ApiKey",
        "key create",
        _key_create,
        audit=(A.API_KEY_CREATED,),
        topics=(FEED_KEY,),
    ),
    Case(
        "deployments.ApiKey",
        "key revoke",
        _key_revoke,
        _key,
        audit=(A.API_KEY_REVOKED,),
        topics=(FEED_KEY,),
    ),
    Case(
        "deployments.Environment",
        "required approvals raised",
        _approvals_raised,
        audit=(A.ENVIRONMENT_SETTINGS,),
    ),
    Case(
        "deployments.Environment",
        "required approvals lowered by request",
        _settings_request_applied,
        _approved_settings_request,
        audit=(A.ENVIRONMENT_SETTINGS,),
    ),
    Case("deployments.CanaryPolicy", "canary policy", _canary_policy, audit=(A.CANARY_POLICY,)),
    Case(
        "evaluations.EvaluationPolicy",
        "evaluation policy",
        _evaluation_policy,
        audit=(A.EVALUATION_POLICY,),
    ),
    Case("evaluations.GateOverride", "gate override", _gate_override, _evaluation_required),
    Case("auth.User", "roles", _roles, _carol, audit=(A.ROLES_CHANGED,)),
    Case("auth.User", "user created", _user_created, audit=(A.USER_CREATED,)),
]

# Models tied to an agent or an environment that are not themselves changes to what
# runtimes receive or to the rules of releases — each with the reason.
NOT_ON_THE_TIMELINE = {
    # The records the timeline is made of: written with the changes above, never alone.
    "agentconfig.Change": "the change feed: announces a change listed here to servers",
    "agentconfig.AuditRecord": "the audit log of governance changes: the timeline reads it",
    "deployments.ReleaseLogEntry": "the release log of Pointer and CanaryRollout: read by it",
    "deployments.CanaryDecision": (
        "the analysis' verdicts: each one that acts does so through the release services, "
        "and its release-log row is the timeline's event (holds change nothing)"
    ),
    # Reports and measurements: evidence read by the canary analysis and the gate.
    "deployments.OutcomeEventId": "outcome reports' ids, kept to drop duplicates",
    "deployments.OutcomeCount": "outcome counts reported by runtimes, read by the analysis",
    "deployments.OutcomeLatency": "latency histograms reported by runtimes, read by the analysis",
    "evaluations.EvaluationRun": "a measurement of a version; the gate's verdict is logged "
    "with the release it allowed",
    "evaluations.EvaluationSuite": (
        "test cases: evidence the gate weighs, not a rule (which suite gates is the "
        "evaluation policy's suite_slug, on the timeline)"
    ),
    # Not served: agents are identified by their slug, which never changes.
    "agentconfig.Agent": "name and description: shown in the admin, never served",
}


# --- the tests ---------------------------------------------------------------------------

_WRITE = re.compile(r'^\s*(?:INSERT INTO|UPDATE|DELETE FROM)\s+"?([A-Za-z0-9_]+)"?', re.I)


def _written_tables(queries: list[dict[str, Any]]) -> set[str]:
    return {m[1] for q in queries if (m := _WRITE.match(q["sql"]))}


def _timeline(agent: Agent, environment: str | None = None) -> list[AuditEvent]:
    return list_audit_events(agent, environment=environment)


def _gained(before: list[AuditEvent], after: list[AuditEvent]) -> list[AuditEvent]:
    seen = set(before)
    return [event for event in after if event not in seen]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_change__through_its_service__on_the_timeline_with_actor_reason_and_link(case, world):
    # Given
    case.setup(world)
    before = {slug: _timeline(a) for slug, a in (("agent", world.agent), ("other", world.other))}
    audit_count, change_count = AuditRecord.objects.count(), Change.objects.count()

    # When the change is made through its service
    with CaptureQueriesContext(connection) as queries:
        expect = case.change(world)

    # Then it wrote the model the enumeration says, its audit records and feed rows
    model = apps.get_model(case.model)
    assert model._meta.db_table in _written_tables(queries.captured_queries)
    written = AuditRecord.objects.order_by("id")[audit_count:]
    assert sorted(r.action for r in written) == sorted(case.audit)
    topics = set(Change.objects.order_by("id")[change_count:].values_list("topic", flat=True))
    assert topics >= set(case.topics)

    # And the agent's timeline gained its event: who, why, where, and a page that exists
    gained = [
        e for e in _gained(before["agent"], _timeline(world.agent)) if expect.title in e.title
    ]
    assert gained, f"no event {expect.title!r} among {[e.title for e in _timeline(world.agent)]}"
    event = gained[0]
    assert event.actor == expect.actor
    assert expect.reason in event.detail
    assert event.environment == expect.environment
    assert event.all_environments == expect.all_environments
    assert event.alert == expect.alert
    assert event.link, f"{event.title!r} links nowhere"
    assert world.client.get(event.link).status_code == 200, event.link

    # And it is on the filtered timeline of each environment it concerns
    slugs = ["production", "staging"] if expect.all_environments else [expect.environment]
    for slug in filter(None, slugs):
        assert event in _timeline(world.agent, slug), slug

    # And on every other agent's timeline when it concerns them all, on none otherwise
    on_other = [e for e in _gained(before["other"], _timeline(world.other)) if e == event]
    assert bool(on_other) == expect.everywhere


def test_change__with_before_and_after__the_timeline_shows_both(world):
    # Given a canary policy set once, then changed
    _canary_policy(world)
    values = environments.canary_policy_values(canaries.get_policy(world.production))

    # When the bake time changes again
    environments.set_canary_policy(
        environment=world.production,
        values={**values, "bake_minutes": 20},
        actor=world.ada,
        reason="faster",
    )

    # Then the event says from what to what
    event = next(e for e in _timeline(world.agent) if e.detail == "faster")
    assert event.title == "Changed the canary policy of production"
    assert [(c.name, c.before, c.after) for c in event.changes] == [("bake minutes", "45", "20")]


def test_every_audit_action_and_feed_topic__written_by_some_case():
    audited = {action for case in CASES for action in case.audit}
    topics = {topic for case in CASES for topic in case.topics}

    assert set(AuditAction.values) - audited == set(), "an AuditAction without a case"
    assert set(ChangeTopic.values) - topics == set(), "a change-feed topic without a case"


def _tied_models() -> dict[str, str]:
    """Every model of APPS tied to an agent or an environment, or kept with history: why."""
    tied: dict[str, str] = {}
    for app in APPS:
        for model in apps.get_app_config(app).get_models():
            if hasattr(model, "instance_type"):
                continue  # simple-history's historical copy of a model
            label = model._meta.label
            for f in model._meta.concrete_fields:
                if isinstance(f, models.ForeignKey) and f.related_model in (Agent, Environment):
                    tied.setdefault(label, f"foreign key {f.name}")
                elif f.name in ("agent_id", "environment_id"):
                    tied.setdefault(label, f"integer {f.name}")
            if label not in tied and hasattr(model, "history"):
                tied[label] = "simple-history"
    return tied


def test_guard__every_model_tied_to_agents_or_environments__enumerated_or_excused():
    enumerated = {case.model for case in CASES}
    tied = _tied_models()

    # (the detection itself works: it finds a foreign key, an integer id and a history)
    assert tied["deployments.Pointer"] == "foreign key agent"
    assert tied["agentconfig.AuditRecord"] == "integer environment_id"
    assert tied["agentconfig.Agent"] == "simple-history"
    missing = {
        label: why
        for label, why in tied.items()
        if label not in enumerated and label not in NOT_ON_THE_TIMELINE
    }

    assert missing == {}, (
        "These models tie to an agent or an environment but are neither changed by a case "
        "in CASES (then make their changes show on the timeline) nor listed, with the "
        f"reason, in NOT_ON_THE_TIMELINE: {missing}"
    )


def test_guard__excused_models__exist_and_are_not_enumerated():
    labels = {model._meta.label for model in apps.get_models()}
    enumerated = {case.model for case in CASES}

    assert set(NOT_ON_THE_TIMELINE) - labels == set()
    assert set(NOT_ON_THE_TIMELINE) & enumerated == set()


def test_guard__the_models_the_brief_names__are_enumerated():
    # The changes that reached runtimes unseen before the timeline showed them.
    named = {
        "deployments.Pointer",
        "deployments.CanaryRollout",
        "flags.Flag",
        "flags.FlagEnvironment",
        "flags.ToolGate",
        "deployments.ApiKey",
        "deployments.Environment",
        "deployments.CanaryPolicy",
        "evaluations.EvaluationPolicy",
    }

    assert named - {case.model for case in CASES} == set()
