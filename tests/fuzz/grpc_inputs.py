"""The gRPC side of the fuzz suite: a real adapter server, the methods under test, and request generation.

:class:`AdapterUnderTest` runs the BillingAdapter and the ErpAdapter services over their real SQLite
backends on one grpc.aio server with the :class:`~adapters.interceptors.UndecodableRequests` interceptor, as
adapters/server.py builds them, in a thread of its own; tests call it with raw bytes over a real channel.

:func:`requests` builds any request message from its protobuf descriptor: every field set or left out,
strings from ids that collide across calls to unicode and long text, integers from the extremes of their
type, enums including numbers they do not name, timestamps out of the range a Timestamp allows, repeated
fields, oneofs.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from adapters.billing.backend import SqlBillingBackend
from adapters.billing.service import BillingService
from adapters.erp.backend import SqlErpBackend
from adapters.erp.service import ErpService
from adapters.interceptors import UndecodableRequests
from proto import billing_pb2, billing_pb2_grpc, erp_pb2, erp_pb2_grpc
from tests.masterdata import ledger_set

__all__ = [
    "CALL_TIMEOUT_S",
    "MAX_SECONDS",
    "METHODS",
    "MIN_SECONDS",
    "OUT_OF_RANGE_TIMESTAMPS",
    "AdapterUnderTest",
    "Method",
    "call",
    "requests",
]

# Seconds one call may take before it counts as a hang (a loaded 2-core machine, SQLite on disk).
CALL_TIMEOUT_S = 30.0
_START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Method:
    """One unary method of an adapter service: its path and its request type."""

    path: str
    request: type[Message]

    def __str__(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _methods() -> tuple[Method, ...]:
    found: list[Method] = []
    for module in (billing_pb2, erp_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            method: MethodDescriptor
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                found.append(Method(path, GetMessageClass(method.input_type)))
    return tuple(found)


# Every method of proto/billing.proto and proto/erp.proto: a method added there is fuzzed with no change here.
METHODS = _methods()


class AdapterUnderTest:
    """Both adapter services on one real grpc.aio server, in a thread with its own event loop."""

    def __init__(self, folder: Path) -> None:
        self._billing = SqlBillingBackend(f"sqlite:///{folder / 'billing.db'}")
        masterdata = ledger_set()  # the ERP checks lines against master data in force: this set, fixed
        self._erp = SqlErpBackend(f"sqlite:///{folder / 'erp.db'}", lambda: masterdata)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzz-adapter", daemon=True)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def _start(self) -> None:
        server = grpc.aio.server(interceptors=[UndecodableRequests()])
        billing_pb2_grpc.add_BillingAdapterServicer_to_server(BillingService(self._billing), server)
        erp_pb2_grpc.add_ErpAdapterServicer_to_server(ErpService(self._erp), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(_START_TIMEOUT_S)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(_START_TIMEOUT_S)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_START_TIMEOUT_S)
            self._loop.close()
            self._billing.close()
            self._erp.close()


def call(channel: grpc.Channel, method: Method, body: bytes) -> tuple[grpc.StatusCode, str]:
    """Send ``body`` as the request of ``method``; return the status code and its details."""
    stub = channel.unary_unary(method.path)  # no serializers: the body goes out as it is
    try:
        stub(body, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


# Strings: ids that repeat across calls (so updates, replays and conflicts happen), then anything.
_IDS = (
    "NMH:V1",
    "NMH:V2",
    "NMH",
    "MRN001",
    "k1",
    "k2",
    "4000",
    "1000",
    "USD",
    "CG",
    "CD",
    "NDC",
    "2026-11-20",
)
_STRINGS = (
    st.sampled_from(_IDS)
    | st.sampled_from(("", " ", "x" * 5_000, "\u202e", "\U0001f600", "\x00", "2026-02-30", "9999-12-31"))
    | st.text(max_size=20)
)
_INT_BOUNDS = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
}
# Timestamp seconds and nanos: ordinary times, the edges of what a Timestamp may hold, and values beyond
# them (seconds past year 9999, nanos of a second or more), which the adapters refuse INVALID_ARGUMENT
# naming the field (they answered INTERNAL until the fuzz suite found it: test_known_bugs.py).
OUT_OF_RANGE_TIMESTAMPS = True
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799
_SECONDS = st.sampled_from((0, 1_795_000_000, MIN_SECONDS, MAX_SECONDS)) | st.integers(
    MIN_SECONDS, MAX_SECONDS
)
_NANOS = st.sampled_from((0, 999_999_999)) | st.integers(0, 999_999_999)
if OUT_OF_RANGE_TIMESTAMPS:
    _SECONDS |= st.sampled_from((MAX_SECONDS + 1, MIN_SECONDS - 1, 2**63 - 1, -(2**63)))
    _NANOS |= st.sampled_from((1_000_000_000, -1, 2**31 - 1))
# Keys a write is recorded under: usually fresh (uuid4 at each draw, so a replayed example is not a replay
# of the write and hypothesis can shrink it), sometimes one of a few shared ones, so replays and reused keys
# with different content happen too.
_KEY_FIELDS = frozenset({"idempotency_key", "charge_id", "line_id", "movement_id"})


def _integer(draw: st.DrawFn, field: FieldDescriptor) -> int:
    low, high = _INT_BOUNDS[field.type]
    if field.type == FieldDescriptor.TYPE_ENUM:
        named = [value.number for value in field.enum_type.values]
        return draw(st.sampled_from(named) | st.sampled_from((low, -1, max(named) + 1, high)))
    edges = (0, 1, -1, 2, 100, 10**6, 10**13, low, high, low + 1, high - 1, high // 2 + 1, -(high // 2) - 1)
    return draw(st.sampled_from([e for e in edges if low <= e <= high]) | st.integers(low, high))


def _value(draw: st.DrawFn, field: FieldDescriptor, depth: int) -> object:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(draw, field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        if field.name in _KEY_FIELDS and draw(st.integers(0, 3)):
            return uuid.uuid4().hex
        return draw(_STRINGS)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return draw(st.binary(max_size=20))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return draw(st.booleans())
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return draw(st.floats(allow_nan=True, allow_infinity=True, width=32))
    return _integer(draw, field)


def _message(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    message = GetMessageClass(descriptor)()
    if descriptor.full_name == "google.protobuf.Timestamp":
        message.seconds = draw(_SECONDS)  # type: ignore[attr-defined]
        message.nanos = draw(_NANOS)  # type: ignore[attr-defined]
        return message
    chosen_oneofs = {
        oneof.name: draw(st.sampled_from(list(oneof.fields))).name for oneof in descriptor.oneofs
    }
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen_oneofs[oneof.name] != field.name:
            continue
        if depth > 3 or not draw(st.integers(0, 4)):
            continue  # left out
        if field.is_repeated:
            items = [_value(draw, field, depth) for _ in range(draw(st.integers(0, 3)))]
            container = getattr(message, field.name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in items:
                    container.add().CopyFrom(item)
            else:
                container.extend(items)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(_value(draw, field, depth))
        else:
            setattr(message, field.name, _value(draw, field, depth))
    return message


@st.composite
def requests(draw: st.DrawFn, method: Method) -> Message:
    """Return a request of ``method``'s type with generated field values."""
    return _message(draw, method.request.DESCRIPTOR)
