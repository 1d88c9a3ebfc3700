"""A redis-server of our own (the stack's binary) for tests that need Redis but not the whole stack."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import redis

from cluster.binaries import redis_binary
from foundation.processes import free_port


def _ping(client: redis.Redis) -> str:
    """Return "" when Redis answers the ping, else what went wrong."""
    try:
        return "" if client.ping() else "PING answered falsy"
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"


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
        while failure := _ping(client):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server on port {port} did not answer PING within {timeout_s:g}s "
                    f"(exit code {proc.poll()}); last try: {failure}"
                )
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
