"""deployments 0009: a release's request and rollout move from `details` into foreign keys,
and back, without losing a row's data (on PostgreSQL past the append-only trigger)."""

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from deployments.models import DeploymentRequest, ReleaseLogEntry
from deployments.services import canaries
from tests import factories

BEFORE = [("deployments", "0008_canary_decisions")]
AFTER = [("deployments", "0009_release_relations")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def _details_at_0008():
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, details FROM deployments_releaselogentry ORDER BY id")
        rows = cursor.fetchall()
    return {
        pk: details if isinstance(details, dict) else json.loads(details) for pk, details in rows
    }


@pytest.mark.django_db(transaction=True)
def test_migration_0009__round_trip__request_and_rollout_kept(staging):
    # Given a canary start (rollout), a release applying a request, and a plain deploy
    agent = factories.create_agent(slug="support-bot")
    v1 = factories.create_version(agent)
    factories.deploy(v1, staging)
    v2 = factories.create_version(agent, system_prompt="v2")
    rollout = canaries.start_canary(
        agent=agent,
        environment=staging,
        version=v2,
        actor=factories.ACTOR,
        reason="try v2",
        percent=10,
    )
    request = DeploymentRequest.objects.create(
        agent=agent, environment=staging, version=v2, reason="ship", requested_by_label="pm"
    )
    applied = ReleaseLogEntry.objects.create(
        agent=agent,
        environment=staging,
        kind="deploy",
        from_version=v1,
        to_version=v2,
        actor_label="deployer",
        reason="ship",
        request=request,
        details={"evaluation": "passed"},
    )
    start = ReleaseLogEntry.objects.get(rollout=rollout)
    plain = ReleaseLogEntry.objects.exclude(pk__in=[applied.pk, start.pk]).get()

    try:
        # When the schema goes back to 0008: the relations are ids inside details again
        _migrate(BEFORE)
        details = _details_at_0008()
        assert details[applied.pk] == {"evaluation": "passed", "request": request.pk}
        assert details[start.pk]["rollout"] == str(rollout.pk)
        assert details[start.pk]["steps"] == [10.0]
        assert details[plain.pk] == {}
    finally:
        # And forward to 0009 again
        _migrate(AFTER)

    # Then each row has its relation as a key, and details only the extras
    applied, start, plain = (
        ReleaseLogEntry.objects.get(pk=pk) for pk in (applied.pk, start.pk, plain.pk)
    )
    assert applied.request_id == request.pk and applied.details == {"evaluation": "passed"}
    assert start.rollout_id == rollout.pk and "rollout" not in start.details
    assert start.details["steps"] == [10.0]
    assert plain.request_id is None and plain.rollout_id is None and plain.details == {}
    assert list(request.releases.all()) == [applied]
