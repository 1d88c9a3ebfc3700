"""The short chaos suite: kill -9 each component mid-stream; nothing acknowledged is lost or doubled.

For each victim (the worker, a Ray transform actor, billing, the ERP adapter, Redis, the MLLP gateway, the
forwarder and the embedded broker) a fresh set of visits with unique control ids is sent over MLLP by a
sender that resends until it gets a positive ACK, the victim is killed once a third of it is acknowledged,
and after the stack settles:

- every acknowledged message is posted (each ADT applied to its account, each charge and its two
  journal lines), and nothing is posted twice;
- order per encounter held (every account ends discharged, all four events applied);
- every component runs again, restarted by the supervisor where it died.

The long version (many more messages, a kill every few seconds) is tests/chaos/test_chaos_long.py,
run by `make chaos`.
"""

from __future__ import annotations

import pytest

from cluster.stack import Stack
from tests.chaos.conftest import VICTIMS, Outcome, prefix, run_round
from tests.chaos.workload import visits

VISITS_PER_ROUND = 60
RESULTS: list[Outcome] = []


@pytest.mark.parametrize("victim", VICTIMS)
def test_killing_a_component_mid_stream_loses_nothing_and_doubles_nothing(
    chaos_stack: Stack, victim: str
) -> None:
    outcome = run_round(chaos_stack, victim, visits(prefix(), VISITS_PER_ROUND))
    RESULTS.append(outcome)
    print(f"\n{outcome.line()}")
    assert outcome.audit.clean, f"after killing {outcome.killed}: {outcome.audit.describe()}"
    restarted = {s.name: s for s in chaos_stack.statuses()}
    assert all(s.state == "running" for s in restarted.values()), restarted
    if victim not in ("transform-actor",):
        assert restarted[victim].restarts >= 1, f"{victim} was not restarted by the supervisor"


def test_every_round_recovered(chaos_stack: Stack) -> None:
    # A summary for the log: one line per kill (sent, acknowledged, posted, lost, doubled, recovery time).
    assert RESULTS, "no chaos round ran"
    print("\n" + "\n".join(outcome.line() for outcome in RESULTS))
    assert all(outcome.audit.lost == 0 and outcome.audit.doubled == 0 for outcome in RESULTS)
