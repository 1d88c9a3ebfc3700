"""What every fuzz target shares: the profiles, the time bound per input and the "located" checks.

Properties the suite holds every target to (docs/security.md, "The fuzz suite"):

- **No exception outside the project's error tree**: a target returns, or raises an
  :class:`~canonical.errors.HcsyncError` (for the gRPC decoders: answers INVALID_ARGUMENT). Anything else
  (IndexError, UnicodeError, RecursionError, a protobuf ValueError) fails the property.
- **No hang**: hypothesis's ``deadline`` fails an input slower than :data:`DEADLINE`, and
  :func:`time_bound` interrupts one that runs for :data:`HARD_LIMIT_S` seconds of CPU, so a loop that never
  ends fails the test instead of hanging the suite.
- **Every rejection located**: what "located" means is decided per target, in :func:`assert_located` and
  beside each target.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from hypothesis import HealthCheck, settings

from canonical.errors import Fault

__all__ = [
    "DEADLINE",
    "FUZZ_ENV",
    "HARD_LIMIT_S",
    "PROFILES",
    "InputHangError",
    "active_profile",
    "assert_located",
    "fuzz_settings",
    "time_bound",
]

FUZZ_ENV = "HCSYNC_FUZZ"
BOUNDED = "hcsync-fuzz-bounded"
LONG = "hcsync-fuzz-long"

# One input of any target takes milliseconds; strict validation of the largest message it accepts takes
# about 0.4 s on the development machine (canonical/hl7v2/strict.py). Ten times that covers a loaded machine.
DEADLINE = dt.timedelta(seconds=4)
# CPU seconds after which one input is interrupted as a hang (CPU time: a loaded machine does not count).
HARD_LIMIT_S = 20.0

_COMMON = settings(
    deadline=DEADLINE,
    # Generation of structured messages and seeded mutations is itself slow-ish; the deadline above bounds
    # the target, which is what the property is about.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
    print_blob=True,
)
PROFILES: dict[str, settings] = {
    # The whole fuzz suite in about a minute on 2 cores: a smoke run in every `make test`.
    BOUNDED: settings(_COMMON, max_examples=60),
    # `make fuzz`: minutes; the example database (.hypothesis/, git-ignored) keeps what it finds.
    LONG: settings(_COMMON, max_examples=4_000),
}


def active_profile() -> str:
    """Return the profile HCSYNC_FUZZ selects: ``long`` for the long one, else the bounded one."""
    return LONG if os.environ.get(FUZZ_ENV, "").strip().lower() == "long" else BOUNDED


def fuzz_settings(scale: float = 1.0) -> settings:
    """Return the active profile's settings, with ``scale`` times its examples (for slow targets)."""
    profile = PROFILES[active_profile()]
    return settings(profile, max_examples=max(1, int(profile.max_examples * scale)))


class InputHangError(Exception):
    """One input ran past the hard limit: deliberately outside the error tree, so it fails the property."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise InputHangError(f"one input used more than {HARD_LIMIT_S} s of CPU: the target hangs on it")


@contextmanager
def time_bound(limit_s: float = HARD_LIMIT_S) -> Iterator[None]:
    """Interrupt the block with InputHangError after ``limit_s`` seconds of process CPU time.

    CPU time (ITIMER_PROF, SIGPROF) rather than wall time: a loaded machine does not trip it, and it
    leaves SIGALRM to pytest-timeout's own guard of the whole test.
    """
    previous = signal.signal(signal.SIGPROF, _interrupt)
    signal.setitimer(signal.ITIMER_PROF, limit_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def assert_located(fault: Fault, *, message_id: str | None = None, where: bool = True) -> None:
    """Assert that a fault names a rule and a reason, and (``where``) a segment, field or position.

    ``message_id``, when given, is the id the fault must carry (the message's MSH-10 as parsed).
    """
    assert fault.rule.strip(), f"a fault without a rule: {fault}"
    assert fault.reason.strip(), f"a fault without a reason: {fault}"
    if where:
        assert fault.segment or fault.field or fault.position is not None, (
            f"a fault that does not say where: {fault.describe()}"
        )
    if message_id is not None:
        assert fault.message_id == message_id, (
            f"fault names message {fault.message_id!r}, the message is {message_id!r}: {fault.describe()}"
        )
