"""The gRPC request decoders: every method of proto/billing.proto and proto/erp.proto, over a real server.

Two kinds of body reach each method of the real adapter services (grpc_inputs.AdapterUnderTest): random
bytes and mutations of a valid request, which mostly do not decode, and generated requests that do, with
extreme, unicode and out-of-range values in every field.

Properties:

- a body that does not decode as the method's request is answered INVALID_ARGUMENT by the
  UndecodableRequests interceptor, never UNKNOWN; "located" for it means the answer names the method and
  says the body does not decode (the decoder's own message, which names offsets, not bytes, follows);
- a body that decodes reaches the backend, which answers OK or refuses it: INVALID_ARGUMENT naming the
  field (``Rpc: field: reason``, the "located" of a request refusal), or FAILED_PRECONDITION or
  ALREADY_EXISTS for a reused idempotency key. Never INTERNAL (an exception outside the error tree), UNKNOWN
  or UNAVAILABLE (the database stays usable: no value poisons later reads);
- no answer echoes a PHI value of the request (names, MRNs, birth dates, account numbers);
- every call is answered within CALL_TIMEOUT_S (the call's deadline; DEADLINE_EXCEEDED fails it).
"""

from __future__ import annotations

import re

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, reject
from hypothesis import strategies as st

from tests.fuzz.grpc_inputs import (
    MAX_SECONDS,
    METHODS,
    MIN_SECONDS,
    OUT_OF_RANGE_TIMESTAMPS,
    Method,
    call,
    requests,
)
from tests.fuzz.harness import fuzz_settings

# What a backend may answer a request that decodes: done, or refused for a reason it names.
_ANSWERS = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)
_BY_METHOD = pytest.mark.parametrize("method", METHODS, ids=str)
# Calls over the network are slower than in-process targets: a fraction of the profile's examples.
_SCALE = 0.5


def _decodes(method: Method, body: bytes) -> bool:
    try:
        method.request.FromString(body)
    except Exception:  # protobuf's DecodeError (and whatever its C decoder raises): does not decode
        return False
    return True


# Request fields that carry PHI (the PhiField names of canonical/models.py): a refusal names them, never
# their value.
_PHI_FIELDS = frozenset(
    {"mrn", "prior_mrn", "family_name", "given_name", "birth_date", "account_number", "prior_account_number"}
)


def _strings(message: Message) -> tuple[set[str], set[str]]:
    """Return the string values of a request in PHI fields and in the other fields, anywhere in it."""
    phi: set[str] = set()
    other: set[str] = set()
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                inner_phi, inner_other = _strings(item)
                phi |= inner_phi
                other |= inner_other
        elif isinstance(value, str):
            (phi if field.name in _PHI_FIELDS else other).add(value)
    return phi, other


def _echoed_phi(message: Message, details: str) -> list[str]:
    """Return the PHI values the answer quotes: long enough to tell apart, and not also a non-PHI value
    of the request (a refusal may quote a bad status code, which a generator may have put in a name too)."""
    phi, other = _strings(message)
    return sorted(value for value in phi - other if len(value.strip()) >= 4 and value in details)


def has_invalid_timestamp(message: Message) -> bool:
    """Say whether a request holds a Timestamp outside the range Timestamp allows (test_known_bugs.py)."""
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        for item in value if field.is_repeated else [value]:
            if isinstance(item, Timestamp):
                if not (MIN_SECONDS <= item.seconds <= MAX_SECONDS and 0 <= item.nanos <= 999_999_999):
                    return True
            elif has_invalid_timestamp(item):
                return True
    return False


def check_answer(method: Method, body: bytes, code: grpc.StatusCode, details: str) -> None:
    """Assert the answer to ``body`` is the one the properties above allow, and that a refusal is located."""
    rpc = str(method)
    if not _decodes(method, body):
        assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{rpc}: undecodable body answered {code}: {details}"
        assert details.startswith(f"{method.path}: the request body does not decode"), details
        return
    assert code in _ANSWERS, f"{rpc}: a decodable request answered {code.name}: {details}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert re.match(rf"{rpc}: [\w.\[\]]+: \S", details), (
            f"{rpc}: a refusal that names no field: {details}"
        )
    echoed = _echoed_phi(method.request.FromString(body), details)
    assert not echoed, f"{rpc}: the answer echoes PHI {echoed!r}: {details}"


def _skip_known_bugs(method: Method, body: bytes) -> None:
    """Reject an input that only shows a bug already pinned in test_known_bugs.py (a mutation can reach
    one the generator leaves out), so the property keeps looking for new ones."""
    if OUT_OF_RANGE_TIMESTAMPS or not _decodes(method, body):
        return
    if has_invalid_timestamp(method.request.FromString(body)):
        reject()


def _mutate(draw: st.DrawFn, body: bytes) -> bytes:
    cut = draw(st.integers(0, len(body)))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return body[:cut]
    if kind == 1 and body:
        at = min(cut, len(body) - 1)
        return body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
    if kind == 2:
        return body[:cut] + draw(st.binary(min_size=1, max_size=6)) + body[cut:]
    return body + body[:cut]


@st.composite
def _bodies(draw: st.DrawFn, method: Method) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    valid: Message = draw(requests(method))
    body = valid.SerializeToString()
    for _ in range(draw(st.integers(1, 3))):
        body = _mutate(draw, body)
    return body


@_BY_METHOD
@fuzz_settings(_SCALE)
@given(data=st.data())
def test_random_and_mutated_bodies(channel: grpc.Channel, method: Method, data: st.DataObject) -> None:
    sent = data.draw(_bodies(method), label="body")
    _skip_known_bugs(method, sent)
    check_answer(method, sent, *call(channel, method, sent))


@_BY_METHOD
@fuzz_settings(_SCALE)
@given(data=st.data())
def test_generated_requests(channel: grpc.Channel, method: Method, data: st.DataObject) -> None:
    sent = data.draw(requests(method), label="request").SerializeToString()
    check_answer(method, sent, *call(channel, method, sent))
