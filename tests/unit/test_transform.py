"""The pure transform step: outcomes per message, routing receipts and per-feed strict validation."""

from __future__ import annotations

import base64
import json

from actors.transform import StrictPolicy, TransformBatch, transform_batch, transform_one
from canonical.envelope import MessageReceipt
from canonical.quarantine import ExceptionRecord
from tests.hl7_samples import adt

NO_EVN = adt("A01", "C1", "V1").replace(b"EVN|A01|20261120083000\r", b"")
ORU = (
    b"MSH|^~\\&|LAB|NMH|HCSYNC|HCSYNC|20261120083000||ORU^R01^ORU_R01|L1|P|2.5.1\r"
    b"PID|1||MRN001^^^NMH^MR||Doe^Jane\r"
    b"PV1|1|I|MEDSURG^1^A^NMH||||||||||||||||V1^^^NMH^VN\r"
    b"OBR|1|ORD1||80053^CMP^CPT\rOBX|1|NM|2345-7^Glucose^LN||98|mg/dL||||F\r"
)


def test_a_message_without_financial_effect_is_routed_with_its_bytes() -> None:
    outcome = transform_one(ORU)
    assert outcome.ignored and outcome.routed is not None and outcome.message_type == "ORU^R01"
    key, value = outcome.routed
    receipt = MessageReceipt.model_validate_json(value)
    assert key == "NMH:V1" == receipt.encounter_id
    assert base64.b64decode(receipt.original_b64) == ORU
    assert "Doe" not in json.dumps({k: v for k, v in json.loads(value).items() if k != "original_b64"})


def test_strict_validation_applies_only_to_the_listed_feeds() -> None:
    assert transform_one(NO_EVN).events, "lenient by default: the mapper does not need EVN"
    for feeds in ({"EPIC"}, {"EPIC^NMH"}, {"*"}):
        outcome = transform_one(NO_EVN, StrictPolicy(feeds=frozenset(feeds)))
        assert outcome.exception is not None and not outcome.events
        record = ExceptionRecord.model_validate_json(outcome.exception)
        assert (record.rule, record.segment, record.source_message_id) == (
            "HL7-STRICT-SEGMENT-MISSING",
            "EVN",
            "C1",
        )
        assert base64.b64decode(record.original_b64) == NO_EVN
    assert transform_one(NO_EVN, StrictPolicy(feeds=frozenset({"CERNER", "EPIC^OTHER"}))).events


def test_strict_validation_is_capped_and_the_batch_goes_on() -> None:
    policy = StrictPolicy(feeds=frozenset({"*"}), max_elements=50)
    good = adt("A04", "C2", "V2")
    result = transform_batch(TransformBatch(messages=(good, good), strict=policy))
    for outcome in result.outcomes:
        assert outcome.exception is not None
        assert ExceptionRecord.model_validate_json(outcome.exception).rule == "HL7-STRICT-TOO-LARGE"
    relaxed = transform_batch(
        TransformBatch(messages=(good, NO_EVN), strict=StrictPolicy(feeds=frozenset({"*"})))
    )
    assert relaxed.outcomes[0].events and relaxed.outcomes[1].exception is not None
