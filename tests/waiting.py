"""Polling with a deadline that fails saying what it waited for and what it saw last.

A wait that times out silently, or says only "timed out", turns a red CI run into a rerun; these say what
was expected and the last observation (counts, ids), so the failure explains itself (style.md item 13).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")

# Long values (a ledger's rows by account) are cut in failure messages, keeping both ends readable.
_SHOWN_CHARS = 300


def shown(value: object) -> str:
    """Return ``repr(value)``, cut in the middle when long."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARS:
        return text
    half = _SHOWN_CHARS // 2
    return f"{text[:half]} ...({len(text) - 2 * half} chars)... {text[-half:]}"


def wait_until(
    what: str,
    observe: Callable[[], T],
    timeout_s: float = 90.0,
    *,
    done: Callable[[T], bool] = bool,
    show: Callable[[T], object] | None = None,
    poll_s: float = 0.3,
) -> T:
    """Poll ``observe`` until ``done`` holds for what it returns; return that observation.

    ``what`` names what is awaited, with the values expected; ``observe`` returns what the test looks at
    (a count, a tuple of totals, the ids found), or ``show`` picks that out of a larger observation (a
    whole report), so that on timeout the failure names both. A bare boolean check still works (``done``
    defaults to truth), but then "last seen" can only say False.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        seen = observe()
        if done(seen):
            return seen
        if time.monotonic() >= deadline:
            last = shown(seen if show is None else show(seen))
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}; last seen: {last}")
        time.sleep(poll_s)


def wait_until_still(
    what: str,
    observe: Callable[[], T],
    differences: Callable[[T, T], list[str]],
    *,
    interval_s: float,
    timeout_s: float,
) -> T:
    """Observe every ``interval_s`` until two observations in a row do not differ; return the later one.

    Fails when they still differ after ``timeout_s``, naming ``what`` and each difference of the last two
    observations (``differences(earlier, later)``, e.g. "counters.raw_in: 120 -> 180").
    """
    last = observe()
    deadline = time.monotonic() + timeout_s
    while True:
        time.sleep(interval_s)
        now = observe()
        moved = differences(last, now)
        if not moved:
            return now
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what}: still moving after {timeout_s:g}s (observed every {interval_s:g}s); "
                f"last change: {'; '.join(moved)}"
            )
        last = now


def changes(before: Mapping[str, object], after: Mapping[str, object], prefix: str = "") -> list[str]:
    """Return "name: before -> after" for each key whose value differs (a missing key shows as None)."""
    return [
        f"{prefix}{name}: {shown(before.get(name))} -> {shown(after.get(name))}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]
