"""Dispatchers: turn command batches into idempotent gRPC calls on the billing and ERP adapters.

Billing: account upserts, coding updates, patient merges, person updates and account moves go in command
order in one ApplyBatch call (one billing transaction, one result per command; so an encounter's upserts
and codings reach billing in the order the encounter agent emitted them), then the batch's charges in one
PostCharges call. ERP: the batch's journal commands in one journal batch, its inventory commands in one
inventory batch. Every call carries a deterministic idempotency key.

Redis caches the idempotency keys of commands already dispatched so a replayed batch costs no call;
the adapters' databases still decide (a key evicted from Redis is caught by the unique constraints).

An adapter that refuses a call's key because it recorded that key with other content (ALREADY_EXISTS) has
not applied the call and never will: its commands are quarantined under IDEMPOTENCY-KEY-REUSED with the key
in the reason, neither retried (the answer would not change) nor resent under another key (which would
post what the adapter refused). An operator compares the two and replays what is right.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import grpc
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from adapters import convert
from adapters.billing.revenue_cycle import canonical_submission
from adapters.clients import BillingClient, ErpClient, item_refusal
from adapters.revenue_convert import coverage_from
from canonical import ids
from canonical.errors import Fault, NotRetryableError
from canonical.quarantine import ExceptionRecord
from proto import billing_pb2, erp_pb2
from streams.commands import (
    BillingCommandT,
    ClaimsDueCommand,
    CoverageCommand,
    ErpCommandT,
    InventoryCommand,
    JournalCommand,
    MergePatientCommand,
    MoveAccountCommand,
    PostChargeCommand,
    RevenueCommandT,
    SubmitClaimsCommand,
    UpdateCodingCommand,
    UpdatePatientCommand,
    UpsertAccountCommand,
    billing_command_adapter,
    erp_command_adapter,
)
from streams.records import split
from streams.stats import done_key

DONE_TTL_S = 7 * 24 * 3600
# Failures that will repeat on every attempt: the adapter's refusal, or a command that cannot even be
# turned into a request (a value protobuf cannot hold). Retrying them would stall the whole topic.
LOCAL_FAULTS = (NotRetryableError, ValueError, OverflowError, TypeError)
log = logging.getLogger(__name__)
C = TypeVar("C", BillingCommandT, ErpCommandT, RevenueCommandT)
# The rule of a command whose call's idempotency key an adapter had recorded with other content.
KEY_REUSED = "IDEMPOTENCY-KEY-REUSED"

UpsertStatus = billing_pb2.UpsertAccountResponse.Status
CodingStatus = billing_pb2.UpdateCodingResponse.Status
MergeStatus = billing_pb2.MergePatientResponse.Status
PatientStatus = billing_pb2.UpdatePatientResponse.Status
MoveStatus = billing_pb2.MoveAccountResponse.Status
ChargeStatus = billing_pb2.ChargeResult.Status
ClaimResultStatus = billing_pb2.ClaimResult.Status
# Counter of each answer the billing adapter can give, by command kind.
_UPSERT_COUNTERS = {
    UpsertStatus.CREATED: "accounts_upserted",
    UpsertStatus.UPDATED: "accounts_upserted",
    UpsertStatus.DUPLICATE: "accounts_duplicate",
    UpsertStatus.STALE: "accounts_stale",
}
_CODING_COUNTERS = {
    CodingStatus.APPLIED: "coding_updates",
    CodingStatus.DUPLICATE: "coding_duplicate",
    CodingStatus.STALE: "coding_stale",
}


@dataclass(slots=True)
class DispatchReport:
    """What one batch did: counters for Stats and quarantine records for the exceptions topic."""

    counts: dict[str, int] = field(default_factory=dict)
    exceptions: list[bytes] = field(default_factory=list)
    # Records for commands.revenue (key, value): claims billing built, for the revenue dispatcher to send.
    revenue: list[tuple[str, bytes]] = field(default_factory=list)
    # Records for commands.erp (key, value): the journals of an 835 billing posted.
    erp: list[tuple[str, bytes]] = field(default_factory=list)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def _rejection(
    stage: str, command_json: bytes, encounter_id: str | None, reason: str, rule: str, message_id: str
) -> bytes:
    fault = Fault(rule=rule, reason=reason, message_id=message_id)
    record = ExceptionRecord.from_fault(
        fault,
        record_id=ids.derived_id(f"{stage}|{message_id}|{reason}", "quarantine"),
        stage=stage,
        encounter_id=encounter_id,
        original_b64=base64.b64encode(command_json).decode("ascii"),
        recorded_at=dt.datetime.now(dt.UTC),
    )
    return record.model_dump_json().encode("utf-8")


def cache_id(command: BillingCommandT | ErpCommandT | RevenueCommandT) -> str:
    """Return what the dispatched-command cache knows ``command`` by.

    An account upsert carries the encounter's whole state: the same command id (the same event) comes
    again with another state when the tables are rebuilt from the message store after the broker lost
    everything, and billing must see it to keep the state with the highest state_version
    (docs/reliability.md). Its cache id names the version; every other command is its id.
    """
    if isinstance(command, UpsertAccountCommand):
        return f"{command.command_id}@v{command.state_version}"
    return command.command_id


def precondition_rule(exc: BaseException) -> tuple[str, str] | None:
    """The rule and reason of an adapter's FAILED_PRECONDITION refusal ("RULE: reason"), else None."""
    cause = exc.__cause__
    if not (
        isinstance(exc, NotRetryableError)
        and isinstance(cause, grpc.aio.AioRpcError)
        and cause.code() == grpc.StatusCode.FAILED_PRECONDITION
    ):
        return None
    details = cause.details() or ""
    rule, _, reason = details.partition(": ")
    if not rule or " " in rule:
        return "ADAPTER-REFUSED", details
    return rule, reason


def refusal_of(exc: NotRetryableError) -> tuple[str, str]:
    """The rule and reason to quarantine a command under, for an adapter's refusal of its data (a
    FAILED_PRECONDITION rule, or a reused key); any other failure is raised again."""
    refusal = precondition_rule(exc)
    if refusal is not None:
        return refusal
    if reused_key(exc):
        return KEY_REUSED, str(exc)
    raise exc


def coverage_request(command: CoverageCommand) -> billing_pb2.RecordCoverageRequest:
    """Billing's RecordCoverage of a coverage command (both of its copies send the same request)."""
    return billing_pb2.RecordCoverageRequest(
        idempotency_key=command.record_key,
        coverage=coverage_from(
            command.coverage,
            command.patient,
            source_event_id=command.source_event_id,
            correlation_id=command.correlation_id,
            state_version=command.state_version,
        ),
    )


def reused_key(exc: BaseException) -> bool:
    """Whether ``exc`` is an adapter's refusal of a reused idempotency key (gRPC ALREADY_EXISTS)."""
    cause = exc.__cause__
    return (
        isinstance(exc, NotRetryableError)
        and isinstance(cause, grpc.aio.AioRpcError)
        and cause.code() == grpc.StatusCode.ALREADY_EXISTS
    )


class _DoneCache:
    """The Redis cache of dispatched command ids."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def seen(self, command_ids: Sequence[str]) -> set[str]:
        """Return the ids known to be dispatched; none when Redis cannot say (the adapters decide)."""
        if not command_ids:
            return set()
        try:
            values = await self._client.mget([done_key(self._prefix, cid) for cid in command_ids])
        except RedisError as exc:
            log.warning("idempotency cache unavailable (%s); asking the adapters", type(exc).__name__)
            return set()
        return {cid for cid, value in zip(command_ids, values, strict=True) if value is not None}

    async def mark(self, command_ids: Sequence[str]) -> None:
        """Remember dispatched ids; a failure only costs a redundant (idempotent) call later."""
        if not command_ids:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for cid in command_ids:
                    pipe.set(done_key(self._prefix, cid), b"1", ex=DONE_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            log.warning("idempotency cache unavailable (%s); not cached", type(exc).__name__)


class _Dispatcher(ABC, Generic[C]):
    """Decode a batch, send it, and isolate any command the adapter refuses for good.

    A command that cannot be decoded, or that the adapter refuses with a non-retryable status, goes to
    quarantine; the rest of the batch is still dispatched. Transient failures (RetryableError) propagate
    so the caller retries the whole batch, which is safe because every write is idempotent.
    """

    stage = "dispatch"

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self._done = _DoneCache(redis, prefix)

    @abstractmethod
    def _decode(self, raw: bytes) -> C:
        """Validate one raw command."""

    @abstractmethod
    async def _send(self, items: Sequence[tuple[bytes, C]], report: DispatchReport) -> None:
        """Send decoded commands to the adapter, counting and quarantining what it answers."""

    def _encounter_of(self, command: C) -> str | None:
        """Return the encounter a quarantine record of ``command`` names, when it may name one."""
        return None

    async def dispatch(self, batch: Sequence[bytes]) -> DispatchReport:
        """Dispatch batch records of commands (streams/records.py); return counters and quarantine records.

        Each command is decoded on its own, so one that cannot be is quarantined with its own bytes.
        """
        report = DispatchReport()
        items: list[tuple[bytes, C]] = []
        for raw in (item for record in batch for item in split(record)):
            try:
                items.append((raw, self._decode(raw)))
            except ValidationError as exc:
                first = exc.errors()[0]
                reason = f"undecodable command: {first['loc']}: {first['msg']}"
                report.exceptions.append(_rejection(self.stage, raw, None, reason, "COMMAND-INVALID", ""))
        seen = await self._done.seen([cache_id(cmd) for _, cmd in items])
        report.count("dispatch_cache_hits", len(seen))
        todo = [(raw, cmd) for raw, cmd in items if cache_id(cmd) not in seen]
        if not todo:
            return report
        try:
            await self._send(todo, report)
        except LOCAL_FAULTS:
            # Find the command at fault: resend one by one (idempotent), quarantining what still fails.
            for raw, cmd in todo:
                try:
                    await self._send([(raw, cmd)], report)
                except LOCAL_FAULTS as exc:
                    self._quarantine(raw, cmd, exc, report)
                    await self._done.mark([cache_id(cmd)])
        return report

    def _quarantine(
        self, raw: bytes, command: C, exc: Exception, report: DispatchReport, rule: str = ""
    ) -> None:
        """Quarantine ``command`` for good: the adapter refused it, or it cannot be put in a request."""
        if not rule:
            rule = "ADAPTER-REFUSED" if isinstance(exc, NotRetryableError) else "COMMAND-UNSENDABLE"
        reason = f"{type(exc).__name__}: {exc}"
        report.exceptions.append(
            _rejection(self.stage, raw, self._encounter_of(command), reason, rule, command.source_event_id)
        )

    async def _refused_key(
        self, items: Sequence[tuple[bytes, C]], key: str, exc: NotRetryableError, report: DispatchReport
    ) -> None:
        """Quarantine every command of a call whose idempotency ``key`` the adapter refused as reused."""
        log.warning(
            "%s: idempotency key %s refused as reused: %d commands quarantined", self.stage, key, len(items)
        )
        refusal = NotRetryableError(f"idempotency key {key} refused as reused: {exc}")
        for raw, command in items:
            self._quarantine(raw, command, refusal, report, KEY_REUSED)
        report.count("key_reuse_refused", len(items))
        await self._done.mark([cache_id(command) for _, command in items])


class BillingDispatcher(_Dispatcher[BillingCommandT]):
    """Dispatch billing commands: upserts, codings and patient commands in command order, then charges."""

    stage = "billing"
    # Commands per ApplyBatch call (one billing transaction each); a dispatch batch is usually smaller.
    max_batch_items = 500
    # What building a request raises for a command protobuf cannot hold (a subset of LOCAL_FAULTS).
    unsendable = (ValueError, OverflowError, TypeError)

    def __init__(
        self, client: BillingClient, redis: aioredis.Redis, prefix: str, *, max_batch_items: int | None = None
    ) -> None:
        super().__init__(redis, prefix)
        self._client = client
        self._max_batch_items = max_batch_items or self.max_batch_items

    def _decode(self, raw: bytes) -> BillingCommandT:
        return billing_command_adapter.validate_json(raw)

    def _encounter_of(self, command: BillingCommandT) -> str | None:
        if isinstance(command, UpsertAccountCommand):
            return command.encounter.encounter_id
        if isinstance(command, PostChargeCommand):
            return command.charge.encounter_id
        if isinstance(command, UpdateCodingCommand):
            return command.coding.encounter_id
        if isinstance(command, MoveAccountCommand) and command.move.encounter_id:
            return command.move.encounter_id  # a visit move concerns that visit
        if isinstance(command, ClaimsDueCommand):
            return command.encounter_id
        if isinstance(command, CoverageCommand):
            return command.coverage.encounter_id
        # A merge, a person update or an account move concerns a patient, not one encounter.
        return None

    async def _send(self, items: Sequence[tuple[bytes, BillingCommandT]], report: DispatchReport) -> None:
        # Upserts, codings, merges, person updates and moves in command order, in ApplyBatch calls of at
        # most max_batch_items (one billing transaction each): an encounter's upserts and codings keep
        # their order (billing also orders them itself, by state_version and coded_at, but in order
        # costs nothing). Charges go last, in one call: a charge's account upsert always precedes it on
        # its partition, so doing this batch's upserts first keeps every charge behind its account.
        todo: list[tuple[bytes, BillingCommandT, billing_pb2.BillingBatchItem]] = []
        for raw, command in items:
            if isinstance(command, PostChargeCommand | ClaimsDueCommand | CoverageCommand):
                continue
            try:
                todo.append((raw, command, self._batch_item(command)))
            except self.unsendable as exc:
                # A value protobuf cannot hold, or a time without an offset: it would fail every call.
                self._quarantine(raw, command, exc, report)
                await self._done.mark([cache_id(command)])
        for start in range(0, len(todo), self._max_batch_items):
            await self._apply(todo[start : start + self._max_batch_items], report)
        charges = [(raw, c) for raw, c in items if isinstance(c, PostChargeCommand)]
        if charges:
            await self._post_charges(charges, report)
        # Coverage, then claims: billing then holds this batch's discharge, coding, charges and coverage.
        for raw, command in items:
            if isinstance(command, CoverageCommand):
                await self._record_coverage(raw, command, report)
        for raw, command in items:
            if isinstance(command, ClaimsDueCommand):
                await self._create_claims(raw, command, report)

    async def _record_coverage(self, raw: bytes, command: CoverageCommand, report: DispatchReport) -> None:
        """Record an encounter's insurance (HL7 IN1) in billing; a refusal is quarantined under its rule."""
        try:
            await self._client.record_coverage(coverage_request(command))
        except NotRetryableError as exc:
            rule, reason = refusal_of(exc)
            encounter = command.coverage.encounter_id
            report.exceptions.append(
                _rejection("billing", raw, encounter, reason, rule, command.source_event_id)
            )
        else:
            report.count("coverages_recorded")
        await self._done.mark([cache_id(command)])

    async def _create_claims(self, raw: bytes, command: ClaimsDueCommand, report: DispatchReport) -> None:
        """Build the encounter's claims in billing; pass the ones not yet sent on to the revenue dispatcher.

        A refusal (not discharged, no coding, no coverage, a charge code without a revenue code...) is
        quarantined under billing's rule; replayed once fixed, it builds the claims then.
        """
        try:
            response = await self._client.create_claims(
                billing_pb2.CreateClaimsRequest(
                    idempotency_key=command.command_id, encounter_id=command.encounter_id
                )
            )
        except NotRetryableError as exc:
            rule, reason = refusal_of(exc)
            report.exceptions.append(
                _rejection("billing", raw, command.encounter_id, reason, rule, command.source_event_id)
            )
            report.count("claims_refused")
            await self._done.mark([cache_id(command)])
            return
        # Every claim billing holds unsent: a crash after CreateClaims and before the 837 went out sends
        # it on the replay (billing answers the replay with the claims as built).
        unsent = [result for result in response.claims if result.claim_status == "created"]
        report.count(
            "claims_built", sum(1 for r in response.claims if r.status != ClaimResultStatus.UNCHANGED)
        )
        if unsent:
            submit = SubmitClaimsCommand(
                command_id=ids.derived_id(command.command_id, "revenue.submit"),
                encounter_id=command.encounter_id,
                patient_class=command.patient_class,
                submissions=tuple(canonical_submission(result.submission) for result in unsent),
                source_event_id=command.source_event_id,
                correlation_id=command.correlation_id,
            )
            report.revenue.append((command.encounter_id, submit.model_dump_json().encode("utf-8")))
        await self._done.mark([cache_id(command)])

    async def _apply(
        self,
        chunk: Sequence[tuple[bytes, BillingCommandT, billing_pb2.BillingBatchItem]],
        report: DispatchReport,
    ) -> None:
        """Send one ApplyBatch call; count each answer, quarantine each refused item."""
        key = ids.derived_id("|".join(cache_id(command) for _, command, _ in chunk), "billing.apply")
        response = await self._client.apply_batch(
            billing_pb2.BillingBatchRequest(idempotency_key=key, items=[item for _, _, item in chunk])
        )
        if len(response.results) != len(chunk):
            raise NotRetryableError(
                f"ApplyBatch to billing adapter at {self._client.address} answered "
                f"{len(response.results)} results for {len(chunk)} items"
            )
        for (raw, command, _), result in zip(chunk, response.results, strict=True):
            if result.HasField("error"):
                # ALREADY_EXISTS: the item's own key was recorded with other content (its message says which).
                rule = KEY_REUSED if result.error.code == grpc.StatusCode.ALREADY_EXISTS.name else ""
                refusal = item_refusal(self._client.address, result.error)
                self._quarantine(raw, command, refusal, report, rule)
            else:
                self._count_answer(result, report)
        # Answered for good, refusals included: a replay does not ask again.
        await self._done.mark([cache_id(command) for _, command, _ in chunk])

    @staticmethod
    def _batch_item(command: BillingCommandT) -> billing_pb2.BillingBatchItem:
        """Return the ApplyBatch item of a non-charge billing command (ValueError, OverflowError or TypeError
        when a value cannot be put in the request)."""
        if isinstance(command, UpsertAccountCommand):
            return billing_pb2.BillingBatchItem(
                upsert_account=billing_pb2.UpsertAccountRequest(
                    idempotency_key=command.command_id,
                    account=convert.account_from(
                        command.encounter,
                        command.patient,
                        command.status.value,
                        command.source_event_id,
                        command.correlation_id,
                        state_version=command.state_version,
                        patient_as_of=command.snapshot_at,
                    ),
                )
            )
        if isinstance(command, UpdateCodingCommand):
            return billing_pb2.BillingBatchItem(
                update_coding=convert.coding_request_from(
                    command.coding,
                    convert.aware_datetime(command.coded_at, "coded_at"),
                    command.command_id,
                    command.source_event_id,
                    command.correlation_id,
                )
            )
        if isinstance(command, MergePatientCommand):
            return billing_pb2.BillingBatchItem(
                merge_patient=convert.merge_request_from(
                    command.merge, command.command_id, command.source_event_id, command.correlation_id
                )
            )
        if isinstance(command, UpdatePatientCommand):
            return billing_pb2.BillingBatchItem(
                update_patient=convert.patient_update_request_from(
                    command.patient,
                    command.updated_at,
                    command.command_id,
                    command.source_event_id,
                    command.correlation_id,
                )
            )
        if isinstance(command, MoveAccountCommand):
            return billing_pb2.BillingBatchItem(
                move_account=convert.move_request_from(
                    command.move,
                    command.moved_at,
                    command.command_id,
                    command.source_event_id,
                    command.correlation_id,
                )
            )
        raise TypeError(f"no ApplyBatch item for a {type(command).__name__}")

    @staticmethod
    def _count_answer(result: billing_pb2.BillingBatchResult, report: DispatchReport) -> None:
        """Count one ApplyBatch answer under the counter its single call counted it by."""
        kind = result.WhichOneof("outcome")
        if kind == "upsert_account":
            report.count(_UPSERT_COUNTERS.get(result.upsert_account.status, "accounts_upserted"))
        elif kind == "update_coding":
            report.count(_CODING_COUNTERS.get(result.update_coding.status, "coding_updates"))
        elif kind == "merge_patient":
            if result.merge_patient.status == MergeStatus.DUPLICATE:
                report.count("merges_duplicate")
            else:
                report.count("merges")
                report.count("accounts_merged", result.merge_patient.accounts_moved)
        elif kind == "update_patient":
            answer = result.update_patient
            if answer.status == PatientStatus.DUPLICATE:
                report.count("patient_updates_duplicate")
            elif answer.status == PatientStatus.STALE:
                report.count("patient_updates_stale")
            else:
                report.count("patient_updates")
                report.count("accounts_updated_by_patient", answer.accounts_updated)
        elif kind == "move_account":
            if result.move_account.status == MoveStatus.DUPLICATE:
                report.count("account_moves_duplicate")
            else:
                report.count("account_moves")
                report.count("accounts_moved", result.move_account.accounts_moved)
        else:
            raise NotRetryableError(f"ApplyBatch answered an item with {kind or 'nothing'}")

    async def _post_charges(
        self, items: Sequence[tuple[bytes, PostChargeCommand]], report: DispatchReport
    ) -> None:
        charges = [c for _, c in items]
        raw_by_id = {c.command_id: raw for raw, c in items}
        key = ids.derived_id("|".join(sorted(c.command_id for c in charges)), "billing.batch")
        try:
            response = await self._client.post_charges(
                billing_pb2.PostChargesRequest(
                    idempotency_key=key,
                    charges=[
                        convert.charge_from(c.charge, c.source_event_id, c.correlation_id) for c in charges
                    ],
                )
            )
        except NotRetryableError as exc:
            if not reused_key(exc):
                raise
            await self._refused_key(items, key, exc, report)
            return
        by_charge = {c.charge.charge_id: c for c in charges}
        done: list[str] = []
        for result in response.results:
            command = by_charge[result.charge_id]
            done.append(command.command_id)
            if result.status == ChargeStatus.ACCEPTED:
                report.count("charges_posted")
            elif result.status == ChargeStatus.DUPLICATE:
                report.count("charges_duplicate")
            elif result.status == ChargeStatus.HELD:
                # A credit before its original: billing keeps it and posts it when the original comes.
                report.count("charges_held")
            else:
                report.count("charges_rejected")
                report.exceptions.append(
                    _rejection(
                        "billing",
                        raw_by_id[command.command_id],
                        command.charge.encounter_id,
                        result.reason,
                        "BILLING-REJECTED",
                        command.source_event_id,
                    )
                )
        # Credits held by earlier calls that this call's charges covered: posted now.
        if response.released:
            report.count("charges_posted", len(response.released))
            report.count("credits_released", len(response.released))
        await self._done.mark(done)


class ErpDispatcher(_Dispatcher[ErpCommandT]):
    """Dispatch ERP commands: the batch's journals as one journal batch, its inventory as one more."""

    stage = "erp"

    def __init__(self, client: ErpClient, redis: aioredis.Redis, prefix: str, currency: str) -> None:
        super().__init__(redis, prefix)
        self._client = client
        self._currency = currency

    def _decode(self, raw: bytes) -> ErpCommandT:
        return erp_command_adapter.validate_json(raw)

    async def _send(self, items: Sequence[tuple[bytes, ErpCommandT]], report: DispatchReport) -> None:
        journals = [(raw, c) for raw, c in items if isinstance(c, JournalCommand)]
        inventory = [(raw, c) for raw, c in items if isinstance(c, InventoryCommand)]
        if journals:
            await self._post_journals(journals, report)
        if inventory:
            await self._post_inventory(inventory, report)

    async def _post_journals(
        self, items: Sequence[tuple[bytes, JournalCommand]], report: DispatchReport
    ) -> None:
        todo = [cmd for _, cmd in items]
        raw_by_id = {cmd.command_id: raw for raw, cmd in items}
        key = ids.derived_id("|".join(sorted(c.command_id for c in todo)), "erp.batch")
        try:
            ack = await self._client.post_journal_batch(
                erp_pb2.JournalBatch(
                    batch_id=key,
                    idempotency_key=key,
                    currency=self._currency,
                    lines=[convert.journal_line_from(line) for c in todo for line in c.lines],
                )
            )
        except NotRetryableError as exc:
            if not reused_key(exc):
                raise
            await self._refused_key(items, key, exc, report)
            return
        report.count("journal_lines_accepted", sum(1 for a in ack.accepted if not a.duplicate))
        report.count("journal_lines_duplicate", sum(1 for a in ack.accepted if a.duplicate))
        if ack.rejected:
            report.count("journal_lines_rejected", len(ack.rejected))
            line_owner = {line.line_id: c for c in todo for line in c.lines}
            for rejected in ack.rejected:
                command = line_owner[rejected.line_id]
                report.exceptions.append(
                    _rejection(
                        "erp",
                        raw_by_id[command.command_id],
                        None,
                        f"line {rejected.line_id}: {rejected.reason}",
                        "ERP-REJECTED",
                        command.source_event_id,
                    )
                )
        await self._done.mark([c.command_id for c in todo])

    async def _post_inventory(
        self, items: Sequence[tuple[bytes, InventoryCommand]], report: DispatchReport
    ) -> None:
        todo = [cmd for _, cmd in items]
        raw_by_id = {cmd.command_id: raw for raw, cmd in items}
        key = ids.derived_id("|".join(sorted(c.command_id for c in todo)), "erp.inventory.batch")
        try:
            ack = await self._client.post_inventory_movements(
                erp_pb2.InventoryMovementBatch(
                    batch_id=key,
                    idempotency_key=key,
                    movements=[convert.inventory_movement_from(m) for c in todo for m in c.movements],
                )
            )
        except NotRetryableError as exc:
            if not reused_key(exc):
                raise
            await self._refused_key(items, key, exc, report)
            return
        report.count("inventory_movements", sum(1 for a in ack.accepted if not a.duplicate))
        report.count("inventory_duplicates", sum(1 for a in ack.accepted if a.duplicate))
        if ack.rejected:
            report.count("inventory_rejected", len(ack.rejected))
            owner = {m.movement_id: c for c in todo for m in c.movements}
            for rejected in ack.rejected:
                command = owner[rejected.movement_id]
                report.exceptions.append(
                    _rejection(
                        "erp",
                        raw_by_id[command.command_id],
                        None,
                        rejected.reason,  # it names the movement already
                        "ERP-INVENTORY-REJECTED",
                        command.source_event_id,
                    )
                )
        await self._done.mark([c.command_id for c in todo])
