"""The autoscaling policy: grows on sustained lag with a saturated pool, shrinks when calm, within bounds
and cool-downs; holds, naming the bottleneck, when the pool is not it (host CPU, routing, downstream)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.autoscale import AutoscalePolicy, Autoscaler, Decision, Hold

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
    cpu: float = 0.0,
    routing: float = 0.0,
    downstream: dict[str, int] | None = None,
) -> tuple[float, Decision | None]:
    """One sample every ``tick_s`` for ``seconds``; stop at the first decision."""
    now = start
    while now < start + seconds:
        decision = scaler.observe(
            now,
            replicas=replicas,
            lag=lag,
            saturation=saturation,
            cpu=cpu,
            routing=routing,
            downstream=downstream,
        )
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
    with pytest.raises(ValueError, match="max_cpu_share"):
        AutoscalePolicy(min_replicas=1, max_replicas=2, max_cpu_share=1.5)
    with pytest.raises(ValueError, match="routing_share"):
        AutoscalePolicy(min_replicas=1, max_replicas=2, routing_share=0.0)


DOWNSTREAM_CALM = {"encounters": 0, "billing dispatch": 0, "ERP dispatch": 0, "quarantine": 0}


def test_a_saturated_host_cpu_holds_growth_and_says_so() -> None:
    """The measured case: a second replica on a busy 2-core machine made the stack slower."""
    scaler = Autoscaler(POLICY)
    _, decision = _feed(scaler, 0.0, 60, replicas=2, lag=50_000, saturation=1.0, cpu=0.97)
    assert decision is None
    assert scaler.hold is not None and scaler.hold.cause == "cpu" and scaler.hold.bottleneck == "host CPU"
    assert scaler.hold.reason.startswith("not growing: CPU saturated (97% over 5s)")
    # The same load on a host with CPU to spare grows the pool, and the hold is gone.
    _, decision = _feed(scaler, 60.0, 60, replicas=2, lag=50_000, saturation=1.0, cpu=0.5)
    assert decision is not None and decision.replicas == 4 and scaler.hold is None


def test_a_cpu_threshold_of_one_switches_the_cpu_rule_off() -> None:
    policy = AutoscalePolicy(min_replicas=1, max_replicas=8, lag_per_replica=1000, max_cpu_share=1.0)
    _, decision = _feed(Autoscaler(policy), 0.0, 30, replicas=2, lag=5_000, saturation=1.0, cpu=1.0)
    assert decision is not None and decision.replicas == 4


def test_a_pool_not_at_its_bound_holds_and_names_the_stage_that_holds_the_records() -> None:
    # Finished batches fill the pipeline: the routing stage is what holds the records.
    scaler = Autoscaler(POLICY)
    decision = _feed(scaler, 0.0, 30, replicas=2, lag=50_000, saturation=0.2, routing=0.8)[1]
    assert decision is None and scaler.hold is not None
    assert (scaler.hold.cause, scaler.hold.bottleneck) == ("pool-idle", "ingest routing")
    assert "in-flight bound only 20% of the last 5s" in scaler.hold.reason
    assert scaler.hold.reason.endswith("bottleneck: ingest routing")
    # Nothing waits for routing, but the encounters stage is far behind: it is named.
    scaler = Autoscaler(POLICY)
    behind = DOWNSTREAM_CALM | {"encounters": 30_000, "ERP dispatch": 9_000}
    decision = _feed(scaler, 0.0, 30, replicas=2, lag=50_000, saturation=0.2, downstream=behind)[1]
    assert decision is None and scaler.hold is not None
    assert (scaler.hold.cause, scaler.hold.bottleneck) == ("pool-idle", "encounters")
    # Neither: the pool waits for its input to be read.
    scaler = Autoscaler(POLICY)
    decision = _feed(scaler, 0.0, 30, replicas=2, lag=50_000, saturation=0.2, downstream=DOWNSTREAM_CALM)[1]
    assert decision is None and scaler.hold is not None and scaler.hold.bottleneck == "ingest reading"
    # Records in the reasons never read as a growth decision ("lag N > ..."), which the history is read for.
    assert " > " not in scaler.hold.reason


def test_lag_downstream_of_the_pool_holds_and_names_the_most_upstream_stage_behind() -> None:
    scaler = Autoscaler(POLICY)
    behind = DOWNSTREAM_CALM | {"billing dispatch": 4_000, "ERP dispatch": 8_000}
    decision = _feed(scaler, 0.0, 30, replicas=2, lag=300, saturation=1.0, downstream=behind)[1]
    assert decision is None and scaler.hold is not None
    assert scaler.hold == Hold(
        "downstream",
        "billing dispatch",
        "not growing: the lag is downstream of the pool (billing dispatch 4,000 behind, the pool's input "
        "300); bottleneck: billing dispatch",
    )


def test_a_downstream_spike_is_not_a_bottleneck_and_a_calm_stream_holds_nothing() -> None:
    scaler = Autoscaler(POLICY)
    for second in range(30):
        spike = DOWNSTREAM_CALM | {"encounters": 20_000 if second % 4 == 0 else 10}
        assert scaler.observe(float(second), replicas=2, lag=0, saturation=0.0, downstream=spike) is None
    assert scaler.hold is None
    _feed(scaler, 30.0, 30, replicas=2, lag=0, saturation=0.0, cpu=1.0, downstream=DOWNSTREAM_CALM)
    assert scaler.hold is None  # a busy CPU without a backlog holds nothing back


def test_the_pool_grows_when_it_is_the_bottleneck_whatever_else_lags_a_little() -> None:
    scaler = Autoscaler(POLICY)
    small = DOWNSTREAM_CALM | {"encounters": 800}  # under lag_per_replica: keeping up
    _, decision = _feed(
        scaler, 0.0, 30, replicas=2, lag=5_500, saturation=0.95, cpu=0.6, routing=0.1, downstream=small
    )
    assert decision is not None and decision.replicas == 4 and scaler.hold is None


def test_a_resize_clears_the_hold() -> None:
    scaler = Autoscaler(POLICY)
    _feed(scaler, 0.0, 30, replicas=2, lag=50_000, saturation=1.0, cpu=0.99)
    assert scaler.hold is not None
    scaler.resized(30.0)
    assert scaler.hold is None


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40_000),
            st.floats(min_value=0.0, max_value=1.0),
            st.floats(min_value=0.0, max_value=1.0),
            st.floats(min_value=0.0, max_value=1.0),
        ),
        min_size=1,
        max_size=400,
    ),
    start=st.integers(min_value=1, max_value=8),
)
def test_any_load_keeps_the_pool_within_bounds_and_cooldowns(
    samples: list[tuple[int, float, float, float]], start: int
) -> None:
    scaler = Autoscaler(POLICY)
    replicas, last_change = start, None
    cpu_seen: list[tuple[float, float]] = []
    for second, (lag, saturation, cpu, routing) in enumerate(samples):
        now = float(second)
        decision = scaler.observe(
            now, replicas=replicas, lag=lag, saturation=saturation, cpu=cpu, routing=routing
        )
        cpu_seen.append((now, cpu))
        if scaler.hold is not None:
            assert scaler.hold.reason.startswith("not growing: ") and decision is None
        if decision is None:
            continue
        if decision.replicas > replicas:
            # Never grow while the host's CPU was saturated over the window the decision judged.
            window = [
                c
                for at, c in cpu_seen
                if now - at <= POLICY.window_s and (last_change is None or at > last_change)
            ]
            assert sum(window) / len(window) < POLICY.max_cpu_share
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


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=40_000),
            st.floats(min_value=0.0, max_value=1.0),
            st.floats(min_value=POLICY.max_cpu_share, max_value=1.0),
        ),
        min_size=1,
        max_size=200,
    ),
    start=st.integers(min_value=1, max_value=8),
)
def test_never_grow_while_the_host_cpu_share_is_at_or_above_the_threshold(
    samples: list[tuple[int, float, float]], start: int
) -> None:
    scaler = Autoscaler(POLICY)
    replicas = start
    for second, (lag, saturation, cpu) in enumerate(samples):
        decision = scaler.observe(float(second), replicas=replicas, lag=lag, saturation=saturation, cpu=cpu)
        assert decision is None or decision.replicas < replicas
        if decision is not None:
            replicas = decision.replicas
            scaler.resized(float(second))
        if scaler.hold is not None:
            assert scaler.hold.cause in ("cpu", "downstream")
