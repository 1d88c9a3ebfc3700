"""Scaling on the running stack: `hcsync scale transform` resizes the worker's Ray pool while messages
flow, nothing is lost or posted twice across a resize, and `hcsync status` shows replicas, lag per topic
and partition, throughput and error rate."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from actors.scaling import ScaleSignals
from cluster.cli import app
from cluster.send import send_messages
from cluster.stack import settings_env
from cluster.status import CONSUMED
from foundation.settings import Settings, get_settings
from tests.integration.conftest import charges, ed_day, report_now, run_cli, settle, wait_until


def _replicas(settings: Settings) -> list[int]:
    return [pool.replicas for pool in ScaleSignals.from_url(settings.redis, settings.topic_prefix).reports()]


@pytest.fixture
def restore_size(settings: Settings) -> Iterator[None]:
    """Give the pool its configured size back, whatever the test did."""
    yield
    run_cli(settings, "scale", "transform", "--replicas", str(settings.transform_replicas))


def test_status_shows_pools_lag_and_rates(settings: Settings) -> None:
    wait_until(
        f"the worker to report its pool of {settings.transform_replicas}: replicas per pool",
        lambda: _replicas(settings),
        done=lambda seen: seen == [settings.transform_replicas],
    )
    doc = json.loads(run_cli(settings, "status", "--json", "--sample-s", "0.5"))
    assert doc["replicas"] == settings.transform_replicas and len(doc["pools"]) == 1
    assert len(doc["pools"][0]["nodes"]) == settings.transform_replicas
    rows = {(row["topic"], row["partition"]) for row in doc["lag"]}
    assert rows == {(topic, p) for topic in CONSUMED for p in range(settings.topic_partitions)}
    assert all(row["lag"] >= 0 for row in doc["lag"])
    assert {"messages_per_s", "events_per_s", "postings_per_s", "error_rate", "sample_s"} <= set(doc)
    assert doc["bottleneck"]["stage"] and 0 <= doc["host_cpu_share"] <= 1
    if doc["supervisor"] is not None and not doc["supervisor_stale"]:
        assert "worker" in doc["cpu"], doc["cpu"]  # each running component's process CPU
    table = run_cli(settings, "status", "--sample-s", "0.2")
    assert "Transform pools" in table and "Consumer lag" in table and "error rate" in table
    assert "bottleneck: " in table


def test_a_resize_while_messages_flow_loses_and_repeats_nothing(
    settings: Settings, restore_size: None
) -> None:
    before = settle(settings, 1.0)
    messages, count, cents = ed_day(uuid.uuid4().hex[:6].upper(), 60)

    shown = run_cli(settings, "scale", "transform", "--replicas", "3", "--reason", "test surge")
    assert "run 3 replica(s) each" in shown and _replicas(settings) == [3]
    asyncio.run(send_messages(settings, messages[: len(messages) // 2]))
    # Shrink while the first half is being transformed, then send the rest to the smaller pool.
    assert "run 1 replica(s) each" in run_cli(settings, "scale", "transform", "--replicas", "1")
    asyncio.run(send_messages(settings, messages[len(messages) // 2 :]))

    expected = (charges(before)[0] + count, charges(before)[1] + cents)
    wait_until(
        f"every charge of the surge: (count, cents) == {expected}",
        lambda: charges(report_now(settings)),
        timeout_s=120,
        done=lambda seen: seen == expected,
    )
    after = settle(settings)
    assert charges(after) == expected, "a charge was lost or posted twice across the resize"
    assert after.counters["raw_in"] - before.counters["raw_in"] == len(messages)

    def lag() -> dict[str, int]:
        doc = json.loads(run_cli(settings, "status", "--json", "--sample-s", "0.1"))
        return {topic: int(n) for topic, n in doc["lag_by_topic"].items()}

    wait_until(
        "the raw topic's lag to be committed back to 0: lag by topic",
        lag,
        timeout_s=60,
        done=lambda seen: seen["raw.hl7v2"] == 0,
    )
    history = ScaleSignals.from_url(settings.redis, settings.topic_prefix).history()
    assert [entry["replicas"] for entry in history[:2]] == [1, 3] and history[1]["reason"] == "test surge"


def test_the_autoscaler_grows_the_pool_in_a_surge_and_shrinks_it_after(
    settings: Settings, restore_size: None
) -> None:
    """A backlog of slow (strictly validated) messages saturates the pool: it grows on the lag, then shrinks
    one actor per cool-down once the backlog is gone; every charge posts exactly once."""
    run_cli(settings, "scale", "transform", "--replicas", "2", "--reason", "known start")
    before = settle(settings, 1.0)
    messages, count, cents = ed_day(uuid.uuid4().hex[:6].upper(), 400)
    surge = [raw.replace(b"|EPIC|", b"|SURGE|", 1) for raw in messages]
    assert "autoscaler sizes" in run_cli(settings, "scale", "transform", "--auto", "--reason", "test")
    asyncio.run(send_messages(settings, surge))

    grown: list[int] = []

    def sizes() -> list[int]:
        grown.extend(_replicas(settings))
        return grown

    wait_until(
        "the autoscaler to add actors: more than 2 replicas (sizes seen)",
        sizes,
        timeout_s=90,
        done=lambda seen: max(seen, default=0) > 2,
    )
    expected = (charges(before)[0] + count, charges(before)[1] + cents)
    wait_until(
        f"every charge of the surge: (count, cents) == {expected}",
        lambda: charges(report_now(settings)),
        timeout_s=180,
        done=lambda seen: seen == expected,
    )
    peak = max(grown)
    wait_until(
        f"the autoscaler to shrink the idle pool below its peak of {peak} (replicas per pool)",
        lambda: _replicas(settings),
        timeout_s=60,
        done=lambda seen: bool(seen) and seen[0] < peak,
    )
    after = settle(settings)
    assert charges(after) == expected, "a charge was lost or posted twice while the pool was autoscaled"
    assert after.counters["raw_in"] - before.counters["raw_in"] == len(surge)
    decisions = [e for e in ScaleSignals.from_url(settings.redis, settings.topic_prefix).history(50)]
    ours = decisions[: next(i for i, e in enumerate(decisions) if e["replicas"] == "auto")]
    assert ours and all(e["by"].startswith("autoscaler ") for e in ours)
    ups = [e for e in ours if "lag" in e["reason"] and " > " in e["reason"]]
    downs = [e for e in ours if e["reason"].startswith("lag at most")]
    assert ups and downs, ours
    assert all(2 < e["replicas"] <= settings.transform_max_replicas for e in ups)
    doc = json.loads(run_cli(settings, "status", "--json", "--sample-s", "0.1"))
    assert doc["desired"] == "auto" and doc["pools"][0]["mode"] == "auto"
    # No hold ever read as a growth: each says "not growing" and names a bottleneck.
    holds = [e for e in ours if e["reason"].startswith("not growing: ")]
    assert all(e not in ups and "CPU" not in e["reason"] for e in holds), holds


def test_the_bounds_are_enforced(settings: Settings) -> None:
    out = CliRunner().invoke(app, ["scale", "transform", "--replicas", "99"], env=settings_env(settings))
    get_settings.cache_clear()
    assert out.exit_code == 2 and "HCSYNC_TRANSFORM_MAX_REPLICAS" in out.stderr
