"""Suite versions: numbering, no identical versions, immutability (ORM and PostgreSQL trigger)."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Forbidden, ImmutableRecord
from evaluations.models import CaseResult, EvalCase, SuiteVersion
from evaluations.selectors import build_run_comparison
from evaluations.services import suites
from tests import factories
from tests.evaluations.helpers import ACTOR, case, make_suite, run_now

pytestmark = pytest.mark.django_db


def test_create_suite_version__successive_changes__numbered_per_suite(agent):
    v1 = make_suite(agent, [case("a")])
    v2 = make_suite(agent, [case("a"), case("b")], description="add b")
    other = make_suite(agent, [case("a")], slug="other")

    assert (v1.version_number, v2.version_number, other.version_number) == (1, 2, 1)
    assert v2.case_count == 2 and list(v2.cases.values_list("position", flat=True)) == [1, 2]


def test_create_suite_version__identical_cases__refused(agent):
    make_suite(agent, [case("a")])

    with pytest.raises(ValidationError, match="no changes compared to smoke v1"):
        make_suite(agent, [case("a")])

    assert SuiteVersion.objects.count() == 1


def test_create_suite_version__user_without_permission__forbidden(agent):
    suite = make_suite(agent, [case("a")]).suite
    user = factories.UserFactory()
    user.save()

    with pytest.raises(Forbidden, match=r"evaluations\.add_suiteversion"):
        suites.create_suite_version(
            suite=suite,
            actor=Actor.of(user),
            cases=[case("b")],
            change_description="x",
            source="cli",
        )


def test_suite_version_and_cases__any_change__refused_by_the_model(agent):
    version = make_suite(agent, [case("a")])
    first = version.cases.get()

    with pytest.raises(ImmutableRecord):
        version.save()
    with pytest.raises(ImmutableRecord):
        SuiteVersion.objects.filter(pk=version.pk).update(change_description="rewritten")
    with pytest.raises(ImmutableRecord):
        first.delete()
    with pytest.raises(ImmutableRecord):
        EvalCase.objects.filter(pk=first.pk).update(golden_answer="moved goalposts")


@pytest.mark.postgres
@pytest.mark.parametrize(
    "table", ["evaluations_suiteversion", "evaluations_evalcase", "evaluations_caseresult"]
)
def test_append_only_tables__raw_sql_update__refused_by_the_trigger(agent, eval_settings, table):
    version = make_suite(agent, [case("a", "q?", golden="answer", scorer="contains")])
    run_now(factories.create_version(agent), version)
    assert CaseResult.objects.exists()

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"DELETE FROM {table}")  # noqa: S608 - a fixed table name


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_create_suite_version__concurrent_editors__consecutive_numbers(agent):
    suite = suites.create_suite(agent=agent, slug="smoke", name="Smoke", actor=ACTOR)
    errors: list[Exception] = []

    def edit(index: int) -> None:
        try:
            suites.create_suite_version(
                suite=suite,
                actor=ACTOR,
                cases=[case(f"c{index}")],
                change_description=f"edit {index}",
                source="cli",
            )
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    numbers = sorted(suite.versions.values_list("version_number", flat=True))
    assert numbers == list(range(1, 9))


def test_build_run_comparison__different_suite_versions__matched_by_case_id(agent, eval_settings):
    v1 = make_suite(
        agent,
        [
            case("a", "a?", golden="answer", scorer="contains"),
            case("gone", "g?", golden="answer", scorer="contains"),
        ],
    )
    v2 = make_suite(
        agent,
        [
            case("a", "a?", golden="answer", scorer="contains"),
            case("new", "n?", golden="answer", scorer="contains"),
        ],
        description="swap",
    )
    version = factories.create_version(agent)
    old, new = run_now(version, v1), run_now(version, v2)

    comparison = build_run_comparison(new, old)

    changes = {row["key"]: row["change"] for row in comparison["rows"]}
    assert changes == {"a": "unchanged", "new": "added", "gone": "removed"}
    assert comparison["same_suite_version"] is False
