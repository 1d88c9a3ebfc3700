"""The same HL7 v2 message written with other delimiters and segment separators maps to the same events.

hl7_inputs.reencoded writes each sample message with a field separator and encoding characters drawn from
the punctuation a sender may declare (with or without a v2.7 truncation character), escaping every value
that contains one of them, and CR, LF or CRLF between segments. The parser must read the declaration and
the escapes, so the mapper sees the same values and emits equal events; either version also satisfies
the properties of every registered target (targets.py).
"""

from __future__ import annotations

from hypothesis import given

from canonical.hl7v2.mapping import canonicalize
from tests.fuzz.harness import fuzz_settings, time_bound
from tests.fuzz.hl7_inputs import reencoded, sample_seeds
from tests.fuzz.targets import TARGETS


@fuzz_settings()
@given(pair=reencoded(sample_seeds()))
def test_other_delimiters_same_events(pair: tuple[bytes, bytes]) -> None:
    original, rewritten = pair
    with time_bound():
        expected = canonicalize(original)
        found = canonicalize(rewritten)
    assert [e.model_dump() for e in found] == [e.model_dump() for e in expected]
    for target in TARGETS:
        target.check(rewritten)
