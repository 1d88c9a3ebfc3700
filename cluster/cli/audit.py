"""`hcsync audit`: read the PHI access audit; and the one call every PHI-showing command makes first."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from canonical.errors import HcsyncError
from cluster.cli.console import fail, operator, parse_time, stdout_console, when
from foundation.audit import AuditLog
from foundation.settings import get_settings

__all__ = ["ReasonOption", "audit_app", "record_access"]

audit_app = typer.Typer(
    help="Read the PHI access audit: who read which PHI, when and why.", no_args_is_help=True
)

# The --reason every PHI-showing command takes; recorded as is, so it must not hold PHI either.
ReasonOption = Annotated[
    str | None,
    typer.Option(
        "--reason",
        help="Why you read this PHI (a ticket, a task), recorded in the audit (`hcsync audit list`). "
        "No PHI in it.",
    ),
]


def _who() -> str:
    """Return user@host; a container user with no name (no passwd entry) is its uid."""
    try:
        return operator()
    except (KeyError, OSError):  # getpass: no LOGNAME/USER and no passwd entry for the uid
        return f"uid:{os.getuid()}@{socket.gethostname()}"


def record_access(what: str, objects: Sequence[str], outcome: str, reason: str | None) -> None:
    """Append the audit record of a PHI access about to happen; refuse the access when that fails.

    Called *before* the PHI is shown: when the store cannot be written, the command stops here with an
    error naming the store, and shows nothing.
    """
    try:
        log = AuditLog.from_settings(get_settings())
    except HcsyncError as exc:
        raise fail(f"PHI not shown: {exc}") from None
    try:
        log.append(who=_who(), what=what, objects=objects, outcome=outcome, reason=reason or "")
    except HcsyncError as exc:
        raise fail(f"PHI not shown: {exc}") from None
    finally:
        log.close()


@audit_app.callback()
def _group() -> None:
    """Read the PHI access audit."""
    # A callback makes this a group even with one command, so `hcsync audit list` keeps its name.


@audit_app.command("list")
def list_records(
    since: Annotated[
        str | None, typer.Option(help="At or after this ISO date or date-time (UTC unless given).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Before this ISO date or date-time (UTC unless given).")
    ] = None,
    who: Annotated[str | None, typer.Option(help="Who read (user@host, or a token subject).")] = None,
    what: Annotated[
        str | None,
        typer.Option(help="The command: `exceptions show`, or its first word(s) (`messages`)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the most recent this many.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check the whole hash chain (exit 1 when a record was altered, removed or inserted) and "
            "print its head hash, to keep elsewhere.",
        ),
    ] = False,
) -> None:
    """List PHI access records, oldest first."""
    after, before = parse_time(since, "--since"), parse_time(until, "--until")
    try:
        log = AuditLog.from_settings(get_settings())
    except HcsyncError as exc:
        raise fail(str(exc)) from None
    try:
        records = log.records(since=after, until=before, who=who, what=what, limit=limit)
        breaks, head = log.verify() if verify else ([], "")
    except HcsyncError as exc:
        raise fail(str(exc)) from None
    finally:
        log.close()
    out = stdout_console()
    if as_json:
        sys.stdout.write("".join(json.dumps(record.as_json()) + "\n" for record in records))
    elif not records:
        out.print("no audit records match")
    else:
        table = Table(title=f"PHI access records ({len(records)}) in {log.location}")
        for column in ("#", "when (UTC)", "who", "what", "objects", "reason", "outcome"):
            table.add_column(column, no_wrap=column in ("#", "when (UTC)"))
        for record in records:
            shown = ", ".join(record.objects[:5]) + (
                f" (+{len(record.objects) - 5})" if len(record.objects) > 5 else ""
            )
            table.add_row(
                str(record.seq),
                when(record.at),
                escape(record.who),
                escape(record.what),
                escape(shown),
                escape(record.reason),
                escape(record.outcome),
            )
        out.print(table)
    if verify:
        for found in breaks:
            typer.echo(f"chain broken at record {found.seq}: {found.problem}", err=True)
        if breaks:
            raise typer.Exit(1)
        typer.echo(f"chain intact; head hash {head}", err=True)
