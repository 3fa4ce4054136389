"""The flag pages in the admin: list, add, change, rules, turn on, kill switch, evaluate, gates."""

from __future__ import annotations

import json

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from deployments.models import DeploymentRequest, Environment
from flags.models import Flag, FlagEnvironment, ToolGate
from flags.services import flags as flag_services
from tests import factories
from tests.factories import SETUP_BREAK_GLASS
from tests.flags.helpers import ACTOR, evaluate_at_runtime, make_flag, set_rules, turn_on

VIEW = "flags.view_flag"
CHANGE = "flags.change_flag"
KILL = "flags.kill_switch"


def url(name: str, flag: Flag, environment: str | None = None) -> str:
    args = [flag.pk, environment] if environment else [flag.pk]
    return reverse(f"admin:flags_flag_{name}", args=args)


def state(flag: Flag, environment) -> FlagEnvironment:
    return FlagEnvironment.objects.get(flag=flag, environment=environment)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def flag(production, staging):
    search = make_flag("web-search", description="Lets the agent search the web")
    set_rules(search, production, [{"users": ["ana"], "variant": "on"}], default_variant="off")
    turn_on(search, production)
    return search


# --- list and add -----------------------------------------------------------------------------


def test_flag_list__states_per_environment_and_bounded_queries(
    admin_client, flag, django_assert_max_num_queries
):
    for n in range(10):
        make_flag(f"extra-{n}")

    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:flags_flag_changelist"))

    assert response.status_code == 200
    content = response.content.decode()
    assert "<span class='ac-flag-state ac-flag-on'>production: on</span>" in content
    assert "<span class='ac-flag-state ac-flag-off'>staging: off</span>" in content
    assert content.count("ac-flag-state") == 22


def test_flag_add__boolean__created_off_and_redirected_to_its_page(admin_client, production):
    response = admin_client.post(
        reverse("admin:flags_flag_add"),
        {"key": "refunds", "kind": "boolean", "agent": "", "description": "", "owner": "billing"},
    )

    flag = Flag.objects.get(key="refunds")
    assert response.status_code == 302
    assert response["Location"] == url("change", flag)
    assert flag.history.get().history_user.username == "admin"
    assert not state(flag, production).enabled


def test_flag_add__invalid__errors_next_to_fields_nothing_saved(admin_client, production):
    response = admin_client.post(
        reverse("admin:flags_flag_add"),
        {"key": "agent.support-bot", "kind": "string", "agent": "", "variants": '[{"name": 1}]'},
    )

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "reserved for agent configurations" in " ".join(form.errors["key"])
    assert not Flag.objects.exists()


def test_flag_add__string_flag_without_variants__error_on_variants(admin_client, production):
    response = admin_client.post(
        reverse("admin:flags_flag_add"), {"key": "copy", "kind": "string", "variants": ""}
    )

    assert "list the variants" in " ".join(response.context["adminform"].form.errors["variants"])


# --- the flag page ----------------------------------------------------------------------------


def test_flag_page__environments_actions_gates_and_changes(admin_client, flag, agent):
    flag_services.create_tool_gate(
        agent=agent, tool_name="web_search", flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )

    response = admin_client.get(url("change", flag))

    assert response.status_code == 200
    content = response.content.decode()
    assert url("rules", flag, "production") in content
    assert url("kill", flag, "production") in content  # on in production
    assert url("enable", flag, "staging") in content  # off in staging
    assert url("evaluate", flag) in content
    assert "<code>web_search</code>" in content
    changes = response.context["changes"]
    assert [(c.what, c.action) for c in changes[:3]] == [
        ("tool gate support-bot: web_search", "created"),
        ("production", "changed"),
        ("production", "changed"),
    ]
    assert admin_client.get(reverse("admin:flags_flag_history", args=[flag.pk])).status_code == 200


def test_flag_page__viewer__no_action_buttons(client_with_permissions, flag):
    client = client_with_permissions(VIEW)

    content = client.get(url("change", flag)).content.decode()

    assert url("kill", flag, "production") not in content
    assert url("rules", flag, "production") not in content


def test_flag_page__html_in_reason_and_description__escaped(admin_client, flag, production):
    flag_services.update_flag(
        flag=flag, actor=ACTOR, description="<script>alert(1)</script>", owner=""
    )
    flag_services.kill_flag(
        flag=flag, environment=production, actor=ACTOR, reason="<script>x</script>"
    )

    content = admin_client.get(url("change", flag)).content.decode()

    assert "<script>alert(1)</script>" not in content
    assert "<script>x</script>" not in content
    assert "&lt;script&gt;x&lt;/script&gt;" in content


def test_flag_change__description__saved_through_service_with_history(admin_client, flag):
    response = admin_client.post(
        url("change", flag), {"description": "Web search", "owner": "search"}
    )

    assert response.status_code == 302
    flag.refresh_from_db()
    assert (flag.description, flag.owner) == ("Web search", "search")
    assert flag.history.first().history_user.username == "admin"


def test_flag_change__variant_still_served__error_on_field_nothing_saved(admin_client, production):
    copy = make_flag(
        "banner",
        kind="string",
        variants=[{"name": "short", "value": "Hi"}, {"name": "long", "value": "Hello"}],
    )
    set_rules(copy, production, [], default_variant="long")

    response = admin_client.post(
        url("change", copy),
        {"description": "", "owner": "", "variants": '[{"name": "short", "value": "Hi"}]'},
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["variants"]
    assert errors == [
        "production serves 'long' as its default variant; choose another there first."
    ]
    copy.refresh_from_db()
    assert len(copy.variants) == 2


# --- rules ------------------------------------------------------------------------------------


def test_rules_page__get__current_rules_and_explanation(admin_client, flag):
    response = admin_client.get(url("rules", flag, "production"))

    assert response.status_code == 200
    form = response.context["form"]
    assert json.loads(form["rules"].value()) == [{"users": ["ana"], "variant": "on"}]
    assert form["revision"].value() == 2  # rules set, then turned on
    assert "semver_gte" in response.content.decode()


def test_rules_page__staging_valid_post__saved_and_redirected(admin_client, flag, staging):
    rules = [{"split": [{"variant": "on", "weight": 1000}, {"variant": "off", "weight": 9000}]}]

    response = admin_client.post(
        url("rules", flag, "staging"),
        {
            "default_variant": "off",
            "off_variant": "off",
            "rules": json.dumps(rules),
            "reason": "10 % rollout",
            "revision": "0",
        },
    )

    assert response.status_code == 302
    saved = state(flag, staging)
    assert (saved.rules, saved.change_reason, saved.updated_by_label) == (
        rules,
        "10 % rollout",
        "admin",
    )
    assert "Saved the rules of web-search in staging" in messages_of(response)[0]


def test_rules_page__production_needs_approval__opens_a_change_request(
    admin_client, flag, production
):
    rules = [{"split": [{"variant": "on", "weight": 1000}, {"variant": "off", "weight": 9000}]}]
    before = state(flag, production).rules
    data = {
        "default_variant": "off",
        "off_variant": "off",
        "rules": json.dumps(rules),
        "revision": "2",
    }

    without_reason = admin_client.post(url("rules", flag, "production"), data)
    response = admin_client.post(
        url("rules", flag, "production"), {**data, "reason": "10 % rollout"}
    )

    assert without_reason.status_code == 200
    assert "needs an approved change request" in without_reason.content.decode()
    change_request = DeploymentRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"].endswith(f"/deploymentrequest/{change_request.pk}/change/")
    assert change_request.proposal["change"]["rules"] == rules
    assert state(flag, production).rules == before  # runtimes keep their answers


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            '[{"conditions": [{"attribute": "c", "operator": "equal", "value": "DE"}],'
            ' "variant": "on"}]',
            "unknown operator 'equal'. Did you mean 'equals'?",
        ),
        ('[{"split": [{"variant": "on", "weight": 1000}]}]', "they must add up to 10000 (100 %)"),
        ('[{"variant": "maybe"}]', "'maybe' is not a variant of this flag"),
        ('[{"variant": "on", "variant": "off"}]', "the key 'variant' appears twice"),
        ("[{oops", "is not valid JSON"),
    ],
)
def test_rules_page__invalid__message_next_to_rules_nothing_saved(
    admin_client, flag, production, rules, message
):
    response = admin_client.post(
        url("rules", flag, "production"),
        {"default_variant": "off", "off_variant": "off", "rules": rules, "revision": "2"},
    )

    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors["rules"])
    assert state(flag, production).rules == [{"users": ["ana"], "variant": "on"}]


def test_rules_page__someone_saved_meanwhile__conflict_shown(admin_client, flag, production):
    set_rules(flag, production, [], default_variant="off")  # revision 2 -> 3

    response = admin_client.post(
        url("rules", flag, "production"),
        {"default_variant": "on", "off_variant": "off", "rules": "[]", "revision": "2"},
    )

    assert response.status_code == 200
    assert "while you were editing" in " ".join(response.context["form"].non_field_errors())
    assert state(flag, production).default_variant == "off"


def test_rules_page__without_change_permission__403_page(client_with_permissions, flag):
    client = client_with_permissions(VIEW, KILL)

    response = client.get(url("rules", flag, "production"))

    assert response.status_code == 403
    assert "flags.change_flag" in response.content.decode()


def test_rules_page__unknown_environment__404(admin_client, flag):
    assert admin_client.get(url("rules", flag, "mars")).status_code == 404


# --- turn on ----------------------------------------------------------------------------------


def test_enable__get_confirms_post_turns_on(admin_client, flag, staging):
    confirmation = admin_client.get(url("enable", flag, "staging"))
    assert confirmation.status_code == 200
    assert not state(flag, staging).enabled

    response = admin_client.post(url("enable", flag, "staging"), {"reason": "QA passed"})

    assert response.status_code == 302
    assert state(flag, staging).enabled
    assert state(flag, staging).change_reason == "QA passed"


# --- the kill switch --------------------------------------------------------------------------


def test_kill_switch__get__confirmation_with_required_reason_changes_nothing(
    client_with_permissions, flag, production
):
    client = client_with_permissions(VIEW, KILL)

    response = client.get(url("kill", flag, "production"))

    assert response.status_code == 200
    content = response.content.decode()
    assert "will be <strong>off</strong> in Production" in content
    assert 'name="reason"' in content and "required" in content
    assert state(flag, production).enabled


def test_kill_switch__post_with_reason__off_recorded_with_user_and_reason(
    client_with_permissions, flag, production, django_capture_on_commit_callbacks, settings
):
    client = client_with_permissions(VIEW, KILL)
    key = factories.create_api_key(production)[1]
    settings.AGENTCONFIG_REFRESH_INTERVAL = 60  # the change itself must reach this process
    assert evaluate_at_runtime(key, "web-search").json()["value"] is True  # a runtime serves it

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("kill", flag, "production"), {"reason": "search loops"})

    assert response.status_code == 302
    assert response["Location"] == url("change", flag)
    current = state(flag, production)
    assert not current.enabled
    row = current.history.first()
    assert row.history_change_reason == "Kill switch: search loops"
    assert row.history_user is not None and row.history_user.has_perm(KILL)
    assert evaluate_at_runtime(key, "web-search").json()["value"] is False  # at once, for all
    assert "Kill switch: web-search is off in production" in messages_of(response)[0]


def test_kill_switch__post_without_reason__error_and_still_on(admin_client, flag, production):
    response = admin_client.post(url("kill", flag, "production"), {"reason": ""})

    assert response.status_code == 200
    assert response.context["form"].errors["reason"] == [
        "is required: say why, so the history can tell."
    ]
    assert state(flag, production).enabled


@pytest.mark.parametrize("method", ["get", "post"])
def test_kill_switch__without_kill_switch_permission__403(
    client_with_permissions, flag, production, method
):
    client = client_with_permissions(VIEW, CHANGE)

    response = getattr(client, method)(url("kill", flag, "production"), {"reason": "x"})

    assert response.status_code == 403
    assert "flags.kill_switch" in response.content.decode()
    assert state(flag, production).enabled


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_kill_switch__other_methods__405_nothing_changed(admin_client, flag, production, method):
    response = getattr(admin_client, method)(url("kill", flag, "production"))

    assert response.status_code == 405
    assert state(flag, production).enabled


def test_kill_switch__already_off__warning_and_redirect(admin_client, flag, staging):
    response = admin_client.post(url("kill", flag, "staging"), {"reason": "x"})

    assert response.status_code == 302
    assert messages_of(response) == ["'web-search' is already off in staging."]


def test_flag_page__after_kill_switch__change_listed_with_reason(admin_client, flag, production):
    admin_client.post(url("kill", flag, "production"), {"reason": "search loops"})

    response = admin_client.get(url("change", flag))

    latest = response.context["changes"][0]
    assert (latest.what, latest.who, latest.reason) == (
        "production",
        "admin",
        "Kill switch: search loops",
    )
    assert [(c.field, c.old, c.new) for c in latest.changes] == [("enabled", "on", "off")]
    assert "Kill switch: search loops" in response.content.decode()


# --- evaluate for a user ----------------------------------------------------------------------


def test_evaluate_page__user__value_reason_and_rule(client_with_permissions, flag, production):
    client = client_with_permissions(VIEW)

    response = client.get(
        url("evaluate", flag),
        {"environment": production.pk, "targeting_key": "ana", "context": '{"plan": "pro"}'},
    )

    assert response.status_code == 200
    resolution = response.context["resolution"]
    assert (resolution.value, resolution.reason, resolution.rule_number) == (
        True,
        "TARGETING_MATCH",
        1,
    )
    assert "rule 1" in response.content.decode()


def test_evaluate_page__post__405(admin_client, flag):
    assert admin_client.post(url("evaluate", flag)).status_code == 405


# --- tool gates and deletion ------------------------------------------------------------------


def test_tool_gate_add__approval_environment__change_request_not_a_gate(admin_client, flag, agent):
    data = {"agent": agent.pk, "tool_name": "web_search", "flag": flag.pk}

    without_reason = admin_client.post(reverse("admin:flags_toolgate_add"), data)
    response = admin_client.post(
        reverse("admin:flags_toolgate_add"), {**data, "reason": "search for staff only"}
    )

    assert without_reason.status_code == 200
    assert "needs an approved change request" in without_reason.content.decode()
    assert response.status_code == 302
    assert not ToolGate.objects.exists()
    change = DeploymentRequest.objects.get().proposal["change"]
    assert change == {
        "op": "create_gate",
        "flag": "web-search",
        "agent": agent.slug,
        "tool": "web_search",
    }


def test_tool_gate_add__no_environment_needs_approval__through_service__listed(
    admin_client, flag, agent, production
):
    Environment.objects.filter(pk=production.pk).update(required_approvals=0)

    response = admin_client.post(
        reverse("admin:flags_toolgate_add"),
        {"agent": agent.pk, "tool_name": "web_search", "flag": flag.pk},
    )

    assert response.status_code == 302
    gate = ToolGate.objects.get()
    assert (gate.tool_name, gate.created_by_label) == ("web_search", "admin")
    listing = admin_client.get(reverse("admin:flags_toolgate_changelist")).content.decode()
    assert "web_search" in listing


def test_tool_gate_add__flag_of_another_agent__error_nothing_saved(admin_client, production, agent):
    from tests import factories

    other = factories.create_agent("other-bot")
    scoped = make_flag("other-flag", agent=other)

    response = admin_client.post(
        reverse("admin:flags_toolgate_add"),
        {"agent": agent.pk, "tool_name": "web_search", "flag": scoped.pk},
    )

    assert response.status_code == 200
    assert "scoped to the agent other-bot" in " ".join(
        response.context["adminform"].form.errors["flag"]
    )
    assert not ToolGate.objects.exists()


def test_tool_gate_delete__approval_environment__refused_with_the_reason_nothing_deleted(
    admin_client, flag, agent
):
    gate = flag_services.create_tool_gate(
        agent=agent, tool_name="web_search", flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )

    response = admin_client.post(
        reverse("admin:flags_toolgate_delete", args=[gate.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert "production requires 1 approval" in response.content.decode()
    assert ToolGate.objects.filter(pk=gate.pk).exists()


def test_tool_gate_delete__no_approval_needed__through_service_with_history(
    admin_client, flag, agent, production
):
    gate = flag_services.create_tool_gate(
        agent=agent, tool_name="web_search", flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )
    Environment.objects.filter(pk=production.pk).update(required_approvals=0)

    response = admin_client.post(
        reverse("admin:flags_toolgate_delete", args=[gate.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not ToolGate.objects.exists()
    deleted = ToolGate.history.get(history_type="-")
    assert (deleted.history_user.username, deleted.updated_by_label) == ("admin", "admin")


def test_flag_delete__gates_a_tool__refused_by_the_stock_page(admin_client, flag, agent):
    flag_services.create_tool_gate(
        agent=agent, tool_name="web_search", flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )

    response = admin_client.post(
        reverse("admin:flags_flag_delete", args=[flag.pk]), {"post": "yes"}
    )

    assert response.status_code == 200
    assert "protected" in response.content.decode()
    assert Flag.objects.filter(pk=flag.pk).exists()


def test_flag_delete__on_in_production__refused_until_approved(admin_client, flag):
    response = admin_client.post(
        reverse("admin:flags_flag_delete", args=[flag.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert "production requires 1 approval" in response.content.decode()
    assert Flag.objects.filter(pk=flag.pk).exists()


def test_flag_delete__off_everywhere__deleted_through_service(admin_client, production):
    unused = make_flag("unused")

    response = admin_client.post(
        reverse("admin:flags_flag_delete", args=[unused.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not Flag.objects.exists()
    assert Flag.history.get(history_type="-").history_user.username == "admin"
