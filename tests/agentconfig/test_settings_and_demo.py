"""Production settings pass `check --deploy`; the demo tells the billing story."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from deployments.models import Pointer

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "agentconfig.settings.production",
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
    "ALLOWED_HOSTS": "agentconfig.example.com",
    "DATABASE_URL": "postgres://agentconfig@db.example.com:5432/agentconfig",
}


@pytest.mark.parametrize("cache_url", [None, "redis://cache.example.com:6379/0"])
def test_check_deploy__production_variables_with_or_without_redis__no_issue(cache_url):
    # Redis is optional: runtime delivery is correct without it (the change feed).
    env = {**PRODUCTION, **({"CACHE_URL": cache_url} if cache_url else {})}

    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy__refresh_interval_over_half_a_second__warns_about_propagation():
    env = {**PRODUCTION, "AGENTCONFIG_REFRESH_INTERVAL": "2"}

    result = manage("check", "--deploy", "--fail-level", "WARNING", **env)

    assert result.returncode == 1
    assert "agentconfig.W002" in result.stderr


def test_production_settings__no_secret_key__refuses_to_start():
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}

    result = manage("check", **env)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_load_demo__debug_off__refused(settings, db):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="only with DEBUG on"):
        call_command("load_demo", stdout=io.StringIO())


def test_load_demo__twice__billing_story_with_v2_active_and_v1_to_roll_back_to(settings, db):
    settings.DEBUG = True

    call_command("load_demo", stdout=io.StringIO())
    output = io.StringIO()
    call_command("load_demo", stdout=output)

    pointer = Pointer.objects.get(agent__slug="support-bot", environment__slug="production")
    assert pointer.stable_version.version_number == 2
    assert "Billing questions" not in pointer.stable_version.system_prompt
    v1 = pointer.agent.versions.get(version_number=1)
    assert "Billing questions" in v1.system_prompt
    assert pointer.agent.versions.count() == 2
    assert "Bearer acfg_" in output.getvalue()
    suite = pointer.agent.evaluation_suites.get(slug="smoke")
    assert suite.versions.count() == 1  # a second load_demo adds nothing
