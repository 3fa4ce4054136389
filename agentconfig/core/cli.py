"""Shared behaviour of our management commands: one clear line and non-zero exit on refusal."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from agentconfig.core.errors import ServiceError


def describe_validation_error(error: ValidationError) -> str:
    """A ValidationError as one line: 'field: message; other: message'."""
    if hasattr(error, "error_dict"):
        return "; ".join(
            f"{field}: {message}" if field != "__all__" else message
            for field, messages in error.message_dict.items()
            for message in messages
        )
    return "; ".join(error.messages)


class ServiceCommand(BaseCommand):
    """A command whose refusals (validation, rules, database down) end as a CommandError."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except ValidationError as exc:
            raise CommandError(describe_validation_error(exc)) from None
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        except DatabaseError as exc:
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            raise CommandError(f"database error: {first_line}") from None
