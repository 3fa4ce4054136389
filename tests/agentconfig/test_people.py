"""People's roles change only through agentconfig.core.people: never your own upwards, always
recorded; and an approval from a reviewer the requester made does not count."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from agentconfig.core import people
from agentconfig.core.actors import Actor
from agentconfig.core.errors import Conflict, Forbidden
from agentconfig.models import AuditAction, AuditRecord
from agentconfig.site.management.commands import load_demo
from deployments.approvals import valid_approvals
from deployments.models import DeploymentRequest
from deployments.selectors import get_pointer
from deployments.services import requests
from tests.factories import member

User = get_user_model()


def _set_roles(user, by, groups, *, reason, is_staff=True, is_superuser=False, **kwargs):
    """people.set_roles of `user` by `by`; staff, not superuser, unless said otherwise."""
    return people.set_roles(
        user=user,
        groups=groups,
        is_staff=is_staff,
        is_superuser=is_superuser,
        actor=Actor.of(by),
        reason=reason,
        **kwargs,
    )


def _roles(user) -> dict:
    return people.roles_of(User.objects.get(pk=user.pk)).as_record()


# --- create_user ----------------------------------------------------------------------


def test_create_user__admin_with_reason__in_groups_and_recorded(boss):
    # When
    user = people.create_user(
        username="carol",
        email="carol@example.com",
        actor=Actor.of(boss),
        reason="joins the billing team",
        groups=["Reviewers"],
        password="a long passphrase here",
        is_staff=True,
    )

    # Then
    assert user.check_password("a long passphrase here")
    assert _roles(user) == {"groups": ["Reviewers"], "is_staff": True, "is_superuser": False}
    record = AuditRecord.objects.get(subject_user=user)
    assert (record.action, record.actor, record.actor_label) == (
        AuditAction.USER_CREATED,
        boss,
        "boss",
    )
    assert record.reason == "joins the billing team"
    assert record.before == {}
    assert record.after == {"groups": ["Reviewers"], "is_staff": True, "is_superuser": False}


def test_create_user__no_password__cannot_sign_in_with_one(boss):
    user = people.create_user(username="sso", email="", actor=Actor.of(boss), reason="SSO only")

    assert not user.has_usable_password()
    assert not user.is_staff


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"reason": "  "}, "reason"),
        ({"username": "Alice"}, "username"),  # differs from alice only in case
        ({"username": "bad name!"}, "username"),
        ({"password": "123"}, "password"),
        ({"groups": ["Nobodies"]}, "groups"),
    ],
)
def test_create_user__invalid__validation_error_nothing_written(boss, alice, fields, field):
    arguments = {
        "username": "dave",
        "email": "dave@example.com",
        "actor": Actor.of(boss),
        "reason": "new colleague",
        **fields,
    }
    users = User.objects.count()

    with pytest.raises(ValidationError) as error:
        people.create_user(**arguments)

    assert field in error.value.message_dict
    assert User.objects.count() == users
    assert not AuditRecord.objects.exists()


def test_create_user__without_add_user__forbidden(alice):
    with pytest.raises(Forbidden, match=r"auth\.add_user"):
        people.create_user(username="eve", email="", actor=Actor.of(alice), reason="mine")

    assert not User.objects.filter(username="eve").exists()
    assert not AuditRecord.objects.exists()


def test_create_user__group_with_permissions_the_actor_lacks__forbidden(boss):
    # Given a group that can delete users, which the Admins group cannot
    group = Group.objects.create(name="Janitors")
    group.permissions.add(Permission.objects.get(codename="delete_user"))

    with pytest.raises(Forbidden, match="Janitors"):
        people.create_user(
            username="eve", email="", actor=Actor.of(boss), reason="x", groups=[group]
        )

    assert not User.objects.filter(username="eve").exists()


# --- set_roles: what may be changed ---------------------------------------------------


def test_set_roles__admin_promotes_someone_else__changed_and_recorded(boss, alice):
    # When
    updated = _set_roles(
        alice, boss, ["Editors", "Reviewers"], reason="second reviewer for billing"
    )

    # Then
    assert updated.has_perm("deployments.review_deploymentrequest")
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.subject_user, record.subject_label) == (
        AuditAction.ROLES_CHANGED,
        boss,
        alice,
        "alice",
    )
    assert record.reason == "second reviewer for billing"
    assert record.before == {"groups": ["Editors"], "is_staff": True, "is_superuser": False}
    assert record.after == {
        "groups": ["Editors", "Reviewers"],
        "is_staff": True,
        "is_superuser": False,
    }


@pytest.mark.parametrize(
    ("groups", "is_staff", "is_superuser", "words"),
    [
        (["Admins", "Reviewers"], True, False, "join Reviewers"),
        (["Admins"], True, True, "make yourself a superuser"),
    ],
)
def test_set_roles__own_roles_upwards__forbidden_nothing_written(
    boss, groups, is_staff, is_superuser, words
):
    before = _roles(boss)

    with pytest.raises(Forbidden, match=words):
        _set_roles(
            boss, boss, groups, reason="I need it", is_staff=is_staff, is_superuser=is_superuser
        )

    assert _roles(boss) == before
    assert not AuditRecord.objects.exists()


def test_set_roles__own_staff_flag_upwards__forbidden(db):
    # Given an administrator who is not staff (signs in through another tool)
    admin = member("backoffice", "Admins")
    admin.is_staff = False
    admin.save()

    with pytest.raises(Forbidden, match="make yourself staff"):
        _set_roles(admin, admin, ["Admins"], reason="I need the admin")

    assert not User.objects.get(pk=admin.pk).is_staff
    assert not AuditRecord.objects.exists()


def test_set_roles__superuser_joins_a_group_themselves__forbidden(root):
    with pytest.raises(Forbidden, match="join Reviewers"):
        _set_roles(root, root, ["Reviewers"], reason="approve my own", is_superuser=True)

    assert not AuditRecord.objects.exists()


def test_set_roles__lowering_own_roles__allowed_and_recorded(root):
    updated = _set_roles(root, root, [], reason="no standing superusers")

    assert not updated.is_superuser
    assert AuditRecord.objects.get().after["is_superuser"] is False


def test_set_roles__non_superuser_grants_superuser__forbidden(boss, alice):
    with pytest.raises(Forbidden, match="only a superuser"):
        _set_roles(alice, boss, ["Editors"], reason="help out", is_superuser=True)

    assert not User.objects.get(pk=alice.pk).is_superuser
    assert not AuditRecord.objects.exists()


def test_set_roles__superuser_grants_superuser__allowed(root, alice):
    updated = _set_roles(alice, root, ["Editors"], reason="on-call lead", is_superuser=True)

    assert updated.is_superuser
    assert AuditRecord.objects.get().actor == root


def test_set_roles__non_superuser_changes_a_superuser__forbidden(boss, root):
    with pytest.raises(Forbidden, match="is a superuser"):
        _set_roles(root, boss, [], reason="lock them out")

    assert User.objects.get(pk=root.pk).is_superuser


def test_set_roles__group_with_permissions_the_actor_lacks__forbidden(boss, alice):
    group = Group.objects.create(name="Janitors")
    group.permissions.add(Permission.objects.get(codename="delete_user"))

    with pytest.raises(Forbidden, match=r"auth\.delete_user"):
        _set_roles(alice, boss, ["Editors", "Janitors"], reason="x")

    assert _roles(alice)["groups"] == ["Editors"]


def test_set_roles__without_change_user__forbidden(alice):
    bob = member("bob", "Editors")

    with pytest.raises(Forbidden, match=r"auth\.change_user"):
        _set_roles(bob, alice, ["Editors", "Reviewers"], reason="x")

    assert not AuditRecord.objects.exists()


@pytest.mark.parametrize(
    ("reason", "groups", "message"),
    [
        ("", ["Editors", "Reviewers"], "reason"),
        ("same again", ["Editors"], "nothing to change"),
        ("typo", ["Reviewrs"], "no group named Reviewrs"),
    ],
)
def test_set_roles__invalid__validation_error_nothing_written(boss, alice, reason, groups, message):
    with pytest.raises(ValidationError, match=message):
        _set_roles(alice, boss, groups, reason=reason)

    assert _roles(alice)["groups"] == ["Editors"]
    assert not AuditRecord.objects.exists()


def test_set_roles__roles_moved_since_the_confirmation__conflict(boss, alice):
    # Given the page showed alice as a plain editor, then someone made her a reviewer
    shown = _roles(alice)
    people.set_roles(
        user=alice,
        groups=["Editors", "Reviewers"],
        is_staff=True,
        is_superuser=False,
        actor=Actor.system("tests"),
        reason="meanwhile",
    )

    with pytest.raises(Conflict, match="changed while you were confirming"):
        _set_roles(
            alice, boss, ["Editors", "Deployers"], reason="deployer instead", expected_before=shown
        )

    assert AuditRecord.objects.count() == 1


# --- approvals from reviewers the requester made ---------------------------------------


def _ask(requester, live, production) -> DeploymentRequest:
    return requests.create_request(
        agent=live[1].agent,
        environment=production,
        version=live[1],
        actor=Actor.of(requester),
        reason="ship v2",
    )


def _counting(request: DeploymentRequest, live) -> list:
    request = DeploymentRequest.objects.get(pk=request.pk)
    return valid_approvals(request, live[0].pk)


def test_red_team__requester_creates_a_reviewer_after_asking__approval_does_not_count(
    boss, live, production
):
    # Given an Admins member asks, then creates a second account in Reviewers
    request = _ask(boss, live, production)
    sock = people.create_user(
        username="sock",
        email="",
        actor=Actor.of(boss),
        reason="helper",
        groups=["Reviewers"],
        is_staff=True,
    )

    # When that account approves
    requests.approve_request(request=request, actor=Actor.of(sock), comment="looks fine")

    # Then the approval does not count and the request cannot be applied
    assert _counting(request, live) == []
    with pytest.raises(Forbidden, match="0 of the 1"):
        requests.apply_request(request=request, actor=Actor.of(boss))
    assert get_pointer(live[0].agent, production).stable_version == live[0]


def test_red_team__requester_makes_someone_a_reviewer_after_asking__does_not_count(
    boss, alice, live, production
):
    request = _ask(boss, live, production)
    _set_roles(alice, boss, ["Editors", "Reviewers"], reason="she can approve this")
    requests.approve_request(request=request, actor=Actor.of(alice), comment="ok")

    assert _counting(request, live) == []
    with pytest.raises(Forbidden):
        requests.apply_request(request=request, actor=Actor.of(boss))


def test_red_team__superuser_requester_makes_someone_superuser__does_not_count(
    root, alice, live, production
):
    request = _ask(root, live, production)
    alice = _set_roles(alice, root, ["Editors"], reason="help", is_superuser=True)
    requests.approve_request(request=request, actor=Actor.of(alice), comment="ok")

    assert _counting(request, live) == []


def test_approval__reviewer_promoted_by_someone_else__counts_and_applies(
    boss, alice, root, live, production
):
    # Given boss asks and another administrator makes alice a reviewer
    request = _ask(boss, live, production)
    _set_roles(alice, root, ["Editors", "Reviewers"], reason="second reviewer")

    # When alice approves
    requests.approve_request(request=request, actor=Actor.of(alice), comment="read the diff")

    # Then it counts and the request applies
    assert _counting(request, live) == [alice.pk]
    requests.apply_request(request=request, actor=Actor.of(boss))
    assert get_pointer(live[0].agent, production).stable_version == live[1]


def test_approval__reviewer_made_by_requester_before_asking__counts(boss, alice, live, production):
    # The rule covers grants at or after the request was opened: long-standing reviewers
    # whom the requester once promoted keep their voice.
    _set_roles(alice, boss, ["Editors", "Reviewers"], reason="new reviewer")
    request = _ask(boss, live, production)
    requests.approve_request(request=request, actor=Actor.of(alice), comment="ok")

    assert _counting(request, live) == [alice.pk]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (["Editors", "Reviewers"], ["Deployers", "Editors", "Reviewers"]),  # no review added
        (["Reviewers"], ["Admins", "Reviewers"]),  # could review already
    ],
)
def test_approval__requester_changes_roles_without_giving_review__still_counts(
    boss, live, production, start, end
):
    reviewer = member("rita", *start)
    request = _ask(boss, live, production)
    _set_roles(reviewer, boss, end, reason="more duties")
    requests.approve_request(request=request, actor=Actor.of(reviewer), comment="ok")

    assert _counting(request, live) == [reviewer.pk]


def test_valid_approvals__many_reviewers__queries_do_not_grow(
    boss, live, production, django_assert_max_num_queries
):
    # Given five reviewers, three of them made reviewers by the requester after asking
    production.required_approvals = 5
    production.save()
    request = _ask(boss, live, production)
    reviewers = [member(f"r{i}", "Reviewers") for i in range(2)]
    for i in range(3):
        editor = member(f"e{i}", "Editors")
        reviewers.append(_set_roles(editor, boss, ["Editors", "Reviewers"], reason="x"))
    for reviewer in reviewers:
        requests.approve_request(request=request, actor=Actor.of(reviewer), comment="ok")
    loaded = DeploymentRequest.objects.prefetch_related("reviews").get(pk=request.pk)

    # When / Then: the audit records, and the groups they name
    with django_assert_max_num_queries(2):
        counting = valid_approvals(loaded, live[0].pk)
    assert sorted(counting) == sorted(r.pk for r in reviewers[:2])


def test_valid_approvals__annotated_requester_granted_nothing__no_query(
    boss, live, production, django_assert_num_queries
):
    request = _ask(boss, live, production)
    requests.approve_request(
        request=request, actor=Actor.of(member("rev", "Reviewers")), comment="ok"
    )
    loaded = (
        DeploymentRequest.objects.prefetch_related("reviews")
        .annotate(
            requester_made_grants=people.made_grants_since(
                granter="requested_by", since="created_at"
            )
        )
        .get(pk=request.pk)
    )

    with django_assert_num_queries(0):
        assert len(valid_approvals(loaded, live[0].pk)) == 1


# --- commands -------------------------------------------------------------------------


def test_set_roles_command__groups_and_reason__changed_and_recorded(alice):
    output = io.StringIO()

    call_command(
        "set_roles", "alice", "--groups", "Editors,Reviewers", "--reason", "cover", stdout=output
    )

    assert _roles(alice)["groups"] == ["Editors", "Reviewers"]
    assert "groups Editors, Reviewers" in output.getvalue()
    record = AuditRecord.objects.get()
    assert record.actor is None
    assert record.actor_label.startswith("set_roles (cli")
    assert record.reason == "cover"


def test_set_roles_command__flags_only__groups_kept(alice):
    call_command("set_roles", "alice", "--no-staff", "--reason", "left", stdout=io.StringIO())

    assert _roles(alice) == {"groups": ["Editors"], "is_staff": False, "is_superuser": False}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nobody", "--reason", "x"], "there is no user 'nobody'"),
        (["alice", "--groups", "Editors", "--reason", "x"], "nothing to change"),
        (["alice", "--groups", "Editors,Reviewers", "--reason", " "], "reason"),
    ],
)
def test_set_roles_command__refused__command_error_nothing_written(alice, arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("set_roles", *arguments, stdout=io.StringIO())

    assert not AuditRecord.objects.exists()


def test_load_demo__people__created_through_the_service_and_recorded(db):
    # Only the people step: the rest of load_demo is tested in test_settings_and_demo.
    load_demo.Command()._admin_user(Actor.system("load_demo"))

    demo = User.objects.get(username="demo")
    assert demo.is_superuser and demo.check_password("agentconfig-demo")
    assert _roles(User.objects.get(username="reviewer"))["groups"] == ["Reviewers"]
    recorded = AuditRecord.objects.filter(actor_label="load_demo")
    assert set(recorded.values_list("subject_label", "action")) == {
        ("demo", AuditAction.USER_CREATED),
        ("demo", AuditAction.ROLES_CHANGED),
        ("pm", AuditAction.USER_CREATED),
        ("reviewer", AuditAction.USER_CREATED),
        ("operator", AuditAction.USER_CREATED),
    }
