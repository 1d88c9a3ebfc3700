"""A real multi-node Ray cluster on this machine, started with the Ray CLI as an SRE would.

``ray start --head`` first, then ``ray start --address=<head>`` for each further node, every one of them
with ``--block`` in its own session, so the ``ray start`` process stays our child, exits (and we notice)
when Ray gives up on a node, and shuts its node down in Ray's own order on SIGTERM. Everything here was
measured with Ray 2.60 on one host, and each choice below guards against something seen to go wrong:

* Never ``ray stop``: it kills every Ray process of the user on the machine, other tests' local Rays
  included. Each node's processes keep the session id of their ``ray start`` (workers move to a process
  group of their own, so a ``killpg`` misses them, but never to a new session); stop() terminates the
  ``ray start`` processes, then kills whatever is left in those sessions or was ever seen below them
  (a RuntimeEnvAgent was seen to outlive its node and to ignore SIGTERM).
* Ports: the GCS and the Ray client server get free ports (a head whose client server cannot bind
  10001 dies a second after "Ray runtime started"); the dashboard agents listen on port 0 (with the
  default 52365 every agent after the first retries for 3.5 s, then runs without its HTTP service);
  workers bind random ports (``--min/max-worker-port=0``) instead of sharing 10002-19999 with every
  other raylet on the host. The node manager and object manager ports are random by default; the
  head's two metrics exporters (fixed 44217 and 44227, set by environment only) get free ports too.
* One short ``--temp-dir`` for the whole cluster: Unix socket paths must stay under 108 bytes and Ray
  appends ~67 to it. Further nodes may use another temp dir, but sharing the head's lets the head's
  log monitor ship every node's worker output, so the others run without one (with one each, every
  line reached the driver twice). A temp dir outside the run directory is moved into it on stop.
* Authentication: a head enables token auth when a token exists (``~/.ray/auth_token``, which any
  ``ray.init()`` creates), but ``ray start --address`` and drivers given an explicit address do not,
  and are then refused ("InvalidAuthToken"). So every node gets RAY_AUTH_MODE (the caller's, else
  "token", creating a token as ``ray.init()`` does if there is none), and drivers need it too: use
  :attr:`LocalRayCluster.driver_env`, not RAY_ADDRESS alone. The GCS listens on every interface (Ray
  turns 127.0.0.1 into the host's address), which is one more reason to keep the token.
* ``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0`` (unless set by the caller): on SIGTERM a node running an
  actor otherwise waits 30 s for a drain that nothing here needs, one node after the other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

from canonical.errors import StackError
from foundation.processes import alive, free_port, gone_ok, kill_survivors, port_open

log = logging.getLogger(__name__)

# Ray appends "/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store.<n>" (~67 bytes) to the temp dir,
# and a Unix socket path may not exceed 107 bytes.
MAX_TEMP_DIR_BYTES = 40
STOP_TIMEOUT_S = 15.0

# Reads the alive nodes from the GCS with Ray's GCS client in a short subprocess: the calling process
# neither becomes a driver (ray.init would register a job and stay connected) nor loads Ray's process-wide
# C++ config, whose RAY_AUTH_MODE may differ from this cluster's. ``ray.util.state`` would need the
# dashboard, which is off. Waits until at least ``want`` nodes are alive, then prints their ids as JSON.
_PROBE = """
import json, sys, time
from ray._raylet import GcsClient
from ray.core.generated.gcs_pb2 import GcsNodeInfo
address, want, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
client, error = GcsClient(address=address), None
while True:
    try:
        infos = client.get_all_node_info(timeout=5)
        alive = sorted(i.hex() for i, info in infos.items() if info.state == GcsNodeInfo.ALIVE)
    except Exception as exc:
        alive, error = [], exc
    if len(alive) >= want or time.monotonic() > deadline:
        print(json.dumps(alive))
        if len(alive) < want and error is not None:
            print(f"last error: {error!r}", file=sys.stderr)
        sys.exit(0 if len(alive) >= want else 1)
    time.sleep(0.25)
"""


def ray_cli() -> str:
    """Return the ``ray`` executable of this interpreter's environment."""
    beside = Path(sys.executable).with_name("ray")
    if beside.exists():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise StackError(f"no `ray` executable next to {sys.executable} nor on PATH; install ray[default]")
    return found


def _token_available(env: dict[str, str]) -> bool:
    """Whether Ray's token loader will find a token (the env var, the file it names, or the default)."""
    if env.get("RAY_AUTH_TOKEN"):
        return True
    path = Path(env["RAY_AUTH_TOKEN_PATH"]) if env.get("RAY_AUTH_TOKEN_PATH") else None
    path = path or Path.home() / ".ray" / "auth_token"
    return path.is_file() and path.stat().st_size > 0


@dataclass(slots=True)
class RayNode:
    """One ``ray start --block`` process and its log file."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()


class LocalRayCluster:
    """A Ray head plus (nodes-1) worker nodes on this machine, started with `ray start`."""

    def __init__(
        self,
        nodes: int,
        *,
        run_dir: Path,
        num_cpus_per_node: int = 1,
        object_store_memory_mb: int = 128,
        ready_timeout_s: float = 120.0,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node (the head)")
        self.nodes = nodes
        self.run_dir = run_dir
        self.num_cpus_per_node = num_cpus_per_node
        self.object_store_memory_mb = object_store_memory_mb
        self.ready_timeout_s = ready_timeout_s
        self.auth_mode = ""
        self.temp_dir: Path | None = None
        self._members: list[RayNode] = []
        self._seen: dict[int, psutil.Process] = {}
        self._env: dict[str, str] = {}
        self._address = ""

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the head, then the other nodes; return the GCS address once all nodes are alive."""
        if self._members:
            raise StackError("this Ray cluster is already started")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._prepare()
            self._start_head()
            for index in range(1, self.nodes):
                self._start_node(index)
            self._waitalive()
        except BaseException:
            self.stop()
            raise
        log.info("Ray cluster of %d nodes at %s (temp dir %s)", self.nodes, self._address, self.temp_dir)
        return self._address

    def launchers(self) -> dict[str, int]:
        """Return the pid of each node's ``ray start --block`` process, by node name (ray-head first)."""
        return {m.name: m.process.pid for m in self._members if m.process is not None}

    def exited(self) -> str | None:
        """Describe the first node whose ``ray start`` exited (Ray gave up on it), or None when all run."""
        for member in self._members:
            code = member.exited()
            if code is not None:
                return f"{member.name} exited with code {code}"
        return None

    def restart(self) -> str:
        """Stop every node and start the cluster again (new ports, so a new address); return the address.

        The previous run's temp dir (logs) is kept beside the new one as ``ray-<n>``.
        """
        self.stop()
        kept = self.run_dir / "ray"
        if kept.is_dir() and not kept.is_symlink():
            generation = 1 + sum(1 for _ in self.run_dir.glob("ray-[0-9]*"))
            kept.rename(self.run_dir / f"ray-{generation}")
        return self.start()

    @property
    def address(self) -> str:
        """The GCS address drivers and nodes join ("127.0.0.1:<port>"); empty until started."""
        return self._address

    @property
    def driver_env(self) -> dict[str, str]:
        """What a driver's environment needs to join: RAY_ADDRESS and the cluster's RAY_AUTH_MODE."""
        return {"RAY_ADDRESS": self._address, "RAY_AUTH_MODE": self.auth_mode}

    def node_ids(self) -> list[str]:
        """Return the hex ids of the cluster's alive nodes, sorted, as the GCS reports them."""
        if not self._address:
            raise StackError("the Ray cluster is not started")
        return self._probe(want=0, timeout_s=0.0)

    def pids(self) -> list[int]:
        """Return the pids of every process of the cluster alive now (and remember them for stop)."""
        self._remember()
        return sorted(pid for pid, proc in self._seen.items() if alive(proc))

    def stop(self) -> None:
        """Stop this cluster's processes only: SIGTERM to each ``ray start``, then SIGKILL to any leftover."""
        self._remember()
        workers, head = self._members[1:], self._members[:1]
        for group in (workers, head):  # the head last: nodes leave a live GCS
            running = [m.process for m in group if m.process is not None and m.process.poll() is None]
            for proc in running:
                with gone_ok():
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for proc in running:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning(
                        "ray start (pid %d) did not stop in %.0fs; it will be killed",
                        proc.pid,
                        STOP_TIMEOUT_S,
                    )
        self._remember()  # whatever a node started while shutting down
        killed, still = kill_survivors(self._seen.values())
        if killed:
            log.info("killed %d Ray processes left after SIGTERM: %s", len(killed), _names(killed))
        for member in self._members:
            if member.process is not None and member.process.poll() is None:
                member.process.wait(timeout=10)
        self._members.clear()
        self._address = ""
        if still:
            raise StackError(f"Ray processes survived SIGKILL: {sorted(p.pid for p in still)}")
        self._keep_temp_dir()

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- start ------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)  # a node is told where to go by its flags only
        env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
        # The head's autoscaler monitor and dashboard export metrics on fixed ports (44217, 44227) that
        # every other local Ray on the host wants as well; the loser logs "Address already in use".
        env.setdefault("AUTOSCALER_METRIC_PORT", str(free_port()))
        env.setdefault("DASHBOARD_METRIC_PORT", str(free_port()))
        self.auth_mode = env.get("RAY_AUTH_MODE", "token").lower()
        env["RAY_AUTH_MODE"] = self.auth_mode
        if self.auth_mode == "token" and not _token_available(env):
            # What ray.init() does for a new local cluster: create ~/.ray/auth_token.
            generated = subprocess.run(
                [ray_cli(), "get-auth-token", "--generate"],
                env=env,
                stdout=subprocess.DEVNULL,  # the token itself
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
            if generated.returncode != 0:
                raise StackError(
                    "RAY_AUTH_MODE=token but no token could be generated with "
                    f"`ray get-auth-token --generate`: {generated.stderr.strip()[-500:]}"
                )
        self._env = env
        self.temp_dir = self._make_temp_dir()

    def _make_temp_dir(self) -> Path:
        inside = self.run_dir.resolve() / "ray"
        if len(os.fsencode(inside)) <= MAX_TEMP_DIR_BYTES:
            inside.mkdir(exist_ok=True)
            return inside
        short = Path(tempfile.mkdtemp(prefix="hcray-", dir="/tmp"))
        if len(os.fsencode(short)) > MAX_TEMP_DIR_BYTES:
            raise StackError(f"Ray temp dir {short} is too long for Unix socket paths")
        link = self.run_dir / "ray"
        link.unlink(missing_ok=True)
        link.symlink_to(short, target_is_directory=True)
        return short

    def _common_flags(self) -> list[str]:
        return [
            f"--temp-dir={self.temp_dir}",
            f"--num-cpus={self.num_cpus_per_node}",
            f"--object-store-memory={self.object_store_memory_mb * 1024 * 1024}",
            "--disable-usage-stats",
            "--dashboard-agent-listen-port=0",
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--log-style=record",
            "--log-color=false",
            "--block",
        ]

    def _start_head(self) -> None:
        port = free_port()
        head = RayNode(
            "ray-head",
            [
                ray_cli(),
                "start",
                "--head",
                f"--port={port}",
                f"--ray-client-server-port={free_port()}",
                "--include-dashboard=false",
                *self._common_flags(),
            ],
            self.run_dir / "ray-head.log",
        )
        self._launch(head)
        # Further nodes may start once the GCS answers; the alive count below waits for the raylets.
        self._wait(head, lambda: port_open("127.0.0.1", port), "its GCS port")
        self._address = f"127.0.0.1:{port}"

    def _start_node(self, index: int) -> None:
        node = RayNode(
            f"ray-node-{index}",
            [
                ray_cli(),
                "start",
                f"--address={self._address}",
                "--include-log-monitor=false",
                *self._common_flags(),
            ],
            self.run_dir / f"ray-node-{index}.log",
        )
        self._launch(node)

    def _launch(self, node: RayNode) -> None:
        with node.log_path.open("ab") as log_file:
            node.process = subprocess.Popen(
                node.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
                start_new_session=True,
            )
        self._members.append(node)
        log.info("%s started (pid %d); log %s", node.name, node.process.pid, node.log_path)

    def _wait(self, node: RayNode, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while not ready():
            self._check_running()
            if time.monotonic() > deadline:
                raise StackError(
                    f"{node.name}: no {what} after {self.ready_timeout_s:.0f}s; see {node.log_path}"
                )
            time.sleep(0.1)

    def _check_running(self) -> None:
        for member in self._members:
            code = member.exited()
            if code is not None:
                raise StackError(f"{member.name} exited with code {code}; see {member.log_path}")

    def _waitalive(self) -> None:
        """Wait until ``nodes`` nodes are alive in the GCS while every ``ray start`` keeps running."""
        deadline = time.monotonic() + self.ready_timeout_s
        probe = self._probe_process(want=self.nodes, timeout_s=self.ready_timeout_s)
        try:
            while probe.poll() is None:
                self._check_running()
                if time.monotonic() > deadline + 10:
                    raise StackError(self._not_ready(f"the node probe hung for {self.ready_timeout_s:.0f}s"))
                time.sleep(0.2)
            out, err = probe.communicate()
        finally:
            if probe.poll() is None:
                probe.kill()
                probe.wait()
        if probe.returncode != 0:
            alive = _parse_ids(out)
            detail = f"{len(alive)} of {self.nodes} nodes alive" if alive or not err else err.strip()[-500:]
            raise StackError(self._not_ready(f"{detail} after {self.ready_timeout_s:.0f}s"))
        self._check_running()  # a head whose client server cannot bind dies right after it started
        self._remember()

    def _not_ready(self, detail: str) -> str:
        logs = ", ".join(str(m.log_path) for m in self._members)
        return f"Ray cluster not ready: {detail}; see {logs} and {self.temp_dir}/session_latest/logs"

    # -- probing ----------------------------------------------------------------------------------
    def _probe_process(self, *, want: int, timeout_s: float) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", _PROBE, self._address, str(want), str(timeout_s)],
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def _probe(self, *, want: int, timeout_s: float) -> list[str]:
        probe = self._probe_process(want=want, timeout_s=timeout_s)
        try:
            out, err = probe.communicate(timeout=timeout_s + 60)
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.communicate()
            raise StackError(
                f"no answer from the Ray GCS at {self._address}; see {self._head_log()}"
            ) from None
        if probe.returncode != 0:
            raise StackError(
                f"reading nodes from the Ray GCS at {self._address} failed: {err.strip()[-500:]}; "
                f"see {self._head_log()}"
            )
        return _parse_ids(out)

    def _head_log(self) -> Path:
        return self._members[0].log_path if self._members else self.run_dir / "ray-head.log"

    # -- processes --------------------------------------------------------------------------------
    def _remember(self) -> None:
        """Record every live process in one of our sessions or below one of our ``ray start``."""
        # A session id is not reused while any process is in that session, so matching on it is safe
        # even after its ``ray start`` has exited; a pid is only safe while its process is not reaped.
        sessions = {m.process.pid for m in self._members if m.process is not None}
        unreaped = [
            m.process.pid for m in self._members if m.process is not None and m.process.poll() is None
        ]
        found: list[psutil.Process] = []
        if sessions:
            for proc in psutil.process_iter():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getsid(proc.pid) in sessions:
                        found.append(proc)
        for pid in unreaped:
            with gone_ok():
                found.extend(psutil.Process(pid).children(recursive=True))
        for proc in found:
            known = self._seen.get(proc.pid)
            if known is None or not alive(known):  # new, or a dead one's pid reused by one of ours
                self._seen[proc.pid] = proc

    def _keep_temp_dir(self) -> None:
        """Move a temp dir kept outside the run directory (for short socket paths) into it, logs and all."""
        link = self.run_dir / "ray"
        if self.temp_dir is None or not link.is_symlink():
            return
        link.unlink()
        shutil.move(str(self.temp_dir), str(link))
        latest = link / "session_latest"  # an absolute link into the old place
        if latest.is_symlink():
            target = Path(os.readlink(latest)).name
            latest.unlink()
            latest.symlink_to(target, target_is_directory=True)
        self.temp_dir = link


def _parse_ids(out: str) -> list[str]:
    lines = out.strip().splitlines()
    if not lines:
        return []
    ids: list[str] = json.loads(lines[-1])
    return ids


def _names(procs: list[psutil.Process]) -> str:
    names = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            names.append(f"{proc.pid} {proc.name()}")
    return ", ".join(names)
