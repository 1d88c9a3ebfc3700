"""The embedded stack: broker, Redis, the gRPC adapters, the MLLP gateway and the Faust worker(s).

Each component is a child process in its own session, with a readiness check and a log file in the
run directory. Stopping sends SIGTERM to each process group in reverse order, then SIGKILL to anything
left, including every descendant seen while running (Ray's processes), so no orphan survives.

Ray: by default the worker starts a local Ray in its own process. With ``HCSYNC_RAY_LOCAL_NODES=N``, or
with several workers (``HCSYNC_WORKERS``), the stack first starts a real local Ray cluster with
``ray start --head`` and ``ray start --address`` (cluster.raycluster) and the workers join it through
RAY_ADDRESS, as they would join a production cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil
import redis

from canonical.errors import StackError
from cluster.binaries import redis_binary, tansu_binary
from cluster.raycluster import LocalRayCluster
from foundation.kafka import ensure_topics
from foundation.processes import gone_ok, kill_survivors, port_open
from foundation.settings import Settings

log = logging.getLogger(__name__)


def worker_names(count: int) -> list[str]:
    """The names of the stack's workers: worker, worker-2, worker-3..."""
    return ["worker", *(f"worker-{n}" for n in range(2, count + 1))]


def settings_env(settings: Settings) -> dict[str, str]:
    """Render settings as HCSYNC_* environment variables for child processes."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if name == "encounter_ref_key":
            value = settings.encounter_ref_key.get_secret_value()
        # pydantic-settings reads complex fields (lists) from the environment as JSON.
        env[f"HCSYNC_{name.upper()}"] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return env


@dataclass(slots=True)
class Component:
    """One child process of the stack."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    port: tuple[int, str] | None = None  # (port, setting) that must be free before the start
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None


class Stack:
    """Start, watch and stop the embedded components for one run directory."""

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.components: list[Component] = []
        self._seen: dict[int, psutil.Process] = {}
        self.started_at = 0.0
        self.ray_cluster: LocalRayCluster | None = None

    # -- definition -------------------------------------------------------------------------------
    def _python(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cluster.cli", *args]

    def _plan(self) -> list[Component]:
        s = self.settings
        plan: list[Component] = []
        if s.embedded_broker:
            url = f"tcp://{s.broker_host}:{s.broker_port}"
            plan.append(
                Component(
                    "broker",
                    [
                        tansu_binary(),
                        "broker",
                        "--listener-url",
                        url,
                        "--advertised-listener-url",
                        url,
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    ready=lambda: port_open(s.broker_host, s.broker_port) and self._topics_ready(),
                    port=(s.broker_port, "HCSYNC_BROKER_PORT"),
                )
            )
        if s.redis_url is None:
            plan.append(
                Component(
                    "redis",
                    [
                        redis_binary(),
                        "--port",
                        str(s.redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(self.run_dir),
                    ],
                    ready=self._redis_ready,
                    port=(s.redis_port, "HCSYNC_REDIS_PORT"),
                )
            )
        if s.billing_target is None:
            plan.append(
                Component(
                    "billing",
                    self._python("serve", "billing"),
                    ready=self._grpc_ready("billing"),
                    port=(s.billing_port, "HCSYNC_BILLING_PORT"),
                )
            )
        if s.erp_target is None:
            plan.append(
                Component(
                    "erp",
                    self._python("serve", "erp"),
                    ready=self._grpc_ready("erp"),
                    port=(s.erp_port, "HCSYNC_ERP_PORT"),
                )
            )
        plan.append(
            Component(
                "mllp",
                self._python("mllp"),
                ready=lambda: port_open(s.mllp_host, s.mllp_port),
                port=(s.mllp_port, "HCSYNC_MLLP_PORT"),
            )
        )
        for name in worker_names(s.workers):
            plan.append(
                Component(
                    name,
                    self._python("worker"),
                    ready=self._worker_ready(name),
                    env={"HCSYNC_WORKER_NAME": name},
                )
            )
        return plan

    def ray_nodes(self) -> int:
        """Nodes of the local Ray cluster the stack starts (0: none, each worker runs its own Ray)."""
        s = self.settings
        if s.ray_address:
            return 0
        return max(s.ray_local_nodes, 1 if s.workers > 1 else 0)

    # -- readiness --------------------------------------------------------------------------------
    def _topics_ready(self) -> bool:
        try:
            asyncio.run(ensure_topics(self.settings))
        except Exception as exc:
            log.debug("topics not ready: %s", exc)
            return False
        return True

    def _redis_ready(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.settings.redis, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def _grpc_ready(self, service: str) -> Callable[[], bool]:
        def check() -> bool:
            from adapters.probe import probe

            return probe(service, self.settings)

        return check

    def _worker_ready(self, name: str) -> Callable[[], bool]:
        return lambda: (self.run_dir / f"{name}.ready").exists()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every component in order, each only after the previous one is ready."""
        self.started_at = time.monotonic()
        for name in worker_names(self.settings.workers):  # a reused run dir must not look ready
            (self.run_dir / f"{name}.ready").unlink(missing_ok=True)
        env = os.environ | settings_env(self.settings.model_copy(update={"run_dir": self.run_dir}))
        plan = self._plan()
        for component in plan:
            if component.port is not None and port_open("127.0.0.1", component.port[0]):
                port, setting = component.port
                raise StackError(
                    f"{component.name}: port {port} is already in use; stop what holds it or set {setting}"
                )
        try:
            if self.settings.redis_url is not None:
                self._seed_masterdata()
            for component in plan:
                if component.name == "worker" and self.ray_nodes():
                    self._start_ray_cluster()
                if component.name.startswith("worker") and self.ray_cluster is not None:
                    component.env |= self.ray_cluster.driver_env
                self._start_one(component, env)
                if component.name == "redis":
                    self._seed_masterdata()
        except BaseException:
            self.stop()
            raise

    def _start_ray_cluster(self) -> None:
        s = self.settings
        self.ray_cluster = LocalRayCluster(
            self.ray_nodes(),
            run_dir=self.run_dir,
            num_cpus_per_node=s.ray_num_cpus,
            object_store_memory_mb=s.ray_object_store_memory_mb,
            ready_timeout_s=s.ready_timeout_s,
        )
        address = self.ray_cluster.start()
        log.info("Ray cluster of %d node(s) ready at %s", self.ray_nodes(), address)

    def component(self, name: str) -> Component:
        """Return a running component by name (StackError if there is none)."""
        for component in self.components:
            if component.name == name:
                return component
        raise StackError(f"no component {name!r} in this stack")

    def _seed_masterdata(self) -> None:
        """Load master data when Redis has none: HCSYNC_MASTERDATA_DIR, else (embedded Redis) the demo set."""
        from actors.masterdata import MasterDataStore, seed
        from cluster.masterdata import DEMO_DIR

        s = self.settings
        directory = s.masterdata_dir or (DEMO_DIR if s.redis_url is None else None)
        if directory is None:
            return
        seed(MasterDataStore.from_url(s.redis, s.topic_prefix), directory, by="hcsync stack start")

    def _start_one(self, component: Component, env: dict[str, str]) -> None:
        component.log_path = self.run_dir / f"{component.name}.log"
        with component.log_path.open("ab") as log_file:
            component.process = subprocess.Popen(
                component.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env | component.env,
                cwd=Path.cwd(),
                start_new_session=True,
            )
        self.components.append(component)
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while True:
            code = component.process.poll()
            if code is not None:
                raise StackError(
                    f"{component.name} exited with code {code} before it was ready; see {component.log_path}"
                )
            if component.ready():
                log.info("%s ready (pid %d)", component.name, component.process.pid)
                self._remember_descendants()
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{component.name} not ready after {self.settings.ready_timeout_s:.0f}s "
                    f"(HCSYNC_READY_TIMEOUT_S); see {component.log_path}"
                )
            time.sleep(0.2)

    def _remember_descendants(self) -> None:
        for component in self.components:
            if component.process is None:
                continue
            try:
                root = psutil.Process(component.process.pid)
                for proc in [root, *root.children(recursive=True)]:
                    self._seen[proc.pid] = proc
            except psutil.NoSuchProcess:
                continue

    def pids(self) -> list[int]:
        """Return the pids of every process of the stack seen so far (the local Ray cluster's included)."""
        self._remember_descendants()
        ray_pids = self.ray_cluster.pids() if self.ray_cluster is not None else []
        return sorted(set(self._seen) | set(ray_pids))

    def check(self) -> list[str]:
        """Return the names of components whose process has exited."""
        return [c.name for c in self.components if c.process is not None and c.process.poll() is not None]

    def stop(self) -> None:
        """Stop every component in reverse order; kill whatever does not stop in time."""
        self._remember_descendants()
        for component in reversed(self.components):
            proc = component.process
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=self.settings.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s did not stop in %.0fs; killing it", component.name, self.settings.stop_timeout_s
                )
                with gone_ok():
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            with gone_ok():
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group
        kill_survivors(self._seen.values())
        self.components.clear()
        if self.ray_cluster is not None:  # after the workers, its drivers
            self.ray_cluster.stop()
            self.ray_cluster = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
