"""The roles people work in, as Django groups with permissions (created by a migration).

- Editors write versions, edit flags and evaluation suites, run evaluations and ask
  for deployments.
- Reviewers approve or reject deployment requests (never their own) and may override
  the evaluation gate with a reason.
- Deployers deploy, run canaries, roll back and pull kill switches.
- Admins hold every permission of the product, including break glass.

Every service checks the permission itself (agentconfig.core.actors.Actor.require), so these
groups are a convenience for assigning them, not where the rules live.

Changing ROLES takes effect through a migration that runs `apply_roles` again (see
agentconfig/migrations/0003_roles_evaluations.py): groups are set to exactly these lists.
"""

from typing import Any

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
    "evaluations.view_evaluationsuite",
    "evaluations.view_suiteversion",
    "evaluations.view_evaluationrun",
    "evaluations.view_gateoverride",
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
        "evaluations.add_evaluationsuite",
        "evaluations.change_evaluationsuite",
        "evaluations.add_suiteversion",
        "evaluations.add_evaluationrun",
        "evaluations.change_evaluationrun",
    ],
    "Reviewers": [*VIEW, "deployments.review_deploymentrequest", "evaluations.override_gate"],
    "Deployers": [
        *VIEW,
        "deployments.deploy_version",
        "deployments.rollback_version",
        "deployments.manage_canary",
        "flags.kill_switch",
    ],
}

# Admins: every permission of these apps (and the user list, to manage people).
ADMIN_APPS = ("agentconfig", "versions", "deployments", "flags", "evaluations")
ADMIN_EXTRA = ["auth.view_user", "auth.change_user", "auth.add_user", "auth.view_group"]


def apply_roles(apps: Any, schema_editor: Any) -> None:
    """Migration step: create the groups and set their permissions to ROLES.

    Permissions of apps whose models do not exist yet at this point of the migration
    graph are skipped; a later migration that depends on those apps applies them.
    """
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran; create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")

    def lookup(names: list[str]) -> list[Any]:
        found = []
        for name in names:
            app_label, codename = name.split(".")
            found += permission_model.objects.filter(
                content_type__app_label=app_label, codename=codename
            )
        return found

    for role, names in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.set(lookup(names))
    admins, _ = group_model.objects.get_or_create(name="Admins")
    admins.permissions.set(
        [
            *permission_model.objects.filter(content_type__app_label__in=ADMIN_APPS),
            *lookup(ADMIN_EXTRA),
        ]
    )
