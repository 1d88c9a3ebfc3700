"""`hcsync schema`: write the canonical contract's JSON Schemas, or check a committed snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from canonical.envelope import SCHEMA_VERSION
from canonical.schema import (
    breaking_changes,
    drift,
    json_schemas,
    load_schemas,
    snapshot_version,
    write_schemas,
)

__all__ = ["register", "schema"]

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def schema(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Snapshot directory to write, e.g. docs/schemas/<version> (with --check: to compare).",
            file_okay=False,
        ),
    ],
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Compare instead of writing: exit 1 on breaking changes against the snapshot, or on any "
            "drift when it is the current version's.",
        ),
    ] = False,
) -> None:
    """Write the JSON Schemas of the canonical contract (one file per model, PHI fields tagged)."""
    current = json_schemas()
    if not check:
        written = write_schemas(out)
        with_phi = sum(1 for schema in current.values() if schema["x-phi-fields"])
        console.print(
            f"wrote {len(written) - 1} schema(s) and index.json to {escape(str(out))} "
            f"(schema version {SCHEMA_VERSION}; {with_phi} model(s) carry PHI fields)"
        )
        return
    try:
        baseline = load_schemas(out)
        version = snapshot_version(out)
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]cannot read the snapshot[/]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    where = escape(str(out))
    breaking = breaking_changes(baseline, current)
    # A snapshot of another version is a released baseline: only compatibility is checked against it.
    earlier = version is not None and version != SCHEMA_VERSION
    differences = [] if earlier else drift(out)
    for line in breaking:
        err_console.print(f"[red]breaking[/] {escape(line)}")
    for line in differences:
        err_console.print(f"[yellow]drift[/] {escape(line)}")
    if breaking:
        err_console.print(
            f"[red]{len(breaking)} breaking change(s)[/] against {where}: documents valid under the snapshot "
            "would be refused; that needs a new major version (docs/schema-compatibility.md)"
        )
    if differences:
        err_console.print(
            f"[yellow]{where} is not what the code generates[/]: run "
            f"`hcsync schema --out {where}` and commit the result"
        )
    if breaking or differences:
        raise typer.Exit(1)
    if earlier:
        console.print(
            f"schema {SCHEMA_VERSION} reads every document valid under the {version} snapshot in {where}"
        )
    else:
        console.print(f"{where} is up to date: {len(current)} model(s), schema version {SCHEMA_VERSION}")


def register(app: typer.Typer) -> None:
    """Add the ``schema`` command to ``app``."""
    app.command("schema")(schema)
