"""The background task that executes a run, processed by `manage.py db_worker`.

The task takes the run's id only: everything else is in the database, so a task queued
by one process can run in any worker, and running it again resumes the run.
"""

from __future__ import annotations

from django_tasks import task

from evaluations.runner import execute_run


@task()
def run_evaluation(run_id: str) -> dict[str, object]:
    """Execute the run; the task's return value is the run's outcome in brief."""
    run = execute_run(run_id)
    return {"run": str(run.pk), "status": run.status, "score": run.score}
