from __future__ import annotations

import re

import pytest
from django.urls import reverse

from deployments.models import ApiKey, Environment, Pointer
from deployments.services import api_keys
from tests import factories


def test_environment_admin__pages__render(admin_client, production):
    changelist = admin_client.get(reverse("admin:deployments_environment_changelist"))
    change = admin_client.get(reverse("admin:deployments_environment_change", args=[production.pk]))
    add = admin_client.get(reverse("admin:deployments_environment_add"))

    assert (changelist.status_code, change.status_code, add.status_code) == (200, 200, 200)
    assert "staging" in changelist.content.decode()


def test_environment_admin__existing__slug_read_only_and_name_editable(admin_client, production):
    url = reverse("admin:deployments_environment_change", args=[production.pk])

    response = admin_client.post(
        url,
        {
            "slug": "prod",
            "name": "Prod (EU)",
            "position": "20",
            "required_approvals": "1",
            "reason": "EU region",
        },
    )

    assert response.status_code == 302
    production.refresh_from_db()
    assert (production.slug, production.name) == ("production", "Prod (EU)")
    assert production.history.first().history_user.username == "admin"


def test_pointer_admin__superuser__list_and_view_only(admin_client, released_agent, production):
    pointer = Pointer.objects.get(agent=released_agent, environment=production)

    changelist = admin_client.get(reverse("admin:deployments_pointer_changelist"))
    change = admin_client.get(reverse("admin:deployments_pointer_change", args=[pointer.pk]))
    post = admin_client.post(reverse("admin:deployments_pointer_change", args=[pointer.pk]), {})
    add = admin_client.get(reverse("admin:deployments_pointer_add"))
    delete = admin_client.get(reverse("admin:deployments_pointer_delete", args=[pointer.pk]))

    assert (changelist.status_code, change.status_code) == (200, 200)
    assert (post.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert 'name="_save"' not in change.content.decode()


def test_release_log_admin__superuser__list_with_filters_read_only(admin_client, released_agent):
    entry = released_agent.release_log.first()

    changelist = admin_client.get(
        reverse("admin:deployments_releaselogentry_changelist"), {"kind": "deploy"}
    )
    change = admin_client.get(reverse("admin:deployments_releaselogentry_change", args=[entry.pk]))
    add = admin_client.get(reverse("admin:deployments_releaselogentry_add"))

    assert (changelist.status_code, change.status_code, add.status_code) == (200, 200, 403)
    content = changelist.content.decode()
    assert 'data-filter-title="kind"' in content
    assert "test deploy" in content
    assert 'name="_save"' not in change.content.decode()


def test_api_key_add__valid__plaintext_shown_once_and_only_hash_stored(admin_client, production):
    # When
    response = admin_client.post(
        reverse("admin:deployments_apikey_add"),
        {"name": "support-bot-prod", "environment": str(production.pk), "reason": "new runtime"},
    )

    # Then the response shows the key, which is stored only as its hash
    assert response.status_code == 201
    plaintext = re.search(r"acfg_[0-9a-f]{12}_[A-Za-z0-9_-]+", response.content.decode()).group()
    key = ApiKey.objects.get()
    assert key.name == "support-bot-prod"
    assert key.created_by_label == "admin"
    assert key.key_hash == api_keys.hash_key(plaintext)
    assert plaintext not in {getattr(key, f.attname) for f in ApiKey._meta.fields}
    # And no later page shows it or its hash
    for url in (
        reverse("admin:deployments_apikey_change", args=[key.pk]),
        reverse("admin:deployments_apikey_changelist"),
        reverse("admin:deployments_apikey_history", args=[key.pk]),
        reverse("admin:deployments_apikey_simple_history", args=[key.pk, key.history.first().pk]),
    ):
        content = admin_client.get(url).content.decode()
        assert plaintext not in content, url
        assert key.key_hash not in content, url


def test_api_key_add__name_taken__error_on_form_and_no_key(admin_client, production):
    factories.create_api_key(production, name="taken")

    response = admin_client.post(
        reverse("admin:deployments_apikey_add"),
        {"name": "taken", "environment": str(production.pk), "reason": "new runtime"},
    )

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert "acfg_" not in response.content.decode()
    assert ApiKey.objects.count() == 1


def test_api_key_add__page__renders_without_hash_field(admin_client, db):
    response = admin_client.get(reverse("admin:deployments_apikey_add"))

    assert response.status_code == 200
    assert 'name="name"' in response.content.decode()
    assert "key_hash" not in response.content.decode()


def test_api_key_revoke__confirm_then_post__revoked_by_user(admin_client, production):
    key, _ = factories.create_api_key(production)
    url = reverse("admin:deployments_apikey_revoke", args=[key.pk])

    confirmation = admin_client.get(url)
    key.refresh_from_db()
    assert confirmation.status_code == 200
    assert key.is_active

    response = admin_client.post(url, {"reason": "leaked"})

    assert response.status_code == 302
    key.refresh_from_db()
    assert not key.is_active
    assert key.revoked_by_label == "admin"


def test_api_key_revoke__already_revoked__message_not_500(admin_client, production):
    key, _ = factories.create_api_key(production)
    admin_client.post(reverse("admin:deployments_apikey_revoke", args=[key.pk]), {"reason": "r"})

    response = admin_client.post(
        reverse("admin:deployments_apikey_revoke", args=[key.pk]), {"reason": "r"}, follow=True
    )

    assert response.status_code == 200
    assert "already revoked" in response.content.decode()


def test_api_key_revoke__viewer__403_and_key_active(viewer_client, production):
    key, _ = factories.create_api_key(production)

    response = viewer_client.post(
        reverse("admin:deployments_apikey_revoke", args=[key.pk]), {"reason": "leaked"}
    )

    assert response.status_code == 403
    key.refresh_from_db()
    assert key.is_active


def test_api_key_revoke_action__confirm_then_post__revokes_selected(admin_client, production):
    # Given
    first, _ = factories.create_api_key(production)
    second, _ = factories.create_api_key(production)
    kept, _ = factories.create_api_key(production)
    url = reverse("admin:deployments_apikey_changelist")
    selected = {"action": "revoke_selected", "_selected_action": [first.pk, second.pk]}

    # When the action is chosen, a confirmation page comes first
    confirmation = admin_client.post(url, {**selected, "index": "0"})
    assert confirmation.status_code == 200
    assert "Yes, revoke 2 keys" in confirmation.content.decode()
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 3

    # And then the confirmed post revokes them
    response = admin_client.post(url, {**selected, "post": "yes", "reason": "rotated"})

    assert response.status_code == 302
    assert set(ApiKey.objects.filter(revoked_at__isnull=True)) == {kept}


def test_api_key_admin__any_user__no_delete_and_no_edit(admin_client, production):
    key, _ = factories.create_api_key(production, name="original")

    delete = admin_client.post(
        reverse("admin:deployments_apikey_delete", args=[key.pk]), {"post": "yes"}
    )
    change = admin_client.post(
        reverse("admin:deployments_apikey_change", args=[key.pk]),
        {"name": "renamed", "environment": str(production.pk)},
    )

    assert (delete.status_code, change.status_code) == (403, 403)
    key.refresh_from_db()
    assert key.name == "original"


@pytest.mark.parametrize("model", ["agent", "environment", "pointer", "apikey"])
def test_history_pages__superuser__list_and_record_render(
    admin_client, released_agent, production, model
):
    # Given one object of each audited model, with at least one historical record
    factories.create_api_key(production)
    production.save()  # environments come from a data migration, which records no history
    obj = {
        "agent": released_agent,
        "environment": production,
        "pointer": Pointer.objects.get(agent=released_agent, environment=production),
        "apikey": ApiKey.objects.get(),
    }[model]
    app = "agentconfig" if model == "agent" else "deployments"

    listing = admin_client.get(reverse(f"admin:{app}_{model}_history", args=[obj.pk]))
    record = admin_client.get(
        reverse(f"admin:{app}_{model}_simple_history", args=[obj.pk, obj.history.first().pk])
    )

    assert listing.status_code == 200
    assert record.status_code == 200
    assert "Revert" not in record.content.decode()


def test_history_record__post__refused_and_pointer_unchanged(
    admin_client, released_agent, production
):
    # Given production moved v1 -> v2, so the oldest pointer record says v1
    pointer = Pointer.objects.get(agent=released_agent, environment=production)
    oldest = pointer.history.last()
    assert oldest.stable_version.version_number == 1

    # When someone posts the old record's page (simple-history would save it)
    response = admin_client.post(
        reverse("admin:deployments_pointer_simple_history", args=[pointer.pk, oldest.pk]), {}
    )

    # Then
    assert response.status_code == 405
    pointer.refresh_from_db()
    assert pointer.stable_version.version_number == 2


def test_admin_index__superuser__lists_every_model(admin_client, db):
    content = admin_client.get(reverse("admin:index")).content.decode()

    for model in ("agent", "agentversion", "environment", "pointer", "releaselogentry", "apikey"):
        assert f"/{model}/" in content


def test_environment_admin__staff_without_permission__403(staff_client, db):
    environment = Environment.objects.first()

    response = staff_client.get(
        reverse("admin:deployments_environment_change", args=[environment.pk])
    )

    assert response.status_code == 403
