"""sync_evals: an all-or-nothing, idempotent import; every error names its file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluations.models import EvalCase, EvaluationSuite, SuiteVersion
from tests import factories

pytestmark = pytest.mark.django_db

SUPPORT = """\
agent: support-bot
suites:
  smoke:
    name: Smoke tests
    cases:
      - id: refund
        input: How long do I have to return an item?
        golden_answer: 30 days.
      - id: json
        input: Order status as JSON
        scorer: valid_json
"""
BILLING = """\
agent: billing-bot
suites:
  smoke:
    cases:
      - id: invoice
        input: Where is my invoice?
        golden_answer: In the account page.
        scorer: contains
"""


@pytest.fixture
def evals(tmp_path: Path, agent) -> Path:
    factories.create_agent("billing-bot")
    folder = tmp_path / "evals"
    folder.mkdir()
    (folder / "support-bot.yaml").write_text(SUPPORT)
    (folder / "billing-bot.yaml").write_text(BILLING)
    return folder


def _sync(path: Path, *args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("sync_evals", str(path), *args, stdout=out)
    return out.getvalue()


def test_sync_evals__new_files__suites_and_versions_created(evals):
    output = _sync(evals)

    assert "support-bot/smoke: created suite, v1, 2 cases (support-bot.yaml)" in output
    assert "Synced 2 suites from" in output and "2 created" in output
    version = SuiteVersion.objects.get(suite__agent__slug="support-bot")
    assert version.source == "file_import" and version.source_path == "support-bot.yaml"
    assert version.change_description == "Imported from support-bot.yaml"
    assert version.created_by_label.startswith("sync_evals (cli")
    assert list(version.cases.values_list("key", flat=True)) == ["refund", "json"]
    assert EvaluationSuite.objects.get(agent__slug="support-bot").name == "Smoke tests"


def test_sync_evals__second_run__creates_nothing(evals):
    _sync(evals)
    counts = (SuiteVersion.objects.count(), EvalCase.objects.count())

    output = _sync(evals)

    assert (SuiteVersion.objects.count(), EvalCase.objects.count()) == counts
    assert "0 created, 0 new versions, 2 unchanged" in output
    assert "support-bot/smoke: unchanged at v1" in output


def test_sync_evals__changed_cases__new_version_only_for_that_suite(evals):
    _sync(evals)
    (evals / "support-bot.yaml").write_text(SUPPORT.replace("30 days.", "Thirty days."))

    output = _sync(evals)

    assert "support-bot/smoke: new version v2, 2 cases" in output
    assert SuiteVersion.objects.filter(suite__agent__slug="billing-bot").count() == 1


def test_sync_evals__one_invalid_file__nothing_written_and_every_problem_listed(evals):
    # Given a valid file and an invalid one (two problems) plus a misnamed file
    (evals / "billing-bot.yaml").write_text(
        BILLING.replace("scorer: contains", "scorer: contain").replace(
            "smoke:", "smoke:\n    nmae: x"
        )
    )
    (evals / "extra.yml").write_text(SUPPORT)

    # When
    with pytest.raises(CommandError) as refused:
        _sync(evals)

    # Then
    message = str(refused.value)
    assert message.startswith("Nothing was written: 3 problems in 2 files under")
    assert (
        f"{evals / 'billing-bot.yaml'}: suites.smoke.nmae: unknown field. Did you mean 'name'?"
        in message
    )
    assert (
        f"{evals / 'billing-bot.yaml'}: suites.smoke.cases[1].scorer: 'contain' is not a scorer"
        in message
    )
    assert f"{evals / 'extra.yml'}: suite files must end in '.yaml'" in message
    assert SuiteVersion.objects.count() == 0 and EvaluationSuite.objects.count() == 0


def test_sync_evals__unknown_agent__nothing_written(evals):
    (evals / "ghost-bot.yaml").write_text(SUPPORT.replace("support-bot", "ghost-bot"))

    with pytest.raises(CommandError) as refused:
        _sync(evals)

    assert "ghost-bot.yaml: agent: there is no agent 'ghost-bot'. Create it first" in str(
        refused.value
    )
    assert EvaluationSuite.objects.count() == 0


def test_sync_evals__check__validates_and_writes_nothing(evals):
    output = _sync(evals, "--check")

    assert "support-bot/smoke: valid, 2 cases" in output
    assert "Nothing was written (--check)" in output
    assert EvaluationSuite.objects.count() == 0


def test_sync_evals__single_file__imported(evals):
    output = _sync(evals / "support-bot.yaml")

    assert "support-bot/smoke: created suite" in output
    assert EvaluationSuite.objects.count() == 1


def test_sync_evals__missing_folder__clear_error(tmp_path, db):
    with pytest.raises(CommandError, match="does not exist"):
        _sync(tmp_path / "nope")
