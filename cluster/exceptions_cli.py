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
from typing import Annotated, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from canonical.errors import HcsyncError
from canonical.hl7v2.parser import split_messages
from cluster.settings import get_settings
from streams.quarantine_store import (
    STATUSES,
    CountField,
    QuarantineItem,
    QuarantineStore,
    Status,
    default_quarantine_url,
    sqlite_path,
)

__all__ = ["exceptions_app"]

exceptions_app = typer.Typer(
    help="Find, inspect, fix and replay quarantined messages (the quarantine store).",
    no_args_is_help=True,
)
# soft_wrap: a one-line error stays one line, whatever the width, so it can be read and grepped.
err_console = Console(stderr=True, soft_wrap=True)
# Piped output is read by tools and people alike: wide enough that no record id is ever cut.
_PIPE_WIDTH = 200

_STATUS_CHOICES = (*STATUSES, "all")
_COUNT_FIELDS: tuple[CountField, ...] = get_args(CountField)


def _console() -> Console:
    """Return a console for stdout: the terminal's width, or a wide one when piped."""
    return Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]{escape(message)}[/]")
    return typer.Exit(code)


@contextmanager
def _store() -> Iterator[QuarantineStore]:
    """Open the quarantine store of the settings, refusing to create an empty one by mistake."""
    url = default_quarantine_url(get_settings())
    path = sqlite_path(url)
    # Opening a missing SQLite file would create it (and its folder, perhaps runs/latest) and then show
    # nothing; say where we looked instead.
    if path is not None and not path.is_file():
        raise _fail(
            f"no quarantine store at {path}: start the stack (`hcsync up`) "
            "or point HCSYNC_QUARANTINE_DATABASE_URL (or HCSYNC_RUN_DIR) at one"
        )
    store = QuarantineStore(url)
    try:
        yield store
    finally:
        store.close()


def _since(value: str | None) -> dt.datetime | None:
    """Parse an ISO date or date-time; one without an offset is UTC, like every time the store shows."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date or date-time", param_hint="--since") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def _status(value: str) -> Status | None:
    if value not in _STATUS_CHOICES:
        raise typer.BadParameter(f"must be one of {', '.join(_STATUS_CHOICES)}", param_hint="--status")
    return None if value == "all" else value  # type: ignore[return-value]  # checked just above


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


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
            _when(item.last_seen_at),
            item.stage,
            escape(item.rule),
            escape(item.source_message_id),
            escape(item.encounter_id or ""),
            str(item.occurrences),
            item.status,
        )
    return table


def _readable(original: bytes, stage: str) -> str:
    """Render an original for a person: HL7 one segment a line, a JSON command indented."""
    if stage in ("encounters", "billing", "erp"):
        try:
            return json.dumps(json.loads(original), indent=2, ensure_ascii=False)
        except (ValueError, UnicodeDecodeError):
            pass
    # backslashreplace shows bytes that are not UTF-8 as \\xNN instead of hiding or dropping them.
    text = original.decode("utf-8", errors="backslashreplace")
    return "\n".join(text.replace("\r\n", "\r").replace("\n", "\r").rstrip("\r").split("\r"))


@exceptions_app.command("list")
def list_items(
    stage: Annotated[str | None, typer.Option(help="ingest, encounters, billing or erp.")] = None,
    rule: Annotated[str | None, typer.Option(help="Rule that refused the item.")] = None,
    status: Annotated[str, typer.Option(help="open, replayed, resolved or all.")] = "open",
    encounter: Annotated[str | None, typer.Option(help="Encounter id.")] = None,
    message_id: Annotated[str | None, typer.Option("--message-id", help="Message control id.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Seen at or after this ISO date or date-time (UTC unless given).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, most recent first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """List quarantined items, most recently seen first."""
    out = _console()
    wanted = _status(status)
    after = _since(since)
    with _store() as store:
        items = store.list(
            stage=stage,
            rule=rule,
            status=wanted,
            encounter_id=encounter,
            message_id=message_id,
            since=after,
            limit=limit,
        )
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
) -> None:
    """Show one quarantined item: where and why it failed, and its original message."""
    out = _console()
    with _store() as store:
        item = store.get(record_id)
        if item is None:
            raise _fail(f"no quarantined item {record_id!r}", 1)
        original = store.original(record_id)
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
        if name == "reason":
            continue
        shown = _when(value) if isinstance(value, dt.datetime) else "" if value is None else str(value)
        fields.add_row(name, escape(shown))
    out.print(fields)
    out.print()
    out.print("[bold]reason[/]")
    out.print(escape(item.reason), soft_wrap=True)
    out.print()
    out.print(f"[bold]original[/] ({item.original_size} bytes)")
    # Written as is, not through rich: the message must not be wrapped or read as markup.
    sys.stdout.write(_readable(original, item.stage) + "\n")


def _fixed_message(path: Path, stage: str) -> bytes:
    """Read the fixed message of a replay; an HL7 file must hold exactly one message."""
    data = path.read_bytes()
    if stage != "ingest":
        return data
    messages = split_messages(data)
    if len(messages) != 1:
        raise _fail(f"{path} holds {len(messages)} HL7 messages; a fixed message replaces exactly one")
    return messages[0]


@exceptions_app.command("replay")
def replay_items(
    record_ids: Annotated[list[str] | None, typer.Argument(help="Record ids to replay.")] = None,
    stage: Annotated[str | None, typer.Option(help="Replay the open items of this stage.")] = None,
    rule: Annotated[str | None, typer.Option(help="Replay the open items refused by this rule.")] = None,
    encounter: Annotated[str | None, typer.Option(help="Replay the open items of this encounter.")] = None,
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
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before replaying by filter.")] = False,
) -> None:
    """Publish quarantined messages again, by id or by filter, to where they failed."""
    from streams.replay import REPLAYABLE_STAGES, replay

    out = _console()
    ids = list(record_ids or [])
    by_filter = stage is not None or rule is not None or encounter is not None or all_open
    if ids and by_filter:
        raise _fail("give record ids or a filter (--stage, --rule, --encounter, --all-open), not both")
    if not ids and not by_filter:
        raise _fail("give record ids, a filter (--stage, --rule, --encounter) or --all-open")
    if with_file is not None and len(ids) != 1:
        raise _fail("--with-file replays exactly one record id")
    settings = get_settings()
    with _store() as store:
        replacement: bytes | None = None
        if ids:
            if with_file is not None:
                item = store.get(ids[0])
                if item is None:
                    raise _fail(f"no quarantined item {ids[0]!r}", 1)
                replacement = _fixed_message(with_file, item.stage)
        else:
            matched = store.list(stage=stage, rule=rule, encounter_id=encounter, status="open", limit=None)
            items = [item for item in matched if item.stage in REPLAYABLE_STAGES]
            if len(items) < len(matched):
                # Records that were themselves unreadable have nowhere to go; `show --raw` is for them.
                out.print(f"skipping {len(matched) - len(items)} item(s) of a stage that cannot be replayed")
            if not items:
                out.print("no open items match; nothing to replay")
                return
            if not yes:
                out.print(_table(items, f"Would replay {len(items)} item(s)"))
                typer.confirm(f"Replay these {len(items)} item(s)?", abort=True)
            ids = [item.record_id for item in items]
        try:
            report = asyncio.run(replay(settings, store, ids, replacement=replacement))
        except HcsyncError as exc:
            raise _fail(f"replay failed: {exc}") from None
    stages = ", ".join(f"{name} {count}" for name, count in sorted(report.by_stage.items()))
    out.print(f"replayed {report.total} item(s) ({stages}) on {settings.bootstrap}")
    for record_id in report.replayed:
        out.print(f"  {record_id}", highlight=False)


@exceptions_app.command()
def resolve(
    record_ids: Annotated[list[str], typer.Argument(help="Record ids to mark resolved.")],
) -> None:
    """Mark items as resolved without replaying them."""
    out = _console()
    with _store() as store:
        unknown = [record_id for record_id in dict.fromkeys(record_ids) if store.get(record_id) is None]
        known = [record_id for record_id in record_ids if record_id not in unknown]
        marked = store.mark_resolved(known)
    out.print(f"resolved {marked} item(s)")
    if unknown:
        raise _fail(f"unknown record id(s): {', '.join(unknown)}", 1)


@exceptions_app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Count quarantined items by stage, rule and status."""
    out = _console()
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
