"""`hcsync messages`: find, inspect and replay what the gateways received (the message store)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from adapters.inbound.store import (
    FORWARD_STATES,
    OUTCOMES,
    MessageFilter,
    MessageInfo,
    MessageStore,
    default_message_store_url,
)
from canonical.errors import HcsyncError
from cluster.cli.audit import ReasonOption, record_access
from cluster.cli.console import fail, parse_time, readable, stdout_console, when
from foundation.settings import get_settings
from foundation.sql import sqlite_path

__all__ = ["messages_app"]

messages_app = typer.Typer(
    help="Find, inspect and replay received messages (the message store).", no_args_is_help=True
)


@contextmanager
def _store() -> Iterator[MessageStore]:
    """Open the message store of the settings, refusing to create an empty one by mistake."""
    settings = get_settings()
    try:
        url = default_message_store_url(settings)
    except HcsyncError as exc:
        raise fail(str(exc)) from None
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise fail(
            f"no message store at {path}: start the stack (`hcsync up`) "
            "or point HCSYNC_MESSAGE_STORE_URL (or HCSYNC_RUN_DIR) at one"
        )
    store = MessageStore(url, busy_timeout_s=settings.message_store_timeout_s)
    try:
        yield store
    finally:
        store.close()


_ControlIdOption = Annotated[
    str | None, typer.Option("--control-id", help="Control id (HL7 MSH-10, X12 ISA13).")
]
_GroupOption = Annotated[
    str | None, typer.Option("--gs06", help="X12: an interchange with a functional group of this GS06.")
]
_SetOption = Annotated[
    str | None, typer.Option("--st02", help="X12: an interchange with a transaction set of this ST02.")
]
_SenderOption = Annotated[
    str | None,
    typer.Option(help="Sender: HL7 MSH-3^MSH-4 (EPIC^NMH), X12 ISA05:ISA06 (ZZ:SUBMITTERID)."),
]
_TypeOption = Annotated[
    str | None,
    typer.Option(
        "--type", help="Message type, e.g. ADT^A01; a prefix with ^ or * (ADT^, DFT*) matches a family."
    ),
]
_VisitOption = Annotated[str | None, typer.Option("--visit", help="Visit number (HL7 PV1-19).")]
_PatientOption = Annotated[str | None, typer.Option("--patient", help="Patient identifier (HL7 PID-3).")]
_SinceOption = Annotated[
    str | None, typer.Option(help="Received at or after this ISO date or date-time (UTC unless given).")
]
_UntilOption = Annotated[
    str | None, typer.Option(help="Received before this ISO date or date-time (UTC unless given).")
]
_StateOption = Annotated[str | None, typer.Option(help=f"Forwarding state: {', '.join(FORWARD_STATES)}.")]
_OutcomeOption = Annotated[
    str | None,
    typer.Option(help=f"What the pipeline made of it: {', '.join(OUTCOMES)}, or none (not yet known)."),
]


def _filter(
    control_id: str | None,
    sender: str | None,
    message_type: str | None,
    visit: str | None,
    patient: str | None,
    since: str | None,
    until: str | None,
    state: str | None,
    outcome: str | None,
    group_control: str | None = None,
    set_control: str | None = None,
) -> MessageFilter:
    if state is not None and state not in FORWARD_STATES:
        raise typer.BadParameter(f"must be one of {', '.join(FORWARD_STATES)}", param_hint="--state")
    if outcome is not None and outcome not in (*OUTCOMES, "none"):
        raise typer.BadParameter(f"must be one of {', '.join(OUTCOMES)} or none", param_hint="--outcome")
    return MessageFilter(
        control_id=control_id,
        sender=sender,
        message_type=message_type,
        visit_number=visit,
        patient_id=patient,
        since=parse_time(since, "--since"),
        until=parse_time(until, "--until"),
        state=state,
        outcome=outcome,
        group_control=group_control,
        set_control=set_control,
    )


def _outcome(info: MessageInfo) -> str:
    if info.outcome is None:
        return ""
    if info.outcome == "quarantined" and info.outcome_rule:
        return f"quarantined ({info.outcome_rule})"
    if info.outcome == "mapped":
        return f"mapped ({len(info.event_ids)} event(s))"
    return info.outcome


def _table(infos: Sequence[MessageInfo], title: str) -> Table:
    table = Table(title=title)
    table.add_column("message id", no_wrap=True)
    table.add_column("received (UTC)", no_wrap=True)
    table.add_column("sender")
    table.add_column("control id")
    table.add_column("type")
    table.add_column("state")
    table.add_column("outcome")
    for info in infos:
        table.add_row(
            info.message_id,
            when(info.received_at),
            escape(info.sender),
            escape(info.control_id),
            escape(info.message_type),
            info.state,
            escape(_outcome(info)),
        )
    return table


def _doc(info: MessageInfo) -> dict[str, object]:
    doc = asdict(info)
    doc["ack"] = None if info.ack is None else info.ack.decode("utf-8", "backslashreplace")
    for name, value in doc.items():
        if isinstance(value, dt.datetime):
            doc[name] = value.isoformat()
    doc["event_ids"] = list(info.event_ids)
    return doc


@messages_app.command("list")
def list_messages(
    control_id: _ControlIdOption = None,
    sender: _SenderOption = None,
    message_type: _TypeOption = None,
    visit: _VisitOption = None,
    patient: _PatientOption = None,
    since: _SinceOption = None,
    until: _UntilOption = None,
    state: _StateOption = None,
    outcome: _OutcomeOption = None,
    group_control: _GroupOption = None,
    set_control: _SetOption = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, most recent first.")] = 100,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON lines instead of a table (with visit and patient ids: audited, as is "
            "a search by --visit or --patient).",
        ),
    ] = False,
    reason: ReasonOption = None,
) -> None:
    """List received messages, most recent first."""
    where = _filter(
        control_id,
        sender,
        message_type,
        visit,
        patient,
        since,
        until,
        state,
        outcome,
        group_control,
        set_control,
    )
    with _store() as store:
        infos = store.list(where, limit=limit)
        total = store.count(where)
    # The table shows no PHI, but the JSON holds each message's visit and patient ids, and a search by
    # visit or patient tells which messages a patient has: those are audited.
    if infos and (as_json or visit is not None or patient is not None):
        record_access("messages list", [info.message_id for info in infos], "shown", reason)
    if as_json:
        sys.stdout.write("".join(json.dumps(_doc(info)) + "\n" for info in infos))
        return
    out = stdout_console()
    if not infos:
        out.print("no messages match")
        return
    shown = f"{len(infos)} of {total:,}" if total > len(infos) else f"{total:,}"
    out.print(_table(infos, f"Received messages ({shown})"))


@messages_app.command()
def show(
    message_id: Annotated[
        str, typer.Argument(help="Message id (from `hcsync messages list`), or 6+ of its first characters.")
    ],
    raw: Annotated[bool, typer.Option("--raw", help="Write only the message's bytes to stdout.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, the message base64-encoded.")] = False,
    reason: ReasonOption = None,
) -> None:
    """Show one received message: where it came from, its ACK, what became of it, and its bytes (audited)."""
    with _store() as store:
        info = store.get(message_id)
        if info is None:
            record_access("messages show", [message_id], "not found", reason)
            raise fail(f"no message {message_id!r} (or the prefix matches several)", 1)
        content = store.content(info.message_id)
    # Recorded before anything is shown; nothing is shown when it cannot be recorded.
    record_access("messages show", [info.message_id], "shown", reason)
    if raw:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    if as_json:
        doc = _doc(info) | {"content_b64": base64.b64encode(content).decode("ascii")}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    out = stdout_console()
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    for name, value in _doc(info).items():
        if name in ("ack", "event_ids"):
            continue
        shown = when(value) if isinstance(value, dt.datetime) else "" if value is None else str(value)
        fields.add_row(name, escape(shown))
    out.print(fields)
    if info.event_ids:
        out.print()
        out.print("[bold]events[/]")
        for event_id in info.event_ids:
            out.print(f"  {event_id}", highlight=False)
    out.print()
    out.print("[bold]ack[/]" + ("" if info.ack else " (none: a file, or MSH-15 asked for none)"))
    if info.ack:
        sys.stdout.write(readable(info.ack) + "\n")
    out.print()
    out.print(f"[bold]message[/] ({info.size_bytes} bytes)")
    # Written as is, not through rich: the message must not be wrapped or read as markup.
    sys.stdout.write(readable(content) + "\n")


@messages_app.command()
def replay(
    message_ids: Annotated[list[str] | None, typer.Argument(help="Message ids to replay.")] = None,
    control_id: _ControlIdOption = None,
    sender: _SenderOption = None,
    message_type: _TypeOption = None,
    visit: _VisitOption = None,
    patient: _PatientOption = None,
    since: _SinceOption = None,
    until: _UntilOption = None,
    outcome: _OutcomeOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be replayed; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before replaying by filter.")] = False,
    reason: ReasonOption = None,
) -> None:
    """Send stored messages through the pipeline again, by id or by filter (audited).

    The forwarder of the running stack sends them to the broker once more. Replays are safe: event ids are
    derived from the source and every sink is idempotent, so a message already posted posts nothing twice.
    Conflicts are never replayed from here (see `hcsync exceptions` for them).
    """
    ids = list(message_ids or [])
    filters = (control_id, sender, message_type, visit, patient, since, until, outcome)
    by_filter = any(value is not None for value in filters)
    if ids and by_filter:
        raise fail("give message ids or a filter, not both")
    if not ids and not by_filter:
        raise fail(
            "give message ids or a filter (--control-id, --sender, --type, --visit, --patient, --since, "
            "--until, --outcome)"
        )
    out = stdout_console()
    with _store() as store:
        if ids:
            infos = []
            for given in ids:
                info = store.get(given)
                if info is None:
                    raise fail(f"no message {given!r}; nothing was replayed", 1)
                infos.append(info)
        else:
            where = _filter(control_id, sender, message_type, visit, patient, since, until, None, outcome)
            infos = store.list(where, limit=None)
        conflicts = [info for info in infos if info.conflict_of is not None]
        infos = [info for info in infos if info.conflict_of is None]
        if conflicts:
            out.print(
                f"skipping {len(conflicts)} conflict(s): "
                "replay them from `hcsync exceptions` with --with-file"
            )
        if not infos:
            out.print("no messages to replay")
            return
        title = f"Would replay {len(infos)} message(s)"
        chosen = [info.message_id for info in infos]
        if dry_run:
            record_access("messages replay", chosen, "dry run", reason)
            out.print(_table(infos[:100], title))
            out.print("dry run: nothing was changed")
            return
        if by_filter and not yes:
            record_access("messages replay", chosen, "listed for confirmation", reason)
            out.print(_table(infos[:100], title))
            typer.confirm(f"Replay these {len(infos)} message(s)?", abort=True)
        record_access("messages replay", chosen, "replaying", reason)
        marked = store.mark_for_replay(chosen)
    out.print(f"queued {marked} message(s) for the forwarder to send again")
