"""Give the role groups their evaluation permissions (agentconfig/roles.py)."""

from django.db import migrations

from agentconfig.core.roles import apply_roles


class Migration(migrations.Migration):
    dependencies = [
        ("agentconfig", "0002_roles"),
        ("evaluations", "0002_append_only_triggers"),
    ]

    operations = [migrations.RunPython(apply_roles, migrations.RunPython.noop)]
