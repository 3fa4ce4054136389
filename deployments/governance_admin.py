"""Moved to deployments.admin.governed: kept only until its importers use that path."""

from deployments.admin.governed import GovernedAdmin, not_applied

__all__ = ["GovernedAdmin", "not_applied"]
