"""The registry of byte-input fuzz targets: what each one decodes, and what "located" means for it.

Each :class:`ByteTarget` takes any bytes and either returns or raises an
:class:`~canonical.errors.HcsyncError` whose fault is located; its ``check`` asserts that and lets anything
else propagate, so the parametrised properties in test_targets.py fail on it. The same properties run over
every registered target.

Adding a decoder (X12 and FHIR when they land): append a ``ByteTarget`` to :data:`TARGETS` with its
``check`` (call the decoder, assert its faults are located as its module defines it) and its seeds (the
sample builders of its tests, and ``corpus`` naming its folder of the shared corpus, ``x12`` or ``fhir``);
random bytes, mutations of the seeds and, for the corpus, mutations of real files, then reach it with no
other change. A structure-aware generator of its own goes beside structured_messages in a module like
hl7_inputs.py, with a property in a test module of its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from adapters import convert
from canonical.envelope import (
    AccountMovePayload,
    ChargePayload,
    CodingPayload,
    EncounterPayload,
    EventEnvelope,
    MergePayload,
    PatientPayload,
)
from canonical.errors import DecodeError, MessageError
from canonical.hl7v2.mapping import canonicalize
from canonical.hl7v2.parser import Hl7Message, parse_message, split_messages
from canonical.hl7v2.strict import strict_fault
from canonical.models import EncounterStatus
from canonical.x12.acks import acknowledgments, read_acknowledgment
from canonical.x12.envelope import read_interchanges
from canonical.x12.read import ReadStatus, read_file
from canonical.x12.validate import IssueLevel, validate
from foundation.settings import Settings
from tests.fuzz.harness import assert_located, time_bound
from tests.fuzz.hl7_inputs import sample_seeds
from tests.x12_samples import (
    answer_sets,
    inquiry_sets,
    institutional_sets,
    professional_sets,
    remittance_sets,
    x12_file,
    x12_seeds,
)

__all__ = ["TARGETS", "ByteTarget", "check_events_convert"]

_AT = dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)
_SETTINGS = Settings()
# Strict validation is fuzzed at the limits the product runs it with.
_STRICT_MAX_BYTES = _SETTINGS.strict_validation_max_bytes
_STRICT_MAX_ELEMENTS = _SETTINGS.strict_validation_max_elements


@dataclass(frozen=True, slots=True)
class ByteTarget:
    """One decoder under fuzzing: ``check`` feeds it bytes, ``seeds`` are real inputs to mutate."""

    name: str
    check: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    # The shared corpus folders whose files are also mutated (empty: none); skipped cleanly when absent.
    corpus: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name


def _parsed(data: bytes) -> Hl7Message | None:
    """Return the parsed message, or None after checking the parser's refusal is located."""
    try:
        with time_bound():
            return parse_message(data)
    except DecodeError as exc:
        # The parser's "located": a rule, a reason and a position (byte offset or segment index).
        assert_located(exc.fault)
        assert exc.fault.position is not None, f"a parser refusal without a position: {exc.fault.describe()}"
        return None


def check_parse(data: bytes) -> None:
    """The fast parser over bytes; and its text entry point over the same bytes decoded leniently."""
    msg = _parsed(data)
    if msg is not None:
        # What was parsed reads back: every segment's fields split without error.
        for seg in msg.segments:
            for number in range(seg.field_count() + 1):
                seg.get(number)
                seg.get(number, 0)
                seg.repetitions(number)
    text = data.decode("utf-8", "surrogateescape")
    try:
        with time_bound():
            parse_message(text)
    except DecodeError as exc:
        assert_located(exc.fault)
        assert exc.fault.position is not None, exc.fault.describe()


def check_events_convert(events: list[EventEnvelope]) -> None:
    """Assert that every event survives the broker (JSON) and converts to the adapters' requests.

    An event the mapper emits is a promise that the rest of the pipeline can carry it: its JSON round trip
    is the Kafka hop, and adapters/convert.py builds the billing requests from its models.
    """
    for event in events:
        assert EventEnvelope.model_validate_json(event.model_dump_json()) == event
        payload = event.payload
        if isinstance(payload, EncounterPayload):
            convert.account_from(payload.encounter, payload.patient, EncounterStatus.ADMITTED.value, "e", "c")
        elif isinstance(payload, ChargePayload):
            convert.charge_from(payload.charge, "e", "c")
            convert.account_from(payload.encounter, payload.patient, EncounterStatus.ADMITTED.value, "e", "c")
        elif isinstance(payload, CodingPayload):
            convert.coding_request_from(payload.coding, event.occurred_at, "k", "e", "c")
        elif isinstance(payload, MergePayload):
            convert.merge_request_from(payload.merge, "k", "e", "c")
        elif isinstance(payload, PatientPayload):
            convert.patient_update_request_from(payload.patient, event.occurred_at, "k", "e", "c")
        elif isinstance(payload, AccountMovePayload):
            convert.move_request_from(payload.move, event.occurred_at, "k", "e", "c")


def check_canonical(data: bytes) -> None:
    """The mapper: events that convert, or a refusal naming the message, its rule and where."""
    msg = _parsed(data)
    if msg is None:
        return
    try:
        with time_bound():
            events = canonicalize(msg)
    except MessageError as exc:
        # The mapper's "located": the message's own MSH-10 (as parsed), a rule, a reason, and the segment,
        # field or position the rule is about.
        assert_located(exc.fault, message_id=msg.control_id)
        return
    check_events_convert(events)


def check_strict(data: bytes) -> None:
    """hl7apy strict validation at the product's limits: a fault or None, never an exception."""
    msg = _parsed(data)
    if msg is None:
        return
    with time_bound():
        fault = strict_fault(msg, max_bytes=_STRICT_MAX_BYTES, max_elements=_STRICT_MAX_ELEMENTS)
    if fault is not None:
        # Strict validation's "located": an HL7-STRICT rule and the message's MSH-10; hl7apy's text names
        # the element when it can, so segment and field are not required.
        assert fault.rule.startswith("HL7-STRICT-"), fault.describe()
        assert_located(fault, message_id=msg.control_id, where=False)


def check_stream(data: bytes) -> None:
    """A file or stream: split into messages, each parsed and mapped as above."""
    with time_bound():
        items = split_messages(data)
    for item in items:
        assert item, "split_messages returned an empty item"
        check_canonical(item)


def check_x12_envelope(data: bytes) -> None:
    """The X12 envelope reader: interchanges whose faults are located, or a located refusal."""
    try:
        with time_bound():
            found = read_interchanges(data, "fuzz.edi")
    except DecodeError as exc:
        # The reader's "located": an X12- rule, the file, and the offset the unreadable data starts at.
        assert exc.fault.rule.startswith("X12-"), exc.fault.describe()
        assert exc.fault.position is not None, exc.fault.describe()
        assert_located(exc.fault, message_id="fuzz.edi")
        return
    assert found, "read_interchanges returned no interchange without refusing"
    for interchange in found:
        for fault in interchange.faults:
            # An envelope fault's "located": the file and the interchange's ISA13, a segment or position.
            assert_located(fault)
            assert fault.message_id.startswith(f"fuzz.edi, ISA13 {interchange.control}"), fault.describe()


def check_x12_validate(data: bytes) -> None:
    """pyx12 validation and the 999/TA1 written from it: located issues, acks that read back, no crash."""
    try:
        with time_bound():
            found = read_interchanges(data, "fuzz.edi")
    except DecodeError:
        return  # the x12.envelope target holds the reader's refusals to being located
    for interchange in found:
        with time_bound():
            result = validate(interchange)
            acks = acknowledgments(result, sender=("ZZ", "HCSYNC"), control_number=1, at=_AT)
        for issue in result.all_issues():
            # An issue's "located": its interchange, a code and a reason; a segment's or element's issue
            # also its position in the set (its segment id too, unless the data has none).
            assert issue.isa13 == interchange.control and issue.code and issue.reason, issue.location()
            if issue.level in (IssueLevel.SEGMENT, IssueLevel.ELEMENT):
                assert issue.position is not None, issue.location()
        for text in acks.interchanges():
            # What hcsync sends back is itself a sound interchange that reads as an acknowledgment.
            [ack] = read_interchanges(text.encode(), "ack.edi")
            assert ack.faults == [], [fault.describe() for fault in ack.faults]
            read_acknowledgment(ack)


def check_x12_read(data: bytes) -> None:
    """The X12 reader: each set mapped, routed, or refused with faults naming its ISA13, GS06, ST02."""
    try:
        with time_bound():
            readings = read_file(data, "fuzz.edi")
    except DecodeError as exc:  # an unreadable ISA: the envelope reader's located refusal
        assert exc.fault.rule.startswith("X12-") and exc.fault.position is not None, exc.fault.describe()
        return
    for reading in readings:
        assert (reading.status is ReadStatus.ERROR) == bool(reading.errors), reading.describe()
        for fault in reading.errors:
            assert_located(fault)
            where = f"fuzz.edi, ISA13 {reading.isa13}, GS06 {reading.gs06}, ST02 {reading.st02}"
            assert fault.message_id == where, fault.describe()


def x12_read_seeds() -> list[bytes]:
    """The envelope seeds and one valid set of each type hcsync maps."""
    sets = [
        ("837", "005010X222A1", professional_sets()),
        ("837", "005010X223A2", institutional_sets()),
        ("835", "005010X221A1", remittance_sets()),
        ("270", "005010X279A1", inquiry_sets()),
        ("271", "005010X279A1", answer_sets()),
    ]
    return [*x12_seeds(), *(x12_file(st01, guide, [body]).encode() for st01, guide, body in sets)]


TARGETS: tuple[ByteTarget, ...] = (
    ByteTarget("hl7v2.parse", check_parse, sample_seeds, corpus=("hl7", "hl7_batch")),
    ByteTarget("hl7v2.canonical", check_canonical, sample_seeds, corpus=("hl7", "hl7_batch")),
    ByteTarget("hl7v2.strict", check_strict, sample_seeds, corpus=("hl7",)),
    ByteTarget("hl7v2.stream", check_stream, sample_seeds, corpus=("hl7_batch",)),
    ByteTarget("x12.envelope", check_x12_envelope, x12_seeds, corpus=("x12",)),
    ByteTarget("x12.validate", check_x12_validate, x12_seeds, corpus=("x12",)),
    ByteTarget("x12.read", check_x12_read, x12_read_seeds, corpus=("x12",)),
)
