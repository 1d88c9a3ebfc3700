"""The embedded stack: broker, Redis, the gRPC adapters, the forwarder, the MLLP gateway and the workers,
supervised.

Each component is a child process in its own session, with a readiness check and a log file in the run
directory. :meth:`Stack.start` starts them in order, each once the previous one is ready, then a
supervisor thread watches them:

- A component that dies is restarted after a back-off that doubles with each recent restart
  (``HCSYNC_RESTART_BACKOFF_S`` up to ``HCSYNC_RESTART_BACKOFF_MAX_S``). One that dies
  ``HCSYNC_RESTART_MAX`` times within ``HCSYNC_RESTART_WINDOW_S`` is reported failed and left alone. What a
  dead component leaves behind (its session: Ray's processes under a worker) is killed before it restarts.
- Nothing else is stopped because one part died. Only the embedded broker's death reaches further: it
  kept every record in memory, so the workers (whose tables and offsets lived there) are stopped at once,
  and once a new broker is ready the message store starts a new forwarding epoch, so the forwarder replays
  every stored message into it, and the workers start again and rebuild from that replay. The idempotent
  sinks keep the postings as they were.
- Redis keeps its data in an append-only file in the run directory, so a restarted Redis has its master
  data and counters back (the last second of writes may be lost); master data is seeded again if missing.
- A local Ray cluster the stack started (``HCSYNC_RAY_LOCAL_NODES``, or several workers) is restarted
  whole when one of its nodes dies, and the workers with it.

gRPC between the workers and the adapters is TLS with client certificates and bearer tokens: unless the
``grpc_*`` settings name a deployment's own files (or ``grpc_insecure`` is set), the stack makes a CA,
server and client certificates, a signing key and one token per caller in ``<run dir>/grpc`` at start
(adapters/credentials.py) and hands each child only its own: the adapters their server certificate and
the public key, the workers a read-write token, and commands beside the stack find the read-only one.

The supervisor writes what it knows of every component (state, restarts, last exit) to
``supervisor.json`` in the run directory, which ``hcsync status`` shows.

Stopping drains in order: the MLLP gateway stops accepting first, then the forwarder, then the workers
commit and stop, then the adapters and Redis, the broker last. Each gets SIGTERM and
``HCSYNC_STOP_TIMEOUT_S`` before SIGKILL; then anything left of any component is killed, so no orphan
survives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil
import redis
from pydantic import SecretStr

from adapters.credentials import READER, WORKER, issue_local
from adapters.inbound.store import MessageStore
from adapters.security import LOCAL_CREDENTIALS_DIR
from canonical.errors import ConfigurationError, StackError
from cluster.binaries import redis_binary, tansu_binary
from cluster.raycluster import LocalRayCluster
from cluster.supervision import (
    ComponentStatus,
    ExitRecord,
    RestartPolicy,
    State,
    SupervisorStatus,
    describe_exit,
    write_status,
)
from foundation.kafka import ensure_topics
from foundation.processes import alive, gone_ok, kill_survivors, port_open, session_members
from foundation.settings import Settings

log = logging.getLogger(__name__)

_TICK_S = 0.25
_REMEMBER_EVERY_S = 5.0
_STATUS_EVERY_S = 1.0
# Stop order: gateways first, then the forwarder and the workers, then the services, the broker last.
_STOP_FIRST = ("mllp", "inbox", "forwarder")
_STOP_LAST = ("billing", "erp", "payer", "redis", "broker")


def worker_names(count: int) -> list[str]:
    """The names of the stack's workers: worker, worker-2, worker-3..."""
    return ["worker", *(f"worker-{n}" for n in range(2, count + 1))]


def settings_env(settings: Settings) -> dict[str, str]:
    """Render settings as HCSYNC_* environment variables for child processes."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):
            # model_dump masks secrets as "**********"; children need the value itself.
            value = secret.get_secret_value()
        # pydantic-settings reads complex fields (lists) from the environment as JSON.
        env[f"HCSYNC_{name.upper()}"] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return env


# The settings that say a deployment brought its own gRPC credentials: then the stack makes none.
_GRPC_FILE_SETTINGS = (
    "grpc_ca_file",
    "grpc_server_cert_file",
    "grpc_client_cert_file",
    "grpc_token_file",
    "grpc_token_public_key_file",
)


def _as_env(fields: dict[str, object]) -> dict[str, str]:
    return {f"HCSYNC_{name.upper()}": str(value) for name, value in fields.items()}


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(slots=True, eq=False)
class Component:
    """One child process of the stack, and what the supervisor knows of it."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    port: tuple[int, str] | None = None  # (port, setting) that must be free before the first start
    env: dict[str, str] = field(default_factory=dict)
    ready_file: Path | None = None  # written by the process once ready; removed before every start
    requires: tuple[str, ...] = ()  # restarted only while these run
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    state: State = State.STOPPED
    since: str = ""
    started_at: float = 0.0
    restarts: int = 0
    restart_times: list[float] = field(default_factory=list)
    restart_at: float = 0.0
    ready_deadline: float = 0.0
    last_exit: ExitRecord | None = None
    detail: str = ""
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def status(self) -> ComponentStatus:
        running = self.process is not None and self.process.poll() is None
        return ComponentStatus(
            name=self.name,
            state=self.state.value,
            pid=self.process.pid if running and self.process is not None else None,
            restarts=self.restarts,
            since=self.since,
            last_exit=self.last_exit,
            detail=self.detail,
        )


@dataclass(slots=True)
class _RayRecord:
    """The supervisor's view of a local Ray cluster the stack started."""

    state: State = State.STOPPED
    since: str = ""
    restarts: int = 0
    restart_times: list[float] = field(default_factory=list)
    last_exit: ExitRecord | None = None
    detail: str = ""


class Stack:
    """Start, supervise and stop the embedded components for one run directory."""

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.components: list[Component] = []
        self.started_at = 0.0
        self.ray_cluster: LocalRayCluster | None = None
        self.policy = RestartPolicy.from_settings(settings)
        # What `hcsync up` prints: one line per supervision event.
        self.events: queue.Queue[str] = queue.Queue()
        self._held: list[Component] = []
        self._ray = _RayRecord()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._env: dict[str, str] = {}
        # Per component (billing, erp, worker) the gRPC settings it gets on top of the stack's.
        self._grpc_env: dict[str, dict[str, str]] = {}
        # The settings the stack's own readiness probes dial the adapters with.
        self._probe_settings = settings
        self._last_remember = 0.0
        self._last_status = 0.0
        self._dirty = False  # a state changed since the status file was written

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
                        # An append-only file in the run directory: a restarted Redis has its data back.
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "everysec",
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
                    env=dict(self._grpc_env.get("billing", {})),
                )
            )
        if s.erp_target is None:
            plan.append(
                Component(
                    "erp",
                    self._python("serve", "erp"),
                    ready=self._grpc_ready("erp"),
                    port=(s.erp_port, "HCSYNC_ERP_PORT"),
                    env=dict(self._grpc_env.get("erp", {})),
                )
            )
        if s.payer_target is None:
            plan.append(
                Component(
                    "payer",
                    self._python("serve", "payer"),
                    ready=self._grpc_ready("payer"),
                    port=(s.payer_port, "HCSYNC_PAYER_PORT"),
                    env=dict(self._grpc_env.get("payer", {})),
                )
            )
        forwarder_ready = self.run_dir / "forwarder.ready"
        plan.append(
            Component(
                "forwarder",
                self._python("forwarder"),
                ready=forwarder_ready.exists,
                ready_file=forwarder_ready,
                requires=("broker",) if s.embedded_broker else (),
            )
        )
        inbox_ready = self.run_dir / "inbox.ready"
        plan.append(
            Component("inbox", self._python("inbox"), ready=inbox_ready.exists, ready_file=inbox_ready)
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
            ready_file = self.run_dir / f"{name}.ready"
            plan.append(
                Component(
                    name,
                    self._python("worker"),
                    ready=ready_file.exists,
                    env={"HCSYNC_WORKER_NAME": name, **self._grpc_env.get("worker", {})},
                    ready_file=ready_file,
                    requires=("broker",) if s.embedded_broker else (),
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

            return probe(service, self._probe_settings)

        return check

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, *, hold_workers: bool = False) -> None:
        """Start every component in order, each once the previous one is ready; then supervise them.

        ``hold_workers`` leaves the workers for :meth:`start_workers` (a backlog can then be written with
        nothing consuming it).
        """
        self.started_at = time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._env = os.environ | settings_env(self.settings.model_copy(update={"run_dir": self.run_dir}))
        self._secure_grpc()
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
                if component.name.startswith("worker") and hold_workers:
                    self._held.append(component)
                    continue
                self._start_blocking(component)
            self._supervise()
        except BaseException:
            self.stop()
            raise

    def _secure_grpc(self) -> None:
        """Make this run's gRPC credentials, unless configured; decide what each child gets."""
        s = self.settings
        if s.grpc_insecure or any(getattr(s, name) is not None for name in _GRPC_FILE_SETTINGS):
            return  # a developer's plaintext, or a deployment's own files: every child has the settings
        if s.billing_target or s.erp_target:
            raise ConfigurationError(
                "the workers call remote adapters (HCSYNC_BILLING_TARGET / HCSYNC_ERP_TARGET): give them "
                "their credentials with HCSYNC_GRPC_CA_FILE and HCSYNC_GRPC_TOKEN_FILE (and "
                "HCSYNC_GRPC_CLIENT_CERT_FILE / HCSYNC_GRPC_CLIENT_KEY_FILE for mutual TLS)"
            )
        local = issue_local(
            self.run_dir / LOCAL_CREDENTIALS_DIR, hosts=[s.grpc_host], issuer=s.grpc_token_issuer
        )
        self._grpc_env = {
            "billing": _as_env(local.server_settings("billing")),
            "erp": _as_env(local.server_settings("erp")),
            "payer": _as_env(local.server_settings("payer")),
            "worker": _as_env(local.client_settings(WORKER)),
        }
        self._probe_settings = local.apply(s, **local.client_settings(READER))
        log.info("gRPC: TLS with client certificates and bearer tokens, credentials in %s", local.directory)

    def start_workers(self) -> float:
        """Start the held-back worker(s) and wait until ready; return the wall-clock time they were ready."""
        launched = time.time()
        with self._lock:
            held, self._held = self._held, []
        for component in held:
            self._start_blocking(component)
        # The ready file is written once Faust has its partitions and recovered its table; its mtime is
        # the moment the worker could first consume.
        marks = [
            c.ready_file.stat().st_mtime
            for c in held
            if c.ready_file is not None and c.ready_file.exists() and c.ready_file.stat().st_mtime >= launched
        ]
        return max(marks) if marks else time.time()

    def _start_blocking(self, component: Component) -> None:
        """Launch a component and wait until it is ready (the first start: a failure is fatal)."""
        if component.name.startswith("worker"):
            self._join_ray(component)
        with self._lock:
            self.components.append(component)
            self._launch(component)
        deadline = time.monotonic() + self.settings.ready_timeout_s
        assert component.process is not None
        while True:
            code = component.process.poll()
            if code is not None:
                raise StackError(
                    f"{component.name} {describe_exit(code)} before it was ready; see {component.log_path}"
                )
            if self._is_ready(component):
                with self._lock:
                    self._set(component, State.RUNNING)
                log.info("%s ready (pid %d)", component.name, component.process.pid)
                if component.name == "redis":
                    self._seed_masterdata()
                self._remember(component)
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{component.name} not ready after {self.settings.ready_timeout_s:.0f}s "
                    f"(HCSYNC_READY_TIMEOUT_S); see {component.log_path}"
                )
            time.sleep(0.2)

    def _join_ray(self, component: Component) -> None:
        """Start the local Ray cluster before the first worker that needs it; point the worker at it."""
        if self.ray_nodes() and self.ray_cluster is None:
            self._start_ray_cluster()
        if self.ray_cluster is not None:
            component.env |= self.ray_cluster.driver_env

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
        self._ray.state, self._ray.since = State.RUNNING, _utc_now()
        log.info("Ray cluster of %d node(s) ready at %s", self.ray_nodes(), address)

    def _launch(self, component: Component) -> None:
        """Start a component's process (not waiting for it); caller holds the lock."""
        if component.ready_file is not None:
            component.ready_file.unlink(missing_ok=True)  # a previous run's file must not look ready
        component.log_path = self.run_dir / f"{component.name}.log"
        with component.log_path.open("ab") as log_file:
            component.process = subprocess.Popen(
                component.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env | component.env,
                cwd=Path.cwd(),
                start_new_session=True,
            )
        component.started_at = time.monotonic()
        component.ready_deadline = component.started_at + self.settings.ready_timeout_s
        component.seen = {}
        self._set(component, State.STARTING)

    def _is_ready(self, component: Component) -> bool:
        try:
            return component.ready()
        except Exception as exc:  # a readiness probe must never kill the supervisor
            log.debug("%s readiness check failed: %s", component.name, exc)
            return False

    def _set(self, component: Component, state: State, detail: str = "") -> None:
        component.state = state
        component.since = _utc_now()
        component.detail = detail
        self._dirty = True

    def component(self, name: str) -> Component:
        """Return a component by name (StackError if there is none)."""
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

    # -- supervision ------------------------------------------------------------------------------
    def _supervise(self) -> None:
        self._write_status()
        self._thread = threading.Thread(target=self._run_supervisor, name="hcsync-supervisor", daemon=True)
        self._thread.start()

    def _run_supervisor(self) -> None:
        while not self._stopping.wait(_TICK_S):
            try:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self.tick()
            except Exception:  # the supervisor must outlive any one bad tick
                log.exception("supervisor tick failed")

    def tick(self) -> None:
        """Check every component once: notice exits, finish (re)starts, restart what is due."""
        now = time.monotonic()
        self._check_ray(now)
        for component in list(self.components):
            self._tick_one(component, now)
        if now - self._last_remember > _REMEMBER_EVERY_S:
            self._last_remember = now
            for component in self.components:
                self._remember(component)
        if self._dirty or now - self._last_status > _STATUS_EVERY_S:
            self._write_status()

    def _tick_one(self, component: Component, now: float) -> None:
        proc = component.process
        code = proc.poll() if proc is not None else None
        if component.state in (State.STARTING, State.RUNNING) and proc is not None and code is not None:
            self._exited(component, code, describe_exit(code), now)
        elif component.state is State.STARTING:
            if self._is_ready(component):
                self._set(component, State.RUNNING)
                self._event(f"{component.name} running again (pid {proc.pid if proc else '?'})")
                self._remember(component)
                self._after_restart(component)
            elif now > component.ready_deadline:
                self._kill(component)
                reason = f"not ready after {self.settings.ready_timeout_s:.0f}s (HCSYNC_READY_TIMEOUT_S)"
                self._exited(component, None, reason, now)
        elif component.state is State.RESTARTING and now >= component.restart_at:
            waiting = [name for name in component.requires if not self._running(name)]
            if component.name.startswith("worker") and self._ray.state is State.RESTARTING:
                waiting.append("ray")
            if waiting:
                component.detail = f"waiting for {', '.join(waiting)}"
                return
            component.restarts += 1
            self._launch(component)
            self._event(f"{component.name} restarting (restart {component.restarts})")

    def _running(self, name: str) -> bool:
        return any(c.name == name and c.state is State.RUNNING for c in self.components)

    def _exited(self, component: Component, code: int | None, reason: str, now: float) -> None:
        """Record an exit, clean up after it, and schedule the restart (or give up)."""
        uptime = now - component.started_at
        component.last_exit = ExitRecord(code=code, reason=reason, at=_utc_now(), uptime_s=round(uptime, 1))
        self._kill(component)
        if component.name == "broker":
            # Its records, the workers' tables and offsets are gone: stop what uses it until it is back.
            self._hold(
                lambda c: "broker" in c.requires, "the broker was lost (it keeps every record in memory)"
            )
        delay = self.policy.next_delay(component.restart_times, now)
        if delay is None:
            recent = len(self.policy.recent(component.restart_times, now))
            detail = (
                f"{reason}; {recent} restarts within {self.policy.window_s:.0f}s (HCSYNC_RESTART_MAX, "
                "HCSYNC_RESTART_WINDOW_S): not restarted"
            )
            self._set(component, State.FAILED, detail)
            log.error("%s %s; it failed too often and is not restarted", component.name, reason)
            self._event(f"{component.name} FAILED: {detail}; see {component.log_path}")
            return
        component.restart_times.append(now)
        component.restart_at = now + delay
        self._set(component, State.RESTARTING, f"{reason}; restart in {delay:.1f}s")
        log.warning("%s %s after %.1fs; restarting in %.1fs", component.name, reason, uptime, delay)
        self._event(f"{component.name} {reason}; restarting in {delay:.1f}s")

    def _hold(self, which: Callable[[Component], bool], why: str) -> None:
        """Stop components at once (not counted as their failure); they restart once what they need runs."""
        for worker in self.components:
            if not which(worker) or worker.state in (State.FAILED, State.STOPPED):
                continue
            if worker.process is not None and worker.process.poll() is None:
                worker.last_exit = ExitRecord(
                    code=None,
                    reason=f"stopped: {why}",
                    at=_utc_now(),
                    uptime_s=round(time.monotonic() - worker.started_at, 1),
                )
            self._kill(worker)
            worker.restart_at = 0.0
            self._set(worker, State.RESTARTING, f"stopped: {why}")
            self._event(f"{worker.name} stopped: {why}")

    def _after_restart(self, component: Component) -> None:
        """What a component's restart entails beyond itself."""
        if component.name == "broker":
            # The new broker holds nothing: replay every stored message into it.
            store = MessageStore.from_settings(self.settings.model_copy(update={"run_dir": self.run_dir}))
            try:
                epoch = store.new_epoch("the embedded broker was restarted and lost every record")
                pending = store.totals()["pending"]
            finally:
                store.close()
            log.warning("broker restarted: forwarding epoch %d replays %d stored message(s)", epoch, pending)
            self._event(f"broker restarted: replaying {pending} stored message(s) into it (epoch {epoch})")
        elif component.name == "redis":
            try:
                self._seed_masterdata()
            except Exception as exc:
                log.error("master data not seeded again after the Redis restart (%s)", exc)

    def _check_ray(self, now: float) -> None:
        """Restart a local Ray cluster (and the workers with it) when one of its nodes died."""
        cluster = self.ray_cluster
        if cluster is None or self._ray.state is not State.RUNNING:
            return
        reason = cluster.exited()
        if reason is None:
            return
        self._ray.last_exit = ExitRecord(code=None, reason=reason, at=_utc_now(), uptime_s=0.0)
        delay = self.policy.next_delay(self._ray.restart_times, now)
        self._hold(lambda c: c.name.startswith("worker"), f"the Ray cluster was lost ({reason})")
        if delay is None:
            self._ray.state, self._ray.since = State.FAILED, _utc_now()
            self._ray.detail = f"{reason}: failed too often, not restarted"
            self._event(f"ray FAILED: {self._ray.detail}")
            return
        self._ray.restart_times.append(now)
        self._ray.state, self._ray.since = State.RESTARTING, _utc_now()
        self._event(f"ray: {reason}; restarting the local Ray cluster")
        try:
            address = cluster.restart()  # blocking: nothing else runs on Ray meanwhile
        except Exception as exc:
            self._ray.state, self._ray.since = State.FAILED, _utc_now()
            self._ray.detail = f"restart failed: {exc}"
            self._event(f"ray FAILED: {self._ray.detail}")
            return
        self._ray.restarts += 1
        self._ray.state, self._ray.since, self._ray.detail = State.RUNNING, _utc_now(), ""
        for worker in self.components:
            if worker.name.startswith("worker"):
                worker.env |= cluster.driver_env
        self._event(f"ray running again at {address}")

    def _kill(self, component: Component) -> None:
        """Kill a component's process group, its session and everything seen below it."""
        proc = component.process
        if proc is not None:
            with gone_ok():
                os.killpg(proc.pid, signal.SIGKILL)
            leftovers = session_members(proc.pid)
            kill_survivors([*component.seen.values(), *leftovers], timeout_s=5.0)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("%s (pid %d) survived SIGKILL", component.name, proc.pid)
        component.seen = {}

    def _remember(self, component: Component) -> None:
        """Record every live process of a component: below its process, or in its session (daemons that
        left the tree, such as Ray's, stay in the session)."""
        proc = component.process
        if proc is None or proc.poll() is not None:
            return
        found = session_members(proc.pid)
        try:
            root = psutil.Process(proc.pid)
            found += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for child in found:
            known = component.seen.get(child.pid)
            if known is None or not alive(known):
                component.seen[child.pid] = child

    def _event(self, text: str) -> None:
        self.events.put(text)

    def statuses(self) -> list[ComponentStatus]:
        """Return what the supervisor knows of every component (a local Ray cluster as "ray")."""
        with self._lock:
            out = [c.status() for c in self.components]
            out += [
                ComponentStatus(name=c.name, state="held", pid=None, restarts=0, since="", detail="held back")
                for c in self._held
            ]
            if self.ray_cluster is not None:
                out.append(
                    ComponentStatus(
                        name="ray",
                        state=self._ray.state.value,
                        pid=None,
                        restarts=self._ray.restarts,
                        since=self._ray.since,
                        last_exit=self._ray.last_exit,
                        detail=self._ray.detail,
                    )
                )
        return out

    def _write_status(self) -> None:
        self._last_status = time.monotonic()
        self._dirty = False
        status = SupervisorStatus(
            pid=os.getpid(), updated_at=_utc_now(), run_dir=str(self.run_dir), components=self.statuses()
        )
        try:
            write_status(self.run_dir, status)
        except OSError as exc:
            log.warning("supervisor status not written (%s)", exc)

    def check(self) -> list[str]:
        """Return the names of components not running right now (exited, restarting or failed)."""
        with self._lock:
            return [c.name for c in self.components if c.state is not State.RUNNING]

    def failed(self) -> list[str]:
        """Return the names of components the supervisor gave up on."""
        with self._lock:
            return [c.name for c in self.components if c.state is State.FAILED]

    def pids(self) -> list[int]:
        """Return the pids of every process of the stack seen so far (the local Ray cluster's included)."""
        with self._lock:
            for component in self.components:
                self._remember(component)
            ours = {pid for c in self.components for pid in c.seen}
        ray_pids = self.ray_cluster.pids() if self.ray_cluster is not None else []
        return sorted(ours | set(ray_pids))

    # -- stopping ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop supervising, then stop every component in drain order; kill whatever does not stop."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._lock:
            for component in self.components:
                self._remember(component)
            names = [c.name for c in self.components]
            first = [n for n in _STOP_FIRST if n in names]
            last = [n for n in _STOP_LAST if n in names]
            middle = [n for n in names if n not in first and n not in last]  # the workers
            seen = [proc for c in self.components for proc in c.seen.values()]
            for name in [*first, *middle]:
                self._stop_one(self.component(name))
            if self.ray_cluster is not None:  # after the workers, its drivers
                self.ray_cluster.stop()
                self.ray_cluster = None
            for name in last:
                self._stop_one(self.component(name))
            kill_survivors(seen)
            for component in self.components:
                if component.process is not None:
                    with gone_ok():
                        kill_survivors(session_members(component.process.pid))
            self._write_status()
            self.components.clear()
            self._held.clear()

    def _stop_one(self, component: Component) -> None:
        proc = component.process
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            else:
                try:
                    proc.wait(timeout=self.settings.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "%s did not stop in %.0fs; killing it", component.name, self.settings.stop_timeout_s
                    )
            with gone_ok():
                os.killpg(proc.pid, signal.SIGKILL)  # it, or leftovers of its group
            proc.wait(timeout=10)
        self._set(component, State.STOPPED)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
