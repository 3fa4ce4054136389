from __future__ import annotations

from django.test import Client
from django.urls import reverse

from deployments.models import Pointer, ReleaseKind, ReleaseLogEntry
from deployments.selectors import get_pointer
from tests import factories


def _url(name: str, agent, environment: str = "production") -> str:
    return reverse(f"admin:agentconfig_agent_{name}", args=[agent.pk, environment])


def _active(agent, environment) -> int | None:
    pointer = get_pointer(agent, environment)
    return pointer.stable_version.version_number if pointer else None


# --- deploy --------------------------------------------------------------------------


def test_deploy_page__get__preselects_newest_inactive_version(
    admin_client, released_agent, production, direct_releases
):
    response = admin_client.get(_url("deploy", released_agent))

    assert response.status_code == 200
    form = response.context["form"]
    assert form.fields["version"].initial == released_agent.versions.get(version_number=3).pk
    assert "v2 (active here)" in response.content.decode()


def test_deploy__form_then_confirmation_then_apply__moves_pointer_and_logs_user(
    admin_client, released_agent, production
):
    # Given production runs v2 and v3 differs in its model (and, this test being about
    # the deploy pages, production takes deploys without approval)
    production.required_approvals = 0
    production.save()
    v3 = released_agent.versions.get(version_number=3)
    data = {"version": str(v3.pk), "reason": "Ship the new model."}

    # When the form is submitted, the confirmation shows the change and writes nothing
    confirmation = admin_client.post(_url("deploy", released_agent), data)
    assert confirmation.status_code == 200
    content = confirmation.content.decode()
    assert "v2 → v3" in content
    diff = confirmation.context["version_diff"].diff
    assert set(diff.changed_fields) == {"system_prompt", "model", "temperature"}
    assert 'class="ac-diff-row ac-row-' in content  # the side-by-side prompt diff
    assert content.count('class="ac-changed"') == 2  # model and temperature rows
    assert _active(released_agent, production) == 2
    apply_url = confirmation.context["apply_url"]
    assert apply_url == _url("deploy_apply", released_agent)

    # And when the confirmation is posted
    applied = admin_client.post(
        apply_url,
        {**data, "expected_active": str(get_pointer(released_agent, production).stable_version_id)},
    )

    # Then
    assert applied.status_code == 302
    assert applied.url == reverse("admin:agentconfig_agent_change", args=[released_agent.pk])
    assert _active(released_agent, production) == 3
    entry = ReleaseLogEntry.objects.filter(environment=production).first()
    assert entry.kind == ReleaseKind.DEPLOY
    assert (entry.from_version.version_number, entry.to_version.version_number) == (2, 3)
    assert entry.actor.username == "admin"
    assert entry.actor_label == "admin"
    assert entry.reason == "Ship the new model."
    page = admin_client.get(applied.url).content.decode()
    assert "Deployed support-bot v3 to production (was v2)." in page


def test_deploy__first_deploy__confirmation_says_not_deployed(admin_client, agent, staging):
    version = factories.create_version(agent)

    response = admin_client.post(
        _url("deploy", agent, "staging"), {"version": str(version.pk), "reason": "first"}
    )

    assert response.status_code == 200
    assert "What changes: nothing → v1" in response.content.decode()
    assert response.context["version_diff"].old is None
    assert not Pointer.objects.exists()


def test_deploy__missing_reason__form_error_and_no_confirmation(
    admin_client, released_agent, direct_releases
):
    v3 = released_agent.versions.get(version_number=3)

    response = admin_client.post(
        _url("deploy", released_agent), {"version": str(v3.pk), "reason": " "}
    )

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert "is required: say why" in response.content.decode()
    assert "apply_url" not in response.context


def test_deploy_apply__get__405_and_nothing_changes(admin_client, released_agent, production):
    v3 = released_agent.versions.get(version_number=3)
    count = ReleaseLogEntry.objects.count()

    response = admin_client.get(
        _url("deploy_apply", released_agent), {"version": str(v3.pk), "reason": "via GET"}
    )

    assert response.status_code == 405
    assert _active(released_agent, production) == 2
    assert ReleaseLogEntry.objects.count() == count


def test_deploy_apply__already_active_version__conflict_shown_not_500(
    admin_client, released_agent, production
):
    v2 = released_agent.versions.get(version_number=2)
    count = ReleaseLogEntry.objects.count()

    response = admin_client.post(
        _url("deploy_apply", released_agent),
        {"version": str(v2.pk), "reason": "again", "expected_active": str(v2.pk)},
    )

    assert response.status_code == 409
    assert "v2 is already active in production." in response.content.decode()
    assert ReleaseLogEntry.objects.count() == count


def test_deploy_apply__pointer_moved_since_confirmation__confirmation_shown_again(
    admin_client, released_agent, production
):
    # Given the user confirmed "v2 -> v3" but someone deployed v1 meanwhile
    v1, v3 = (released_agent.versions.get(version_number=n) for n in (1, 3))
    v2_pk = get_pointer(released_agent, production).stable_version_id
    factories.deploy(v1, production)

    # When
    response = admin_client.post(
        _url("deploy_apply", released_agent),
        {"version": str(v3.pk), "reason": "ship", "expected_active": str(v2_pk)},
    )

    # Then nothing moves and the new comparison (v1 -> v3) is shown
    assert response.status_code == 200
    assert "changed to v1 while you were reviewing" in response.content.decode()
    assert response.context["version_diff"].old == v1
    assert _active(released_agent, production) == 1


def test_deploy_pages__staff_without_permission__403(staff_client, released_agent, production):
    v3 = released_agent.versions.get(version_number=3)
    data = {"version": str(v3.pk), "reason": "try", "expected_active": ""}

    responses = [
        staff_client.get(_url("deploy", released_agent)),
        staff_client.post(_url("deploy", released_agent), data),
        staff_client.post(_url("deploy_apply", released_agent), data),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403]
    assert _active(released_agent, production) == 2


def test_deploy_apply__viewer_without_deploy_permission__403_with_message(
    viewer_client, released_agent, production
):
    v2, v3 = (released_agent.versions.get(version_number=n) for n in (2, 3))

    response = viewer_client.post(
        _url("deploy_apply", released_agent),
        {"version": str(v3.pk), "reason": "try", "expected_active": str(v2.pk)},
    )

    assert response.status_code == 403
    assert "may not deploy versions" in response.content.decode()
    assert "deployments.deploy_version" in response.content.decode()
    assert _active(released_agent, production) == 2


def test_deploy_page__unknown_environment__404(admin_client, released_agent):
    assert admin_client.get(_url("deploy", released_agent, "moon")).status_code == 404


# --- rollback: one page ---------------------------------------------------------------


def test_rollback_page__get__history_previous_version_preselected_and_its_diff(
    admin_client, released_agent, production
):
    response = admin_client.get(_url("rollback", released_agent))

    assert response.status_code == 200
    v1, v2 = (released_agent.versions.get(version_number=n) for n in (1, 2))
    assert response.context["chosen"] == v1
    assert len(response.context["history"]) == 2
    content = response.content.decode()
    assert "test deploy" in content
    # The diff of what the rollback changes: active (v2) on the left, target (v1) right
    diff = response.context["version_diff"]
    assert (diff.old, diff.new) == (v2, v1)
    assert "What the rollback changes: v2 → v1" in content
    # One POST applies it, carrying the version the page showed as active
    assert 'id="rollback_apply_form"' in content
    assert f'name="expected_active" value="{v2.pk}"' in content
    assert f'name="to_version" value="{v1.pk}"' in content


def test_rollback_page__other_target_chosen__diff_follows_the_choice(
    admin_client, released_agent, production
):
    # Given production went v1 -> v2 -> v3 (and then v3 was active)
    v1, v3 = (released_agent.versions.get(version_number=n) for n in (1, 3))
    factories.deploy(v3, production)

    # When the page is asked for the older target v1 instead of the default v2
    response = admin_client.get(_url("rollback", released_agent), {"to": str(v1.pk)})

    # Then
    assert response.context["chosen"] == v1
    assert (response.context["version_diff"].old, response.context["version_diff"].new) == (
        v3,
        v1,
    )
    assert f'<option value="{v1.pk}" selected>' in response.content.decode()


def test_rollback_page__target_never_active_here__warning_and_default_target(
    admin_client, released_agent, production
):
    v1, v3 = (released_agent.versions.get(version_number=n) for n in (1, 3))

    response = admin_client.get(_url("rollback", released_agent), {"to": str(v3.pk)})

    assert response.status_code == 200
    assert response.context["chosen"] == v1
    assert "is not a rollback target here" in response.content.decode()


def test_rollback__one_post__moves_pointer_back_and_logs_user(
    admin_client, released_agent, production
):
    # Given the rollback page, as a user sees it
    page = admin_client.get(_url("rollback", released_agent))
    v1, v2 = (released_agent.versions.get(version_number=n) for n in (1, 2))

    # When its form is posted with a reason
    applied = admin_client.post(
        page.context["apply_url"],
        {"to_version": str(v1.pk), "reason": "v2 answers rudely", "expected_active": str(v2.pk)},
    )

    # Then
    assert applied.status_code == 302
    assert _active(released_agent, production) == 1
    entry = ReleaseLogEntry.objects.filter(environment=production).first()
    assert entry.kind == ReleaseKind.ROLLBACK
    assert (entry.from_version.version_number, entry.to_version.version_number) == (2, 1)
    assert entry.actor.username == "admin"
    assert entry.reason == "v2 answers rudely"
    assert "Rolled support-bot in production back to v1 (was v2)." in (
        admin_client.get(applied.url).content.decode()
    )


def test_rollback_apply__missing_reason__message_on_the_page_and_nothing_moves(
    admin_client, released_agent, production
):
    v1, v2 = (released_agent.versions.get(version_number=n) for n in (1, 2))
    count = ReleaseLogEntry.objects.count()

    response = admin_client.post(
        _url("rollback_apply", released_agent),
        {"to_version": str(v1.pk), "reason": "  ", "expected_active": str(v2.pk)},
    )

    assert response.status_code == 200
    assert "is required: say why" in response.content.decode()
    assert response.context["chosen"] == v1  # the same page, same target, with its diff
    assert _active(released_agent, production) == 2
    assert ReleaseLogEntry.objects.count() == count


def test_rollback_apply__active_version_moved_since_page__refused_and_new_diff_shown(
    admin_client, released_agent, production
):
    # Given the user looked at "v2 -> v1" but someone deployed v3 meanwhile
    v1, v2, v3 = (released_agent.versions.get(version_number=n) for n in (1, 2, 3))
    factories.deploy(v3, production)

    # When the page's form is posted
    response = admin_client.post(
        _url("rollback_apply", released_agent),
        {"to_version": str(v1.pk), "reason": "v2 is bad", "expected_active": str(v2.pk)},
    )

    # Then nothing moves, and the page shows the real diff now (v3 -> v1)
    assert response.status_code == 200
    assert "changed to v3 while you were reviewing" in response.content.decode()
    diff = response.context["version_diff"]
    assert (diff.old, diff.new) == (v3, v1)
    assert _active(released_agent, production) == 3
    assert f'name="expected_active" value="{v3.pk}"' in response.content.decode()


def test_rollback_page__post__405(admin_client, released_agent, production):
    v1 = released_agent.versions.get(version_number=1)

    response = admin_client.post(
        _url("rollback", released_agent), {"to_version": str(v1.pk), "reason": "x"}
    )

    assert response.status_code == 405
    assert _active(released_agent, production) == 2


def test_rollback_page__only_one_version_ever_active__nothing_to_roll_back(
    admin_client, released_agent, staging
):
    response = admin_client.get(_url("rollback", released_agent, "staging"))

    assert response.status_code == 200
    assert "Nothing to roll back to" in response.content.decode()
    assert 'id="rollback_form"' not in response.content.decode()


def test_rollback_apply__version_never_active_here__refused(
    admin_client, released_agent, production
):
    v2, v3 = (released_agent.versions.get(version_number=n) for n in (2, 3))

    response = admin_client.post(
        _url("rollback_apply", released_agent),
        {"to_version": str(v3.pk), "reason": "x", "expected_active": str(v2.pk)},
    )

    assert response.status_code == 200
    assert "to_version" in response.context["form"].errors
    assert _active(released_agent, production) == 2


def test_rollback_apply__get__405_and_nothing_changes(admin_client, released_agent, production):
    v1 = released_agent.versions.get(version_number=1)

    response = admin_client.get(
        _url("rollback_apply", released_agent), {"to_version": str(v1.pk), "reason": "x"}
    )

    assert response.status_code == 405
    assert _active(released_agent, production) == 2


def test_rollback_pages__staff_without_permission__403(staff_client, released_agent, production):
    v1 = released_agent.versions.get(version_number=1)
    data = {"to_version": str(v1.pk), "reason": "try", "expected_active": ""}

    responses = [
        staff_client.get(_url("rollback", released_agent)),
        staff_client.post(_url("rollback_apply", released_agent), data),
    ]

    assert [r.status_code for r in responses] == [403, 403]
    assert _active(released_agent, production) == 2


def test_rollback_apply__user_with_deploy_but_not_rollback_permission__403(
    released_agent, production, client_with_permissions
):
    # Given a staff user who may view agents and deploy, but not roll back
    client = client_with_permissions("agentconfig.view_agent", "deployments.deploy_version")
    v1, v2 = (released_agent.versions.get(version_number=n) for n in (1, 2))

    # When
    response = client.post(
        _url("rollback_apply", released_agent),
        {"to_version": str(v1.pk), "reason": "try", "expected_active": str(v2.pk)},
    )

    # Then
    assert response.status_code == 403
    assert "deployments.rollback_version" in response.content.decode()
    assert _active(released_agent, production) == 2


def test_deploy_apply__anonymous__redirected_to_login(client, released_agent, production):
    v3 = released_agent.versions.get(version_number=3)

    response = client.post(
        _url("deploy_apply", released_agent), {"version": str(v3.pk), "reason": "x"}
    )

    assert response.status_code == 302
    assert "/login/" in response.url
    assert _active(released_agent, production) == 2


def test_deploy_apply__without_csrf_token__refused(released_agent, production, admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    v2, v3 = (released_agent.versions.get(version_number=n) for n in (2, 3))

    response = client.post(
        _url("deploy_apply", released_agent),
        {"version": str(v3.pk), "reason": "x", "expected_active": str(v2.pk)},
    )

    assert response.status_code == 403
    assert _active(released_agent, production) == 2
