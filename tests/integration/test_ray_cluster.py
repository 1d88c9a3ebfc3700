"""A real two-node Ray cluster started with `ray start`: actors spread over both nodes, and stop() leaves
no process of the cluster behind while sparing every other Ray on the machine.

These tests start their own Ray processes and need no session stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from canonical.errors import StackError
from cluster.raycluster import LocalRayCluster

# Two detached actors, so their worker processes outlive the driver and stop() has to end them.
SPREAD_DRIVER = textwrap.dedent(
    """
    import json, ray
    ray.init(namespace="spread-test", logging_level="warning")

    @ray.remote(num_cpus=0.5, scheduling_strategy="SPREAD", lifetime="detached")
    class Where:
        def node(self):
            return ray.get_runtime_context().get_node_id()

    actors = [Where.options(name=f"where-{i}").remote() for i in range(2)]
    print(json.dumps(ray.get([a.node.remote() for a in actors])))
    """
)

# A separate local Ray, as other tests start it; answers one task per line read from stdin.
LOCAL_RAY = textwrap.dedent(
    """
    import sys, ray
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="warning")

    @ray.remote
    def square(x):
        return x * x

    print("ready", flush=True)
    for line in sys.stdin:
        print(ray.get(square.remote(int(line))), flush=True)
    ray.shutdown()
    """
)


def _processes(pids: list[int]) -> list[psutil.Process]:
    """The processes with these pids and all their descendants, each once."""
    found: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for each in [proc, *proc.children(recursive=True)]:
                found.setdefault(each.pid, each)
        except psutil.NoSuchProcess:
            continue
    return list(found.values())


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline()) or proc.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return ""


def test_two_nodes_spread_actors_and_stop_leaves_nothing(tmp_path: Path) -> None:
    cluster = LocalRayCluster(2, run_dir=tmp_path / "run")
    try:
        address = cluster.start()
        assert address == cluster.address
        assert address.startswith("127.0.0.1:")
        assert (tmp_path / "run" / "ray-head.log").exists()
        assert (tmp_path / "run" / "ray-node-1.log").exists()
        node_ids = cluster.node_ids()
        assert len(node_ids) == 2

        driver = subprocess.run(
            [sys.executable, "-c", SPREAD_DRIVER],
            env=os.environ | cluster.driver_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert driver.returncode == 0, driver.stderr[-3000:]
        placed = json.loads(driver.stdout.strip().splitlines()[-1])
        assert len(set(placed)) == 2, f"both actors landed on one node: {placed}"
        assert sorted(placed) == node_ids

        seen = _processes(cluster.pids())
        commands = [_cmdline(p) for p in seen]
        programs = [c.split(" ", 1)[0] for c in commands]
        assert sum(p.endswith("/raylet") for p in programs) == 2, commands
        assert sum(p.endswith("/gcs_server") for p in programs) == 1, commands
        assert sum(c.startswith("ray::Where") for c in commands) == 2, commands
    finally:
        cluster.stop()

    survivors = [f"{p.pid} {_cmdline(p)[:120]}" for p in seen if _alive(p)]
    assert not survivors, f"processes of the cluster survived stop(): {survivors}"
    assert cluster.address == ""
    logs = tmp_path / "run" / "ray" / "session_latest" / "logs"
    assert (logs / "raylet.out").exists()  # the Ray temp dir ends up in the run directory


def test_stop_spares_a_local_ray_of_another_process(tmp_path: Path) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", LOCAL_RAY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert other.stdin is not None and other.stdout is not None
    other_tree: list[psutil.Process] = []
    try:
        with LocalRayCluster(1, run_dir=tmp_path / "run") as cluster:  # starts while the other boots
            assert other.stdout.readline().strip() == "ready"
            other_tree = _processes([other.pid])
            assert not {p.pid for p in other_tree} & set(cluster.pids())
        assert [p for p in other_tree if not _alive(p)] == []
        other.stdin.write("7\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "49"  # the other Ray still runs tasks
    finally:
        other.stdin.close()
        try:
            other.wait(timeout=30)
        except subprocess.TimeoutExpired:
            other.kill()
        for proc in _processes([other.pid]) + other_tree:
            if _alive(proc):
                proc.kill()


def test_failed_start_names_the_log(tmp_path: Path) -> None:
    cluster = LocalRayCluster(1, run_dir=tmp_path / "run", object_store_memory_mb=1)  # below Ray's minimum
    with pytest.raises(StackError, match=r"ray-head exited with code \d+; see .*ray-head\.log"):
        cluster.start()
    assert cluster.pids() == []
