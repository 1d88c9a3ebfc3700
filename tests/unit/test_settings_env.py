"""The stack hands its settings to child processes as HCSYNC_* variables: they must read back the same."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster.stack import settings_env
from foundation.settings import Settings


def test_every_setting_survives_the_trip_through_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file of the developer's
    for name in [k for k in os.environ if k.startswith("HCSYNC_") or k == "RAY_ADDRESS"]:
        monkeypatch.delenv(name)
    original = Settings(
        strict_validation_feeds=["SURGE", "LAB^NMH"],
        transform_autoscale=False,
        autoscale_saturation=0.5,
        topic_prefix="t1.",
        home_dir=tmp_path,
    )
    for name, value in settings_env(original).items():
        monkeypatch.setenv(name, value)
    assert Settings() == original


def test_pool_bounds_must_hold_the_start_size() -> None:
    with pytest.raises(ValueError, match="HCSYNC_TRANSFORM_REPLICAS=5"):
        Settings(transform_replicas=5, transform_max_replicas=4)
