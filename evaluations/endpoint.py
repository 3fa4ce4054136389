"""Which endpoint, key and judge a run uses: the global settings or an environment's policy.

Invariants:
- The API key is read from the environment at the moment of use (in the worker, not in
  the web request that queued the run) and never stored: a run records only the base
  URL and the NAME of the variable that held the key.
- Without a base URL, every model-backed operation refuses with EndpointMissing, whose
  message names the variables to set.
- A base URL that agentconfig.core.outbound.check_url refuses, or a key variable outside
  EVAL_API_KEY_NAMES, is refused with EndpointRefused when a run is queued and again in
  the worker before anything is read or sent (rows saved before these rules included).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.conf import settings

from agentconfig.core.errors import ServiceError
from agentconfig.core.outbound import OutboundRefused, check_url
from deployments.models import Environment
from evaluations.client import Endpoint
from evaluations.models import (
    ENDPOINT_PURPOSE,
    GLOBAL_KEY_VARIABLE,
    allowed_key_variables,
    key_variable_refusal,
)
from evaluations.scoring import DEFAULT_JUDGE_PROMPT, JUDGE_RESPONSE_FORMATS
from evaluations.selectors import get_policy

JUDGE_MAX_TOKENS = 400


class EndpointMissing(ServiceError):
    """No model endpoint is configured where one is needed."""


class EndpointRefused(ServiceError):
    """The configured base URL or key variable may not be used; nothing was sent."""


@dataclass(frozen=True)
class RunSettings:
    """Everything a run records about how it will call models (no key)."""

    base_url: str
    api_key_env: str
    judge_model: str
    judge_prompt: str
    judge_response_format: str
    concurrency: int
    timeout_seconds: float
    max_retries: int
    source: str  # "settings" or "the evaluation policy of <env>"


def resolve_run_settings(environment: Environment | None = None) -> RunSettings:
    """The settings a run with `environment`'s policy (or the global ones) would use."""
    policy = get_policy(environment)
    base_url = (policy.base_url if policy and policy.base_url else settings.EVAL_API_BASE_URL) or ""
    response_format = settings.EVAL_JUDGE_RESPONSE_FORMAT
    if response_format not in JUDGE_RESPONSE_FORMATS:
        raise ServiceError(
            f"EVAL_JUDGE_RESPONSE_FORMAT is {response_format!r}; use one of "
            f"{', '.join(JUDGE_RESPONSE_FORMATS)}."
        )
    source = (
        f"the evaluation policy of {environment.slug}"
        if policy and environment is not None and (policy.base_url or policy.api_key_env)
        else "settings"
    )
    return RunSettings(
        base_url=base_url.rstrip("/"),
        api_key_env=(policy.api_key_env if policy and policy.api_key_env else GLOBAL_KEY_VARIABLE),
        judge_model=(policy.judge_model if policy and policy.judge_model else "")
        or settings.EVAL_JUDGE_MODEL,
        judge_prompt=(policy.judge_prompt if policy and policy.judge_prompt else "")
        or settings.EVAL_JUDGE_PROMPT
        or DEFAULT_JUDGE_PROMPT,
        judge_response_format=response_format,
        concurrency=max(1, settings.EVAL_CONCURRENCY),
        timeout_seconds=max(0.1, settings.EVAL_TIMEOUT_SECONDS),
        max_retries=max(0, settings.EVAL_MAX_RETRIES),
        source=source,
    )


def missing_endpoint_message(environment: Environment | None, needed_for: str) -> str:
    """What to set so that `needed_for` can call a model."""
    where = (
        f" (or a base URL in the evaluation policy of {environment.slug})" if environment else ""
    )
    return (
        f"{needed_for} needs an OpenAI-compatible Chat Completions endpoint, and none is "
        f"configured: set EVAL_API_BASE_URL (e.g. https://api.openai.com/v1) and "
        f"EVAL_API_KEY{where}, then try again."
    )


def require_base_url(
    run_settings: RunSettings, environment: Environment | None, needed_for: str
) -> None:
    """Refuse with EndpointMissing when no base URL is configured."""
    if not run_settings.base_url:
        raise EndpointMissing(missing_endpoint_message(environment, needed_for))


def check_endpoint(*, base_url: str, api_key_env: str, where: str) -> None:
    """Refuse (EndpointRefused) a base URL check_url refuses or a key variable not allowed.

    `where` says where the values come from ("settings", "the evaluation policy of ...").
    """
    origin = "the settings (EVAL_API_BASE_URL)" if where == "settings" else where
    try:
        check_url(base_url, purpose=ENDPOINT_PURPOSE)
    except OutboundRefused as exc:
        raise EndpointRefused(f"{exc.message} The URL comes from {origin}.") from None
    if api_key_env and api_key_env not in allowed_key_variables():
        raise EndpointRefused(
            f"{key_variable_refusal(api_key_env)} The name comes from {origin}; nothing was sent."
        )


def endpoint_for(
    *,
    base_url: str,
    api_key_env: str,
    timeout_seconds: float,
    max_retries: int,
    where: str = "the run's settings",
) -> Endpoint:
    """The endpoint with its key read now from `api_key_env`; EndpointMissing if unset.

    EndpointRefused, before the key is read, if the URL or the variable is not allowed.
    """
    if not base_url:
        raise EndpointMissing(missing_endpoint_message(None, "This run"))
    check_endpoint(base_url=base_url, api_key_env=api_key_env, where=where)
    if api_key_env == GLOBAL_KEY_VARIABLE:
        key = settings.EVAL_API_KEY  # may be empty: local servers need no key
    else:
        key = os.environ.get(api_key_env, "")
        if not key:
            raise EndpointMissing(
                f"the environment variable {api_key_env}, named by an evaluation policy as "
                "the holder of the API key, is not set in this process (the worker's "
                "environment). Set it there, or clear the policy's API key variable."
            )
    return Endpoint(
        base_url=base_url, api_key=key, timeout=timeout_seconds, max_retries=max_retries
    )
