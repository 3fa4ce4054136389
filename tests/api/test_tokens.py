"""Personal access tokens: created, checked and revoked by agentconfig.api.services.tokens."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from agentconfig.api.models import PersonalAccessToken
from agentconfig.api.services import tokens
from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden
from deployments.services.api_keys import hash_key
from tests import factories
from tests.api.conftest import CLI


def test_create__returns_plaintext_once_and_stores_only_its_hash(role_user):
    # When a token is created
    token, plaintext = tokens.create_token(user=role_user("editor"), name="ci", actor=CLI)

    # Then the plaintext has the token format, and only its hash is stored
    assert tokens.token_id_of(plaintext) == token.key_id
    assert plaintext.startswith("acp_")
    stored = PersonalAccessToken.objects.get(pk=token.pk)
    assert stored.key_hash == hash_key(plaintext)
    assert plaintext not in {str(v) for v in vars(stored).values()}
    # And the history has the creation, without the hash
    record = stored.history.get()
    assert record.history_type == "+"
    assert not hasattr(record, "key_hash")


def test_authenticate__the_token__its_row_with_user(role_user):
    user = role_user("editor")
    token, plaintext = tokens.create_token(user=user, name="ci", actor=CLI)

    found = tokens.authenticate(plaintext)

    assert found == token
    assert found.user == user


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # right id, wrong secret
        lambda t: "acfg_" + t[4:],  # the runtime key format
        lambda t: t + "x" * 200,  # too long
        lambda t: "",
        lambda t: t.upper(),
    ],
)
def test_authenticate__anything_but_the_token__none(role_user, mangle):
    _, plaintext = tokens.create_token(user=role_user("editor"), name="ci", actor=CLI)

    assert tokens.authenticate(mangle(plaintext)) is None


def test_authenticate__runtime_key__none(db):
    _, runtime_key = factories.create_api_key(factories.environment("production"))

    assert tokens.authenticate(runtime_key) is None


def test_authenticate__revoked_expired_or_deactivated__none(role_user):
    user = role_user("editor")
    revoked, revoked_plain = tokens.create_token(user=user, name="revoked", actor=CLI)
    tokens.revoke_token(token=revoked, actor=CLI)
    expired, expired_plain = tokens.create_token(
        user=user, name="expired", actor=CLI, expires_in_days=1
    )
    PersonalAccessToken.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    _, other_plain = tokens.create_token(user=role_user("deployer"), name="x", actor=CLI)
    deployer = role_user("deployer")
    deployer.is_active = False
    deployer.save()

    assert tokens.authenticate(revoked_plain) is None
    assert tokens.authenticate(expired_plain) is None
    assert tokens.authenticate(other_plain) is None


def test_authenticate__writes_last_used_at_at_most_once_a_minute(
    role_user, django_assert_num_queries
):
    token, plaintext = tokens.create_token(user=role_user("editor"), name="ci", actor=CLI)

    # The first use reads and writes
    with django_assert_num_queries(2):
        tokens.authenticate(plaintext)
    first = PersonalAccessToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    # Within the minute: only the read
    with django_assert_num_queries(1):
        tokens.authenticate(plaintext)
    assert PersonalAccessToken.objects.get(pk=token.pk).last_used_at == first
    # A minute later: written again
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        last_used_at=first - dt.timedelta(minutes=2)
    )
    tokens.authenticate(plaintext)
    assert PersonalAccessToken.objects.get(pk=token.pk).last_used_at > first


def test_create__for_someone_else__forbidden(role_user):
    editor, admin = role_user("editor"), role_user("admin")

    with pytest.raises(Forbidden, match="for themselves only"):
        tokens.create_token(user=editor, name="ci", actor=Actor.of(admin))

    assert not PersonalAccessToken.objects.exists()


def test_create__for_yourself__allowed(role_user):
    editor = role_user("editor")

    token, _ = tokens.create_token(user=editor, name="ci", actor=Actor.of(editor))

    assert token.history.get().history_user == editor


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"name": "  "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ci", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "ci", "expires_in_days": 4000}, "expires_in_days"),
    ],
)
def test_create__invalid__validation_error_by_field(role_user, options, field):
    with pytest.raises(ValidationError) as error:
        tokens.create_token(user=role_user("editor"), actor=CLI, **options)

    assert field in error.value.message_dict


def test_create__same_name_as_an_active_token__refused_until_revoked(role_user):
    user = role_user("editor")
    first, _ = tokens.create_token(user=user, name="ci", actor=CLI)

    with pytest.raises(ValidationError, match="already has an active token"):
        tokens.create_token(user=user, name="ci", actor=CLI)
    tokens.revoke_token(token=first, actor=CLI)
    tokens.create_token(user=user, name="ci", actor=CLI)


def test_revoke__twice__conflict(role_user):
    token, _ = tokens.create_token(user=role_user("editor"), name="ci", actor=CLI)
    tokens.revoke_token(token=token, actor=CLI, reason="leaked in a log")

    with pytest.raises(Conflict, match="already revoked"):
        tokens.revoke_token(token=token, actor=CLI)
    record = token.history.order_by("history_id").last()
    assert record.history_change_reason == "leaked in a log"
    assert record.revoked_by_label == CLI.label


def test_revoke__someone_elses__forbidden_unless_superuser(role_user):
    token, _ = tokens.create_token(user=role_user("editor"), name="ci", actor=CLI)
    root = factories.user_with(username="root", is_superuser=True)

    with pytest.raises(Forbidden):
        tokens.revoke_token(token=token, actor=Actor.of(role_user("admin")))
    tokens.revoke_token(token=token, actor=Actor.of(root))

    assert PersonalAccessToken.objects.get(pk=token.pk).revoked_at is not None


def test_create_token_command__prints_the_token_alone_on_the_last_line(role_user):
    user = role_user("editor")
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "create_token",
        "--user",
        user.username,
        "--name",
        "ci",
        "--expires-in-days",
        "30",
        "--read-only",
        stdout=out,
        stderr=err,
    )

    plaintext = out.getvalue().splitlines()[-1]
    token = tokens.authenticate(plaintext)
    assert token is not None and token.user == user and token.read_only
    assert token.expires_at - timezone.now() > dt.timedelta(days=29)
    assert "cannot be shown again" in err.getvalue()
    assert token.history.get().history_user is None  # the command line, not a person


def test_create_token_command__unknown_user__error(db):
    with pytest.raises(CommandError, match="there is no user 'ghost'"):
        call_command("create_token", "--user", "ghost", "--name", "ci")


def test_revoke_token_command__revokes_the_named_token(role_user):
    user = role_user("editor")
    _, plaintext = tokens.create_token(user=user, name="ci", actor=CLI)
    out = io.StringIO()

    call_command("revoke_token", "--user", user.username, "--name", "ci", stdout=out)

    assert tokens.authenticate(plaintext) is None
    assert "Revoked token 'ci'" in out.getvalue()
    with pytest.raises(CommandError, match="has no active token named 'ci'"):
        call_command("revoke_token", "--user", user.username, "--name", "ci")
