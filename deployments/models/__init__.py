"""Models of the deployments app, split by concern."""

from deployments.models.api_keys import ApiKey
from deployments.models.canary import (
    CanaryDecision,
    CanaryPolicy,
    CanaryRollout,
    CanaryStatus,
    DeadlineAction,
    OutcomeCount,
    OutcomeEventId,
    OutcomeLatency,
    Track,
)
from deployments.models.core import (
    STABLE_KINDS,
    Environment,
    Pointer,
    ReleaseKind,
    ReleaseLogEntry,
)
from deployments.models.requests import (
    VERSION_KINDS,
    DeploymentRequest,
    RequestKind,
    RequestReview,
    RequestStatus,
    ReviewDecision,
)

__all__ = [
    "STABLE_KINDS",
    "VERSION_KINDS",
    "ApiKey",
    "CanaryDecision",
    "CanaryPolicy",
    "CanaryRollout",
    "CanaryStatus",
    "DeadlineAction",
    "DeploymentRequest",
    "Environment",
    "OutcomeCount",
    "OutcomeEventId",
    "OutcomeLatency",
    "Pointer",
    "ReleaseKind",
    "ReleaseLogEntry",
    "RequestKind",
    "RequestReview",
    "RequestStatus",
    "ReviewDecision",
    "Track",
]
