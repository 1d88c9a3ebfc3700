"""A redis-server of our own (the stack's binary) for tests that need Redis but not the whole stack."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import redis

from cluster.binaries import redis_binary
from foundation.processes import free_port


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def redis_server(timeout_s: float = 30.0) -> Iterator[str]:
    """Run a throw-away redis-server on a free port; yield its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + timeout_s
        while not _pings(client):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not answer (exit code {proc.poll()})")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
