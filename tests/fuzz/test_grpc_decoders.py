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
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.grpc_inputs import METHODS, Method, call, requests
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


def _phi_values(message: Message) -> set[str]:
    """Return the PHI string values anywhere in a request, those long enough to be told apart from words."""
    found: set[str] = set()
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                found |= _phi_values(item)
        elif field.name in _PHI_FIELDS and isinstance(value, str) and len(value.strip()) >= 4:
            found.add(value)
    return found


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
    echoed = [value for value in _phi_values(method.request.FromString(body)) if value in details]
    assert not echoed, f"{rpc}: the answer echoes PHI {echoed!r}: {details}"


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
    check_answer(method, sent, *call(channel, method, sent))


@_BY_METHOD
@fuzz_settings(_SCALE)
@given(data=st.data())
def test_generated_requests(channel: grpc.Channel, method: Method, data: st.DataObject) -> None:
    sent = data.draw(requests(method), label="request").SerializeToString()
    check_answer(method, sent, *call(channel, method, sent))
