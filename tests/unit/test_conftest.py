"""tests/conftest.py: markers by folder, and a run that executes no test fails (exit status 5)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A copy of our suite's hooks and pytest settings, with one test in each folder."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["pytest"]["ini_options"]
    markers = "\n    ".join(options["markers"])
    pytester.makeini(f"[pytest]\naddopts = {options['addopts']}\nmarkers =\n    {markers}\n")
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text("utf-8"))
    for folder in ("unit", "integration", "chaos"):
        pytester.mkdir(folder)
        (pytester.path / folder / f"test_{folder}.py").write_text(f"def test_in_{folder}():\n    pass\n")
    return pytester


def test_every_test_under_integration_and_chaos_gets_its_marker(suite: pytest.Pytester) -> None:
    unit = suite.runpytest("-m", "not integration and not chaos")
    unit.assert_outcomes(passed=1, deselected=2)
    unit.stdout.fnmatch_lines(["*unit/test_unit.py .*"])
    suite.runpytest("-m", "integration").assert_outcomes(passed=1, deselected=2)
    suite.runpytest("-m", "chaos").assert_outcomes(passed=1, deselected=2)
    suite.runpytest("-m", "not integration").assert_outcomes(passed=2, deselected=1)


def test_the_markers_are_declared_and_others_refused(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_typo="import pytest\n\n@pytest.mark.integraton\ndef test_x():\n    pass\n")
    result = suite.runpytest("test_typo.py")
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    result.stdout.fnmatch_lines(["*'integraton' not found in `markers` configuration option*"])


def test_a_run_that_collects_nothing_fails(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-k", "no_test_is_named_like_this")
    result.assert_outcomes(deselected=3)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    # With --strict-markers, a -m expression naming an undeclared marker is a usage error, not an empty run.
    assert suite.runpytest("-m", "undeclared").ret == pytest.ExitCode.USAGE_ERROR


def test_a_run_where_every_test_skipped_fails(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_skips="import pytest\n\ndef test_a():\n    pytest.skip('no corpus')\n\n"
        "@pytest.mark.skip(reason='later')\ndef test_b():\n    pass\n"
    )
    result = suite.runpytest("test_skips.py")
    result.assert_outcomes(skipped=2)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["*no test ran: all 2 skipped (exit status 5)*"])


def test_a_run_with_one_test_executed_passes_and_collect_only_is_left_alone(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_mixed="import pytest\n\ndef test_a():\n    pytest.skip('no corpus')\n\n"
        "@pytest.mark.xfail(strict=True)\ndef test_b():\n    assert False\n"
    )
    result = suite.runpytest("test_mixed.py")
    result.assert_outcomes(skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    assert suite.runpytest("--collect-only", "test_mixed.py").ret == pytest.ExitCode.OK
