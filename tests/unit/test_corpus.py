"""tests/corpus.py: the corpus is found by variable or default, skips when missing, and fails under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import corpus
from tests.corpus import CORPUS_ENV, DEFAULT_CORPUS_DIR, corpus_dir, hl7_files, under_ci


def _make_corpus(root: Path) -> Path:
    (root / "hl7").mkdir(parents=True)
    (root / "hl7_batch").mkdir()
    for name in ("b.hl7", "a.hl7", "notes.txt"):
        (root / "hl7" / name).write_bytes(b"MSH|^~\\&|A\r")
    (root / "hl7_batch" / "c__batch.hl7").write_bytes(b"FHS|^~\\&\r")
    return root


@pytest.fixture
def outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture
def in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("TRUE", True), ("1", True), ("", False)])
def test_ci_is_read_from_the_ci_variable(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert under_ci() is expected
    monkeypatch.setenv("CI", "false")
    assert under_ci() is False


@pytest.mark.usefixtures("outside_ci")
def test_the_variable_names_the_corpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = _make_corpus(tmp_path / "corpus")
    monkeypatch.setenv(CORPUS_ENV, str(root))
    assert corpus_dir() == root
    assert corpus_dir("hl7", "hl7_batch") == root
    assert hl7_files() == [root / "hl7" / "a.hl7", root / "hl7" / "b.hl7"]
    assert hl7_files("hl7", "hl7_batch") == [
        root / "hl7" / "a.hl7",
        root / "hl7" / "b.hl7",
        root / "hl7_batch" / "c__batch.hl7",
    ]


@pytest.mark.usefixtures("outside_ci")
def test_without_the_variable_the_corpus_is_the_projects_sibling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = Path(__file__).resolve().parents[2]
    assert corpus.nearest_corpus(project) == DEFAULT_CORPUS_DIR
    root = _make_corpus(tmp_path / "corpus")
    monkeypatch.setattr(corpus, "DEFAULT_CORPUS_DIR", root)
    for unset in ("", "  "):
        monkeypatch.setenv(CORPUS_ENV, unset)
        assert corpus_dir() == root
    monkeypatch.delenv(CORPUS_ENV)
    assert corpus_dir() == root


def test_the_default_is_the_sibling_else_the_nearest_shared_corpus_above(tmp_path: Path) -> None:
    # A CI clone one folder further down (<work>/ci/main) still finds <work>/shared/corpus.
    work = tmp_path / "work"
    (work / "shared" / "corpus").mkdir(parents=True)
    (work / "shared" / "corpus" / "SOURCES.tsv").write_text("source\n")
    assert corpus.nearest_corpus(work / "main") == work / "shared" / "corpus"
    assert corpus.nearest_corpus(work / "ci" / "main") == work / "shared" / "corpus"
    # Nowhere: the sibling, so the skip or the failure names the documented place.
    assert (
        corpus.nearest_corpus(tmp_path / "elsewhere" / "main") == tmp_path / "elsewhere" / "shared" / "corpus"
    )


@pytest.mark.usefixtures("outside_ci")
def test_a_missing_corpus_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(CORPUS_ENV, str(missing))
    with pytest.raises(pytest.skip.Exception) as skipped:
        hl7_files()
    message = str(skipped.value)
    assert str(missing / "hl7") in message, message
    assert f"{CORPUS_ENV}={missing}" in message, message
    assert "CI" not in message, message


@pytest.mark.usefixtures("outside_ci")
def test_the_default_corpus_missing_names_the_default_and_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(corpus, "DEFAULT_CORPUS_DIR", tmp_path / "absent")
    monkeypatch.delenv(CORPUS_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        corpus_dir()
    message = str(skipped.value)
    assert str(tmp_path / "absent" / "hl7") in message, message
    assert f"{CORPUS_ENV} is not set" in message, message


@pytest.mark.usefixtures("in_ci")
def test_a_missing_corpus_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(CORPUS_ENV, str(missing))
    with pytest.raises(pytest.fail.Exception) as failed:
        hl7_files("hl7", "hl7_batch")
    message = str(failed.value)
    assert str(missing / "hl7") in message and str(missing / "hl7_batch") in message, message
    assert CORPUS_ENV in message and "CI=true" in message, message


@pytest.mark.usefixtures("in_ci")
def test_a_present_corpus_passes_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = _make_corpus(tmp_path / "corpus")
    monkeypatch.setenv(CORPUS_ENV, str(root))
    assert len(hl7_files("hl7", "hl7_batch")) == 3


@pytest.mark.parametrize("ci", ["", "true"])
def test_an_empty_or_partial_corpus_counts_as_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str
) -> None:
    # A folder with no file of the kind asked for would let a corpus test pass having compared nothing.
    monkeypatch.setenv("CI", ci)
    root = tmp_path / "corpus"
    (root / "hl7").mkdir(parents=True)
    (root / "hl7" / "README.txt").write_text("no messages here")
    (root / "hl7_batch").mkdir()
    (root / "hl7_batch" / "x.hl7").write_bytes(b"FHS|^~\\&\r")
    monkeypatch.setenv(CORPUS_ENV, str(root))
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    assert corpus_dir("hl7") == root  # it holds a file, just not a message
    with pytest.raises(expected) as outcome:
        hl7_files("hl7", "hl7_batch")
    message = str(outcome.value)
    assert f"no *.hl7 file in {root / 'hl7'} (" in message, message
    assert str(root / "hl7_batch") not in message, message


def test_the_corpus_is_not_copied_into_the_project() -> None:
    root = corpus_dir()
    names = {path.name for path in root.rglob("*") if path.is_file() and path.name != "README.md"}
    project = Path(__file__).resolve().parents[2]
    copied = sorted(
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.name in names and not any(part.startswith(".") for part in path.relative_to(project).parts)
    )
    assert copied == [], f"corpus files inside the project (read them from {root} instead): {copied}"
