"""The role groups created by migration carry the rules' permissions, and only those."""

import pytest
from django.contrib.auth.models import Group

from agentconfig.core.actors import Actor
from agentconfig.core.errors import Forbidden
from agentconfig.core.roles import ROLES
from deployments.services import requests
from tests import factories


@pytest.mark.parametrize("group", [*ROLES, "Admins"])
def test_roles__after_migrate__groups_exist_with_permissions(db, group):
    assert Group.objects.get(name=group).permissions.exists()


@pytest.mark.parametrize(
    ("group", "allowed", "refused"),
    [
        (
            "Editors",
            ["versions.add_agentversion", "deployments.add_deploymentrequest"],
            ["deployments.review_deploymentrequest", "deployments.deploy_version"],
        ),
        (
            "Reviewers",
            ["deployments.review_deploymentrequest"],
            ["versions.add_agentversion", "deployments.deploy_version"],
        ),
        (
            "Deployers",
            [
                "deployments.deploy_version",
                "deployments.rollback_version",
                "deployments.manage_canary",
                "flags.kill_switch",
            ],
            ["deployments.review_deploymentrequest", "deployments.break_glass"],
        ),
        ("Admins", ["deployments.break_glass", "deployments.review_deploymentrequest"], []),
    ],
)
def test_roles__members__hold_exactly_their_role_permissions(db, group, allowed, refused):
    user = factories.user_with(groups=(group,), is_staff=True)

    assert all(user.has_perm(p) for p in allowed)
    assert not any(user.has_perm(p) for p in refused)


def test_roles__editor_asks_reviewer_approves__editor_cannot_approve(agent, production):
    v1, v2 = factories.create_version(agent), factories.create_version(agent)
    factories.deploy(v1, production)
    editor, reviewer = (
        Actor.of(factories.user_with(groups=("Editors",), is_staff=True)),
        Actor.of(factories.user_with(groups=("Reviewers",), is_staff=True)),
    )
    request = requests.create_request(
        agent=agent, environment=production, version=v2, actor=editor, reason="fix"
    )

    with pytest.raises(Forbidden):
        requests.approve_request(request=request, actor=editor, comment="mine")
    review = requests.approve_request(request=request, actor=reviewer, comment="read it")

    assert review.decision == "approve"
