"""Retry a unit of stream work with back-off, forever or up to a bound with a give-up hook."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from redis.exceptions import RedisError

from canonical.errors import NotRetryableError, RetryableError

log = logging.getLogger(__name__)

MAX_DELAY_S = 15.0


def is_outage(exc: Exception) -> bool:
    """A failure of the infrastructure (broker, Redis, network, an adapter), not of the data."""
    return isinstance(exc, KafkaError | RedisError | OSError | TimeoutError | RetryableError)


def describe(exc: Exception) -> str:
    """Describe a failure for the log without quoting input values (which can be PHI)."""
    if isinstance(exc, ValidationError):
        where = ", ".join(".".join(str(p) for p in err["loc"]) or "top level" for err in exc.errors()[:3])
        return f"ValidationError: {exc.error_count()} error(s) at {where}"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


async def retry(
    what: str,
    call: Callable[..., Awaitable[Any]],
    *args: Any,
    attempts: int | None = None,
    on_give_up: Callable[[Exception], Awaitable[None]] | None = None,
    transient: Callable[[Exception], bool] | None = None,
) -> Any:
    """Retry a failed unit of work with back-off; the batch is not acknowledged meanwhile.

    Without ``attempts`` it retries until it succeeds (an outage of Ray, the broker or an adapter must
    delay work, not drop it). With ``attempts`` it calls ``on_give_up`` after the last failure (or, without
    one, raises it), so one poison item cannot stall everything behind it; a NotRetryableError gives up at
    once. Failures ``transient`` says are an outage do not count: they are retried until the outage ends.
    """
    delay_s = 0.5
    tried = 0
    while True:
        try:
            return await call(*args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outage = transient is not None and transient(exc)
            tried += 0 if outage else 1
            hopeless = isinstance(exc, NotRetryableError)  # the same failure on every attempt
            if not outage and (hopeless or (attempts is not None and tried >= attempts)):
                if on_give_up is not None:
                    log.error("%s failed %d times (%s); quarantined", what, tried, describe(exc))
                    await on_give_up(exc)
                    return None
                if attempts is not None:
                    raise  # the caller handles it (without attempts: retried forever, as before)
            log.warning("%s failed (%s); retrying in %.1fs", what, describe(exc), delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, MAX_DELAY_S)
