"""Small helpers the stack and the local Ray cluster share: free ports, open ports, live processes, the
host's CPU."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable

import psutil


def free_port() -> int:
    """Return a TCP port that is free on every interface of this host right now."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def alive(proc: psutil.Process) -> bool:
    """Whether the process still runs (a zombie does not)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone_ok() -> contextlib.suppress:
    """Ignore a process that is already gone (or was never ours to signal)."""
    return contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess, PermissionError)


def kill_survivors(
    seen: Iterable[psutil.Process], timeout_s: float = 10.0
) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """SIGKILL every process of ``seen`` still alive; return (those killed, those that survived even that)."""
    survivors = [proc for proc in seen if alive(proc)]
    for leftover in survivors:
        with gone_ok():
            leftover.kill()
    _, still = psutil.wait_procs(survivors, timeout=timeout_s)
    return survivors, still


def session_members(session_id: int) -> list[psutil.Process]:
    """Return the live processes of a session (a child started with start_new_session leads its own).

    Processes may leave their process group (Ray's workers do) but never their session, so this finds
    what a killed component left behind even after its leader is gone.
    """
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            if os.getsid(proc.pid) == session_id and alive(proc):
                found.append(proc)
    return found


class HostCpu:
    """The share of the host's CPU (all cores, all processes) that was busy since the previous reading.

    Own deltas of ``psutil.cpu_times()`` rather than ``psutil.cpu_percent()``, whose "since the last call"
    state is one per process and would be shared with any other caller. Idle and I/O wait count as free.
    """

    def __init__(self) -> None:
        self._last = psutil.cpu_times()

    @staticmethod
    def _split(times: tuple[float, ...]) -> tuple[float, float]:
        total = sum(times)
        free = float(getattr(times, "idle", 0.0)) + float(getattr(times, "iowait", 0.0))
        return total, free

    def __call__(self) -> float:
        now = psutil.cpu_times()
        total0, free0 = self._split(self._last)
        total1, free1 = self._split(now)
        self._last = now
        elapsed = total1 - total0
        if elapsed <= 0:
            return 0.0
        return min(1.0, max(0.0, 1.0 - (free1 - free0) / elapsed))


__all__ = ["HostCpu", "alive", "free_port", "gone_ok", "kill_survivors", "port_open", "session_members"]
