from django.db import migrations

from agentconfig.core.append_only import append_only_trigger

DEFAULT_ENVIRONMENTS = [("staging", "Staging", 10), ("production", "Production", 20)]


def create_default_environments(apps, schema_editor):
    Environment = apps.get_model("deployments", "Environment")
    for slug, name, position in DEFAULT_ENVIRONMENTS:
        Environment.objects.get_or_create(slug=slug, defaults={"name": name, "position": position})


class Migration(migrations.Migration):
    dependencies = [("deployments", "0001_initial")]

    operations = [
        append_only_trigger("deployments_releaselogentry"),
        migrations.RunPython(create_default_environments, migrations.RunPython.noop),
    ]
