"""The PHI masking log filter: what it masks, what it leaves alone, and that it never breaks logging."""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ValidationError

from canonical.models import Address, Patient
from foundation.logmask import PhiMaskingFilter, attach, install, mask_all_handlers, mask_text

PID = "PID|1||PHI77^^^NMH^MR||Quixlotl^Zenobia||19800101|F|||12 Zebulon Way^^Springfield^IL||555-0188"
MESSAGE = (
    "MSH|^~\\&|EPIC|NMH|HCSYNC|HCSYNC|20261120083000||ADT^A01^ADT_A01|C77|P|2.5.1\r"
    f"EVN|A01|20261120083000\r{PID}\r"
    "PV1|1|I|MEDSURG^101^A^NMH||||||||||||||||V77^^^NMH^VN\r"
)
SECRETS = ("PHI77", "Quixlotl", "Zenobia", "19800101", "Zebulon", "555-0188", "V77")


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing to a string through a masked handler, with an exception-printing format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    attach(handler)
    logger = logging.getLogger("tests.logmask")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_a_segment_in_the_message_is_masked_keeping_its_name(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("got %s", MESSAGE)
    text = stream.getvalue()
    assert _leaks(text) == []
    assert "PID|***" in text and "EVN|***" in text and "PV1|***" in text
    assert "MSH|^~\\&|EPIC|NMH|HCSYNC|HCSYNC|20261120083000||ADT^A01^ADT_A01|C77|P|2.5.1" in text


def test_a_segment_in_a_repr_of_bytes_in_the_args_is_masked(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.warning("frame %r refused", MESSAGE.encode())
    text = stream.getvalue()
    assert _leaks(text) == []
    assert "\\rPID|***\\r" in text  # segment separators escaped by repr still end a segment


def test_a_segment_in_the_template_itself_is_masked(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.error(f"bad segment {PID} in message")  # what the filter is for: PHI in the template
    assert _leaks(stream.getvalue()) == []


@pytest.mark.parametrize(
    "line",
    [
        PID,
        f"NK1|1|Quixlotl^Zenobia|SPO|12 Zebulon Way^^Springfield^IL|555-0188\r{PID}",
        f"GT1|1||Quixlotl^Zenobia\nIN1|1|PLAN|PHI77\nMRG|PHI77^^^NMH^MR\nPD1|||Zebulon\n{PID}",
        f"segments: IN2|PHI77|Zenobia, PV2|||Quixlotl; {PID}",
    ],
)
def test_every_patient_segment_is_masked(line: str) -> None:
    assert _leaks(mask_text(line)) == []


def test_a_base64_blob_is_masked_with_its_size(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    blob = base64.b64encode(MESSAGE.encode()).decode()
    logger.info("record %s original_b64=%s", "rec-1", blob)
    text = stream.getvalue()
    assert blob not in text
    assert f"<base64 {len(MESSAGE.encode())} bytes>" in text
    assert "record rec-1" in text


def test_a_short_base64_or_a_hex_digest_or_a_path_is_kept() -> None:
    digest = "3f2a9c0d1e2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5"
    path = "/work/main/somethinglongwithoutdots/anotherlongdirectory/module"
    short = base64.b64encode(b"twenty bytes or so..").decode()
    text = f"id {digest} at {path} b64 {short}"
    assert mask_text(text) == text


def test_validation_error_input_values_are_masked(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    with pytest.raises(ValidationError) as caught:
        Patient.model_validate({"mrn": "PHI77", "family_name": "Quixlotl", "birth_date": "19800101x"})
    logger.warning("invalid: %s", caught.value)
    text = stream.getvalue()
    assert "input_value=***" in text
    assert _leaks(text) == []
    assert "birth_date" in text  # where it failed stays readable


def test_an_exception_traceback_is_masked(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError(f"cannot map {MESSAGE!r} for Patient(family_name='Quixlotl', mrn='PHI77')")
    except ValueError:
        logger.exception("mapping failed")
    text = stream.getvalue()
    assert "Traceback (most recent call last)" in text and "ValueError: cannot map" in text
    assert "family_name=***" in text
    assert _leaks(text) == []


def test_a_stack_info_is_masked(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured

    def deep(segment: str) -> None:
        logger.info("here", stack_info=True)  # the stack shows this source line, not the argument

    deep(PID)
    text = stream.getvalue()
    assert "Stack (most recent call last)" in text and "in deep" in text
    assert _leaks(text) == []


def test_phi_fields_by_name_are_masked_in_reprs_and_json() -> None:
    patient = Patient(
        mrn="PHI77",
        family_name="Quixlotl",
        given_name="Zenobia",
        birth_date=dt.date(1980, 1, 1),
        address=Address(street="12 Zebulon Way", city="Springfield", state="IL", postal_code="62701"),
        phone="555-0188",
        sex="F",
    )
    for text in (repr(patient), str(patient), patient.model_dump_json(), str(patient.model_dump())):
        masked = mask_text(text)
        assert _leaks(masked) == [], text
        assert "1980" not in masked and "62701" not in masked and "Springfield" not in masked
        assert "'F'" in masked or '"F"' in masked  # sex is not tagged PHI


def test_found_values_ssn_phone_and_email_are_masked() -> None:
    text = (
        "message C77, segment PID, field PID-7: [HL7-PID-7-DATE] not a date (found '1980x0101'); "
        "ssn 123-45-6789, phone 555-0188 or (312) 555-0188 or +1 312 555 0188, mail zq@example.org"
    )
    masked = mask_text(text)
    for secret in ("1980x0101", "123-45-6789", "555-0188", "312", "zq@example.org"):
        assert secret not in masked
    assert "(found ***)" in masked and "***-**-****" in masked
    assert masked.startswith("message C77, segment PID, field PID-7: [HL7-PID-7-DATE] not a date")


def test_values_quoted_in_a_fault_description_are_masked() -> None:
    text = (
        "encounter event failed (InvalidMessageError: message C77, segment PID, field PID-7, position 2: "
        "[HL7-DTM] not an HL7 date/time: '19800101X' (found '19800101X')); retrying in 0.5s\nnext 'line'"
    )
    masked = mask_text(text)
    assert "19800101" not in masked
    assert "[HL7-DTM] not an HL7 date/time: *** (found ***)); retrying in 0.5s\nnext 'line'" in masked


@pytest.mark.parametrize(
    "text",
    [
        "mllp connection 3: control id C77 is a resend, answering the stored ack",
        "billing failed (ValidationError: 1 error(s) at encounter.encounter_id); retrying in 0.5s",
        "ready: billing adapter on 127.0.0.1:50051 at 2026-11-20 08:30:00,123 in 123.4567s",
        "[^Worker]: Starting... rule HL7-FT1-11-AMOUNT | 3 item(s) state=running",
        "[^--Producer]: Creating topic 'tf84e22e4.hcsync-encounters-changelog'",
        "mllp connection 2: refused control id C77: HL7-MSH-10-MISSING",
        "uuid 123e4567-e89b-12d3-a456-426614174000 record 9f86d081884c7d659a2feaa0c55ad015",
        "transform pool ready: 2 replicas on nodes ['a3f1', 'b2e2'] 100% done, 50%% escaped",
    ],
)
def test_text_without_phi_is_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_masking_twice_changes_nothing() -> None:
    once = mask_text(f"{MESSAGE!r} {base64.b64encode(MESSAGE.encode()).decode()} ssn 123-45-6789")
    assert mask_text(once) == once


def _record(msg: object, args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("tests.logmask", logging.INFO, __file__, 1, msg, None, None)
    record.args = args  # type: ignore[assignment]  # odd on purpose
    record.__dict__.update(extra)
    return record


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(
    ("msg", "args", "shown"),
    [
        ("%d items for %s", ("x",), "%d items for %s [log arguments did not format (TypeError): ('x',)]"),
        ("no placeholders", (PID,), "no placeholders [log arguments did not format (TypeError): ('PID|***"),
        ("%(name)s", {"nome": 1}, "%(name)s [log arguments did not format (KeyError)"),
        (ValueError(PID), (), "PID|***"),
        (None, (), "None"),
        (12, (), "12"),
        ("%s", (_BadRepr(),), "[log message withheld: it could not be masked]"),
    ],
)
def test_odd_records_never_raise(msg: object, args: object, shown: str) -> None:
    record = _record(msg, args)
    assert PhiMaskingFilter().filter(record) is True
    assert record.args == ()
    assert isinstance(record.msg, str) and record.msg.startswith(shown)
    assert "Quixlotl" not in record.msg
    # What a handler does next works too.
    logging.Formatter("%(message)s").format(record)


def test_a_record_with_odd_exception_info_never_raises() -> None:
    record = _record("failed", (), exc_info=(None, None, None), stack_info=PID)
    assert PhiMaskingFilter().filter(record) is True
    assert record.stack_info == "PID|***"
    logging.Formatter("%(message)s").format(record)


class _Model(BaseModel):
    when: dt.date


def test_a_filter_on_a_parent_handler_masks_records_of_child_loggers() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent = logging.getLogger("tests.logmask.parent")
    parent.addHandler(handler)
    parent.propagate = False
    try:
        mask_all_handlers()
        logging.getLogger("tests.logmask.parent.child").warning("seen %s", PID)
        with pytest.raises(ValidationError) as caught:
            _Model.model_validate({"when": "Quixlotl"})
        logging.getLogger("tests.logmask.parent.child.grandchild").warning("%s", caught.value)
    finally:
        parent.removeHandler(handler)
        parent.propagate = True
    assert "PID|***" in stream.getvalue()
    assert _leaks(stream.getvalue()) == []


def test_install_configures_root_logging_and_masks_every_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    other = logging.getLogger("tests.logmask.own")
    own = logging.StreamHandler(io.StringIO())
    other.addHandler(own)
    root.handlers.clear()
    try:
        install("INFO")
        [handler] = root.handlers
        assert root.level == logging.INFO
        assert any(isinstance(f, PhiMaskingFilter) for f in handler.filters)
        assert any(isinstance(f, PhiMaskingFilter) for f in own.filters)
        assert handler.formatter is not None
        assert handler.formatter._fmt == "%(asctime)s %(levelname)s %(name)s %(message)s"
        attach(handler)  # once only
        assert sum(isinstance(f, PhiMaskingFilter) for f in handler.filters) == 1
        logging.getLogger("tests.logmask.root").info("message %s", MESSAGE)
        err = capsys.readouterr().err
        assert "INFO tests.logmask.root message MSH|" in err and "PID|***" in err
        assert _leaks(err) == []
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        other.removeHandler(own)


def test_every_phi_field_of_the_contract_is_masked_by_name() -> None:
    from canonical.phi import phi_fields
    from canonical.schema import EXPORTED
    from foundation.logmask import mask_text

    names = set().union(*(phi_fields(model) for model in EXPORTED.values()))
    assert {"member_id", "subscriber_family_name", "account_number", "claim_id"} <= names
    for name in names:
        assert "Quixlotl" not in mask_text(f"Model({name}='Quixlotl', other=1)"), name
        assert "Quixlotl" not in mask_text(f'{{"{name}": "Quixlotl"}}'), name
