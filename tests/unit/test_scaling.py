"""The worker's scaling controller without services: pinned counts within the bounds, the autoscaler's
decisions applied and recorded, and a fixed pool left alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import cast

import faust
import pytest
import redis
from faust.types import TP

from actors.autoscale import AutoscalePolicy
from actors.pool import TransformPool
from actors.scaling import ScaleSignals
from foundation.processes import HostCpu
from foundation.topics import TopicNames
from streams.scaling import IngestOffsets, PoolController, stage_lag
from tests.redis_server import redis_server

POLICY = AutoscalePolicy(
    min_replicas=1, max_replicas=6, lag_per_replica=100, window_s=3.0, up_cooldown_s=5.0, down_cooldown_s=20.0
)


class _Pool:
    """The pool's surface the controller uses: size, capacity, resize, saturation."""

    def __init__(self, replicas: int, saturation: float) -> None:
        self.replicas = replicas
        self.in_flight = 0
        self.nodes = ["n1"] * replicas
        self.level = saturation
        self.resizes: list[int] = []

    @property
    def capacity(self) -> int:
        return 2 * self.replicas

    def saturation(self) -> float:
        return self.level

    async def resize(self, replicas: int) -> tuple[int, int]:
        before, self.replicas = self.replicas, replicas
        self.resizes.append(replicas)
        return before, replicas


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _controller(
    pool: _Pool, signals: ScaleSignals, *, autoscale: bool, lag: int = 0, cpu: float = 0.2
) -> tuple[PoolController, _Clock]:
    clock = _Clock()
    # The host's CPU is given, not measured: this machine's real load must not decide these tests.
    controller = PoolController(
        cast(TransformPool, pool),
        signals,
        "w1",
        policy=POLICY,
        autoscale=autoscale,
        clock=clock,
        cpu=lambda: cpu,
    )
    controller.watch(lag=lambda: lag, pending=lambda: 3)
    return controller, clock


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def signals(redis_url: str) -> ScaleSignals:
    return ScaleSignals(redis.Redis.from_url(redis_url), f"t{uuid.uuid4().hex[:8]}.")


def _run(controller: PoolController, clock: _Clock, seconds: int) -> None:
    async def ticks() -> None:
        for _ in range(seconds):
            await controller.tick()
            clock.now += 1.0

    asyncio.run(ticks())


def test_a_pinned_count_is_clamped_to_the_bounds(signals: ScaleSignals) -> None:
    controller, _ = _controller(_Pool(2, 0.0), signals, autoscale=True)
    assert [controller.target(n) for n in (1, 2, 3, 6, 9)] == [1, 2, 3, 6, 6]
    assert controller.target(None) == 2


def test_a_pin_overrides_the_autoscaler_until_auto(signals: ScaleSignals) -> None:
    pool = _Pool(2, saturation=1.0)
    controller, clock = _controller(pool, signals, autoscale=True, lag=10_000)
    signals.request(3, by="sre", reason="surge")
    _run(controller, clock, 30)
    assert pool.resizes == [3]  # the backlog would have grown it further; the pin holds it at 3
    report = signals.reports()[0]
    assert (report.mode, report.replicas, report.desired, report.lag, report.pending_batches) == (
        "manual",
        3,
        3,
        10_000,
        3,
    )
    signals.request("auto", by="sre", reason="over")
    _run(controller, clock, 30)
    assert pool.resizes[1:] and pool.resizes[1] == 6  # 3 -> ceil(10000/100) capped at double
    assert signals.reports()[0].mode == "auto"
    history = signals.history()
    assert history[0]["by"] == "autoscaler w1" and "lag 10,000" in history[0]["reason"]
    assert [entry["replicas"] for entry in history[1:]] == ["auto", 3]


def test_autoscaling_by_default_follows_the_setting(signals: ScaleSignals) -> None:
    pool = _Pool(2, saturation=1.0)
    controller, clock = _controller(pool, signals, autoscale=False, lag=10_000)
    _run(controller, clock, 30)
    assert pool.resizes == [] and signals.reports()[0].mode == "fixed"
    on, clock = _controller(pool, signals, autoscale=True, lag=10_000)
    _run(on, clock, 30)
    assert pool.resizes and signals.reports()[0].mode == "auto"


def test_an_idle_pool_shrinks_to_the_minimum_one_step_per_cooldown(signals: ScaleSignals) -> None:
    pool = _Pool(3, saturation=0.0)
    controller, clock = _controller(pool, signals, autoscale=True, lag=0)
    _run(controller, clock, 100)
    assert pool.resizes == [2, 1]


def test_the_lag_counts_what_was_taken_but_not_acknowledged() -> None:
    a, b, c = TP("raw", 0), TP("raw", 1), TP("raw", 2)
    offsets = IngestOffsets()
    ends = {a: 1000, b: 500, c: 70}
    assert offsets.lag(ends, [a, b, c]) == 0  # nothing read yet: unknown, not counted
    for offset in range(100, 600):
        offsets.taken(a, offset)  # read far ahead into the pipeline
    offsets.taken(b, 0)
    assert offsets.lag(ends, [a, b, c]) == 900 + 500
    for offset in range(100, 300):
        offsets.acked(a, offset)
    assert offsets.lag(ends, [a, b]) == 700 + 500
    offsets.forget([b])
    assert offsets.lag(ends, [a, b]) == 700
    assert offsets.lag({a: 250}, [a]) == 0  # a stale end offset never makes the lag negative


def test_a_hold_is_recorded_once_per_cause_with_the_bottleneck_it_names(signals: ScaleSignals) -> None:
    """The pool is at its bound and the backlog is there, but the host's CPU is saturated, then it is not
    and the pool is not at its bound: two holds in the history, not one per tick; the report says why."""
    pool = _Pool(2, saturation=1.0)
    host = {"cpu": 0.97}
    clock = _Clock()
    controller = PoolController(
        cast(TransformPool, pool),
        signals,
        "w1",
        policy=POLICY,
        autoscale=True,
        clock=clock,
        cpu=lambda: host["cpu"],
    )
    controller.watch(lag=lambda: 10_000, pending=lambda: 0)
    _run(controller, clock, 20)
    assert pool.resizes == []
    report = signals.reports()[0]
    assert report.hold.startswith("not growing: CPU saturated (97% over 3s)") and report.cpu_share == 0.97
    pool.level = 0.1  # the pool drops below its bound; the CPU, checked first, still holds: no new record
    _run(controller, clock, 20)
    host["cpu"] = 0.3
    _run(controller, clock, 20)
    assert pool.resizes == []
    reasons = [entry["reason"] for entry in signals.history()]
    assert len(reasons) == 2, reasons
    assert reasons[0].startswith("not growing: the pool is at its in-flight bound only 10% of the last 3s")
    assert reasons[0].endswith("bottleneck: ingest reading") and reasons[1].startswith("not growing: CPU")
    assert all(entry["replicas"] == 2 and entry["by"] == "autoscaler w1" for entry in signals.history())
    # The pool becomes the bottleneck: it grows, and the growth is recorded after the holds.
    pool.level = 1.0
    _run(controller, clock, 20)
    assert pool.resizes[:2] == [4, 6]
    grown = [entry["reason"][:20] for entry in signals.history()[:2]]
    assert grown == ["lag 10,000 > 4 x 100", "lag 10,000 > 2 x 100"]


def test_finished_batches_waiting_for_routing_name_the_routing_stage(signals: ScaleSignals) -> None:
    pool = _Pool(2, saturation=0.1)  # in-flight bound 4, the pipeline 8 deep
    pool.in_flight = 1
    clock = _Clock()
    controller = PoolController(
        cast(TransformPool, pool), signals, "w1", policy=POLICY, autoscale=True, clock=clock, cpu=lambda: 0.2
    )
    controller.watch(lag=lambda: 10_000, pending=lambda: 7)  # 6 of 8 transformed, waiting to be routed
    _run(controller, clock, 10)
    assert pool.resizes == []
    reason = signals.history()[0]["reason"]
    assert "finished batches waiting to be routed fill 75% of the pipeline" in reason
    assert reason.endswith("bottleneck: ingest routing")


def test_the_stages_lag_is_read_from_the_monitor_on_this_workers_partitions() -> None:
    names = TopicNames("p.")
    ev0, ev1, bill, erp, other = (
        TP("p.events.canonical", 0),
        TP("p.events.canonical", 1),
        TP("p.commands.billing", 0),
        TP("p.commands.erp", 0),
        TP("p.commands.erp", 1),  # another worker's
    )
    monitor = SimpleNamespace(
        tp_end_offsets={ev0: 900, ev1: 50, bill: 300, erp: 10, other: 5_000},
        tp_committed_offsets={ev0: 100, ev1: 50, bill: 290, other: 0},  # nothing committed on erp yet
    )
    consumer = SimpleNamespace(assignment=lambda: {ev0, ev1, bill, erp, TP("p.raw.hl7v2", 0)})
    app = cast(faust.App, SimpleNamespace(monitor=monitor, consumer=consumer))
    assert stage_lag(app, names) == {
        "X12 ingest": 0,
        "encounters": 800,
        "billing dispatch": 10,
        "ERP dispatch": 0,
        "revenue dispatch": 0,
        "quarantine": 0,
    }
    assert list(stage_lag(app, names)) == [
        "X12 ingest",
        "encounters",
        "billing dispatch",
        "ERP dispatch",
        "revenue dispatch",
        "quarantine",
    ]


def test_the_host_cpu_share_is_a_share() -> None:
    meter = HostCpu()
    sum(i * i for i in range(200_000))
    assert 0.0 <= meter() <= 1.0 and 0.0 <= meter() <= 1.0


def test_a_bottleneck_that_flips_every_tick_is_recorded_at_most_once_per_window(
    signals: ScaleSignals,
) -> None:
    pool = _Pool(2, saturation=0.0)
    clock = _Clock()
    controller = PoolController(
        cast(TransformPool, pool), signals, "w1", policy=POLICY, autoscale=True, clock=clock, cpu=lambda: 0.2
    )
    ticks = {"n": 0}

    def pending() -> int:  # finished batches fill the pipeline one tick in three: the window's share flips
        ticks["n"] += 1  # between 1/4 and 2/4 of it, around the routing threshold of 0.5
        return 8 if ticks["n"] % 3 == 0 else 0

    controller.watch(lag=lambda: 10_000, pending=pending)
    _run(controller, clock, 30)
    assert pool.resizes == []
    assert 1 <= len(signals.history(100)) <= 30 // POLICY.window_s + 1
