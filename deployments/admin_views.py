"""Moved to deployments.admin.release_pages: kept only until its importers use that path."""

from deployments.admin.release_pages import (
    DEPLOY_PERMISSION,
    ROLLBACK_PERMISSION,
    Target,
    agent_page_url,
    deploy_apply_view,
    deploy_view,
    load_target,
    render_agent_page,
    rollback_apply_view,
    rollback_view,
    stale_confirmation,
)

__all__ = [
    "DEPLOY_PERMISSION",
    "ROLLBACK_PERMISSION",
    "Target",
    "agent_page_url",
    "deploy_apply_view",
    "deploy_view",
    "load_target",
    "render_agent_page",
    "rollback_apply_view",
    "rollback_view",
    "stale_confirmation",
]
