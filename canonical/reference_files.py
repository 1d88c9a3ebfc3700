"""Master data on disk: a directory with manifest.yaml and one CSV file per domain.

    manifest.yaml        version, description, registry (system of record per domain)
    accounts.csv         chart of accounts
    legal_entities.csv   ... one file per domain in canonical.reference.DOMAINS

The first row of each CSV names the columns (the record's fields; ``active`` may be left out and
defaults to true). Every error names the file, the line and the column, so a data steward can fix it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from canonical.errors import HcsyncError
from canonical.reference import DOMAINS, RECORD_TYPES, MasterDataManifest, MasterDataSet, Problem

MANIFEST = "manifest.yaml"


class MasterDataFileError(HcsyncError):
    """A master-data directory cannot be read into a set; ``problems`` lists every located error."""

    def __init__(self, directory: Path, problems: list[Problem]) -> None:
        lines = "\n".join(f"  {p.describe()}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{directory}: {len(problems)} problem(s)\n{lines}{more}")
        self.problems = problems


def columns(domain: str) -> list[str]:
    """Return the CSV columns of a domain: the record's fields with ``active`` last."""
    fields = [name for name in RECORD_TYPES[domain].model_fields if name != "active"]
    return [*fields, "active"]


def _errors(domain: str, line: int | None, key: str, exc: ValidationError) -> list[Problem]:
    out = []
    for error in exc.errors():
        column = ".".join(str(part) for part in error["loc"]) or "row"
        out.append(Problem(domain=domain, key=key, line=line, reason=f"column {column}: {error['msg']}"))
    return out


def _read_domain(path: Path, domain: str) -> tuple[list[Any], list[Problem]]:
    model = RECORD_TYPES[domain]
    known = set(model.model_fields)
    records: list[Any] = []
    problems: list[Problem] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        unknown = [name for name in header if name not in known]
        if unknown:
            problems.append(
                Problem(domain=domain, key="", line=1, reason=f"unknown column(s) {', '.join(unknown)}")
            )
            return records, problems
        for row in reader:
            line = reader.line_num
            values = {name: value.strip() for name, value in row.items() if name is not None and value}
            if None in row:
                problems.append(Problem(domain=domain, key="", line=line, reason="more values than columns"))
                continue
            key = "|".join(values.get(name, "") for name in model.KEY_FIELDS)
            try:
                records.append(model.model_validate(values))
            except ValidationError as exc:
                problems.extend(_errors(domain, line, key, exc))
    return records, problems


def read_set(directory: Path) -> MasterDataSet:
    """Read a master-data directory; raise MasterDataFileError listing every problem found.

    The set is also checked for consistency (duplicate keys, references to unknown records or accounts),
    so a set this returns is fit to load.
    """
    problems: list[Problem] = []
    manifest: MasterDataManifest | None = None
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        problems.append(Problem(domain="manifest", key="", reason=f"{MANIFEST} is missing"))
    else:
        try:
            manifest = MasterDataManifest.model_validate(yaml.safe_load(manifest_path.read_text("utf-8")))
        except yaml.YAMLError as exc:
            problems.append(Problem(domain="manifest", key="", reason=f"not YAML: {exc}"))
        except ValidationError as exc:
            problems.extend(_errors("manifest", None, "", exc))
    domains: dict[str, list[Any]] = {}
    for domain in DOMAINS:
        path = directory / f"{domain}.csv"
        if not path.is_file():
            problems.append(Problem(domain=domain, key="", reason=f"{path.name} is missing"))
            continue
        domains[domain], found = _read_domain(path, domain)
        problems.extend(found)
    if problems or manifest is None:
        raise MasterDataFileError(directory, problems)
    data = MasterDataSet(manifest=manifest, **{d: tuple(r) for d, r in domains.items()})
    inconsistent = data.problems()
    if inconsistent:
        raise MasterDataFileError(directory, inconsistent)
    return data


def domain_csv(data: MasterDataSet, domain: str) -> str:
    """Return one domain of a set as CSV text, in the layout read_set reads."""
    out = io.StringIO()
    names = columns(domain)
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for record in data.records(domain):
        row = record.model_dump(mode="json")
        writer.writerow({name: _cell(row[name]) for name in names})
    return out.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def write_set(data: MasterDataSet, directory: Path) -> Path:
    """Write a set as a master-data directory (manifest.yaml plus one CSV per domain)."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = data.manifest.model_dump(mode="json")
    (directory / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False, width=110), "utf-8")
    for domain in DOMAINS:
        (directory / f"{domain}.csv").write_text(domain_csv(data, domain), "utf-8")
    return directory


__all__ = ["MANIFEST", "MasterDataFileError", "columns", "domain_csv", "read_set", "write_set"]
