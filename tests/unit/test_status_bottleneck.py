"""`hcsync status`'s bottleneck line on crafted signals: the most upstream stage that is behind with a busy
consumer, the transform pool when it is saturated, "none (idle)" at lag 0."""

from __future__ import annotations

from actors.scaling import PoolReport
from cluster.status import Bottleneck, PartitionLag, StageLag, name_bottleneck, stage_lags


def _stages(**lags: tuple[int, int]) -> list[StageLag]:
    topics = {
        "ingest": "raw.hl7v2",
        "encounters": "events.canonical",
        "billing dispatch": "commands.billing",
        "ERP dispatch": "commands.erp",
        "quarantine": "exceptions",
    }
    return [
        StageLag(stage, topic, *lags.get(stage.replace(" ", "_").lower(), (0, 0)))
        for stage, topic in topics.items()
    ]


def _pool(saturation: float, hold: str = "") -> PoolReport:
    return PoolReport(worker="w1", replicas=2, desired=2, in_flight=1, saturation=saturation, hold=hold)


def test_everything_at_lag_zero_is_idle() -> None:
    assert name_bottleneck(_stages(), 2.0, pools=[_pool(0.0)]) == Bottleneck(
        "none (idle)", "every stage at lag 0"
    )
    assert name_bottleneck([], 2.0).stage == "unknown"


def test_a_saturated_pool_with_a_growing_raw_lag_is_the_transform_pool() -> None:
    found = name_bottleneck(
        _stages(ingest=(1_000, 1_600), encounters=(50, 10)),
        2.0,
        pools=[_pool(0.95)],
        process_cpu={"worker": 0.4, "broker": 0.3},
    )
    assert found.stage == "transform pool"
    assert found.detail.startswith("raw.hl7v2 1,600 behind, +300/s")


def test_the_event_loop_busy_on_a_growing_raw_lag_names_the_ingest_not_the_pool() -> None:
    """The measured case: the pool at its bound rarely, the worker's one event loop at a full core."""
    hold = "not growing: the pool is at its in-flight bound only 12% of the last 5s (...); bottleneck: ingest"
    found = name_bottleneck(
        _stages(ingest=(20_000, 21_000), encounters=(3_000, 3_500)),
        2.0,
        pools=[_pool(0.12, hold)],
        process_cpu={"worker": 0.98, "billing": 0.2},
        host_cpu=0.97,
    )
    assert found.stage == "ingest"
    assert "the pool at its bound only 12%" in found.detail
    assert "the worker process at 98% of a core" in found.detail
    assert f"autoscaler: {hold}" in found.detail and "the host's CPU 97% busy" in found.detail


def test_the_lag_downstream_of_a_pool_that_keeps_up_names_the_stage() -> None:
    found = name_bottleneck(
        _stages(ingest=(0, 0), encounters=(4_000, 6_000), billing_dispatch=(100, 900)),
        4.0,
        pools=[_pool(0.05)],
        process_cpu={"worker": 0.99},
    )
    assert found.stage == "encounters"
    assert found.detail.startswith("events.canonical 6,000 behind, +500/s")


def test_a_stage_behind_with_an_idle_consumer_gives_way_to_one_whose_consumer_is_busy() -> None:
    """The encounters stage is a little behind but the worker is not busy; billing dispatch waits on a
    saturated billing adapter: that is what limits."""
    found = name_bottleneck(
        _stages(encounters=(100, 400), billing_dispatch=(5_000, 7_000), quarantine=(10, 20)),
        2.0,
        process_cpu={"worker": 0.3, "billing": 0.95},
    )
    assert found == Bottleneck(
        "billing dispatch", "commands.billing 7,000 behind, +1,000/s; the billing adapter at 95% of a core"
    )
    # Nobody busy: the most upstream stage behind, and why it is suspicious.
    found = name_bottleneck(
        _stages(encounters=(100, 300), quarantine=(0, 50)), 2.0, process_cpu={"worker": 0.01}
    )
    assert found.stage == "encounters" and "no busy consumer seen" in found.detail


def test_small_shrinking_lags_are_not_a_bottleneck_but_a_large_draining_backlog_is() -> None:
    found = name_bottleneck(_stages(ingest=(300, 120), encounters=(80, 40)), 2.0, large=2_000)
    assert found.stage == "none (keeping up)" and "ingest 120" in found.detail
    found = name_bottleneck(_stages(ingest=(90_000, 89_000)), 2.0, pools=[_pool(0.9)], large=2_000)
    assert found.stage == "transform pool" and "-500/s" in found.detail
    found = name_bottleneck(_stages(ingest=(5_000, 5_000)), 0.0, large=2_000)  # one reading: no trend
    assert found.detail.startswith("raw.hl7v2 5,000 behind;")


def test_stage_lags_sum_the_partitions_in_stage_order() -> None:
    first = [
        PartitionLag("events.canonical", 0, 10, 5, 5),
        PartitionLag("raw.hl7v2", 0, 10, 0, 10),
        PartitionLag("raw.hl7v2", 1, 30, 10, 20),
    ]
    second = [
        PartitionLag("raw.hl7v2", 0, 15, 0, 15),
        PartitionLag("raw.hl7v2", 1, 30, 30, 0),
        PartitionLag("events.canonical", 0, 12, 5, 7),
    ]
    assert stage_lags(first, second) == [
        StageLag("ingest", "raw.hl7v2", 30, 15),
        StageLag("encounters", "events.canonical", 5, 7),
    ]


def test_the_line_reads_as_one_sentence() -> None:
    assert Bottleneck("encounters", "events.canonical 6,000 behind").line() == (
        "bottleneck: encounters (events.canonical 6,000 behind)"
    )
    assert Bottleneck("none (idle)", "").line() == "bottleneck: none (idle)"
