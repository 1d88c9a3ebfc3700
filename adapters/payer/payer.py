"""The reference payer: answers 270s with 271s, acknowledges 837s with 999s, pays claims by 835 later.

It speaks X12 the way a clearinghouse does and uses hcsync's own X12 stack to do it (the envelope
reader, pyx12 validation, the 999/TA1 writer, the x12sdk reader and the writers), because it must be as
strict with what hcsync sends as a real payer would: an 837 pyx12 rejects gets a 999 R, and none of its
claims is paid. Decisions are in :mod:`adapters.payer.adjudication`.

* **Eligibility.** Each 270 set is read into inquiries and each inquiry answered (active with benefits,
  inactive, not found). A share of inquiries (``payer_slow_share``) is answered only after
  ``payer_timeout_s``, so hcsync's follow-up path runs in the demo.
* **Claims.** The 837 is validated, its 999 (and a TA1 when asked or when the envelope is broken) written,
  and the claims of the accepted sets kept. A set pyx12 accepts but that cannot be read into claims is
  answered R as well: the payer never acknowledges a claim it will not pay.
* **Remittance.** Every ``payer_remit_interval_s`` the claims held for ``payer_adjudication_delay_s``
  are adjudicated and paid, one 835 per payer and payee, delivered as a file into
  ``payer_delivery_dir`` (hcsync's inbox), written under a temporary name and renamed once complete.

A resent interchange gets the answer it got the first time; the same ISA13 with other content is
refused. Control numbers come from the payer's own counter, so they never repeat.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from adapters import invalid_request, reused_key
from adapters.inbound.x12 import x12_digest
from adapters.payer.adjudication import PayerProfile, adjudicate, answer_inquiry, remit
from adapters.payer.store import (
    AnswerRow,
    ClaimRow,
    PayerStore,
    PendingClaim,
    RemittanceRow,
    pack_answer,
    unpack_answer,
)
from canonical.errors import DecodeError
from canonical.reference import PayerType
from canonical.revenue_cycle import (
    ClaimSubmission,
    EligibilityInquiry,
    Person,
    PostalAddress,
    ProviderParty,
    RemittanceClaim,
    SubscriberRelationship,
)
from canonical.x12.acks import acknowledgments
from canonical.x12.envelope import Interchange, read_interchanges
from canonical.x12.read import ReadStatus, SetReading, read_interchange
from canonical.x12.validate import (
    GroupVerdict,
    InterchangeValidation,
    IssueLevel,
    SetVerdict,
    X12Issue,
    validate,
)
from canonical.x12.write import HCSYNC_DELIMITERS, Envelope, Parties, Usage
from canonical.x12.write_835 import EftAccounts, PayerDetails, write_835
from canonical.x12.write_eligibility import write_271
from foundation.settings import Settings

__all__ = ["ReferencePayer"]

log = logging.getLogger(__name__)

# Where the reference payer says it is, in the 835's loop 1000A and TRN03 (invented).
_PAYER_ADDRESS = PostalAddress(
    line1="1 Clearinghouse Plaza", city="Minneapolis", state="MN", postal_code="55401"
)
_PAYER_TAX_ID = "411234567"
_PAYER_PHONE = "6125550100"
_EFT = EftAccounts(
    payer_routing="091000019",
    payer_account="1234567890",
    payee_routing="091000022",
    payee_account="9876543210",
)
_FILING_INDICATORS: dict[PayerType, str] = {
    PayerType.MEDICARE: "MA",
    PayerType.MEDICAID: "MC",
    PayerType.COMMERCIAL: "12",  # preferred provider organisation (CLP06 has no CI)
    PayerType.MANAGED_CARE: "HM",
    PayerType.WORKERS_COMP: "WC",
}
_CLAIMS_PER_REMITTANCE = 200
_ACCEPTED = (SetVerdict.ACCEPTED, SetVerdict.ACCEPTED_WITH_ERRORS, SetVerdict.NOT_VALIDATED)

PayerLookup = Callable[[str, str], PayerProfile]


def _sender(x: Interchange) -> tuple[str, str]:
    return x.isa.element(5).strip(), x.isa.element(6).strip()


def _unread_as_rejected(
    validation: InterchangeValidation, readings: Sequence[SetReading]
) -> InterchangeValidation:
    """Mark rejected (IK5 R) every accepted set that could not be read: it will not be answered or paid."""
    failed = {(r.gs06, r.st02): r for r in readings if r.status is ReadStatus.ERROR}
    if not failed:
        return validation
    groups = []
    for group in validation.groups:
        sets = []
        for one in group.sets:
            reading = failed.get((one.group_control, one.control))
            if reading is not None and one.verdict in _ACCEPTED:
                fault = reading.error
                issue = X12Issue(
                    level=IssueLevel.SET,
                    isa13=validation.interchange.control,
                    gs06=one.group_control,
                    st02=one.control,
                    segment_id="",
                    position=None,
                    loop_id="",
                    element="",
                    code="5",
                    reason=f"cannot be read: {fault.reason if fault else 'unreadable'}",
                )
                one = dataclasses.replace(one, verdict=SetVerdict.REJECTED, issues=(*one.issues, issue))
            sets.append(one)
        verdict = group.verdict
        rejected = sum(one.verdict is SetVerdict.REJECTED for one in sets)
        if rejected and rejected == len(sets):
            verdict = GroupVerdict.REJECTED
        elif rejected:
            verdict = GroupVerdict.PARTIALLY_ACCEPTED
        groups.append(dataclasses.replace(group, sets=tuple(sets), verdict=verdict))
    return dataclasses.replace(validation, groups=tuple(groups))


class ReferencePayer:
    """The payer's behaviour over its store; blocking (the gRPC service runs it in a thread)."""

    def __init__(
        self,
        settings: Settings,
        store: PayerStore,
        payers: PayerLookup,
        delivery_dir: Path,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self.payers = payers
        self.delivery_dir = delivery_dir
        self._sleep = sleep
        self._own = ("ZZ", settings.payer_interchange_id)

    def close(self) -> None:
        """Close the payer's database."""
        self.store.close()

    # -- answering -------------------------------------------------------------------------------
    def _one(self, data: bytes, what: str) -> Interchange:
        try:
            interchanges = read_interchanges(data, what)
        except DecodeError as exc:
            raise invalid_request("interchange", str(exc)) from None
        if len(interchanges) != 1:
            raise invalid_request(
                "interchange", f"holds {len(interchanges)} interchanges: send one at a time"
            )
        return interchanges[0]

    def _known(self, x: Interchange, kind: str) -> list[bytes] | None:
        qualifier, sender_id = _sender(x)
        known = self.store.answer_for(f"{qualifier}:{sender_id}", x.control)
        if known is None:
            return None
        if known.digest != x12_digest(x) or known.kind != kind:
            raise reused_key(x.control, f"an interchange from {qualifier}:{sender_id}", field="ISA13")
        return unpack_answer(known.answer)

    def _envelope(
        self, receiver: tuple[str, str], receiver_code: str, control: int, at: dt.datetime, usage: Usage
    ) -> Envelope:
        """The envelope of what the payer sends to ``receiver`` (ISA07/ISA08), from its own ISA id."""
        parties = Parties(
            sender_qualifier=self._own[0],
            sender_id=self._own[1],
            receiver_qualifier=receiver[0],
            receiver_id=receiver[1],
            sender_code=self._own[1],
            receiver_code=receiver_code,
        )
        return Envelope(
            parties=parties,
            interchange_control=control,
            group_control=control,
            at=at,
            usage=usage,
            delimiters=HCSYNC_DELIMITERS,
        )

    def _answer_envelope(self, x: Interchange, control: int, at: dt.datetime) -> Envelope:
        """The envelope of an answer to ``x``: back to its sender, in its usage (production or test)."""
        sender = _sender(x)
        receiver_code = x.groups[0].gs.element(2) if x.groups else sender[1]
        return self._envelope(sender, receiver_code, control, at, Usage(x.isa.element(15).strip() or "P"))

    def _record(
        self, x: Interchange, kind: str, answer: list[bytes], claims: Sequence[ClaimRow] = ()
    ) -> list[bytes]:
        qualifier, sender_id = _sender(x)
        row = AnswerRow(
            sender=f"{qualifier}:{sender_id}",
            control=x.control,
            kind=kind,
            digest=x12_digest(x),
            answer=pack_answer(answer),
            received_at=dt.datetime.now(dt.UTC),
        )
        kept = self.store.record(row, claims)
        return unpack_answer(kept.answer)

    def _acks(self, validation: InterchangeValidation, at: dt.datetime) -> list[bytes]:
        control = self.store.next_control(2)
        acks = acknowledgments(validation, sender=self._own, control_number=control, at=at)
        return [text.encode("ascii") for text in acks.interchanges()]

    def eligibility(self, data: bytes) -> list[bytes]:
        """Answer one 270 interchange: its 271, or a TA1/999 when it cannot be answered."""
        x = self._one(data, "270")
        known = self._known(x, "270")
        if known is not None:
            return known
        now = dt.datetime.now(dt.UTC)
        readings = read_interchange(x)
        validation = _unread_as_rejected(validate(x), readings)
        inquiries = [
            model
            for reading in readings
            if reading.status is ReadStatus.MAPPED
            for model in reading.models
            if isinstance(model, EligibilityInquiry)
        ]
        broken = validation.ta1_needed and validation.issues
        if broken or not inquiries:
            return self._record(x, "270", self._acks(validation, now))
        responses = []
        names: dict[str, str] = {}
        for inquiry in inquiries:
            profile = self.payers(inquiry.payer.payer_id, inquiry.payer.name)
            plan = profile.name if profile.payer_type is PayerType.OTHER else f"{profile.name} plan"
            responses.append(answer_inquiry(inquiry, plan, now))
            names[inquiry.provider.npi] = inquiry.provider.name
        answer = write_271(
            responses, self._answer_envelope(x, self.store.next_control(1), now), provider_names=names
        )
        if self._slow(inquiries):
            # The payer takes longer than hcsync waits: the encounter must be flagged for follow-up.
            self._sleep(self.settings.payer_timeout_s + 1.0)
        return self._record(x, "270", [answer])

    def _slow(self, inquiries: Sequence[EligibilityInquiry]) -> bool:
        share = self.settings.payer_slow_share
        if share <= 0.0:
            return False
        digest = hashlib.sha256("|".join(i.trace_number for i in inquiries).encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < share

    def claims(self, data: bytes) -> list[bytes]:
        """Acknowledge one 837 interchange (999, and TA1 when due) and keep the claims it accepts."""
        x = self._one(data, "837")
        known = self._known(x, "837")
        if known is not None:
            return known
        now = dt.datetime.now(dt.UTC)
        validation = validate(x)
        accepted = {
            (one.group_control, one.control)
            for group in validation.groups
            for one in group.sets
            if one.verdict in _ACCEPTED and one.code == "837"
        }
        readings = [r for r in read_interchange(x) if (r.gs06, r.st02) in accepted]
        validation = _unread_as_rejected(validation, readings)
        qualifier, sender_id = _sender(x)
        rows: list[ClaimRow] = []
        for reading in readings:
            if reading.status is not ReadStatus.MAPPED:
                continue
            for model in reading.models:
                if isinstance(model, ClaimSubmission):
                    rows.append(
                        ClaimRow(
                            payer_id=model.payer.payer_id,
                            claim_id=model.claim.claim_id,
                            frequency=model.claim.frequency.value,
                            payee_npi=model.billing_provider.npi,
                            submission=model.model_dump_json().encode("utf-8"),
                            sender=f"{qualifier}:{sender_id}",
                            control=x.control,
                            received_at=now,
                        )
                    )
        log.info(
            "payer: 837 ISA13 %s from %s:%s: %d claim(s) accepted", x.control, qualifier, sender_id, len(rows)
        )
        return self._record(x, "837", self._acks(validation, now), rows)

    # -- paying ----------------------------------------------------------------------------------
    def remit_due(self, now: dt.datetime | None = None) -> list[str]:
        """Adjudicate and pay the claims held long enough; return the trace numbers of the 835s issued."""
        at = now or dt.datetime.now(dt.UTC)
        before = at - dt.timedelta(seconds=self.settings.payer_adjudication_delay_s)
        pending = self.store.pending(before, limit=10 * _CLAIMS_PER_REMITTANCE)
        groups: dict[tuple[str, str], list[PendingClaim]] = {}
        for claim in pending:
            groups.setdefault((claim.payer_id, claim.payee_npi), []).append(claim)
        issued: list[str] = []
        for (payer_id, _payee), claims in sorted(groups.items()):
            for start in range(0, len(claims), _CLAIMS_PER_REMITTANCE):
                issued.append(self._remit(payer_id, claims[start : start + _CLAIMS_PER_REMITTANCE], at))
        self.deliver()
        return issued

    def _remit(self, payer_id: str, claims: Sequence[PendingClaim], at: dt.datetime) -> str:
        submissions = [ClaimSubmission.model_validate_json(claim.submission) for claim in claims]
        first = submissions[0]
        profile = self.payers(payer_id, first.payer.name)
        decisions: list[RemittanceClaim] = [adjudicate(submission, profile) for submission in submissions]
        keys = "|".join(sorted(f"{c.claim_id}:{c.frequency}" for c in claims))
        trace = f"{int.from_bytes(hashlib.sha256(f'{payer_id}|{keys}'.encode()).digest()[:6], 'big'):015d}"
        remittance = remit(
            decisions, profile, payee_npi=first.billing_provider.npi, trace_number=trace, paid_on=at.date()
        )
        patients: dict[str, Person] = {}
        for submission in submissions:
            patient = (
                submission.patient if submission.relationship is not SubscriberRelationship.SELF else None
            )
            patients[submission.claim.claim_id] = patient or submission.subscriber
        payee: ProviderParty = first.billing_provider
        control = self.store.next_control(1)
        hcsync = (self.settings.x12_sender_qualifier, self.settings.x12_sender_id)
        envelope = self._envelope(hcsync, hcsync[1], control, at, Usage.PRODUCTION)
        content = write_835(
            [remittance],
            payee,
            envelope,
            payer=PayerDetails(
                tax_id=_PAYER_TAX_ID,
                address=_PAYER_ADDRESS,
                contact_phone=_PAYER_PHONE,
                filing_indicator=_FILING_INDICATORS.get(profile.payer_type, "ZZ"),
            ),
            eft=_EFT,
            patients=patients,
        )
        row = RemittanceRow(
            trace_number=trace,
            payer_id=payer_id,
            payee_npi=payee.npi,
            claims=len(claims),
            total_paid_cents=remittance.total_paid_cents,
            content=content,
            file_name=f"835-{payer_id}-{trace}.x12",
            issued_at=at,
            delivered_at=None,
        )
        self.store.issue(row, claims)
        log.info(
            "payer: 835 %s for %d claim(s) of %s, %d cents",
            trace,
            len(claims),
            payer_id,
            remittance.total_paid_cents,
        )
        return trace

    def deliver(self) -> int:
        """Write every undelivered 835 into the delivery directory (complete files only); return how many."""
        self.delivery_dir.mkdir(parents=True, exist_ok=True)
        done = 0
        for row in self.store.undelivered():
            target = self.delivery_dir / row.file_name
            partial = self.delivery_dir / f".{row.file_name}.part"
            with open(partial, "wb") as handle:
                handle.write(row.content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, target)
            self.store.delivered(row.trace_number, dt.datetime.now(dt.UTC))
            done += 1
        return done
