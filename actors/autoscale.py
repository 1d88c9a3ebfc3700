"""The autoscaling policy of a transform pool: how many actors, from consumer lag and in-flight depth.

Two signals, sampled by each worker's controller every tick:

- **lag**: records of the raw topic's partitions this worker owns that are not yet committed (the backlog);
- **saturation**: the share of the time the pool spent at its bound on batches in flight. A pool that is
  rarely full is not what holds the stream back (routing, the broker or the adapters are), and more actors
  would only cost memory, so lag alone never adds an actor.

The decision uses a window of samples, not one: the pool grows only when the lag stayed above
``lag_per_replica`` per actor and the pool was saturated over the whole window, and shrinks only after the
lag stayed low and the pool mostly idle for ``down_cooldown_s``. A change starts a cool-down
(``up_cooldown_s`` before another increase, ``down_cooldown_s`` before a decrease), so the pool does not
flap while new actors warm up or a backlog drains. Growth is proportional to the backlog (to
ceil(lag / lag_per_replica)) but at most doubles per step; shrinking goes one actor at a time. The result
is always within ``min_replicas``..``max_replicas``.

Pure and clock-injected, so the whole policy is tested without Ray or a broker (tests/unit/test_autoscale).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AutoscalePolicy:
    """Bounds, thresholds and cool-downs (from HCSYNC_TRANSFORM_* and HCSYNC_AUTOSCALE_* settings)."""

    min_replicas: int
    max_replicas: int
    lag_per_replica: int = 2000
    saturation: float = 0.7
    window_s: float = 5.0
    up_cooldown_s: float = 15.0
    down_cooldown_s: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"bounds {self.min_replicas}..{self.max_replicas} are not 1 <= min <= max")
        if not 0 < self.saturation <= 1:
            raise ValueError(f"saturation {self.saturation} is not in (0, 1]")

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))


@dataclass(frozen=True, slots=True)
class Decision:
    """A new size and the reason, for the scaling history."""

    replicas: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    lag: int
    saturation: float


class Autoscaler:
    """Decide a pool's size from a stream of (lag, saturation) samples."""

    def __init__(self, policy: AutoscalePolicy) -> None:
        self.policy = policy
        self._samples: deque[_Sample] = deque()
        self._changed_at: float | None = None

    def resized(self, now: float) -> None:
        """Note a change made by anyone (the autoscaler or an SRE): it starts the cool-downs."""
        self._changed_at = now
        self._samples.clear()  # what was measured on the old size says nothing about the new one

    def _since_change(self, now: float) -> float:
        return math.inf if self._changed_at is None else now - self._changed_at

    def observe(self, now: float, *, replicas: int, lag: int, saturation: float) -> Decision | None:
        """Add a sample; return a new size when the policy calls for one (the caller applies it)."""
        policy = self.policy
        if replicas != policy.clamp(replicas):
            bounds = f"{policy.min_replicas}..{policy.max_replicas}"
            return Decision(policy.clamp(replicas), f"{replicas} replica(s) is outside {bounds}")
        self._samples.append(_Sample(now, max(0, lag), min(1.0, max(0.0, saturation))))
        # Twice the longest span: a window is only judged once a sample at least that old exists, and ticks
        # are not exactly periodic.
        keep = 2 * max(policy.window_s, policy.down_cooldown_s)
        while self._samples and now - self._samples[0].at > keep:
            self._samples.popleft()
        up = self._grow(now, replicas)
        return up if up is not None else self._shrink(now, replicas)

    def _window(self, now: float, seconds: float) -> list[_Sample] | None:
        """The samples of the last ``seconds``, or None while they do not yet cover that span."""
        if not self._samples or now - self._samples[0].at < seconds:
            return None
        return [s for s in self._samples if now - s.at <= seconds]

    def _grow(self, now: float, replicas: int) -> Decision | None:
        policy = self.policy
        window = self._window(now, policy.window_s)
        if replicas >= policy.max_replicas or window is None:
            return None
        if self._since_change(now) < policy.up_cooldown_s:
            return None
        lag = min(s.lag for s in window)  # above the threshold for the whole window, not in one spike
        saturation = sum(s.saturation for s in window) / len(window)
        if lag <= replicas * policy.lag_per_replica or saturation < policy.saturation:
            return None
        wanted = max(replicas + 1, math.ceil(lag / policy.lag_per_replica))
        target = policy.clamp(min(wanted, 2 * replicas))
        return Decision(
            target,
            f"lag {lag:,} > {replicas} x {policy.lag_per_replica:,} and the pool at its in-flight bound "
            f"{saturation:.0%} of the last {policy.window_s:g}s",
        )

    def _shrink(self, now: float, replicas: int) -> Decision | None:
        policy = self.policy
        window = self._window(now, policy.down_cooldown_s)
        if replicas <= policy.min_replicas or window is None:
            return None
        if self._since_change(now) < policy.down_cooldown_s:
            return None
        lag = max(s.lag for s in window)
        saturation = sum(s.saturation for s in window) / len(window)
        # Low enough that one actor fewer would still be well under its share of the backlog.
        calm_lag = (replicas - 1) * policy.lag_per_replica // 2
        if lag > calm_lag or saturation >= policy.saturation / 2:
            return None
        return Decision(
            replicas - 1,
            f"lag at most {lag:,} and the pool at its bound {saturation:.0%} of the last "
            f"{policy.down_cooldown_s:g}s",
        )


__all__ = ["AutoscalePolicy", "Autoscaler", "Decision"]
