"""Telling HL7 v2, X12 and FHIR apart by content, as real senders deliver them; `send` and `parse` use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canonical.detect import Standard, detect
from cluster.cli import app
from tests.corpus import corpus_dir
from tests.hl7_samples import adt

# An 837P interchange as a clearinghouse sends it: ISA is fixed-length (106 characters).
ISA = (
    "ISA*00*          *00*          *ZZ*SUBMITTERID    *ZZ*RECEIVERID     "
    "*261205*1200*^*00501*000000123*0*P*:~"
)
X12 = (
    ISA
    + "GS*HC*SUB*REC*20261205*1200*123*X*005010X222A1~ST*837*0001*005010X222A1~"
    + "SE*2*0001~GE*1*123~IEA*1*000000123~"
)


def test_the_isa_header_is_106_characters() -> None:
    assert len(ISA) == 106


@pytest.mark.parametrize(
    "data",
    [
        X12.encode(),
        b"\xef\xbb\xbf" + X12.encode(),  # a UTF-8 byte-order mark
        X12.replace("~", "~\r\n").encode(),  # CRLF between segments
        ("\r\n  " + X12).encode(),  # leading blank lines
        X12.replace("*", "|").replace("~", "\n").replace(":", ">").encode(),  # other declared delimiters
        (X12 + X12.replace("000000123", "000000124")).encode(),  # several interchanges in one file
    ],
    ids=["plain", "bom", "crlf", "leading-space", "delimiters", "two-interchanges"],
)
def test_x12_is_told_by_its_isa_header_whatever_the_sender_wraps_it_in(data: bytes) -> None:
    found = detect(data)
    assert found.standard is Standard.X12
    assert found.detail == "ISA13 000000123, version 00501"


def test_a_broken_isa_header_is_still_x12_and_says_what_is_wrong() -> None:
    found = detect(b"ISA*00*short~")
    assert found.standard is Standard.X12 and "shorter than 106" in found.detail
    found = detect(ISA.replace("*ZZ*", "*ZZ**", 1).encode() + b"GS*HC~")
    assert found.standard is Standard.X12 and "17 elements" in found.detail


def test_hl7_fhir_and_the_rest() -> None:
    assert detect(adt("A01", "C1", "V1")).standard is Standard.HL7V2
    assert detect(b"\x0b" + adt("A01", "C1", "V1") + b"\x1c\r").standard is Standard.HL7V2  # an MLLP capture
    assert detect(b"FHS|^~\\&|X\rBHS|^~\\&|X\r").standard is Standard.HL7V2
    assert detect(json.dumps({"resourceType": "Claim", "id": "1"}).encode()) == detect(
        b'\xef\xbb\xbf{"resourceType": "Claim", "id": "1"}'
    )
    assert detect(b'{"resourceType": "Claim"}').describe() == "FHIR (JSON Claim)"
    assert detect(b'<Patient xmlns="http://hl7.org/fhir"><id value="1"/></Patient>').standard is Standard.FHIR
    for other in (b"", b"   ", b"hello", b'{"no": "resource type"}', b"<html></html>", b"MSHX"):
        assert detect(other).standard is Standard.UNKNOWN, other


def test_every_corpus_file_is_told_by_its_folder() -> None:
    root = corpus_dir("hl7", "x12", "fhir")
    counts: dict[str, dict[Standard, int]] = {}
    expected = {"hl7": Standard.HL7V2, "x12": Standard.X12, "fhir": Standard.FHIR}
    wrong = []
    for folder, standard in expected.items():
        for path in sorted((root / folder).iterdir()):
            found = detect(path.read_bytes())
            counts.setdefault(folder, {}).setdefault(found.standard, 0)
            counts[folder][found.standard] += 1
            if found.standard is not standard:
                wrong.append((path.name, found.describe()))
    print({folder: {str(k): v for k, v in by.items()} for folder, by in counts.items()})
    assert wrong == []


def test_send_refuses_a_fhir_file_or_an_unreadable_interchange_and_sends_nothing(tmp_path: Path) -> None:
    hl7 = tmp_path / "adt.hl7"
    hl7.write_bytes(adt("A01", "C1", "V1"))
    bundle = tmp_path / "bundle.txt"  # named as senders name them: by content, not by name
    bundle.write_bytes(b'\xef\xbb\xbf{"resourceType": "Bundle"}')
    broken = tmp_path / "claims.edi"
    broken.write_bytes(b"ISA*00*cut short~")
    result = CliRunner().invoke(
        app, ["send", str(hl7), str(bundle), str(broken)], env={"HCSYNC_HOME_DIR": str(tmp_path / "home")}
    )
    assert result.exit_code == 2, result.output
    assert "FHIR (JSON Bundle): FHIR is not yet ingested" in result.output
    assert "message claims.edi, segment ISA, position 0: [X12-ISA-INVALID]" in result.output
    assert "nothing was sent" in result.output
    assert not (tmp_path / "home").exists(), "nothing may be stored, not even the HL7 file beside them"


def test_parse_names_an_x12_or_fhir_file_instead_of_a_missing_msh(tmp_path: Path) -> None:
    claims = tmp_path / "claims.edi"
    claims.write_bytes(X12.encode())
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(b'{"resourceType": "Bundle", "type": "collection"}')
    result = CliRunner().invoke(app, ["parse", str(claims), str(bundle)])
    assert result.exit_code == 1
    assert "HL7-MSH-MISSING" not in result.output
    # The X12 file is read (its one set has no claim: a located error), the FHIR file is named.
    assert f"{claims}: not parsed" not in result.output
    assert f"message {claims}, ISA13 000000123, GS06 123, ST02 0001" in result.output
    assert f"{bundle}: not parsed: it holds FHIR (JSON Bundle)" in result.output
