"""A second, full embedded stack: every component gets ready, and stopping it leaves no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from canonical.errors import StackError
from cluster.stack import Stack
from foundation.processes import port_open
from foundation.runs import new_run_dir
from tests.integration.conftest import stack_settings

STACK_PROGRAMS = (
    "tansu",
    "redis-server",
    "raylet",
    "gcs_server",
    "cluster.cli",
    "ray::",
    "default_worker.py",
)


def _ours(proc: psutil.Process) -> bool:
    try:
        line = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(program in line for program in STACK_PROGRAMS)


def _in_sessions(proc: psutil.Process, sessions: set[int]) -> bool:
    """Whether ``proc`` runs in one of ``sessions`` (each component leads its own; nothing of ours leaves
    it), so that another stack started on the machine meanwhile is not counted as this one's."""
    try:
        return os.getsid(proc.pid) in sessions
    except (ProcessLookupError, PermissionError):
        return False


def test_stop_leaves_no_orphan(stack: Stack, tmp_path: Path) -> None:
    # The session stack is already up, so every matching process that appears from here on is this one's.
    before = {p.pid for p in psutil.process_iter()}
    settings = stack_settings(tmp_path)
    lifecycle = Stack(settings, new_run_dir(settings, "lifecycle"))
    lifecycle.start()
    try:
        names = [c.name for c in lifecycle.components]
        assert names == ["broker", "redis", "billing", "erp", "payer", "forwarder", "inbox", "mllp", "worker"]
        assert lifecycle.check() == []
        pids = lifecycle.pids()
        # Read off the processes the test started, not off the stack's own bookkeeping under test.
        sessions = {c.process.pid for c in lifecycle.components if c.process is not None}
        started = [
            p for p in psutil.process_iter() if p.pid not in before and _ours(p) and _in_sessions(p, sessions)
        ]
        assert {p.pid for p in started} <= set(pids), "the stack does not know all of its processes"
        assert any("raylet" in " ".join(p.cmdline()) for p in started), "Ray was not started by the worker"
        assert (lifecycle.run_dir / "worker.log").exists() and (lifecycle.run_dir / "broker.log").exists()
    finally:
        lifecycle.stop()
    leftovers = [
        p for p in psutil.process_iter() if p.pid not in before and _ours(p) and _in_sessions(p, sessions)
    ]
    assert leftovers == [], f"orphans after stop: {[(p.pid, p.name()) for p in leftovers]}"
    alive = [
        pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []
    ports = (
        settings.broker_port,
        settings.redis_port,
        settings.billing_port,
        settings.erp_port,
        settings.payer_port,
        settings.mllp_port,
    )
    for port in ports:
        assert not port_open("127.0.0.1", port)


def test_port_in_use_is_refused_with_the_setting_named(stack: Stack, tmp_path: Path) -> None:
    settings = stack_settings(tmp_path, broker_port=stack.settings.broker_port)
    with pytest.raises(StackError, match="HCSYNC_BROKER_PORT"):
        Stack(settings, new_run_dir(settings, "clash")).start()
