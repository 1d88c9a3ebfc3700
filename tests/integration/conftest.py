"""Start the real embedded stack once per test session: Tansu, Redis, the gRPC adapters, Ray, Faust."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cluster.cli import app
from cluster.report import StackReport, collect
from cluster.stack import Stack, settings_env
from foundation.processes import free_port
from foundation.runs import new_run_dir
from foundation.settings import Settings, get_settings
from tests.hl7_samples import adt, dft


def stack_settings(home: Path, **overrides: object) -> Settings:
    """Return settings for an isolated stack: free ports, its own home and topic prefix."""
    fields: dict[str, object] = {
        "home_dir": home,
        "broker_port": free_port(),
        "redis_port": free_port(),
        "billing_port": free_port(),
        "erp_port": free_port(),
        "mllp_port": free_port(),
        "topic_prefix": f"t{uuid.uuid4().hex[:8]}.",
        "transform_batch_window_s": 0.1,
        "dispatch_batch_window_s": 0.1,
        "ready_timeout_s": 180,
        # Sized by hand unless a test hands the pool to the autoscaler (`hcsync scale transform --auto`);
        # then it reacts within seconds, to a backlog of a few hundred messages of the strictly validated
        # (slow: hl7apy) SURGE feed, in batches small enough that the pool's in-flight bound is reached.
        "transform_autoscale": False,
        "transform_max_replicas": 4,
        "transform_batch_size": 100,
        "strict_validation_feeds": ["SURGE"],
        "autoscale_lag_per_replica": 100,
        "autoscale_window_s": 2.0,
        "autoscale_up_cooldown_s": 3.0,
        "autoscale_down_cooldown_s": 6.0,
    }
    return Settings.model_validate(fields | overrides)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session's running stack."""
    settings = stack_settings(tmp_path_factory.mktemp("hcsync"))
    running = Stack(settings, new_run_dir(settings, "test"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def settings(stack: Stack) -> Settings:
    return stack.settings


def report_now(settings: Settings) -> StackReport:
    """Collect the running stack's report."""
    return asyncio.run(collect(settings))


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 90.0) -> None:
    """Poll ``check`` until it holds; fail the test naming ``what`` when it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def charges(report: StackReport) -> tuple[int, int]:
    """Return billing's charge count and amount in cents."""
    return int(report.billing.get("chargeCount", 0)), int(report.billing.get("amountCents", 0))


def settle(settings: Settings, seconds: float = 3.0) -> StackReport:
    """Wait until counters and totals stop moving, then return the report (catches late duplicates)."""
    last = report_now(settings)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = report_now(settings)
        if now.counters == last.counters and now.billing == last.billing and now.ledger == last.ledger:
            return now
        last = now
    return last


def run_cli(settings: Settings, *args: str, code: int = 0) -> str:
    """Run an hcsync command against the stack of ``settings``; return its stdout."""
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    finally:
        get_settings.cache_clear()
    assert result.exit_code == code, result.output
    return result.stdout


def ed_day(uid: str, encounters: int) -> tuple[list[bytes], int, int]:
    """Emergency visits: a registration and one 450.00 charge each; (messages, charges, cents)."""
    messages: list[bytes] = []
    for n in range(encounters):
        visit = f"S{uid}{n:03d}"
        messages.append(adt("A04", f"A{visit}", visit, patient_class="E", dept="ED"))
        messages.append(dft(f"D{visit}", visit, [("CG", "99283", "ED visit", 1, "450.00")], dept="ED"))
    return messages, encounters, encounters * 45_000
