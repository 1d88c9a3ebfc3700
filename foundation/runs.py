"""Run directories: each start of the stack writes its logs and embedded data to one folder."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

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
