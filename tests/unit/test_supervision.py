"""cluster.supervision: the restart policy (back-off and budget) and the status file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cluster.supervision import (
    ComponentStatus,
    ExitRecord,
    RestartPolicy,
    SupervisorStatus,
    describe_exit,
    read_status,
    write_status,
)

POLICY = RestartPolicy(backoff_s=1.0, backoff_max_s=8.0, max_restarts=5, window_s=300.0)


def test_back_off_doubles_up_to_the_cap_then_the_budget_runs_out() -> None:
    restarts: list[float] = []
    delays = []
    now = 0.0
    while (delay := POLICY.next_delay(restarts, now)) is not None:
        delays.append(delay)
        restarts.append(now)
        now += delay + 1.0  # it dies a second after each restart
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(restarts) == POLICY.max_restarts


def test_restarts_outside_the_window_no_longer_count() -> None:
    restarts = [0.0, 10.0, 20.0, 30.0, 40.0]
    assert POLICY.next_delay(restarts, 50.0) is None  # five within 300 s: failed
    assert POLICY.next_delay(restarts, 305.0) == 8.0  # the first has aged out: four count
    assert POLICY.next_delay(restarts, 400.0) == 1.0  # all aged out: a fresh start


@given(st.lists(st.floats(min_value=0, max_value=1000), max_size=20), st.floats(min_value=0, max_value=2000))
def test_the_delay_is_bounded_and_giving_up_follows_the_budget(restarts: list[float], now: float) -> None:
    recent = [at for at in restarts if now - at < POLICY.window_s]
    delay = POLICY.next_delay(restarts, now)
    if len(recent) >= POLICY.max_restarts:
        assert delay is None
    else:
        assert delay is not None and POLICY.backoff_s <= delay <= POLICY.backoff_max_s


def test_exits_are_described() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(None) == "did not start"


def test_status_file_round_trips_and_tells_when_stale(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)
    status = SupervisorStatus(
        pid=42,
        updated_at=now.isoformat(),
        run_dir=str(tmp_path),
        components=[
            ComponentStatus("broker", "running", 100, 0, now.isoformat()),
            ComponentStatus(
                "erp",
                "restarting",
                None,
                2,
                now.isoformat(),
                ExitRecord(code=-9, reason="killed by SIGKILL", at=now.isoformat(), uptime_s=12.5),
                "killed by SIGKILL; restart in 2.0s",
            ),
        ],
    )
    write_status(tmp_path, status)
    again = read_status(tmp_path)
    assert again == status
    assert not again.stale(now + dt.timedelta(seconds=5))
    assert again.stale(now + dt.timedelta(seconds=30))
    assert read_status(tmp_path / "nowhere") is None
