"""`agent.<slug>` over OFREP: the runtime config as an object flag, read by the real client."""

from __future__ import annotations

import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from deployments.services.canaries import start_canary
from flags.services import flags as flag_services
from tests import factories
from tests.factories import SETUP_BREAK_GLASS
from tests.flags.helpers import ACTOR, make_flag, set_rules, turn_on

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def setup(live_server):
    production = factories.environment("production")
    agent = factories.create_agent("support-bot")
    v1 = factories.create_version(agent, tools=["lookup_order", "refunds"])
    v2 = factories.create_version(agent, tools=["lookup_order", "refunds"])
    factories.deploy(v1, production)
    flag = make_flag("refunds-tool", agent=agent)
    set_rules(flag, production, [{"users": ["staff-1"], "variant": "on"}], default_variant="off")
    flag_services.create_tool_gate(
        agent=agent, tool_name="refunds", flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )
    turn_on(flag, production)
    key = factories.create_api_key(environment=production)[1]
    provider = OFREPProvider(
        base_url=live_server.url, headers_factory=lambda: {"Authorization": f"Bearer {key}"}
    )
    api.set_provider(provider, domain="agent-config")
    yield api.get_client(domain="agent-config"), agent, production, v1, v2
    api.clear_providers()
    provider.session.close()


def test_agent_flag__same_config_as_the_endpoint_with_gated_tools(setup):
    openfeature, _, _, v1, _ = setup

    staff = openfeature.get_object_details("agent.support-bot", {}, EvaluationContext("staff-1"))
    other = openfeature.get_object_details("agent.support-bot", {}, EvaluationContext("u-7"))

    assert staff.value["version"]["id"] == str(v1.id)
    assert staff.value["config"]["tools"] == ["lookup_order", "refunds"]
    assert other.value["config"]["tools"] == ["lookup_order"]
    assert staff.variant == "stable:v1" and staff.reason == Reason.TARGETING_MATCH


def test_agent_flag__canary_running__routed_like_the_endpoint(setup):
    openfeature, agent, production, _, v2 = setup
    start_canary(
        agent=agent,
        environment=production,
        version=v2,
        actor=ACTOR,
        reason="r",
        percent="50",
        break_glass="test setup",
    )

    tracks = {
        openfeature.get_object_details(
            "agent.support-bot", {}, EvaluationContext(f"user-{i}")
        ).value["track"]
        for i in range(30)
    }

    assert tracks == {"stable", "canary"}


def test_agent_flag__unknown_agent__flag_not_found_default(setup):
    openfeature = setup[0]

    details = openfeature.get_object_details("agent.nobody", {"fallback": True})

    assert details.value == {"fallback": True}
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
