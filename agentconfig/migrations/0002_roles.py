"""Create the Editors, Reviewers, Deployers and Admins groups (agentconfig/roles.py)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from agentconfig.roles import ADMIN_APPS, ADMIN_EXTRA, ROLES


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations ran; create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def lookup(names):
        found = []
        for name in names:
            app_label, codename = name.split(".")
            found.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return found

    for role, names in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(lookup(names))
    admins, _ = Group.objects.get_or_create(name="Admins")
    admins.permissions.set(
        [*Permission.objects.filter(content_type__app_label__in=ADMIN_APPS), *lookup(ADMIN_EXTRA)]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("agentconfig", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("versions", "0002_append_only_trigger"),
        ("deployments", "0004_deployment_requests"),
        ("flags", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
