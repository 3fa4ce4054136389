"""The OFREP endpoints through the official OpenFeature Python SDK and OFREP provider,
against a live server: a real OpenFeature client reads our flags."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from flags.services import flags as flag_services
from tests import factories
from tests.flags.helpers import ACTOR, banner_and_limits, make_flag, set_rules, turn_on

pytestmark = pytest.mark.django_db(transaction=True)

Connect = Callable[..., OpenFeatureClient]


@pytest.fixture
def production_key() -> str:
    # Transactional tests flush the migration's environments: recreate them.
    production = factories.environment("production")
    factories.environment("staging")
    agent = factories.create_agent("support-bot")
    search = make_flag("web-search")
    set_rules(
        search,
        production,
        [
            {"users": ["ana"], "variant": "on"},
            {
                "conditions": [
                    {"attribute": "app_version", "operator": "semver_gte", "value": "2.4.0"}
                ],
                "split": [{"variant": "on", "weight": 5000}, {"variant": "off", "weight": 5000}],
            },
        ],
        default_variant="off",
    )
    turn_on(search, production)
    banner_and_limits(agent, production)
    return factories.create_api_key(environment=production)[1]


@pytest.fixture
def connect(live_server) -> Iterator[Connect]:
    """An OpenFeature client whose provider is OFREP against the live server."""
    providers: list[OFREPProvider] = []

    def make(headers: dict[str, str]) -> OpenFeatureClient:
        provider = OFREPProvider(base_url=live_server.url, headers_factory=lambda: headers)
        providers.append(provider)
        domain = f"agentconfig-{len(providers)}"
        api.set_provider(provider, domain=domain)
        return api.get_client(domain=domain)

    yield make
    api.clear_providers()
    for provider in providers:
        provider.session.close()


@pytest.fixture
def client(connect, production_key) -> OpenFeatureClient:
    return connect({"Authorization": f"Bearer {production_key}"})


def test_openfeature__boolean_flag_targeted_user__true_targeting_match(client):
    details = client.get_boolean_details("web-search", False, EvaluationContext("ana"))

    assert (details.value, details.variant, details.reason) == (True, "on", Reason.TARGETING_MATCH)
    assert details.error_code is None
    assert details.flag_metadata == {"rule": 1}


def test_openfeature__boolean_flag_context_attribute_and_split__sticky_split(client):
    context = EvaluationContext("user-7", {"app_version": "2.5.0"})

    first = client.get_boolean_details("web-search", False, context)
    again = client.get_boolean_details("web-search", True, context)

    assert first.reason == Reason.SPLIT
    assert first.value is again.value
    assert first.flag_metadata == {"rule": 2}


def test_openfeature__boolean_flag_no_rule_matches__default_variant(client):
    details = client.get_boolean_details(
        "web-search", True, EvaluationContext("ben", {"app_version": "2.3.9"})
    )

    assert (details.value, details.variant, details.reason) == (False, "off", Reason.UNKNOWN)


def test_openfeature__string_flag__value_and_variant(client):
    details = client.get_string_details("banner", "fallback", EvaluationContext("ben"))

    assert (details.value, details.variant, details.reason) == (
        "Hello there",
        "long",
        Reason.STATIC,
    )


def test_openfeature__object_flag_off__off_variant_object(client):
    details = client.get_object_details("limits", {"max": 0}, EvaluationContext("ben"))

    assert (details.value, details.variant, details.reason) == (
        {"max": 3},
        "small",
        Reason.DISABLED,
    )


def test_openfeature__missing_flag__default_value_with_flag_not_found(client):
    details = client.get_boolean_details("no-such-flag", True, EvaluationContext("ben"))

    assert (details.value, details.reason, details.error_code) == (
        True,
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    assert "no-such-flag" in details.error_message


def test_openfeature__wrong_type__default_value_with_type_mismatch(client):
    details = client.get_boolean_details("banner", False, EvaluationContext("ben"))

    assert (details.value, details.error_code) == (False, ErrorCode.TYPE_MISMATCH)


def test_openfeature__split_without_targeting_key__targeting_key_missing(client):
    details = client.get_boolean_details(
        "web-search", False, EvaluationContext(attributes={"app_version": "3.0.0"})
    )

    assert (details.value, details.error_code) == (False, ErrorCode.TARGETING_KEY_MISSING)


def test_openfeature__wrong_key__provider_error_and_default(connect, production_key):
    client = connect({"Authorization": "Bearer acfg_000000000000_wrongwrongwrongwrongwrong"})

    details = client.get_string_details("banner", "fallback", EvaluationContext("ben"))

    assert (details.value, details.reason, details.error_code) == (
        "fallback",
        Reason.ERROR,
        ErrorCode.GENERAL,
    )
    assert details.error_message == "unauthorized"


def test_openfeature__x_api_key_header__authenticated(connect, production_key):
    client = connect({"X-API-Key": production_key})

    assert client.get_string_value("banner", "fallback", EvaluationContext("ben")) == "Hello there"


def test_openfeature__kill_switch__next_evaluation_serves_off(client):
    from deployments.models import Environment
    from flags.models import Flag

    assert client.get_boolean_value("web-search", False, EvaluationContext("ana")) is True

    flag_services.kill_flag(
        flag=Flag.objects.get(key="web-search"),
        environment=Environment.objects.get(slug="production"),
        actor=ACTOR,
        reason="search results loop",
    )

    details = client.get_boolean_details("web-search", True, EvaluationContext("ana"))
    assert (details.value, details.reason) == (False, Reason.DISABLED)
