"""flags.selectors: snapshots in one or two queries, scope, missing states, the change list."""

from __future__ import annotations

import pickle

from agentconfig.core.actors import Actor
from deployments.models import Environment
from flags.evaluation import evaluate_all, filter_tools
from flags.models import FlagEnvironment
from flags.selectors import (
    build_environment_snapshot,
    build_flag_snapshot,
    list_flag_changes,
)
from flags.services import flags as flag_services
from tests import factories
from tests.factories import SETUP_BREAK_GLASS
from tests.flags.helpers import ACTOR, make_flag, set_rules, turn_on


def test_build_flag_snapshot__agent__global_and_own_flags_and_gates_in_two_queries(
    agent, production, django_assert_num_queries
):
    # Given a global flag, one of support-bot's and one of another agent
    other = factories.create_agent("other-bot")
    search = make_flag("web-search")
    make_flag("support-tone", kind="string", agent=agent, variants=[{"name": "warm", "value": "w"}])
    make_flag("other-only", agent=other)
    set_rules(search, production, [{"users": ["ana"], "variant": "on"}], default_variant="off")
    turn_on(search, production)
    flag_services.create_tool_gate(
        agent=agent, tool_name="web_search", flag=search, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )

    # When
    with django_assert_num_queries(2):
        snapshot = build_flag_snapshot(production.pk, agent.pk)

    # Then
    assert sorted(snapshot.flags) == ["support-tone", "web-search"]
    assert snapshot.tool_gates == {"web_search": "web-search"}
    assert (snapshot.environment_id, snapshot.agent_id) == (production.pk, agent.pk)
    resolutions = evaluate_all(snapshot, "ana", {})
    assert resolutions["web-search"].value is True
    assert filter_tools(snapshot, ["web_search", "x"], resolutions) == ["web_search", "x"]
    assert filter_tools(snapshot, ["web_search", "x"], evaluate_all(snapshot, "ben", {})) == ["x"]
    assert pickle.loads(pickle.dumps(snapshot)) == snapshot  # noqa: S301 (our own bytes)


def test_build_flag_snapshot__no_agent__global_flags_in_one_query(
    agent, production, django_assert_num_queries
):
    make_flag("web-search")
    make_flag("agent-only", agent=agent)

    with django_assert_num_queries(1):
        snapshot = build_flag_snapshot(production.pk, None)

    assert list(snapshot.flags) == ["web-search"]
    assert snapshot.tool_gates == {}


def test_build_flag_snapshot__per_environment_state(production, staging):
    flag = make_flag("web-search")
    turn_on(flag, staging)

    assert build_flag_snapshot(staging.pk, None).flags["web-search"].enabled is True
    assert build_flag_snapshot(production.pk, None).flags["web-search"].enabled is False


def test_build_environment_snapshot__every_agent_scoped_flag_too(agent, production):
    make_flag("web-search")
    make_flag("agent-only", agent=agent)

    assert sorted(build_environment_snapshot(production.pk).flags) == ["agent-only", "web-search"]


def test_build_flag_snapshot__environment_without_state_row__off_serving_initial_off(production):
    make_flag(
        "banner-copy",
        kind="string",
        variants=[{"name": "short", "value": "Hi"}, {"name": "long", "value": "Hello"}],
    )
    later = factories.environment("eu-west")

    state = build_flag_snapshot(later.pk, None).flags["banner-copy"]

    assert (state.enabled, state.off_variant, state.default_variant) == (False, "short", "short")
    assert evaluate_all(build_flag_snapshot(later.pk, None), "u", {})["banner-copy"].value == "Hi"


def test_build_flag_snapshot__rules_corrupted_outside_the_services__that_flag_errors(production):
    good, bad = make_flag("good"), make_flag("bad")
    turn_on(good, production)
    # Simulates a manual SQL edit: bypasses the services and their validation.
    FlagEnvironment.objects.filter(flag=bad).update(rules=[{"variant": "nope"}], enabled=True)

    results = evaluate_all(build_flag_snapshot(production.pk, None), "u", {})

    assert results["good"].value is True
    assert (results["bad"].reason, results["bad"].error_code) == ("ERROR", "GENERAL")


def test_list_flag_changes__every_kind_of_change__newest_first_with_who_and_why(agent, production):
    # Given a flag that was created, edited, targeted, turned on, killed and gated
    from django.contrib.auth.models import User

    # (Where no environment needs approval, so each change applies at once.)
    Environment.objects.filter(pk=production.pk).update(required_approvals=0)
    editor = User.objects.create(username="pm-anna", is_superuser=True)
    actor = Actor.of(editor)
    flag = make_flag("web-search")
    flag_services.update_flag(flag=flag, actor=actor, description="Web search", owner="search")
    set_rules(flag, production, [{"users": ["ana"], "variant": "on"}], actor=actor, reason="staff")
    turn_on(flag, production)
    flag_services.kill_flag(flag=flag, environment=production, actor=actor, reason="loops")
    flag_services.create_tool_gate(agent=agent, tool_name="web_search", flag=flag, actor=actor)

    # When
    changes = list_flag_changes(flag)

    # Then
    summary = [(c.what, c.action, c.who, [f.field for f in c.changes], c.reason) for c in changes]
    assert summary[:5] == [
        ("tool gate support-bot: web_search", "created", "pm-anna", [], "created"),
        ("production", "changed", "pm-anna", ["enabled"], "Kill switch: loops"),
        ("production", "changed", "tests", ["enabled"], "turned on"),
        ("production", "changed", "pm-anna", ["rules"], "staff"),
        ("flag", "changed", "pm-anna", ["description", "owner"], "changed description, owner"),
    ]
    kill = changes[1].changes[0]
    assert (kill.old, kill.new) == ("on", "off")
    rules_change = changes[3].changes[0]
    assert ("+", '    "variant": "on"') in rules_change.lines
    assert {c.what for c in changes[5:]} == {"flag", "production", "staging"}
