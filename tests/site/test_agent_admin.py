from __future__ import annotations

from django.urls import reverse

from agentconfig.models import Agent
from tests import factories


def test_agent_list__superuser__shows_active_version_per_environment(admin_client, released_agent):
    response = admin_client.get(reverse("admin:agentconfig_agent_changelist"))

    assert response.status_code == 200
    content = response.content.decode()
    assert "staging: v3" in content
    assert "production: v2" in content
    assert content.index("staging: v3") < content.index("production: v2")


def test_agent_list__several_agents__queries_do_not_grow_with_agents(
    admin_client, staging, production, django_assert_max_num_queries
):
    # Given six agents, each with two versions active in two environments
    for _ in range(6):
        agent = factories.create_agent()
        first = factories.create_version(agent)
        second = factories.create_version(agent)
        factories.deploy(first, production)
        factories.deploy(second, staging)

    # When / Then: session, user, counts, the page, one query for all pointers and two for
    # every agent's drift (versions.selectors.get_drifts)
    with django_assert_max_num_queries(8):
        response = admin_client.get(reverse("admin:agentconfig_agent_changelist"))
    assert response.status_code == 200
    assert response.content.decode().count("staging: v2") == 6


def test_agent_change_page__versions_and_environments__listed_newest_first(
    admin_client, released_agent
):
    response = admin_client.get(reverse("admin:agentconfig_agent_change", args=[released_agent.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    assert content.index(">v3<") < content.index(">v2<") < content.index(">v1<")
    for version in released_agent.versions.all():
        assert reverse("admin:versions_agentversion_change", args=[version.pk]) in content
        assert version.config_hash[:12] in content
    # Production requires approval: its button asks for a deployment; staging deploys.
    assert reverse("admin:agentconfig_agent_deploy", args=[released_agent.pk, "staging"]) in content
    assert reverse("admin:agentconfig_agent_request", args=[released_agent.pk, "production"]) in (
        content
    )
    assert reverse("admin:agentconfig_agent_rollback", args=[released_agent.pk, "production"]) in (
        content
    )
    assert reverse("admin:agentconfig_agent_new_version", args=[released_agent.pk]) in content


def test_agent_change_page__view_only_user__no_action_buttons(viewer_client, released_agent):
    response = viewer_client.get(
        reverse("admin:agentconfig_agent_change", args=[released_agent.pk])
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert "Deploy…" not in content
    assert "Roll back…" not in content
    assert "New version" not in content


def test_agent_change_page__existing_agent__slug_is_read_only(admin_client, agent):
    url = reverse("admin:agentconfig_agent_change", args=[agent.pk])

    response = admin_client.post(url, {"slug": "renamed", "name": "Renamed", "description": ""})

    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.slug == "support-bot"
    assert agent.name == "Renamed"
    assert 'name="slug"' not in admin_client.get(url).content.decode()


def test_agent_add__valid_input__created_through_service_with_history(admin_client, db):
    response = admin_client.post(
        reverse("admin:agentconfig_agent_add"),
        {"slug": "billing-bot", "name": "Billing bot", "description": "Answers invoices."},
    )

    agent = Agent.objects.get(slug="billing-bot")
    assert response.status_code == 302
    assert agent.history.get().history_user.username == "admin"


def test_agent_add__invalid_slug__error_on_form_and_nothing_saved(admin_client, db):
    response = admin_client.post(
        reverse("admin:agentconfig_agent_add"),
        {"slug": "Not A Slug", "name": "Bad", "description": ""},
    )

    assert response.status_code == 200
    assert "lowercase letters" in response.content.decode()
    assert "successfully" not in response.content.decode()
    assert not Agent.objects.exists()


def test_agent_add__slug_taken__error_on_form(admin_client, agent):
    response = admin_client.post(
        reverse("admin:agentconfig_agent_add"),
        {"slug": "support-bot", "name": "Twin", "description": ""},
    )

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert Agent.objects.count() == 1


def test_agent_add__page__renders(admin_client, db):
    response = admin_client.get(reverse("admin:agentconfig_agent_add"))

    assert response.status_code == 200
    assert 'name="slug"' in response.content.decode()


def test_agent_add__staff_without_permission__403(staff_client, db):
    response = staff_client.get(reverse("admin:agentconfig_agent_add"))

    assert response.status_code == 403


def test_agent_change__service_refuses__message_on_the_page_nothing_saved(
    admin_client, agent, monkeypatch
):
    # Fault injection: the service refuses (as after a race with another editor).
    from agentconfig.core.errors import Conflict
    from agentconfig.site import admin as agent_admin

    def refuse(**kwargs):
        raise Conflict("someone else changed the agent meanwhile")

    monkeypatch.setattr(agent_admin, "update_agent", refuse)
    url = reverse("admin:agentconfig_agent_change", args=[agent.pk])

    response = admin_client.post(url, {"name": "Renamed", "description": ""}, follow=True)

    assert response.status_code == 200
    assert "Nothing was saved: someone else changed the agent meanwhile" in (
        response.content.decode()
    )
    agent.refresh_from_db()
    assert agent.name != "Renamed"
