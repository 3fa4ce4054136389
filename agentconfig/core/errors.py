"""Errors that services raise when a rule refuses an operation.

Input that fails validation raises django.core.exceptions.ValidationError (with the
field that is wrong), so forms can show it next to the field; these classes cover the
rest. Every message is written for the person who will read it: what is wrong, where,
and what to do.
"""


class ServiceError(Exception):
    """A rule refused the operation; nothing was written."""

    code = "invalid"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    code = "not_found"
    http_status = 404


class Conflict(ServiceError):
    """The state changed under us or the change would break an invariant."""

    code = "conflict"
    http_status = 409


class Forbidden(ServiceError):
    code = "forbidden"
    http_status = 403


class ImmutableRecord(Exception):
    """Raised when code tries to change or delete an append-only row (a programming error)."""
