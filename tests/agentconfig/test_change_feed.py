"""The change feed: written in the write's own transaction, read exactly once by every reader."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from agentconfig.core.actors import Actor
from agentconfig.core.change_feed import FeedReader, record_change
from agentconfig.models import Change, ChangeTopic
from deployments.services import api_keys, canaries, releases
from flags.services import flags as flag_services
from tests import factories
from tests.factories import SETUP_BREAK_GLASS
from tests.flags.helpers import make_flag

ACTOR = Actor.system("tests")


def test_record_change__outside_a_transaction__refused(db):
    # pytest-django's db fixture wraps the test in a transaction: leave it for this check.
    connection.in_atomic_block, saved = False, connection.in_atomic_block
    try:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            record_change(topic=ChangeTopic.FLAGS)
    finally:
        connection.in_atomic_block = saved


@pytest.mark.django_db(transaction=True)
def test_record_change__write_rolled_back__leaves_no_change():
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    v1 = factories.create_version(agent)
    before = Change.objects.count()

    # When the deploy's transaction fails after the service wrote its rows
    with pytest.raises(RuntimeError, match="boom"), transaction.atomic():
        factories.deploy(v1, production)
        assert Change.objects.count() == before + 1  # written inside the transaction
        raise RuntimeError("boom")

    # Then neither the pointer nor its change exists
    assert Change.objects.count() == before
    assert not agent.pointers.exists()


@pytest.mark.django_db(transaction=True)
def test_record_change__write_committed__always_has_its_change():
    production = factories.environment("production")
    agent = factories.create_agent(slug="support-bot")
    v1 = factories.create_version(agent)
    reader = FeedReader()
    reader.start()

    factories.deploy(v1, production)

    changes = reader.poll()
    assert [(c.topic, c.agent_slug, c.environment_id) for c in changes] == [
        (ChangeTopic.AGENT, "support-bot", production.pk)
    ]
    assert reader.poll() == []  # each change is read once


def _deploy(agent, production, staging):
    factories.deploy(factories.create_version(agent), production)


def _rollback(agent, production, staging):
    factories.deploy(factories.create_version(agent), production)
    factories.deploy(factories.create_version(agent), production)
    releases.rollback(agent=agent, environment=production, actor=ACTOR, reason="bad")


def _canary_lifecycle(agent, production, staging):
    factories.deploy(factories.create_version(agent), staging)
    version = factories.create_version(agent)
    steps = {"steps": "10,50", "bake_minutes": 0}
    canaries.start_canary(
        agent=agent, environment=staging, version=version, actor=ACTOR, reason="try", **steps
    )
    canaries.set_canary_percent(
        agent=agent, environment=staging, percent=20, actor=ACTOR, reason="more"
    )
    canaries.advance_canary(agent=agent, environment=staging, actor=ACTOR, reason="next")
    canaries.abort_canary(agent=agent, environment=staging, actor=ACTOR, reason="stop")


def _flag_lifecycle(agent, production, staging):
    flag = make_flag("web-search", agent=agent)
    flag_services.set_flag_enabled(
        flag=flag, environment=production, enabled=True, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )
    flag_services.set_flag_rules(
        flag=flag,
        environment=production,
        actor=ACTOR,
        rules=[{"users": ["ana"], "variant": "off"}],
        default_variant="on",
        off_variant="off",
        break_glass=SETUP_BREAK_GLASS,
    )
    gate = flag_services.create_tool_gate(
        agent=agent, tool_name="lookup_order", flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS
    )
    flag_services.kill_flag(flag=flag, environment=production, actor=ACTOR, reason="loops")
    flag_services.delete_tool_gate(gate=gate, actor=ACTOR, break_glass=SETUP_BREAK_GLASS)
    flag_services.delete_flag(flag=flag, actor=ACTOR, break_glass=SETUP_BREAK_GLASS)


def _key_lifecycle(agent, production, staging):
    key, _ = factories.create_api_key(production, name="runtime-eu")
    api_keys.revoke_api_key(key=key, actor=ACTOR, reason="rotated")


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (_deploy, [ChangeTopic.AGENT]),
        (_rollback, [ChangeTopic.AGENT] * 3),
        # start, percentage, advance, abort
        (_canary_lifecycle, [ChangeTopic.AGENT] * 5),
        # create, on, rules, gate, kill, ungate, delete
        (_flag_lifecycle, [ChangeTopic.FLAGS] * 7),
        (_key_lifecycle, [ChangeTopic.API_KEY] * 2),
    ],
    ids=["deploy", "rollback", "canary", "flags", "api-keys"],
)
def test_every_runtime_write__records_one_change_per_step(write, expected, db):
    # Given an agent (its creation is itself a change) and a reader positioned after it
    production, staging = factories.environment("production"), factories.environment("staging")
    agent = factories.create_agent(slug="support-bot")
    reader = FeedReader()
    reader.start()

    write(agent, production, staging)

    assert [c.topic for c in reader.poll()] == expected


def test_create_agent__records_a_change_for_its_slug(db):
    reader = FeedReader()
    reader.start()

    factories.create_agent(slug="new-bot")

    assert [(c.topic, c.agent_slug) for c in reader.poll()] == [(ChangeTopic.AGENT, "new-bot")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_feed_reader__row_committed_after_a_newer_one__still_read_once():
    # PostgreSQL assigns ids at insert time: a transaction that inserted first may commit last.
    reader = FeedReader()
    reader.start()
    inserted, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                record_change(topic=ChangeTopic.FLAGS)
                inserted.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    # Given a slow transaction that inserted its change (lower id) and has not committed
    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert inserted.wait(timeout=10)
    # When a second writer commits a change with a higher id, and the reader polls
    with transaction.atomic():
        record_change(topic=ChangeTopic.API_KEY, api_key_id="abc")
    first = reader.poll()
    # ...and then the slow transaction commits
    release.set()
    thread.join(timeout=10)
    second = reader.poll()

    # Then each change is read exactly once, the late one by the next poll
    assert [c.topic for c in first] == [ChangeTopic.API_KEY]
    assert [c.topic for c in second] == [ChangeTopic.FLAGS]
    assert reader.poll() == []
    assert first[0].id > second[0].id
