"""The revenue dispatcher against real services: billing and the reference payer over gRPC, Redis.

A coverage the payer does not answer within the eligibility deadline is flagged for follow-up in billing;
one it answers sends a 271 back through the message store; a claim set pyx12 rejects is quarantined and
never reaches the payer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from adapters.clients import BillingClient, PayerClient
from adapters.erp.masterdata import governed_masterdata
from canonical.models import Patient
from canonical.quarantine import ExceptionRecord
from canonical.revenue_cycle import Coverage
from canonical.x12.read import ReadStatus, read_file
from foundation.settings import get_settings
from streams.commands import CoverageCommand, SubmitClaimsCommand
from streams.revenue import RevenueDispatcher
from tests.grpc_security import client_settings, running_adapter
from tests.masterdata import ledger_set, settings_redis
from tests.redis_server import redis_server
from tests.unit.test_x12_write import professional, submission


@pytest.fixture
def redis_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with redis_server() as url, settings_redis(url, monkeypatch, ledger_set()):
        yield url


def _coverage(encounter: str) -> CoverageCommand:
    return CoverageCommand(
        command_id=f"cmd-{encounter}",
        record_key=f"key-{encounter}",
        coverage=Coverage(encounter_id=encounter, payer_id="BCBS-MN", plan="PPO", member_id="XY123"),
        patient=Patient(mrn="M1", family_name="Doe", given_name="Jane", sex="F"),
        facility="NMH",
        check_eligibility=True,
        state_version=1,
        source_event_id="ev",
        correlation_id="corr",
    )


async def _dispatch(
    tmp_path: Path, redis_url: str, commands: Sequence[bytes], *, slow: bool
) -> tuple[list[bytes], list[bytes], dict[str, int], object]:
    answers: list[bytes] = []

    async def store(received: Sequence[bytes]) -> None:
        answers.extend(received)

    payer_overrides = {"payer_slow_share": 1.0 if slow else 0.0, "payer_timeout_s": 1.0}
    async with (
        running_adapter("billing", tmp_path) as billing_server,
        running_adapter("payer", tmp_path, payer_delivery_dir=tmp_path / "inbox", **payer_overrides) as payer,
    ):
        settings = client_settings(redis_url=redis_url, payer_timeout_s=1.0)
        client = aioredis.Redis.from_url(redis_url)
        async with (
            BillingClient(settings, billing_server.address) as billing,
            PayerClient(settings, payer.address) as gateway,
        ):
            dispatcher = RevenueDispatcher(
                settings,
                billing,
                gateway,
                client,
                "t:",
                store_answers=store,
                masterdata=governed_masterdata(get_settings()),
            )
            report = await dispatcher.dispatch(list(commands))
            totals = await billing.get_totals()
        await client.aclose()
    return answers, report.exceptions, report.counts, totals.revenue_cycle


def test_a_payer_that_does_not_answer_in_time_leaves_the_coverage_flagged(
    tmp_path: Path, redis_url: str
) -> None:
    command = _coverage("NMH:V1").model_dump_json().encode()
    answers, exceptions, counts, totals = asyncio.run(_dispatch(tmp_path, redis_url, [command], slow=True))
    assert answers == [] and exceptions == []
    assert counts["eligibility_follow_up"] == 1
    assert totals.coverage_count == 1 and totals.eligibility_follow_up_count == 1  # type: ignore[attr-defined]


def test_a_payer_that_answers_sends_a_271_back_through_the_store(tmp_path: Path, redis_url: str) -> None:
    command = _coverage("NMH:V2").model_dump_json().encode()
    answers, exceptions, counts, _ = asyncio.run(_dispatch(tmp_path, redis_url, [command], slow=False))
    assert exceptions == [] and counts["eligibility_checked"] == 1
    [answer] = answers
    [reading] = read_file(answer)
    assert reading.st01 == "271" and reading.status is ReadStatus.MAPPED


def test_an_837_pyx12_rejects_is_quarantined_and_never_sent(tmp_path: Path, redis_url: str) -> None:
    claim = submission(professional("NMH:V3P"))
    # A one-character procedure modifier: the canonical model and the writer take it, the guide wants two
    # (SV101-3, IK4 4 "data element too short").
    lines = claim.claim.lines
    odd = (lines[0].model_copy(update={"modifiers": ("X",)}), *lines[1:])
    broken = claim.model_copy(update={"claim": claim.claim.model_copy(update={"lines": odd})})
    command = SubmitClaimsCommand(
        command_id="submit-1",
        encounter_id="NMH:V3",
        submissions=(broken,),
        source_event_id="ev",
        correlation_id="corr",
    )
    answers, exceptions, counts, _ = asyncio.run(
        _dispatch(tmp_path, redis_url, [command.model_dump_json().encode()], slow=False)
    )
    assert answers == [] and "claims_sent" not in counts
    [record] = [ExceptionRecord.model_validate_json(e) for e in exceptions]
    assert (
        record.rule == "X12-837-INVALID" and "pyx12 rejects" in record.reason and "SV101-3" in record.reason
    )
    assert dt.datetime.now(dt.UTC) >= record.recorded_at
