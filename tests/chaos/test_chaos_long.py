"""The long chaos run (`make chaos`): a large stream over MLLP while something is killed every few seconds.

Opt-in (HCSYNC_CHAOS_LONG=1, which `make chaos` sets); sized by HCSYNC_CHAOS_MESSAGES (default 100,000),
HCSYNC_CHAOS_KILL_EVERY_S (default 5) and HCSYNC_CHAOS_BROKER_KILLS (default 2: each one makes the stack
replay its whole message store into the new broker, so more of them mostly measure the replay).

Victims are drawn in turn from every component the short suite kills, while the stream is sent and then
while the stack works off its backlog (until it settles, or for HCSYNC_CHAOS_KILL_AFTER_SEND_S, default
600, after the last ACK). Each kill opens a segment: the visits whose messages were all acknowledged
before the next kill belong to it (a kill after the last ACK has an empty segment: what it loses shows
in the totals). Once everything acknowledged is
posted, the run prints one line per kill (the victim, the messages acknowledged in its segment, posted,
lost and doubled, and how long the stack took to have every component running again) and the whole run's
totals, and fails on any loss or double. The table is also written to chaos-long.json in the run directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import pytest

from cluster.stack import Stack
from tests.chaos.conftest import VICTIMS, kill, prefix, running_stack, settled
from tests.chaos.sender import SendLog, send_all
from tests.chaos.workload import audit, lanes, visits
from tests.waiting import wait_until

LONG = os.environ.get("HCSYNC_CHAOS_LONG") == "1"
MESSAGES = int(os.environ.get("HCSYNC_CHAOS_MESSAGES", "100000"))
KILL_EVERY_S = float(os.environ.get("HCSYNC_CHAOS_KILL_EVERY_S", "5"))
BROKER_KILLS = int(os.environ.get("HCSYNC_CHAOS_BROKER_KILLS", "2"))
KILL_AFTER_SEND_S = float(os.environ.get("HCSYNC_CHAOS_KILL_AFTER_SEND_S", "600"))

pytestmark = [
    pytest.mark.skipif(not LONG, reason="the long chaos run is `make chaos` (HCSYNC_CHAOS_LONG=1)"),
    pytest.mark.timeout(6 * 3600),  # not the suite's 600 s: it streams for the better part of an hour
]


@dataclass
class Kill:
    """One kill of the long run and what its segment of the stream became."""

    number: int
    victim: str
    killed: str
    at_s: float  # since the stream began
    acked_before: int  # messages acknowledged when it was killed
    recovered_s: float | None = None  # until every component ran again
    visits: int = 0
    acked: int = 0
    posted: int = 0
    lost: int = 0
    doubled: int = 0

    def line(self) -> str:
        recovered = "n/a" if self.recovered_s is None else f"{self.recovered_s:5.1f}s"
        return (
            f"#{self.number:3} {self.victim:16} at {self.at_s:7.1f}s: segment acked {self.acked:6} "
            f"posted {self.posted:6} lost {self.lost} doubled {self.doubled}; "
            f"all running again after {recovered}"
        )


@pytest.fixture(scope="module")
def long_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Killed every few seconds on purpose: the restart budget must not run out during the run.
    home = tmp_path_factory.mktemp("chaos-long")
    with running_stack(
        home, "chaos-long", restart_max=10_000, restart_window_s=60, transform_batch_size=500
    ) as stack:
        yield stack


def _schedule(count: int) -> list[str]:
    """The victims in turn, shuffled per round, the broker at most BROKER_KILLS times."""
    out: list[str] = []
    brokers = 0
    rng = random.Random(11)
    while len(out) < count:
        round_ = list(VICTIMS)
        rng.shuffle(round_)
        for victim in round_:
            if victim == "broker":
                if brokers >= BROKER_KILLS:
                    continue
                brokers += 1
            out.append(victim)
    return out[:count]


def test_long_chaos_run_loses_nothing_and_doubles_nothing(long_stack: Stack) -> None:
    stack = long_stack
    workload = visits(prefix(), MESSAGES // 4)
    total = sum(len(v.messages) for v in workload)
    log = SendLog()
    started = time.monotonic()
    kills: list[Kill] = []
    stop = threading.Event()

    def send() -> None:
        asyncio.run(send_all(stack.settings.mllp_host, stack.settings.mllp_port, lanes(workload, 16), log,
                             timeout_s=24 * 3600))  # fmt: skip

    sender = threading.Thread(target=send, name="chaos-sender")
    sender.start()

    def watch_recovery(entry: Kill, killed_at: float) -> None:
        # Every component running again (Ray replaces an actor by itself; the stack does the rest).
        while not stop.is_set():
            if all(s.state == "running" for s in stack.statuses()):
                entry.recovered_s = time.monotonic() - killed_at
                return
            time.sleep(0.25)

    schedule = iter(_schedule(10_000))
    sent_at: float | None = None
    try:
        # Kills go on after the last ACK, while the stack works off what it acknowledged faster than it
        # processes (the gateway acknowledges several times faster than the workers post), until it has
        # settled or for at most KILL_AFTER_SEND_S more.
        while True:
            sender.join(KILL_EVERY_S)
            if not sender.is_alive():
                sent_at = sent_at or time.monotonic()
                if time.monotonic() - sent_at > KILL_AFTER_SEND_S or settled(stack):
                    break
            if kills and kills[-1].recovered_s is None:
                continue  # the previous kill is still being recovered from: let it come back first
            victim = next(schedule)
            try:
                what = kill(stack, victim)
            except AssertionError as exc:  # e.g. no actor process at this instant
                print(f"skipped a kill of {victim}: {exc}")
                continue
            now = time.monotonic()
            entry = Kill(len(kills) + 1, victim, what, round(now - started, 1), len(log.acked))
            kills.append(entry)
            threading.Thread(target=watch_recovery, args=(entry, now), daemon=True).start()
            print(f"kill #{entry.number}: {what} at {entry.at_s}s, {entry.acked_before} of {total} acked")
    finally:
        sender.join()
    stream_s = max(log.acked_at.values(), default=started) - started  # until the last ACK
    assert not log.refused, f"refused: {[(a.control_id, a.text) for a in log.refused[:5]]}"
    assert len(log.acked) == total, f"{len(log.acked)} of {total} messages acknowledged"
    wait_until(
        "every acknowledged message posted",
        lambda: audit(stack.run_dir, workload),
        max(1800.0, total / 20),
        done=lambda found: found.lost == 0,
        show=lambda found: found.describe(),
        poll_s=5.0,
    )
    drained_s = time.monotonic() - started
    wait_until(
        "the stack to settle: every component running, nothing pending, no lag", lambda: settled(stack), 300
    )
    stop.set()
    # Segments: a visit belongs to the kill before its last acknowledgment.
    boundaries = [started + k.at_s for k in kills]
    segments: dict[int, list[int]] = {}
    for index, visit in enumerate(workload):
        last = max(log.acked_at[cid] for cid in visit.control_ids)
        segment = sum(1 for b in boundaries if b <= last)  # 0: before the first kill
        segments.setdefault(segment, []).append(index)
    whole = audit(stack.run_dir, workload)
    for entry in kills:
        members = [workload[i] for i in segments.get(entry.number, [])]
        part = audit(stack.run_dir, members)
        entry.visits = len(members)
        entry.acked = 4 * len(members)
        entry.posted = part.messages_posted
        entry.lost = part.lost
        entry.doubled = part.doubled
    report = [entry.line() for entry in kills]
    summary = (
        f"{total} messages, {len(kills)} kills, acknowledged in {stream_s:.0f}s, "
        f"all posted after {drained_s:.0f}s; "
        f"{whole.charges_posted} charges and {whole.lines_posted} journal lines; lost {whole.lost}, "
        f"doubled {whole.doubled}; sender retries {log.retries}"
    )
    print("\n" + "\n".join(report) + "\n" + summary)
    (stack.run_dir / "chaos-long.json").write_text(
        json.dumps({"summary": summary, "kills": [asdict(k) for k in kills]}, indent=1)
    )
    assert whole.clean, whole.describe()
    assert all(k.lost == 0 and k.doubled == 0 for k in kills)
