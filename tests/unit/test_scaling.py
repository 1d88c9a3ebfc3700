"""The worker's scaling controller without services: the desired count is applied within the bounds."""

from __future__ import annotations

from typing import cast

from actors.pool import TransformPool
from actors.scaling import ScaleSignals
from streams.scaling import PoolController


class _Pool:
    replicas = 2


def _controller(low: int, high: int) -> PoolController:
    return PoolController(
        cast(TransformPool, _Pool()),
        cast(ScaleSignals, None),
        "w1",
        min_replicas=low,
        max_replicas=high,
    )


def test_no_request_keeps_the_current_size() -> None:
    assert _controller(1, 8).target(None) == 2


def test_a_request_is_clamped_to_the_bounds() -> None:
    controller = _controller(2, 4)
    assert [controller.target(n) for n in (1, 2, 3, 4, 9)] == [2, 2, 3, 4, 4]
