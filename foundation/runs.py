"""Run directories: each start of the stack writes its logs and embedded data to one folder."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from canonical.errors import StackError
from foundation.settings import Settings


def new_run_dir(settings: Settings, label: str = "run") -> Path:
    """Create and return a fresh run directory and point ``runs/latest`` at it."""
    runs = settings.home_dir.resolve() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = runs / f"{stamp}-{label}-{os.getpid()}"
    run_dir.mkdir()
    latest = runs / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name)
    return run_dir


def run_database_url(settings: Settings, configured: str | None, filename: str, setting: str) -> str:
    """Return a store's SQLAlchemy URL: the setting, else ``filename`` in this run, else in the latest run.

    Outside the stack (a command run next to a running `hcsync up`), ``runs/latest`` names the run; when
    there is none, StackError names ``setting`` (the store's URL variable) instead of creating a file.
    """
    if configured:
        return configured
    if settings.run_dir is not None:
        return f"sqlite:///{settings.run_dir / filename}"
    latest = settings.home_dir.resolve() / "runs" / "latest"
    if not latest.is_dir():
        raise StackError(
            f"no run of the stack found ({latest} does not exist): start it with `hcsync up`, or set "
            f"HCSYNC_RUN_DIR or {setting}"
        )
    return f"sqlite:///{latest / filename}"
