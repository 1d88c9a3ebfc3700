"""The surge bench's pure parts: the rate search, records per message, CPU and memory per process, targets."""

from __future__ import annotations

import argparse
import math

import pytest
from aiokafka import TopicPartition

from bench.surge import (
    BENCH_LABEL,
    ProcSample,
    Snapshot,
    _counts,
    _rates,
    evaluate_targets,
    highest_passing,
    judge_step,
    next_search_rate,
    per_message,
    prefixed_topics,
    queue_grew,
    records_by_topic,
    resolve_defaults,
    search_plan_messages,
    targets_line,
    usage,
)

RATES = [100.0, 200.0, 300.0, 500.0, 800.0, 1000.0]


def _search(passes_below: float, rates: list[float], bisections: int) -> list[tuple[float, bool]]:
    """Run the search against a stack that passes every rate below ``passes_below``."""
    tried: list[tuple[float, bool]] = []
    while (rate := next_search_rate(rates, tried, bisections)) is not None:
        tried.append((rate, rate < passes_below))
        assert len(tried) < 50
    return tried


def test_search_goes_up_until_the_first_failure() -> None:
    assert _search(400, RATES, 0) == [(100, True), (200, True), (300, True), (500, False)]


def test_search_bisects_between_the_last_pass_and_the_first_failure() -> None:
    tried = _search(450, RATES, 2)
    assert tried == [(100, True), (200, True), (300, True), (500, False), (400, True), (450, False)]
    assert highest_passing(tried) == 400


def test_search_that_passes_everything_stops_at_the_top() -> None:
    tried = _search(math.inf, RATES, 3)
    assert [rate for rate, _ in tried] == RATES
    assert highest_passing(tried) == 1000


def test_search_whose_first_rate_fails_bisects_towards_zero() -> None:
    tried = _search(30, [100.0, 300.0], 2)
    assert tried == [(100, False), (50, False), (25, True)]
    assert highest_passing(tried) == 25
    assert highest_passing(_search(1, [100.0], 0)) is None


def test_search_stops_when_no_whole_rate_is_left_between() -> None:
    assert next_search_rate([10.0, 11.0], [(10.0, True), (11.0, False)], 5) is None


def test_highest_passing_ignores_a_pass_above_a_failure() -> None:
    # Noise: a higher rate passed after a lower one failed; the lower failure bounds the answer.
    assert highest_passing([(100, True), (300, False), (400, True)]) == 100


def test_search_plan_has_room_for_every_step() -> None:
    assert search_plan_messages([100.0, 300.0], 5.0, 0) == 2_000
    assert search_plan_messages([100.0, 300.0], 5.0, 1, warmup_s=2.0) == 200 + 2_000 + 1_500


@pytest.mark.parametrize(
    ("achieved", "p99", "trend", "tail", "passed", "why"),
    [
        (300.0, 0.8, (0.3, 0.4), 3.0, True, "p99 0.80s < 2s"),
        (300.0, 2.0, (0.3, 0.4), 3.0, False, "p99 2.00s >= 2s"),
        (300.0, 1.5, (0.2, 1.9), 3.0, False, "queue"),
        (300.0, 0.8, (0.3, 0.4), None, False, "fell behind"),
        (200.0, 0.8, (0.3, 0.4), 3.0, False, "sender"),
        (300.0, None, (math.nan, math.nan), 3.0, False, "no message"),
    ],
)
def test_judge_step(
    achieved: float,
    p99: float | None,
    trend: tuple[float, float],
    tail: float | None,
    passed: bool,
    why: str,
) -> None:
    ok, reason = judge_step(300.0, achieved, p99, trend, tail, 2.0)
    assert ok is passed
    assert why in reason


def test_judge_step_gives_every_reason() -> None:
    ok, reason = judge_step(800.0, 800.0, 20.9, (3.0, 18.0), None, 2.0)
    assert not ok
    assert "fell behind" in reason and "p99 20.90s" in reason and "queue" in reason


def test_queue_grew_needs_both_a_doubling_and_a_second() -> None:
    assert queue_grew(1.0, 3.0)
    assert not queue_grew(0.2, 0.9)  # doubled, but by less than a second
    assert not queue_grew(3.0, 4.5)  # a second more, but not doubled


def test_records_per_message_sums_partitions_of_the_runs_topics() -> None:
    prefix = "surge1234."
    topics = prefixed_topics(
        [f"{prefix}raw.hl7v2", f"{prefix}hcsync-encounters-changelog", "other.raw.hl7v2", "bench-baseline-x"],
        prefix,
    )
    assert topics == [f"{prefix}hcsync-encounters-changelog", f"{prefix}raw.hl7v2"]
    marks = {
        TopicPartition(f"{prefix}raw.hl7v2", 0): 60,
        TopicPartition(f"{prefix}raw.hl7v2", 1): 40,
        TopicPartition(f"{prefix}events.canonical", 0): 150,
        TopicPartition(f"{prefix}events.canonical", 1): 0,
        TopicPartition(f"{prefix}hcsync-encounters-changelog", 3): 190,
    }
    records = records_by_topic(marks, prefix)
    assert records == {"events.canonical": 150, "hcsync-encounters-changelog": 190, "raw.hl7v2": 100}
    assert list(records) == sorted(records)
    assert per_message(records, 100) == {
        "events.canonical": 1.5,
        "hcsync-encounters-changelog": 1.9,
        "raw.hl7v2": 1.0,
    }
    assert math.isnan(per_message(records, 0)["raw.hl7v2"])


def test_usage_is_cpu_between_snapshots_and_rss_at_the_end() -> None:
    before: Snapshot = {
        1: ProcSample(BENCH_LABEL, 5.0, 100),
        2: ProcSample("worker (Faust agents, Ray driver)", 10.0, 200),
        3: ProcSample("Ray transform actors", 1.0, 50),
    }
    after: Snapshot = {
        1: ProcSample(BENCH_LABEL, 6.0, 110),
        2: ProcSample("worker (Faust agents, Ray driver)", 14.0, 300),
        3: ProcSample("Ray transform actors", 2.0, 60),
        4: ProcSample("Ray transform actors", 0.5, 70),  # started meanwhile: all its CPU counts
    }
    use = usage(before, after, messages=1_000, wall_s=10.0)
    assert use.cpu_s == {
        "worker (Faust agents, Ray driver)": 4.0,
        "Ray transform actors": 1.5,
        BENCH_LABEL: 1.0,
    }
    assert use.rss == {
        BENCH_LABEL: 110,
        "worker (Faust agents, Ray driver)": 300,
        "Ray transform actors": 130,
    }
    assert use.processes["Ray transform actors"] == 2
    assert use.stack_cpu_s == pytest.approx(5.5)  # the bench is not part of the stack
    assert use.stack_ms_per_message == pytest.approx(5.5)
    assert use.ms_per_message(1.5) == pytest.approx(1.5)
    assert use.stack_rss == 430


def test_targets_met_missed_and_not_measured() -> None:
    met = evaluate_targets(1_200.0, "1 worker(s)", 1.2, 300.0, 1.5, "2 worker(s)")
    assert [t.met for t in met] == [True, True, True]
    missed = evaluate_targets(150.0, "1 worker(s)", 8.0, 300.0, 8.2, "1 worker(s)")
    assert [t.met for t in missed] == [False, False, False]
    assert "MISSED" in targets_line(missed)
    unknown = evaluate_targets(None, "", 1.0, 100.0, None, "")
    assert [t.met for t in unknown] == [None, None, None]  # a p99 at another rate is not judged
    assert "not judged" in unknown[1].measured


def test_option_parsers() -> None:
    assert _counts("1,2") == [1, 2]
    assert _rates("300,100,100") == [100.0, 300.0]
    with pytest.raises(argparse.ArgumentTypeError):
        _counts("0")
    with pytest.raises(argparse.ArgumentTypeError):
        _rates("100,x")


def test_quick_gives_defaults_but_keeps_the_options_given() -> None:
    full = argparse.Namespace(quick=False, messages=None, workers=None, steady_s=None, rate_search=None)
    full.search_s = full.search_bisect = full.search_warmup_s = None
    resolve_defaults(full)
    assert (full.messages, full.workers, full.steady_s, full.search_bisect) == (100_000, [1, 2], 300.0, 1)
    assert full.rate_search == [100.0, 200.0, 300.0, 500.0, 800.0, 1000.0]
    quick = argparse.Namespace(quick=True, messages=None, workers=[1, 2], steady_s=None, rate_search=[])
    quick.search_s = quick.search_bisect = quick.search_warmup_s = None
    resolve_defaults(quick)
    assert quick.messages < 100_000 and quick.steady_s < 300.0 and quick.search_bisect == 0
    assert quick.workers == [1, 2]  # given: kept
    assert quick.rate_search == []  # given (skip the search): kept
