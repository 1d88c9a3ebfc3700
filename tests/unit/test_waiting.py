"""tests/waiting.py: waits return what they saw, and fail naming what they expected and what they saw last."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.waiting import changes, shown, wait_until, wait_until_still


def _observations(*values: int) -> Callable[[], int]:
    """Return an observer giving ``values`` one after the other, then the last one for ever."""
    it: Iterator[int] = iter(values)
    last = [values[-1]]

    def observe() -> int:
        last[0] = next(it, last[0])
        return last[0]

    return observe


def test_wait_until_returns_the_first_observation_that_is_done() -> None:
    seen = wait_until("three charges", _observations(0, 1, 3, 4), done=lambda n: n >= 3, poll_s=0)
    assert seen == 3


def test_wait_until_fails_naming_what_it_expected_and_what_it_saw_last() -> None:
    with pytest.raises(AssertionError) as failed:
        wait_until("billing to hold 5 charges", _observations(1, 2), 0, done=lambda n: n >= 5, poll_s=0)
    assert str(failed.value) == "timed out after 0s waiting for billing to hold 5 charges; last seen: 1"


def test_wait_until_can_show_part_of_a_larger_observation() -> None:
    with pytest.raises(AssertionError) as failed:
        wait_until(
            "duplicate_events to reach 2",
            lambda: {"duplicate_events": 1, "raw_in": 5000},
            0,
            done=lambda counters: counters["duplicate_events"] >= 2,
            show=lambda counters: counters["duplicate_events"],
        )
    assert str(failed.value).endswith("waiting for duplicate_events to reach 2; last seen: 1")


def test_wait_until_with_a_bare_check_still_works() -> None:
    assert wait_until("a true check", lambda: True, 0) is True
    with pytest.raises(AssertionError, match="waiting for a false check; last seen: False"):
        wait_until("a false check", lambda: False, 0)


def test_wait_until_still_returns_once_two_observations_agree() -> None:
    observe = _observations(1, 2, 5, 5, 6)
    settled = wait_until_still(
        "the count", observe, lambda a, b: [] if a == b else [f"{a} -> {b}"], interval_s=0, timeout_s=60
    )
    assert settled == 5


def test_wait_until_still_fails_naming_what_still_moved() -> None:
    observe = _observations(1, 2, 3)
    with pytest.raises(AssertionError) as failed:
        wait_until_still(
            "the count", observe, lambda a, b: [] if a == b else [f"n: {a} -> {b}"], interval_s=0, timeout_s=0
        )
    assert str(failed.value) == "the count: still moving after 0s (observed every 0s); last change: n: 1 -> 2"


def test_changes_name_each_value_that_moved() -> None:
    before = {"raw_in": 10, "mapped": 4, "gone": 1}
    after = {"raw_in": 12, "mapped": 4, "new": 2}
    assert changes(before, after, "counters.") == [
        "counters.gone: 1 -> None",
        "counters.new: None -> 2",
        "counters.raw_in: 10 -> 12",
    ]
    assert changes(before, dict(before)) == []


def test_long_values_are_cut_in_the_middle() -> None:
    rows = [{"account": f"4{n:03d}", "creditCents": n} for n in range(100)]
    text = shown(rows)
    assert text.startswith("[{'account': '4000'") and text.endswith("'creditCents': 99}]")
    assert "chars)..." in text and len(text) < len(repr(rows))
    assert shown("short") == "'short'"
