"""Scaling signals in Redis: the replica count an SRE asked for, and what each worker's pool runs.

    <p>hcsync:scale:transform:desired      a pinned replica count (`hcsync scale transform --replicas N`),
                                           or "auto" (`--auto`); absent: HCSYNC_TRANSFORM_AUTOSCALE decides
    <p>hcsync:scale:transform:history      list (newest first) of requests and autoscaler decisions:
                                           replicas, by, at, reason
    <p>hcsync:scale:transform:worker:<id>  each worker's report (JSON, expires when the worker is gone)

A worker applies the desired count to its own pool (each Faust worker process holds one pool), so with
several workers the actors in the cluster are workers x replicas. Reports expire after ``REPORT_TTL_S``, so
a dead worker disappears from `hcsync status` by itself.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import redis

REPORT_TTL_S = 15
HISTORY_KEEP = 100
AUTO = "auto"

Wanted = int | Literal["auto"] | None


@dataclass(frozen=True, slots=True)
class PoolReport:
    """What one worker's transform pool runs, as it last said."""

    worker: str
    replicas: int
    desired: int
    in_flight: int
    nodes: list[str] = field(default_factory=list)
    at: str = ""
    mode: str = ""  # "manual" (pinned), "auto" (the autoscaler decides) or "fixed" (the configured size)
    lag: int = 0  # raw-topic records of this worker's partitions not yet committed
    saturation: float = 0.0  # share of the last tick the pool spent at its in-flight bound
    pending_batches: int = 0  # batches the ingest pipeline has taken and not yet routed
    cpu_share: float = 0.0  # share of the worker host's CPU busy over the last tick (all processes)
    stage_lag: dict[str, int] = field(default_factory=dict)  # the stages after the pool: records behind
    hold: str = ""  # why the autoscaler does not grow the pool now, naming the bottleneck ("" when nothing)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


_REPORT_FIELDS = frozenset(PoolReport.__dataclass_fields__)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class ScaleSignals:
    """Read and write the scaling keys of one deployment."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self._redis = client
        self._base = f"{prefix}hcsync:scale:transform:"

    @classmethod
    def from_url(cls, url: str, prefix: str = "", timeout_s: float = 5.0) -> ScaleSignals:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, prefix)

    def desired(self) -> Wanted:
        """Return the pinned replica count, "auto", or None when nobody asked (the settings decide)."""
        value = self._redis.get(self._base + "desired")
        if value is None:
            return None
        text = _text(value)
        return "auto" if text == AUTO else int(text)

    def request(self, replicas: int | Literal["auto"], *, by: str, reason: str) -> None:
        """Pin every worker's pool to ``replicas`` actors (or hand it to the autoscaler); record why."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._base + "desired", replicas)
        self._record(pipe, replicas, by=by, reason=reason)
        pipe.execute()

    def record(self, replicas: int, *, by: str, reason: str) -> None:
        """Add an autoscaler's decision to the history (it pins nothing)."""
        pipe = self._redis.pipeline(transaction=True)
        self._record(pipe, replicas, by=by, reason=reason)
        pipe.execute()

    def _record(self, pipe: Any, replicas: int | str, *, by: str, reason: str) -> None:
        entry = {"replicas": replicas, "by": by, "reason": reason, "at": dt.datetime.now(dt.UTC).isoformat()}
        pipe.lpush(self._base + "history", json.dumps(entry))
        pipe.ltrim(self._base + "history", 0, HISTORY_KEEP - 1)

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        return [json.loads(_text(item)) for item in self._redis.lrange(self._base + "history", 0, limit - 1)]

    def report(self, report: PoolReport) -> None:
        """Publish one worker's pool state; it expires unless the worker reports again."""
        self._redis.set(self._base + f"worker:{report.worker}", report.to_json(), ex=REPORT_TTL_S)

    def reports(self) -> list[PoolReport]:
        """Return the live workers' reports, sorted by worker."""
        out = []
        for key in self._redis.scan_iter(match=self._base + "worker:*"):
            value = self._redis.get(key)
            if value is not None:
                doc = json.loads(_text(value))
                # A worker of another version may report fields this one does not know: ignore them.
                out.append(PoolReport(**{k: v for k, v in doc.items() if k in _REPORT_FIELDS}))
        return sorted(out, key=lambda r: r.worker)


__all__ = ["AUTO", "REPORT_TTL_S", "PoolReport", "ScaleSignals", "Wanted"]
