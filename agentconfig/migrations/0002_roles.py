"""Create the Editors, Reviewers, Deployers and Admins groups (agentconfig/roles.py)."""

from django.db import migrations

from agentconfig.core.roles import apply_roles


class Migration(migrations.Migration):
    dependencies = [
        ("agentconfig", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("versions", "0002_append_only_trigger"),
        ("deployments", "0004_deployment_requests"),
        ("flags", "0001_initial"),
    ]

    operations = [migrations.RunPython(apply_roles, migrations.RunPython.noop)]
