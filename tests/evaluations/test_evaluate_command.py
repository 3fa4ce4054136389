"""`manage.py evaluate`: queue, or --wait with the table, reports and the gate's exit code."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluations.models import EvaluationRun, RunStatus
from tests import factories
from tests.evaluations.helpers import case, make_suite, require_evaluation, run_now

pytestmark = pytest.mark.django_db

CASES = [case(f"c{i}", f"q{i}?", golden="yes", scorer="contains") for i in range(1, 5)]


def _evaluate(*args: str) -> str:
    out = StringIO()
    call_command("evaluate", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def unguarded(agent, production, eval_settings, llm):
    """v1 (model good, answers yes) stable in production, v2 (model worse) the candidate;
    production has no evaluation policy."""
    stable = factories.create_version(agent, model="good")
    factories.create_version(agent, model="worse")
    factories.deploy(stable, production)
    make_suite(agent, CASES)
    for i in range(1, 5):
        llm.answers[("good", f"q{i}?")] = "yes"
    return agent


@pytest.fixture
def released(unguarded, production):
    """As unguarded, and production requires the evaluation (tolerance 0.1)."""
    require_evaluation(production, tolerance=0.1)
    return unguarded


def test_evaluate__without_wait__queues_a_run_and_calls_no_model(released, chat_server):
    output = _evaluate("support-bot", "2")

    run = EvaluationRun.objects.get()
    assert run.status == RunStatus.QUEUED and run.task_id
    assert f"Queued run {run.pk}: v2 of support-bot on smoke v1 (4 cases)" in output
    assert "manage.py db_worker" in output
    assert chat_server.requests == []


def test_evaluate__wait_and_no_regression__exit_0_with_table_and_reports(
    released, llm, tmp_path: Path
):
    # Given the candidate answers like the stable version; the stable has no run yet
    for i in range(1, 5):
        llm.answers[("worse", f"q{i}?")] = "yes"
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"

    # When
    output = _evaluate(
        "support-bot",
        "2",
        "--baseline",
        "production",
        "--wait",
        "--json",
        str(report),
        "--junit-xml",
        str(junit),
    )

    # Then the baseline was run first, then compared
    assert (
        "The stable v1 in production has no comparable run on smoke v1; running it first" in output
    )
    assert (
        "Compared with production (production requires evaluation for deploys): evaluation passed."
        in output
    )
    assert (
        "v2: completed, score 1.000" in output
        and "Baseline v1: 1.000 (difference +0.000)" in output
    )
    data = json.loads(report.read_text())
    assert data["gate"]["allowed"] is True and data["run"]["score"] == 1.0
    assert data["baseline_run"]["version"] == 1
    assert [c["id"] for c in data["cases"]] == ["c1", "c2", "c3", "c4"]
    suite = ET.fromstring(junit.read_text())  # noqa: S314 - our own output
    assert suite.get("tests") == "5" and suite.get("failures") == "0"


def test_evaluate__wait_and_regression__exit_1_naming_the_gate(released, llm, tmp_path: Path):
    # Given the candidate answers 2 of 4 (0.5 against 1.0, tolerance 0.1)
    for i in range(1, 5):
        llm.answers[("worse", f"q{i}?")] = "yes" if i <= 2 else "no"
    junit = tmp_path / "junit.xml"

    # When
    with pytest.raises(CommandError) as refused:
        _evaluate(
            "support-bot", "2", "--baseline", "production", "--wait", "--junit-xml", str(junit)
        )

    # Then
    assert refused.value.returncode == 1
    assert str(refused.value).startswith(
        "evaluation regression: evaluation regression: v2 scored 0.500"
    )
    suite = ET.fromstring(junit.read_text())  # noqa: S314 - our own output
    failures = [tc.get("name") for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert failures == ["c3", "c4", "evaluation gate"]


def test_evaluate__wait_without_baseline__exit_0_when_the_run_completes(released, llm):
    output = _evaluate("support-bot", "2", "--wait")

    assert "case" in output.splitlines()[1] and "v2: completed, score 0.000" in output


def test_evaluate__wait_and_every_case_fails__exit_1(released, llm):
    from tests.evaluations.chat_server import error

    llm.hook = lambda body: error(401, "bad key")

    with pytest.raises(CommandError) as refused:
        _evaluate("support-bot", "2", "--wait")

    assert "the run ended as failed: every case failed" in str(refused.value)


def test_evaluate__no_endpoint__says_what_to_set(agent, no_endpoint):
    factories.create_version(agent)
    make_suite(agent, CASES)

    with pytest.raises(CommandError) as refused:
        _evaluate("support-bot", "1", "--wait")

    assert "set EVAL_API_BASE_URL (e.g. https://api.openai.com/v1) and EVAL_API_KEY" in str(
        refused.value
    )


def test_evaluate__recorded_answers_offline__deterministic_scores(
    agent, no_endpoint, tmp_path: Path
):
    factories.create_version(agent)
    make_suite(agent, CASES)
    answers = tmp_path / "answers.yaml"
    answers.write_text("c1: 'yes'\nc2: 'yes, sure'\nc3: 'no'\nc4: nope\n")

    output = _evaluate("support-bot", "1", "--wait", "--answers", str(answers))

    assert "v1: completed, score 0.500" in output


def test_evaluate__recorded_answers_unquoted_yes__refused_with_a_hint(agent, no_endpoint, tmp_path):
    factories.create_version(agent)
    make_suite(agent, CASES)
    answers = tmp_path / "answers.yaml"
    answers.write_text("c1: yes\nc2: 'a'\nc3: 'b'\nc4: 'c'\n")

    with pytest.raises(CommandError, match="the answers of c1 are not text; put them in quotes"):
        _evaluate("support-bot", "1", "--wait", "--answers", str(answers))


def test_evaluate__baseline_without_wait__refused(released):
    with pytest.raises(CommandError, match="--baseline needs --wait"):
        _evaluate("support-bot", "2", "--baseline", "production")


def test_evaluate__unknown_version__lists_the_latest(released):
    with pytest.raises(CommandError, match=r"support-bot has no v9 \(the latest is v2\)"):
        _evaluate("support-bot", "9", "--wait")


def test_evaluate__baseline_already_run__not_run_again(released, llm, chat_server):
    stable = released.versions.get(version_number=1)
    run_now(stable, stable.agent.evaluation_suites.get().versions.get())
    before = len(chat_server.requests)
    for i in range(1, 5):
        llm.answers[("worse", f"q{i}?")] = "yes"

    output = _evaluate("support-bot", "2", "--baseline", "production", "--wait")

    assert "running it first" not in output and "evaluation passed" in output
    assert len(chat_server.requests) - before == 4


def test_evaluate__baseline_environment_without_policy__still_compared(unguarded, llm):
    # Given no evaluation policy: the comparison runs all the same, with --tolerance
    for i in range(1, 5):
        llm.answers[("worse", f"q{i}?")] = "yes" if i <= 3 else "no"

    with pytest.raises(CommandError) as refused:
        _evaluate("support-bot", "2", "--baseline", "production", "--wait", "--tolerance", "0.2")

    assert "at least 0.800 is needed" in str(refused.value)
    output = _evaluate(
        "support-bot", "2", "--baseline", "production", "--wait", "--tolerance", "0.25"
    )
    assert "production does not require evaluation for deploys" in output


def test_evaluate__against_another_version__compared_without_an_environment(
    agent, eval_settings, llm
):
    # Given v1 (main's version) and v2 (the pull request's), no environment involved
    factories.create_version(agent, model="main")
    factories.create_version(agent, model="pr")
    make_suite(agent, CASES)
    for i in range(1, 5):
        llm.answers[("main", f"q{i}?")] = "yes"
        llm.answers[("pr", f"q{i}?")] = "yes" if i <= 2 else "no"

    with pytest.raises(CommandError) as refused:
        _evaluate("support-bot", "2", "--against", "1", "--wait")

    assert "evaluation regression" in str(refused.value)
    assert "the baseline v1 scored 1.000" in str(refused.value)
