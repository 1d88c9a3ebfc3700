"""The chaos suite's stack: the real embedded stack, supervised, with short back-offs.

One stack for the whole chaos session (it is started once, like the integration suite's, and every kill
hits it); its own home, ports and topic prefix, so it never touches the integration suite's stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from adapters.inbound.store import MessageStore
from cluster.stack import Stack
from cluster.status import collect_status
from foundation.processes import gone_ok
from foundation.runs import new_run_dir
from tests.chaos.sender import SendLog, send_all
from tests.chaos.workload import Audit, Visit, audit, lanes
from tests.integration.conftest import stack_settings
from tests.waiting import wait_until

# The victims of the suite, in the order the short suite kills them.
VICTIMS = ("worker", "transform-actor", "billing", "erp", "redis", "mllp", "forwarder", "broker")


@contextlib.contextmanager
def running_stack(home: Path, label: str, **overrides: object) -> Iterator[Stack]:
    """Run a chaos stack: short back-offs, a killed worker's partitions given back after 10 s."""
    settings = stack_settings(
        home,
        **{
            "restart_backoff_s": 0.5,
            "restart_backoff_max_s": 5.0,
            "restart_max": 20,
            "restart_window_s": 600,
            "consumer_session_timeout_s": 10.0,
            "stop_timeout_s": 10.0,
            **overrides,
        },
    )
    stack = Stack(settings, new_run_dir(settings, label))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("chaos"), "chaos") as stack:
        yield stack


def kill(stack: Stack, victim: str) -> str:
    """SIGKILL a victim mid-stream, without warning; return what was killed."""
    if victim == "transform-actor":
        for proc in psutil.process_iter(["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                title = " ".join(proc.info["cmdline"] or []) or (proc.info["name"] or "")
                if "ray::TransformActor" in title and proc.pid in stack.pids():
                    proc.kill()
                    return f"transform actor pid {proc.pid}"
        raise AssertionError("no transform actor process found to kill")
    component = stack.component(victim)
    assert component.process is not None, f"{victim} has no process"
    pid = component.process.pid
    with gone_ok():
        os.killpg(pid, signal.SIGKILL)
    return f"{victim} pid {pid}"


@dataclass
class Outcome:
    """One chaos round: what was sent, acknowledged and posted, and how long recovery took."""

    victim: str
    killed: str
    sent: int
    acked: int
    audit: Audit
    recovered_s: float  # from the kill until everything acknowledged was posted
    retries: dict[str, int]

    def line(self) -> str:
        return (
            f"{self.victim:16} sent {self.sent:6} acked {self.acked:6} "
            f"posted {self.audit.charges_posted:5} charges/{self.audit.lines_posted:5} lines "
            f"lost {self.audit.lost} doubled {self.audit.doubled} recovered in {self.recovered_s:5.1f}s "
            f"retries {self.retries}"
        )


def settled(stack: Stack) -> bool:
    """Every component runs, nothing waits in the message store, and the workers have no lag."""
    if any(s.state != "running" for s in stack.statuses()):
        return False
    store = MessageStore.from_settings(stack.settings.model_copy(update={"run_dir": stack.run_dir}))
    try:
        if store.totals()["pending"]:
            return False
    finally:
        store.close()
    status = asyncio.run(collect_status(stack.settings, 0.1))
    return not status.problems and status.total_lag == 0


def run_round(
    stack: Stack,
    victim: str,
    workload: list[Visit],
    *,
    kill_after: float = 0.3,
    lanes_count: int = 8,
    settle_timeout_s: float = 300.0,
) -> Outcome:
    """Send the workload over MLLP, kill ``victim`` once ``kill_after`` of it is acknowledged, and audit."""
    settings = stack.settings
    log = SendLog()
    total = sum(len(v.messages) for v in workload)
    killed: list[tuple[str, float]] = []

    async def scenario() -> None:
        sending = asyncio.create_task(
            send_all(settings.mllp_host, settings.mllp_port, lanes(workload, lanes_count), log)
        )
        while len(log.acked) < total * kill_after:
            done, _ = await asyncio.wait([sending], timeout=0.05)
            if done:
                break
        killed.append((await asyncio.to_thread(kill, stack, victim), time.monotonic()))
        await sending

    asyncio.run(scenario())
    assert not log.refused, f"refused (not told to resend): {[(a.control_id, a.text) for a in log.refused]}"
    assert len(log.acked) == total, f"{len(log.acked)} of {total} messages acknowledged"
    what, killed_at = killed[0]
    wait_until(
        f"every acknowledged message of the {victim} round posted (audit and components)",
        lambda: (audit(stack.run_dir, workload), _states(stack)),
        settle_timeout_s,
        done=lambda seen: seen[0].lost == 0,
        show=lambda seen: f"{seen[0].describe()}; components {seen[1]}",
        poll_s=1.0,
    )
    recovered_s = time.monotonic() - killed_at
    # Then quiet: no lag, nothing pending, every component running; a late repeat would show now.
    wait_until(
        "the stack to settle: every component running, nothing pending, no lag",
        lambda: (settled(stack), _states(stack)),
        120,
        done=lambda seen: seen[0],
        show=lambda seen: f"components {seen[1]}",
        poll_s=1.0,
    )
    final = audit(stack.run_dir, workload)
    return Outcome(victim, what, total, len(log.acked), final, recovered_s, dict(log.retries))


def _states(stack: Stack) -> dict[str, str]:
    return {s.name: f"{s.state}/{s.restarts}" for s in stack.statuses()}


def prefix() -> str:
    return f"C{uuid.uuid4().hex[:5].upper()}"
