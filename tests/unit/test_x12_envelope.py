"""Reading X12 files into interchanges as real senders deliver them, and locating envelope faults."""

from __future__ import annotations

import pytest

from canonical.errors import DecodeError
from canonical.x12.envelope import Interchange, read_interchanges
from tests.corpus import corpus_dir
from tests.x12_samples import interchange


def only(data: str | bytes) -> Interchange:
    [found] = read_interchanges(data.encode() if isinstance(data, str) else data, "claims.edi")
    return found


def test_an_interchange_reads_into_groups_and_transaction_sets() -> None:
    x = only(interchange())
    assert (x.control, x.version, x.ack_requested) == ("000000123", "00501", True)
    assert (x.delimiters.element, x.delimiters.component, x.delimiters.segment) == ("*", ":", "~")
    assert x.delimiters.repetition == "^"
    [group] = x.groups
    assert (group.control, group.functional_id, group.version) == ("77", "HC", "005010X222A1")
    assert [t.control for t in group.transactions] == ["0001", "0002"]
    first = group.transactions[0]
    assert [s.id for s in first.segments] == ["ST", "CLM", "HI", "SE"]
    clm = first.segments[1]
    assert (clm.element(1), clm.element(2), clm.element(5), clm.element(9)) == (
        "PATIENT-1",
        "125",
        "11:B:1",
        "",
    )
    assert first.position_of(clm) == 2 and clm.position == 4  # ISA 1, GS 2, ST 3
    assert x.faults == []


@pytest.mark.parametrize(
    "data",
    [
        "\ufeff" + interchange(),  # a UTF-8 byte-order mark
        interchange(after="\r\n"),  # CRLF after each terminator
        "\r\n" + interchange(after="\n") + "\n\n",  # blank lines before and after
        interchange(element="|", component=">", segment="\n", repetition="!"),  # a newline ends segments
        interchange(element="^", component="\\", segment="'", repetition="{"),
    ],
    ids=["bom", "crlf", "blank-lines", "newline-terminator", "other-delimiters"],
)
def test_what_real_senders_send_reads_the_same(data: str) -> None:
    x = only(data)
    assert x.faults == []
    assert [t.control for g in x.groups for t in g.transactions] == ["0001", "0002"]
    assert [s.id for s in x.groups[0].transactions[0].segments] == ["ST", "CLM", "HI", "SE"]


def test_each_interchange_of_a_file_reads_with_its_own_delimiters() -> None:
    data = interchange("000000001") + interchange("000000002", element="|", component=">", segment="\n")
    first, second = read_interchanges(data.encode(), "two.edi")
    assert (first.control, first.delimiters.element) == ("000000001", "*")
    assert (second.control, second.delimiters.element, second.delimiters.segment) == ("000000002", "|", "\n")
    assert first.faults == [] and second.faults == []
    assert second.text.startswith("ISA|") and first.text.rstrip().endswith("000000001~")


def test_isa11_is_a_repetition_separator_only_from_version_00402() -> None:
    assert only(interchange(repetition="U", version="00401")).delimiters.repetition is None
    assert only(interchange(repetition="^", version="00501")).delimiters.repetition == "^"


def test_a_trimmed_isa_still_reads() -> None:
    # Not fixed-width: senders trim the padded ISA elements; the delimiters are read by position.
    x = only(interchange().replace("SUBMITTER      ", "SUBMITTER").replace(" " * 10, ""))
    assert x.faults == [] and x.delimiters.component == ":"


@pytest.mark.parametrize(
    ("change", "located"),
    [
        (
            ("SE*4*0001", "SE*5*0001"),
            "ST02 0001, segment SE, field SE01, position 4: [X12-ENVELOPE] says 5 segments",
        ),
        (
            ("SE*3*0002", "SE*3*0009"),
            "ST02 0002, segment SE, field SE02, position 3: [X12-ENVELOPE] does not match",
        ),
        (
            ("GE*2*77", "GE*3*77"),
            "GS06 77, segment GE, field GE01, position 10: [X12-ENVELOPE] says 3 transaction",
        ),
        (("GE*2*77", "GE*2*78"), "GS06 77, segment GE, field GE02, position 10"),
        (("IEA*1*000000123", "IEA*2*000000123"), "ISA13 000000123, segment IEA, field IEA01, position 11"),
        (
            ("IEA*1*000000123", "IEA*1*000000999"),
            "segment IEA, field IEA02, position 11: [X12-ENVELOPE] does not",
        ),
        (("SE*3*0002~", ""), "ST02 0002, segment GE, position 9: [X12-ENVELOPE] SE missing before GE"),
        (("IEA*1*000000123~", ""), "segment IEA, position 11: [X12-ENVELOPE] IEA missing"),
    ],
    ids=["SE01", "SE02", "GE01", "GE02", "IEA01", "IEA02", "no-SE", "no-IEA"],
)
def test_envelope_faults_are_located_and_reading_goes_on(change: tuple[str, str], located: str) -> None:
    x = only(interchange().replace(*change))
    assert len(x.faults) >= 1
    described = [fault.describe() for fault in x.faults]
    assert any(located in text for text in described), described
    assert all(text.startswith("message claims.edi, ISA13 000000123") for text in described)


def test_a_segment_outside_a_transaction_set_is_a_fault() -> None:
    x = only(interchange().replace("GS*HC", "NM1*85*2~GS*HC"))
    [fault] = x.faults
    assert (fault.segment, fault.position, fault.reason) == ("NM1", 2, "segment outside any transaction set")


def test_a_ta1_between_isa_and_gs_is_kept_not_a_fault() -> None:
    ta1 = "TA1*000000555*261205*1200*A*000"
    x = only(interchange(body=f"{ta1}~IEA*0*000000123"))
    assert x.faults == [] and [s.id for s in x.loose] == ["TA1"] and x.groups == []


@pytest.mark.parametrize(
    ("data", "rule", "reason"),
    [
        (b"", "X12-ISA-MISSING", "the data is empty"),
        (b"MSH|^~\\&|EPIC\r", "X12-ISA-MISSING", "does not start with ISA"),
        (b"ISA*00*short~", "X12-ISA-INVALID", "fewer than 16 elements"),
        (b"ISAX00", "X12-ISA-INVALID", "element separator"),
    ],
)
def test_unreadable_data_is_a_located_decode_error(data: bytes, rule: str, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        read_interchanges(data, "in.edi")
    assert caught.value.fault.rule == rule and reason in caught.value.fault.reason
    assert caught.value.fault.message_id == "in.edi"


def test_data_after_the_last_interchange_is_refused_with_its_offset() -> None:
    data = interchange() + "junk"
    with pytest.raises(DecodeError) as caught:
        read_interchanges(data.encode())
    assert caught.value.fault.position == len(interchange())
    assert "after the last IEA" in caught.value.fault.reason


def test_every_corpus_file_reads_or_is_refused_located() -> None:
    root = corpus_dir("x12")
    files = interchanges = transactions = faulted = 0
    faults: list[str] = []
    for path in sorted((root / "x12").iterdir()):
        files += 1
        try:
            found = read_interchanges(path.read_bytes(), path.name)
        except DecodeError as exc:  # located: rule and file at least
            assert exc.fault.rule.startswith("X12-") and exc.fault.message_id == path.name
            faulted += 1
            continue
        interchanges += len(found)
        transactions += sum(len(g.transactions) for x in found for g in x.groups)
        faults += [fault.describe() for x in found for fault in x.faults]
    print(
        f"{files} files: {interchanges} interchanges, {transactions} transaction sets, {faulted} unreadable"
    )
    print("\n".join(faults))
    assert files and faulted == 0
    # One corpus file carries a real envelope fault (its SE02 is not its ST02): it must be the only one.
    assert (
        len(faults) == 1
        and "field SE02" in faults[0]
        and "subscriber-health-benefit-check-error" in faults[0]
    )
