"""Mask PHI in log records: a safety net under code that already avoids logging message content.

hcsync's log calls name connections, control ids, rules and counts, never message values
(:func:`streams.retry.describe`, the MLLP gateway, the adapters). :class:`PhiMaskingFilter` is for what
slips through anyway: an exception text quoting an input, a library logging a record it was handed, a
debugging line someone adds later. It rewrites the final text of every record (message, exception text,
stack) before any handler formats it.

What is masked:

* HL7 v2 segments. Every segment found in a log line (a three-character segment id at the start of a line,
  after a segment separator -- a real CR or LF, or the escapes ``\\r``, ``\\n``, ``\\x0b``, ``\\x1c`` of a
  ``repr`` -- or after any character that is not a letter or digit, followed by ``|``) keeps its id and
  loses everything up to the next separator: ``PID|***``. Only ``MSH`` and ``MSA`` are kept whole: they
  name the sender, message type and control id, and hold nothing about the patient. Every other segment
  is masked, not just PID, PD1, NK1, GT1, IN1, IN2, IN3 and MRG: PV1 and PV2 carry admission and
  discharge dates and visit numbers, EVN the event date, FT1 the date of service, DG1/PR1/OBX clinical
  facts -- all PHI next to the identifiers of the same message.
* Base64 runs of 40 characters or more (how original bytes travel in quarantine records) become
  ``<base64 N bytes>``. A run that is only hex digits (a sha256 record id) is kept, and so is one without
  at least four upper-case and four lower-case letters (file paths in tracebacks).
* pydantic ``ValidationError`` text: ``input_value=...`` becomes ``input_value=***``.
* Values of PHI fields by name, as a repr or JSON quotes them: every field tagged with
  :func:`canonical.phi.PhiField` in :mod:`canonical.models` (``family_name='Doe'``,
  ``"birth_date": "1980-01-01"``, ``birth_date=datetime.date(1980, 1, 1)``), plus ``ssn``, ``dob`` and
  ``date_of_birth``. Only quoted values and date reprs are masked, so ``state=running`` stays readable.
* What a :class:`canonical.errors.Fault` quotes: in its description (``...: [RULE] reason (found '...')``,
  the text of every ``MessageError``) each quoted string after the rule becomes ``***`` -- the mapping's
  reasons quote the offending value (``not an HL7 date/time: '...'``), which may be a date of birth --
  and ``(found '...')`` becomes ``(found ***)`` wherever it appears.
* US SSNs written ``123-45-6789``, US phone numbers written ``555-0100``, ``312-555-0100``,
  ``(312) 555-0100`` or ``+1 312 555 0100``, and e-mail addresses.

What is not caught: a name, MRN, street or date of birth standing alone in free text (``patient Doe``,
``19800101``): nothing tells a date of birth from any other date, or a name from any other word. Nor an SSN
or phone number written without separators, HL7 with a field separator other than ``|``, base64url, or
base64 shorter than 40 characters (about 30 bytes). Those are kept out of logs at the source.

Scope: the filter sits on handlers (a filter on a logger does not see records propagated from its
children). :func:`install` configures the root logger and puts the filter on every handler there is;
:func:`mask_all_handlers` does it again after a library added its own handlers (Faust, Ray). Text written
straight to stdout or stderr (an uncaught exception printed by the interpreter, ``print``) does not go
through logging and is not masked.
"""

from __future__ import annotations

import logging
import re
import sys

from canonical.phi import MASK, phi_fields
from canonical.schema import EXPORTED

__all__ = ["LOG_FORMAT", "PhiMaskingFilter", "attach", "install", "mask_all_handlers", "mask_text"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Shown instead of a record whose masking failed: nothing unmasked may reach a handler.
_WITHHELD = "[log message withheld: it could not be masked]"

# -- HL7 v2 segments ----------------------------------------------------------------------------------
_KEPT_SEGMENTS = frozenset({"MSH", "MSA"})
# A segment starts a line, follows a separator (a real one, or its escape in a repr) or a non-alphanumeric.
_SEGMENT = re.compile(
    r"(?:^|(?<=[^A-Za-z0-9_])|(?<=\\r)|(?<=\\n)|(?<=\\x[0-9a-fA-F]{2}))"
    r"(?P<name>[A-Z][A-Z0-9]{2})\|"
    r"(?P<body>.*?)"
    r"(?=\r|\n|\x0b|\x1c|\\r|\\n|\\x0[bBdDaA]|\\x1[cC]|$)",
    re.MULTILINE,
)

# -- base64 --------------------------------------------------------------------------------------------
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"[0-9a-fA-F]+")
_UPPER = re.compile(r"[A-Z]")
_LOWER = re.compile(r"[a-z]")

# -- pydantic ------------------------------------------------------------------------------------------
# pydantic v2: "... [type=date_parsing, input_value='1980x101', input_type=str]"
_INPUT_VALUE = re.compile(r"input_value=(?:.*?(?=, input_type=)|[^\]\n]*)")

# -- PHI fields by name --------------------------------------------------------------------------------
_QUOTED = r"""(?:'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")"""
_DATE_REPR = r"datetime\.(?:date|datetime)\([^)\n]*\)"


def _phi_names() -> frozenset[str]:
    """Every field name tagged PHI in any model of the canonical contract (canonical.schema.EXPORTED)."""
    names = {"ssn", "dob", "date_of_birth"}
    for model in EXPORTED.values():
        names |= phi_fields(model)
    return frozenset(names)


PHI_FIELD_NAMES = _phi_names()
_NAMES = "|".join(sorted(PHI_FIELD_NAMES, key=len, reverse=True))
# name='x', name="x", name=datetime.date(...) (reprs, kwargs) and "name": "x", 'name': 'x' (JSON, dicts).
_KEYED = re.compile(
    rf"(?P<key>(?<![A-Za-z0-9_])(?:{_NAMES})=|(?P<q>[\"'])(?:{_NAMES})(?P=q)\s*:\s*)"
    rf"(?:{_QUOTED}|{_DATE_REPR})"
)
_FOUND = re.compile(rf"\(found {_QUOTED}\)")
# Fault.describe(): "message M1, segment PID, field PID-7, position 2: [HL7-DTM] not a date: '1980x101'"
_FAULT_TAIL = re.compile(r"(?P<head>: \[[A-Za-z][\w.-]*\] )(?P<tail>[^\n]*)")
_QUOTED_RE = re.compile(_QUOTED)

# -- free-text identifiers -----------------------------------------------------------------------------
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+-])(?:\+?1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])?\d{3}[ .-]\d{4}(?![\w-])"
    r"|(?<![\w+-])\+?1 \d{3} \d{3} \d{4}(?![\w-])"
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def _segment(match: re.Match[str]) -> str:
    name = match.group("name")
    if name in _KEPT_SEGMENTS or not match.group("body"):
        return match.group(0)
    return f"{name}|{MASK}"


def _base64(match: re.Match[str]) -> str:
    run = match.group(0)
    core = run.rstrip("=")
    if _HEX.fullmatch(core) or len(_UPPER.findall(core)) < 4 or len(_LOWER.findall(core)) < 4:
        return run
    return f"<base64 {len(run) * 3 // 4 - (len(run) - len(core))} bytes>"


def _fault_tail(match: re.Match[str]) -> str:
    return match.group("head") + _QUOTED_RE.sub(MASK, match.group("tail"))


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    # A bare "123 4567" is too often two numbers; separators other than "-" need the area code.
    if "-" not in text and sum(c.isdigit() for c in text) < 10:
        return text
    return MASK


def mask_text(text: str) -> str:
    """Return ``text`` with every kind of PHI this module recognises masked (see the module doc)."""
    text = _SEGMENT.sub(_segment, text)
    text = _BASE64.sub(_base64, text)
    text = _INPUT_VALUE.sub(f"input_value={MASK}", text)
    text = _KEYED.sub(lambda m: f"{m.group('key')}{MASK}", text)
    text = _FOUND.sub(f"(found {MASK})", text)
    text = _FAULT_TAIL.sub(_fault_tail, text)
    text = _SSN.sub("***-**-****", text)
    text = _PHONE.sub(_phone, text)
    return _EMAIL.sub(MASK, text)


def _message(record: logging.LogRecord) -> str:
    """Return the record's final message; bad ``%`` arguments give the template and the arguments."""
    try:
        return record.getMessage()
    except Exception as exc:
        return f"{record.msg!s} [log arguments did not format ({type(exc).__name__}): {record.args!r}]"


class PhiMaskingFilter(logging.Filter):
    """Mask PHI in a record's message, exception text and stack; never drops a record, never raises.

    Attach it to handlers (:func:`attach`). The record is rewritten in place: its message is formatted
    and masked into ``msg`` with no ``args`` left, and the exception text is formatted and masked into
    ``exc_text``, which formatters use instead of formatting the exception again. Masking twice changes
    nothing, so a record passing several masked handlers is fine.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = mask_text(_message(record))
            record.args = ()
            if record.exc_info and not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = mask_text(record.exc_text)
            if record.stack_info:
                record.stack_info = mask_text(record.stack_info)
        except Exception:
            record.msg, record.args, record.exc_text, record.stack_info = _WITHHELD, (), None, None
            record.exc_info = None
        return True


_FILTER = PhiMaskingFilter()


def attach(target: logging.Logger | logging.Handler) -> None:
    """Put the masking filter on a handler, or on every handler a logger has now (once each)."""
    handlers = target.handlers if isinstance(target, logging.Logger) else [target]
    for handler in handlers:
        if not any(isinstance(f, PhiMaskingFilter) for f in handler.filters):
            handler.addFilter(_FILTER)


def mask_all_handlers() -> None:
    """Put the masking filter on every handler of the root logger and of every named logger, now.

    Call it again after a library configures logging of its own: Ray gives the ``ray`` logger a handler
    that does not propagate to the root, Faust (with ``override_logging``) replaces the root's handlers.
    """
    attach(logging.getLogger())
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            attach(logger)
    if logging.lastResort is not None:
        attach(logging.lastResort)


def install(level: str | int, fmt: str = LOG_FORMAT) -> None:
    """Configure root logging to stderr (as ``logging.basicConfig`` does) and mask PHI on every handler."""
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    mask_all_handlers()
