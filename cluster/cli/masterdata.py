"""`hcsync masterdata`: validate, compare, load and roll back versioned master data in Redis."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.markup import escape
from rich.table import Table

from actors.masterdata import MasterDataConflict, MasterDataStore
from canonical.errors import ConfigurationError
from canonical.reference import DOMAINS, MasterDataSet, RecordChange, diff_sets
from canonical.reference_files import MasterDataFileError, read_set
from cluster.cli.console import err_console, fail, operator, stdout_console
from foundation.settings import get_settings

__all__ = ["masterdata_app"]

masterdata_app = typer.Typer(
    help="Validate, compare, load and roll back master data (versioned, loaded atomically into Redis).",
    no_args_is_help=True,
)
console = stdout_console()

Directory = Annotated[
    Path, typer.Argument(exists=True, file_okay=False, help="Master-data directory (manifest.yaml + CSVs).")
]


def _store() -> MasterDataStore:
    settings = get_settings()
    return MasterDataStore.from_url(settings.redis, settings.topic_prefix)


def _read(directory: Path) -> MasterDataSet:
    try:
        return read_set(directory)
    except MasterDataFileError as exc:
        err_console.print(f"[red]{escape(str(directory))}: {len(exc.problems)} problem(s)[/]")
        for problem in exc.problems:
            err_console.print(f"  {escape(problem.describe())}")
        raise typer.Exit(1) from None


def _counts_table(data: MasterDataSet) -> Table:
    table = Table(title=f"master data {data.version}")
    table.add_column("domain")
    table.add_column("records", justify="right")
    table.add_column("inactive", justify="right")
    table.add_column("system of record")
    sources = {entry.domain: entry for entry in data.manifest.registry}
    for domain in DOMAINS:
        records = data.records(domain)
        source = sources[domain]
        table.add_row(
            domain,
            f"{len(records):,}",
            f"{sum(not r.active for r in records):,}",
            f"{source.system} ({source.owner})",
        )
    return table


@masterdata_app.command()
def validate(directory: Directory) -> None:
    """Check a master-data directory: every row, every reference, every account (exit 1 on problems)."""
    data = _read(directory)
    console.print(_counts_table(data))
    console.print(f"{directory}: version {data.version}, digest {data.digest()[:12]}, no problems")


def _changes_table(changes: list[RecordChange], old: str, new: str) -> Table:
    table = Table(title=f"master data {old} -> {new}: {len(changes)} change(s)")
    table.add_column("domain")
    table.add_column("key")
    table.add_column("change")
    table.add_column("fields (old -> new)")
    for change in changes:
        fields = "; ".join(f"{name}: {a!r} -> {b!r}" for name, (a, b) in change.fields.items())
        table.add_row(change.domain, escape(change.key), change.change, escape(fields))
    return table


def _resolve(ref: str | None, store: MasterDataStore | None) -> tuple[str, MasterDataSet | None]:
    """Return (label, set) for a directory path, 'redis:VERSION', or None (the version in force)."""
    if ref is not None and not ref.startswith("redis:"):
        path = Path(ref)
        if not path.is_dir():
            raise fail(f"{ref} is not a directory (give a directory or redis:VERSION)")
        return str(path), _read(path)
    assert store is not None
    version = ref.removeprefix("redis:") if ref is not None else store.current_version()
    if version is None:
        return "(none loaded)", None
    data = store.get(version)
    if data is None:
        raise fail(f"master data version {version} is not loaded in Redis")
    return f"redis:{version}", data


@masterdata_app.command()
def diff(
    new: Annotated[str, typer.Argument(help="Directory, or redis:VERSION, to compare.")],
    against: Annotated[
        str | None,
        typer.Option(
            "--against", help="Directory or redis:VERSION to compare with; default: the version in force."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """Show what loading a set would change: records added, removed and changed, field by field."""
    try:
        needs_redis = against is None or against.startswith("redis:") or new.startswith("redis:")
        store = _store() if needs_redis else None
        new_label, new_set = _resolve(new, store)
        old_label, old_set = _resolve(against, store)
    except redis.RedisError as exc:
        raise fail(f"cannot read Redis: {exc}") from None
    assert new_set is not None
    changes = diff_sets(old_set, new_set)
    if as_json:
        for change in changes:
            sys.stdout.write(change.model_dump_json() + "\n")
        return
    if not changes:
        console.print(f"{old_label} and {new_label}: no differences")
        return
    console.print(_changes_table(changes, old_label, new_label))


@masterdata_app.command()
def load(
    directory: Directory,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show the changes; load nothing.")
    ] = False,
) -> None:
    """Validate a directory and make it the version in force, atomically; running workers pick it up."""
    data = _read(directory)
    store = _store()
    try:
        current = store.current()
        changes = diff_sets(current, data)
        if dry_run:
            label = f"redis:{current.version}" if current is not None else "(none loaded)"
            if changes:
                console.print(_changes_table(changes, label, data.version))
            console.print(f"dry run: {len(changes)} change(s); nothing loaded")
            return
        result = store.load(data, loaded_by=f"{'hcsync masterdata load'} by {operator()}")
    except MasterDataConflict as exc:
        raise fail(str(exc), 1) from None
    except (redis.RedisError, ConfigurationError) as exc:
        raise fail(f"not loaded: {exc}") from None
    if not result.changed:
        console.print(f"master data {result.version} is already in force (digest {result.digest[:12]})")
        return
    console.print(
        f"master data {result.version} (digest {result.digest[:12]}) is now in force, replacing "
        f"{result.previous or 'nothing'}: {len(changes)} record change(s)"
    )


@masterdata_app.command()
def activate(version: Annotated[str, typer.Argument(help="A version loaded before.")]) -> None:
    """Put a version loaded earlier back in force (a rollback), atomically."""
    try:
        result = _store().activate(version, by=f"{'hcsync masterdata activate'} by {operator()}")
    except (redis.RedisError, ConfigurationError) as exc:
        raise fail(str(exc)) from None
    state = "is now in force" if result.changed else "was already in force"
    console.print(f"master data {result.version} {state} (previous {result.previous or 'none'})")


@masterdata_app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the version in force, every loaded version and the latest activations."""
    try:
        store = _store()
        versions = store.versions()
        history = store.history()
    except redis.RedisError as exc:
        raise fail(f"cannot read Redis: {exc}") from None
    if as_json:
        doc: dict[str, Any] = {
            "current": next((v.version for v in versions if v.current), None),
            "versions": [dataclasses.asdict(v) for v in versions],
            "history": history,
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    table = Table(title="master data versions")
    for column in ("version", "in force", "digest", "loaded at", "loaded by", "records"):
        table.add_column(column)
    for info in versions:
        table.add_row(
            info.version,
            "yes" if info.current else "",
            info.digest[:12],
            info.loaded_at,
            escape(info.loaded_by),
            f"{sum(info.counts.values()):,}",
        )
    console.print(table)
    if not versions:
        console.print("no master data loaded")
