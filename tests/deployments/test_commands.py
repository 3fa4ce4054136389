"""The operator CLI: deploy, rollback, create_api_key, revoke_api_key."""

import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agentconfig.core.actors import Actor
from deployments.models import ApiKey, Pointer, ReleaseLogEntry
from deployments.services import requests
from deployments.services.api_keys import hash_key
from tests import factories

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def approved_stable_request(version, environment):
    editor = factories.user_with("deployments.add_deploymentrequest")
    reviewer = factories.user_with("deployments.review_deploymentrequest")
    request = requests.create_request(
        agent=version.agent,
        environment=environment,
        version=version,
        actor=Actor.of(editor),
        reason="ship it",
    )
    requests.approve_request(request=request, actor=Actor.of(reviewer), comment="diff read")
    return request


@pytest.fixture
def two_versions(agent):
    return factories.create_version(agent), factories.create_version(agent)


def test_deploy__valid__moves_pointer_and_logs_reason_and_cli_actor(two_versions, staging):
    output = run("deploy", "support-bot", "2", "--environment", "staging", "--reason", "go")

    assert "Deployed support-bot v2 to staging (was nothing)" in output
    entry = ReleaseLogEntry.objects.get()
    assert entry.reason == "go" and entry.actor_label.startswith("deploy (cli")
    assert Pointer.objects.get().stable_version.version_number == 2


def test_deploy__environment_requires_approval__refused_without_request(two_versions, production):
    with pytest.raises(CommandError, match="production requires 1 approval"):
        run("deploy", "support-bot", "2", "--environment", "production", "--reason", "go")
    assert not ReleaseLogEntry.objects.exists()


def test_deploy__break_glass__deploys_and_records_it(two_versions, production):
    run(
        "deploy",
        "support-bot",
        "2",
        "--environment",
        "production",
        "--reason",
        "incident",
        "--break-glass",
        "pager 4711: billing down",
    )

    entry = ReleaseLogEntry.objects.get()
    assert entry.details == {"break_glass": "pager 4711: billing down"}


def test_deploy__approved_request__applied(two_versions, production):
    request = approved_stable_request(two_versions[1], production)

    output = run(
        "deploy",
        "support-bot",
        "2",
        "--environment",
        "production",
        "--reason",
        "go",
        "--request",
        str(request.pk),
    )

    assert "Deployed support-bot v2" in output
    entry = ReleaseLogEntry.objects.get()
    assert entry.request == request and entry.details == {}
    request.refresh_from_db()
    assert request.status == "applied"


def test_deploy__request_for_another_version__refused(two_versions, production):
    request = approved_stable_request(two_versions[1], production)

    with pytest.raises(CommandError, match="not for this release"):
        run(
            "deploy",
            "support-bot",
            "1",
            "--environment",
            "production",
            "--reason",
            "go",
            "--request",
            str(request.pk),
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-bot", "1", "--environment", "production", "--reason", "r"], "no agent 'no-bot'"),
        (["support-bot", "9", "--environment", "production", "--reason", "r"], "no version v9"),
        (["support-bot", "1", "--environment", "prod", "--reason", "r"], "no environment 'prod'"),
        (["support-bot", "1", "--environment", "production", "--reason", " "], "reason"),
    ],
)
def test_deploy__bad_input__one_clear_error_and_nothing_written(two_versions, args, message):
    with pytest.raises(CommandError, match=message):
        run("deploy", *args)
    assert not ReleaseLogEntry.objects.exists()


def test_rollback__default_and_explicit_target(two_versions, production):
    v1, v2 = two_versions
    factories.deploy(v1, production)
    factories.deploy(v2, production)

    output = run("rollback", "support-bot", "--environment", "production", "--reason", "broke")

    assert "from v2 to v1" in output
    assert Pointer.objects.get().stable_version == v1
    run("rollback", "support-bot", "--environment", "production", "--to", "2", "--reason", "fixed")
    assert Pointer.objects.get().stable_version == v2


def test_rollback__never_deployed__clear_error(two_versions, production):
    with pytest.raises(CommandError, match="never been deployed to production"):
        run("rollback", "support-bot", "--environment", "production", "--reason", "r")


def test_create_api_key__prints_key_alone_on_last_line_and_stores_only_hash(production):
    output = run(
        "create_api_key", "--environment", "production", "--name", "eu-runtime", "--reason", "eu"
    )

    key = output.strip().splitlines()[-1]
    stored = ApiKey.objects.get(name="eu-runtime")
    assert key.startswith("acfg_") and " " not in key
    assert stored.key_hash == hash_key(key) and key not in str(stored.__dict__)


def test_create_api_key__duplicate_active_name__clear_error(production):
    run("create_api_key", "--environment", "production", "--name", "dup", "--reason", "r")

    with pytest.raises(CommandError, match="already exists"):
        run("create_api_key", "--environment", "production", "--name", "dup", "--reason", "r")
    assert ApiKey.objects.count() == 1


def test_revoke_api_key__by_name__revoked_and_name_reusable(production):
    run("create_api_key", "--environment", "production", "--name", "old", "--reason", "r")

    assert "Revoked" in run("revoke_api_key", "old", "--reason", "rotated")
    assert ApiKey.objects.get(name="old").revoked_at is not None
    run("create_api_key", "--environment", "production", "--name", "old", "--reason", "r")
    with pytest.raises(CommandError, match="no active API key named 'nope'"):
        run("revoke_api_key", "nope", "--reason", "rotated")


def test_cli__real_process__non_zero_exit_and_one_line_on_stderr(tmp_path):
    # The commands are used from shells and scripts: check the real exit status.
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "PATH": "/usr/bin:/bin"}
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)

    result = subprocess.run(
        [*manage, "deploy", "ghost", "1", "--environment", "production", "--reason", "r"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["CommandError: there is no agent 'ghost'."]
