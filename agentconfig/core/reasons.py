"""The "why" that every change to what users get carries (release log, flag history)."""

from django.core.exceptions import ValidationError

MAX_REASON = 2000


def validate_reason(reason: str | None, *, required: bool = True) -> str:
    """The reason, stripped, with browser line endings made plain; ValidationError if
    required and missing, or too long."""
    reason = (reason or "").replace("\r\n", "\n").strip()
    if required and not reason:
        raise ValidationError({"reason": "is required: say why, so the history can tell."})
    if len(reason) > MAX_REASON:
        raise ValidationError({"reason": f"is longer than {MAX_REASON} characters."})
    return reason
