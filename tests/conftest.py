"""Suite-wide hooks: markers by folder, and a run that executes no test fails.

- Every test under ``tests/integration`` is marked ``integration`` and every test under ``tests/chaos``
  ``chaos`` (markers declared in pyproject.toml), so ``pytest -m "not integration"`` is the unit suite.
- pytest already exits 5 when it collects no test; a run whose every test was skipped before its body ran
  (a missing corpus, say) executes no test either, and is turned into the same exit status 5.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Folder under tests/ -> the marker its tests get.
FOLDER_MARKERS = {"integration": "integration", "chaos": "chaos"}


def marker_for(path: Path) -> str | None:
    """Return the marker a test file gets from its folder under tests/, or None."""
    try:
        folder = path.resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return FOLDER_MARKERS.get(folder)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = marker_for(item.path)
        if name is not None:
            item.add_marker(name)


class RunCounter:
    """Count the tests that started and those whose body ran; fail a run where none ran."""

    def __init__(self) -> None:
        self.started = 0
        self.executed = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Reached only when tests run (not with --collect-only or --fixtures). A body that skipped itself
        # (pytest.skip inside the test) did not test anything; an xfail did run.
        if report.when == "setup":
            self.started += 1
        elif report.when == "call" and (not report.skipped or hasattr(report, "wasxfail")):
            self.executed += 1

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus != pytest.ExitCode.OK or not self.started or self.executed:
            return
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_sep("!", f"no test ran: all {self.started} skipped (exit status 5)", red=True)
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(RunCounter(), "hcsync-run-counter")
