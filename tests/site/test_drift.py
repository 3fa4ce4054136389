"""Drift in the admin: "edited outside git" on version pages and the list, the YAML download."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from agentconfig.core.actors import Actor
from agentconfig.models import Agent
from tests import factories
from tests.versions.git_helpers import agent_yaml, commit, init_repo
from versions.export import render_agent_file
from versions.file_format import parse_agent_file
from versions.git_sync import sync_agents_from_git
from versions.models import AgentVersion, Source
from versions.selectors import get_drift, get_drifts
from versions.services import create_version

ACTOR = Actor.system("tests")
SCRIPT = '<script>alert("x")</script>'


pytestmark = pytest.mark.usefixtures("git_config")


@pytest.fixture
def repo(tmp_path) -> Path:
    path = init_repo(tmp_path / "repo")
    commit(path, f"Add support-bot {SCRIPT}", {"agents/support-bot.yaml": agent_yaml()})
    return path


@pytest.fixture
def drifted(db, repo) -> AgentVersion:
    """support-bot: v1 from git, then v2 and v3 made in the browser; v3 is returned."""
    sync_agents_from_git(repo=str(repo), ref="HEAD", folder="agents", actor=ACTOR)
    agent = Agent.objects.get(slug="support-bot")
    for prompt in ("Hotfix one.\n", "Hotfix two,\nwith a second line.\n"):
        latest = create_version(
            agent=agent,
            actor=Actor.system("alice"),
            config={**agent.versions.first().config, "system_prompt": prompt},
            change_description="Edited in the browser.",
            source=Source.BROWSER,
        )
    return latest


def version_page(version: AgentVersion) -> str:
    return reverse("admin:versions_agentversion_change", args=[version.pk])


def download_url(version: AgentVersion) -> str:
    return reverse("admin:versions_agentversion_download", args=[version.pk])


# The selector


def test_get_drift__browser_versions_after_git__names_latest_and_last_in_git(drifted):
    drift = get_drift(drifted.agent)

    assert drift is not None
    v1 = drifted.agent.versions.get(version_number=1)
    assert (drift.latest, drift.in_git, drift.path) == (drifted, v1, "agents/support-bot.yaml")
    assert drift.commit == v1.source_commit
    assert drift.versions_outside_git == 2
    assert drift.describe() == (
        "Edited outside git: 2 versions up to v3 (browser, alice) were made after v1, the last "
        f"version in git (agents/support-bot.yaml at {v1.source_commit[:12]})."
    )


def test_get_drift__agent_never_synced_from_git__none(agent):
    factories.create_version(agent, source=Source.BROWSER)

    assert get_drift(agent) is None


def test_get_drift__latest_version_from_git__none(db, repo):
    sync_agents_from_git(repo=str(repo), ref="HEAD", folder="agents", actor=ACTOR)

    assert get_drift(Agent.objects.get()) is None


def test_get_drifts__many_agents__two_queries(drifted, django_assert_num_queries):
    others = [factories.create_agent() for _ in range(5)]
    for agent in others:
        factories.create_version(agent)

    with django_assert_num_queries(2):
        drifts = get_drifts([drifted.agent, *others])

    assert list(drifts) == [drifted.agent.pk]


# The version page


def test_version_page__drifted_agent__marker_and_download_of_the_latest(admin_client, drifted):
    v1 = drifted.agent.versions.get(version_number=1)

    response = admin_client.get(version_page(v1))

    assert response.status_code == 200
    content = response.content.decode()
    assert "edited outside git" in content
    assert "Edited outside git: 2 versions up to v3 (browser, alice)" in content
    assert f'href="{download_url(drifted)}"' in content
    assert "Download support-bot.yaml (v3)" in content


def test_version_page__version_from_git__commit_author_time_and_message(admin_client, drifted):
    v1 = drifted.agent.versions.get(version_number=1)

    content = admin_client.get(version_page(v1)).content.decode()

    assert v1.source_commit in content
    assert "Alice Example &lt;alice@example.com&gt;" in content
    assert "Add support-bot &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in content
    assert SCRIPT not in content


def test_version_page__no_drift__no_marker_but_a_download_link(admin_client, agent):
    version = factories.create_version(agent)

    content = admin_client.get(version_page(version)).content.decode()

    assert "edited outside git" not in content
    assert f'href="{download_url(version)}"' in content


# The version list


def test_version_list__git_column__commit_or_outside_git_marker(admin_client, drifted):
    v1 = drifted.agent.versions.get(version_number=1)

    content = admin_client.get(reverse("admin:versions_agentversion_changelist")).content.decode()

    assert f'<code title="{v1.source_commit}">{v1.source_commit[:12]}</code>' in content
    assert content.count("edited outside git</span>") == 2
    assert 'data-filter-title="git"' in content


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("from_git", [("support-bot", 1)]),
        ("in_git", [("support-bot", 1)]),
        ("outside_git", [("support-bot", 3), ("support-bot", 2)]),
        ("never", [("billing-bot", 1)]),
    ],
)
def test_version_list__git_filter__matching_versions_only(admin_client, drifted, choice, expected):
    factories.create_version(factories.create_agent(slug="billing-bot"))

    response = admin_client.get(reverse("admin:versions_agentversion_changelist"), {"git": choice})

    assert response.status_code == 200
    shown = [(v.agent.slug, v.version_number) for v in response.context["cl"].result_list]
    assert shown == expected


def test_version_list__many_versions__queries_do_not_grow(
    admin_client, drifted, django_assert_max_num_queries
):
    for _ in range(10):
        factories.create_version(factories.create_agent())

    with django_assert_max_num_queries(8):
        response = admin_client.get(reverse("admin:versions_agentversion_changelist"))

    assert response.status_code == 200


# The download


def test_download__viewer__agent_file_as_attachment_that_parses_back(viewer_client, drifted):
    response = viewer_client.get(download_url(drifted))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/yaml; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="support-bot.yaml"'
    text = response.content.decode()
    assert text == render_agent_file(drifted)
    assert "  system_prompt: |\n    Hotfix two,\n    with a second line.\n" in text
    assert parse_agent_file(text, file_stem="support-bot").config == drifted.config


def test_download__staff_without_view_permission__403(staff_client, drifted):
    response = staff_client.get(download_url(drifted))

    assert response.status_code == 403
    assert "versions.view_agentversion" in response.content.decode()


def test_download__anonymous__redirected_to_login(client, drifted):
    response = client.get(download_url(drifted))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_download__unknown_version__404(admin_client, db):
    response = admin_client.get(
        reverse(
            "admin:versions_agentversion_download", args=["00000000-0000-0000-0000-000000000000"]
        )
    )

    assert response.status_code == 404
