"""gRPC adapters in front of the billing system and the ERP, with their SQL reference backends.

This module holds what both services share: the error a backend raises for a malformed request, request
field readers, and the mapping of backend failures to gRPC status codes. The SQL helpers both backends use
(engines, transactions, schema migration) are in :mod:`foundation.sql`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import traceback
from collections.abc import Callable, Iterable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError, OperationalError

from canonical.errors import Fault, InvalidMessageError, PreconditionError, RetryableError

__all__ = [
    "KEY_REUSED_RULE",
    "answer",
    "fingerprint",
    "invalid_request",
    "optional_datetime",
    "precondition_failed",
    "refusal_code",
    "request_date",
    "request_datetime",
    "reused_key",
    "unordered_digest",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


_REQUEST_RULE = "adapter.request"
# The rule of a refusal for an idempotency key already recorded with other content: ALREADY_EXISTS, not
# INVALID_ARGUMENT, so a caller can tell it from a malformed request (the dispatcher quarantines it).
KEY_REUSED_RULE = "adapter.key-reused"


def invalid_request(field: str, reason: str, *, request_id: str = "") -> InvalidMessageError:
    """Return the error for a request that breaks the adapter contract at ``field``."""
    return InvalidMessageError(Fault(rule=_REQUEST_RULE, reason=reason, message_id=request_id, field=field))


def reused_key(key: str, what: str, field: str = "idempotency_key") -> InvalidMessageError:
    """Return the refusal of a request whose idempotency ``key`` was recorded before with other content.

    The reason names the key (a derived id, never patient data) and what it was used for, not the content.
    """
    reason = f"{key} was already used for {what}"
    return InvalidMessageError(Fault(rule=KEY_REUSED_RULE, reason=reason, message_id=key, field=field))


def precondition_failed(rule: str, reason: str, *, request_id: str = "") -> PreconditionError:
    """Return the refusal of a well-formed request that the stored state does not allow, under ``rule``.

    Answered FAILED_PRECONDITION with details "<rule>: <reason>", so the caller can quarantine by the rule.
    """
    return PreconditionError(Fault(rule=rule, reason=reason, message_id=request_id))


def refusal_code(fault: Fault) -> grpc.StatusCode:
    """Return the gRPC status code a refusal answers with: ALREADY_EXISTS for a reused key."""
    return (
        grpc.StatusCode.ALREADY_EXISTS if fault.rule == KEY_REUSED_RULE else grpc.StatusCode.INVALID_ARGUMENT
    )


def request_date(value: str, field: str, request_id: str) -> dt.date | None:
    """Parse a YYYY-MM-DD field of a request; empty is unknown. The error names the field, never the value
    (dates of birth are PHI)."""
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise invalid_request(field, "is not a YYYY-MM-DD date", request_id=request_id) from None


# protobuf's Timestamp range, 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, in Unix seconds: a
# value outside it is one no datetime (and no database column) holds, and ToDatetime fails on it.
_TIMESTAMP_MIN_S = -62_135_596_800
_TIMESTAMP_MAX_S = 253_402_300_799
_NANOS_MAX = 999_999_999


def request_datetime(message: Message, name: str, *, field: str = "", request_id: str = "") -> dt.datetime:
    """Return the Timestamp field ``name`` of ``message`` as an aware UTC datetime (unset: the epoch).

    A value outside the Timestamp range is refused INVALID_ARGUMENT naming ``field`` (default ``name``).
    """
    stamp = getattr(message, name)
    if not (_TIMESTAMP_MIN_S <= stamp.seconds <= _TIMESTAMP_MAX_S and 0 <= stamp.nanos <= _NANOS_MAX):
        raise invalid_request(
            field or name, "is outside the Timestamp range (years 0001 to 9999)", request_id=request_id
        )
    value: dt.datetime = stamp.ToDatetime(dt.UTC)
    return value


def optional_datetime(
    message: Message, name: str, *, field: str = "", request_id: str = ""
) -> dt.datetime | None:
    """Return a Timestamp field of ``message`` as an aware UTC datetime, or None when it is unset."""
    if not message.HasField(name):
        return None
    return request_datetime(message, name, field=field, request_id=request_id)


def fingerprint(message: Message) -> str:
    """Return a stable digest of a request, to tell a true replay from a reused idempotency key."""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()


def unordered_digest(envelope: Message, items: Iterable[Message]) -> str:
    """Return a digest of a batch that ignores the order of its items, to tell a replay from a reused key."""
    # A caller that rebuilds a batch may list the same items in another order; that is still a replay.
    digest = hashlib.sha256(envelope.SerializeToString(deterministic=True))
    for item in sorted(item.SerializeToString(deterministic=True) for item in items):
        # Length-prefixed, so two different item lists can never concatenate to the same bytes.
        digest.update(len(item).to_bytes(8, "big"))
        digest.update(item)
    return digest.hexdigest()


async def answer(context: grpc.aio.ServicerContext, rpc: str, work: Callable[[], T]) -> T:
    """Run blocking backend ``work`` in a thread and map its failures to gRPC status codes."""
    try:
        # The backend blocks on the database; a worker thread keeps the event loop serving other calls.
        return await asyncio.to_thread(work)
    except PreconditionError as exc:
        fault = exc.fault
        log.info("%s refused: %s: %s", rpc, fault.rule, fault.reason)
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{fault.rule}: {fault.reason}")
    except InvalidMessageError as exc:
        fault = exc.fault
        log.info("%s refused: %s %s", rpc, fault.field, fault.reason)
        await context.abort(refusal_code(fault), f"{rpc}: {fault.field}: {fault.reason}")
    except RetryableError as exc:
        # What the backend needs is not there yet (the ERP's master data): the caller retries later.
        log.warning("%s: unavailable: %s", rpc, exc)
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{rpc}: unavailable: {exc}")
    except IntegrityError:
        # Concurrent writers kept winning races on the same keys; the caller may try again later.
        log.warning("%s aborted: unique-key races lost on every attempt", rpc)
        await context.abort(grpc.StatusCode.ABORTED, f"{rpc}: concurrent writes to the same keys, retry")
    except OperationalError as exc:
        # Locked or unreachable database: transient, and UNAVAILABLE tells the client to retry.
        log.warning("%s: database unavailable (%s)", rpc, type(exc.orig).__name__)
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{rpc}: database unavailable")
    except Exception as exc:
        # Frames but not the message: an exception's text may quote request values, which can be PHI.
        log.error(
            "%s failed with %s\n%s", rpc, type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__))
        )
        await context.abort(grpc.StatusCode.INTERNAL, f"{rpc}: internal error ({type(exc).__name__})")
    raise AssertionError("unreachable: context.abort always raises")
