"""tests/refusals.py: differential tests allow refusals by type, condition and count, nothing else."""

from __future__ import annotations

import pytest

from tests.refusals import Allowed, Refusals


def _short(exc: Exception, subject: str) -> bool:
    return len(subject) < 3


def _refusals() -> Refusals[str]:
    return Refusals(
        "the parser",
        Allowed(ValueError, "a value under three characters", at_most=2, when=_short),
        Allowed(KeyError, "an unknown key", at_most=1),
    )


def test_allowed_refusals_are_counted_by_kind() -> None:
    refusals = _refusals()
    assert refusals.kinds == (ValueError, KeyError)
    refusals.note("a.hl7", ValueError("too short"), "ab")
    refusals.note("b.hl7", KeyError("ZZZ"), "anything")
    refusals.check()
    assert refusals.total == 2
    assert refusals.lines() == ["a.hl7: too short", "b.hl7: 'ZZZ'"]
    assert refusals.summary() == "the parser refused 2 (ValueError 1/2, KeyError 1/1)"


def test_an_exception_of_an_allowed_type_outside_its_condition_fails_at_once() -> None:
    refusals = _refusals()
    with pytest.raises(AssertionError) as failed:
        refusals.note("c.hl7", ValueError("bad date"), "a long value")
    message = str(failed.value)
    assert "the parser refused c.hl7 with builtins.ValueError: bad date" in message, message
    assert "expected only: ValueError (a value under three characters); KeyError (an unknown key)" in message


def test_an_exception_of_another_type_fails_at_once() -> None:
    with pytest.raises(AssertionError, match=r"refused d\.hl7 with builtins\.IndexError: list index"):
        _refusals().note("d.hl7", IndexError("list index out of range"), "x")
    with pytest.raises(AssertionError, match="expected only: none"):
        Refusals[str]("the parser").note("e.hl7", ValueError("x"), "x")


def test_more_refusals_than_the_bound_fail_the_check_listing_each() -> None:
    refusals = _refusals()
    for name in ("a", "b", "c"):
        refusals.note(f"{name}.hl7", ValueError(f"{name} is short"), name)
    refusals.note("k.hl7", KeyError("ZZZ"), "x")
    with pytest.raises(AssertionError) as failed:
        refusals.check()
    message = str(failed.value)
    assert "ValueError (a value under three characters): 3 refused, at most 2" in message, message
    assert "a.hl7: a is short" in message and "c.hl7: c is short" in message, message
    assert "KeyError" not in message, message


def test_a_bound_of_zero_allows_no_refusal() -> None:
    refusals = Refusals[str]("python-hl7", Allowed(ValueError, "none today", at_most=0))
    refusals.check()
    refusals.note("f.hl7", ValueError("not HL7"), "x")
    with pytest.raises(AssertionError, match="1 refused, at most 0"):
        refusals.check()
