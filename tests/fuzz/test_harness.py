"""The harness itself: the hang guard interrupts a loop that never ends; the profiles follow HCSYNC_FUZZ."""

from __future__ import annotations

import pytest

from tests.fuzz.harness import BOUNDED, FUZZ_ENV, LONG, PROFILES, InputHangError, active_profile, time_bound


def test_the_hang_guard_interrupts_a_loop_that_never_ends() -> None:
    with pytest.raises(InputHangError, match="CPU"), time_bound(0.2):
        while True:
            pass


def test_the_hang_guard_leaves_a_quick_input_alone() -> None:
    with time_bound(5.0):
        total = sum(range(1_000))
    assert total == 499_500


def test_the_profile_follows_hcsync_fuzz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FUZZ_ENV, raising=False)
    assert active_profile() == BOUNDED
    monkeypatch.setenv(FUZZ_ENV, "long")
    assert active_profile() == LONG
    assert PROFILES[LONG].max_examples > 10 * PROFILES[BOUNDED].max_examples
