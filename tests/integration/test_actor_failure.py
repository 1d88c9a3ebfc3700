"""A transform actor that dies mid-batch: Ray restarts it and retries its batch; nothing is lost, nothing is
posted twice, and the pool keeps its size.

The actor's process is killed with SIGKILL while it is transforming (its process title then reads
``ray::TransformActor.transform``). The batches are slow on purpose: the SURGE feed is validated strictly
with hl7apy in the test stack.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import psutil

from actors.scaling import ScaleSignals
from cluster.send import send_messages
from cluster.stack import Stack
from tests.integration.conftest import charges, ed_day, report_now, run_cli, settle, wait_until

BUSY = "ray::TransformActor.transform"


def _actors(stack: Stack) -> dict[int, str]:
    """pid -> process title of every transform actor process of the stack."""
    out: dict[int, str] = {}
    for pid in stack.pids():
        try:
            title = " ".join(psutil.Process(pid).cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if title.startswith("ray::TransformActor"):
            out[pid] = title
    return out


def test_an_actor_killed_mid_batch_is_restarted_and_its_batch_retried(stack: Stack) -> None:
    settings = stack.settings
    run_cli(settings, "scale", "transform", "--replicas", "2", "--reason", "actor failure test")
    wait_until("two live transform actors", lambda: _actors(stack), done=lambda live: len(live) == 2)
    before = settle(settings, 1.0)
    messages, count, cents = ed_day(uuid.uuid4().hex[:6].upper(), 150)
    surge = [raw.replace(b"|EPIC|", b"|SURGE|", 1) for raw in messages]
    sender = threading.Thread(target=lambda: asyncio.run(send_messages(settings, surge)))
    sender.start()

    killed: list[int] = []

    def kill_a_busy_actor() -> dict[int, str]:
        actors = _actors(stack)
        busy = [pid for pid, title in actors.items() if title.startswith(BUSY)]
        if busy:
            psutil.Process(busy[0]).kill()
            killed.append(busy[0])
        return actors

    wait_until(
        f"an actor titled {BUSY!r} to kill", kill_a_busy_actor, timeout_s=60, done=lambda _: bool(killed)
    )
    sender.join()
    expected = (charges(before)[0] + count, charges(before)[1] + cents)
    wait_until(
        f"every charge despite the dead actor: (count, cents) == {expected}",
        lambda: charges(report_now(settings)),
        180,
        done=lambda seen: seen == expected,
    )
    after = settle(settings)
    assert charges(after) == expected, (
        f"a charge was lost or posted twice when the actor died: (count, cents) {charges(after)}, "
        f"expected {expected}"
    )
    # Ray retried the batch inside the pool call: the worker routed each message exactly once.
    routed = after.counters["raw_in"] - before.counters["raw_in"]
    assert routed == len(surge), f"{routed} messages routed, expected {len(surge)}"
    live = _actors(stack)
    assert len(live) == 2 and killed[0] not in live, f"the dead actor {killed[0]} was not replaced: {live}"
    pools = ScaleSignals.from_url(settings.redis, settings.topic_prefix).reports()
    assert [pool.replicas for pool in pools] == [2], pools
