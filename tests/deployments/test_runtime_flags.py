"""Flags on the config endpoint: evaluated per user and context, gating tools, live on change."""

import base64
import json

import pytest
from django.urls import reverse

from agentconfig.core.actors import Actor
from flags.services import flags as flag_services
from tests import factories
from tests.factories import SETUP_BREAK_GLASS
from tests.flags.helpers import make_flag, set_rules, turn_on

OPS = Actor.system("ops")


@pytest.fixture
def gated(agent, production, django_capture_on_commit_callbacks):
    """support-bot v1 in production with tools [lookup_order, refunds]; refunds gated."""
    with django_capture_on_commit_callbacks(execute=True):
        version = factories.create_version(agent, tools=["lookup_order", "refunds"])
        factories.deploy(version, production)
        flag = make_flag("refunds-tool", agent=agent)
        set_rules(
            flag,
            production,
            [
                {"users": ["staff-1"], "variant": "on"},
                {
                    "conditions": [{"attribute": "plan", "operator": "equals", "value": "pro"}],
                    "variant": "on",
                },
            ],
            default_variant="off",
        )
        flag_services.create_tool_gate(
            agent=agent, tool_name="refunds", flag=flag, actor=OPS, break_glass=SETUP_BREAK_GLASS
        )
        turn_on(flag, production)
    return flag


def get(client, key, **query):
    headers = query.pop("headers", {})
    return client.get(
        reverse("runtime-config", args=["support-bot"]),
        query,
        HTTP_AUTHORIZATION=f"Bearer {key}",
        **headers,
    )


def test_config__gated_tool__only_for_users_the_flag_is_on_for(client, gated, api_key):
    staff = get(client, api_key, user_id="staff-1").json()
    customer = get(client, api_key, user_id="customer-9").json()

    assert staff["config"]["tools"] == ["lookup_order", "refunds"]
    assert customer["config"]["tools"] == ["lookup_order"]
    assert staff["flags"]["refunds-tool"] == {
        "reason": "TARGETING_MATCH",
        "value": True,
        "variant": "on",
        "rule_number": 1,
    }
    assert customer["flags"]["refunds-tool"]["value"] is False


def test_config__context_from_query_and_header__matches_attribute_rules(client, gated, api_key):
    by_query = get(client, api_key, user_id="c-1", **{"ctx.plan": "pro"}).json()
    header = {"HTTP_X_AGENTCONFIG_CONTEXT": json.dumps({"plan": "pro"})}
    by_header = get(client, api_key, user_id="c-1", headers=header).json()
    encoded = base64.urlsafe_b64encode(b'{"plan": "pro"}').decode().rstrip("=")
    by_base64 = get(client, api_key, user_id="c-1", headers={"HTTP_X_AGENTCONFIG_CONTEXT": encoded})

    assert "refunds" in by_query["config"]["tools"]
    assert "refunds" in by_header["config"]["tools"]
    assert "refunds" in by_base64.json()["config"]["tools"]


def test_config__bad_context_header__400_invalid_context(client, gated, api_key):
    response = get(client, api_key, headers={"HTTP_X_AGENTCONFIG_CONTEXT": "[not an object"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_context"


def test_config__kill_switch__tool_disappears_on_next_request(
    client, gated, api_key, production, django_capture_on_commit_callbacks
):
    assert "refunds" in get(client, api_key, user_id="staff-1").json()["config"]["tools"]

    with django_capture_on_commit_callbacks(execute=True):
        flag_services.kill_flag(flag=gated, environment=production, actor=OPS, reason="bug")

    body = get(client, api_key, user_id="staff-1").json()
    assert body["config"]["tools"] == ["lookup_order"]
    assert body["flags"]["refunds-tool"]["reason"] == "DISABLED"


def test_config__flag_change__no_new_version(client, gated, api_key, agent, production):
    versions_before = agent.versions.count()

    flag_services.kill_flag(flag=gated, environment=production, actor=OPS, reason="x")

    assert agent.versions.count() == versions_before


def test_config__flags_warm_cache__no_query_and_etag_per_user(
    client, gated, api_key, django_assert_num_queries
):
    get(client, api_key, user_id="staff-1")

    with django_assert_num_queries(0):
        staff = get(client, api_key, user_id="staff-1")
        customer = get(client, api_key, user_id="customer-9")

    assert staff["ETag"] != customer["ETag"]
    assert (
        get(
            client, api_key, user_id="staff-1", headers={"HTTP_IF_NONE_MATCH": staff["ETag"]}
        ).status_code
        == 304
    )
    assert "X-Agentconfig-Context" in staff["Vary"]
