"""streams.retry: transient failures are retried, poison work is handed to the give-up hook."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError
from redis.exceptions import ConnectionError as RedisConnectionError

from streams import retry as retry_module
from streams.retry import is_outage, retry


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr(retry_module.asyncio, "sleep", instant)


def test_retries_until_success() -> None:
    calls = []

    async def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 4:
            raise ConnectionError("broker away")
        return x * 2

    assert asyncio.run(retry("flaky", flaky, 21)) == 42
    assert len(calls) == 4


def test_gives_up_after_attempts_and_calls_the_hook() -> None:
    seen: list[Exception] = []

    async def poison() -> None:
        raise ValueError("cannot handle this one")

    async def give_up(exc: Exception) -> None:
        seen.append(exc)

    assert asyncio.run(retry("poison", poison, attempts=3, on_give_up=give_up)) is None
    assert len(seen) == 1 and isinstance(seen[0], ValueError)


def test_cancellation_is_not_swallowed() -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retry("cancelled", cancelled))


def test_a_not_retryable_failure_is_given_up_at_once() -> None:
    from canonical.errors import NotRetryableError

    calls = 0
    given_up: list[Exception] = []

    async def hopeless() -> None:
        nonlocal calls
        calls += 1
        raise NotRetryableError("will never post")

    async def give_up(exc: Exception) -> None:
        given_up.append(exc)

    assert asyncio.run(retry("hopeless", hopeless, attempts=5, on_give_up=give_up)) is None
    assert calls == 1 and len(given_up) == 1


def test_an_outage_never_counts_towards_giving_up() -> None:
    """Twenty broker or Redis failures in a row, then a success: nothing is quarantined."""
    calls: list[int] = []
    seen: list[Exception] = []

    async def during_an_outage() -> str:
        calls.append(1)
        if len(calls) <= 10:
            raise KafkaConnectionError()
        if len(calls) <= 20:
            raise RedisConnectionError("redis away")
        return "done"

    async def give_up(exc: Exception) -> None:
        seen.append(exc)

    result = asyncio.run(
        retry("outage", during_an_outage, attempts=2, on_give_up=give_up, transient=is_outage)
    )
    assert result == "done" and seen == [] and len(calls) == 21


def test_attempts_without_a_hook_raise_the_last_failure() -> None:
    calls: list[int] = []

    async def poison() -> None:
        calls.append(1)
        raise ValueError("bad event")

    with pytest.raises(ValueError, match="bad event"):
        asyncio.run(retry("poison", poison, attempts=1))
    assert len(calls) == 1


def test_is_outage_tells_infrastructure_from_data() -> None:
    assert is_outage(ConnectionRefusedError()) and is_outage(TimeoutError())
    assert not is_outage(ValueError("bad data")) and not is_outage(KeyError("x"))
