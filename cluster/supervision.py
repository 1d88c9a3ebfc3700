"""Supervision state: the restart policy, what the supervisor knows of each component, and its status file.

Free of processes and threads so that the policy can be tested with a fake clock. The stack
(:mod:`cluster.stack`) applies it; ``hcsync status`` reads the status file it writes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from foundation.settings import Settings

__all__ = [
    "STATUS_FILE",
    "ComponentStatus",
    "ExitRecord",
    "RestartPolicy",
    "State",
    "SupervisorStatus",
    "describe_exit",
    "read_status",
    "write_status",
]

STATUS_FILE = "supervisor.json"
# A status file older than this was left by a supervisor that is gone.
STALE_AFTER_S = 10.0


class State(StrEnum):
    """Where a component is in its life."""

    STARTING = "starting"  # launched, not ready yet
    RUNNING = "running"
    RESTARTING = "restarting"  # exited; waiting out its back-off (or for what it needs) before a restart
    FAILED = "failed"  # exited too often within the window: reported, no longer restarted
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Back-off and budget of restarts: how long to wait before the next one, and when to give up."""

    backoff_s: float
    backoff_max_s: float
    max_restarts: int
    window_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RestartPolicy:
        return cls(
            backoff_s=settings.restart_backoff_s,
            backoff_max_s=settings.restart_backoff_max_s,
            max_restarts=settings.restart_max,
            window_s=settings.restart_window_s,
        )

    def recent(self, restarts: Sequence[float], now: float) -> list[float]:
        """Return the restart times (monotonic seconds) that still count: those within the window."""
        return [at for at in restarts if now - at < self.window_s]

    def next_delay(self, restarts: Sequence[float], now: float) -> float | None:
        """Return how long to wait before restarting, given the recent restart times; None: give up."""
        recent = self.recent(restarts, now)
        if len(recent) >= self.max_restarts:
            return None
        return float(min(self.backoff_s * 2 ** len(recent), self.backoff_max_s))


@dataclass(frozen=True, slots=True)
class ExitRecord:
    """How a component's process ended."""

    code: int | None  # the exit code; negative: the signal that killed it; None: it never started
    reason: str  # "exited with code 1", "killed by SIGKILL", "not ready after 90s", ...
    at: str  # ISO time, UTC
    uptime_s: float


def describe_exit(code: int | None) -> str:
    """Say how a process ended, from its Popen return code."""
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """What `hcsync status` shows of one component."""

    name: str
    state: str
    pid: int | None
    restarts: int
    since: str  # ISO time of the last state change
    last_exit: ExitRecord | None = None
    detail: str = ""  # why it failed, or what it waits for


@dataclass(frozen=True, slots=True)
class SupervisorStatus:
    """The supervisor's view of the stack."""

    pid: int
    updated_at: str
    run_dir: str
    components: list[ComponentStatus] = field(default_factory=list)

    def stale(self, now: dt.datetime | None = None) -> bool:
        """Whether the supervisor that wrote this has stopped updating it (it is gone)."""
        updated = dt.datetime.fromisoformat(self.updated_at)
        return ((now or dt.datetime.now(dt.UTC)) - updated).total_seconds() > STALE_AFTER_S

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_status(run_dir: Path, status: SupervisorStatus) -> None:
    """Write the status file atomically (a reader never sees half of it)."""
    path = run_dir / STATUS_FILE
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    temp.write_text(json.dumps(status.to_dict(), indent=1))
    temp.replace(path)


def read_status(run_dir: Path) -> SupervisorStatus | None:
    """Read the status file of a run, or None when there is none."""
    path = run_dir / STATUS_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    components = [
        ComponentStatus(**(c | {"last_exit": ExitRecord(**c["last_exit"]) if c.get("last_exit") else None}))
        for c in doc.get("components", [])
    ]
    return SupervisorStatus(
        pid=int(doc["pid"]), updated_at=doc["updated_at"], run_dir=doc["run_dir"], components=components
    )
