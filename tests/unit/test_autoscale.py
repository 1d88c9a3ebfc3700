"""The autoscaling policy: grows on sustained lag with a saturated pool, shrinks when calm, within bounds
and cool-downs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.autoscale import AutoscalePolicy, Autoscaler, Decision

POLICY = AutoscalePolicy(
    min_replicas=1,
    max_replicas=8,
    lag_per_replica=1000,
    saturation=0.7,
    window_s=5.0,
    up_cooldown_s=15.0,
    down_cooldown_s=60.0,
)


def _feed(
    scaler: Autoscaler,
    start: float,
    seconds: float,
    *,
    replicas: int,
    lag: int,
    saturation: float,
    tick_s: float = 1.0,
) -> tuple[float, Decision | None]:
    """One sample every ``tick_s`` for ``seconds``; stop at the first decision."""
    now = start
    while now < start + seconds:
        decision = scaler.observe(now, replicas=replicas, lag=lag, saturation=saturation)
        if decision is not None:
            return now, decision
        now += tick_s
    return now, None


def test_a_sustained_backlog_on_a_saturated_pool_grows_it_in_proportion() -> None:
    scaler = Autoscaler(POLICY)
    at, decision = _feed(scaler, 0.0, 30, replicas=2, lag=5_500, saturation=0.95)
    assert decision is not None and decision.replicas == 4  # ceil(5500/1000)=6, but at most double
    assert 4.0 <= at <= 6.0  # only once the window is covered
    assert "lag 5,500 > 2 x 1,000" in decision.reason and "95%" in decision.reason


def test_growth_stops_at_the_maximum() -> None:
    _, decision = _feed(Autoscaler(POLICY), 0.0, 30, replicas=6, lag=90_000, saturation=1.0)
    assert decision is not None and decision.replicas == 8


def test_a_spike_in_one_sample_is_not_a_surge() -> None:
    scaler = Autoscaler(POLICY)
    for second in range(30):
        lag = 50_000 if second % 5 == 0 else 100
        assert scaler.observe(float(second), replicas=2, lag=lag, saturation=1.0) is None


def test_lag_without_a_saturated_pool_adds_no_actor() -> None:
    """The pool is not the bottleneck (routing or the adapters are): more actors would not help."""
    _, decision = _feed(Autoscaler(POLICY), 0.0, 120, replicas=2, lag=50_000, saturation=0.3)
    assert decision is None


def test_after_a_change_growth_waits_for_the_up_cooldown() -> None:
    scaler = Autoscaler(POLICY)
    scaler.resized(100.0)
    at, decision = _feed(scaler, 100.0, 60, replicas=2, lag=50_000, saturation=1.0)
    assert decision is not None and at >= 115.0


def test_a_calm_pool_shrinks_one_actor_at_a_time_after_the_down_cooldown() -> None:
    scaler = Autoscaler(POLICY)
    scaler.resized(0.0)
    at, decision = _feed(scaler, 0.0, 200, replicas=4, lag=200, saturation=0.05)
    assert decision == Decision(3, decision.reason if decision else "") and 60.0 <= at <= 61.0
    scaler.resized(at)
    at2, decision = _feed(scaler, at, 200, replicas=3, lag=200, saturation=0.05)
    assert decision is not None and decision.replicas == 2 and at2 - at >= 60.0


@pytest.mark.parametrize("tick_s", [0.7, 1.05, 1.3, 2.9])
def test_decisions_come_whatever_the_tick(tick_s: float) -> None:
    """Timer ticks are late by a little or a lot: both windows must still fill and be judged."""
    at, decision = _feed(Autoscaler(POLICY), 0.0, 100, replicas=2, lag=5_000, saturation=1.0, tick_s=tick_s)
    assert decision is not None and decision.replicas == 4 and at < 5.0 + 2 * tick_s
    scaler = Autoscaler(POLICY)
    scaler.resized(0.0)
    at, decision = _feed(scaler, 0.0, 300, replicas=4, lag=0, saturation=0.0, tick_s=tick_s)
    assert decision is not None and decision.replicas == 3 and at < 60.0 + 2 * tick_s


def test_a_busy_pool_or_a_backlog_does_not_shrink() -> None:
    assert _feed(Autoscaler(POLICY), 0.0, 300, replicas=4, lag=200, saturation=0.5)[1] is None
    assert _feed(Autoscaler(POLICY), 0.0, 300, replicas=4, lag=1_600, saturation=0.0)[1] is None


def test_the_minimum_is_kept() -> None:
    assert _feed(Autoscaler(POLICY), 0.0, 300, replicas=1, lag=0, saturation=0.0)[1] is None


def test_a_size_outside_the_bounds_is_brought_back() -> None:
    policy = AutoscalePolicy(min_replicas=2, max_replicas=4)
    assert Autoscaler(policy).observe(0.0, replicas=1, lag=0, saturation=0.0) == Decision(
        2, "1 replica(s) is outside 2..4"
    )
    decision = Autoscaler(policy).observe(0.0, replicas=7, lag=0, saturation=0.0)
    assert decision is not None and decision.replicas == 4


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="min <= max"):
        AutoscalePolicy(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="saturation"):
        AutoscalePolicy(min_replicas=1, max_replicas=2, saturation=0.0)


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(
        st.tuples(st.integers(min_value=0, max_value=40_000), st.floats(min_value=0.0, max_value=1.0)),
        min_size=1,
        max_size=400,
    ),
    start=st.integers(min_value=1, max_value=8),
)
def test_any_load_keeps_the_pool_within_bounds_and_cooldowns(
    samples: list[tuple[int, float]], start: int
) -> None:
    scaler = Autoscaler(POLICY)
    replicas, last_change = start, None
    for second, (lag, saturation) in enumerate(samples):
        now = float(second)
        decision = scaler.observe(now, replicas=replicas, lag=lag, saturation=saturation)
        if decision is None:
            continue
        assert POLICY.min_replicas <= decision.replicas <= POLICY.max_replicas
        assert decision.replicas != replicas
        if last_change is not None:
            wait = POLICY.up_cooldown_s if decision.replicas > replicas else POLICY.down_cooldown_s
            assert now - last_change >= wait
        if decision.replicas > replicas:
            assert decision.replicas <= 2 * replicas
        else:
            assert decision.replicas == replicas - 1
        replicas, last_change = decision.replicas, now
        scaler.resized(now)
