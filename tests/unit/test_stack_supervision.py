"""The stack's supervisor on stand-in processes: restarts with back-off, the budget, the broker's loss, the
drain order and the status file.

The components here are small Python processes named like the real ones (the supervisor is what is under
test, and it treats every component alike except by name); the real components are supervised in the chaos
suite (tests/chaos).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.inbound.store import MessageStore
from cluster.stack import Component, Stack
from cluster.supervision import State, read_status
from foundation.settings import Settings
from tests.waiting import wait_until

# Appends its name to the log file when asked to stop, then exits; otherwise sleeps. It says it is ready
# (a file named after its pid) once it can hear SIGTERM.
_SLEEPER = """
import os, signal, sys, time
name, log, ready = sys.argv[1], sys.argv[2], sys.argv[3]
def stop(*_):
    with open(log, "a") as f:
        f.write(name + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(os.path.join(ready, str(os.getpid())), "w").close()
while True:
    time.sleep(1)
"""
NAMES = ("broker", "redis", "billing", "erp", "forwarder", "mllp", "worker", "worker-2")


class StandInStack(Stack):
    """A stack whose components are sleepers; ``ready`` says which of them count as ready."""

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        super().__init__(settings, run_dir)
        self.stop_log = run_dir / "stopped.txt"
        self.not_ready: set[str] = set()

    def _plan(self) -> list[Component]:
        marks = self.run_dir / "ready"
        marks.mkdir(exist_ok=True)

        def ready(name: str) -> Callable[[], bool]:
            def check() -> bool:
                proc = self.component(name).process
                started = proc is not None and (marks / str(proc.pid)).exists()
                return started and name not in self.not_ready

            return check

        return [
            Component(
                name,
                [sys.executable, "-c", _SLEEPER, name, str(self.stop_log), str(marks)],
                ready=ready(name),
                requires=("broker",) if name.startswith(("worker", "forwarder")) else (),
            )
            for name in NAMES
        ]

    def _seed_masterdata(self) -> None:  # no Redis here
        return None


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[StandInStack]:
    settings = Settings(
        run_dir=tmp_path,
        restart_backoff_s=0.2,
        restart_backoff_max_s=0.4,
        restart_max=3,
        restart_window_s=60,
        stop_timeout_s=5,
        ready_timeout_s=5,
    )
    running = StandInStack(settings, tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def wait_for(what: str, check: Callable[[], bool], describe: Callable[[], object]) -> None:
    """Wait for ``check``; on timeout fail naming ``what`` and what ``describe`` says of the stack."""
    wait_until(
        what,
        lambda: (check(), describe()),
        20,
        done=lambda seen: seen[0],
        show=lambda seen: seen[1],
        poll_s=0.05,
    )


def states(stack: Stack) -> dict[str, tuple[str, int]]:
    return {s.name: (s.state, s.restarts) for s in stack.statuses()}


def pid_of(stack: Stack, name: str) -> int:
    proc = stack.component(name).process
    assert proc is not None
    return proc.pid


def test_a_dead_component_is_restarted_and_nothing_else_moves(stack: StandInStack) -> None:
    before = {name: pid_of(stack, name) for name in NAMES}
    os.kill(before["erp"], signal.SIGKILL)
    wait_for(
        "erp to run again",
        lambda: states(stack)["erp"] == ("running", 1),
        lambda: states(stack),
    )
    after = {name: pid_of(stack, name) for name in NAMES}
    assert after["erp"] != before["erp"]
    assert {n: p for n, p in after.items() if n != "erp"} == {n: p for n, p in before.items() if n != "erp"}

    def erp_on_file() -> object:
        status = read_status(stack.run_dir)
        return None if status is None else next(c for c in status.components if c.name == "erp")

    wait_for("the status file to show it", lambda: getattr(erp_on_file(), "restarts", 0) == 1, erp_on_file)
    erp = erp_on_file()
    assert erp is not None and erp.last_exit is not None  # type: ignore[attr-defined]
    assert erp.last_exit.reason == "killed by SIGKILL" and erp.state == "running"  # type: ignore[attr-defined]
    assert not stack.events.empty()


def test_a_component_that_keeps_dying_is_reported_failed_not_restarted(stack: StandInStack) -> None:
    # HCSYNC_RESTART_MAX=3: three restarts, and the fourth death within the window is the last.
    for attempt in range(1, 5):
        os.kill(pid_of(stack, "billing"), signal.SIGKILL)
        if attempt < 4:
            wait_for(
                f"billing restart {attempt}",
                lambda attempt=attempt: states(stack)["billing"] == ("running", attempt),
                lambda: states(stack),
            )
    wait_for("billing to fail", lambda: stack.failed() == ["billing"], lambda: states(stack))
    time.sleep(1.0)  # several back-offs: still not restarted
    assert states(stack)["billing"][0] == "failed"
    failed = next(s for s in stack.statuses() if s.name == "billing")
    assert "HCSYNC_RESTART_MAX" in failed.detail
    assert all(state == "running" for name, (state, _) in states(stack).items() if name != "billing")


def test_the_brokers_loss_holds_its_users_until_it_is_back_and_replays_the_store(
    stack: StandInStack,
) -> None:
    store = MessageStore.from_settings(stack.settings)
    epoch = store.epoch()
    workers = {name: pid_of(stack, name) for name in ("worker", "worker-2", "forwarder")}
    redis_pid = pid_of(stack, "redis")
    stack.not_ready.add("broker")  # the new broker takes its time
    os.kill(pid_of(stack, "broker"), signal.SIGKILL)
    wait_for(
        "the broker's users to stop",
        lambda: all(states(stack)[n][0] == "restarting" for n in workers),
        lambda: states(stack),
    )
    time.sleep(0.5)
    held = next(s for s in stack.statuses() if s.name == "worker")
    assert "waiting for broker" in held.detail, held
    assert store.epoch() == epoch, "no replay before the new broker is ready"
    stack.not_ready.discard("broker")
    wait_for(
        "everything running again",
        lambda: all(state == "running" for state, _ in states(stack).values()),
        lambda: states(stack),
    )
    assert store.epoch() == epoch + 1, "a new broker gets every stored message again"
    assert all(pid_of(stack, n) != pid for n, pid in workers.items())
    assert pid_of(stack, "redis") == redis_pid
    worker = stack.component("worker")
    # Held, not failed: that stop does not count against the worker's restart budget.
    assert worker.restart_times == [] and worker.last_exit is not None
    assert "the broker was lost" in worker.last_exit.reason
    store.close()


def test_a_component_never_ready_is_killed_and_retried(stack: StandInStack) -> None:
    stack.not_ready.add("mllp")
    first = pid_of(stack, "mllp")
    os.kill(first, signal.SIGKILL)
    wait_for(
        "mllp to give up on readiness",
        lambda: (exit_ := stack.component("mllp").last_exit) is not None and "not ready" in exit_.reason,
        lambda: states(stack),
    )
    stack.not_ready.discard("mllp")
    wait_for("mllp running", lambda: states(stack)["mllp"][0] == "running", lambda: states(stack))


def test_stop_drains_in_order_gateways_first_broker_last(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, stop_timeout_s=5, ready_timeout_s=5)
    stack = StandInStack(settings, tmp_path)
    stack.start()
    stack.stop()
    order = stack.stop_log.read_text().split()
    assert order == ["mllp", "forwarder", "worker", "worker-2", "billing", "erp", "redis", "broker"]
    status = read_status(tmp_path)
    assert status is not None and {c.state for c in status.components} == {State.STOPPED.value}
