"""Append-only rows: inserted once, never updated or deleted.

Enforced three times, because each layer has a way around the one above it:
the model refuses save-after-insert and delete, the queryset refuses update() and
delete(), and on PostgreSQL a trigger refuses UPDATE and DELETE from any client
(raw SQL, another program, a hand-typed psql session).
"""

from typing import Any, NoReturn, TypeVar

from django.db import migrations, models

from agentconfig.core.errors import ImmutableRecord


def _refuse(model: type[models.Model], operation: str) -> NoReturn:
    raise ImmutableRecord(
        f"{model._meta.verbose_name_plural} are append-only: {operation} is not allowed. "
        "Create a new row instead."
    )


_M = TypeVar("_M", bound=models.Model)


class AppendOnlyQuerySet(models.QuerySet[_M]):
    def update(self, **kwargs: Any) -> NoReturn:
        _refuse(self.model, "update")

    def delete(self) -> NoReturn:
        _refuse(self.model, "delete")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> NoReturn:
        _refuse(self.model, "bulk_update")

    def update_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self.model, "update_or_create")


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            _refuse(type(self), "changing a saved row")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(type(self), "delete")


_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION agentconfig_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""


def append_only_trigger(table: str) -> migrations.RunPython:
    """A migration operation that installs the refusing trigger on PostgreSQL (no-op elsewhere)."""
    trigger = f"{table}_append_only"

    def forward(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        # A plain cursor: schema_editor.execute() would read RAISE's '%' as a placeholder.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(_FUNCTION_SQL)
            cursor.execute(
                f'CREATE TRIGGER "{trigger}" BEFORE UPDATE OR DELETE ON "{table}" '
                "FOR EACH ROW EXECUTE FUNCTION agentconfig_refuse_change()"
            )

    def backward(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        schema_editor.execute(f'DROP TRIGGER IF EXISTS "{trigger}" ON "{table}"')

    return migrations.RunPython(forward, backward, elidable=False)
