"""pyx12 validation of one interchange at a time: nearest maps, unmapped guides, located PHI-free issues."""

from __future__ import annotations

import collections
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import pyx12

from canonical.errors import ConfigurationError
from canonical.x12 import maps
from canonical.x12.envelope import Interchange, read_interchanges
from canonical.x12.validate import (
    GroupVerdict,
    InterchangeValidation,
    IssueLevel,
    SetVerdict,
    X12Issue,
    validate,
)
from tests.corpus import corpus_dir
from tests.x12_samples import interchange

# A member's name and id the tests put in claims: no issue may echo them.
MEMBER_NAME = "WASHINGTONIA"
MEMBER_ID = "M0OO7ZQ123"


def professional_claims(
    claims: int,
    *,
    guide: str = "005010X222A1",
    control: str = "000000101",
    sender: str = "CLINIC",
    element: str = "*",
    component: str = ":",
    terminator: str = "~",
    ack_requested: str = "0",
    seed: int = 5,
) -> str:
    """A clean 837P interchange of ``claims`` claims (2 to 4 lines each, a quarter for dependents).

    Built the way the research built its 1,000-claim file: every segment a 5010 837P guide requires, a
    9-digit billing ZIP, balanced claims. pyx12 accepts it with the X222A1 map.
    """
    rnd = random.Random(seed)
    e, c = element, component
    segs: list[list[str]] = [
        ["ST", "837", "0001", guide],
        ["BHT", "0019", "00", "BATCH0001", "20261205", "1200", "CH"],
        ["NM1", "41", "2", "GENERAL HOSPITAL BILLING", "", "", "", "", "46", "TGJ23"],
        ["PER", "IC", "BILLING OFFICE", "TE", "5555551234"],
        ["NM1", "40", "2", "EXAMPLE PAYER", "", "", "", "", "46", "66783JJT"],
        ["HL", "1", "", "20", "1"],
        ["PRV", "BI", "PXC", "207Q00000X"],
        ["NM1", "85", "2", "GENERAL HOSPITAL", "", "", "", "", "XX", "1234567893"],
        ["N3", "100 MAIN ST"],
        ["N4", "SPRINGFIELD", "IL", "627010001"],
        ["REF", "EI", "123456789"],
    ]
    hl = 1
    for i in range(claims):
        dependent = rnd.random() < 0.25
        hl += 1
        subscriber = hl
        segs += [
            ["HL", str(hl), "1", "22", "1" if dependent else "0"],
            ["SBR", "P", "" if dependent else "18", f"GRP{i % 50:04d}", "", "", "", "", "", "CI"],
            ["NM1", "IL", "1", f"{MEMBER_NAME}{i}", "JOHN", "", "", "", "MI", f"{MEMBER_ID}{i}"],
            ["N3", "1 ELM ST"],
            ["N4", "SPRINGFIELD", "IL", "62701"],
            ["DMG", "D8", "19700101", "M"],
            ["NM1", "PR", "2", "EXAMPLE PAYER", "", "", "", "", "PI", "66783JJT"],
        ]
        if dependent:
            hl += 1
            segs += [
                ["HL", str(hl), str(subscriber), "23", "0"],
                ["PAT", "19"],
                ["NM1", "QC", "1", f"{MEMBER_NAME}{i}", "JANE"],
                ["N3", "1 ELM ST"],
                ["N4", "SPRINGFIELD", "IL", "62701"],
                ["DMG", "D8", "20100101", "F"],
            ]
        amounts = [Decimal(rnd.randint(2500, 90000)) / 100 for _ in range(rnd.randint(2, 4))]
        segs += [
            ["CLM", f"ACCT{i:07d}", str(sum(amounts)), "", "", c.join(["11", "B", "1"]), "Y", "A", "Y", "Y"],
            ["HI", c.join(["ABK", "J069"]), c.join(["ABF", "R509"])],
        ]
        for line, amount in enumerate(amounts, 1):
            segs += [
                ["LX", str(line)],
                ["SV1", c.join(["HC", f"9921{line}"]), str(amount), "UN", "1", "", "", c.join(["1", "2"])],
                ["DTP", "472", "D8", "20261201"],
            ]
    segs.append(["SE", str(len(segs) + 1), "0001"])
    isa = [
        "ISA", "00", " " * 10, "00", " " * 10, "ZZ", sender.ljust(15), "ZZ", "EXAMPLEPAYER".ljust(15),
        "261205", "1200", "^", "00501", control, ack_requested, "T", c,
    ]  # fmt: skip
    gs = ["GS", "HC", sender, "EXAMPLEPAYER", "20261205", "1200", "101", "X", guide]
    rows = [isa, gs, *segs, ["GE", "1", "101"], ["IEA", "1", control]]
    return "".join(e.join(row) + terminator for row in rows)


def read_one(text: str, source: str = "test.edi") -> Interchange:
    [found] = read_interchanges(text.encode(), source)
    return found


def issues_of(v: InterchangeValidation) -> list[X12Issue]:
    return v.all_issues()


def assert_no_phi(v: InterchangeValidation) -> None:
    for issue in issues_of(v):
        text = issue.location()
        assert MEMBER_NAME not in text and MEMBER_ID not in text, text


def test_a_clean_837p_is_accepted_with_the_x222a1_map() -> None:
    v = validate(read_one(professional_claims(3)))
    [group] = v.groups
    [one] = group.sets
    assert (group.verdict, one.verdict) == (GroupVerdict.ACCEPTED, SetVerdict.ACCEPTED)
    assert one.validated_with == "X222A1 map" and one.issues == () and one.guide == "005010X222A1"
    assert (group.declared_sets, group.accepted_sets) == (1, 1)
    assert not v.ta1_needed and v.ta1_code == "000" and v.issues == ()


def test_x222a2_is_validated_with_the_nearest_map_and_says_so() -> None:
    v = validate(read_one(professional_claims(3, guide="005010X222A2")))
    [one] = v.groups[0].sets
    assert one.verdict is SetVerdict.ACCEPTED, [i.location() for i in one.issues]
    assert one.validated_with == "X222A1 map (nearest to X222A2)"


def test_an_element_error_is_located_and_does_not_echo_the_data() -> None:
    text = professional_claims(2).replace(f"MI*{MEMBER_ID}0~", f"MI*{MEMBER_ID}0{'9' * 80}~")
    text = text.replace("*11:B:1*", "*XX:B:1*", 1)
    v = validate(read_one(text))
    [one] = v.groups[0].sets
    assert one.verdict is SetVerdict.REJECTED and v.groups[0].verdict is GroupVerdict.REJECTED
    place = [i for i in one.issues if i.element == "CLM05-1"]
    assert place and place[0].code == "7" and place[0].level is IssueLevel.ELEMENT
    assert place[0].segment_id == "CLM" and place[0].loop_id == "2300" and place[0].element_ref == "1331"
    assert place[0].location().startswith("ISA13 000000101, GS06 101, ST02 0001, segment CLM at ")
    assert "element CLM05-1: [IK4 7] invalid code value: Place of Service Code" in place[0].location()
    too_long = [i for i in one.issues if i.element == "NM109"]
    assert too_long and too_long[0].code == "5" and "(length 91, maximum 80)" in too_long[0].reason
    assert "XX" not in place[0].reason
    assert_no_phi(v)
    assert one.codes == ("5",)


def test_a_segment_out_of_place_is_an_ik3() -> None:
    text = professional_claims(1).replace("~HI*", "~ZZZ*1~HI*", 1)
    [one] = validate(read_one(text)).groups[0].sets
    [found] = [i for i in one.issues if i.segment_id == "ZZZ"]
    assert (found.level, found.code, found.element) == (IssueLevel.SEGMENT, "1", "")
    # ST is 1: the ZZZ sits right after the claim's CLM.
    clm = next(i for i, s in enumerate(read_one(text).groups[0].transactions[0].segments, 1) if s.id == "CLM")
    assert found.position == clm + 1


def test_guides_pyx12_has_no_map_for_are_not_validated_but_their_envelope_is_checked() -> None:
    body = "~".join(
        [
            "GS*HC*SUB*REC*20261205*1200*77*X*005010X222A1",
            *professional_claims(1).split("~")[2:-3],
            "GE*1*77",
            "GS*HS*SUB*REC*20261205*1200*78*X*005010X279A1",
            "ST*270*0002*005010X279A1",
            "BHT*0022*13*10001234*20261205*1319",
            "SE*3*0009",
            "GE*1*78",
            "IEA*2*000000123",
        ]
    )
    v = validate(read_one(interchange(body=body)))
    claims, eligibility = v.groups
    assert claims.verdict is GroupVerdict.ACCEPTED, [i.location() for i in v.all_issues()]
    assert eligibility.validated_with == "no pyx12 map for 005010X279A1 (GS01 HS): envelope checked only"
    [inquiry] = eligibility.sets
    # The envelope fault (SE02 is not ST02) still counts.
    assert inquiry.verdict is SetVerdict.REJECTED and eligibility.verdict is GroupVerdict.REJECTED
    [fault] = inquiry.issues
    assert (fault.level, fault.code, fault.element, fault.st02, fault.gs06) == (
        IssueLevel.SET,
        "3",
        "SE02",
        "0002",
        "78",
    )


def test_004010_content_is_not_validated_and_says_why() -> None:
    text = interchange(version="00401", repetition="U").replace("005010X222A1", "004010X098A1")
    v = validate(read_one(text))
    [group] = v.groups
    assert group.verdict is GroupVerdict.NOT_VALIDATED
    assert group.validated_with == (
        "version 004010X098A1 not handled (hcsync validates 005010): envelope checked only"
    )
    assert {s.verdict for s in group.sets} == {SetVerdict.NOT_VALIDATED}


@pytest.mark.parametrize(
    ("change", "level", "code", "element"),
    [
        (("IEA*1*000000101", "IEA*1*000000999"), IssueLevel.INTERCHANGE, "001", "IEA02"),
        (("IEA*1*000000101", "IEA*3*000000101"), IssueLevel.INTERCHANGE, "021", "IEA01"),
        (("IEA*1*000000101~", ""), IssueLevel.INTERCHANGE, "023", ""),
        (("GE*1*101", "GE*1*102"), IssueLevel.GROUP, "4", "GE02"),
        (("GE*1*101", "GE*2*101"), IssueLevel.GROUP, "5", "GE01"),
    ],
    ids=["IEA02", "IEA01", "no-IEA", "GE02", "GE01"],
)
def test_envelope_faults_map_to_ta1_and_ak9_codes(
    change: tuple[str, str], level: IssueLevel, code: str, element: str
) -> None:
    v = validate(read_one(professional_claims(1).replace(*change)))
    found = [i for i in v.all_issues() if i.level is level]
    assert [(i.code, i.element) for i in found] == [(code, element)], [i.location() for i in v.all_issues()]
    if level is IssueLevel.INTERCHANGE:
        assert v.ta1_needed and v.ta1_code == code and v.ta1_verdict == "R"
    else:
        assert not v.ta1_needed and v.groups[0].verdict is GroupVerdict.REJECTED
        assert v.groups[0].codes == (code,)


def test_se01_counts_once_though_pyx12_finds_it_too() -> None:
    text = professional_claims(1)
    count = text.split("~SE*")[1].split("*")[0]
    v = validate(read_one(text.replace(f"~SE*{count}*", f"~SE*{int(count) + 1}*")))
    [one] = v.groups[0].sets
    assert [(i.level, i.code, i.element) for i in one.issues] == [(IssueLevel.SET, "4", "SE01")]
    assert one.codes == ("4",)


def test_each_interchange_of_a_file_is_validated_with_its_own_delimiters() -> None:
    data = professional_claims(2, control="000000001") + professional_claims(
        2, control="000000002", element="|", component=">", terminator="\n"
    )
    first, second = (validate(x) for x in read_interchanges(data.encode(), "two.edi"))
    assert (first.interchange.control, second.interchange.control) == ("000000001", "000000002")
    assert first.groups[0].verdict is GroupVerdict.ACCEPTED
    assert second.groups[0].verdict is GroupVerdict.ACCEPTED, [i.location() for i in second.all_issues()]


def test_an_isa_that_cannot_be_fixed_width_is_an_interchange_issue() -> None:
    text = professional_claims(1).replace("CLINIC         ", "CLINIC-WITH-A-VERY-LONG-ID")
    v = validate(read_one(text))
    assert [(i.code, i.element) for i in v.issues] == [("006", "ISA06")]
    assert v.ta1_needed and v.groups[0].verdict is GroupVerdict.NOT_VALIDATED


def test_the_nearest_maps_are_built_once_and_maps_are_parsed_once(tmp_path: Path) -> None:
    built = maps.nearest_maps(tmp_path)
    assert built == maps.nearest_maps(tmp_path) and (built / "maps.xml").is_file()
    assert "005010X222A2" in (built / "maps.xml").read_text()
    assert maps.load_map("837.5010.X222.A1.xml", built) is maps.load_map("837.5010.X222.A1.xml", built)


def test_pyx12_maps_that_no_longer_take_the_patches_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "map"
    shutil.copytree(Path(pyx12.__file__).parent / "map", folder)
    index = folder / "maps.xml"
    index.write_text(index.read_text().replace('vriic="005010X222A1"', 'vriic="005010X222A9"'))
    with pytest.raises(ConfigurationError, match="maps changed"):
        maps._patch(folder)


def test_validation_from_several_threads_gives_what_one_thread_gives() -> None:
    # The maps are shared by every thread of the process (parsed once, behind a lock).
    inputs = [
        read_one(professional_claims(40, seed=seed, guide=guide))
        for seed, guide in [
            (1, "005010X222A1"),
            (2, "005010X222A2"),
            (3, "005010X222A1"),
            (4, "005010X222A2"),
        ]
    ]
    inputs.append(read_one(professional_claims(40).replace("*11:B:1*", "*XX:B:1*")))
    maps.forget_maps()
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(validate, inputs * 2))
    alone = [validate(x) for x in inputs * 2]
    assert together == alone
    assert [g.verdict for v in alone for g in v.groups][-1] is GroupVerdict.REJECTED


def _corpus_validations() -> list[tuple[str, InterchangeValidation]]:
    root = corpus_dir("x12")
    return [
        (path.name, validate(x))
        for path in sorted((root / "x12").iterdir())
        for x in read_interchanges(path.read_bytes(), path.name)
    ]


def test_every_corpus_file_validates_without_an_exception() -> None:
    results = _corpus_validations()
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for _name, v in results:
        for group in v.groups:
            for one in group.sets:
                counts[(one.code, one.guide, one.verdict.value)] += 1
        for issue in v.all_issues():
            assert issue.isa13 == v.interchange.control and issue.code and issue.reason
    print(f"\n{len(results)} interchanges, {sum(counts.values())} transaction sets; verdicts by guide:")
    for (code, guide, verdict), count in sorted(counts.items()):
        print(f"  {code} {guide:14} {verdict:14} {count}")
    assert len(results) == 98 and sum(counts.values()) == 127
    # What pyx12 has a map for is validated (nearest maps included); what it has none for says so.
    for (code, guide, verdict), _count in counts.items():
        mapped = guide in ("005010X222A2", "005010X223A3", "005010X221A1", "005010X220A1", "005010X231")
        assert (verdict != "NOT_VALIDATED") == mapped or (code, verdict) == ("271", "R"), (code, guide)
    assert counts[("837", "005010X222A2", "A")] == 11 and counts[("837", "005010X222A2", "R")] == 7


def test_known_bad_corpus_files_are_rejected_with_the_located_issue() -> None:
    results = dict(_corpus_validations())
    # The one envelope fault of the corpus: a 271 whose SE02 is not its ST02.
    v = results["lfh-x12__271_005010X279A1-subscriber-health-benefit-check-error.271"]
    [one] = v.groups[0].sets
    assert one.verdict is SetVerdict.REJECTED
    assert one.validated_with.startswith("no pyx12 map for 005010X279A1")
    [fault] = one.issues
    assert fault.location() == (
        "ISA13 000000907, GS06 1, ST02 4321, segment SE at 8, element SE02: [IK5 3] transaction set "
        "control number in header and trailer do not match: does not match ST02 4321"
    )
    # LFH files using ">" in composites while ISA16 declares ":" are rejected where the composite is.
    remit = results["lfh-x12__835_005010X221A1-cob-contractural-adjustment.835"]
    [one] = remit.groups[0].sets
    assert one.verdict is SetVerdict.REJECTED
    assert any(i.segment_id == "SVC" and i.code == "1" and i.loop_id == "2100" for i in one.issues)
    claim = results["lfh-x12__837_005010X222A2-demo.cob.2ndary.example4.837"]
    [one] = claim.groups[0].sets
    assert one.verdict is SetVerdict.REJECTED
    assert any(i.element == "CLM05-1" and i.code == "5" for i in one.issues)
    assert one.validated_with == "X222A1 map (nearest to X222A2)"


def _cold_and_warm(x: Interchange, runs: int = 2) -> tuple[float, float]:
    """Best-of-``runs`` seconds for validate() with the maps parsed afresh, and with the memoised maps."""
    cold = warm = float("inf")
    first = validate(x)
    for _ in range(runs):
        maps.forget_maps()
        started = time.perf_counter()
        assert validate(x) == first
        middle = time.perf_counter()
        assert validate(x) == first
        ended = time.perf_counter()
        cold, warm = min(cold, middle - started), min(warm, ended - middle)
    return cold, warm


def test_the_cost_of_validation_with_and_without_memoised_maps() -> None:
    """Figures for the report (printed, never asserted: the machine may be loaded)."""
    root = corpus_dir("x12")
    largest = max((p for p in (root / "x12").iterdir()), key=lambda p: p.stat().st_size)
    mapped = [
        p
        for p in (root / "x12").iterdir()
        if validate(read_interchanges(p.read_bytes(), p.name)[0]).groups[0].verdict
        is not GroupVerdict.NOT_VALIDATED
    ]
    largest_mapped = max(mapped, key=lambda p: p.stat().st_size)
    claims = read_one(professional_claims(1_000))
    print()
    for name, x in [
        (largest.name, read_interchanges(largest.read_bytes())[0]),
        (largest_mapped.name, read_interchanges(largest_mapped.read_bytes())[0]),
        ("generated 837P, 1,000 claims", claims),
    ]:
        cold, warm = _cold_and_warm(x)
        segments = sum(len(t.segments) for g in x.groups for t in g.transactions)
        validated = any(g.verdict is not GroupVerdict.NOT_VALIDATED for g in validate(x).groups)
        rate = f", {segments / warm:,.0f} segments/s memoised" if validated else " (not validated: 004010)"
        print(f"  {name}: maps parsed afresh {cold:.3f} s, memoised {warm:.3f} s{rate}")
    assert validate(claims).groups[0].verdict is GroupVerdict.ACCEPTED


def test_a_maps_directory_that_cannot_be_written_is_a_configuration_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="cannot build the pyx12 nearest-maps directory"):
        maps.nearest_maps(blocked / "maps")
