"""Bounded refusals for differential tests: which exceptions a parser may raise, on what, and how often.

A differential test compares our code with a reference library over real files; either side may refuse a
file. Catching every exception would let a new failure mode pass as one more refusal, so each kind of
refusal is allowed explicitly: its exception type, a condition on the exception and the input that says
why that refusal is expected, and at most how many. Anything else fails the test where it happens, and
``check`` fails when a kind exceeds its bound, listing every refusal it saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Subject = TypeVar("Subject")


def _always(exc: Exception, subject: object) -> bool:
    return True


@dataclass(frozen=True)
class Allowed(Generic[Subject]):
    """One kind of refusal a differential test accepts."""

    kind: type[Exception]
    why: str
    at_most: int
    # Whether this exception, raised on this input, is the expected refusal (the default: any of ``kind``).
    when: Callable[[Exception, Subject], bool] = _always


class Refusals(Generic[Subject]):
    """Count the refusals of one parser (``who``) against the kinds it is allowed."""

    def __init__(self, who: str, *allowed: Allowed[Subject]) -> None:
        self.who = who
        self.allowed = allowed
        # What each kind refused, as "where: exception", in the order of ``allowed``.
        self.seen: list[list[str]] = [[] for _ in allowed]

    @property
    def kinds(self) -> tuple[type[Exception], ...]:
        """Return the exception types to catch (``except refusals.kinds``); others propagate."""
        return tuple(dict.fromkeys(allowance.kind for allowance in self.allowed))

    @property
    def total(self) -> int:
        """Return how many refusals were noted."""
        return sum(len(where) for where in self.seen)

    def lines(self) -> list[str]:
        """Return every refusal noted, as "where: exception"."""
        return [line for where in self.seen for line in where]

    def note(self, where: str, exc: Exception, subject: Subject) -> None:
        """Record ``exc`` raised on ``subject`` (found at ``where``); fail unless a kind allows it."""
        for allowance, refused in zip(self.allowed, self.seen, strict=True):
            if isinstance(exc, allowance.kind) and allowance.when(exc, subject):
                refused.append(f"{where}: {exc}")
                return
        kinds = "; ".join(f"{a.kind.__name__} ({a.why})" for a in self.allowed) or "none"
        raise AssertionError(
            f"{self.who} refused {where} with {type(exc).__module__}.{type(exc).__name__}: {exc}; "
            f"expected only: {kinds}"
        ) from exc

    def check(self) -> None:
        """Fail when a kind of refusal happened more often than its bound, listing what was refused."""
        over = [
            f"{allowance.kind.__name__} ({allowance.why}): {len(where)} refused, at most {allowance.at_most}"
            + "".join(f"\n  {line}" for line in where)
            for allowance, where in zip(self.allowed, self.seen, strict=True)
            if len(where) > allowance.at_most
        ]
        assert not over, f"{self.who} refused more than its bounds allow:\n" + "\n".join(over)

    def summary(self) -> str:
        """Return the counts by kind, e.g. ``DecodeError 4/4``."""
        counts = ", ".join(
            f"{a.kind.__name__} {len(where)}/{a.at_most}"
            for a, where in zip(self.allowed, self.seen, strict=True)
        )
        return f"{self.who} refused {self.total} ({counts or 'nothing allowed'})"
