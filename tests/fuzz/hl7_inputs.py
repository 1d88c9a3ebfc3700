"""Inputs for the HL7 v2 targets: real messages to mutate, mutations, and structure-aware generation.

Three kinds of input reach the parser and the mapper:

- :func:`sample_seeds` (every message builder of tests/hl7_samples.py) and :func:`corpus_seeds` (the shared
  corpus, read in place) are mutated by :func:`mutated`: a field replaced by an awkward value, bytes
  flipped, inserted, deleted or duplicated, lines swapped or repeated, separators changed, the message cut;
- :func:`structured_messages` builds messages from scratch: any field separator and MSH-2 (standard,
  short, with a truncation character, doubled escape, empty, odd or non-ASCII characters), segments the
  mappers read with values at the positions they read, repetitions, components, subcomponents, escape
  sequences (known, unknown, unterminated, \\Xhh\\ hex), CR, LF or CRLF separators, an MSH-18 character
  set and bytes encoded in it or in another one, a byte-order mark and leftover MLLP bytes.
"""

from __future__ import annotations

from functools import cache

from hypothesis import strategies as st

from canonical.hl7v2.mapping import SUPPORTED
from canonical.hl7v2.parser import Encoding, escape, unescape
from tests import hl7_samples
from tests.corpus import corpus_dir

__all__ = [
    "AWKWARD_VALUES",
    "corpus_seeds",
    "mutated",
    "reencoded",
    "sample_seeds",
    "structured_messages",
]

# Values that have broken parsers and mappers elsewhere: extremes, numbers Python reads but HL7 does not,
# impossible dates and offsets, escape sequences, delimiters, non-ASCII and control characters.
AWKWARD_VALUES: tuple[str, ...] = (
    "",
    '""',
    "0",
    "-0",
    "-1",
    "+7",
    " 12 ",
    "1_000",
    "\u0661\u0662",  # Arabic-Indic digits: int() reads them
    "\uff11\uff12",  # full-width digits
    "1.5",
    "-1.5",
    "1e3",
    "1e309",
    "NaN",
    "Infinity",
    "-Infinity",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999",
    "0.0000000000000000001",
    "999999.9999",
    "1000000",
    "1000000.001",
    "20260229",
    "20250229",
    "2026",
    "202611",
    "20261120",
    "2026112008",
    "20261120083000.1234",
    "20261120083000+0000",
    "20261120083000+1400",
    "20261120083000-1200",
    "20261120083000+9999",
    "20261120083000-2400",
    "2026112008300099",
    "99991231235959",
    "00000000",
    "00010101",
    "19000101",
    "\\F\\",
    "\\S\\\\T\\\\R\\\\E\\",
    "\\.br\\",
    "\\X0D\\",
    "\\X00\\",
    "\\XFFFE\\",
    "\\XC3\\",
    "\\Xzz\\",
    "\\H\\bold\\N\\",
    "\\",
    "\\\\",
    "~~~",
    "^^^^",
    "&&&",
    "|",
    "A" * 300,
    "é",
    "\u00ff\u0100",
    "\U0001d54f",
    "\u200b",
    "\x00",
    "\x7f",
    "\t",
    "CG",
    "CD",
    "X",
    "D",
    "U",
    "N",
)
_DELIMITER_BYTES = b"|^~\\&\r\n\x0b\x1c\x00 \xef\xbb\xbf\xff"
# Segments the mappers read, then some they do not.
_SEGMENTS = (
    "EVN",
    "PID",
    "PD1",
    "PV1",
    "PV2",
    "MRG",
    "FT1",
    "DG1",
    "PR1",
    "DRG",
    "ORC",
    "RXE",
    "RXA",
    "RXR",
    "NK1",
    "IN1",
    "GT1",
    "OBX",
    "ZPI",
)
_ENCODING_CHARS = (
    "^~\\&",
    "^~\\&#",
    "^~&",
    "^\\&",
    "^~\\\\&",
    "",
    "^",
    "~^\\&",
    "^~\\&^~\\&",
    "$%!@",
    "\u00a7\u00b6",
)
# MSH-18 values: declared sets the parser maps, ASCII, unknown ones, and junk.
_CHARSETS = (
    "",
    "UNICODE UTF-8",
    "8859/1",
    "8859/12",
    "ASCII",
    "ISO IR192",
    "ISO IR87",
    "GB 18030-2000",
    "BIG-5",
    "KS X 1001",
    "WINDOWS-1252",
    "UNICODE",
    "ZZZ",
    "8859/1~UNICODE UTF-8",
)
_CODECS = ("utf-8", "latin-1", "cp1252", "gb18030", "big5", "euc_kr", "iso2022_jp", "utf-16", "iso8859-5")


@cache
def _samples() -> tuple[bytes, ...]:
    return (
        hl7_samples.adt("A01", "S-A01", "V1", discharge="20261121083000"),
        hl7_samples.adt("A08", "S-A08", "V1"),
        hl7_samples.with_segments(  # coverage: two IN1, every mapped field filled
            hl7_samples.adt("A04", "S-A04", "V1"),
            hl7_samples.in1(
                f1="1",
                f2="PPO",
                f3="BCBS-MN",
                f8="G1",
                f12="20240101",
                f13="20241231",
                f16="Roe^Ann",
                f17="SPO",
                f18="19790202",
                f22="1",
                f36="M1",
                f49="M9",
            ),
            hl7_samples.in1(f1="2", f3="MCR-A", f17="SEL", f36="M2"),
        ),
        hl7_samples.dft(
            "S-DFT", "V1", [("CG", "99213", "Visit", 1, "150.00"), ("CD", "99213", "Credit", 1, "-20")]
        ),
        hl7_samples.bar("P01", "S-BAR", "V1"),
        hl7_samples.rde("S-RDE", "V1"),
        hl7_samples.ras("S-RAS", "V1", [("1", "2", "CP"), ("2", "3", "CP^U")]),
        hl7_samples.a40("S-A40", "MRN002", "MRN001"),
        hl7_samples.dft_p11(
            "S-P11", "V1", [("CG", "99283", "ED visit", 1, "120.00", ("99283",), ("S52.501A",))], drg="562"
        ),
        hl7_samples.bar_p12(
            "S-P12", "V1", diagnoses=(("I10", "D1", "A"),), procedures=(("92928", "P1", "D"),)
        ),
        hl7_samples.person("A31", "S-A31"),
        hl7_samples.a44("S-A44", "MRN002", "MRN001", "ACC1"),
        hl7_samples.a45("S-A45", "MRN002", "MRN001", ("V1", "V2")),
    )


def sample_seeds() -> list[bytes]:
    """Return one message of every builder in tests/hl7_samples.py (each message type hcsync maps)."""
    return list(_samples())


@cache
def _corpus_bytes(folders: tuple[str, ...]) -> tuple[bytes, ...]:
    root = corpus_dir(*folders)
    return tuple(
        path.read_bytes() for name in folders for path in sorted((root / name).iterdir()) if path.is_file()
    )


def corpus_seeds(folders: tuple[str, ...]) -> list[bytes]:
    """Return every file of these shared corpus folders, read in place; skip the test (fail under CI)
    when they are absent (tests/corpus.py)."""
    return list(_corpus_bytes(folders))


def _replace_field(draw: st.DrawFn, data: bytes) -> bytes:
    """Replace one field of one segment with an awkward value (or append it past the last field)."""
    lines = data.split(b"\r")
    index = draw(st.integers(0, max(0, len(lines) - 1)))
    fields = lines[index].split(b"|")
    position = draw(st.integers(1, len(fields) + 3))
    value = draw(st.sampled_from(AWKWARD_VALUES) | st.text(max_size=12))
    # The value lands inside a component now and then, not only as the whole field.
    if draw(st.booleans()):
        value = draw(st.sampled_from(("{}^X", "X^{}", "{}~{}", "X^^{}", "{}&X"))).format(value, value)
    encoded = value.encode(draw(st.sampled_from(("utf-8", "latin-1"))), "replace")
    fields.extend([b""] * (position + 1 - len(fields)))
    fields[position] = encoded
    lines[index] = b"|".join(fields)
    return b"\r".join(lines)


def _flip(draw: st.DrawFn, data: bytes) -> bytes:
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


def _insert(draw: st.DrawFn, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    piece = draw(st.binary(min_size=1, max_size=8))
    return data[:at] + piece + data[at:]


def _insert_delimiter(draw: st.DrawFn, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    byte = draw(st.sampled_from(_DELIMITER_BYTES))
    return data[:at] + bytes([byte]) * draw(st.integers(1, 3)) + data[at:]


def _delete(draw: st.DrawFn, data: bytes) -> bytes:
    start = draw(st.integers(0, len(data)))
    return data[:start] + data[start + draw(st.integers(1, 16)) :]


def _duplicate(draw: st.DrawFn, data: bytes) -> bytes:
    start = draw(st.integers(0, len(data)))
    end = min(len(data), start + draw(st.integers(1, 64)))
    return data[:end] + data[start:end] * draw(st.integers(1, 3)) + data[end:]


def _truncate(draw: st.DrawFn, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


def _shuffle_lines(draw: st.DrawFn, data: bytes) -> bytes:
    lines = data.split(b"\r")
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    if draw(st.booleans()):
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines.insert(j, lines[i])
    return b"\r".join(lines)


def _separators(draw: st.DrawFn, data: bytes) -> bytes:
    new = draw(st.sampled_from((b"\n", b"\r\n", b"\n\r", b"\r\r", b"")))
    return data.replace(b"\r", new)


_MUTATIONS = (
    _replace_field,
    _replace_field,
    _replace_field,
    _flip,
    _insert,
    _insert_delimiter,
    _delete,
    _duplicate,
    _truncate,
    _shuffle_lines,
    _separators,
)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """Return one seed after one to four mutations."""
    data = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        data = draw(st.sampled_from(_MUTATIONS))(draw, data)
    return data


_CODES = ("NMH", "V1", "MRN001", "99213", "I21.4", "CG", "I", "A", "ORD1", "00409-4888-01", "CP", "1", "2.5")
_ESCAPES = ("F", "S", "T", "R", "E", "P", ".br", "H", "N", "X0D", "X41", "XC3A9", "XZ", "X", "Cxxyy", "")


def _atom(draw: st.DrawFn, escape: str) -> str:
    """Return one leaf value: an awkward value, a plausible code, short text, or an escape sequence."""
    kind = draw(st.integers(0, 5))
    if kind <= 1:
        return draw(st.sampled_from(AWKWARD_VALUES))
    if kind == 2:
        return draw(st.text(max_size=6))
    if kind == 3 and escape:
        closed = draw(st.integers(0, 3)) > 0
        return f"{escape}{draw(st.sampled_from(_ESCAPES))}{escape if closed else ''}"
    return draw(st.sampled_from(_CODES))


def _field(draw: st.DrawFn, delims: tuple[str, str, str, str]) -> str:
    """Return one field value: mostly one value, else repetitions of components of subcomponents."""
    component, repetition, escape, subcomponent = delims
    if draw(st.integers(0, 2)):
        return _atom(draw, escape)
    reps = []
    for _ in range(draw(st.integers(1, 2))):
        comps = []
        for _ in range(draw(st.integers(1, 4))):
            subs = [_atom(draw, escape) for _ in range(draw(st.integers(1, 2)))]
            comps.append((subcomponent or "&").join(subs))
        reps.append((component or "^").join(comps))
    return (repetition or "~").join(reps)


def _segment(draw: st.DrawFn, field_sep: str, delims: tuple[str, str, str, str]) -> str:
    """Return one segment: a name the mappers read (or any other), a few fields at any position to 50."""
    if draw(st.integers(0, 9)):
        name = draw(st.sampled_from(_SEGMENTS))
    else:
        name = draw(st.text(alphabet="ABCZ019a|^ \u00e9", min_size=0, max_size=4))
    values = {draw(st.integers(1, 50)): _field(draw, delims) for _ in range(draw(st.integers(0, 6)))}
    count = max(values, default=0)
    return field_sep.join([name, *(values.get(n, "") for n in range(1, count + 1))])


@st.composite
def structured_messages(draw: st.DrawFn) -> bytes:
    """Return a message built segment by segment, with its own delimiters, separators and encoding."""
    # Mostly delimiters a parser must accept, so that the mappers are reached; now and then anything.
    odd = draw(st.integers(0, 9)) == 0
    field_sep = draw(st.characters(max_codepoint=0x2FF)) if odd else draw(st.sampled_from("||||||#!$*"))
    declared = draw(st.text(max_size=6)) if odd else draw(st.sampled_from(_ENCODING_CHARS))
    padded = [*dict.fromkeys(declared), "", "", "", ""]
    delims = (padded[0], padded[1], padded[2], padded[3])
    message_type, trigger = draw(
        st.sampled_from(sorted(SUPPORTED)) | st.sampled_from((("ORU", "R01"), ("ADT", ""), ("ZZZ", "Z01")))
    )
    charset = draw(st.sampled_from(_CHARSETS)) if draw(st.booleans()) else ""
    header = [
        "MSH",
        declared,
        "SEND",
        draw(st.sampled_from(("NMH", "", "N\\S\\MH"))),
        "HCSYNC",
        "HCSYNC",
        draw(st.sampled_from(AWKWARD_VALUES[30:44])),
        "",
        f"{message_type}{delims[0] or '^'}{trigger}",
        draw(st.sampled_from(("C1", "", "C\\F\\1", "\uff23\uff29\uff24"))),
        "P",
        draw(st.sampled_from(("2.5.1", "2.3", "2.7", "2.9", "", "X"))),
        "",
        "",
        "",
        "",
        "",
        charset,
    ]
    if not charset:
        header = header[:12]
    segments = [field_sep.join(header)]
    segments += [_segment(draw, field_sep, delims) for _ in range(draw(st.integers(0, 7)))]
    separator = draw(st.sampled_from(("\r", "\n", "\r\n")))
    text = separator.join(segments) + draw(st.sampled_from(("", separator, "\r\n\r\n")))
    if draw(st.booleans()):
        # Segment separators mixed within the message, as some feeds do.
        text = text.replace(separator, draw(st.sampled_from(("\r", "\n", "\r\n"))), draw(st.integers(1, 3)))
    codec = draw(st.sampled_from(_CODECS)) if draw(st.integers(0, 2)) == 0 else "utf-8"
    data = text.encode(codec, "replace")
    prefix = draw(st.sampled_from((b"", b"", b"\xef\xbb\xbf", b"\x0b", b"\r\n", b"\x00 ")))
    suffix = draw(st.sampled_from((b"", b"", b"\x1c\r", b"\x00", b"\x0b")))
    return prefix + data + suffix


# Delimiter sets a message may declare instead of the standard ones: all distinct, none a letter, digit or
# space (MSH-1, then MSH-2's component, repetition, escape, subcomponent and, from v2.7, truncation).
_DELIMITER_SETS = st.permutations(list("|^~\\&#!$*@%+=:;<>?/-.")).map(lambda chars: chars[:6])


@st.composite
def reencoded(draw: st.DrawFn, seeds: list[bytes]) -> tuple[bytes, bytes]:
    """Return (a sample message, the same message written with other delimiters and separators).

    Both say the same thing, so the mapper must turn them into the same events: values that contain one of
    the new delimiters are escaped, as a sender must.
    """
    seed = draw(st.sampled_from(seeds))
    chars = draw(_DELIMITER_SETS)
    truncation = chars[5] if draw(st.booleans()) else ""
    enc = Encoding(chars[0], chars[1], chars[2], chars[3], chars[4], truncation)
    standard = Encoding()
    lines: list[str] = []
    for line in seed.decode().split("\r"):
        if not line:
            continue
        fields = line.split("|")
        if fields[0] == "MSH":
            out = [
                "MSH"
                + enc.field
                + enc.component
                + enc.repetition
                + enc.escape
                + enc.subcomponent
                + truncation
            ]
            rest = fields[2:]
        else:
            out = [fields[0]]
            rest = fields[1:]
        for value in rest:
            reps = []
            for rep in value.split(standard.repetition):
                comps = []
                for comp in rep.split(standard.component):
                    subs = [escape(unescape(sub, standard), enc) for sub in comp.split(standard.subcomponent)]
                    comps.append(enc.subcomponent.join(subs))
                reps.append(enc.component.join(comps))
            out.append(enc.repetition.join(reps))
        if fields[0] == "MSH":
            lines.append(out[0] + enc.field + enc.field.join(out[1:]))
        else:
            lines.append(enc.field.join(out))
    separator = draw(st.sampled_from(("\r", "\n", "\r\n")))
    return seed, (separator.join(lines) + separator).encode()
