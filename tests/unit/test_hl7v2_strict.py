"""Strict validation: hl7apy's faults located, and the size caps that keep one validation bounded in time."""

from __future__ import annotations

import functools
import pickle
import time

import pytest
from pydantic import ValidationError

from adapters.mllp.ack import build_ack
from canonical.errors import Fault
from canonical.hl7v2.parser import Hl7Message, Segment, parse_message, split_messages
from canonical.hl7v2.strict import TOO_LARGE_RULE, element_count, strict_fault
from foundation.settings import Settings
from tests.corpus import fast_parser_refusals, hl7_files
from tests.hl7_samples import adt

DEFAULT_MAX_BYTES: int = Settings.model_fields["strict_validation_max_bytes"].default
DEFAULT_MAX_ELEMENTS: int = Settings.model_fields["strict_validation_max_elements"].default
PID_3 = "MRN001^^^NMH^MR"


def strict(
    msg: Hl7Message, max_bytes: int = DEFAULT_MAX_BYTES, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> Fault | None:
    return strict_fault(msg, max_bytes=max_bytes, max_elements=max_elements)


def err_of(msg: Hl7Message, fault: Fault) -> Segment:
    found = parse_message(build_ack(msg, msg.raw, "AE", fault)).segment("ERR")
    assert found is not None
    return found


def with_repetitions(value: str, count: int) -> Hl7Message:
    """Return the ADT^A01 sample with PID-3 replaced by ``count`` repetitions of ``value``."""
    return parse_message(adt("A01", "BIG1", "V1").replace(PID_3.encode(), "~".join([value] * count).encode()))


def worst_case(elements: int) -> Hl7Message:
    """Return an ADT^A01 with exactly ``elements`` elements, the extra ones repetitions of PV1-17.

    A repetition of a short value is the costliest element found (see canonical/hl7v2/strict.py).
    """
    base = adt("A01", "WORST1", "V1").decode()
    pv1 = base.split("\r")[3].split("|")
    plain = parse_message(base.encode())
    repetitions = elements - element_count(plain) + 1
    pv1[17] = "~".join(["1"] * repetitions)
    msg = parse_message(base.replace(base.split("\r")[3], "|".join(pv1)).encode())
    assert element_count(msg) == elements
    return msg


# -- hl7apy's faults, located -------------------------------------------------------------------------


def test_a_missing_segment_is_named() -> None:
    msg = parse_message(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|S1|P|2.5\rPID|1||1||Doe\rPV1|1|I\r")
    fault = strict(msg)
    assert fault is not None
    assert (fault.rule, fault.segment, fault.message_id) == ("HL7-STRICT-SEGMENT-MISSING", "EVN", "S1")
    assert "Missing required child ADT_A01.EVN" in fault.reason
    err = err_of(msg, fault)
    assert err.get(2, 0) == "EVN"
    assert err.get(3, 1) == "100"


def test_a_missing_field_is_located() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|S2|P|2.5\rEVN|A01|20260101\rPID|1||||Doe\rPV1|1|I\r"
    msg = parse_message(raw)
    fault = strict(msg)
    assert fault is not None
    assert (fault.rule, fault.segment, fault.field, fault.position) == (
        "HL7-STRICT-FIELD-MISSING",
        "PID",
        "PID-3",
        2,
    )
    err = err_of(msg, fault)
    assert err.get(2, 0).split("^") == ["PID", "1", "3"]
    assert err.get(3, 1) == "101"


def test_a_valid_message_passes_and_bad_data_or_versions_do_not() -> None:
    assert strict(parse_message(adt("A01", "S3", "V1"))) is None
    bad_date = (
        b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|S4|P|2.5\rEVN|A01|notadate\rPID|1||1||Doe\rPV1|1|I\r"
    )
    fault = strict(parse_message(bad_date))
    assert fault is not None and fault.rule == "HL7-STRICT-DATATYPE"
    unknown_version = adt("A01", "S5", "V1").replace(b"|P|2.5.1", b"|P|2.9")
    fault = strict(parse_message(unknown_version))
    assert fault is not None and (fault.rule, fault.field) == ("HL7-STRICT-VERSION", "MSH-12")


# -- the caps -----------------------------------------------------------------------------------------


def test_a_repetition_bomb_is_refused_up_front_naming_the_field() -> None:
    # 20 KB, 10,000 repetitions of PID-3: 3.1 s in hl7apy before the caps existed.
    msg = with_repetitions("1", 10_000)
    started = time.perf_counter()
    fault = strict(msg)
    elapsed = time.perf_counter() - started
    assert fault is not None
    assert (fault.rule, fault.message_id) == (TOO_LARGE_RULE, "BIG1")
    assert (fault.segment, fault.field, fault.position) == ("PID", "PID-3", 2)
    assert f"{element_count(msg)} elements" in fault.reason and f"{DEFAULT_MAX_ELEMENTS}" in fault.reason
    assert "without being validated" in fault.reason
    # Counting is a few string scans; hl7apy would have taken seconds.
    assert elapsed < 0.5
    err = err_of(msg, fault)
    assert err.get(2, 0).split("^") == ["PID", "1", "3"]
    assert err.get(3, 1) == "207"
    assert TOO_LARGE_RULE in err.get(8)


def test_the_element_cap_is_inclusive() -> None:
    msg = parse_message(adt("A01", "EDGE1", "V1"))
    count = element_count(msg)
    assert strict(msg, max_elements=count) is None
    refused = strict(msg, max_elements=count - 1)
    assert refused is not None and refused.rule == TOO_LARGE_RULE


def test_the_byte_cap_is_inclusive_and_names_the_size() -> None:
    msg = parse_message(adt("A01", "EDGE2", "V1"))
    size = len(msg.raw)
    assert strict(msg, max_bytes=size) is None
    refused = strict(msg, max_bytes=size - 1)
    assert refused is not None
    assert (refused.rule, refused.message_id, refused.segment) == (TOO_LARGE_RULE, "EDGE2", "")
    assert f"{size} bytes" in refused.reason and f"{size - 1}" in refused.reason


def test_elements_are_counted_with_the_messages_own_delimiters() -> None:
    # "#" separates fields here; "|", "^" and "~" in the data are text, and hl7apy splits on none of them.
    custom = parse_message(b"MSH#$*!@#SND#FAC#RCV#RFAC#20260101##ADT$A01$ADT_A01#ID1#P#2.5\rNTE#1##a|b^c~d\r")
    standard = parse_message(b"MSH|^~\\&|SND|FAC|RCV|RFAC|20260101||ADT^A01^ADT_A01|ID1|P|2.5\rNTE|1||abcd\r")
    assert element_count(custom) == element_count(standard)
    # One per segment, one per delimiter (MSH-2 holds one of each).
    assert element_count(standard) == 2 + 11 + 5 + 3


def test_limits_must_be_positive() -> None:
    msg = parse_message(adt("A01", "L1", "V1"))
    with pytest.raises(ValueError, match="max_elements=0"):
        strict_fault(msg, max_bytes=1, max_elements=0)
    with pytest.raises(ValueError, match="max_bytes=0"):
        strict_fault(msg, max_bytes=0, max_elements=1)


def test_worst_case_at_the_default_caps_is_bounded() -> None:
    """Measure the costliest message the default caps let through (run with -s to see the time)."""
    msg = worst_case(DEFAULT_MAX_ELEMENTS)
    strict(parse_message(adt("A01", "WARM", "V1")))  # hl7apy loads its v2.5.1 reference once
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(3):
        started, started_cpu = time.perf_counter(), time.thread_time()
        fault = strict(msg)
        wall.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
        assert fault is None or fault.rule != TOO_LARGE_RULE
    over = strict(worst_case(DEFAULT_MAX_ELEMENTS + 1))
    assert over is not None and over.rule == TOO_LARGE_RULE
    print(
        f"\nstrict validation, worst case at the default cap ({DEFAULT_MAX_ELEMENTS} elements, "
        f"{len(msg.raw)} bytes): CPU {min(cpu):.3f} to {max(cpu):.3f} s, "
        f"wall {min(wall):.3f} to {max(wall):.3f} s"
    )
    # About 0.3 s of CPU on 2 cores; the margin absorbs a slower CI machine, not a missing cap.
    assert min(cpu) < 1.5


def test_the_strict_check_pickles_for_a_ray_actor() -> None:
    check = functools.partial(strict_fault, max_bytes=DEFAULT_MAX_BYTES, max_elements=10)
    msg = with_repetitions("1", 50)
    copy = pickle.loads(pickle.dumps(check))
    fault = copy(pickle.loads(pickle.dumps(msg)))
    assert fault == check(msg)
    assert fault is not None and pickle.loads(pickle.dumps(fault)) == fault


def test_the_caps_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCSYNC_STRICT_VALIDATION_MAX_BYTES", "4096")
    monkeypatch.setenv("HCSYNC_STRICT_VALIDATION_MAX_ELEMENTS", "50")
    settings = Settings()
    assert (settings.strict_validation_max_bytes, settings.strict_validation_max_elements) == (4096, 50)
    monkeypatch.setenv("HCSYNC_STRICT_VALIDATION_MAX_ELEMENTS", "0")
    with pytest.raises(ValidationError, match="strict_validation_max_elements"):
        Settings()


def test_the_default_caps_let_every_corpus_message_through() -> None:
    counted = 0
    refused = fast_parser_refusals()
    for path in hl7_files("hl7", "hl7_batch"):
        for n, raw in enumerate(split_messages(path.read_bytes()), 1):
            try:
                msg = parse_message(raw)
            except refused.kinds as exc:  # never reaches the strict check: quarantined before it
                refused.note(f"{path.name} message {n}", exc, raw)
                continue
            counted += 1
            assert len(msg.raw) <= DEFAULT_MAX_BYTES, f"{path.name}: {len(msg.raw)} bytes"
            assert element_count(msg) <= DEFAULT_MAX_ELEMENTS, f"{path.name}: {element_count(msg)} elements"
    refused.check()
    assert counted > 100, f"only {counted} corpus messages checked ({refused.summary()})"
