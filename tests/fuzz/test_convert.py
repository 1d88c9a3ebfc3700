"""adapters/convert.py: canonical models with any values the contract allows become adapter requests.

Models are generated from their pydantic fields (canonical.models): strings of any Unicode (as decoded
bytes give them, so no lone surrogates), integers across int64 within each field's own bounds, aware
datetimes from year 1800 to 2200 (the mapper's bounds, canonical/hl7v2/datatypes.py) in any UTC offset,
enums, optional and nested models. Properties: every conversion returns a request (no exception at all: the
dispatcher calls these on events already accepted), and the request survives the wire (serialised, parsed
back, equal).

Values beyond int64 or beyond Timestamp's years are not generated: the canonical models do not bound them
(the mapper does, and test_targets.py checks that what the mapper emits converts), so such a model is not
the contract's but a caller's bug; see docs/security.md, "The fuzz suite".
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from collections.abc import Callable
from typing import Any

import annotated_types
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ValidationError

from adapters import convert
from canonical.models import (
    AccountMove,
    Charge,
    CodingUpdate,
    Encounter,
    EncounterStatus,
    InventoryMovement,
    JournalLine,
    Patient,
    PatientMerge,
)
from tests.fuzz.harness import fuzz_settings, time_bound

_INT64 = (-(2**63), 2**63 - 1)
_TEXT = st.text(max_size=12) | st.sampled_from(("", "NMH", "\u202e", "\U0001f600", "x" * 300, "\x00"))
_OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))
_DATETIMES = st.datetimes(
    min_value=dt.datetime(1800, 1, 1), max_value=dt.datetime(2200, 12, 31), timezones=_OFFSETS
)
_DATES = st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2200, 12, 31))


def _bounds(metadata: list[Any]) -> tuple[int, int]:
    low, high = _INT64
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = max(low, int(item.ge))
        elif isinstance(item, annotated_types.Gt):
            low = max(low, int(item.gt) + 1)
        elif isinstance(item, annotated_types.Le):
            high = min(high, int(item.le))
        elif isinstance(item, annotated_types.Lt):
            high = min(high, int(item.lt) - 1)
    return low, high


def _for(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    """Return a strategy for one field's annotation, honouring its numeric and length bounds."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_for(arg, metadata) for arg in typing.get_args(annotation)])
    if origin is tuple:
        return st.lists(_for(typing.get_args(annotation)[0], []), max_size=3).map(tuple)
    if annotation is type(None):
        return st.none()
    if annotation is str:
        minimum = max((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), default=0)
        return _TEXT.filter(lambda text: len(text) >= minimum) if minimum else _TEXT
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        low, high = _bounds(metadata)
        edges = [value for value in (low, high, 0, 1, -1, 10**13) if low <= value <= high]
        return st.sampled_from(edges) | st.integers(low, high)
    if annotation is AwareDatetime:
        return _DATETIMES
    if annotation is dt.date:
        return _DATES
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from(list(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return models(annotation)
    raise TypeError(f"no strategy for {annotation!r}: teach test_convert._for about it")


def models(cls: type[BaseModel]) -> st.SearchStrategy[Any]:
    """Return a strategy of valid ``cls`` instances: required fields always, optional ones at times."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in cls.model_fields.items():
        value = _for(info.annotation, info.metadata)
        fields[name] = value if info.is_required() else st.none() | value
    return (
        st.fixed_dictionaries(fields).map(lambda values: _valid(cls, values)).filter(lambda m: m is not None)
    )


def _valid(cls: type[BaseModel], values: dict[str, Any]) -> BaseModel | None:
    """Return the model, or None when its own validators refuse the combination (a debit and a credit)."""
    try:
        return cls.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError:
        return None


_AT = _DATETIMES
_CONVERSIONS: list[tuple[str, st.SearchStrategy[Any], Callable[[Any], Message]]] = [
    (
        "account_from",
        st.tuples(
            models(Encounter), st.none() | models(Patient), st.sampled_from(list(EncounterStatus)), _AT
        ),
        lambda a: convert.account_from(a[0], a[1], a[2].value, "e", "c", patient_as_of=a[3]),
    ),
    ("charge_from", models(Charge), lambda c: convert.charge_from(c, "e", "c")),
    ("patient_from", models(Patient), convert.patient_from),
    (
        "coding_request_from",
        st.tuples(models(CodingUpdate), _AT),
        lambda a: convert.coding_request_from(a[0], a[1], "k", "e", "c"),
    ),
    ("merge_request_from", models(PatientMerge), lambda m: convert.merge_request_from(m, "k", "e", "c")),
    (
        "patient_update_request_from",
        st.tuples(models(Patient), _AT),
        lambda a: convert.patient_update_request_from(a[0], a[1], "k", "e", "c"),
    ),
    (
        "move_request_from",
        st.tuples(models(AccountMove), _AT),
        lambda a: convert.move_request_from(a[0], a[1], "k", "e", "c"),
    ),
    ("journal_line_from", models(JournalLine), convert.journal_line_from),
    ("inventory_movement_from", models(InventoryMovement), convert.inventory_movement_from),
]


@fuzz_settings()
@given(data=st.data())
def test_every_canonical_model_converts_and_survives_the_wire(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from([name for name, _, _ in _CONVERSIONS]), label="conversion")
    _, strategy, conversion = next(c for c in _CONVERSIONS if c[0] == name)
    value = data.draw(strategy, label=name)
    with time_bound():
        message = conversion(value)
    assert type(message).FromString(message.SerializeToString()) == message
