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
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError, OperationalError

from canonical.errors import Fault, InvalidMessageError

__all__ = [
    "answer",
    "fingerprint",
    "invalid_request",
    "optional_datetime",
    "request_date",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


_REQUEST_RULE = "adapter.request"


def invalid_request(field: str, reason: str, *, request_id: str = "") -> InvalidMessageError:
    """Return the error for a request that breaks the adapter contract at ``field``."""
    return InvalidMessageError(Fault(rule=_REQUEST_RULE, reason=reason, message_id=request_id, field=field))


def request_date(value: str, field: str, request_id: str) -> dt.date | None:
    """Parse a YYYY-MM-DD field of a request; empty is unknown. The error names the field, never the value
    (dates of birth are PHI)."""
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise invalid_request(field, "is not a YYYY-MM-DD date", request_id=request_id) from None


def optional_datetime(message: Message, name: str) -> dt.datetime | None:
    """Return a Timestamp field of ``message`` as an aware UTC datetime, or None when it is unset."""
    if not message.HasField(name):
        return None
    value: dt.datetime = getattr(message, name).ToDatetime(dt.UTC)
    return value


def fingerprint(message: Message) -> str:
    """Return a stable digest of a request, to tell a true replay from a reused idempotency key."""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()


async def answer(context: grpc.aio.ServicerContext, rpc: str, work: Callable[[], T]) -> T:
    """Run blocking backend ``work`` in a thread and map its failures to gRPC status codes."""
    try:
        # The backend blocks on the database; a worker thread keeps the event loop serving other calls.
        return await asyncio.to_thread(work)
    except InvalidMessageError as exc:
        fault = exc.fault
        log.info("%s refused: %s %s", rpc, fault.field, fault.reason)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{rpc}: {fault.field}: {fault.reason}")
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
