"""`hcsync exceptions`: find, inspect, fix and replay quarantined messages."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, get_args

import typer
from rich.markup import escape
from rich.table import Table

from canonical.errors import HcsyncError
from canonical.hl7v2.parser import split_messages
from cluster.cli.audit import ReasonOption, record_access
from cluster.cli.console import fail, parse_time, readable, stdout_console, when
from foundation.settings import get_settings
from streams.quarantine_store import (
    STATUSES,
    CountField,
    QuarantineItem,
    QuarantineStore,
    Status,
    default_quarantine_url,
    sqlite_path,
)

if TYPE_CHECKING:
    # Imported where used at run time: it loads the Kafka client, which list, show and stats do not need.
    from streams.replay import PlannedRecord

__all__ = ["exceptions_app"]

exceptions_app = typer.Typer(
    help="Find, inspect, fix and replay quarantined messages (the quarantine store).",
    no_args_is_help=True,
)
_STATUS_CHOICES = (*STATUSES, "all")
_COUNT_FIELDS: tuple[CountField, ...] = get_args(CountField)


@contextmanager
def _store() -> Iterator[QuarantineStore]:
    """Open the quarantine store of the settings, refusing to create an empty one by mistake."""
    url = default_quarantine_url(get_settings())
    path = sqlite_path(url)
    # Opening a missing SQLite file would create it (and its folder, perhaps runs/latest) and then show
    # nothing; say where we looked instead.
    if path is not None and not path.is_file():
        raise fail(
            f"no quarantine store at {path}: start the stack (`hcsync up`) "
            "or point HCSYNC_QUARANTINE_DATABASE_URL (or HCSYNC_RUN_DIR) at one"
        )
    store = QuarantineStore(url)
    try:
        yield store
    finally:
        store.close()


def _status(value: str) -> Status | None:
    if value not in _STATUS_CHOICES:
        raise typer.BadParameter(f"must be one of {', '.join(_STATUS_CHOICES)}", param_hint="--status")
    return None if value == "all" else value  # type: ignore[return-value]  # checked just above


def _shown_status(item: QuarantineItem) -> str:
    """Return the status as a person should read it: an open item whose replay failed says so."""
    if item.status == "open" and item.replayed_at is not None and item.last_seen_at >= item.replayed_at:
        return "open (replay failed)"
    return item.status


def _table(items: Sequence[QuarantineItem], title: str) -> Table:
    table = Table(title=title)
    table.add_column("record id", no_wrap=True, min_width=max((len(i.record_id) for i in items), default=9))
    table.add_column("last seen (UTC)", no_wrap=True)
    table.add_column("stage")
    table.add_column("rule")
    table.add_column("message")
    table.add_column("encounter")
    table.add_column("seen", justify="right")
    table.add_column("status")
    for item in items:
        table.add_row(
            item.record_id,
            when(item.last_seen_at),
            item.stage,
            escape(item.rule),
            escape(item.source_message_id),
            escape(item.encounter_id or ""),
            str(item.occurrences),
            _shown_status(item),
        )
    return table


# The filters `list` and `replay` share; times bound when an item was last seen.
_StageOption = Annotated[str | None, typer.Option(help="ingest, encounters, billing or erp.")]
_RuleOption = Annotated[str | None, typer.Option(help="Rule that refused the item.")]
_SenderOption = Annotated[
    str | None,
    typer.Option(
        help="Sending application^facility (MSH-3^MSH-4), e.g. EPIC^NMH. Only items of HL7 messages whose "
        "header could be read carry a sender; commands refused by billing or the ERP do not."
    ),
]
_EncounterOption = Annotated[str | None, typer.Option(help="Encounter id.")]
_MessageIdOption = Annotated[str | None, typer.Option("--message-id", help="Message control id (MSH-10).")]
_SinceOption = Annotated[
    str | None, typer.Option(help="Last seen at or after this ISO date or date-time (UTC unless given).")
]
_UntilOption = Annotated[
    str | None, typer.Option(help="Last seen before this ISO date or date-time (UTC unless given).")
]


@exceptions_app.command("list")
def list_items(
    stage: _StageOption = None,
    rule: _RuleOption = None,
    status: Annotated[str, typer.Option(help="open, replayed, resolved or all.")] = "open",
    sender: _SenderOption = None,
    encounter: _EncounterOption = None,
    message_id: _MessageIdOption = None,
    since: _SinceOption = None,
    until: _UntilOption = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, most recent first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
    reason: ReasonOption = None,
) -> None:
    """List quarantined items, most recently seen first (their encounter ids are PHI: audited)."""
    out = stdout_console()
    wanted = _status(status)
    after, before = parse_time(since, "--since"), parse_time(until, "--until")
    with _store() as store:
        items = store.list(
            stage=stage,
            rule=rule,
            status=wanted,
            sender=sender,
            encounter_id=encounter,
            message_id=message_id,
            since=after,
            until=before,
            limit=limit,
        )
    if items:
        record_access("exceptions list", [item.record_id for item in items], "shown", reason)
    if as_json:
        sys.stdout.write("".join(item.model_dump_json() + "\n" for item in items))
        return
    if not items:
        out.print("no quarantined items match")
        return
    out.print(_table(items, f"Quarantined items ({len(items)}, status {status})"))


@exceptions_app.command()
def show(
    record_id: Annotated[str, typer.Argument(help="Record id (from `hcsync exceptions list`).")],
    raw: Annotated[bool, typer.Option("--raw", help="Write only the original bytes to stdout.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, the original base64-encoded.")] = False,
    reason: ReasonOption = None,
) -> None:
    """Show one quarantined item: where and why it failed, and its original message (audited)."""
    out = stdout_console()
    with _store() as store:
        item = store.get(record_id)
        if item is None:
            record_access("exceptions show", [record_id], "not found", reason)
            raise fail(f"no quarantined item {record_id!r}", 1)
        original = store.original(record_id)
    # Recorded before anything is shown; nothing is shown when it cannot be recorded.
    record_access("exceptions show", [record_id], "shown", reason)
    if raw:
        sys.stdout.buffer.write(original)
        sys.stdout.flush()
        return
    if as_json:
        doc = item.model_dump(mode="json") | {"original_b64": base64.b64encode(original).decode("ascii")}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    for name, value in item.model_dump().items():
        if name in ("reason", "fix_hint"):
            continue
        shown = when(value) if isinstance(value, dt.datetime) else "" if value is None else str(value)
        fields.add_row(name, escape(shown))
    out.print(fields)
    out.print()
    out.print("[bold]reason[/]")
    out.print(escape(item.reason), soft_wrap=True)
    if item.fix_hint:
        out.print()
        out.print("[bold]how to fix[/]")
        out.print(escape(item.fix_hint), soft_wrap=True)
    out.print()
    out.print(f"[bold]original[/] ({item.original_size} bytes)")
    # Written as is, not through rich: the message must not be wrapped or read as markup.
    sys.stdout.write(readable(original, as_json=item.stage in ("encounters", "billing", "erp")) + "\n")


def _fixed_message(path: Path, stage: str) -> bytes:
    """Read the fixed message of a replay; an HL7 file must hold exactly one message."""
    data = path.read_bytes()
    if stage != "ingest":
        return data
    messages = split_messages(data)
    if len(messages) != 1:
        raise fail(f"{path} holds {len(messages)} HL7 messages; a fixed message replaces exactly one")
    return messages[0]


def _plan_table(planned: Sequence[PlannedRecord], title: str) -> Table:
    table = Table(title=title)
    width = max((len(record.item.record_id) for record in planned), default=9)
    table.add_column("record id", no_wrap=True, min_width=width)
    table.add_column("stage")
    table.add_column("rule")
    table.add_column("encounter")
    table.add_column("status")
    table.add_column("to topic", no_wrap=True)
    table.add_column("key")
    table.add_column("bytes", justify="right")
    for record in planned:
        item = record.item
        key = "" if record.key is None else record.key.decode("utf-8", errors="backslashreplace")
        size = f"{len(record.payload):,}" + (" (fixed)" if record.replacement else "")
        table.add_row(
            item.record_id,
            item.stage,
            escape(item.rule),
            escape(item.encounter_id or ""),
            _shown_status(item),
            record.topic,
            escape(key),
            size,
        )
    return table


def _stages(planned: Sequence[PlannedRecord]) -> str:
    counts: dict[str, int] = {}
    for record in planned:
        counts[record.item.stage] = counts.get(record.item.stage, 0) + 1
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


@exceptions_app.command("replay")
def replay_items(
    record_ids: Annotated[
        list[str] | None, typer.Argument(help="Record ids to replay, whatever their status.")
    ] = None,
    stage: _StageOption = None,
    rule: _RuleOption = None,
    sender: _SenderOption = None,
    encounter: _EncounterOption = None,
    message_id: _MessageIdOption = None,
    since: _SinceOption = None,
    until: _UntilOption = None,
    status: Annotated[
        str | None,
        typer.Option(help="Replay the items of this status: open (the default), replayed, resolved or all."),
    ] = None,
    all_open: Annotated[bool, typer.Option("--all-open", help="Replay every open item.")] = False,
    with_file: Annotated[
        Path | None,
        typer.Option(
            "--with-file",
            exists=True,
            dir_okay=False,
            help="Replay this fixed message instead of the original (exactly one record id).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be replayed and where; send nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before replaying by filter.")] = False,
    reason: ReasonOption = None,
) -> None:
    """Publish quarantined messages again, by id or by filter, to where they failed (audited).

    A filter replays the items that match all its options (open ones unless --status says otherwise),
    after showing them and asking. --dry-run shows the same and stops.
    """
    from streams.replay import REPLAYABLE_STAGES, ReplayError, plan_replay, publish

    out = stdout_console()
    ids = list(record_ids or [])
    filters = (stage, rule, sender, encounter, message_id, since, until, status)
    by_filter = any(value is not None for value in filters) or all_open
    if ids and by_filter:
        raise fail(
            "give record ids or a filter (--stage, --rule, --sender, --encounter, --message-id, --since, "
            "--until, --status, --all-open), not both"
        )
    if not ids and not by_filter:
        raise fail(
            "give record ids, a filter (--stage, --rule, --sender, --encounter, --message-id, --since, "
            "--until, --status) or --all-open"
        )
    if with_file is not None and len(ids) != 1:
        raise fail("--with-file replays exactly one record id")
    if all_open and status not in (None, "open"):
        raise fail(f"--all-open replays open items; it cannot go with --status {status}")
    wanted = _status(status or "open")
    after, before = parse_time(since, "--since"), parse_time(until, "--until")
    settings = get_settings()
    with _store() as store:
        replacement: bytes | None = None
        if ids:
            if with_file is not None:
                item = store.get(ids[0])
                if item is None:
                    raise fail(f"no quarantined item {ids[0]!r}", 1)
                replacement = _fixed_message(with_file, item.stage)
        else:
            matched = store.list(
                stage=stage,
                rule=rule,
                status=wanted,
                sender=sender,
                encounter_id=encounter,
                message_id=message_id,
                since=after,
                until=before,
                limit=None,
            )
            items = [item for item in matched if item.stage in REPLAYABLE_STAGES]
            if len(items) < len(matched):
                # Records that were themselves unreadable have nowhere to go; `show --raw` is for them.
                out.print(f"skipping {len(matched) - len(items)} item(s) of a stage that cannot be replayed")
            if not items:
                which = "" if wanted is None else f"{wanted} "
                out.print(f"no {which}items match; nothing to replay")
                return
            ids = [item.record_id for item in items]
        try:
            planned = plan_replay(settings, store, ids, replacement=replacement)
        except ReplayError as exc:
            raise fail(f"replay refused: {exc}", 1) from None
        planned_ids = [record.item.record_id for record in planned]
        if dry_run:
            record_access("exceptions replay", planned_ids, "dry run", reason)
            out.print(_plan_table(planned, f"Would replay {len(planned)} item(s) ({_stages(planned)})"))
            out.print(f"dry run: nothing was sent to {settings.bootstrap}")
            return
        if by_filter and not yes:
            record_access("exceptions replay", planned_ids, "listed for confirmation", reason)
            out.print(_plan_table(planned, f"Would replay {len(planned)} item(s) ({_stages(planned)})"))
            typer.confirm(f"Replay these {len(planned)} item(s)?", abort=True)
        record_access("exceptions replay", planned_ids, "replaying", reason)
        try:
            report = asyncio.run(publish(settings, store, planned))
        except HcsyncError as exc:
            record_access("exceptions replay", planned_ids, f"replay failed: {type(exc).__name__}", reason)
            raise fail(f"replay failed: {exc}") from None
    stages = ", ".join(f"{name} {count}" for name, count in sorted(report.by_stage.items()))
    out.print(f"replayed {report.total} item(s) ({stages}) on {settings.bootstrap}")
    for record_id in report.replayed:
        out.print(f"  {record_id}", highlight=False)


@exceptions_app.command()
def resolve(
    record_ids: Annotated[list[str], typer.Argument(help="Record ids to mark resolved.")],
) -> None:
    """Mark items as resolved without replaying them."""
    out = stdout_console()
    with _store() as store:
        unknown = [record_id for record_id in dict.fromkeys(record_ids) if store.get(record_id) is None]
        known = [record_id for record_id in record_ids if record_id not in unknown]
        marked = store.mark_resolved(known)
    out.print(f"resolved {marked} item(s)")
    if unknown:
        raise fail(f"unknown record id(s): {', '.join(unknown)}", 1)


@exceptions_app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Count quarantined items by stage, rule and status."""
    out = stdout_console()
    with _store() as store:
        counts = {name: store.counts_by(name) for name in _COUNT_FIELDS}
    if as_json:
        sys.stdout.write(json.dumps(counts, indent=2, sort_keys=True) + "\n")
        return
    for name, by_value in counts.items():
        table = Table(title=f"Items by {name}")
        table.add_column(name)
        table.add_column("items", justify="right")
        for value, count in by_value.items():
            table.add_row(escape(value), f"{count:,}")
        table.add_row("[bold]total[/]", f"[bold]{sum(by_value.values()):,}[/]")
        out.print(table)
