"""deployments.services.releases: pointer moves are atomic, logged, checked and race-free."""

import itertools
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden, ImmutableRecord, NotFound, ServiceError
from deployments.models import Pointer, ReleaseKind, ReleaseLogEntry
from deployments.selectors import list_rollback_targets
from deployments.services.releases import deploy_version, rollback
from tests import factories


def test_deploy_version__first_deploy__creates_pointer_and_log_row(agent, staging):
    version = factories.create_version(agent)

    entry = deploy_version(
        agent=agent,
        environment=staging,
        version=version,
        actor=Actor.system("ops"),
        reason="launch",
    )

    pointer = Pointer.objects.get(agent=agent, environment=staging)
    assert pointer.stable_version == version
    assert (entry.kind, entry.from_version, entry.to_version) == (ReleaseKind.DEPLOY, None, version)
    assert (entry.actor_label, entry.reason) == ("ops", "launch")
    assert pointer.history.count() == 1


def test_deploy_version__second_deploy__log_row_names_previous_version(agent, production):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)

    entry = factories.deploy(v2, production)

    assert entry.from_version == v1 and entry.to_version == v2
    assert Pointer.objects.filter(agent=agent).count() == 1
    assert Pointer.objects.get(agent=agent).history.count() == 2


def test_deploy_version__already_active__conflict_and_no_log_row(agent, production):
    v1 = factories.create_version(agent)
    factories.deploy(v1, production)

    with pytest.raises(Conflict, match="v1 is already active in production"):
        factories.deploy(v1, production)
    assert ReleaseLogEntry.objects.count() == 1


def test_deploy_version__blank_reason__refused_and_nothing_written(agent, production):
    version = factories.create_version(agent)

    with pytest.raises(ValidationError) as excinfo:
        deploy_version(
            agent=agent, environment=production, version=version, actor=Actor.system("x"), reason=""
        )

    assert "reason" in excinfo.value.message_dict
    assert not Pointer.objects.exists() and not ReleaseLogEntry.objects.exists()


def test_deploy_version__version_of_another_agent__refused(agent, production):
    other = factories.create_version(factories.create_agent())

    with pytest.raises(ValidationError):
        deploy_version(
            agent=agent, environment=production, version=other, actor=Actor.system("x"), reason="r"
        )
    assert not Pointer.objects.exists()


def test_deploy_version__user_without_permission__forbidden(agent, production):
    version = factories.create_version(agent)
    user = factories.UserFactory(is_staff=True)

    with pytest.raises(Forbidden, match=r"deployments\.deploy_version"):
        deploy_version(
            agent=agent, environment=production, version=version, actor=Actor.of(user), reason="r"
        )
    assert not Pointer.objects.exists()


def test_deploy_version__environments_are_independent(agent, production, staging):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)

    factories.deploy(v1, production)
    factories.deploy(v2, staging)

    assert Pointer.objects.get(environment=production).stable_version == v1
    assert Pointer.objects.get(environment=staging).stable_version == v2


# --- rollback -----------------------------------------------------------------------


def test_rollback__default__goes_to_version_active_just_before(agent, production):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    factories.deploy(v2, production)

    entry = rollback(agent=agent, environment=production, actor=Actor.system("ops"), reason="bad")

    assert Pointer.objects.get(agent=agent).stable_version == v1
    assert (entry.kind, entry.from_version, entry.to_version) == (ReleaseKind.ROLLBACK, v2, v1)
    assert agent.versions.count() == 2  # no version was created or changed


def test_rollback__explicit_target_active_before__moves_pointer(agent, production):
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    for version in (v1, v2, v3):
        factories.deploy(version, production)

    rollback(
        agent=agent, environment=production, to_version=v1, actor=Actor.system("o"), reason="r"
    )

    assert Pointer.objects.get(agent=agent).stable_version == v1


def test_rollback__target_never_active_here__refused(agent, production, staging):
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    factories.deploy(v1, production)
    factories.deploy(v3, production)
    factories.deploy(v2, staging)

    with pytest.raises(ServiceError, match="v2 has never been active in production"):
        rollback(
            agent=agent, environment=production, to_version=v2, actor=Actor.system("o"), reason="r"
        )
    assert Pointer.objects.get(environment=production).stable_version == v3


def test_rollback__only_one_version_ever_active__clear_refusal(agent, production):
    factories.deploy(factories.create_version(agent), production)

    with pytest.raises(ServiceError, match="nothing to roll back to"):
        rollback(agent=agent, environment=production, actor=Actor.system("o"), reason="r")


def test_rollback__never_deployed__not_found(agent, production):
    factories.create_version(agent)

    with pytest.raises(NotFound, match="never been deployed to production"):
        rollback(agent=agent, environment=production, actor=Actor.system("o"), reason="r")


def test_rollback__to_current_version__conflict(agent, production):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    factories.deploy(v2, production)

    with pytest.raises(Conflict):
        rollback(
            agent=agent, environment=production, to_version=v2, actor=Actor.system("o"), reason="r"
        )


def test_list_rollback_targets__previous_first_then_older_without_current(agent, production):
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    for version in (v1, v2, v3):
        factories.deploy(version, production)

    assert list_rollback_targets(agent, production) == [v2, v1]


def test_release_log__append_only(agent, production):
    entry = factories.deploy(factories.create_version(agent), production)

    with pytest.raises(ImmutableRecord):
        entry.delete()
    with pytest.raises(ImmutableRecord):
        ReleaseLogEntry.objects.filter(pk=entry.pk).update(reason="rewritten")


# --- concurrency ---------------------------------------------------------------------


def _run_together(functions):
    barrier = threading.Barrier(len(functions))
    results: list[object] = []

    def run(function):
        try:
            barrier.wait(timeout=30)
            results.append(function())
        except BaseException as exc:
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(f,)) for f in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.django_db(transaction=True)
def test_deploy_version__two_concurrent_first_deploys__exactly_one_pointer_and_consistent_log():
    # Given two versions and no pointer yet
    agent = factories.create_agent(slug="race-bot")
    production = factories.environment("production")
    v1, v2 = factories.create_version(agent), factories.create_version(agent)

    # When two operators deploy different versions at the same moment
    results = _run_together([lambda v=v: factories.deploy(v, production) for v in (v1, v2)])

    # Then both succeed in some order, one pointer exists, and the log chains correctly
    assert all(isinstance(r, ReleaseLogEntry) for r in results), results
    assert Pointer.objects.filter(agent=agent, environment=production).count() == 1
    first, second = ReleaseLogEntry.objects.filter(agent=agent).order_by("id")
    assert first.from_version is None and second.from_version == first.to_version
    assert Pointer.objects.get(agent=agent).stable_version == second.to_version


@pytest.mark.django_db(transaction=True)
def test_rollback__many_concurrent_rollbacks__log_chain_stays_consistent():
    agent = factories.create_agent(slug="flappy-bot")
    production = factories.environment("production")
    versions = [factories.create_version(agent) for _ in range(3)]
    for version in versions:
        factories.deploy(version, production)

    _run_together(
        [
            lambda: rollback(
                agent=agent, environment=production, actor=Actor.system("o"), reason="r"
            )
            for _ in range(8)
        ]
    )

    entries = list(ReleaseLogEntry.objects.filter(agent=agent).order_by("id"))
    for before, after in itertools.pairwise(entries):
        assert after.from_version_id == before.to_version_id
    assert Pointer.objects.get(agent=agent).stable_version_id == entries[-1].to_version_id


def test_deploy_version__expected_active_is_stale__conflict_and_nothing_moves(agent, staging):
    # Given a person who confirmed "v1 -> v3" while someone else deployed v2
    v1, v2, v3 = (factories.create_version(agent) for _ in range(3))
    factories.deploy(v1, staging)
    factories.deploy(v2, staging)

    # When the confirmation is applied, naming the version it showed
    with pytest.raises(Conflict, match="changed while you were reviewing"):
        deploy_version(
            agent=agent,
            environment=staging,
            version=v3,
            actor=Actor.system("ops"),
            reason="r",
            expected_active_id=str(v1.pk),
        )

    # Then the pointer is where the other deploy left it
    assert Pointer.objects.get(environment=staging).stable_version == v2


def test_rollback__expected_active_is_current__rolls_back(agent, staging):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, staging)
    factories.deploy(v2, staging)

    entry = rollback(
        agent=agent,
        environment=staging,
        actor=Actor.system("ops"),
        reason="r",
        expected_active_id=str(v2.pk),
    )

    assert entry.to_version == v1
