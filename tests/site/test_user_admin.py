"""The user pages: roles change only on Change roles… (through agentconfig.core.people), never
through the stock change form, and nobody raises their own."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from agentconfig.core import people
from agentconfig.core.actors import Actor
from agentconfig.models import AuditAction, AuditRecord
from deployments.selectors import get_pointer
from deployments.services import requests
from tests import factories
from tests.factories import login, member

User = get_user_model()


def _roles_url(user) -> str:
    return reverse("admin:auth_user_roles", args=[user.pk])


def _change_url(user) -> str:
    return reverse("admin:auth_user_change", args=[user.pk])


def _roles(user) -> dict:
    return people.roles_of(User.objects.get(pk=user.pk)).as_record()


def _group_ids(*names: str) -> list[str]:
    return [str(Group.objects.get(name=name).pk) for name in names]


def _roles_post(*groups: str, staff: bool = True, superuser: bool = False, reason: str = "why"):
    data: dict = {"groups": _group_ids(*groups), "reason": reason}
    if staff:
        data["is_staff"] = "on"
    if superuser:
        data["is_superuser"] = "on"
    return data


# --- Change roles… ----------------------------------------------------------------------


def test_roles_page__get__form_with_current_roles(boss, alice):
    response = login(boss).get(_roles_url(alice))

    assert response.status_code == 200
    form = response.context["form"]
    assert [g.name for g in form.initial["groups"]] == ["Editors"]
    assert form.initial["is_staff"] is True
    assert "alice now holds" in response.content.decode()


def test_change_form__has_a_change_roles_link(boss, alice):
    response = login(boss).get(_change_url(alice))

    assert _roles_url(alice) in response.content.decode()


def test_roles_page__post__confirmation_before_after_nothing_written(boss, alice):
    response = login(boss).post(_roles_url(alice), _roles_post("Editors", "Reviewers"))

    assert response.status_code == 200
    assert response.templates[0].name == "admin/auth/user/roles_confirmation.html"
    change = response.context["change"]
    assert change.added_groups == ["Reviewers"]
    content = response.content.decode()
    assert "<del>Editors</del>" in content
    assert "Editors, Reviewers" in content
    assert _roles(alice)["groups"] == ["Editors"]
    assert not AuditRecord.objects.exists()


def test_roles_page__confirmed__roles_changed_recorded_and_redirect(boss, alice):
    # Given the confirmation page was shown
    client = login(boss)
    shown = client.post(_roles_url(alice), _roles_post("Editors", "Reviewers", reason="cover"))

    # When the person confirms with what it carried
    response = client.post(
        _roles_url(alice),
        {
            **_roles_post("Editors", "Reviewers", reason="cover"),
            "expected": shown.context["expected"],
            "confirm": "1",
        },
    )

    # Then
    assert response.status_code == 302
    assert response["Location"] == _change_url(alice)
    assert _roles(alice)["groups"] == ["Editors", "Reviewers"]
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.reason) == (
        AuditAction.ROLES_CHANGED,
        boss,
        "cover",
    )
    assert record.before["groups"] == ["Editors"]
    assert record.after["groups"] == ["Editors", "Reviewers"]


def test_roles_page__confirmation_carries_a_script_in_the_reason__escaped(boss, alice):
    reason = '<script>alert("x")</script>'

    response = login(boss).post(
        _roles_url(alice), _roles_post("Editors", "Reviewers", reason=reason)
    )

    content = response.content.decode()
    assert reason not in content
    assert "&lt;script&gt;" in content


@pytest.mark.parametrize("confirm", [False, True])
@pytest.mark.parametrize(
    ("groups", "staff", "superuser", "words"),
    [
        (("Admins", "Reviewers"), True, False, "join Reviewers"),
        (("Admins",), True, True, "make yourself a superuser"),
    ],
)
def test_roles_page__own_roles_upwards__form_error_nothing_written(
    boss, groups, staff, superuser, words, confirm
):
    before = _roles(boss)
    data = _roles_post(*groups, staff=staff, superuser=superuser)
    if confirm:  # straight to the confirm step, skipping the page that refuses it
        data["confirm"] = "1"

    response = login(boss).post(_roles_url(boss), data)

    assert response.status_code == 403
    assert response.templates[0].name == "admin/auth/user/roles.html"
    assert words in " ".join(response.context["form"].non_field_errors())
    assert _roles(boss) == before
    assert not AuditRecord.objects.exists()


def test_roles_page__own_staff_flag_upwards__refused_nothing_written(db):
    # Given an administrator who lost staff status, still holding an earlier session
    admin = member("backoffice", "Admins")
    client = login(admin)
    User.objects.filter(pk=admin.pk).update(is_staff=False)

    response = client.post(_roles_url(admin), {**_roles_post("Admins"), "confirm": "1"})

    # The admin sends non-staff users to its login page; the service would refuse too
    # (tests/agentconfig/test_people.py).
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert not User.objects.get(pk=admin.pk).is_staff
    assert not AuditRecord.objects.exists()


def test_roles_page__non_superuser_grants_superuser__form_error(boss, alice):
    response = login(boss).post(
        _roles_url(alice), {**_roles_post("Editors", superuser=True), "confirm": "1"}
    )

    assert response.status_code == 403
    assert "only a superuser" in response.content.decode()
    assert not User.objects.get(pk=alice.pk).is_superuser
    assert not AuditRecord.objects.exists()


def test_roles_page__superuser_grants_superuser__changed(root, alice):
    client = login(root)
    shown = client.post(_roles_url(alice), _roles_post("Editors", superuser=True))

    response = client.post(
        _roles_url(alice),
        {
            **_roles_post("Editors", superuser=True),
            "expected": shown.context["expected"],
            "confirm": "1",
        },
    )

    assert response.status_code == 302
    assert User.objects.get(pk=alice.pk).is_superuser


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"reason": ""}, "reason", "is required"),
        ({"groups": ["999999"]}, "groups", "Select a valid choice"),
    ],
)
def test_roles_page__invalid_input__form_error_nothing_written(boss, alice, data, field, words):
    response = login(boss).post(
        _roles_url(alice), {**_roles_post("Editors", "Reviewers"), **data, "confirm": "1"}
    )

    assert response.status_code == 200
    assert words in " ".join(response.context["form"].errors[field])
    assert _roles(alice)["groups"] == ["Editors"]
    assert not AuditRecord.objects.exists()


def test_roles_page__nothing_changes__form_error(boss, alice):
    response = login(boss).post(_roles_url(alice), _roles_post("Editors"))

    assert response.status_code == 200
    assert "nothing to change" in response.content.decode()


def test_roles_page__roles_moved_since_the_confirmation__conflict_nothing_written(boss, alice):
    # Given the page showed alice as an editor, then someone made her a deployer
    client = login(boss)
    shown = client.post(_roles_url(alice), _roles_post("Editors", "Reviewers"))
    people.set_roles(
        user=alice,
        groups=["Deployers", "Editors"],
        is_staff=True,
        is_superuser=False,
        actor=Actor.system("tests"),
        reason="meanwhile",
    )

    response = client.post(
        _roles_url(alice),
        {
            **_roles_post("Editors", "Reviewers"),
            "expected": shown.context["expected"],
            "confirm": "1",
        },
    )

    assert response.status_code == 409
    assert "changed while you were confirming" in response.content.decode()
    assert _roles(alice)["groups"] == ["Deployers", "Editors"]
    assert AuditRecord.objects.count() == 1


def test_roles_page__altered_confirmation__form_error(boss, alice):
    response = login(boss).post(
        _roles_url(alice), {**_roles_post("Editors", "Reviewers"), "expected": "{", "confirm": "1"}
    )

    assert response.status_code == 200
    assert "start again" in response.content.decode()
    assert not AuditRecord.objects.exists()


def test_roles_page__without_change_user__403_naming_the_permission(alice):
    bob = member("bob", "Editors")

    response = login(alice).get(_roles_url(bob))

    assert response.status_code == 403
    assert "auth.change_user" in response.content.decode()


def test_roles_page__put__405(boss, alice):
    assert login(boss).put(_roles_url(alice)).status_code == 405


def test_roles_page__post_without_csrf_token__refused(boss, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(boss)

    response = client.post(
        _roles_url(alice), {**_roles_post("Editors", "Reviewers"), "confirm": "1"}
    )

    assert response.status_code == 403
    assert _roles(alice)["groups"] == ["Editors"]


# --- the stock change form --------------------------------------------------------------


def _change_post(user, **extra) -> dict:
    return {
        "username": user.username,
        "first_name": "Renamed",
        "last_name": "",
        "email": user.email,
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "last_login_0": "",
        "last_login_1": "",
        "_save": "Save",
        **extra,
    }


@pytest.mark.parametrize("who", ["boss", "root"])
def test_change_form__post_with_roles__details_saved_roles_unchanged(request, alice, who):
    # Given an administrator (or even a superuser) posting role fields to the stock form
    client = login(request.getfixturevalue(who))
    before = _roles(alice)

    # When
    response = client.post(
        _change_url(alice),
        _change_post(
            alice,
            is_superuser="on",
            groups=_group_ids("Admins", "Reviewers"),
            user_permissions=[str(Permission.objects.get(codename="break_glass").pk)],
        ),
    )

    # Then the details are saved, and nothing that grants anything
    assert response.status_code == 302
    changed = User.objects.get(pk=alice.pk)
    assert changed.first_name == "Renamed"
    assert _roles(alice) == before
    assert not changed.user_permissions.exists()


def test_change_form__admin_posts_own_superuser_flag__unchanged(boss):
    response = login(boss).post(
        _change_url(boss), _change_post(boss, is_superuser="on", groups=_group_ids("Reviewers"))
    )

    assert response.status_code == 302
    assert _roles(boss) == {"groups": ["Admins"], "is_staff": True, "is_superuser": False}


def test_change_form__role_fields__shown_read_only(boss, alice):
    response = login(boss).get(_change_url(alice))

    content = response.content.decode()
    assert response.status_code == 200
    for name in ("is_superuser", "is_staff", "groups", "user_permissions"):
        assert f'name="{name}"' not in content
    assert 'name="first_name"' in content
    assert "Change roles…" in content


def test_change_form__non_superuser_on_a_superuser__read_only_and_no_password_change(boss, root):
    client = login(boss)

    page = client.get(_change_url(root))
    password = client.post(
        reverse("admin:auth_user_password_change", args=[root.pk]),
        {"password1": "a fresh passphrase 1", "password2": "a fresh passphrase 1"},
    )

    assert page.status_code == 200
    assert 'name="first_name"' not in page.content.decode()
    assert password.status_code == 403
    assert User.objects.get(pk=root.pk).check_password("correct horse battery")


# --- the add page -----------------------------------------------------------------------


def _add_post(**extra) -> dict:
    return {
        "username": "carol",
        "email": "carol@example.com",
        "usable_password": "true",
        "password1": "a long passphrase here",
        "password2": "a long passphrase here",
        "groups": _group_ids("Reviewers"),
        "is_staff": "on",
        "reason": "joins billing",
        "_save": "Save",
        **extra,
    }


def test_add_page__get__has_roles_and_reason(boss):
    response = login(boss).get(reverse("admin:auth_user_add"))

    content = response.content.decode()
    assert response.status_code == 200
    for name in ("username", "password1", "groups", "is_staff", "reason"):
        assert f'name="{name}"' in content
    assert 'name="is_superuser"' not in content


def test_add_page__post__created_by_the_service_and_recorded(boss):
    response = login(boss).post(reverse("admin:auth_user_add"), _add_post())

    carol = User.objects.get(username="carol")
    assert response.status_code == 302
    assert response["Location"] == _change_url(carol)
    assert carol.check_password("a long passphrase here")
    assert _roles(carol) == {"groups": ["Reviewers"], "is_staff": True, "is_superuser": False}
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.reason) == (
        AuditAction.USER_CREATED,
        boss,
        "joins billing",
    )


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"reason": ""}, "is required"),
        ({"username": "boss"}, "already exists"),
        ({"password2": "something else"}, "two password fields"),
    ],
)
def test_add_page__invalid__form_error_nothing_created(boss, extra, words):
    users = User.objects.count()

    response = login(boss).post(reverse("admin:auth_user_add"), _add_post(**extra))

    assert response.status_code == 200
    assert words in response.content.decode()
    assert User.objects.count() == users
    assert not AuditRecord.objects.exists()


def test_add_page__group_the_actor_cannot_grant__form_error_not_500(boss):
    group = Group.objects.create(name="Janitors")
    group.permissions.add(Permission.objects.get(codename="delete_user"))

    response = login(boss).post(reverse("admin:auth_user_add"), _add_post(groups=[str(group.pk)]))

    assert response.status_code == 403
    assert "may not add people to Janitors" in response.content.decode()
    assert not User.objects.filter(username="carol").exists()


def test_add_page__without_add_user__403(alice):
    assert login(alice).get(reverse("admin:auth_user_add")).status_code == 403


# --- the red-team path, through the pages -----------------------------------------------


def test_red_team__requester_adds_a_reviewer_in_the_admin__request_page_says_it_does_not_count(
    boss, agent, production
):
    # Given an Admins member asks for a deployment, then adds a second account in Reviewers
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    request = requests.create_request(
        agent=agent, environment=production, version=v2, actor=Actor.of(boss), reason="ship"
    )
    client = login(boss)
    client.post(reverse("admin:auth_user_add"), _add_post(username="sock"))
    sock = User.objects.get(username="sock")
    requests.approve_request(request=request, actor=Actor.of(sock), comment="fine")

    # When the request page is shown, and the requester tries to apply it
    page = client.get(reverse("admin:deployments_deploymentrequest_change", args=[request.pk]))
    applied = client.post(
        reverse("admin:deployments_deploymentrequest_apply", args=[request.pk]),
        {"reason": "", "expected_active": str(v1.pk)},
    )

    # Then the approval is shown as not counting, and nothing is deployed
    content = page.content.decode()
    assert "granted by the requester" in content
    assert "0 of 1" in content
    assert applied.status_code in (200, 403)
    assert "0 of the 1" in applied.content.decode()
    assert get_pointer(agent, production).stable_version == v1


def test_group_admin__read_only__permissions_cannot_be_edited_in_the_browser(admin_client):
    from django.contrib.auth.models import Group

    editors = Group.objects.get(name="Editors")
    before = set(editors.permissions.values_list("codename", flat=True))

    page = admin_client.get(f"/admin/auth/group/{editors.pk}/change/")
    admin_client.post(
        f"/admin/auth/group/{editors.pk}/change/", {"name": "Editors", "permissions": []}
    )

    assert page.status_code == 200  # viewable
    assert 'name="_save"' not in page.content.decode()
    assert set(editors.permissions.values_list("codename", flat=True)) == before
