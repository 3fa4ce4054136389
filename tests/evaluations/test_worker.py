"""The production path: a run queued through django-tasks and executed by `db_worker --batch`."""

from __future__ import annotations

import signal
from io import StringIO

import pytest
from django.core.management import call_command
from django_tasks_db.models import DBTaskResult

from evaluations.models import RunStatus
from evaluations.services import suites
from tests import factories
from tests.evaluations.helpers import ACTOR, case, make_suite


@pytest.fixture
def restore_signals():
    # db_worker installs its own SIGINT/SIGTERM handlers; give pytest its own back.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.django_db(transaction=True)
def test_worker__queued_run__executed_by_db_worker_batch(
    agent, eval_settings, chat_server, restore_signals
):
    # Given a run queued the way the admin queues it
    version = factories.create_version(agent)
    suite_version = make_suite(
        agent, [case("a", "qa?", golden="answer", scorer="contains"), case("b", "qb?")]
    )
    run = suites.start_run(version=version, suite_version=suite_version, actor=ACTOR)
    assert run.status == RunStatus.QUEUED and run.task_id
    task = DBTaskResult.objects.get(id=run.task_id)
    assert task.task_path == "evaluations.tasks.run_evaluation"
    assert task.args_kwargs == {"args": [str(run.pk)], "kwargs": {}}
    assert chat_server.requests == []  # queuing called no model

    # When the worker processes the queue and exits
    call_command(
        "db_worker", "--batch", "--no-startup-delay", "--verbosity", "0", stdout=StringIO()
    )

    # Then
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED and run.score == 1.0
    assert len(chat_server.requests) == 3  # two answers, one judgement
    task.refresh_from_db()
    assert task.status == "SUCCESSFUL"
    assert task.return_value == {"run": str(run.pk), "status": "completed", "score": 1.0}


@pytest.mark.django_db(transaction=True)
def test_worker__run_cancelled_before_the_worker__skipped(
    agent, eval_settings, chat_server, restore_signals
):
    version = factories.create_version(agent)
    suite_version = make_suite(agent, [case("a", "qa?")])
    run = suites.start_run(version=version, suite_version=suite_version, actor=ACTOR)
    suites.cancel_run(run=run, actor=ACTOR)

    call_command(
        "db_worker", "--batch", "--no-startup-delay", "--verbosity", "0", stdout=StringIO()
    )

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert chat_server.requests == []
