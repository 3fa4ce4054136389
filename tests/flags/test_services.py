"""flags.services.flags: permissions, validation before writing, history (who, why), change feed."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden
from deployments.models import Environment
from flags.models import Flag, FlagEnvironment, ToolGate
from flags.services import flags as flag_services
from tests import factories
from tests.factories import SETUP_BREAK_GLASS
from tests.flags.helpers import ACTOR, evaluate_at_runtime, make_flag, set_rules, turn_on

ROLLOUT_10 = [{"split": [{"variant": "on", "weight": 1000}, {"variant": "off", "weight": 9000}]}]


def flags_generation() -> int:
    """How many flag changes the change feed holds (each flag write records one)."""
    from agentconfig.models import Change, ChangeTopic

    return Change.objects.filter(topic=ChangeTopic.FLAGS).count()


# --- create / update ------------------------------------------------------------------------


def test_create_flag__boolean__off_in_every_environment_with_history(
    production, staging, django_capture_on_commit_callbacks, settings
):
    key = factories.create_api_key(production)[1]
    settings.AGENTCONFIG_REFRESH_INTERVAL = 60  # the change itself must reach this process
    assert evaluate_at_runtime(key, "web-search").status_code == 404  # a runtime, warm

    with django_capture_on_commit_callbacks(execute=True):
        flag = make_flag("web-search", description="Lets the agent search the web", owner="search")

    assert flag.variants == [{"name": "on", "value": True}, {"name": "off", "value": False}]
    states = {s.environment.slug: s for s in flag.states.select_related("environment")}
    assert set(states) == {"production", "staging"}
    assert all(
        (s.enabled, s.default_variant, s.off_variant, s.rules) == (False, "on", "off", [])
        for s in states.values()
    )
    assert flag.history.get().history_type == "+"
    assert flag.history.get().updated_by_label == "tests"
    served = evaluate_at_runtime(key, "web-search")  # knows the new flag at once, off
    assert (served.status_code, served.json()["value"]) == (200, False)


def test_create_flag__string_flag__first_variant_is_default_and_off(production):
    flag = make_flag(
        "banner-copy",
        kind="string",
        variants=[{"name": "short", "value": "Hi"}, {"name": "long", "value": "Hello there"}],
    )

    state = flag.states.get(environment=production)
    assert (state.default_variant, state.off_variant) == ("short", "short")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"key": "Web Search"}, "key", "Use 1-100 lowercase letters"),
        ({"key": "agent.support-bot"}, "key", "reserved for agent configurations"),
        ({"key": "x", "kind": "string", "variants": []}, "variants", "must be a non-empty list"),
        (
            {"key": "x", "kind": "json", "variants": [{"name": "a", "value": "b"}]},
            "variants",
            "objects",
        ),
        ({"key": "x", "kind": "number"}, "kind", "unknown kind 'number'"),
    ],
)
def test_create_flag__invalid__validation_error_on_field_and_nothing_written(
    production, fields, field, message
):
    fields = {"kind": "boolean", **fields}

    with pytest.raises(ValidationError) as caught:
        flag_services.create_flag(actor=ACTOR, **fields)

    assert any(message in m for m in caught.value.message_dict[field])
    assert not Flag.objects.exists()
    assert not FlagEnvironment.objects.exists()


def test_create_flag__duplicate_key__refused(production):
    make_flag("web-search")

    with pytest.raises(ValidationError) as caught:
        make_flag("web-search")

    assert "key" in caught.value.message_dict


def test_create_flag__user_without_permission__forbidden(production, user_with):
    with pytest.raises(Forbidden, match=r"flags\.add_flag"):
        flag_services.create_flag(key="x", kind="boolean", actor=Actor.of(user_with()))


def test_update_flag__description__history_row_names_user(production, user_with):
    flag = make_flag("web-search")
    editor = user_with("flags.change_flag")

    changed = flag_services.update_flag(
        flag=flag, actor=Actor.of(editor), description="Search", owner="team-search"
    )

    assert changed == ("description", "owner")
    latest = flag.history.first()
    assert (latest.history_type, latest.history_user, latest.description) == ("~", editor, "Search")


def test_update_flag__removing_a_variant_still_served__refused_with_the_environment(production):
    flag = make_flag(
        "banner-copy",
        kind="string",
        variants=[{"name": "short", "value": "Hi"}, {"name": "long", "value": "Hello"}],
    )
    set_rules(flag, production, [{"users": ["ana"], "variant": "long"}])

    with pytest.raises(ValidationError) as caught:
        flag_services.update_flag(
            flag=flag,
            actor=ACTOR,
            description="",
            owner="",
            variants=[{"name": "short", "value": "Hi"}],
        )

    assert caught.value.message_dict["variants"] == [
        "production: rule 1: 'long' is not a variant of this flag; use one of 'short'."
    ]
    flag.refresh_from_db()
    assert len(flag.variants) == 2


def test_update_flag__nothing_changed__no_history_row(production):
    flag = make_flag("web-search")

    assert flag_services.update_flag(flag=flag, actor=ACTOR, description="", owner="") == ()
    assert flag.history.count() == 1


# --- rules ----------------------------------------------------------------------------------


def test_set_flag_rules__valid__stored_canonical_with_revision_and_reason(
    staging, user_with, django_capture_on_commit_callbacks
):
    flag = make_flag("web-search")
    editor = user_with("flags.change_flag")
    before = flags_generation()

    with django_capture_on_commit_callbacks(execute=True):
        state = set_rules(
            flag,
            staging,
            [{"users": ["b", "a"], "variant": "on"}, *ROLLOUT_10],
            actor=Actor.of(editor),
            reason="beta for staff, then 10 %",
        )

    state.refresh_from_db()
    assert state.rules[0] == {"users": ["a", "b"], "variant": "on"}
    assert (state.revision, state.updated_by_label, state.change_reason) == (
        1,
        editor.username,
        "beta for staff, then 10 %",
    )
    row = state.history.first()
    assert (row.history_user, row.history_change_reason) == (editor, "beta for staff, then 10 %")
    assert flags_generation() != before


def test_set_flag_rules__invalid__every_message_on_rules_and_nothing_written(production):
    flag = make_flag("web-search")

    with pytest.raises(ValidationError) as caught:
        set_rules(
            flag,
            production,
            [
                {
                    "conditions": [{"attribute": "a", "operator": "like", "value": "x"}],
                    "variant": "on",
                },
                {"split": [{"variant": "on", "weight": 100}]},
            ],
            default_variant="maybe",
        )

    errors = caught.value.message_dict
    assert errors["default_variant"] == [
        "the variant: 'maybe' is not a variant of this flag; use one of 'on', 'off'."
    ]
    assert [m.split(":")[0] for m in errors["rules"]] == ["rule 1, condition 1 (a)", "rule 2"]
    state = flag.states.get(environment=production)
    assert (state.rules, state.revision) == ([], 0)
    assert state.history.count() == 1


def test_set_flag_rules__stale_revision__conflict(production):
    flag = make_flag("web-search")
    set_rules(flag, production, ROLLOUT_10)

    with pytest.raises(Conflict, match="while you were editing"):
        set_rules(flag, production, [], expected_revision=0)


def test_set_flag_rules__nothing_changed__no_history_row_and_same_revision(production):
    flag = make_flag("web-search")
    set_rules(flag, production, ROLLOUT_10)

    state = set_rules(flag, production, ROLLOUT_10, reason="again")

    assert state.revision == 1
    assert FlagEnvironment.history.filter(flag_id=flag.pk, environment=production).count() == 2


def test_set_flag_rules__environment_added_after_the_flag__state_created(production):
    flag = make_flag("web-search")
    later = factories.environment("eu-west")

    state = set_rules(flag, later, ROLLOUT_10)

    assert FlagEnvironment.objects.get(flag=flag, environment=later).pk == state.pk


def test_set_flag_rules__without_permission__forbidden(production, user_with):
    flag = make_flag("web-search")

    with pytest.raises(Forbidden, match=r"flags\.change_flag"):
        set_rules(flag, production, [], actor=Actor.of(user_with("flags.kill_switch")))


# --- on / off and the kill switch ------------------------------------------------------------


def test_set_flag_enabled__on_then_on_again__conflict(production):
    flag = make_flag("web-search")

    state = flag_services.set_flag_enabled(
        flag=flag, environment=production, enabled=True, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )

    assert state.enabled and state.revision == 1
    with pytest.raises(Conflict, match="already on in production"):
        turn_on(flag, production)


def test_kill_flag__on__off_with_reason_in_history(
    production, user_with, django_capture_on_commit_callbacks
):
    flag = make_flag("web-search")
    turn_on(flag, production)
    on_call = user_with("flags.kill_switch")
    before = flags_generation()

    with django_capture_on_commit_callbacks(execute=True):
        state = flag_services.kill_flag(
            flag=flag, environment=production, actor=Actor.of(on_call), reason="search loops"
        )

    state.refresh_from_db()
    assert not state.enabled
    assert state.change_reason == "Kill switch: search loops"
    row = state.history.first()
    assert (row.enabled, row.history_user, row.history_change_reason) == (
        False,
        on_call,
        "Kill switch: search loops",
    )
    assert flags_generation() != before


def test_kill_flag__reason_missing__refused_and_still_on(production):
    flag = make_flag("web-search")
    turn_on(flag, production)

    with pytest.raises(ValidationError) as caught:
        flag_services.kill_flag(flag=flag, environment=production, actor=ACTOR, reason="  ")

    assert "reason" in caught.value.message_dict
    assert flag.states.get(environment=production).enabled


def test_kill_flag__without_kill_switch_permission__forbidden_even_with_change(
    production, user_with
):
    flag = make_flag("web-search")
    turn_on(flag, production)

    with pytest.raises(Forbidden, match=r"flags\.kill_switch"):
        flag_services.kill_flag(
            flag=flag,
            environment=production,
            actor=Actor.of(user_with("flags.change_flag")),
            reason="x",
        )
    assert flag.states.get(environment=production).enabled


def test_kill_flag__already_off__conflict(production):
    flag = make_flag("web-search")

    with pytest.raises(Conflict, match="already off"):
        flag_services.kill_flag(flag=flag, environment=production, actor=ACTOR, reason="x")


def test_kill_flag__long_reason__kept_whole_on_the_state(production):
    flag = make_flag("web-search")
    turn_on(flag, production)
    reason = "r" * 500

    flag_services.kill_flag(flag=flag, environment=production, actor=ACTOR, reason=reason)

    row = flag.states.get(environment=production).history.first()
    assert row.change_reason == f"Kill switch: {reason}"
    assert len(row.history_change_reason) == 100


# --- tool gates and deletion ----------------------------------------------------------------


def test_create_tool_gate__global_boolean_flag__created(agent, production):
    flag = make_flag("web-search")

    gate = flag_services.create_tool_gate(
        agent=agent, tool_name="web_search", flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )

    assert (gate.agent, gate.tool_name, gate.flag) == (agent, "web_search", flag)
    assert gate.history.get().history_type == "+"


@pytest.mark.parametrize(
    ("case", "field", "message"),
    [
        ("string flag", "flag", "a tool is gated by a boolean flag"),
        ("other agent's flag", "flag", "is scoped to the agent other-bot"),
        ("bad tool name", "tool_name", "letters, digits"),
        ("duplicate", "tool_name", "is already gated by a flag"),
    ],
)
def test_create_tool_gate__invalid__refused(agent, production, case, field, message):
    other = factories.create_agent("other-bot")
    flag = {
        "string flag": lambda: make_flag(
            "copy", kind="string", variants=[{"name": "a", "value": "a"}]
        ),
        "other agent's flag": lambda: make_flag("other-flag", agent=other),
    }.get(case, lambda: make_flag("web-search"))()
    tool = "web search" if case == "bad tool name" else "web_search"
    if case == "duplicate":
        flag_services.create_tool_gate(
            agent=agent, tool_name=tool, flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
        )

    with pytest.raises(ValidationError) as caught:
        flag_services.create_tool_gate(
            agent=agent, tool_name=tool, flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
        )

    assert any(message in m for m in caught.value.message_dict[field])


def test_delete_flag__gates_a_tool__conflict_and_kept(agent, production):
    flag = make_flag("web-search")
    flag_services.create_tool_gate(
        agent=agent, tool_name="web_search", flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )

    with pytest.raises(Conflict, match="gates the tools support-bot: web_search"):
        flag_services.delete_flag(flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS)

    assert Flag.objects.filter(pk=flag.pk).exists()


def test_delete_flag__after_removing_gate__deleted_with_history(agent, production, user_with):
    flag = make_flag("web-search")
    gate = flag_services.create_tool_gate(
        agent=agent, tool_name="web_search", flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )
    admin_user = user_with("flags.delete_toolgate", "flags.delete_flag")
    Environment.objects.filter(pk=production.pk).update(required_approvals=0)

    flag_services.delete_tool_gate(gate=gate, actor=Actor.of(admin_user))
    flag_services.delete_flag(flag=flag, actor=Actor.of(admin_user))

    assert not Flag.objects.exists() and not ToolGate.objects.exists()
    assert Flag.history.filter(history_type="-").get().history_user == admin_user
    assert ToolGate.history.filter(history_type="-").get().updated_by_label == admin_user.username
    assert FlagEnvironment.history.filter(history_type="-").count() == 2  # both environments
