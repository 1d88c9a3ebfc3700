"""A real cluster on one machine: two Faust workers in one consumer group, on a two-node Ray cluster
started with `ray start --head` and `ray start --address`, joined through RAY_ADDRESS.

- the transform actors of both workers are placed on both Ray nodes;
- one worker is killed (SIGKILL, no goodbye) while messages flow: after the rebalance the other worker owns
  every partition, the supervisor restarts the dead one (another rebalance), and every charge and journal
  line is posted exactly once;
- the Ray head dies: the supervisor restarts the whole local Ray cluster (new address) and the workers on
  it, and the pipeline posts again.

This module runs its own stack (the session's has one worker and an in-process Ray).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from actors.scaling import ScaleSignals
from cluster.send import send_messages
from cluster.stack import Stack
from cluster.status import collect_status
from foundation.runs import new_run_dir
from foundation.settings import Settings
from tests.hl7_samples import adt, dft
from tests.integration.conftest import charges, report_now, settle, stack_settings, wait_until
from tests.integration.postings import postings

SESSION_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = stack_settings(
        tmp_path_factory.mktemp("cluster"),
        workers=2,
        ray_local_nodes=2,
        ray_num_cpus=2,
        transform_replicas=2,
        consumer_session_timeout_s=SESSION_TIMEOUT_S,
    )
    running = Stack(settings, new_run_dir(settings, "cluster"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _pools(settings: Settings) -> list[tuple[str, int, list[str]]]:
    reports = ScaleSignals.from_url(settings.redis, settings.topic_prefix).reports()
    return [(r.worker, r.replicas, r.nodes) for r in reports]


def _visits(uid: str, encounters: int, amount: str = "125.00") -> list[list[bytes]]:
    """Per encounter: its registration, then a charge with two lines."""
    out = []
    for n in range(encounters):
        visit = f"K{uid}{n:04d}"
        out.append(
            [
                adt("A04", f"A{visit}", visit, patient_class="O", dept="ED"),
                dft(
                    f"D{visit}",
                    visit,
                    [("CG", "99283", "ED visit", 1, amount), ("CG", "36415", "Venipuncture", 1, "25.00")],
                    dept="ED",
                ),
            ]
        )
    return out


def test_actors_run_on_both_nodes_of_a_ray_cluster_started_with_ray_start(cluster_stack: Stack) -> None:
    settings = cluster_stack.settings
    ray_cluster = cluster_stack.ray_cluster
    assert ray_cluster is not None
    nodes = ray_cluster.node_ids()
    assert len(nodes) == 2
    for name in ("worker", "worker-2"):
        env = cluster_stack.component(name).env
        assert env["RAY_ADDRESS"] == ray_cluster.address  # the workers joined the cluster, not a local Ray

    def both_report(pools: list[tuple[str, int, list[str]]]) -> bool:
        return len(pools) == 2 and all(replicas == 2 and len(ids) == 2 for _, replicas, ids in pools)

    wait_until(
        "both workers to report pools of 2 replicas on 2 nodes: (worker, replicas, nodes)",
        lambda: _pools(settings),
        timeout_s=60,
        done=both_report,
    )
    placed = {node for _, _, ids in _pools(settings) for node in ids}
    assert placed == set(nodes), "the transform actors are not spread over both Ray nodes"

    before = report_now(settings)
    visits = _visits(uuid.uuid4().hex[:6].upper(), 20)
    asyncio.run(send_messages(settings, [raw for visit in visits for raw in visit]))
    expected = (charges(before)[0] + 40, charges(before)[1] + 20 * 15_000)
    wait_until(
        f"the charges through the cluster: (count, cents) == {expected}",
        lambda: charges(report_now(settings)),
        done=lambda seen: seen == expected,
    )


def test_killing_a_worker_mid_stream_loses_nothing_and_posts_nothing_twice(cluster_stack: Stack) -> None:
    settings = cluster_stack.settings
    wait_until(
        "both workers to report: (worker, replicas, nodes)",
        lambda: _pools(settings),
        timeout_s=60,
        done=lambda pools: len(pools) == 2,
    )
    before = settle(settings, 1.0)
    uid = uuid.uuid4().hex[:6].upper()
    visits = _visits(uid, 240)
    encounters = [f"NMH:K{uid}{n:04d}" for n in range(len(visits))]
    chunks = [visits[i : i + 40] for i in range(0, len(visits), 40)]

    victim = cluster_stack.component("worker-2")
    assert victim.process is not None
    count = len(visits) * 2
    posted_at_kill = -1
    killed_at = 0.0
    for chunk in chunks:
        asyncio.run(send_messages(settings, [raw for visit in chunk for raw in visit]))
        time.sleep(1.0)
        posted = charges(report_now(settings))[0] - charges(before)[0]
        if posted_at_kill < 0 and posted >= count // 5:
            # Mid-stream and without warning: no commit, no leave-group, its Ray actors orphaned.
            os.killpg(victim.process.pid, signal.SIGKILL)
            victim.process.wait(timeout=10)
            posted_at_kill, killed_at = posted, time.monotonic()
    cents = len(visits) * 15_000
    assert 0 < posted_at_kill < count, f"worker-2 was not killed mid-stream ({posted_at_kill} posted)"
    expected = (charges(before)[0] + count, charges(before)[1] + cents)

    def explain(what: str) -> str:
        now = report_now(settings)
        found = charges(now)
        detail = postings(cluster_stack.run_dir, f"%K{uid}%").explain(encounters, charges_each=2)
        counted = ("raw_in", "events_out", "duplicate_events", "held_charges", "held_released", "quarantined")
        moved = {name: now.counters.get(name, 0) - before.counters.get(name, 0) for name in counted}
        return (
            f"{what}: expected {expected[0] - charges(before)[0]} charges ({cents} cents) after killing "
            f"worker-2 with {posted_at_kill} posted; found {found[0] - charges(before)[0]} "
            f"({found[1] - charges(before)[1]} cents). {detail}. Counters since the start ({count} messages "
            f"sent): {moved}; consumer lag: {lag()}. Logs: {cluster_stack.run_dir}"
        )

    def lag() -> dict[str, int]:
        status = asyncio.run(collect_status(settings, 0.1))
        return {f"{row.topic}[{row.partition}]": row.lag for row in status.lag if row.lag}

    deadline = time.monotonic() + SESSION_TIMEOUT_S * 6 + 120
    while charges(report_now(settings)) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert charges(report_now(settings)) == expected, explain("not every charge posted after the rebalance")
    all_posted_s = time.monotonic() - killed_at
    after = settle(settings)
    assert charges(after) == expected, explain("a charge was posted twice once the stack settled")
    transformed = after.counters["raw_in"] - before.counters["raw_in"]
    # What the dead worker had not committed is read again.
    sent = len(visits) * 2
    assert transformed >= sent, f"expected {sent} or more messages transformed, found {transformed}"
    print(
        f"\nkilled worker-2 with {posted_at_kill} of {count} charges posted; all posted {all_posted_s:.0f}s "
        f"after the kill; {transformed - sent} message(s) transformed twice; "
        f"{after.counters.get('duplicate_events', 0) - before.counters.get('duplicate_events', 0)} "
        "duplicate event(s) ignored"
    )
    # Two journal lines per charge line (receivable and revenue), each posted once, and balanced.
    lines = int(after.ledger["lineCount"]) - int(before.ledger.get("lineCount", 0))
    assert lines == 2 * count, explain(f"expected {2 * count} journal lines, found {lines}")
    debits, credits = int(after.ledger["totalDebitCents"]), int(after.ledger["totalCreditCents"])
    assert debits == credits, f"the ledger is unbalanced: {debits} cents debited, {credits} credited"

    # The survivor owns every partition and is not behind on any of them.
    deadline = time.monotonic() + 30
    while lag() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not lag(), f"expected the survivor to commit every partition; still behind: {lag()}"
    # The supervisor restarted the dead worker: it rejoined, and both report their pools again.
    assert cluster_stack.component("worker-2").restarts >= 1
    wait_until(
        "the restarted worker to report again: two (worker, replicas, nodes)",
        lambda: _pools(settings),
        timeout_s=90,
        done=lambda pools: len(pools) == 2,
    )


def test_the_ray_head_dying_restarts_the_ray_cluster_and_its_workers(cluster_stack: Stack) -> None:
    settings = cluster_stack.settings
    ray_cluster = cluster_stack.ray_cluster
    assert ray_cluster is not None
    address = ray_cluster.address
    head = ray_cluster.launchers()["ray-head"]
    before = settle(settings, 1.0)
    os.killpg(head, signal.SIGKILL)  # the head's `ray start` and what runs in its process group

    def ray_state() -> dict[str, tuple[str, int]]:
        return {s.name: (s.state, s.restarts) for s in cluster_stack.statuses()}

    wait_until(
        "the Ray cluster and both workers running again: ray restarted once",
        ray_state,
        timeout_s=300,
        done=lambda seen: (
            seen.get("ray", ("", 0))[1] >= 1 and all(state == "running" for state, _ in seen.values())
        ),
    )
    assert ray_cluster.address != address, "the Ray cluster was not started again"
    for name in ("worker", "worker-2"):
        assert cluster_stack.component(name).env["RAY_ADDRESS"] == ray_cluster.address
    visits = _visits(uuid.uuid4().hex[:6].upper(), 20)
    asyncio.run(send_messages(settings, [raw for visit in visits for raw in visit]))
    expected = (charges(before)[0] + 40, charges(before)[1] + 20 * 15_000)
    wait_until(
        f"the charges through the restarted Ray cluster: (count, cents) == {expected}",
        lambda: charges(report_now(settings)),
        timeout_s=180,
        done=lambda seen: seen == expected,
    )
