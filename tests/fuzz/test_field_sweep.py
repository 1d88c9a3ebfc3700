"""Every field of every sample message replaced, one at a time, by each awkward value: a deterministic sweep.

Random mutation reaches one field of one segment with one value rarely; the mappers fail on exactly such
single values (a set id beyond int64, an impossible date, a digit of another script). The sweep visits each
(message, segment, field) of tests/hl7_samples.py with the value as the whole field and as a component. The
bounded profile sweeps :data:`HOT_VALUES` (the values that found bugs, and one of each kind); the long profile
sweeps all of hl7_inputs.AWKWARD_VALUES.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.harness import LONG, active_profile
from tests.fuzz.hl7_inputs import AWKWARD_VALUES, sample_seeds
from tests.fuzz.targets import check_canonical

HOT_VALUES = (
    "",
    "99999999999999999999999999",
    "-9223372036854775809",
    "1e309",
    "1_000",
    "\u0661\u0662",
    "20250229",
    "20261120083000+9999",
    "99991231235959",
    "\\X00\\",
    "\U0001d54f",
)
_FORMS = ("{}", "X^{}", "{}^X")


def _variants(seed: bytes, values: tuple[str, ...]) -> Iterator[bytes]:
    lines = seed.split(b"\r")
    for index, line in enumerate(lines):
        fields = line.split(b"|")
        for position in range(1, len(fields) + 1):
            for value in values:
                for form in _FORMS:
                    changed = [*fields, b""]
                    changed[position] = form.format(value).encode()
                    yield b"\r".join([*lines[:index], b"|".join(changed).rstrip(b"|"), *lines[index + 1 :]])


@pytest.mark.parametrize("seed", sample_seeds(), ids=lambda seed: seed.split(b"|")[8].decode())
def test_every_field_takes_every_awkward_value(seed: bytes) -> None:
    values = AWKWARD_VALUES if active_profile() == LONG else HOT_VALUES
    for variant in _variants(seed, values):
        try:
            check_canonical(variant)
        except BaseException as exc:
            # pytest shows the assertion or the exception; the note says which input it was.
            exc.add_note(f"input: {variant!r}")
            raise
