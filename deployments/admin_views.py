"""Moved to deployments.admin.release_pages and deployments.admin.agent_pages: kept only
until its importers use those paths."""

from deployments.admin.agent_pages import (
    Target,
    agent_page_url,
    load_target,
    render_agent_page,
    stale_confirmation,
)
from deployments.admin.release_pages import (
    DEPLOY_PERMISSION,
    ROLLBACK_PERMISSION,
    deploy_apply_view,
    deploy_view,
    rollback_apply_view,
    rollback_view,
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
