"""Moved to deployments.admin.canary_pages and deployments.admin.canary_panels: kept only
until its importers use those paths."""

from deployments.admin.canary_pages import (
    ACTIONS,
    MANAGE_PERMISSION,
    canary_action_apply_view,
    canary_action_view,
    canary_start_apply_view,
    canary_start_view,
)
from deployments.admin.canary_panels import FINISHED_SHOWN, CanaryPanel, build_canary_panels

__all__ = [
    "ACTIONS",
    "FINISHED_SHOWN",
    "MANAGE_PERMISSION",
    "CanaryPanel",
    "build_canary_panels",
    "canary_action_apply_view",
    "canary_action_view",
    "canary_start_apply_view",
    "canary_start_view",
]
