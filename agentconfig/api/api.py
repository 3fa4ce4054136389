"""The management API: one NinjaAPI, its token authentication, problem details and routers.

OpenAPI 3.1 at /api/v1/manage/openapi.json, interactive docs at /api/v1/manage/docs
(Swagger UI from ninja's own static files, no CDN, no validator badge).
"""

from __future__ import annotations

from ninja import NinjaAPI, Swagger

from agentconfig.api import agents, environments, problems
from agentconfig.api.auth import TokenAuth

api = NinjaAPI(
    title="agentconfig management API",
    version="1",
    description=(
        "Drive agentconfig from scripts and CI with a personal access token "
        "(`Authorization: Bearer acp_...`). The token acts as its user: the user's roles "
        "apply exactly as in the browser. Errors are RFC 9457 problem details."
    ),
    auth=TokenAuth(),
    urls_namespace="manage-api",
    docs=Swagger(settings={"validatorUrl": None}),
)
problems.install(api)
api.add_router("", agents.router)
api.add_router("", environments.router)
