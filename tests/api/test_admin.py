"""Personal access tokens in the admin: each person creates, sees and revokes their own."""

from __future__ import annotations

import pytest

from agentconfig.api.models import PersonalAccessToken
from agentconfig.api.services import tokens
from tests import factories
from tests.api.conftest import CLI

ADD_URL = "/admin/agentconfig_api/personalaccesstoken/"


@pytest.fixture
def editor(role_user):
    return role_user("editor")


def test_add__creates_own_token_and_shows_it_once(api, editor, agent):
    client = factories.login(editor)

    response = client.post(
        ADD_URL + "add/", {"name": "laptop-script", "expires_in_days": "30", "read_only": "on"}
    )

    assert response.status_code == 201
    plaintext = response.context["plaintext"]
    assert plaintext in response.content.decode()
    token = PersonalAccessToken.objects.get()
    assert (token.user, token.name, token.read_only) == (editor, "laptop-script", True)
    assert token.key_hash not in response.content.decode()
    # And the token works on the API, read-only
    assert api.get("/agents", plaintext).status_code == 200
    # And the list page never shows it again
    listing = client.get(ADD_URL).content.decode()
    assert "laptop-script" in listing
    assert plaintext not in listing


def test_add__invalid__stays_on_the_form(editor):
    response = factories.login(editor).post(ADD_URL + "add/", {"name": "", "expires_in_days": "0"})

    assert response.status_code == 200
    assert not PersonalAccessToken.objects.exists()


def test_list__own_tokens_only_superuser_sees_all(role_user, editor):
    tokens.create_token(user=editor, name="editors-token", actor=CLI)
    tokens.create_token(user=role_user("deployer"), name="deployers-token", actor=CLI)
    root = factories.user_with(username="root", is_staff=True, is_superuser=True)

    mine = factories.login(editor).get(ADD_URL).content.decode()
    everyone = factories.login(root).get(ADD_URL).content.decode()

    assert "editors-token" in mine and "deployers-token" not in mine
    assert "editors-token" in everyone and "deployers-token" in everyone


def test_detail__someone_elses_token__not_found(role_user, editor):
    other, _ = tokens.create_token(user=role_user("deployer"), name="theirs", actor=CLI)

    response = factories.login(editor).get(f"{ADD_URL}{other.pk}/change/")

    assert response.status_code == 302  # the admin's "does not exist" redirect
    assert PersonalAccessToken.objects.get(pk=other.pk).revoked_at is None


def test_detail__read_only_without_the_hash(editor):
    token, _ = tokens.create_token(user=editor, name="ci", actor=CLI)

    response = factories.login(editor).get(f"{ADD_URL}{token.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert token.key_hash not in page
    assert f"acp_{token.key_id}_" in page
    assert 'name="_save"' not in page


def test_revoke_selected__revokes_own_token(api, editor, agent):
    token, plaintext = tokens.create_token(user=editor, name="ci", actor=CLI)

    response = factories.login(editor).post(
        ADD_URL, {"action": "revoke_selected", "_selected_action": [token.pk]}, follow=True
    )

    assert response.status_code == 200
    assert "Revoked ci" in response.content.decode()
    assert api.get("/agents", plaintext).status_code == 401


def test_not_staff__no_admin_page(editor):
    editor.is_staff = False
    editor.save()

    response = factories.login(editor).get(ADD_URL)

    assert response.status_code == 302  # to the sign-in page
