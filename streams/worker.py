"""The worker process: Ray first, then the transform pool, then the Faust worker.

Ray must be initialised before Faust starts: inside a running Faust worker ``ray.init`` fails because
mode replaces stderr and Ray's faulthandler needs a real file number.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
import redis.asyncio as aioredis
from faust.worker import Worker

from actors.autoscale import AutoscalePolicy
from actors.masterdata import MasterDataStore, seed
from actors.pool import TransformPool
from actors.scaling import ScaleSignals
from adapters.clients import BillingClient, ErpClient, PayerClient
from adapters.erp.masterdata import governed_masterdata
from adapters.inbound.store import MessageStore
from adapters.inbound.x12 import store_interchanges
from canonical.x12.maps import nearest_maps
from foundation.logmask import mask_all_handlers
from foundation.settings import Settings
from foundation.topics import TopicNames
from streams.app import Runtime, build_app
from streams.dispatch import BillingDispatcher, ErpDispatcher
from streams.posting import PostingRules
from streams.quarantine_store import QuarantineStore, default_quarantine_url
from streams.revenue import ControlNumbers, RevenueDispatcher
from streams.scaling import PoolController
from streams.stats import Stats

log = logging.getLogger(__name__)


class _ReadyWorker(Worker):
    """A Faust worker that writes a ready file once every agent is running and tables are recovered."""

    def __init__(self, *args: Any, ready_file: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready_file = ready_file

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        mask_all_handlers()  # Faust replaced the root's handlers (only with override_logging)

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        mask_all_handlers()  # handlers Ray, Faust or aiokafka added since cluster.cli installed logging
        self._ready_file.write_text("ready\n")
        log.info("worker ready")


def init_ray(settings: Settings, run_dir: Path | None = None) -> None:
    """Connect to the Ray cluster named by settings (or RAY_ADDRESS), else start a local one.

    Ray keeps its logs in its own session directory (its socket paths must stay short); a ``ray`` link in
    the run directory points there so one folder still holds every log of the run.
    """
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "namespace": f"{settings.topic_prefix}hcsync",
        "log_to_driver": False,
        "include_dashboard": False,
    }
    if settings.ray_address:
        # Joining a cluster: its size is the cluster's, so no num_cpus or memory here.
        context = ray.init(address=settings.ray_address, **kwargs)
    else:
        # settings.ray_address already reads RAY_ADDRESS, so "local" cannot be overridden behind our back.
        context = ray.init(
            address="local",
            num_cpus=settings.ray_num_cpus,
            object_store_memory=settings.ray_object_store_memory_mb * 1024 * 1024,
            **kwargs,
        )
    # A ray:// client context has no local session directory.
    address_info: dict[str, Any] = getattr(context, "address_info", {})
    session_dir = address_info.get("session_dir")
    if run_dir is not None and session_dir:
        link = run_dir / "ray"
        link.unlink(missing_ok=True)
        link.symlink_to(session_dir, target_is_directory=True)


def autoscale_policy(settings: Settings) -> AutoscalePolicy:
    """The pool's bounds, thresholds and cool-downs from settings."""
    return AutoscalePolicy(
        min_replicas=settings.transform_min_replicas,
        max_replicas=settings.transform_max_replicas,
        lag_per_replica=settings.autoscale_lag_per_replica,
        saturation=settings.autoscale_saturation,
        window_s=settings.autoscale_window_s,
        up_cooldown_s=settings.autoscale_up_cooldown_s,
        down_cooldown_s=settings.autoscale_down_cooldown_s,
        max_cpu_share=settings.autoscale_max_cpu_share,
        routing_share=settings.autoscale_routing_share,
    )


def run_worker(settings: Settings, run_dir: Path) -> int:
    """Run the worker until it is told to stop; return the exit code."""
    if settings.masterdata_dir is not None:
        # A deployment's own set, loaded only when Redis has none (never replacing a version in force).
        seed(
            MasterDataStore.from_url(settings.redis, settings.topic_prefix),
            settings.masterdata_dir,
            by="worker",
        )
    init_ray(settings, run_dir)
    pool = TransformPool(
        settings.transform_replicas, redis_url=settings.redis, key_prefix=settings.topic_prefix
    )
    nodes = pool.wait_ready(timeout_s=settings.ready_timeout_s)
    log.info("transform pool ready: %d replicas on nodes %s", pool.replicas, sorted(set(nodes)))
    # The Faust worker runs on this loop; create the async clients on it.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    redis_client = aioredis.Redis.from_url(settings.redis)
    namespace = f"{settings.topic_prefix}{settings.app_id}:"  # idempotency keys of this deployment only
    # What the payer answers on a call (271, 999, TA1) is stored like any inbound X12 and read by the
    # X12 ingest; the message store is the one the forwarder reads.
    store = MessageStore.from_settings(settings.model_copy(update={"run_dir": run_dir}))

    async def store_answers(answers: Sequence[bytes]) -> None:
        await asyncio.to_thread(store_interchanges, store, list(answers), "payer")

    maps = nearest_maps(settings.x12_maps_dir)
    billing_client = BillingClient(settings)
    revenue = RevenueDispatcher(
        settings,
        billing_client,
        PayerClient(settings),
        redis_client,
        namespace,
        store_answers=store_answers,
        masterdata=governed_masterdata(settings),
        map_path=maps,
    )
    runtime = Runtime(
        settings=settings,
        pool=pool,
        billing=BillingDispatcher(billing_client, redis_client, namespace),
        erp=ErpDispatcher(ErpClient(settings), redis_client, namespace, settings.currency),
        stats=Stats(redis_client, settings.topic_prefix),
        quarantine=QuarantineStore(default_quarantine_url(settings.model_copy(update={"run_dir": run_dir}))),
        scaling=PoolController(
            pool,
            ScaleSignals.from_url(settings.redis, settings.topic_prefix),
            worker=f"{socket.gethostname()}:{os.getpid()}:{settings.worker_name}",
            policy=autoscale_policy(settings),
            autoscale=settings.transform_autoscale,
            topics=TopicNames(settings.topic_prefix),
        ),
        rules=PostingRules(
            encounter_ref_key=settings.encounter_ref_key.get_secret_value().encode(),
            encounter_ref_key_id=settings.encounter_ref_key_id,
            currency=settings.currency,
        ),
        revenue=revenue,
        control_numbers=ControlNumbers(redis_client, namespace),
        outbox=settings.outbox_dir or run_dir / "outbox",
        x12_maps=maps,
    )
    datadir = run_dir / "faust" / settings.worker_name  # one per worker: several may share a run dir
    datadir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings, runtime, datadir=datadir)
    worker = _ReadyWorker(
        app,
        ready_file=run_dir / f"{settings.worker_name}.ready",
        loglevel=settings.log_level,
        loop=loop,
        override_logging=False,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        runtime.quarantine.close()
        store.close()
        pool.shutdown()
        ray.shutdown()
    return 0
