"""Master data in Redis: versioned, loaded atomically, read by the transform actors without a restart.

Keys (``<p>`` is the deployment's topic prefix):

    <p>hcsync:md:set:<version>    the whole set as JSON (immutable once loaded)
    <p>hcsync:md:meta:<version>   hash: digest, loaded_at, loaded_by, counts
    <p>hcsync:md:current          the version in force
    <p>hcsync:md:history          list (newest first) of activations: version, digest, at, by, previous

A load writes the set, its metadata and the new ``current`` in one MULTI/EXEC transaction: a reader sees
the old version or the new one, never a half-loaded set. A version's content is immutable: loading the
same version with different content is refused (bump the version in manifest.yaml); loading a version
whose set was lost (evicted or flushed) writes it again. Readers check ``current`` before each batch and
re-read the set only when it changed. Run Redis with ``maxmemory-policy noeviction`` (or a memory limit
that master data never meets): an evicted set stops enrichment until it is loaded again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from pydantic import ValidationError

from canonical.errors import ConfigurationError, RetryableError
from canonical.reference import MasterDataSet
from canonical.reference_files import read_set

log = logging.getLogger(__name__)

HISTORY_KEEP = 100


class MasterDataUnavailable(RetryableError):
    """No master-data version is loaded yet, or Redis cannot be read: enrichment waits and retries."""


class MasterDataConflict(ConfigurationError):
    """A load would change the content of a version already loaded."""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What Redis knows about one loaded version."""

    version: str
    digest: str
    loaded_at: str
    loaded_by: str
    counts: dict[str, int]
    current: bool


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The outcome of a load: whether anything changed, and the versions before and after."""

    version: str
    digest: str
    previous: str | None
    changed: bool


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class MasterDataStore:
    """Read and write master-data versions in one Redis database."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self._redis = client
        self._base = f"{prefix}hcsync:md:"

    @classmethod
    def from_url(cls, url: str, prefix: str = "", timeout_s: float = 5.0) -> MasterDataStore:
        return cls(
            redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s), prefix
        )

    def _key(self, *parts: str) -> str:
        return self._base + ":".join(parts)

    def current_version(self) -> str | None:
        value = self._redis.get(self._key("current"))
        return None if value is None else _text(value)

    def get(self, version: str) -> MasterDataSet | None:
        """Return a loaded version, or None."""
        blob = self._redis.get(self._key("set", version))
        return None if blob is None else MasterDataSet.model_validate_json(blob)

    def current(self) -> MasterDataSet | None:
        version = self.current_version()
        return None if version is None else self.get(version)

    def load(self, data: MasterDataSet, *, loaded_by: str) -> LoadResult:
        """Make ``data`` the current version, atomically. The set must already be free of problems."""
        problems = data.problems()
        if problems:
            raise ConfigurationError(f"master data {data.version} is inconsistent: {problems[0].describe()}")
        version, digest = data.version, data.digest()
        blob = data.model_dump_json()
        meta_key, set_key, current_key = (
            self._key("meta", version),
            self._key("set", version),
            self._key("current"),
        )
        outcome: dict[str, Any] = {}

        def write(pipe: Any) -> None:
            known = pipe.hget(meta_key, "digest")
            if known is not None and _text(known) != digest:
                raise MasterDataConflict(
                    f"master data version {version} is already loaded with different content "
                    f"(digest {_text(known)[:12]}, this set {digest[:12]}); give the new set a new version "
                    "in manifest.yaml"
                )
            before = pipe.get(current_key)
            previous = None if before is None else _text(before)
            has_set = bool(pipe.exists(set_key))
            outcome["previous"] = previous
            outcome["changed"] = previous != version
            if previous == version and has_set:
                return
            now = dt.datetime.now(dt.UTC).isoformat()
            pipe.multi()
            if not has_set:
                # A new version, or one whose set was lost (evicted, flushed): the same content again.
                pipe.set(set_key, blob)
            if known is None:
                pipe.hset(
                    meta_key,
                    mapping={
                        "digest": digest,
                        "loaded_at": now,
                        "loaded_by": loaded_by,
                        "counts": json.dumps(data.counts()),
                    },
                )
            if previous == version:
                return  # only the lost set was restored
            pipe.set(current_key, version)
            entry = {"version": version, "digest": digest, "at": now, "by": loaded_by, "previous": previous}
            pipe.lpush(self._key("history"), json.dumps(entry))
            pipe.ltrim(self._key("history"), 0, HISTORY_KEEP - 1)

        self._redis.transaction(write, meta_key, current_key, set_key)
        return LoadResult(version, digest, outcome.get("previous"), bool(outcome.get("changed")))

    def activate(self, version: str, *, by: str) -> LoadResult:
        """Make an already loaded version current again (a rollback), atomically."""
        data = self.get(version)
        if data is None:
            raise ConfigurationError(f"master data version {version} is not loaded; load it first")
        return self.load(data, loaded_by=by)

    def versions(self) -> list[VersionInfo]:
        """Return every loaded version, newest load first."""
        current = self.current_version()
        out = []
        for key in self._redis.scan_iter(match=self._key("meta", "*")):
            version = _text(key)[len(self._key("meta", "")) :]
            meta = {_text(k): _text(v) for k, v in self._redis.hgetall(key).items()}
            out.append(
                VersionInfo(
                    version=version,
                    digest=meta.get("digest", ""),
                    loaded_at=meta.get("loaded_at", ""),
                    loaded_by=meta.get("loaded_by", ""),
                    counts=json.loads(meta.get("counts", "{}")),
                    current=version == current,
                )
            )
        return sorted(out, key=lambda info: info.loaded_at, reverse=True)

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        """Return the latest activations, newest first."""
        entries: list[dict[str, Any]] = [
            json.loads(_text(item)) for item in self._redis.lrange(self._key("history"), 0, limit - 1)
        ]
        return entries


def seed(store: MasterDataStore, directory: Path, *, by: str) -> LoadResult | None:
    """Load ``directory`` if Redis holds no master data yet; return None when a version is in force."""
    if store.current_version() is not None:
        return None
    result = store.load(read_set(directory), loaded_by=by)
    log.info("master data %s loaded from %s", result.version, directory)
    return result


class MasterDataCache:
    """What a transform actor holds: the current set, refreshed when ``current`` changes in Redis.

    One GET per call (at most every ``check_every_s``) keeps workers on the version in force without a
    restart. If Redis cannot be read, the set already held is used (master data changes rarely, postings
    must not stop); with none held, :class:`MasterDataUnavailable` makes the caller retry later.
    """

    def __init__(self, store: MasterDataStore, check_every_s: float = 0.0) -> None:
        self._store = store
        self._check_every_s = check_every_s
        self._data: MasterDataSet | None = None
        self._checked_at = float("-inf")

    def current(self) -> MasterDataSet:
        now = time.monotonic()
        if self._data is not None and now - self._checked_at < self._check_every_s:
            return self._data
        try:
            version = self._store.current_version()
            if version is None:
                raise MasterDataUnavailable(
                    "no master data is loaded: run `hcsync masterdata load DIR` (the stack loads the "
                    "directory in HCSYNC_MASTERDATA_DIR when Redis has none)"
                )
            if self._data is None or self._data.version != version:
                data = self._store.get(version)
                if data is None:
                    raise MasterDataUnavailable(f"master data version {version} is current but has no set")
                if self._data is not None:
                    log.info("master data %s replaces %s", version, self._data.version)
                self._data = data
        except (redis.RedisError, ValidationError) as exc:
            if self._data is None:
                raise MasterDataUnavailable(
                    f"master data cannot be read: {type(exc).__name__}: {exc}"
                ) from exc
            log.warning("master data not refreshed (%s); still on %s", type(exc).__name__, self._data.version)
        self._checked_at = now
        return self._data


__all__ = [
    "LoadResult",
    "MasterDataCache",
    "MasterDataConflict",
    "MasterDataStore",
    "MasterDataUnavailable",
    "VersionInfo",
    "seed",
]
