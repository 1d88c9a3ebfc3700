"""`hcsync parse`: canonical events on stdout, located errors on stderr, exit 1 on any error."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from canonical.errors import MessageError
from canonical.hl7v2.mapping import canonicalize
from canonical.hl7v2.parser import split_messages
from cluster.cli import app
from tests.corpus import hl7_files
from tests.hl7_samples import adt, dft


def test_parse_prints_events_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "day.hl7"
    path.write_bytes(adt("A01", "A1", "V1") + dft("D1", "V1", [("CG", "99283", "ED", 1, "10.00")]))
    result = CliRunner().invoke(app, ["parse", str(path)])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event_type"] for e in events] == ["encounter.admitted", "charge.posted"]
    assert events[1]["payload"]["charge"]["amount_cents"] == 1000


def test_parse_reports_errors_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.hl7"
    path.write_bytes(dft("D9", "V1", [("CG", "99283", "ED", 1, "ten")]) + adt("A04", "A2", "V2"))
    result = CliRunner().invoke(app, ["parse", str(path)])
    assert result.exit_code == 1
    assert (
        "message D9" in result.stderr and "FT1-11" in result.stderr and "HL7-FT1-11-AMOUNT" in result.stderr
    )
    assert json.loads(result.stdout.splitlines()[0])["event_type"] == "encounter.registered"


def test_parse_with_master_data_enriches_and_names_the_md_rule(tmp_path: Path) -> None:
    from cluster.masterdata import DEMO_DIR

    path = tmp_path / "day.hl7"
    good = dft("D1", "V1", [("CG", "99283", "ED", 1, "10.00")])
    path.write_bytes(good + dft("D2", "V1", [("CG", "99499", "Unlisted", 1, "10.00")]))
    result = CliRunner().invoke(app, ["parse", str(path), "--masterdata", str(DEMO_DIR)])
    assert result.exit_code == 1
    [event] = [json.loads(line) for line in result.stdout.splitlines()]
    assert event["dimensions"]["revenue_account"] and event["dimensions"]["cost_centre"]
    assert "message D2" in result.stderr and "MD-CHARGE-CODE-UNMAPPED" in result.stderr


def test_corpus_never_crashes_the_mapper() -> None:
    mapped = quarantined = ignored = 0
    for path in hl7_files("hl7", "hl7_batch"):
        for raw in split_messages(path.read_bytes()):
            try:
                events = canonicalize(raw)
            except MessageError as exc:
                assert exc.fault.rule and exc.fault.reason, path
                quarantined += 1
                continue
            if events:
                mapped += 1
            else:
                ignored += 1
    print(f"corpus: {mapped} mapped, {ignored} without financial effect, {quarantined} quarantined")
    assert mapped + ignored + quarantined > 150


def test_parse_prints_the_canonical_models_of_an_x12_file(tmp_path: Path) -> None:
    from tests.x12_samples import professional_sets, remittance_sets, x12_file

    path = tmp_path / "claims.txt"  # by content, not by name
    claims = x12_file("837", "005010X222A1", [professional_sets()], control="000000001")
    path.write_bytes(("\ufeff" + claims + x12_file("835", "005010X221A1", [remittance_sets()])).encode())
    result = CliRunner().invoke(app, ["parse", str(path)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(x["isa13"], x["st01"], x["model"]) for x in lines] == [
        ("000000001", "837", "ClaimSubmission"),
        ("000000001", "837", "ClaimSubmission"),
        ("000000123", "835", "Remittance"),
    ]
    assert lines[0]["value"]["claim"]["total_charge_cents"] == 12550 and lines[0]["gs06"] == "77"
    assert lines[2]["value"]["total_paid_cents"] == 7625


def test_parse_x12_errors_are_located_and_exit_1_and_unhandled_sets_are_named(tmp_path: Path) -> None:
    from tests.x12_samples import remittance_sets, x12_file

    unbalanced = [segment.replace("BPR*I*76.25", "BPR*I*76.20") for segment in remittance_sets()]
    path = tmp_path / "in.edi"
    enrollment = x12_file("834", "005010X220A1", [["BGN*00*1*20261205"]], control="000000002")
    path.write_bytes((x12_file("835", "005010X221A1", [unbalanced]) + enrollment).encode())
    result = CliRunner().invoke(app, ["parse", str(path)])
    assert result.exit_code == 1 and result.stdout == ""
    assert (
        f"message {path}, ISA13 000000123, GS06 77, ST02 0001, segment BPR, field BPR02, position 2: "
        "[X12-BALANCE] BPR02 differs from the sum of CLP04 less the PLB adjustments by -5 cents"
    ) in result.stderr
    assert "834 005010X220A1: enrollment is not handled by hcsync" in result.stderr
    assert "M000000001" not in result.stderr and "DOE" not in result.stderr  # no PHI in errors
