"""A release knows its request and its rollout by foreign key, not by ids inside `details`.

Existing rows keep their data: `details["request"]` and `details["rollout"]` move into the
new columns and leave `details`, which keeps only free-form extras. The release log is
append-only (a trigger refuses UPDATE on PostgreSQL), so the trigger is paused for this
one rewrite, inside the migration's transaction, and restored before it commits.
"""

import uuid

import django.db.models.deletion
from django.db import migrations, models

TABLE = "deployments_releaselogentry"
TRIGGER = f"{TABLE}_append_only"


def _set_trigger(schema_editor, state):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'ALTER TABLE "{TABLE}" {state} TRIGGER "{TRIGGER}"')


def _rewrite(apps, schema_editor, forward):
    ReleaseLogEntry = apps.get_model("deployments", "ReleaseLogEntry")
    DeploymentRequest = apps.get_model("deployments", "DeploymentRequest")
    CanaryRollout = apps.get_model("deployments", "CanaryRollout")
    if forward:
        rows = ReleaseLogEntry.objects.filter(
            models.Q(details__has_key="request") | models.Q(details__has_key="rollout")
        )
    else:
        rows = ReleaseLogEntry.objects.filter(
            models.Q(request__isnull=False) | models.Q(rollout__isnull=False)
        )
    changed = []
    requests = set(DeploymentRequest.objects.values_list("pk", flat=True))
    rollouts = set(CanaryRollout.objects.values_list("pk", flat=True))
    for entry in rows.iterator():
        details = dict(entry.details or {})
        if forward:
            request_id = details.pop("request", None)
            rollout_id = details.pop("rollout", None)
            entry.request_id = request_id if request_id in requests else None
            try:
                rollout = uuid.UUID(str(rollout_id)) if rollout_id is not None else None
            except ValueError:
                rollout = None
            entry.rollout_id = rollout if rollout in rollouts else None
            # An id that points nowhere stays in details rather than being lost.
            if request_id is not None and entry.request_id is None:
                details["request"] = request_id
            if rollout_id is not None and entry.rollout_id is None:
                details["rollout"] = rollout_id
        else:
            if entry.request_id is not None:
                details["request"] = entry.request_id
            if entry.rollout_id is not None:
                details["rollout"] = str(entry.rollout_id)
        entry.details = details
        changed.append(entry)
    if not changed:
        return
    _set_trigger(schema_editor, "DISABLE")
    ReleaseLogEntry.objects.bulk_update(changed, ["request", "rollout", "details"], batch_size=500)
    _set_trigger(schema_editor, "ENABLE")


def forwards(apps, schema_editor):
    _rewrite(apps, schema_editor, forward=True)


def backwards(apps, schema_editor):
    _rewrite(apps, schema_editor, forward=False)


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0008_canary_decisions"),
    ]

    operations = [
        migrations.AddField(
            model_name="releaselogentry",
            name="request",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="releases",
                to="deployments.deploymentrequest",
            ),
        ),
        migrations.AddField(
            model_name="releaselogentry",
            name="rollout",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="release_log",
                to="deployments.canaryrollout",
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
