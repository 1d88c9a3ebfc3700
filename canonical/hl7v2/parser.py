"""Exact, fast reader for HL7 v2 messages in ER7 (pipe-delimited) encoding.

The parser splits a message into segments once and each segment into fields only when a field is first
asked for, so a mapper that reads a handful of fields pays for little more than one decode and one split.
It accepts what real feeds send: CR, LF or CRLF segment separators (even mixed), a UTF-8 byte-order mark,
leftover MLLP framing bytes, blank lines, custom encoding characters and MSH-18 character sets. Anything it
cannot read raises :class:`~canonical.errors.DecodeError` with a :class:`~canonical.errors.Fault` that names
what was found and where.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from canonical.errors import DecodeError, Fault

__all__ = [
    "Encoding",
    "Hl7Message",
    "Segment",
    "escape",
    "parse_message",
    "split_messages",
    "unescape",
]

_BOM = b"\xef\xbb\xbf"
# MLLP start block (VT), end block (FS), NUL padding and whitespace may surround a message on the wire.
_LEAD_JUNK = b"\x0b\x1c\x00\r\n\t "
_LEAD_JUNK_STR = "\x0b\x1c\x00\r\n\t \ufeff"
# Trailing spaces are not stripped: they may belong to the last field, and blank lines are skipped anyway.
_TRAIL_JUNK = b"\x0b\x1c\x00\r\n"
_TRAIL_JUNK_STR = "\x0b\x1c\x00\r\n"
_FRAMING = b"\x0b\x1c\x00\t "
_MLLP = b"\x0b\x1c\x00"

# Segments whose first two fields are the field separator and the encoding characters.
_HEADER_SEGMENTS = frozenset({"MSH", "FHS", "BHS"})
_ENVELOPE_TAGS = frozenset({b"FHS", b"BHS", b"BTS", b"FTS"})
_STANDARD_CHARS = "^~\\&"
_FOUND_CHARS = 20

# MSH-18 values (HL7 table 0211 plus spellings seen in the field) mapped to Python codecs. A value not listed
# here (absent, ASCII, ambiguous "UNICODE", unknown) means UTF-8 if valid, else Latin-1. ASCII is in that
# group because a sender declaring ASCII but sending a byte above 0x7F almost always meant its platform set.
_CHARSETS: dict[str, str] = {
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "ISO IR192": "utf-8",
    "ISO IR100": "iso8859-1",
    "ISO IR101": "iso8859-2",
    "ISO IR109": "iso8859-3",
    "ISO IR110": "iso8859-4",
    "ISO IR144": "iso8859-5",
    "ISO IR127": "iso8859-6",
    "ISO IR126": "iso8859-7",
    "ISO IR138": "iso8859-8",
    "ISO IR148": "iso8859-9",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
}
# Python has every ISO 8859 part except 12, which was abandoned before publication.
_CHARSETS.update({f"8859/{part}": f"iso8859-{part}" for part in (*range(1, 12), *range(13, 17))})

# Segment names already known to be well formed; bounded by the 36**3 possible names.
_VALID_NAMES: set[str] = set()


@dataclass(frozen=True, slots=True)
class Encoding:
    """The delimiters declared in MSH-1 and MSH-2; an empty string means the role is not declared."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""


class Segment:
    """One segment of a message; fields are split on first access and cached."""

    __slots__ = ("_codec", "_enc", "_fields", "index", "name", "text")

    def __init__(
        self, name: str, index: int, text: str, encoding: Encoding, codec: str | None = None
    ) -> None:
        self.name = name
        self.index = index
        self.text = text
        self._enc = encoding
        self._codec = codec
        self._fields: list[str] | None = None

    def _split(self) -> list[str]:
        """Split the segment into fields so that list index n holds field n."""
        fields = self.text.split(self._enc.field)
        if self.name in _HEADER_SEGMENTS:
            # The field separator is itself field 1 of a header segment, so MSH-9 stays MSH-9.
            fields.insert(1, self._enc.field)
        self._fields = fields
        return fields

    def get(self, field: int, component: int = 1, subcomponent: int = 1, repetition: int = 1) -> str:
        """Return one unescaped value by 1-based HL7 position; "" if absent, component 0 = the repetition."""
        if field < 0 or component < 0 or subcomponent < 1 or repetition < 1:
            raise ValueError(
                f"{self.name}: field {field}, component {component}, subcomponent {subcomponent}, "
                f"repetition {repetition} is not an HL7 position"
            )
        fields = self._fields if self._fields is not None else self._split()
        if field >= len(fields):
            return ""
        value = fields[field]
        if not value:
            return ""
        if 0 < field <= 2 and self.name in _HEADER_SEGMENTS:
            # MSH-1 and MSH-2 are the delimiters themselves: never split or unescape them.
            return value if repetition == 1 and component <= 1 and subcomponent == 1 else ""
        enc = self._enc
        sep = enc.repetition
        if sep and sep in value:
            parts = value.split(sep)
            if repetition > len(parts):
                return ""
            value = parts[repetition - 1]
        elif repetition != 1:
            return ""
        esc = enc.escape
        if component == 0:
            return unescape(value, enc, codec=self._codec) if esc and esc in value else value
        sep = enc.component
        if sep and sep in value:
            parts = value.split(sep)
            if component > len(parts):
                return ""
            value = parts[component - 1]
        elif component != 1:
            return ""
        sep = enc.subcomponent
        if sep and sep in value:
            parts = value.split(sep)
            if subcomponent > len(parts):
                return ""
            value = parts[subcomponent - 1]
        elif subcomponent != 1:
            return ""
        if esc and esc in value:
            return unescape(value, enc, codec=self._codec)
        return value

    def raw_field(self, field: int) -> str:
        """Return the field as on the wire, escapes not resolved; "" when absent."""
        if field < 0:
            raise ValueError(f"{self.name}: field {field} is not an HL7 position")
        fields = self._fields if self._fields is not None else self._split()
        return fields[field] if field < len(fields) else ""

    def repetitions(self, field: int) -> list[str]:
        """Return the raw repetitions of a field; an empty list when the field is empty or absent."""
        value = self.raw_field(field)
        if not value:
            return []
        sep = self._enc.repetition
        if not sep or (0 < field <= 2 and self.name in _HEADER_SEGMENTS):
            return [value]
        return value.split(sep)

    def field_count(self) -> int:
        """Return how many fields follow the segment name (for MSH, counting MSH-1)."""
        fields = self._fields if self._fields is not None else self._split()
        return len(fields) - 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segment):
            return NotImplemented
        return (self.index, self.text, self._enc) == (other.index, other.text, other._enc)

    def __hash__(self) -> int:
        return hash((self.index, self.text))

    def __repr__(self) -> str:
        shown = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"Segment({self.name!r}, index={self.index}, text={shown!r})"


@dataclass(frozen=True, slots=True)
class Hl7Message:
    """A decoded HL7 v2 message: the original bytes, its normalised text and its segments."""

    raw: bytes
    text: str
    encoding: Encoding
    segments: tuple[Segment, ...]
    # The Python codec the bytes were decoded with; also used for \Xhh\ escapes.
    codec: str

    def segment(self, name: str) -> Segment | None:
        """Return the first segment with this name, or None."""
        for seg in self.segments:
            if seg.name == name:
                return seg
        return None

    def segments_named(self, name: str) -> list[Segment]:
        """Return every segment with this name, in message order."""
        return [seg for seg in self.segments if seg.name == name]

    @property
    def header(self) -> Segment:
        """Return the MSH segment."""
        return self.segments[0]

    @property
    def control_id(self) -> str:
        """Return MSH-10, the message control id ("" when the sender left it out)."""
        return self.segments[0].get(10, 0)

    @property
    def message_type(self) -> str:
        """Return MSH-9.1, e.g. "ADT"."""
        return self.segments[0].get(9, 1)

    @property
    def trigger_event(self) -> str:
        """Return MSH-9.2, e.g. "A01"."""
        return self.segments[0].get(9, 2)

    @property
    def message_structure(self) -> str:
        """Return MSH-9.3, e.g. "ADT_A01"."""
        return self.segments[0].get(9, 3)

    @property
    def version(self) -> str:
        """Return MSH-12.1, e.g. "2.5.1"."""
        return self.segments[0].get(12, 1)

    @property
    def sending_application(self) -> str:
        """Return MSH-3.1."""
        return self.segments[0].get(3, 1)

    @property
    def sending_facility(self) -> str:
        """Return MSH-4.1."""
        return self.segments[0].get(4, 1)

    @property
    def sender(self) -> str:
        """Return MSH-3.1 '^' MSH-4.1: the feed a message came from, as ids and broker keys name it."""
        return f"{self.sending_application}^{self.sending_facility}"

    @property
    def event_code(self) -> str:
        """Return MSH-9.1 '^' MSH-9.2, e.g. "ADT^A02" (just "ADT" when the trigger is absent)."""
        trigger = self.trigger_event
        return f"{self.message_type}^{trigger}" if trigger else self.message_type

    @property
    def message_datetime(self) -> str:
        """Return MSH-7.1 as sent (an HL7 DTM string)."""
        return self.segments[0].get(7, 1)

    @property
    def charset(self) -> str:
        """Return MSH-18.1 as sent ("" when absent)."""
        return self.segments[0].get(18, 1)

    @property
    def accept_ack_type(self) -> str:
        """Return MSH-15."""
        return self.segments[0].get(15, 1)

    @property
    def application_ack_type(self) -> str:
        """Return MSH-16."""
        return self.segments[0].get(16, 1)


def _resolve_escape(seq: str, enc: Encoding, codec: str | None) -> str | None:
    """Return the text an escape sequence stands for, or None when it is not one we resolve."""
    if len(seq) == 1:
        if seq == "F":
            return enc.field
        if seq == "S":
            return enc.component
        if seq == "T":
            return enc.subcomponent
        if seq == "R":
            return enc.repetition
        if seq == "E":
            return enc.escape
        if seq == "P" and enc.truncation:
            return enc.truncation
        return None
    if seq == ".br":
        return "\n"
    if seq[0] == "X" and len(seq) % 2 == 1:
        try:
            data = bytes.fromhex(seq[1:])
        except ValueError:
            return None
        if codec is not None:
            try:
                return data.decode(codec)
            except (UnicodeDecodeError, LookupError):
                pass
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    return None


def unescape(value: str, enc: Encoding, *, codec: str | None = None) -> str:
    """Resolve HL7 escape sequences in a value; unknown or unterminated sequences are kept verbatim."""
    esc = enc.escape
    if not esc or esc not in value:
        return value
    out: list[str] = []
    pos = 0
    end = len(value)
    while pos < end:
        start = value.find(esc, pos)
        if start < 0:
            out.append(value[pos:])
            break
        out.append(value[pos:start])
        close = value.find(esc, start + 1)
        if close < 0:
            out.append(value[start:])
            break
        text = _resolve_escape(value[start + 1 : close], enc, codec) if close > start + 1 else None
        out.append(value[start : close + 1] if text is None else text)
        pos = close + 1
    return "".join(out)


@lru_cache(maxsize=64)
def _escape_table(enc: Encoding) -> dict[int, str]:
    """Build the str.translate table that escapes every delimiter of an encoding."""
    esc = enc.escape
    table = {
        ord(enc.escape): f"{esc}E{esc}",
        ord("\r"): f"{esc}X0D{esc}",
        ord("\n"): f"{esc}.br{esc}",
    }
    for char, code in (
        (enc.field, "F"),
        (enc.component, "S"),
        (enc.subcomponent, "T"),
        (enc.repetition, "R"),
        (enc.truncation, "P"),
    ):
        if char:
            table[ord(char)] = f"{esc}{code}{esc}"
    return table


def escape(value: str, enc: Encoding) -> str:
    """Escape delimiters, CR and LF in a value so it can be written into one field."""
    if not enc.escape:
        raise ValueError("the encoding declares no escape character, so values cannot be escaped")
    return value.translate(_escape_table(enc))


@lru_cache(maxsize=256)
def _encoding_for(field_sep: str, declared: str) -> Encoding | None:
    """Interpret MSH-1 and MSH-2; None when they cannot be delimiters."""
    if not field_sep or field_sep.isalnum() or field_sep.isspace():
        return None
    chars: list[str] = []
    for char in declared:
        # Senders that double the escape character ("^~\\&") mean the standard four; a repeat adds nothing.
        if char not in chars:
            chars.append(char)
    if any(char.isalnum() or char.isspace() for char in chars):
        return None
    if not chars:
        # MSH-2 left empty: the only sensible reading is the standard set.
        return Encoding(field=field_sep)
    if len(chars) >= 4:
        # v2.7+ adds a truncation character as the fifth; only the first four are delimiters.
        return Encoding(field_sep, chars[0], chars[1], chars[2], chars[3], chars[4] if len(chars) > 4 else "")
    if all(char in _STANDARD_CHARS for char in chars):
        # Fewer than four standard characters ("^~&", "^\&"): each keeps its usual role, the rest are absent.
        return Encoding(
            field_sep,
            "^" if "^" in chars else "",
            "~" if "~" in chars else "",
            "\\" if "\\" in chars else "",
            "&" if "&" in chars else "",
        )
    padded = [*chars, "", "", ""]
    return Encoding(field_sep, padded[0], padded[1], padded[2], padded[3])


def _header_fields(line: str) -> list[str]:
    """Split a header segment line on its own field separator (index n holds MSH-(n+1))."""
    return line.split(line[3]) if len(line) > 3 else [line]


def _control_id_of(line: str) -> str:
    """Best-effort MSH-10 of a header line, for naming a message in a fault."""
    fields = _header_fields(line)
    return fields[9] if len(fields) > 9 else ""


def _line_end(data: bytes) -> int:
    """Return the offset of the first CR or LF in data, or its length."""
    cr = data.find(b"\r")
    lf = data.find(b"\n")
    if cr < 0:
        return lf if lf >= 0 else len(data)
    return cr if lf < 0 or cr < lf else lf


def _text_line_end(text: str) -> int:
    """Return the index of the first CR or LF in text, or its length."""
    cr = text.find("\r")
    lf = text.find("\n")
    if cr < 0:
        return lf if lf >= 0 else len(text)
    return cr if lf < 0 or cr < lf else lf


def _declared_charset(msh_line: str) -> str:
    """Return MSH-18.1 of a header line, normalised for lookup ("" when absent)."""
    fields = _header_fields(msh_line)
    if len(fields) < 18:
        return ""
    enc = _encoding_for(msh_line[3], fields[1])
    value = fields[17]
    if enc is None:
        return ""
    if enc.repetition and enc.repetition in value:
        value = value.split(enc.repetition, 1)[0]
    if enc.component and enc.component in value:
        value = value.split(enc.component, 1)[0]
    return " ".join(value.upper().split())


def _missing_msh(found: str, position: int) -> DecodeError:
    """Build the error for input that does not start with an MSH segment."""
    reason = "input is empty" if not found else "a message must start with an MSH segment"
    return DecodeError(
        Fault(rule="HL7-MSH-MISSING", reason=reason, segment="MSH", position=position, found=found)
    )


def _decode(body: bytes, offset: int, bom: bool) -> tuple[str, str]:
    """Decode message bytes per the BOM or MSH-18; return the text and the codec used."""
    msh_line = body[: _line_end(body)].decode("latin-1")
    declared = _declared_charset(msh_line)
    codec = "utf-8" if bom else _CHARSETS.get(declared)
    if codec is None:
        # No usable declaration (absent, ASCII or unknown): UTF-8 if it is valid, else Latin-1.
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return body.decode("latin-1"), "latin-1"
    try:
        return body.decode(codec), codec
    except UnicodeDecodeError as exc:
        source = "a UTF-8 byte-order mark" if bom else f"MSH-18 {declared!r}"
        raise DecodeError(
            Fault(
                rule="HL7-CHARSET",
                reason=f"bytes are not valid {codec} as {source} declares",
                message_id=_control_id_of(msh_line),
                segment="MSH",
                field="MSH-18",
                position=offset + exc.start,
                found=body[exc.start : exc.start + _FOUND_CHARS].decode("latin-1"),
            )
        ) from exc


def _is_segment_name(name: str) -> bool:
    """Say whether name is three uppercase ASCII letters or digits."""
    return len(name) == 3 and name.isascii() and name.isalnum() and name == name.upper()


def _starts_segment(line: str, field_sep: str) -> bool:
    """Say whether a line begins with a segment name followed by the field separator (or nothing)."""
    return _is_segment_name(line[:3]) and (len(line) == 3 or line[3] == field_sep)


def _split_mixed(body: str, field_sep: str) -> list[str]:
    """Split text that uses both CR and LF, keeping an LF that does not start a segment as field data."""
    lines: list[str] = []
    for chunk in body.replace("\r\n", "\r").split("\r"):
        pieces = chunk.split("\n")
        lines.append(pieces[0])
        for piece in pieces[1:]:
            # CR is the standard terminator; where a sender also uses bare LF, an LF followed by something
            # that is not a segment is a line break inside a field (free text), not a segment boundary.
            if not piece.strip() or _starts_segment(piece, field_sep) or not lines[-1]:
                lines.append(piece)
            else:
                lines[-1] += "\n" + piece
    return lines


def _bad_segment(
    message_id: str, line: str, index: int, previous: str, rule: str, reason: str
) -> DecodeError:
    """Build the error for a line that cannot be a segment, hinting at a stray line break when likely."""
    if previous:
        reason += f"; a line break inside a field of the preceding {previous} segment would look like this"
    return DecodeError(
        Fault(
            rule=rule,
            reason=reason,
            message_id=message_id,
            segment=line[:3],
            position=index,
            found=line[:_FOUND_CHARS],
        )
    )


def _build(raw: bytes, body: str, codec: str | None, used: str) -> Hl7Message:
    """Split decoded message text into segments and build the message."""
    msh_line = body[: _text_line_end(body)]
    field_sep = msh_line[3] if len(msh_line) > 3 else ""
    end = msh_line.find(field_sep, 4) if field_sep else -1
    enc = _encoding_for(field_sep, msh_line[4:] if end < 0 else msh_line[4:end])
    if enc is None:
        raise DecodeError(
            Fault(
                rule="HL7-ENCODING-CHARS",
                reason="MSH-1 and MSH-2 must be delimiter characters (not letters, digits or spaces)",
                message_id=_control_id_of(msh_line),
                segment="MSH",
                field="MSH-2",
                position=0,
                found=msh_line[:_FOUND_CHARS],
            )
        )
    if "\n" not in body:
        lines = body.split("\r")
    elif "\r" not in body:
        lines = body.split("\n")
    else:
        lines = _split_mixed(body, field_sep)
    segments: list[Segment] = []
    kept: list[str] = []
    for line in lines:
        if not line:
            continue
        name = line[:3]
        if name not in _VALID_NAMES:
            if not line.strip():
                continue
            if not _is_segment_name(name):
                raise _bad_segment(
                    _control_id_of(msh_line),
                    line,
                    len(segments),
                    segments[-1].name if segments else "",
                    "HL7-SEGMENT-NAME",
                    "a segment name must be 3 uppercase letters or digits",
                )
            _VALID_NAMES.add(name)
        if len(line) > 3 and line[3] != field_sep:
            raise _bad_segment(
                _control_id_of(msh_line),
                line,
                len(segments),
                segments[-1].name if segments else "",
                "HL7-SEGMENT-NAME",
                f"a segment name must be followed by the field separator {field_sep!r}",
            )
        if name == "MSH" and segments:
            raise _bad_segment(
                _control_id_of(msh_line),
                line,
                len(segments),
                "",
                "HL7-MSH-REPEATED",
                "a second MSH segment starts another message; split the stream with split_messages",
            )
        segments.append(Segment(name, len(segments), line, enc, codec))
        kept.append(line)
    kept.append("")
    return Hl7Message(raw, "\r".join(kept), enc, tuple(segments), used)


def parse_message(data: bytes | str) -> Hl7Message:
    """Parse one HL7 v2 ER7 message; raise DecodeError when it cannot be read."""
    if isinstance(data, str):
        raw = data.encode("utf-8", "surrogatepass")
        text = data.lstrip(_LEAD_JUNK_STR)
        offset = len(data) - len(text)
        text = text.rstrip(_TRAIL_JUNK_STR)
        if not text.startswith("MSH"):
            raise _missing_msh(text[:_FOUND_CHARS], offset)
        # Text arrives decoded; the declared charset still says how to read \Xhh\ escapes.
        codec = _CHARSETS.get(_declared_charset(text[: _text_line_end(text)]))
        return _build(raw, text, codec, codec or "utf-8")
    raw = bytes(data)
    body = raw.lstrip(_LEAD_JUNK)
    bom = body.startswith(_BOM)
    if bom:
        body = body[len(_BOM) :].lstrip(_LEAD_JUNK)
    offset = len(raw) - len(body)
    body = body.rstrip(_TRAIL_JUNK)
    if not body.startswith(b"MSH"):
        raise _missing_msh(body[:_FOUND_CHARS].decode("utf-8", "backslashreplace"), offset)
    text, used = _decode(body, offset, bom)
    return _build(raw, text, used, used)


def split_messages(data: bytes) -> list[bytes]:
    """Split a file or stream of messages into each message's bytes, dropping batch envelopes and framing.

    Each item runs from its MSH through the terminator of its last segment. FHS, BHS, BTS and FTS segments
    are not messages and are dropped. Segments that arrive outside any message are returned as an item of
    their own, so that parsing it names the problem instead of silently losing data.
    """
    out: list[bytes] = []
    start = -1
    end = 0
    pos = 0
    for line in data.splitlines(keepends=True):
        line_start = pos
        pos += len(line)
        content = line.rstrip(b"\r\n")
        head = content.lstrip(_FRAMING)
        if head.startswith(_BOM):
            head = head[len(_BOM) :].lstrip(_FRAMING)
        if not head.strip(_FRAMING):
            continue
        tag = head[:3]
        if tag in _ENVELOPE_TAGS:
            if start >= 0:
                out.append(data[start:end])
                start = -1
            continue
        if tag == b"MSH" or start < 0:
            if start >= 0:
                out.append(data[start:end])
            start = line_start + len(content) - len(head)
        body_len = len(content.rstrip(_MLLP))
        # A line closed by MLLP bytes ends at them; otherwise its CR/LF terminator belongs to the message.
        end = pos if body_len == len(content) else line_start + body_len
    if start >= 0:
        out.append(data[start:end])
    return out
