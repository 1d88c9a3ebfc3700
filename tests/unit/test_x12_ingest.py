"""The X12 ingest step: every interchange acknowledged, read, routed or quarantined with located reasons.

The corpus test is issue 14 item 7 end to end: every interchange of every corpus file becomes models to
act on, a routed "not handled" note, or a quarantine record naming its rule, with 0 crashes
(``pytest -s`` prints the counts).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from actors.x12 import NOT_HANDLED_RULE, REJECTED_RULE, X12Item, process_interchange
from adapters.payer.adjudication import PayerProfile, adjudicate, remit
from canonical.quarantine import ExceptionRecord
from canonical.reference import PayerType
from canonical.revenue_cycle import EligibilityResponse, EligibilityStatus, Remittance
from canonical.x12.envelope import read_interchanges
from canonical.x12.write_835 import write_835
from canonical.x12.write_837 import write_837
from canonical.x12.write_eligibility import write_271
from tests.corpus import corpus_dir
from tests.unit.test_x12_write import (
    EFT,
    PAYER_DETAILS,
    PAYER_PARTIES,
    PROVIDER,
    SUBSCRIBER,
    envelope,
    professional,
    submission,
)

AT = dt.datetime(2026, 12, 5, 15, 0, tzinfo=dt.UTC)
OWN = ("ZZ", "HCSYNC")


def item(raw: bytes, key: str = "ZZ:SENDER|1") -> X12Item:
    return X12Item(raw=raw, message_key=key, sender=OWN, control_number=500, at=AT)


def _remittance_file(claims: int = 3) -> tuple[bytes, Remittance]:
    payer = PayerProfile("66783JJT", "EXAMPLE PAYER", PayerType.COMMERCIAL)
    decided = [adjudicate(submission(professional(f"C{n}", seed=n)), payer) for n in range(claims)]
    remittance = remit(decided, payer, payee_npi=PROVIDER.npi, trace_number="TRACE1", paid_on=AT.date())
    patients = {claim.claim_id: SUBSCRIBER for claim in decided}
    data = write_835(
        [remittance],
        PROVIDER,
        envelope(PAYER_PARTIES, interchange_control=77),
        payer=PAYER_DETAILS,
        eft=EFT,
        patients=patients,
    )
    return data, remittance


def test_an_835_is_acknowledged_and_read_into_its_remittance() -> None:
    data, remittance = _remittance_file()
    out = process_interchange(item(data))
    assert out.outcome == "mapped" and out.exception is None
    [(_, read)] = out.remittances
    assert read.total_paid_cents == remittance.total_paid_cents and read.trace_number == "TRACE1"
    [(name, ack)] = out.acks
    assert name == "999-EXAMPLEPAYER-000000077.x12"
    [answer] = read_interchanges(ack)
    assert answer.isa.element(8).strip() == "EXAMPLEPAYER" and answer.isa.element(6).strip() == "HCSYNC"
    assert "AK9 A" in out.note
    assert process_interchange(item(data)) == out  # the same bytes every time


def test_an_unbalanced_835_is_quarantined_whole_with_the_difference() -> None:
    data, remittance = _remittance_file()
    paid = f"BPR*I*{remittance.total_paid_cents / 100:.2f}".encode()
    assert paid in data
    broken = data.replace(paid, f"BPR*I*{remittance.total_paid_cents / 100 + 1:.2f}".encode(), 1)
    out = process_interchange(item(broken))
    assert out.outcome == "quarantined" and out.remittances == ()
    assert out.exception is not None
    record = ExceptionRecord.model_validate_json(out.exception)
    assert record.stage == "x12" and record.source_system == "x12" and record.original == broken
    assert "100" in record.reason  # the difference in cents


def test_a_271_is_read_and_an_inbound_837_is_quarantined_as_not_handled() -> None:
    response = EligibilityResponse(
        trace_number="1-V123",
        payer={"payer_id": "66783JJT", "name": "EXAMPLE PAYER"},
        provider_npi=PROVIDER.npi,
        subscriber=SUBSCRIBER,
        status=EligibilityStatus.ACTIVE,
        plan="PPO",
        benefits=({"code": "1", "coverage_level": "IND", "service_type_codes": ("30",)},),
        answered_at=AT,
    )
    answer = write_271([response], envelope(PAYER_PARTIES), provider_names={PROVIDER.npi: PROVIDER.name})
    out = process_interchange(item(answer))
    assert out.outcome == "mapped" and [r.trace_number for _, r in out.eligibility] == ["1-V123"]
    claims = write_837([submission(professional("P1"))], envelope())
    out = process_interchange(item(claims))
    assert out.outcome == "quarantined" and out.rule == NOT_HANDLED_RULE
    assert any(name.startswith("999-") for name, _ in out.acks)  # acknowledged all the same


def test_a_999_from_the_payer_becomes_verdicts_on_what_hcsync_sent() -> None:
    sent = write_837([submission(professional("P1"))], envelope(interchange_control=42, group_control=42))
    payer_side = process_interchange(item(sent))  # the payer's 999 of hcsync's 837 (acks address it back)
    [(_, ack)] = [(n, b) for n, b in payer_side.acks if n.startswith("999")]
    out = process_interchange(item(ack, "ZZ:HCSYNC|500"))
    assert out.outcome == "mapped" and out.acks == ()  # no 999 answers a 999
    [fact] = out.ack_facts
    assert (fact.group_control, fact.set_control, fact.event) == ("42", "0001", "accepted")


def test_every_corpus_interchange_is_acknowledged_read_routed_or_quarantined() -> None:
    root = corpus_dir("x12") / "x12"
    outcomes: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    acks: Counter[str] = Counter()
    for path in sorted(root.iterdir()):
        for n, x in enumerate(read_interchanges(path.read_bytes(), path.name)):
            raw = x.text.encode(x.encoding)
            out = process_interchange(item(raw, f"{path.name}|{n}"))
            outcomes[out.outcome] += 1
            if out.exception is not None:
                record = ExceptionRecord.model_validate_json(out.exception)
                assert record.rule and record.reason and record.original == raw, path.name
                rules[record.rule] += 1
            for name, _ in out.acks:
                acks[name.split("-", 1)[0]] += 1
    print(f"\ncorpus interchanges: {dict(outcomes)}; quarantine rules: {dict(rules)}")
    print(f"acknowledgments written: {dict(acks)}")
    assert sum(outcomes.values()) >= 98
    assert outcomes["mapped"] and outcomes["routed"] and outcomes["quarantined"]
    assert rules[REJECTED_RULE] and rules[NOT_HANDLED_RULE]
