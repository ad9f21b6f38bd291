"""What the control plane refuses, and why: domain exceptions that each front end (the API) maps to
its error shape in one place. Their text is meant for the caller; none carries a stack trace."""

from __future__ import annotations


class ControlError(Exception):
    """A refusal with an `error` (a short name) and `details` (a sentence for the caller)."""

    error: str = "Request refused"

    def __init__(self, details: str, error: str | None = None) -> None:
        super().__init__(details)
        self.details = details
        if error is not None:
            self.error = error


class InvalidField(ControlError):
    """Bad input; the details name the field, in the spec's words (`Field 'name' is required`)."""

    error = "Invalid request format"


class NotFound(ControlError):
    """No such object for this caller (another tenant's objects are not found either)."""

    def __init__(self, what: str, details: str) -> None:
        super().__init__(details, f"{what} not found")


class Conflict(ControlError):
    """The change conflicts with what exists (a name taken, a model already published)."""


class Forbidden(ControlError):
    """The caller may not do this at all."""


class OperationFailed(ControlError):
    """The change could not be carried out for a reason that is not the caller's (the spec's
    `500 {"error": "Failed to create model", "details": "..."}`)."""


class UpstreamFailed(ControlError):
    """An endpoint the admin named did not answer (`timed_out`) or could not be reached."""

    def __init__(self, details: str, *, timed_out: bool) -> None:
        super().__init__(details, "Model timed out" if timed_out else "Custom endpoint unreachable")
        self.timed_out = timed_out
