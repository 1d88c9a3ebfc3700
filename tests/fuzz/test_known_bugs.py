"""Bugs the fuzz suite found in files it does not own, kept as regression tests once fixed.

Each test states the bug, the file and line where it was, and the input that shows it. A bug not yet fixed
is pinned with ``xfail(strict=True)``: when it is fixed the test passes, which fails the run, so whoever
fixes it removes the mark. Fixed: an out-of-range Timestamp made Timestamp.ToDatetime raise ValueError,
answered INTERNAL; the adapters now refuse it INVALID_ARGUMENT naming the field (adapters.request_datetime).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from adapters import convert
from canonical.models import AccountMove, CodingUpdate, Encounter, MoveScope, Patient
from proto import billing_pb2
from tests.fuzz.grpc_inputs import METHODS, call
from tests.fuzz.test_grpc_decoders import check_answer

_AT = dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)
_PATIENT = Patient(mrn="MRN001", assigning_authority="NMH", family_name="Doe", given_name="Jane")
_ENCOUNTER = Encounter(encounter_id="NMH:V1", facility="NMH")
_METHODS = {str(method): method for method in METHODS}


def _upsert(key: str) -> billing_pb2.UpsertAccountRequest:
    account = convert.account_from(_ENCOUNTER, _PATIENT, "admitted", "e", "c")
    return billing_pb2.UpsertAccountRequest(idempotency_key=key, account=account)


def _update_patient(key: str) -> billing_pb2.UpdatePatientRequest:
    return convert.patient_update_request_from(_PATIENT, _AT, key, "e", "c")


def _update_coding(key: str) -> billing_pb2.UpdateCodingRequest:
    return convert.coding_request_from(CodingUpdate(encounter_id="NMH:V1"), _AT, key, "e", "c")


def _move(key: str) -> billing_pb2.MoveAccountRequest:
    move = AccountMove(
        scope=MoveScope.ACCOUNT,
        prior_mrn="MRN009",
        prior_assigning_authority="NMH",
        prior_account_number="A1",
        target=_PATIENT,
        encounter_id="",
    )
    return convert.move_request_from(move, _AT, key, "e", "c")


def _batch(key: str) -> billing_pb2.BillingBatchRequest:
    item = billing_pb2.BillingBatchItem(upsert_account=_upsert(f"{key}-item"))
    return billing_pb2.BillingBatchRequest(idempotency_key=key, items=[item])


# (method, a valid request for a key, the Timestamp field of that request the bug is in, its line)
_TIMESTAMPS: list[tuple[str, Callable[[str], Message], Callable[[Message], Timestamp], str]] = [
    ("UpsertAccount", _upsert, lambda r: r.account.admitted_at, "adapters/__init__.py:83 optional_datetime"),
    ("UpdatePatient", _update_patient, lambda r: r.updated_at, "adapters/billing/patients.py:99"),
    ("UpdateCoding", _update_coding, lambda r: r.coded_at, "adapters/billing/coding.py:309"),
    ("MoveAccount", _move, lambda r: r.moved_at, "adapters/billing/moves.py:141"),
]


@pytest.mark.parametrize(("rpc", "build", "stamp", "where"), _TIMESTAMPS, ids=[t[0] for t in _TIMESTAMPS])
@pytest.mark.parametrize(
    ("seconds", "nanos"), [(253_402_300_800, 0), (0, 1_000_000_000)], ids=["year10000", "nanos"]
)
def test_an_out_of_range_timestamp_is_refused_naming_its_field(
    channel: grpc.Channel,
    rpc: str,
    build: Callable[[str], Message],
    stamp: Callable[[Message], Timestamp],
    where: str,
    seconds: int,
    nanos: int,
) -> None:
    method = _METHODS[rpc]
    assert (
        call(channel, method, build(f"valid-{rpc}-{seconds}-{nanos}").SerializeToString())[0]
        == grpc.StatusCode.OK
    )
    request = build(f"bad-{rpc}-{seconds}-{nanos}")
    stamp(request).seconds = seconds
    stamp(request).nanos = nanos
    body = request.SerializeToString()
    code, details = call(channel, method, body)
    check_answer(method, body, code, details)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{where}: {details}"


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(253_402_300_800, 0), (0, 1_000_000_000)], ids=["year10000", "nanos"]
)
def test_an_out_of_range_timestamp_in_a_batch_item_is_that_items_refusal(
    channel: grpc.Channel, seconds: int, nanos: int
) -> None:
    """ApplyBatch answers per item: the item with the bad Timestamp is refused naming it, not the call."""
    apply = channel.unary_unary(
        "/hcsync.billing.v1.BillingAdapter/ApplyBatch",
        request_serializer=billing_pb2.BillingBatchRequest.SerializeToString,
        response_deserializer=billing_pb2.BillingBatchResponse.FromString,
    )
    request = _batch(f"bad-batch-{seconds}-{nanos}")
    stamp = request.items[0].upsert_account.account.admitted_at
    stamp.seconds, stamp.nanos = seconds, nanos
    [result] = apply(request, timeout=30).results
    assert result.WhichOneof("outcome") == "error"
    assert (result.error.code, result.error.field) == ("INVALID_ARGUMENT", "account.admitted_at")
