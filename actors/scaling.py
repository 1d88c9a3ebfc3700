"""Scaling signals in Redis: the replica count an SRE asked for, and what each worker's pool runs.

    <p>hcsync:scale:transform:desired      the replicas asked for, per worker pool (`hcsync scale`)
    <p>hcsync:scale:transform:history      list (newest first) of requests: replicas, by, at, reason
    <p>hcsync:scale:transform:worker:<id>  each worker's report (JSON, expires when the worker is gone)

A worker applies the desired count to its own pool (each Faust worker process holds one pool), so with
several workers the actors in the cluster are workers x replicas. Reports expire after ``REPORT_TTL_S``, so
a dead worker disappears from `hcsync status` by itself.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

REPORT_TTL_S = 15
HISTORY_KEEP = 100


@dataclass(frozen=True, slots=True)
class PoolReport:
    """What one worker's transform pool runs, as it last said."""

    worker: str
    replicas: int
    desired: int
    in_flight: int
    nodes: list[str] = field(default_factory=list)
    at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


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

    def desired(self) -> int | None:
        """Return the replicas asked for, None when nobody asked (the worker keeps its configured size)."""
        value = self._redis.get(self._base + "desired")
        return None if value is None else int(_text(value))

    def request(self, replicas: int, *, by: str, reason: str) -> None:
        """Ask every worker's pool to run ``replicas`` actors, and record who asked and why."""
        entry = {"replicas": replicas, "by": by, "reason": reason, "at": dt.datetime.now(dt.UTC).isoformat()}
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._base + "desired", replicas)
        pipe.lpush(self._base + "history", json.dumps(entry))
        pipe.ltrim(self._base + "history", 0, HISTORY_KEEP - 1)
        pipe.execute()

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
                out.append(PoolReport(**json.loads(_text(value))))
        return sorted(out, key=lambda r: r.worker)


__all__ = ["REPORT_TTL_S", "PoolReport", "ScaleSignals"]
