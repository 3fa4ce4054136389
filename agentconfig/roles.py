"""The roles people work in, as Django groups with permissions (created by a migration).

- Editors write versions, edit flags and ask for deployments.
- Reviewers approve or reject deployment requests (never their own).
- Deployers deploy, run canaries, roll back and pull kill switches.
- Admins hold every permission of the product, including break glass.

Every service checks the permission itself (agentconfig.actors.Actor.require), so these
groups are a convenience for assigning them, not where the rules live.
"""

VIEW = [
    "agentconfig.view_agent",
    "versions.view_agentversion",
    "deployments.view_environment",
    "deployments.view_pointer",
    "deployments.view_releaselogentry",
    "deployments.view_deploymentrequest",
    "deployments.view_requestreview",
    "deployments.view_canaryrollout",
    "deployments.view_canarydecision",
    "deployments.view_canarypolicy",
    "flags.view_flag",
    "flags.view_flagenvironment",
    "flags.view_toolgate",
]

ROLES: dict[str, list[str]] = {
    "Editors": [
        *VIEW,
        "agentconfig.add_agent",
        "agentconfig.change_agent",
        "versions.add_agentversion",
        "deployments.add_deploymentrequest",
        "flags.add_flag",
        "flags.change_flag",
        "flags.change_flagenvironment",
        "flags.add_toolgate",
    ],
    "Reviewers": [*VIEW, "deployments.review_deploymentrequest"],
    "Deployers": [
        *VIEW,
        "deployments.deploy_version",
        "deployments.rollback_version",
        "deployments.manage_canary",
        "flags.kill_switch",
    ],
}

# Admins: every permission of these apps (and the user list, to manage people).
ADMIN_APPS = ("agentconfig", "versions", "deployments", "flags")
ADMIN_EXTRA = ["auth.view_user", "auth.change_user", "auth.add_user", "auth.view_group"]
