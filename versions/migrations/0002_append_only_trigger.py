from django.db import migrations

from agentconfig.core.append_only import append_only_trigger


class Migration(migrations.Migration):
    dependencies = [("versions", "0001_initial")]

    operations = [append_only_trigger("versions_agentversion")]
