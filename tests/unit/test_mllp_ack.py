"""ACK contents: codes, MSA-2 echo, ERR fields, escaping, versions, custom encodings, enhanced mode."""

from __future__ import annotations

import pytest

from adapters.mllp.ack import (
    GATEWAY_APPLICATION,
    Outcome,
    ack_code,
    ack_control_id,
    build_ack,
    error_code,
    header_of,
    is_enhanced,
)
from adapters.mllp.client import parse_ack
from adapters.mllp.gateway import strict_fault
from canonical.errors import DecodeError, Fault
from canonical.hl7v2.parser import Hl7Message, Segment, parse_message
from tests.hl7_samples import adt, dft


def msg_of(raw: bytes) -> Hl7Message:
    return parse_message(raw)


def with_version(raw: bytes, version: str) -> bytes:
    return raw.replace(b"|P|2.5.1", b"|P|" + version.encode())


def with_accept_ack(raw: bytes, mode: str) -> bytes:
    # MSH-13 and MSH-14 empty, MSH-15 the accept acknowledgment type.
    return raw.replace(b"|P|2.5.1\r", b"|P|2.5.1|||" + mode.encode() + b"\r", 1)


def seg(ack: bytes, name: str) -> Segment:
    found = parse_message(ack).segment(name)
    assert found is not None, f"no {name} in {ack!r}"
    return found


FAULT = Fault(
    rule="HL7-STRICT-FIELD-MISSING",
    reason="PID-3 is required",
    message_id="CTRL1",
    segment="PID",
    field="PID-3",
    position=2,
)


def test_aa_swaps_sender_and_receiver_and_echoes_the_control_id() -> None:
    msg = msg_of(adt("A01", "CTRL1", "V1"))
    ack = build_ack(msg, msg.raw, "AA", None)
    assert ack.endswith(b"\r") and b"\n" not in ack
    parsed = parse_message(ack)
    msh = parsed.header
    assert (msh.get(3), msh.get(4), msh.get(5), msh.get(6)) == ("HCSYNC", "HCSYNC", "EPIC", "NMH")
    assert msh.get(9, 0).split("^") == ["ACK", "A01", "ACK"]
    assert parsed.control_id == "ACKCTRL1"
    assert msh.get(11) == "P"
    assert parsed.version == "2.5.1"
    assert (seg(ack, "MSA").get(1), seg(ack, "MSA").get(2)) == ("AA", "CTRL1")
    assert parsed.segment("ERR") is None
    result = parse_ack(ack)
    assert (result.code, result.control_id, result.positive, result.text) == ("AA", "CTRL1", True, "")


def test_ae_names_the_fault_in_err() -> None:
    msg = msg_of(adt("A01", "CTRL1", "V1"))
    ack = build_ack(msg, msg.raw, "AE", FAULT)
    err = seg(ack, "ERR")
    assert err.get(2, 0).split("^") == ["PID", "1", "3"]
    assert err.get(3, 1) == "101"
    assert err.get(3, 2) == "Required field missing"
    assert err.get(3, 3) == "HL70357"
    assert err.get(4) == "E"
    assert err.get(8) == FAULT.describe()
    assert seg(ack, "MSA").get(2) == "CTRL1"
    result = parse_ack(ack)
    assert not result.positive
    assert result.text == FAULT.describe()


def test_err_sequence_is_the_occurrence_of_the_segment() -> None:
    msg = msg_of(dft("D1", "V1", [("CG", "1", "a", 1, "1.00"), ("CG", "2", "b", 1, "2.00")]))
    second_ft1 = msg.segments_named("FT1")[1]
    fault = Fault(
        rule="HL7-FT1-11-AMOUNT", reason="bad", segment="FT1", field="FT1-11", position=second_ft1.index
    )
    err = seg(build_ack(msg, msg.raw, "AE", fault), "ERR")
    assert err.get(2, 0).split("^") == ["FT1", "2", "11"]
    assert err.get(3, 1) == "207"


def test_error_text_with_delimiters_is_escaped_and_reads_back_exactly() -> None:
    msg = msg_of(adt("A01", "CTRL1", "V1"))
    fault = Fault(rule="X", reason="a|b^c~d\\e&f #g", found="|^~\\&")
    ack = build_ack(msg, msg.raw, "AE", fault)
    err_line = next(line for line in ack.split(b"\r") if line.startswith(b"ERR"))
    # Only ERR's own delimiters remain: the nine fields up to ERR-8, and ERR-3's components.
    assert err_line.count(b"|") == 8
    assert b"\\F\\" in err_line and b"\\S\\" in err_line and b"\\R\\" in err_line and b"\\T\\" in err_line
    assert seg(ack, "ERR").get(8) == fault.describe()


def test_control_characters_cannot_break_the_segment_or_the_frame() -> None:
    msg = msg_of(adt("A01", "CTRL1", "V1"))
    fault = Fault(rule="X", reason="line1\rline2\nline3\x1c\x0bend")
    ack = build_ack(msg, msg.raw, "AE", fault)
    assert b"\x1c" not in ack and b"\x0b" not in ack and b"\n" not in ack
    assert len(parse_message(ack).segments) == 3
    assert "line1 line2 line3  end" in seg(ack, "ERR").get(8)


def test_long_error_text_is_cut_to_the_field_length() -> None:
    msg = msg_of(adt("A01", "CTRL1", "V1"))
    fault = Fault(rule="X", reason="|" * 5_000)
    err_line = next(
        line for line in build_ack(msg, msg.raw, "AE", fault).split(b"\r") if line.startswith(b"ERR")
    )
    err_8 = err_line.split(b"|")[8]
    assert 2_000 < len(err_8) <= 2_048
    assert err_8.endswith(b"\\F\\")


def test_unparsable_input_gets_ar_with_empty_msa2_in_the_default_encoding() -> None:
    with pytest.raises(DecodeError) as info:
        parse_message(b"NOT HL7 AT ALL\r")
    ack = build_ack(None, b"NOT HL7 AT ALL\r", "AR", info.value.fault)
    assert ack.startswith(b"MSH|^~\\&|" + GATEWAY_APPLICATION.encode() + b"|")
    parsed = parse_message(ack)
    assert parsed.version == "2.5"
    assert parsed.header.get(9, 0) == "ACK"
    assert seg(ack, "MSA").get(1) == "AR"
    assert seg(ack, "MSA").raw_field(2) == ""
    assert seg(ack, "ERR").get(3, 1) == "100"
    assert "HL7-MSH-MISSING" in seg(ack, "ERR").get(8)
    # The ACK id is still deterministic: the same bytes always get the same ACK id.
    assert parsed.control_id == ack_control_id("", b"NOT HL7 AT ALL\r")


def test_undecodable_message_with_a_readable_msh_still_echoes_msh10() -> None:
    raw = adt("A01", "CTRL9", "V1") + b"bad segment line\r"
    with pytest.raises(DecodeError) as info:
        parse_message(raw)
    assert header_of(raw) is not None
    ack = build_ack(None, raw, "AR", info.value.fault)
    assert seg(ack, "MSA").get(2) == "CTRL9"
    assert seg(ack, "ERR").get(3, 1) == "100"
    assert parse_message(ack).header.get(5) == "EPIC"


def test_header_of_finds_msh_after_noise_and_gives_up_without_one() -> None:
    found = header_of(b"\xef\xbb\xbfjunk\r" + adt("A01", "C7", "V1"))
    assert found is not None and found.control_id == "C7"
    assert header_of(b"no header here\rPID|1\r") is None


def test_v23_message_gets_a_v23_ack_with_err1_and_msa3() -> None:
    msg = msg_of(with_version(adt("A01", "CTRL23", "V1"), "2.3"))
    ack = build_ack(msg, msg.raw, "AE", FAULT)
    parsed = parse_message(ack)
    assert parsed.version == "2.3"
    assert parsed.header.get(9, 0).split("^") == ["ACK", "A01"]
    msa = seg(ack, "MSA")
    assert (msa.get(1), msa.get(2)) == ("AE", "CTRL23")
    assert msa.get(3) == "[HL7-STRICT-FIELD-MISSING] PID-3 is required"
    err = seg(ack, "ERR")
    assert (err.get(1, 1), err.get(1, 2), err.get(1, 3)) == ("PID", "1", "3")
    assert (err.get(1, 4, 1), err.get(1, 4, 2), err.get(1, 4, 3)) == (
        "101",
        "Required field missing",
        "HL70357",
    )
    assert parse_ack(ack).text == "[HL7-STRICT-FIELD-MISSING] PID-3 is required"


def test_v27_message_gets_a_v27_ack_without_a_truncation_character() -> None:
    msg = msg_of(with_version(adt("A01", "C#27", "V1"), "2.7"))
    ack = build_ack(msg, msg.raw, "AE", FAULT)
    assert ack.startswith(b"MSH|^~\\&|")
    parsed = parse_message(ack)
    assert parsed.version == "2.7"
    assert seg(ack, "MSA").get(2) == "C#27"
    assert seg(ack, "ERR").get(3, 1) == "101"
    assert seg(ack, "ERR").get(8) == FAULT.describe()


def test_v28_err_fields_stay_in_place() -> None:
    # hl7apy's v2.8 reference leaves out the withdrawn ERR-1; the ACK must still put ERR-2 in field 2.
    msg = msg_of(with_version(adt("A01", "CTRL28", "V1"), "2.8"))
    ack = build_ack(msg, msg.raw, "AE", FAULT)
    err = seg(ack, "ERR")
    assert err.raw_field(1) == ""
    assert err.get(2, 1) == "PID"
    assert err.get(3, 1) == "101"
    assert err.get(4) == "E"
    assert err.get(8) == FAULT.describe()


def test_version_hl7apy_does_not_know_falls_back_to_25() -> None:
    msg = msg_of(with_version(adt("A01", "CTRL29", "V1"), "2.9"))
    ack = build_ack(msg, msg.raw, "AA", None)
    assert parse_message(ack).version == "2.5"
    assert seg(ack, "MSA").get(2) == "CTRL29"


def test_custom_encoding_characters_are_answered_in_the_standard_set() -> None:
    raw = (
        b"MSH#$*!@#SND$X#FAC#RCV#RFAC#20260101##ADT$A01$ADT_A01#ID!S!42#P#2.5\rEVN#A01#20260101\rPID#1##M1\r"
    )
    msg = msg_of(raw)
    # The control id holds the inbound escape for "$", its component separator.
    assert msg.control_id == "ID$42"
    ack = build_ack(msg, raw, "AE", FAULT)
    assert ack.startswith(b"MSH|^~\\&|RCV|RFAC|SND^X|FAC|")
    assert seg(ack, "MSA").get(2) == "ID$42"
    assert parse_message(ack).header.get(9, 0).split("^") == ["ACK", "A01", "ACK"]


def test_control_id_that_needs_escaping_is_echoed_exactly() -> None:
    raw = adt("A01", "A\\S\\B", "V1")  # MSH-10 is "A^B" once unescaped
    msg = msg_of(raw)
    ack = build_ack(msg, raw, "AA", None)
    assert seg(ack, "MSA").get(2) == "A^B"
    assert parse_ack(ack).control_id == "A^B"


def test_ack_control_id_is_deterministic_and_fits_msh10() -> None:
    assert ack_control_id("CTRL1", b"") == "ACKCTRL1"
    long_id = "X" * 40
    first = ack_control_id(long_id, b"")
    assert first == ack_control_id(long_id, b"other bytes")
    assert len(first) == 20 and first.startswith("ACK")
    assert ack_control_id("X" * 39 + "Y", b"") != first
    assert ack_control_id("a|b", b"") != ack_control_id("a^b", b"")


def test_non_ascii_text_is_utf8_and_declared_in_msh18() -> None:
    msg = msg_of(adt("A01", "CTRL1", "V1"))
    ack = build_ack(msg, msg.raw, "AE", Fault(rule="X", reason="café"))
    assert parse_message(ack).charset == "UNICODE UTF-8"
    assert "café" in seg(ack, "ERR").get(8)
    plain = build_ack(msg, msg.raw, "AA", None)
    assert parse_message(plain).charset == ""


def test_commit_accept_in_enhanced_mode() -> None:
    msg = msg_of(with_accept_ack(adt("A01", "CTRLE", "V1"), "AL"))
    assert is_enhanced(msg)
    code = ack_code(msg, Outcome.ACCEPT)
    assert code == "CA"
    ack = build_ack(msg, msg.raw, code, None)
    assert (seg(ack, "MSA").get(1), seg(ack, "MSA").get(2)) == ("CA", "CTRLE")
    # A commit ACK asks for no acknowledgment of its own.
    assert parse_message(ack).accept_ack_type == "NE"
    assert parse_ack(ack).positive


@pytest.mark.parametrize(
    ("mode", "accept", "error", "reject"),
    [
        ("", "AA", "AE", "AR"),
        ("AL", "CA", "CE", "CR"),
        ("ER", None, "CE", "CR"),
        ("SU", "CA", None, None),
        ("NE", None, None, None),
        ("XX", "AA", "AE", "AR"),  # not a table 0155 value: original mode
    ],
)
def test_ack_code_follows_msh15(mode: str, accept: str | None, error: str | None, reject: str | None) -> None:
    raw = adt("A01", "CTRL1", "V1")
    msg = msg_of(with_accept_ack(raw, mode) if mode else raw)
    assert ack_code(msg, Outcome.ACCEPT) == accept
    assert ack_code(msg, Outcome.ERROR) == error
    assert ack_code(msg, Outcome.REJECT) == reject


def test_unreadable_message_is_answered_in_original_mode() -> None:
    assert ack_code(None, Outcome.REJECT) == "AR"


def test_build_ack_refuses_inconsistent_arguments() -> None:
    msg = msg_of(adt("A01", "CTRL1", "V1"))
    with pytest.raises(ValueError, match="acknowledgment code"):
        build_ack(msg, msg.raw, "OK", None)
    with pytest.raises(ValueError, match="ERR fault"):
        build_ack(msg, msg.raw, "AE", None)
    with pytest.raises(ValueError, match="ERR fault"):
        build_ack(msg, msg.raw, "AA", FAULT)


def test_error_codes_come_from_table_0357() -> None:
    assert error_code("HL7-MSH-MISSING") == "100"
    assert error_code("HL7-STRICT-FIELD-MISSING") == "101"
    assert error_code("HL7-CHARSET") == "102"
    assert error_code("HL7-STRICT-VERSION") == "203"
    assert error_code("SOMETHING-ELSE") == "207"


def test_strict_validation_names_a_missing_segment() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|S1|P|2.5\rPID|1||1||Doe\rPV1|1|I\r"
    fault = strict_fault(msg_of(raw))
    assert fault is not None
    assert (fault.rule, fault.segment, fault.message_id) == ("HL7-STRICT-SEGMENT-MISSING", "EVN", "S1")
    assert "Missing required child ADT_A01.EVN" in fault.reason
    ack = build_ack(msg_of(raw), raw, "AE", fault)
    assert seg(ack, "ERR").get(2, 0) == "EVN"
    assert seg(ack, "ERR").get(3, 1) == "100"


def test_strict_validation_names_a_missing_field() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|S2|P|2.5\rEVN|A01|20260101\rPID|1||||Doe\rPV1|1|I\r"
    msg = msg_of(raw)
    fault = strict_fault(msg)
    assert fault is not None
    assert (fault.rule, fault.segment, fault.field, fault.position) == (
        "HL7-STRICT-FIELD-MISSING",
        "PID",
        "PID-3",
        2,
    )
    err = seg(build_ack(msg, raw, "AE", fault), "ERR")
    assert err.get(2, 0).split("^") == ["PID", "1", "3"]
    assert err.get(3, 1) == "101"


def test_strict_validation_accepts_a_valid_message_and_flags_bad_data() -> None:
    assert strict_fault(msg_of(adt("A01", "S3", "V1"))) is None
    bad_date = (
        b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|S4|P|2.5\rEVN|A01|notadate\rPID|1||1||Doe\rPV1|1|I\r"
    )
    fault = strict_fault(msg_of(bad_date))
    assert fault is not None and fault.rule == "HL7-STRICT-DATATYPE"
    unknown_version = with_version(adt("A01", "S5", "V1"), "2.9")
    fault = strict_fault(msg_of(unknown_version))
    assert fault is not None and (fault.rule, fault.field) == ("HL7-STRICT-VERSION", "MSH-12")


def test_v21_has_no_msh15_so_its_acks_are_original_mode() -> None:
    from adapters.mllp.ack import Outcome, ack_code, build_ack
    from canonical.hl7v2.parser import parse_message

    raw = b"MSH|^~\\&|APP|FAC|RCV|RF|20240101||ADT^A01|C1|P|2.1|||AL\r"
    msg = parse_message(raw)
    code = ack_code(msg, Outcome.ACCEPT)
    assert code == "AA"
    assert b"MSA|AA|C1" in build_ack(msg, raw, code, None)
