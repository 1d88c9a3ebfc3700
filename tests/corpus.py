"""The shared corpus of real sample messages: where it is, and what a test does when it is not there.

The corpus (public sample messages from other projects, with their sources in SOURCES.tsv) lives beside
the project in ``../shared/corpus`` and is never copied into it; ``HCSYNC_CORPUS_DIR`` points elsewhere.
A checkout further down (a CI clone in a folder of its own) finds the nearest ``shared/corpus`` above it.
A test that needs it skips cleanly on a developer's machine without it, and fails under CI (``CI=true``),
where a missing corpus would otherwise turn the corpus tests into silent skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from canonical.errors import DecodeError
from tests.refusals import Allowed, Refusals

CORPUS_ENV = "HCSYNC_CORPUS_DIR"
CI_ENV = "CI"
_ROOT = Path(__file__).resolve().parents[1]


def nearest_corpus(root: Path) -> Path:
    """Return <root>/../shared/corpus, else the nearest shared/corpus (holding SOURCES.tsv) further up."""
    for ancestor in root.parents:
        candidate = ancestor / "shared" / "corpus"
        if (candidate / "SOURCES.tsv").is_file():
            return candidate
    return root.parent / "shared" / "corpus"


DEFAULT_CORPUS_DIR = nearest_corpus(_ROOT)
_TRUE = frozenset({"1", "true", "yes"})


def under_ci() -> bool:
    """Return whether the tests run under CI (``CI`` set to true, as CI services set it)."""
    return os.environ.get(CI_ENV, "").strip().lower() in _TRUE


def corpus_dir(*folders: str, pattern: str = "*") -> Path:
    """Return the corpus root whose ``folders`` (default ``hl7``) each hold a ``pattern`` file.

    Skip the test when they do not, or fail it under CI. An empty folder counts as missing: a corpus test
    over no file would pass without having looked at anything.
    """
    override = os.environ.get(CORPUS_ENV, "").strip()
    root = Path(override) if override else DEFAULT_CORPUS_DIR
    missing = [root / name for name in folders or ("hl7",) if not _holds(root / name, pattern)]
    if missing:
        where = ", ".join(str(folder) for folder in missing)
        kind = "file" if pattern == "*" else f"{pattern} file"
        named = f"named by {CORPUS_ENV}={override}" if override else f"default, {CORPUS_ENV} is not set"
        message = (
            f"corpus not found: no {kind} in {where} (the corpus {named}); "
            f"point {CORPUS_ENV} at the corpus folder, the one holding SOURCES.tsv"
        )
        if under_ci():
            pytest.fail(f"{message}. Under CI ({CI_ENV}=true) a missing corpus fails the test", pytrace=False)
        pytest.skip(message)
    return root


def hl7_files(*folders: str) -> list[Path]:
    """Return the ``*.hl7`` files of the corpus ``folders`` (default ``hl7``), sorted within each folder."""
    names = folders or ("hl7",)
    root = corpus_dir(*names, pattern="*.hl7")
    return [path for name in names for path in sorted((root / name).glob("*.hl7"))]


def _holds(folder: Path, pattern: str) -> bool:
    return folder.is_dir() and any(path.is_file() for path in folder.glob(pattern))


def _no_segment_line(exc: Exception, raw: bytes) -> bool:
    fault = exc.fault if isinstance(exc, DecodeError) else None
    return fault is not None and fault.rule == "HL7-SEGMENT-NAME" and bool(fault.found)


def fast_parser_refusals() -> Refusals[bytes]:
    """Return what the fast parser may refuse among the corpus messages (``hl7/`` and ``hl7_batch/``).

    Only a line that is no segment, refused as HL7-SEGMENT-NAME, and only as often as the corpus holds
    such files today: three hapi-hl7v2 samples keep source-code comments next to the message
    (messages__1, messages__18, Hl7V2MessageCollectionTest-L481) and node-hl7-complete's orm-example
    breaks a field over two lines. The product quarantines each with that rule; any other refusal is a
    parser regression (or a new kind of file to look at before raising this bound).
    """
    return Refusals(
        "the fast parser",
        Allowed(DecodeError, "HL7-SEGMENT-NAME: a line that is no segment", at_most=4, when=_no_segment_line),
    )
