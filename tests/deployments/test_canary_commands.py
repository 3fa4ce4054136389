"""`manage.py canary` and `manage.py canary_watch`."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agentconfig.core.actors import Actor
from deployments.models import CanaryDecision, CanaryRollout, CanaryStatus, Pointer
from deployments.services import requests
from tests import factories


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def deployed(agent, staging):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, staging)
    return v1, v2


# staging takes releases without approval; production's rule is tested below
BASE = ("--environment", "staging", "--reason", "ops")


def test_canary__start_change_advance_promote(deployed):
    _, v2 = deployed

    assert "at 1 %" in run("canary", "support-bot", "2", *BASE, "--steps", "1,5,25")
    assert "now at 3 %" in run("canary", "support-bot", *BASE, "--percent", "3")
    assert "advanced to 5 %" in run("canary", "support-bot", *BASE, "--advance")
    assert "Promoted v2" in run("canary", "support-bot", *BASE, "--promote")
    assert Pointer.objects.get().stable_version == v2


def test_canary__abort(deployed):
    run("canary", "support-bot", "2", *BASE, "--percent", "10")

    run("canary", "support-bot", *BASE, "--abort")

    assert CanaryRollout.objects.get().status == CanaryStatus.ABORTED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("2", *BASE, "--percent", "150"), "must be more than 0 and less than 100"),
        (("2", *BASE, "--percent", "5", "--steps", "1,5"), "either a percentage or steps"),
        (("9", *BASE, "--percent", "5"), "no version v9"),
        ((*BASE, "--advance"), "no canary of support-bot is running"),
        ((*BASE,), "give VERSION_NUMBER to start a canary"),
        (("2", *BASE, "--abort"), "take no VERSION_NUMBER"),
    ],
)
def test_canary__wrong_input__one_clear_error(deployed, args, message):
    with pytest.raises(CommandError, match=message):
        run("canary", "support-bot", *args)
    assert not CanaryRollout.objects.filter(status=CanaryStatus.RUNNING).exists()


def test_canary_watch__once__evaluates_and_reports(deployed):
    run("canary", "support-bot", "2", *BASE, "--percent", "10")

    output = run("canary_watch", "--once")

    assert "support-bot@staging: hold" in output
    assert CanaryDecision.objects.count() == 1


def test_canary_watch__nothing_running__says_so(db):
    assert "no running canaries" in run("canary_watch", "--once")


def test_canary__production_without_approval__refused_then_applied_from_request(agent, production):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    prod = ("--environment", "production", "--reason", "ops")
    with pytest.raises(CommandError, match="requires 1 approval"):
        run("canary", "support-bot", "2", *prod, "--percent", "5")

    editor = factories.user_with("deployments.add_deploymentrequest")
    reviewer = factories.user_with("deployments.review_deploymentrequest")
    request = requests.create_request(
        agent=agent,
        environment=production,
        version=v2,
        actor=Actor.of(editor),
        reason="try it",
        kind="canary",
        canary_plan="5",
    )
    requests.approve_request(request=request, actor=Actor.of(reviewer), comment="ok")

    output = run("canary", "support-bot", "2", *prod, "--request", str(request.pk))

    assert "at 5 %" in output
    assert CanaryRollout.objects.get().basis_points == 500


def test_canary_status__running__prints_what_the_panel_shows(deployed):
    run("canary", "support-bot", "2", *BASE, "--steps", "1,5,25")

    out = run("canary", "support-bot", "--environment", "staging", "--status")

    lines = out.splitlines()
    assert lines[0].startswith(
        "Canary of support-bot v2 against stable v1 in staging: step 1 of 3 ([1 %], 5 %, 25 %,"
    )
    assert "deadline" in lines[0]
    assert lines[1].startswith("Now: hold. Holding at step 1 of 3 (1 %)")
    assert [line.split(":")[0].strip() for line in lines[2:]] == [
        "Error rate",
        "Sample ratio",
        "Deadline",
    ]
    assert not CanaryDecision.objects.exists()  # a look, not a decision


def test_canary_status__none_running__says_so(deployed):
    assert run("canary", "support-bot", "--environment", "staging", "--status") == (
        "No canary of support-bot is running in staging.\n"
    )


def test_canary__change_without_reason__refused(deployed):
    run("canary", "support-bot", "2", *BASE, "--percent", "10")

    with pytest.raises(CommandError, match="--reason is required"):
        run("canary", "support-bot", "--environment", "staging", "--abort")
    assert CanaryRollout.objects.get().status == CanaryStatus.RUNNING
