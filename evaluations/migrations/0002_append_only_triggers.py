from django.db import migrations

from agentconfig.core.append_only import append_only_trigger


class Migration(migrations.Migration):
    dependencies = [("evaluations", "0001_initial")]

    operations = [
        append_only_trigger("evaluations_suiteversion"),
        append_only_trigger("evaluations_evalcase"),
        append_only_trigger("evaluations_caseresult"),
        append_only_trigger("evaluations_gateoverride"),
    ]
