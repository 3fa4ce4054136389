"""Drift on the agent pages: "edited outside git" in the list and on the page, with the YAML."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse

from tests import factories
from versions.git_source import Commit
from versions.services import create_version

SHA = "0123456789abcdef0123456789abcdef01234567"


def _from_git(agent):
    commit = Commit(
        sha=SHA,
        author_name="Ada",
        author_email="ada@example.com",
        time=dt.datetime(2026, 9, 3, 14, 2, tzinfo=dt.UTC),
        message="Add support-bot",
    )
    return create_version(
        agent=agent,
        actor=factories.ACTOR,
        config=factories.config(),
        change_description="from git",
        source="git",
        source_path="agents/support-bot.yaml",
        commit=commit,
    )


def test_agent_list__edited_outside_git__marked_with_yaml_download(admin_client, agent):
    # Given support-bot: v1 from git, then v2 made in the browser; another agent never in git
    _from_git(agent)
    latest = factories.create_version(agent, source="browser")
    factories.create_version(factories.create_agent(slug="plain-bot"))

    # When
    content = admin_client.get(reverse("admin:agentconfig_agent_changelist")).content.decode()

    # Then support-bot is marked (a word, not only a colour) and offers its YAML
    assert content.count("edited outside git") == 1
    assert reverse("admin:versions_agentversion_download", args=[latest.pk]) in content
    assert "support-bot.yaml (v2)" in content


def test_agent_page__edited_outside_git__banner_with_download(admin_client, agent):
    _from_git(agent)
    latest = factories.create_version(agent, source="browser")

    content = admin_client.get(
        reverse("admin:agentconfig_agent_change", args=[agent.pk])
    ).content.decode()

    assert "Edited outside git" in content
    assert "agents/support-bot.yaml" in content
    assert reverse("admin:versions_agentversion_download", args=[latest.pk]) in content


def test_agent_page__latest_version_from_git__no_drift_banner(admin_client, agent):
    factories.create_version(agent, source="browser")
    _from_git(agent)

    content = admin_client.get(
        reverse("admin:agentconfig_agent_change", args=[agent.pk])
    ).content.decode()

    assert "Edited outside git" not in content
    assert 'id="drift"' not in content
