from __future__ import annotations

from django.urls import reverse

from tests import factories

SCRIPT = '<script>alert("prompt")</script>'


def test_version_list__superuser__renders_with_filters(admin_client, released_agent):
    factories.create_version(factories.create_agent(slug="billing-bot"))

    response = admin_client.get(
        reverse("admin:versions_agentversion_changelist"), {"source": "cli"}
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert 'data-filter-title="agent"' in content
    assert 'data-filter-title="source"' in content
    assert content.count("support-bot") >= 3


def test_version_detail__superuser__shows_every_field_read_only(admin_client, agent):
    version = factories.create_version(
        agent, guardrails={"blocked_topics": ["medical advice"], "max_turns": 8}
    )

    response = admin_client.get(reverse("admin:versions_agentversion_change", args=[version.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    assert f'<pre class="ac-text ac-prompt">{version.system_prompt}</pre>' in content
    assert "&quot;max_turns&quot;: 8" in content
    assert version.config_hash in content
    assert 'name="system_prompt"' not in content
    assert 'name="_save"' not in content


def test_version_admin__any_user__no_add_change_or_delete(admin_client, agent):
    version = factories.create_version(agent)

    add = admin_client.get(reverse("admin:versions_agentversion_add"))
    delete = admin_client.post(
        reverse("admin:versions_agentversion_delete", args=[version.pk]), {"post": "yes"}
    )
    change = admin_client.post(
        reverse("admin:versions_agentversion_change", args=[version.pk]),
        {"change_description": "rewritten"},
    )
    changelist = admin_client.get(reverse("admin:versions_agentversion_changelist"))

    assert add.status_code == 403
    assert delete.status_code == 403
    assert change.status_code == 403
    assert "delete_selected" not in changelist.content.decode()
    version.refresh_from_db()
    assert version.change_description == "test change"


def test_version_pages__script_in_prompt__escaped_everywhere(admin_client, agent, production):
    # Given a deployed version and a newer one whose prompt and description hold markup
    # (production takes deploys directly here: the deploy page lists versions)
    production.required_approvals = 0
    production.save()
    old = factories.create_version(agent)
    factories.deploy(old, production)
    version = factories.create_version(agent, system_prompt=SCRIPT, change_description=SCRIPT)
    factories.deploy(version, production)
    pages = [
        reverse("admin:versions_agentversion_change", args=[version.pk]),
        reverse("admin:versions_agentversion_changelist"),
        reverse("admin:agentconfig_agent_change", args=[agent.pk]),
        reverse("admin:agentconfig_agent_new_version", args=[agent.pk]),
        reverse("admin:agentconfig_agent_deploy", args=[agent.pk, "production"]),
    ]
    # The rollback page and the deploy confirmation show both configurations side by side.
    pages.append(reverse("admin:agentconfig_agent_rollback", args=[agent.pk, "production"]))
    responses = [admin_client.get(url) for url in pages]
    factories.create_version(agent)
    responses.append(
        admin_client.post(
            reverse("admin:agentconfig_agent_deploy", args=[agent.pk, "production"]),
            {"version": str(agent.versions.first().pk), "reason": "escape check"},
        )
    )

    for response in responses:
        assert response.status_code == 200
        content = response.content.decode()
        assert '<script>alert("prompt")' not in content, response.request["PATH_INFO"]
        assert "&lt;script&gt;alert(" in content, response.request["PATH_INFO"]
