"""Errors as RFC 9457 problem details (`application/problem+json`).

Every refusal the API answers has the same shape: `type` (a URN naming the kind of
problem), `title`, `status`, `detail` (the service's message, written for a person) and,
for input that failed validation, `errors` (messages by field). The services' errors
(agentconfig.core.errors) carry their HTTP status; Django's ValidationError is 422;
ninja's own (unreadable body 400, schema mismatch 422, missing token 401) are mapped
here too, so a user's mistake is never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as SchemaError

from agentconfig.core.errors import ServiceError

CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:agentconfig:problem:"
UNAUTHORIZED_HEADER = 'Bearer realm="agentconfig management API"'


class Problem(Schema):
    """An RFC 9457 problem details object (what every error response of this API is)."""

    type: str
    title: str
    status: int
    detail: str
    errors: dict[str, list[str]] | None = None


# What any operation may answer besides success (documented on each in the OpenAPI document).
REFUSALS = frozenset({400, 401, 403, 404, 409, 422})


def responses(status: int, schema: Any) -> dict[Any, Any]:
    """The `response=` of an operation: `schema` on success, a Problem on any refusal."""
    return {status: schema, REFUSALS: Problem}


def problem(
    status: int, code: str, detail: str, errors: dict[str, list[str]] | None = None
) -> HttpResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    response = HttpResponse(
        json.dumps(body, cls=DjangoJSONEncoder), status=status, content_type=CONTENT_TYPE
    )
    if status == HTTPStatus.UNAUTHORIZED:
        response["WWW-Authenticate"] = UNAUTHORIZED_HEADER
    return response


def from_service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return problem(exc.http_status, exc.code, exc.message)


def from_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A service's ValidationError: field messages in `errors`, the rest in `detail`."""
    if hasattr(exc, "error_dict"):
        by_field = exc.message_dict
        general = by_field.pop("__all__", [])
        summary = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in by_field.items())
        detail = " ".join([*general, summary]).strip()
        return problem(422, "invalid", detail, by_field or None)
    return problem(422, "invalid", " ".join(exc.messages))


def from_schema_error(request: HttpRequest, exc: SchemaError) -> HttpResponse:
    """A request that does not match the schema (wrong type, missing field, bad query)."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        errors.setdefault(_field_of(error.get("loc", ())), []).append(str(error.get("msg", "")))
    summary = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
    return problem(422, "invalid", f"The request does not match the schema: {summary}", errors)


def _field_of(loc: Any) -> str:
    # ("body", "payload", "config") -> "config"; ("query", "limit") -> "limit".
    source, *parts = [str(part) for part in loc] or ["body"]
    if source == "body" and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) or source


def from_authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    if request.headers.get("Authorization"):
        detail = (
            "The token is not valid: it is unknown, expired or revoked, or its user is "
            "deactivated. Create a new one (admin, or `manage.py create_token`)."
        )
    else:
        detail = "Send a personal access token as 'Authorization: Bearer acp_...'."
    return problem(401, "unauthorized", detail)


def from_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {400: "bad_request", 403: "forbidden", 404: "not_found", 429: "throttled"}
    return problem(exc.status_code, code.get(exc.status_code, "error"), str(exc))


def from_too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return problem(413, "too_large", f"The request body is larger than {limit} bytes.")


@csrf_exempt  # token-authenticated API: a POST to a wrong path is a 404, not a CSRF page
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any path under the prefix that is no operation (see the OpenAPI document)."""
    return problem(
        404,
        "not_found",
        f"{request.path} is no operation of this API; the operations are listed in "
        "/api/v1/manage/openapi.json.",
    )


def install(api: NinjaAPI) -> None:
    """Answer every refusal of `api` as a problem details object."""
    handlers: list[tuple[type[Exception], Callable[[HttpRequest, Any], HttpResponse]]] = [
        (ServiceError, from_service_error),
        (ValidationError, from_validation_error),
        (SchemaError, from_schema_error),
        (AuthenticationError, from_authentication_error),
        (HttpError, from_http_error),
        (RequestDataTooBig, from_too_large),
    ]
    for exception, handler in handlers:
        # ninja types a handler's argument as "the exception or its class"; ours get instances.
        api.add_exception_handler(exception, cast("Any", handler))
