"""Errors a user can see. Each maps to one CLI exit code and one gRPC status.

Messages are one line and name the field, the value and the rule, so the CLI
can print them as they are, with no traceback.
"""

from __future__ import annotations


class ShoalError(Exception):
    """Base for every error that is reported to a user rather than crashing."""

    exit_code = 1
    grpc_code = "UNKNOWN"


class InvalidArgument(ShoalError):
    """Bad input: nothing was changed."""

    exit_code = 3
    grpc_code = "INVALID_ARGUMENT"


class NotFound(ShoalError):
    exit_code = 4
    grpc_code = "NOT_FOUND"


class Conflict(ShoalError):
    """The request clashes with existing state (name taken, image in use)."""

    exit_code = 1
    grpc_code = "FAILED_PRECONDITION"


class Unavailable(ShoalError):
    """A dependency (registry, agent, runc) could not be reached or failed."""

    exit_code = 1
    grpc_code = "UNAVAILABLE"


class IntegrityError(ShoalError):
    """Content did not match its digest; it was discarded."""

    exit_code = 1
    grpc_code = "DATA_LOSS"


def invalid(field: str, value: object, rule: str) -> InvalidArgument:
    """The one shape of validation message: field, value, rule."""
    return InvalidArgument(f"invalid {field} {value!r}: {rule}")
