"""Flag changes that reach an approval environment's runtimes go through change requests.

Each former bypass (an editor turning a flag on, gating a tool, editing a JSON variant in
production without anyone's review; undoing a kill switch without its permission) is
refused by the service, proposed as a request, approved by someone else and applied
through the one service that writes it.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden, ServiceError
from delivery.snapshot import snapshot
from deployments.models import RequestKind, RequestStatus
from deployments.services import requests as request_services
from flags.approvals import ApprovalRequired, flag_state
from flags.models import FlagEnvironment, ToolGate
from flags.services import flags as flag_services
from flags.services.requests import describe_change, propose_flag_change
from tests import factories
from tests.factories import login
from tests.flags.helpers import make_flag, set_rules, turn_on


@pytest.fixture
def served(agent, production):
    """support-bot v1 with two tools, live in production, and a key to ask with."""
    version = factories.create_version(agent, tools=["lookup_invoice", "escalate_to_human"])
    factories.deploy(version, production)
    return factories.create_api_key(production)[1]


def tools_for(client, key: str, user: str) -> list[str]:
    snapshot.poke()  # this test process made the change; serve it now
    response = client.get(
        f"/api/v1/agents/support-bot/config?user_id={user}", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    return response.json()["config"]["tools"]


def propose(refusal: ApprovalRequired, who) -> object:
    return propose_flag_change(required=refusal, actor=Actor.of(who), reason="beta for staff")


def approve(request, who) -> None:
    request_services.approve_request(request=request, actor=Actor.of(who), comment="checked")


# --- the former bypasses -------------------------------------------------------------------


def test_tool_gate_by_an_editor__production_needs_approval__request_then_tools_change(
    client, agent, production, served, people
):
    # Given an editor who gates escalate_to_human behind a new, off flag
    flag = make_flag("human-handoff")
    pm = Actor.of(people["editor"])
    with pytest.raises(ApprovalRequired) as refused:
        flag_services.create_tool_gate(
            agent=agent, tool_name="escalate_to_human", flag=flag, actor=pm
        )

    # When the refusal is proposed as a change request
    change_request = propose(refused.value, people["editor"])

    # Then production's runtimes are unchanged until it is approved and applied
    assert not ToolGate.objects.exists()
    assert "escalate_to_human" in tools_for(client, served, "user-1")
    assert change_request.kind == RequestKind.FLAG
    assert change_request.environment == production
    approve(change_request, people["reviewer"])
    request_services.apply_request(request=change_request, actor=Actor.of(people["deployer"]))
    assert "escalate_to_human" not in tools_for(client, served, "user-1")
    change_request.refresh_from_db()
    assert change_request.status == RequestStatus.APPLIED


def test_turn_on_by_an_editor__production__refused_then_proposed(agent, production, people):
    flag = make_flag("web-search")

    with pytest.raises(ApprovalRequired, match="production requires 1 approval"):
        flag_services.set_flag_enabled(
            flag=flag, environment=production, enabled=True, actor=Actor.of(people["editor"])
        )

    assert not FlagEnvironment.objects.get(flag=flag, environment=production).enabled


def test_turn_on_by_an_editor__staging_needs_no_approval__applied_at_once(staging, people):
    flag = make_flag("web-search")

    flag_services.set_flag_enabled(
        flag=flag, environment=staging, enabled=True, actor=Actor.of(people["editor"])
    )

    assert FlagEnvironment.objects.get(flag=flag, environment=staging).enabled


def test_json_variant_edit__served_in_every_environment__needs_approval(production, people):
    # Given a JSON flag whose value production serves (off variant)
    flag = make_flag(
        "refund-limits",
        kind="json",
        variants=[{"name": "off", "value": {"max_refund": 50}}, {"name": "on", "value": {}}],
    )

    # When an editor changes the values served everywhere
    with pytest.raises(ApprovalRequired) as refused:
        flag_services.update_flag(
            flag=flag,
            actor=Actor.of(people["editor"]),
            description=flag.description,
            owner=flag.owner,
            variants=[
                {"name": "off", "value": {"max_refund": 100000}},
                {"name": "on", "value": {}},
            ],
        )

    # Then nothing changed and the request to make is judged in production
    flag.refresh_from_db()
    assert flag.variants[0]["value"] == {"max_refund": 50}
    assert refused.value.environment == production
    assert refused.value.change["op"] == "set_variants"


def test_kill_switch__editor_cannot_undo_it_even_where_no_approval_is_needed(staging, people):
    # Given a flag killed by an operator in staging (no approval needed there)
    flag = make_flag("web-search")
    turn_on(flag, staging)
    flag_services.kill_flag(
        flag=flag, environment=staging, actor=Actor.of(people["deployer"]), reason="loops"
    )
    pm = Actor.of(people["editor"])

    # Then the editor can neither turn it back on nor serve "on" while it is off
    with pytest.raises(Forbidden, match="undo the kill switch"):
        flag_services.set_flag_enabled(flag=flag, environment=staging, enabled=True, actor=pm)
    with pytest.raises(Forbidden, match="undo the kill switch"):
        set_rules(flag, staging, [], default_variant="on", off_variant="on", actor=pm)
    state = FlagEnvironment.objects.get(flag=flag, environment=staging)
    assert (state.enabled, state.off_variant) == (False, "off")


def test_kill_switch__operator__immediate_without_approval_and_may_undo(staging, people):
    flag = make_flag("web-search")
    turn_on(flag, staging)
    operator = Actor.of(people["deployer"])

    flag_services.kill_flag(flag=flag, environment=staging, actor=operator, reason="loops")
    # A deployer holds the kill-switch permission but not flags.change_flag: undoing it
    # needs both, so an admin (or an editor with the operator) brings it back.
    admin = Actor.of(people["admin"])
    flag_services.set_flag_enabled(flag=flag, environment=staging, enabled=True, actor=admin)

    state = FlagEnvironment.objects.get(flag=flag, environment=staging)
    assert state.enabled and state.killed_at is None


def test_kill_switch__production__immediate_without_a_request(production, people):
    flag = make_flag("web-search")
    turn_on(flag, production)

    flag_services.kill_flag(
        flag=flag, environment=production, actor=Actor.of(people["deployer"]), reason="loops"
    )

    assert not FlagEnvironment.objects.get(flag=flag, environment=production).enabled


# --- request mechanics ----------------------------------------------------------------------


def _proposed_turn_on(production, people):
    flag = make_flag("web-search")
    with pytest.raises(ApprovalRequired) as refused:
        flag_services.set_flag_enabled(
            flag=flag, environment=production, enabled=True, actor=Actor.of(people["editor"])
        )
    return flag, propose(refused.value, people["editor"])


def test_apply__without_approval__refused(production, people):
    _, change_request = _proposed_turn_on(production, people)

    with pytest.raises(Forbidden, match="has 0 of the 1 approval"):
        request_services.apply_request(request=change_request, actor=Actor.of(people["deployer"]))


def test_approve__by_the_requester__refused(production, people):
    _, change_request = _proposed_turn_on(production, people)
    pm_as_reviewer = people["editor_reviewer"]
    own = propose_flag_change(
        required=ApprovalRequired(
            "", change={**change_request.proposal["change"]}, environment=production
        ),
        actor=Actor.of(pm_as_reviewer),
        reason="mine",
    )

    with pytest.raises(Forbidden, match="your own request"):
        approve(own, pm_as_reviewer)


def test_apply__flag_moved_after_the_approval__approval_stale_and_refused(
    production, staging, people
):
    # Given an approved request to turn the flag on in production
    flag, change_request = _proposed_turn_on(production, people)
    approve(change_request, people["reviewer"])

    # When the flag's state moves (rules in staging) after the approval
    set_rules(flag, staging, [{"users": ["ana"], "variant": "on"}])

    # Then the approval no longer counts
    with pytest.raises(Forbidden, match="no longer count"):
        request_services.apply_request(request=change_request, actor=Actor.of(people["deployer"]))


def test_apply__confirmed_state_moved__conflict(production, staging, people):
    flag, change_request = _proposed_turn_on(production, people)
    approve(change_request, people["reviewer"])
    seen = flag_state(flag)
    set_rules(flag, staging, [{"users": ["ben"], "variant": "on"}])

    with pytest.raises(Conflict, match="moved while you were reviewing"):
        request_services.apply_request(
            request=change_request, actor=Actor.of(people["deployer"]), expected_state=seen
        )


def test_apply__by_an_editor__refused_deployers_apply(production, people):
    flag, change_request = _proposed_turn_on(production, people)
    approve(change_request, people["reviewer"])

    with pytest.raises(Forbidden, match="apply approved change requests"):
        request_services.apply_request(request=change_request, actor=Actor.of(people["editor"]))

    request_services.apply_request(request=change_request, actor=Actor.of(people["deployer"]))
    assert FlagEnvironment.objects.get(flag=flag, environment=production).enabled


def test_service__request_for_another_change__refused(production, people):
    flag, change_request = _proposed_turn_on(production, people)
    approve(change_request, people["reviewer"])

    with pytest.raises(ServiceError, match="approved another change"):
        set_rules(
            flag,
            production,
            [{"users": ["ana"], "variant": "on"}],
            actor=Actor.of(people["deployer"]),
            request=change_request,
        )


def test_withdraw__only_the_requester_or_an_admin(production, people):
    _, change_request = _proposed_turn_on(production, people)

    with pytest.raises(Forbidden, match="only its requester"):
        request_services.withdraw_request(
            request=change_request, actor=Actor.of(people["reviewer"])
        )

    request_services.withdraw_request(request=change_request, actor=Actor.of(people["editor"]))
    change_request.refresh_from_db()
    assert change_request.status == RequestStatus.WITHDRAWN


def test_describe__gate_on_an_off_flag__everyone_loses_the_tool(agent, production, served):
    flag = make_flag("human-handoff")
    change = {
        "op": "create_gate",
        "flag": flag.key,
        "agent": agent.slug,
        "tool": "escalate_to_human",
    }

    lines = describe_change(change)

    assert "production (support-bot): 10,000 of 10,000 users lose the tool escalate_to_human." in (
        lines
    )


def test_describe__thirty_percent_split__about_seventy_percent_lose_it(agent, production, served):
    flag = make_flag("human-handoff")
    flag_services.create_tool_gate(
        agent=agent,
        tool_name="escalate_to_human",
        flag=flag,
        actor=factories.ACTOR,
        break_glass=factories.SETUP_BREAK_GLASS,
    )
    turn_on(flag, production)
    change = {
        "op": "set_rules",
        "flag": flag.key,
        "environment": "production",
        "rules": [
            {"split": [{"variant": "on", "weight": 3000}, {"variant": "off", "weight": 7000}]}
        ],
        "default_variant": "on",
        "off_variant": "off",
    }

    lines = describe_change(change)

    loses = next(line for line in lines if "lose the tool" in line)
    count = int(loses.split(": ")[1].split(" of ")[0].replace(",", ""))
    assert 6700 < count < 7300


# --- races (PostgreSQL, threads) ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_apply__two_operators_at_once__one_applies_the_other_conflicts():
    production = factories.environment("production")
    factories.create_agent(slug="support-bot")
    people = factories.People()
    flag, change_request = _proposed_turn_on(production, people)
    approve(change_request, people["reviewer"])
    operators = [Actor.of(people["deployer"]), Actor.of(people["deployer2"])]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def apply(actor: Actor) -> None:
        try:
            barrier.wait(timeout=10)
            request_services.apply_request(request=change_request, actor=actor)
            outcomes.append("applied")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=apply, args=(actor,)) for actor in operators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert sorted(outcomes) == ["applied", "conflict"]
    assert FlagEnvironment.objects.get(flag=flag, environment=production).revision == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_approve_and_state_change_at_once__approval_never_counts_for_the_new_state():
    # Given a request, and a reviewer approving while the flag's state moves
    production, staging = factories.environment("production"), factories.environment("staging")
    people = factories.People()
    flag, change_request = _proposed_turn_on(production, people)
    seen = change_request.base_state
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def review() -> None:
        try:
            barrier.wait(timeout=10)
            request_services.approve_request(
                request=change_request,
                actor=Actor.of(people["reviewer"]),
                comment="ok",
                seen_state=seen,
            )
            outcomes.append("approved")
        except Conflict:
            outcomes.append("refused")
        finally:
            connection.close()

    def move() -> None:
        try:
            barrier.wait(timeout=10)
            set_rules(flag, staging, [{"users": ["ana"], "variant": "on"}])
        finally:
            connection.close()

    threads = [threading.Thread(target=review), threading.Thread(target=move)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    # Then either the review was refused, or it was recorded on the old state and is stale
    if outcomes == ["approved"]:
        with pytest.raises(Forbidden, match="no longer count"):
            request_services.apply_request(
                request=change_request, actor=Actor.of(people["deployer"])
            )
    else:
        assert outcomes == ["refused"]


def test_requests_list__flag_request_without_agent__listed_not_a_500(
    admin_client, production, people
):
    _, change_request = _proposed_turn_on(production, people)

    response = admin_client.get("/admin/deployments/deploymentrequest/")

    assert response.status_code == 200
    assert "turn web-search on in production" in response.content.decode()
    assert change_request.agent is None


def test_request_page__flag_request__says_what_changes_and_offers_review(
    production, people, served
):
    _, change_request = _proposed_turn_on(production, people)

    page = login(people["reviewer"]).get(
        f"/admin/deployments/deploymentrequest/{change_request.pk}/change/"
    )

    content = page.content.decode()
    assert page.status_code == 200
    assert "Turn web-search on in production." in content
    assert 'id="review_form"' in content and 'id="apply_form"' not in content
