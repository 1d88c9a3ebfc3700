"""Start the real embedded stack once per test session: Tansu, Redis, the gRPC adapters, Ray, Faust."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
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
from tests.masterdata import ledger_set, settings_redis
from tests.redis_server import redis_server
from tests.waiting import changes, wait_until_still
from tests.waiting import wait_until as wait_until  # the integration tests' import of it


def stack_settings(home: Path, **overrides: object) -> Settings:
    """Return settings for an isolated stack: free ports, its own home and topic prefix."""
    fields: dict[str, object] = {
        "home_dir": home,
        "broker_port": free_port(),
        "redis_port": free_port(),
        "billing_port": free_port(),
        "erp_port": free_port(),
        "payer_port": free_port(),
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
        # The CPU rule off (1 = never hold for the host's CPU): on a loaded 2-core machine the surge alone
        # (the stack, Ray and hl7apy validation, beside other people's work) keeps the host busy above the
        # default 0.9, and test_scaling must still prove that the pool grows when the pool is the
        # bottleneck. The rule itself is proved by tests/unit/test_autoscale.py and test_scaling.py.
        "autoscale_max_cpu_share": 1.0,
    }
    return Settings.model_validate(fields | overrides)


@pytest.fixture
def erp_redis() -> Iterator[str]:
    """A redis-server of our own, empty (adapter tests that start no stack)."""
    with redis_server() as url:
        yield url


@pytest.fixture
def erp_masterdata(erp_redis: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Redis with the adapter tests' master data in force (the demo set plus the GH/NH network), and the
    process settings pointing at it: an ERP adapter built in the test checks its lines against it."""
    with settings_redis(erp_redis, monkeypatch, ledger_set()):
        yield erp_redis


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


def charges(report: StackReport) -> tuple[int, int]:
    """Return billing's charge count and amount in cents."""
    return int(report.billing.get("chargeCount", 0)), int(report.billing.get("amountCents", 0))


def wait_for_charges(
    settings: Settings,
    what: str,
    *,
    count: int | None = None,
    cents: int | None = None,
    exact: bool = False,
    timeout_s: float = 90.0,
) -> StackReport:
    """Wait until billing's charge count and amount reach ``count`` and ``cents`` (equal them if ``exact``).

    None leaves that total free. Returns the report that showed it; on timeout the failure names the
    totals expected and the last ones seen.
    """

    def reached(report: StackReport) -> bool:
        pairs = [
            (got, want) for got, want in zip(charges(report), (count, cents), strict=True) if want is not None
        ]
        return all(got == want if exact else got >= want for got, want in pairs)

    expected = f"({'any' if count is None else count}, {'any' if cents is None else cents})"
    return wait_until(
        f"{what}: billing (charge count, cents) {'==' if exact else '>='} {expected}",
        lambda: report_now(settings),
        timeout_s,
        done=reached,
        show=charges,
    )


def wait_for_counter(settings: Settings, name: str, at_least: int, timeout_s: float = 90.0) -> StackReport:
    """Wait until the live counter ``name`` reaches ``at_least``; return the report that showed it."""
    return wait_until(
        f"counter {name} to reach {at_least}",
        lambda: report_now(settings),
        timeout_s,
        done=lambda report: report.counters.get(name, 0) >= at_least,
        show=lambda report: {name: report.counters.get(name, 0)},
    )


def settle(settings: Settings, seconds: float = 3.0, timeout_s: float = 60.0) -> StackReport:
    """Wait until counters and totals stop moving, then return the report (catches late duplicates).

    Two reports ``seconds`` apart must agree on the live counters and the billing, ledger and inventory
    totals; when they still differ after ``timeout_s`` the test fails naming each value that moved.
    """
    return wait_until_still(
        "the stack's counters and totals to settle",
        lambda: report_now(settings),
        _report_changes,
        interval_s=seconds,
        timeout_s=timeout_s,
    )


def _report_changes(before: StackReport, after: StackReport) -> list[str]:
    return [
        *changes(before.counters, after.counters, "counters."),
        *changes(before.billing, after.billing, "billing."),
        *changes(before.ledger, after.ledger, "ledger."),
        *changes(before.inventory, after.inventory, "inventory."),
    ]


def run_cli(settings: Settings, *args: str, code: int = 0, with_stderr: bool = False) -> str:
    """Run an hcsync command against the stack of ``settings``; return its stdout.

    ``with_stderr`` returns stdout and stderr together (where refusals go), with rich's wrapping undone.
    """
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    finally:
        get_settings.cache_clear()
    assert result.exit_code == code, result.output
    return " ".join(result.output.split()) if with_stderr else result.stdout


def ed_day(uid: str, encounters: int) -> tuple[list[bytes], int, int]:
    """Emergency visits: a registration and one 450.00 charge each; (messages, charges, cents)."""
    messages: list[bytes] = []
    for n in range(encounters):
        visit = f"S{uid}{n:03d}"
        messages.append(adt("A04", f"A{visit}", visit, patient_class="E", dept="ED"))
        messages.append(dft(f"D{visit}", visit, [("CG", "99283", "ED visit", 1, "450.00")], dept="ED"))
    return messages, encounters, encounters * 45_000
