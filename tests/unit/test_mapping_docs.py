"""The mapping tables in docs/mappings/ agree with the code.

- every canonical attribute a table names (`Model.field`) is a field of that pydantic model;
- every fault rule the docs name (HL7-...) is raised by the mapper (canonical/hl7v2/mapping.py and the
  modules it reads through, MAPPER_MODULES), and on the field the table row is about; conversely every
  rule the mapper raises is documented;
- every event type named is an EventType, and every EventType is documented;
- the fields of the models the mapper fills are all documented;
- the pages are linked from the index, and their links and anchors resolve.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

import canonical.envelope
import canonical.models
import canonical.revenue_cycle
import streams.commands
import streams.encounter_state
from canonical.envelope import EventType

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "mappings"
INDEX = DOCS / "hl7v2.md"
HL7V2 = ROOT / "canonical" / "hl7v2"
# The mapper: mapping.py and every module it maps through (not the parser, data types or strict check,
# whose rules are the parser's own).
MAPPER_MODULES = tuple(
    sorted(
        path
        for path in HL7V2.glob("*.py")
        if path.name not in ("__init__.py", "parser.py", "datatypes.py", "strict.py")
    )
)
# One page per message family, besides the index.
PAGES = ("adt.md", "bar.md", "dft.md", "rde.md", "ras.md", "enrichment.md")

RULE = re.compile(r"\bHL7-[A-Z0-9]+(?:-[A-Z0-9]+)*")
SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
FIELD_REF = re.compile(r"([A-Z][A-Z0-9]{2})-(\d+)")
# A whole code span naming a model attribute: `Charge.amount_cents`.
ATTRIBUTE = re.compile(r"`([A-Z][A-Za-z0-9]*)\.([a-z_][a-z0-9_]*)`")
CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
CELL_SPLIT = re.compile(r"(?<!\\)\|")
SEPARATOR_CELL = re.compile(r":?-{3,}:?")
MAPPING_COLUMNS = ("hl7 field", "meaning", "canonical attribute", "rule")
# Models the mapper fills or that carry mapped values on to the sinks: each of their fields is documented.
FULLY_DOCUMENTED = (
    "Patient",
    "Address",
    "Encounter",
    "Charge",
    "Diagnosis",
    "Procedure",
    "Drg",
    "CodingUpdate",
    "MedicationOrder",
    "MedicationAdministration",
    "PatientMerge",
    "AccountMove",
    "EventEnvelope",
    "MessageReceipt",
    "InventoryMovement",
    "JournalLine",
    "ErpDimensions",
    "Coverage",
    "CoverageWarning",
)


@dataclass(frozen=True, slots=True)
class Table:
    """One markdown table: where it is, its lower-cased header and its rows of cells."""

    page: str
    line: int
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def column(self, name: str) -> int | None:
        return self.header.index(name) if name in self.header else None

    def where(self, row: int) -> str:
        return f"{self.page}, table at line {self.line}, row {row + 1}"


@dataclass(frozen=True, slots=True)
class MapperRules:
    """What the mapper modules raise, read from their source."""

    literals: frozenset[str]
    # f-string rules such as HL7-{name}-MISSING, as patterns whose groups are segment names.
    templates: tuple[re.Pattern[str], ...]
    # Segment names the mapper reports faults for (fault() arguments and require_segment()).
    segments: frozenset[str]
    required_segments: frozenset[str]
    # rule -> the fields (SEG-N) the mapper raises it for, where the source names them literally.
    fields: dict[str, frozenset[str]]

    def raises(self, rule: str) -> bool:
        if rule in self.literals:
            return True
        for template in self.templates:
            match = template.fullmatch(rule)
            if match is not None and all(name in self.segments for name in match.groups()):
                return True
        return False


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _cells(line: str) -> tuple[str, ...]:
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    return tuple(cell.strip() for cell in CELL_SPLIT.split(text))


def _table_blocks(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, lines) of every run of table lines outside code fences."""
    block: list[str] = []
    start = 0
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.lstrip().startswith("|"):
            if not block:
                start = number
            block.append(line)
            continue
        if block:
            yield start, block
            block = []
    if block:
        yield start, block


def _parse_tables(path: Path) -> tuple[list[Table], list[str]]:
    """Return the tables of one page and the problems found while reading them."""
    tables: list[Table] = []
    problems: list[str] = []
    for start, lines in _table_blocks(path):
        where = f"{path.name}, table at line {start}"
        header = tuple(cell.lower() for cell in _cells(lines[0]))
        if len(lines) < 2 or not all(SEPARATOR_CELL.fullmatch(c) for c in _cells(lines[1])):
            problems.append(f"{where}: no separator line under the header")
            continue
        rows = tuple(_cells(line) for line in lines[2:])
        for number, row in enumerate(rows, start=1):
            if len(row) != len(header):
                problems.append(
                    f"{where}, row {number}: {len(row)} cells for {len(header)} columns (an unescaped '|'?)"
                )
        tables.append(Table(path.name, start, header, rows))
    return tables, problems


@cache
def _all_tables() -> tuple[Table, ...]:
    found: list[Table] = []
    for path in _pages():
        tables, _ = _parse_tables(path)
        found.extend(tables)
    return tuple(found)


def _models_of(*modules: ModuleType) -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for module in modules:
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
            ):
                found[name] = value
    return found


CANONICAL_MODELS = _models_of(canonical.models, canonical.envelope, canonical.revenue_cycle)
# Prose may also name the encounter agent's state and commands, and model properties.
PROSE_MODELS = {**CANONICAL_MODELS, **_models_of(streams.encounter_state, streams.commands)}


@cache
def _mapper_rules() -> MapperRules:
    literals: set[str] = set()
    templates: list[re.Pattern[str]] = []
    segments: set[str] = set()
    required: set[str] = set()
    fields: dict[str, set[str]] = {}
    nodes = [node for path in MAPPER_MODULES for node in ast.walk(ast.parse(path.read_text("utf-8")))]
    for node in nodes:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and RULE.fullmatch(node.value):
            literals.add(node.value)
        elif isinstance(node, ast.JoinedStr):
            first = node.values[0] if node.values else None
            if isinstance(first, ast.Constant) and str(first.value).startswith("HL7-"):
                pattern = "".join(
                    re.escape(str(part.value)) if isinstance(part, ast.Constant) else "([A-Z][A-Z0-9]{2})"
                    for part in node.values
                )
                templates.append(re.compile(pattern))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            args = [
                a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
                for a in node.args
            ]
            name = node.func.attr
            if name == "require_segment" and args and args[0] is not None:
                required.add(args[0])
                segments.add(args[0])
            field, rule = None, None
            if name == "fault" and len(args) >= 4:
                if args[1] is not None and SEGMENT_NAME.fullmatch(args[1]):
                    segments.add(args[1])
                field, rule = args[2], args[3]
            elif name == "convert" and len(args) >= 5:
                field, rule = args[1], args[4]
            if field is not None and rule is not None:
                ref = FIELD_REF.match(field)
                if ref is not None:
                    fields.setdefault(rule, set()).add(f"{ref.group(1)}-{ref.group(2)}")
    return MapperRules(
        literals=frozenset(literals),
        templates=tuple(templates),
        segments=frozenset(segments),
        required_segments=frozenset(required),
        fields={rule: frozenset(refs) for rule, refs in fields.items()},
    )


def _documented_rules() -> dict[str, list[str]]:
    """Return every rule id the docs mention, with the pages that mention it."""
    found: dict[str, list[str]] = {}
    for path in _pages():
        for rule in RULE.findall(path.read_text(encoding="utf-8")):
            found.setdefault(rule, []).append(path.name)
    return found


def _slug(heading: str) -> str:
    """Return the anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {
        _slug(line.lstrip("#"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.match(r"#{1,6} ", line)
    }


def test_the_mapper_source_is_understood() -> None:
    # A guard for the checks below: if the mapper's shape changes so that nothing is found, they must not
    # pass vacuously.
    rules = _mapper_rules()
    assert {path.name for path in MAPPER_MODULES} >= {"mapping.py", "reader.py", "charges.py"}
    assert len(rules.literals) >= 30
    assert rules.templates
    assert {"PID", "PV1"} <= rules.required_segments
    assert rules.fields.get("HL7-RXA-6-NUMBER") == frozenset({"RXA-6"})
    assert len(_all_tables()) >= 20


def test_every_page_is_indexed_and_its_links_resolve() -> None:
    index = INDEX.read_text(encoding="utf-8")
    problems = [f"hl7v2.md does not link {page}" for page in PAGES if f"]({page}" not in index]
    problems += [f"{page} is missing" for page in PAGES if not (DOCS / page).is_file()]
    unknown = {p.name for p in _pages()} - {*PAGES, INDEX.name}
    problems += [f"{name} is not one of the pages this test knows" for name in sorted(unknown)]
    for path in _pages():
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part) if file_part else path
            if not linked.exists():
                problems.append(f"{path.name}: link to missing {target}")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                problems.append(f"{path.name}: link to missing anchor {target}")
    assert not problems, "\n".join(problems)


def test_tables_are_well_formed() -> None:
    problems: list[str] = []
    for path in _pages():
        _, found = _parse_tables(path)
        problems += found
    for page in PAGES:
        mapping_tables = [
            t
            for t in _all_tables()
            if t.page == page and {"hl7 field", "canonical attribute"} <= set(t.header)
        ]
        if not mapping_tables:
            problems.append(f"{page} has no mapping table (HL7 field to canonical attribute)")
        for table in mapping_tables:
            if table.header[: len(MAPPING_COLUMNS)] != MAPPING_COLUMNS:
                problems.append(
                    f"{table.page}, table at line {table.line}: columns {table.header} do not start with "
                    f"{MAPPING_COLUMNS}"
                )
    assert not problems, "\n".join(problems)


def test_canonical_attributes_are_model_fields() -> None:
    problems: list[str] = []
    checked = 0
    for table in _all_tables():
        column = table.column("canonical attribute")
        if column is None:
            continue
        for number, row in enumerate(table.rows):
            if column >= len(row):
                continue
            named = ATTRIBUTE.findall(row[column])
            if not named:
                problems.append(f"{table.where(number)}: no `Model.field` in {row[column]!r}")
            for model_name, field in named:
                model = CANONICAL_MODELS.get(model_name)
                if model is None:
                    problems.append(f"{table.where(number)}: {model_name} is not a canonical model")
                elif field not in model.model_fields:
                    problems.append(f"{table.where(number)}: {model_name} has no field {field!r}")
                checked += 1
    assert checked >= 150, f"only {checked} attributes found: is the table format still understood?"
    assert not problems, "\n".join(problems)


def test_attributes_named_in_prose_exist() -> None:
    problems: list[str] = []
    for path in _pages():
        for model_name, attribute in ATTRIBUTE.findall(path.read_text(encoding="utf-8")):
            model = PROSE_MODELS.get(model_name)
            if model is None:
                problems.append(f"{path.name}: `{model_name}.{attribute}`: {model_name} is not a known model")
            elif attribute not in model.model_fields and not isinstance(
                getattr(model, attribute, None), property
            ):
                problems.append(f"{path.name}: {model_name} has no field or property {attribute!r}")
    assert not problems, "\n".join(problems)


def test_fully_documented_models_have_every_field_documented() -> None:
    documented: set[tuple[str, str]] = set()
    for table in _all_tables():
        column = table.column("canonical attribute")
        if column is None:
            continue
        for row in table.rows:
            if column < len(row):
                documented.update(ATTRIBUTE.findall(row[column]))
    missing = [
        f"{name}.{field}"
        for name in FULLY_DOCUMENTED
        for field in CANONICAL_MODELS[name].model_fields
        if (name, field) not in documented
    ]
    assert not missing, f"fields with no row in any mapping table: {missing}"


def test_documented_rules_are_raised_by_the_mapper() -> None:
    rules = _mapper_rules()
    unknown = {rule: pages for rule, pages in _documented_rules().items() if not rules.raises(rule)}
    assert not unknown, f"rules the docs name but the mapper does not raise: {unknown}"


def test_every_rule_the_mapper_raises_is_documented() -> None:
    rules = _mapper_rules()
    documented = set(_documented_rules())
    missing = sorted(rules.literals - documented)
    missing += sorted(
        f"HL7-{name}-MISSING" for name in rules.required_segments if f"HL7-{name}-MISSING" not in documented
    )
    missing += [
        template.pattern
        for template in rules.templates
        if not any(template.fullmatch(rule) and rules.raises(rule) for rule in documented)
    ]
    assert not missing, f"rules raised by the mapper but not documented: {missing}"


def test_rules_sit_on_the_field_that_raises_them() -> None:
    rules = _mapper_rules()
    problems: list[str] = []
    for table in _all_tables():
        field_column, rule_column = table.column("hl7 field"), table.column("rule")
        if field_column is None or rule_column is None:
            continue
        for number, row in enumerate(table.rows):
            if max(field_column, rule_column) >= len(row):
                continue
            for rule in RULE.findall(row[rule_column]):
                raised_on = rules.fields.get(rule)
                if not raised_on:
                    continue  # raised on a computed field (HL7-DTM) or on no field
                if not any(re.search(rf"\b{re.escape(ref)}(?!\d)", row[field_column]) for ref in raised_on):
                    problems.append(
                        f"{table.where(number)}: {rule} is raised on {sorted(raised_on)}, "
                        f"not on {row[field_column]!r}"
                    )
    assert not problems, "\n".join(problems)


def test_event_types_are_event_types_and_all_documented() -> None:
    values = {member.value for member in EventType}
    problems: list[str] = []
    documented: set[str] = set()
    for table in _all_tables():
        column = table.column("event type")
        if column is None:
            continue
        for number, row in enumerate(table.rows):
            named = CODE_SPAN.findall(row[column]) if column < len(row) else []
            if not named:
                problems.append(f"{table.where(number)}: no event type")
            for value in named:
                if value not in values:
                    problems.append(f"{table.where(number)}: {value!r} is not an EventType")
                documented.add(value)
    problems += [f"EventType {value!r} is in no event type column" for value in sorted(values - documented)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "rule", "expected"),
    [
        ("HL7-PV1-MISSING", "required segment", True),
        ("HL7-DG1-1-NUMBER", "set id template", True),
        ("HL7-XYZ-MISSING", "not a segment the mapper reads", False),
        ("HL7-RXA-6-MISSPELT", "not raised", False),
    ],
)
def test_rule_matching(text: str, rule: str, expected: bool) -> None:
    assert _mapper_rules().raises(text) is expected, rule


def test_master_data_rules_are_documented_both_ways() -> None:
    from actors.enrich import RULES as MD_RULES

    text = (DOCS / "enrichment.md").read_text("utf-8")
    documented = set(re.findall(r"\bMD-[A-Z]+(?:-[A-Z]+)*", text))
    assert documented == set(MD_RULES), (
        f"only in the docs: {sorted(documented - set(MD_RULES))}; "
        f"only in actors/enrich.py: {sorted(set(MD_RULES) - documented)}"
    )


def test_the_known_types_table_is_the_code_s() -> None:
    from canonical.hl7v2.unmapped import NO_FINANCIAL_EFFECT

    [table] = [t for t in _all_tables() if t.page == INDEX.name and t.header == ("msh-9.1", "what it is")]
    documented = {row[0]: row[1] for row in table.rows}
    assert documented == NO_FINANCIAL_EFFECT, (
        f"only in hl7v2.md: {sorted(set(documented) - set(NO_FINANCIAL_EFFECT))}; "
        f"only in canonical/hl7v2/unmapped.py: {sorted(set(NO_FINANCIAL_EFFECT) - set(documented))}; "
        "or a description differs"
    )
