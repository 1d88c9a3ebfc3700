"""Every registered byte-input target (targets.py) under random bytes and mutations of real inputs.

The properties (harness.py): the target returns or raises an error of the project's tree whose fault is
located as the target defines it, within the time bound. Anything else fails, and hypothesis shrinks the
input and prints it (and a blob to reproduce it with ``@reproduce_failure``).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import fuzz_settings
from tests.fuzz.hl7_inputs import corpus_seeds, mutated, structured_messages
from tests.fuzz.targets import TARGETS, ByteTarget

_BY_NAME = pytest.mark.parametrize("target", TARGETS, ids=str)
_BYTES = st.binary(max_size=2_000) | st.binary(max_size=200).map(lambda b: b"MSH" + b)


@_BY_NAME
@fuzz_settings()
@given(data=_BYTES)
def test_random_bytes(target: ByteTarget, data: bytes) -> None:
    target.check(data)


@_BY_NAME
@fuzz_settings()
@given(data=st.data())
def test_mutated_samples(target: ByteTarget, data: st.DataObject) -> None:
    target.check(data.draw(mutated(target.seeds()), label="input"))


@_BY_NAME
@fuzz_settings()
@given(data=st.data())
def test_mutated_corpus(target: ByteTarget, data: st.DataObject) -> None:
    if not target.corpus:
        pytest.skip(f"{target.name} has no corpus folder")
    # Skips cleanly without the corpus (fails under CI): tests/corpus.py.
    seeds = corpus_seeds(target.corpus)
    target.check(data.draw(mutated(seeds), label="input"))


@pytest.mark.parametrize("target", [t for t in TARGETS if t.name.startswith("hl7v2.")], ids=str)
@fuzz_settings()
@given(data=structured_messages())
def test_structured_hl7v2(target: ByteTarget, data: bytes) -> None:
    target.check(data)
