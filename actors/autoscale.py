"""The autoscaling policy of a transform pool: how many actors, from consumer lag and in-flight depth.

Signals, sampled by each worker's controller every tick:

- **lag**: records of the raw topic's partitions this worker owns that are not yet committed (the backlog);
- **saturation**: the share of the time the pool spent at its bound on batches in flight. A pool that is
  rarely full is not what holds the stream back (routing, the broker or the adapters are), and more actors
  would only cost memory, so lag alone never adds an actor;
- **cpu**: the share of the host's CPU that was busy (all processes, the Ray actors on this host among
  them). More actors on a saturated machine take CPU from the worker's event loop and the broker: a second
  replica once made the stack slower (197 against 248 msg/s);
- **routing**: the share of the ingest pipeline's depth held by batches the pool has finished and that
  wait to be routed: the routing stage, not the pool, is what holds those records;
- **downstream**: the lag of the stages after the pool (encounters, billing and ERP dispatch, quarantine),
  most upstream first.

When the backlog calls for more actors but one of those says the pool is not the bottleneck, the policy
holds and says why (:attr:`Autoscaler.hold`), naming the bottleneck; the controller records a hold in the
scaling history when its cause or bottleneck changes.

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
from collections.abc import Mapping
from dataclasses import dataclass, field


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
    # Never grow while the host's CPU was busy at least this share of the window (1 switches it off).
    max_cpu_share: float = 0.9
    # The routing stage holds the records when finished batches fill at least this share of the pipeline.
    routing_share: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"bounds {self.min_replicas}..{self.max_replicas} are not 1 <= min <= max")
        if not 0 < self.saturation <= 1:
            raise ValueError(f"saturation {self.saturation} is not in (0, 1]")
        if not 0 < self.max_cpu_share <= 1:
            raise ValueError(f"max_cpu_share {self.max_cpu_share} is not in (0, 1]")
        if not 0 < self.routing_share <= 1:
            raise ValueError(f"routing_share {self.routing_share} is not in (0, 1]")

    @property
    def cpu_check(self) -> bool:
        """Whether the CPU rule is on (a threshold of 1 switches it off)."""
        return self.max_cpu_share < 1

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))


@dataclass(frozen=True, slots=True)
class Decision:
    """A new size and the reason, for the scaling history."""

    replicas: int
    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Why the pool does not grow although there is a backlog, and which stage holds the stream back.

    ``cause`` is one of "cpu" (the host's CPU is saturated), "pool-idle" (the pool is not at its in-flight
    bound), "downstream" (the lag is after the pool). A hold is recorded when (cause, bottleneck) changes,
    not each tick: the figures in ``reason`` move all the time.
    """

    cause: str
    bottleneck: str
    reason: str

    @property
    def key(self) -> tuple[str, str]:
        return self.cause, self.bottleneck


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    lag: int
    saturation: float
    cpu: float = 0.0
    routing: float = 0.0
    downstream: Mapping[str, int] = field(default_factory=dict)


def _share(value: float) -> float:
    return min(1.0, max(0.0, value))


class Autoscaler:
    """Decide a pool's size from a stream of (lag, saturation) samples."""

    def __init__(self, policy: AutoscalePolicy) -> None:
        self.policy = policy
        self._samples: deque[_Sample] = deque()
        self._changed_at: float | None = None
        # Why the pool does not grow now, as of the last judged window (None: nothing holds it back, or
        # there is no backlog to grow for).
        self.hold: Hold | None = None

    def resized(self, now: float) -> None:
        """Note a change made by anyone (the autoscaler or an SRE): it starts the cool-downs."""
        self._changed_at = now
        self._samples.clear()  # what was measured on the old size says nothing about the new one
        self.hold = None

    def _since_change(self, now: float) -> float:
        return math.inf if self._changed_at is None else now - self._changed_at

    def observe(
        self,
        now: float,
        *,
        replicas: int,
        lag: int,
        saturation: float,
        cpu: float = 0.0,
        routing: float = 0.0,
        downstream: Mapping[str, int] | None = None,
    ) -> Decision | None:
        """Add a sample; return a new size when the policy calls for one (the caller applies it).

        ``cpu`` is the host's busy CPU share since the last sample, ``routing`` the share of the ingest
        pipeline held by finished batches waiting to be routed, ``downstream`` the lag of each stage after
        the pool, most upstream first. When the policy does not grow for a reason other than a calm
        stream, bounds or cool-downs, :attr:`hold` says why.
        """
        policy = self.policy
        if replicas != policy.clamp(replicas):
            bounds = f"{policy.min_replicas}..{policy.max_replicas}"
            return Decision(policy.clamp(replicas), f"{replicas} replica(s) is outside {bounds}")
        sample = _Sample(
            now,
            max(0, lag),
            _share(saturation),
            _share(cpu),
            _share(routing),
            {stage: max(0, n) for stage, n in (downstream or {}).items()},
        )
        self._samples.append(sample)
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
        if replicas >= policy.max_replicas:
            self.hold = None  # nothing left to hold back
            return None
        if window is None or self._since_change(now) < policy.up_cooldown_s:
            return None  # not judged: the last hold stands
        self.hold = None
        lag = min(s.lag for s in window)  # above the threshold for the whole window, not in one spike
        saturation = sum(s.saturation for s in window) / len(window)
        behind = self._downstream_behind(window)
        if lag <= replicas * policy.lag_per_replica:
            if behind is not None:  # the pool keeps up with its input; a later stage does not
                stage, stage_lag = behind
                self.hold = Hold(
                    "downstream",
                    stage,
                    f"not growing: the lag is downstream of the pool ({stage} {stage_lag:,} behind, the "
                    f"pool's input {lag:,}); bottleneck: {stage}",
                )
            return None
        cpu = sum(s.cpu for s in window) / len(window)
        span = f"{policy.window_s:g}s"
        if policy.cpu_check and cpu >= policy.max_cpu_share:
            self.hold = Hold(
                "cpu",
                "host CPU",
                f"not growing: CPU saturated ({cpu:.0%} over {span}); more actors would take CPU from the "
                "event loop and the broker",
            )
            return None
        if saturation < policy.saturation:
            routing = sum(s.routing for s in window) / len(window)
            if routing >= policy.routing_share:
                stage = "ingest routing"
                where = f"finished batches waiting to be routed fill {routing:.0%} of the pipeline"
            elif behind is not None:
                stage = behind[0]
                where = f"{stage} {behind[1]:,} behind"
            else:
                stage = "ingest reading"
                where = "the pool waits for batches to be read"
            self.hold = Hold(
                "pool-idle",
                stage,
                f"not growing: the pool is at its in-flight bound only {saturation:.0%} of the last {span} "
                f"({where}); bottleneck: {stage}",
            )
            return None
        wanted = max(replicas + 1, math.ceil(lag / policy.lag_per_replica))
        target = policy.clamp(min(wanted, 2 * replicas))
        return Decision(
            target,
            f"lag {lag:,} > {replicas} x {policy.lag_per_replica:,} and the pool at its in-flight bound "
            f"{saturation:.0%} of the last {policy.window_s:g}s",
        )

    def _downstream_behind(self, window: list[_Sample]) -> tuple[str, int] | None:
        """The most upstream stage after the pool whose lag stayed above ``lag_per_replica``, and that lag."""
        stages = [stage for stage in window[-1].downstream if all(stage in s.downstream for s in window)]
        for stage in stages:
            stage_lag = min(s.downstream[stage] for s in window)
            if stage_lag > self.policy.lag_per_replica:
                return stage, stage_lag
        return None

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


__all__ = ["AutoscalePolicy", "Autoscaler", "Decision", "Hold"]
