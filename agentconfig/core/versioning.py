"""Numbered versions: a parent's immutable versions are numbered 1, 2, 3, ...

Agent versions (per agent) and suite versions (per suite) follow the same rule, held by
the database: one row per (parent, number), and numbers start at 1.
"""

from django.db import models
from django.db.models import Q


def version_number_constraints(
    parent: str, *, unique: str, positive: str
) -> list[models.BaseConstraint]:
    """The constraints of a model whose `version_number` counts its `parent`'s versions;
    `unique` and `positive` name them (the names are the migrations' own)."""
    return [
        models.UniqueConstraint(fields=[parent, "version_number"], name=unique),
        models.CheckConstraint(condition=Q(version_number__gte=1), name=positive),
    ]
