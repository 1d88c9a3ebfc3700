"""One exception tree for hcsync.

Every error raised on purpose by hcsync derives from :class:`HcsyncError`. The second level says what a
caller may do about it: a :class:`DecodeError` or :class:`InvalidMessageError` is a property of the input
and is never retried (it goes to quarantine), a :class:`RetryableError` may succeed later, a
:class:`NotRetryableError` will not, and a :class:`ConfigurationError` is the operator's to fix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fault:
    """Where and why a message was refused: enough for an engineer to find and fix it."""

    rule: str
    reason: str
    message_id: str = ""
    segment: str = ""
    field: str = ""
    position: int | None = None
    found: str = ""
    hint: str = ""  # what to do about it, for rules whose fix is known (master data)

    def describe(self) -> str:
        """Render the fault as one line: message, segment, field, position, rule and reason."""
        where = [f"message {self.message_id or '?'}"]
        if self.segment:
            where.append(f"segment {self.segment}")
        if self.field:
            where.append(f"field {self.field}")
        if self.position is not None:
            where.append(f"position {self.position}")
        text = f"{', '.join(where)}: [{self.rule}] {self.reason}"
        if self.found:
            text += f" (found {self.found!r})"
        return text


class HcsyncError(Exception):
    """Root of every error hcsync raises on purpose."""


class ConfigurationError(HcsyncError):
    """A setting is missing or wrong; the message names the setting."""


class MessageError(HcsyncError):
    """A problem with one input message; carries a :class:`Fault` that locates it."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.describe())
        self.fault = fault


class DecodeError(MessageError):
    """The bytes cannot be decoded into a message at all (framing, encoding, structure)."""


class InvalidMessageError(MessageError):
    """The message decodes but breaks a rule of the standard or of the canonical contract."""


class PreconditionError(InvalidMessageError):
    """The request is well formed but the state it meets refuses it (an 835 for a claim never billed, a claim
    for an account not discharged): the fault's rule names the condition, and the caller quarantines under
    it. An adapter answers FAILED_PRECONDITION with "<rule>: <reason>"."""


class RetryableError(HcsyncError):
    """A transient failure (a service down, a deadline missed); the same call may succeed later."""


class NotRetryableError(HcsyncError):
    """A failure that will repeat on every attempt; the work goes to quarantine instead."""


class StackError(HcsyncError):
    """A component of the running stack failed to start, answer or stop."""
