"""The revenue dispatcher: coverage and eligibility, claims to the payer, 835s posted, claim acknowledgments.

It consumes commands.revenue and talks to three services:

* **coverage** (from IN1): billing records it; on a registration, an admission or an update the payer is
  asked (a 270 to the payer gateway). The 271 the payer answers is stored in the message store like any
  inbound interchange and comes back through raw.x12 as an eligibility answer, which billing records. A
  payer that does not answer within ``payer_timeout_s`` leaves the coverage flagged for follow-up;
* **claims** billing built: the 837 is written, validated with pyx12 before anything leaves (a claim
  pyx12 rejects is quarantined with pyx12's located reasons, never sent), sent, and the payer's 999 (and
  TA1) stored in the message store; billing records the claims as sent with the control numbers;
* **835s** read by the X12 ingest: billing posts them claim by claim, all or nothing, and answers what
  they settled per facility; one balanced, summarized journal per legal entity goes to the ERP
  (streams/remittance_journal.py). A refused 835 (unmatched claim, duplicate trace, overpayment,
  unbalanced) is quarantined whole under billing's rule;
* **acknowledgments** of what hcsync sent (a 999 or TA1 from the payer): the claims they name are
  accepted or rejected in billing; a rejected 270 flags its coverage for follow-up.

Every interchange hcsync sends has control numbers reserved in Redis for the command that sends it, so a
retry sends the same bytes and the payer answers it as the resend it is. What was sent (receiver, GS06 and
ST02, with the claims or coverages in each set) is remembered in Redis, so an acknowledgment that comes
later, by any path, finds what it acknowledges.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.clients import BillingClient, PayerClient
from adapters.revenue_convert import eligibility_result_from, remittance_from
from canonical import ids
from canonical.errors import InvalidMessageError, NotRetryableError, RetryableError
from canonical.models import Patient
from canonical.reference import MasterDataSet, PayerType
from canonical.revenue_cycle import (
    ClaimType,
    EligibilityInquiry,
    Gender,
    PayerParty,
    Person,
    PostalAddress,
    ProviderParty,
    SubscriberRelationship,
)
from canonical.x12.envelope import Interchange, read_interchanges
from canonical.x12.validate import InterchangeValidation, SetVerdict, X12Issue, validate
from canonical.x12.write import HCSYNC_DELIMITERS, Envelope, Parties, Usage
from canonical.x12.write_837 import ClaimCodes, write_837
from canonical.x12.write_eligibility import write_270
from foundation.settings import Settings
from proto import billing_pb2
from streams.commands import (
    ClaimAckCommand,
    CoverageCommand,
    EligibilityAnswerCommand,
    RemittanceCommand,
    RevenueCommandT,
    SubmitClaimsCommand,
    revenue_command_adapter,
)
from streams.dispatch import (
    DispatchReport,
    _Dispatcher,
    _rejection,
    coverage_request,
    refusal_of,
)
from streams.remittance_journal import Settlement, remittance_journals

__all__ = ["ControlNumbers", "RevenueDispatcher", "SentInterchanges", "trace_number"]

log = logging.getLogger(__name__)

_MAX_CONTROL = 999_999_999
_KEEP_S = 180 * 24 * 3600  # how long what was sent is remembered (a 999 comes within days)
# SBR09 claim filing indicator by the payer's kind.
_FILING: dict[PayerType, str] = {
    PayerType.MEDICARE: "MA",
    PayerType.MEDICAID: "MC",
    PayerType.COMMERCIAL: "CI",
    PayerType.MANAGED_CARE: "HM",
    PayerType.WORKERS_COMP: "WC",
}
_ACK_EVENTS = {
    "accepted": billing_pb2.UpdateClaimStatusRequest.ACCEPTED,
    "accepted_with_errors": billing_pb2.UpdateClaimStatusRequest.ACCEPTED_WITH_ERRORS,
    "rejected": billing_pb2.UpdateClaimStatusRequest.REJECTED,
    "interchange_rejected": billing_pb2.UpdateClaimStatusRequest.INTERCHANGE_REJECTED,
}
FollowUp = billing_pb2.EligibilityFollowUp


def trace_number(encounter_id: str, priority: int) -> str:
    """The 270's TRN02 for an encounter's coverage: opaque (no identifier of ours leaves), deterministic.

    The 271 echoes it; :class:`SentInterchanges` keeps which encounter and priority it stands for.
    """
    return "HC" + hashlib.sha256(f"{encounter_id}|{priority}".encode()).hexdigest()[:28].upper()


class ControlNumbers:
    """ISA13 and GS06 of what hcsync sends: one sequence in Redis, reserved once per command."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self.prefix = prefix
        self._counter = f"{prefix}x12:control"
        self._prefix = f"{prefix}x12:control:"

    async def reserve(self, key: str, count: int) -> int:
        """The first of ``count`` numbers reserved for ``key``: the same ones on every retry."""
        known = await self._client.get(self._prefix + key)
        if known is not None:
            return int(known)
        last = int(await self._client.incrby(self._counter, count))
        first = (last - count) % (_MAX_CONTROL - count) + 1
        if await self._client.set(self._prefix + key, first, nx=True, ex=_KEEP_S):
            return first
        raced = await self._client.get(self._prefix + key)  # another worker reserved first: keep its numbers
        return int(raced) if raced is not None else first


class SentInterchanges:
    """What hcsync sent, by receiver and GS06 (and ISA13), so a later 999 or TA1 finds what it answers."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}x12:sent:"

    async def remember(self, receiver: str, x: Interchange, kind: str, owners: dict[str, list[str]]) -> None:
        """Remember each group of ``x``: its sets and, per set, what it carries (claim ids, coverages)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for group in x.groups:
                sets = {t.control: owners.get(f"{group.control}/{t.control}", []) for t in group.transactions}
                doc = {"kind": kind, "isa13": x.control, "sets": sets}
                pipe.set(f"{self._prefix}{receiver}:gs:{group.control}", json.dumps(doc), ex=_KEEP_S)
            groups = [group.control for group in x.groups]
            pipe.set(f"{self._prefix}{receiver}:isa:{x.control}", json.dumps(groups), ex=_KEEP_S)
            await pipe.execute()

    async def group(self, receiver: str, gs06: str) -> dict[str, object] | None:
        raw = await self._client.get(f"{self._prefix}{receiver}:gs:{gs06.lstrip('0') or '0'}")
        if raw is None:
            raw = await self._client.get(f"{self._prefix}{receiver}:gs:{gs06}")
        return None if raw is None else dict(json.loads(raw))

    async def remember_trace(self, trace: str, encounter_id: str, priority: int) -> None:
        await self._client.set(
            f"{self._prefix}trace:{trace}", json.dumps([encounter_id, priority]), ex=_KEEP_S
        )

    async def trace_owner(self, trace: str) -> tuple[str, int] | None:
        """The encounter and priority a 271's TRN02 stands for, or None when hcsync sent no such trace."""
        raw = await self._client.get(f"{self._prefix}trace:{trace}")
        if raw is None:
            return None
        encounter_id, priority = json.loads(raw)
        return str(encounter_id), int(priority)

    async def groups_of(self, receiver: str, isa13: str) -> list[str]:
        raw = await self._client.get(f"{self._prefix}{receiver}:isa:{isa13}")
        return [] if raw is None else list(json.loads(raw))


def _owners(x: Interchange) -> dict[str, list[str]]:
    """The claim ids (CLM01) each set of an 837 carries, by "GS06/ST02"."""
    return {
        f"{group.control}/{t.control}": [s.element(1) for s in t.segments if s.id == "CLM"]
        for group in x.groups
        for t in group.transactions
    }


class RevenueDispatcher(_Dispatcher[RevenueCommandT]):
    """Dispatch revenue commands one at a time (each is a conversation with billing and the payer)."""

    stage = "revenue"

    def __init__(
        self,
        settings: Settings,
        billing: BillingClient,
        payer: PayerClient,
        redis: aioredis.Redis,
        prefix: str,
        *,
        store_answers: Callable[[Sequence[bytes]], Awaitable[None]],
        masterdata: Callable[[], MasterDataSet],
        map_path: Path | None = None,
    ) -> None:
        super().__init__(redis, prefix)
        self._settings = settings
        self._billing = billing
        self._payer = payer
        self._numbers = ControlNumbers(redis, prefix)
        self._redis = redis
        self._sent = SentInterchanges(redis, prefix)
        self._store_answers = store_answers
        self._masterdata = masterdata
        self._map_path = map_path
        self._receiver = settings.payer_interchange_id

    def _decode(self, raw: bytes) -> RevenueCommandT:
        return revenue_command_adapter.validate_json(raw)

    def _encounter_of(self, command: RevenueCommandT) -> str | None:
        if isinstance(command, CoverageCommand):
            return command.coverage.encounter_id
        if isinstance(command, SubmitClaimsCommand):
            return command.encounter_id
        return None

    async def _send(self, items: Sequence[tuple[bytes, RevenueCommandT]], report: DispatchReport) -> None:
        for raw, command in items:
            if isinstance(command, CoverageCommand):
                await self._coverage(raw, command, report)
            elif isinstance(command, EligibilityAnswerCommand):
                await self._eligibility_answer(raw, command, report)
            elif isinstance(command, SubmitClaimsCommand):
                await self._submit(raw, command, report)
            elif isinstance(command, RemittanceCommand):
                await self._remittance(raw, command, report)
            else:
                await self._acknowledged(raw, command, report)
            await self._done.mark([command.command_id])

    def _refuse(
        self, raw: bytes, command: RevenueCommandT, rule: str, reason: str, report: DispatchReport
    ) -> None:
        report.exceptions.append(
            _rejection(self.stage, raw, self._encounter_of(command), reason, rule, command.source_event_id)
        )
        report.count("revenue_quarantined")

    # -- parties ----------------------------------------------------------------------------------
    def _provider(self, data: MasterDataSet, facility_code: str) -> ProviderParty | None:
        facility = data.facility(facility_code)
        if facility is None or not facility.can_bill:
            return None
        return ProviderParty(
            npi=facility.npi,
            name=facility.name,
            tax_id=facility.tax_id,
            taxonomy_code=facility.taxonomy_code,
            address=PostalAddress(
                line1=facility.address_line,
                city=facility.city,
                state=facility.state,
                postal_code=facility.postal_code,
            ),
        )

    def _payer_party(self, data: MasterDataSet, payer_id: str) -> tuple[PayerParty, PayerType]:
        payer = data.get("payers", payer_id)
        if payer is None:
            return PayerParty(payer_id=payer_id, name=payer_id), PayerType.OTHER
        return PayerParty(payer_id=payer.payer_id, name=payer.name), payer.payer_type

    def _envelope(self, control: int, at: dt.datetime, *, sender_name: str = "") -> Envelope:
        s = self._settings
        return Envelope(
            parties=Parties(
                sender_qualifier=s.x12_sender_qualifier,
                sender_id=s.x12_sender_id,
                receiver_qualifier="ZZ",
                receiver_id=self._receiver,
                sender_code=s.x12_sender_id,
                receiver_code=self._receiver,
                sender_name=sender_name,
                receiver_name=self._receiver,
                contact_name=s.x12_contact_name,
                contact_phone=s.x12_contact_phone,
            ),
            interchange_control=control,
            group_control=control,
            at=at,
            usage=Usage(s.x12_usage),
            delimiters=HCSYNC_DELIMITERS,
        )

    # -- coverage and eligibility -----------------------------------------------------------------
    async def _coverage(self, raw: bytes, command: CoverageCommand, report: DispatchReport) -> None:
        request = coverage_request(command)
        try:
            await self._billing.record_coverage(request)
        except NotRetryableError as exc:
            rule, reason = refusal_of(exc)
            self._refuse(raw, command, rule, reason, report)
            return
        report.count("coverages_recorded")
        if command.check_eligibility:
            await self._check(raw, command, report)

    async def _check(self, raw: bytes, command: CoverageCommand, report: DispatchReport) -> None:
        coverage = command.coverage
        data = await asyncio.to_thread(self._masterdata)  # a Redis read: off the event loop
        provider = self._provider(data, command.facility)
        if provider is None:
            reason = (
                f"facility {command.facility} has no billing NPI, tax id or address in master data "
                f"{data.version}"
            )
            self._refuse(raw, command, "MD-FACILITY-CANNOT-BILL", reason, report)
            return
        trace = trace_number(coverage.encounter_id, coverage.priority)
        payer, _kind = self._payer_party(data, coverage.payer_id)
        inquiry = EligibilityInquiry(
            trace_number=trace,
            encounter_id=coverage.encounter_id,
            payer=payer,
            provider=provider,
            subscriber=_subscriber(command),
            patient=_dependent(command),
            inquired_on=dt.datetime.now(dt.UTC).date(),
        )
        control = await self._numbers.reserve(f"{command.command_id}:270", 1)
        try:
            request = write_270([inquiry], self._envelope(control, dt.datetime.now(dt.UTC)))
        except InvalidMessageError as exc:
            self._refuse(raw, command, "X12-270-UNWRITABLE", exc.fault.describe(), report)
            return
        [sent] = read_interchanges(request, "270")
        owners = {f"{g.control}/{t.control}": [trace] for g in sent.groups for t in g.transactions}
        await self._sent.remember_trace(trace, coverage.encounter_id, coverage.priority)
        await self._sent.remember(self._receiver, sent, "270", owners)
        try:
            answers = await self._payer.check_eligibility(request)
        except RetryableError as exc:
            await self._follow_up(command, FollowUp.NO_ANSWER, "NO-ANSWER", trace, report)
            log.info("eligibility: no answer in time for a coverage (%s)", type(exc).__name__)
            return
        except NotRetryableError as exc:
            await self._follow_up(command, FollowUp.REJECTED, "REFUSED", trace, report)
            log.warning("eligibility: the payer gateway refused a 270: %s", exc)
            return
        await self._store_answers(answers)
        report.count("eligibility_checked")

    async def _follow_up(
        self, command: CoverageCommand, reason: int, detail: str, trace: str, report: DispatchReport
    ) -> None:
        request = billing_pb2.RecordEligibilityRequest(
            idempotency_key=ids.derived_id(command.command_id, "eligibility.follow_up"),
            encounter_id=command.coverage.encounter_id,
            priority=command.coverage.priority,
            follow_up=billing_pb2.EligibilityFollowUp(
                reason=reason,  # type: ignore[arg-type]
                detail=detail,
                flagged_at=_timestamp(dt.datetime.now(dt.UTC)),
                trace_number=trace,
            ),
        )
        await self._billing.record_eligibility(request)
        report.count("eligibility_follow_up")

    async def _eligibility_answer(
        self, raw: bytes, command: EligibilityAnswerCommand, report: DispatchReport
    ) -> None:
        response = command.response
        owner = await self._sent.trace_owner(response.trace_number)
        if owner is None:
            self._refuse(
                raw,
                command,
                "X12-271-UNMATCHED",
                "the 271 answers a trace number hcsync did not send",
                report,
            )
            return
        encounter_id, priority = owner
        request = billing_pb2.RecordEligibilityRequest(
            idempotency_key=command.command_id, encounter_id=encounter_id, priority=priority
        )
        if response.rejection_reason:
            request.follow_up.CopyFrom(
                billing_pb2.EligibilityFollowUp(
                    reason=FollowUp.REJECTED,
                    detail=f"AAA03 {response.rejection_reason}",
                    flagged_at=_timestamp(response.answered_at),
                    trace_number=response.trace_number,
                )
            )
        else:
            request.result.CopyFrom(eligibility_result_from(response))
        try:
            await self._billing.record_eligibility(request)
        except NotRetryableError as exc:
            rule, reason = refusal_of(exc)
            self._refuse(raw, command, rule, reason, report)
            return
        report.count("eligibility_recorded")

    # -- claims -----------------------------------------------------------------------------------
    def _codes(self, data: MasterDataSet, command: SubmitClaimsCommand) -> dict[str, ClaimCodes]:
        emergency = command.patient_class == "E"
        codes: dict[str, ClaimCodes] = {}
        for submission in command.submissions:
            _party, kind = self._payer_party(data, submission.payer.payer_id)
            filing = _FILING.get(kind, "ZZ")
            if submission.claim.claim_type is ClaimType.INSTITUTIONAL:
                codes[submission.claim.claim_id] = ClaimCodes(
                    filing_indicator=filing,
                    admission_type="1" if emergency else "3",  # emergency, else elective
                    admission_source="7" if emergency else "1",  # emergency room, else physician referral
                    patient_status="01",  # discharged to home or self care
                )
            else:
                codes[submission.claim.claim_id] = ClaimCodes(filing_indicator=filing)
        return codes

    async def _submit(self, raw: bytes, command: SubmitClaimsCommand, report: DispatchReport) -> None:
        data = await asyncio.to_thread(self._masterdata)  # a Redis read: off the event loop
        control = await self._numbers.reserve(f"{command.command_id}:837", 3)
        at = dt.datetime.now(dt.UTC)
        first = command.submissions[0]
        try:
            request = write_837(
                command.submissions,
                self._envelope(control, at, sender_name=first.billing_provider.name),
                codes=self._codes(data, command),
            )
        except InvalidMessageError as exc:
            self._refuse(raw, command, "X12-837-UNWRITABLE", exc.fault.describe(), report)
            return
        [sent] = read_interchanges(request, "837")
        # pyx12 before anything leaves: a claim it rejects goes to quarantine, not to the payer.
        validation = await asyncio.to_thread(validate, sent, map_path=self._map_path)
        problems = _blocking_issues(validation)
        if problems:
            reason = "; ".join(issue.location() for issue in problems[:5])
            self._refuse(raw, command, "X12-837-INVALID", f"pyx12 rejects the 837: {reason}", report)
            return
        await self._sent.remember(self._receiver, sent, "837", _owners(sent))
        try:
            answers = await self._payer.submit_claims(request)
        except NotRetryableError as exc:
            self._refuse(raw, command, "PAYER-REFUSED", str(exc), report)
            return
        await self._store_answers(answers)
        claims_by_set = _owners(sent)
        for where, claim_ids in claims_by_set.items():
            group_control, set_control = where.split("/")
            for claim_id in claim_ids:
                status = billing_pb2.UpdateClaimStatusRequest(
                    idempotency_key=ids.derived_id(command.command_id, f"sent|{claim_id}"),
                    claim_id=claim_id,
                    event=billing_pb2.UpdateClaimStatusRequest.SENT,
                    interchange_control_number=sent.control,
                    group_control_number=group_control,
                    transaction_set_control_number=set_control,
                    occurred_at=_timestamp(at),
                )
                try:
                    await self._billing.update_claim_status(status)
                except NotRetryableError as exc:
                    rule, reason = refusal_of(exc)
                    self._refuse(raw, command, rule, reason, report)
        report.count("claims_sent", sum(len(c) for c in claims_by_set.values()))
        report.count("claim_files_sent")

    # -- remittance -------------------------------------------------------------------------------
    async def _remittance(self, raw: bytes, command: RemittanceCommand, report: DispatchReport) -> None:
        remittance = command.remittance
        request = billing_pb2.PostRemittanceRequest(
            idempotency_key=f"{remittance.payer_id}|{remittance.trace_number}",
            remittance=remittance_from(remittance),
        )
        try:
            response = await self._billing.post_remittance(request)
        except NotRetryableError as exc:
            rule, reason = refusal_of(exc)
            self._refuse(raw, command, rule, reason, report)
            return
        # Billing answers a second 835 with the same trace and content as a duplicate, which is right for a
        # replay of the same interchange but not for a payer sending the payment twice: that one is
        # quarantined, so finance sees it. Which interchange posted a trace first is kept in Redis.
        owner_key = f"{self._numbers.prefix}x12:remittance:{request.idempotency_key}"
        await self._redis.set(owner_key, command.command_id, nx=True, ex=_KEEP_S)
        if response.status == response.DUPLICATE:
            owner = await self._redis.get(owner_key)
            if owner is not None and _text(owner) != command.command_id:
                reason = (
                    f"835 trace {remittance.trace_number} of payer {remittance.payer_id} was already posted "
                    "from another interchange: the same payment sent twice"
                )
                self._refuse(raw, command, "X12-835-DUPLICATE-TRACE", reason, report)
                return
        data = await asyncio.to_thread(self._masterdata)  # a Redis read: off the event loop
        settlements = []
        for summary in response.summaries:
            facility = data.facility(summary.facility)
            entity = data.legal_entity(summary.legal_entity)
            if facility is None or entity is None:
                reason = (
                    f"facility {summary.facility} or legal entity {summary.legal_entity} not in master data"
                )
                self._refuse(raw, command, "MD-REMITTANCE-DIMENSIONS", reason, report)
                return
            try:
                payer_type = PayerType(summary.payer_type)
            except ValueError:
                payer_type = PayerType.OTHER
            settlements.append(
                Settlement(
                    facility=summary.facility,
                    legal_entity=summary.legal_entity,
                    business_unit=facility.business_unit,
                    receivables_account=entity.receivables_account,
                    payer_type=payer_type,
                    claims=summary.claim_count,
                    settled_cents=summary.receivable_relieved_cents,
                    paid_cents=summary.paid_cents,
                    contractual_cents=summary.contractual_cents,
                    patient_cents=summary.patient_responsibility_cents,
                    other_cents=summary.other_adjustment_cents,
                    provider_adjustment_cents=summary.provider_adjustment_cents,
                )
            )
        journals = remittance_journals(
            settlements,
            source_event_id=command.source_event_id,
            correlation_id=command.correlation_id,
            journal_date=remittance.payment_date,
            currency=remittance.currency,
        )
        key = f"{remittance.payer_id}|{remittance.trace_number}"
        report.erp.extend((key, journal.model_dump_json().encode("utf-8")) for journal in journals)
        report.count("remittances_posted" if response.status == response.POSTED else "remittances_duplicate")
        report.count("remittance_claims", len(remittance.claims))

    # -- acknowledgments --------------------------------------------------------------------------
    async def _acknowledged(self, raw: bytes, command: ClaimAckCommand, report: DispatchReport) -> None:
        groups = [command.group_control] if command.group_control else []
        if command.interchange_control and not groups:
            groups = await self._sent.groups_of(command.receiver_id, command.interchange_control)
        found = [(g, await self._sent.group(command.receiver_id, g)) for g in groups]
        known = [(g, doc) for g, doc in found if doc is not None]
        if not known:
            what = command.group_control or command.interchange_control
            reason = (
                f"a {command.ack_code or 'TA1'} acknowledgment of {what}: hcsync sent no such interchange "
                f"to {command.receiver_id}"
            )
            self._refuse(raw, command, "X12-ACK-UNMATCHED", reason, report)
            return
        for gs06, doc in known:
            sets = doc.get("sets")
            assert isinstance(sets, dict)
            chosen = [command.set_control] if command.set_control else list(sets)
            for st02 in chosen:
                owners = sets.get(st02) or sets.get(st02.zfill(4)) or []
                if doc.get("kind") == "270":
                    if command.event in ("rejected", "interchange_rejected"):
                        for trace in owners:
                            await self._reject_inquiry(command, str(trace), report)
                    continue
                for claim_id in owners:
                    await self._claim_status(raw, command, str(claim_id), gs06, st02, report)

    async def _reject_inquiry(self, command: ClaimAckCommand, trace: str, report: DispatchReport) -> None:
        owner = await self._sent.trace_owner(trace)
        if owner is None:
            return
        encounter_id, priority = owner
        which = "TA1" if command.event == "interchange_rejected" else "IK5"
        await self._billing.record_eligibility(
            billing_pb2.RecordEligibilityRequest(
                idempotency_key=ids.derived_id(command.command_id, trace),
                encounter_id=encounter_id,
                priority=priority,
                follow_up=billing_pb2.EligibilityFollowUp(
                    reason=FollowUp.REJECTED,
                    detail=f"{which} {command.ack_code}",
                    flagged_at=_timestamp(command.occurred_at),
                    trace_number=trace,
                ),
            )
        )
        report.count("eligibility_follow_up")

    async def _claim_status(
        self,
        raw: bytes,
        command: ClaimAckCommand,
        claim_id: str,
        gs06: str,
        st02: str,
        report: DispatchReport,
    ) -> None:
        request = billing_pb2.UpdateClaimStatusRequest(
            idempotency_key=ids.derived_id(command.command_id, claim_id),
            claim_id=claim_id,
            event=_ACK_EVENTS[command.event],
            interchange_control_number=command.interchange_control,
            group_control_number=gs06,
            transaction_set_control_number=st02,
            ack_code=command.ack_code,
            error_text=command.error_text[:500],
            occurred_at=_timestamp(command.occurred_at),
        )
        try:
            await self._billing.update_claim_status(request)
        except NotRetryableError as exc:
            rule, _reason = refusal_of(exc)
            if rule == "BILLING-CLAIM-TRANSITION":
                # A verdict that arrives after the claim moved on (paid before its 999 came): nothing to do.
                report.count("claim_acks_late")
                return
            self._refuse(raw, command, rule, _reason, report)
            return
        report.count(f"claims_{command.event}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _blocking_issues(validation: InterchangeValidation) -> list[X12Issue]:
    """What stops an 837 from leaving: the envelope's and the groups' issues, and the sets pyx12 rejected."""
    found = list(validation.issues)
    for group in validation.groups:
        found += group.issues
        for one in group.sets:
            if one.verdict is SetVerdict.REJECTED:
                found += one.issues
    return found


def _timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(dt.UTC))
    return stamp


def _person(patient: Patient | None) -> Person | None:
    if patient is None:
        return None
    return Person(
        family_name=patient.family_name or "UNKNOWN",
        given_name=patient.given_name,
        birth_date=patient.birth_date,
        gender=Gender.from_hl7(patient.sex),
    )


def _subscriber(command: CoverageCommand) -> Person:
    """The 270's subscriber: the coverage's insured, with the patient's own details when self."""
    coverage = command.coverage
    patient = command.patient
    own = coverage.relationship is SubscriberRelationship.SELF and patient is not None
    return Person(
        member_id=coverage.member_id,
        family_name=coverage.subscriber_family_name
        or (patient.family_name if own and patient else "")
        or "UNKNOWN",
        given_name=coverage.subscriber_given_name or (patient.given_name if own and patient else ""),
        birth_date=coverage.subscriber_birth_date or (patient.birth_date if own and patient else None),
        gender=Gender.from_hl7(patient.sex) if own and patient else Gender.UNKNOWN,
    )


def _dependent(command: CoverageCommand) -> Person | None:
    if command.coverage.relationship is SubscriberRelationship.SELF:
        return None
    return _person(command.patient)
