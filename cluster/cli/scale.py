"""`hcsync scale transform --replicas N` and `hcsync status`: the SRE's commands for a surge."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Annotated

import redis
import typer
from rich.markup import escape
from rich.table import Table

from actors.scaling import ScaleSignals
from canonical.errors import HcsyncError
from cluster.cli.console import err_console, fail, operator, stdout_console
from cluster.status import Status, collect_status
from foundation.settings import get_settings

__all__ = ["register", "scale_app"]

scale_app = typer.Typer(help="Change the size of a running system's pools.", no_args_is_help=True)
console = stdout_console()


@scale_app.command("transform")
def scale_transform(
    replicas: Annotated[
        int | None,
        typer.Option("--replicas", "-n", min=1, help="Pin each worker's pool to N actors."),
    ] = None,
    auto: Annotated[
        bool, typer.Option("--auto", help="Hand the pools back to the autoscaler (lag and in-flight depth).")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why, for the scaling history.")] = "",
    wait_s: Annotated[
        float, typer.Option(min=0, help="How long to wait for every worker to run the new size (0: do not).")
    ] = 60.0,
) -> None:
    """Pin every worker's transform pool to N actors and wait until they all run it; or --auto."""
    settings = get_settings()
    if (replicas is None) == (not auto):
        raise fail("give either --replicas N or --auto")
    signals = ScaleSignals.from_url(settings.redis, settings.topic_prefix)
    low, high = settings.transform_min_replicas, settings.transform_max_replicas
    if replicas is None:
        try:
            signals.request("auto", by=operator(), reason=reason)
        except redis.RedisError as exc:
            raise fail(f"cannot reach redis at {settings.redis_location}: {exc}") from None
        console.print(f"the autoscaler sizes each worker's pool from now on, within {low}..{high} replicas")
        return
    if not low <= replicas <= high:
        raise fail(
            f"--replicas {replicas} is outside {low}..{high} "
            "(HCSYNC_TRANSFORM_MIN_REPLICAS, HCSYNC_TRANSFORM_MAX_REPLICAS)"
        )
    try:
        signals.request(replicas, by=operator(), reason=reason)
    except redis.RedisError as exc:
        raise fail(f"cannot reach redis at {settings.redis_location}: {exc}") from None
    console.print(
        f"asked every worker for {replicas} transform replica(s); the autoscaler stands aside until --auto"
    )
    if wait_s == 0:
        return
    deadline = time.monotonic() + wait_s
    with console.status("waiting for the workers..."):
        while True:
            pools = signals.reports()
            if pools and all(pool.replicas == replicas for pool in pools):
                break
            if time.monotonic() > deadline:
                shown = ", ".join(f"{p.worker}: {p.replicas}" for p in pools) or "no worker reporting"
                raise fail(f"not every worker runs {replicas} replica(s) after {wait_s:.0f}s ({shown})", 1)
            time.sleep(0.5)
    nodes = sorted({node for pool in pools for node in pool.nodes})
    console.print(
        f"{len(pools)} worker(s) run {replicas} replica(s) each, {replicas * len(pools)} actor(s) "
        f"on {len(nodes)} Ray node(s)"
    )


def _component_table(status: Status) -> Table | None:
    supervisor = status.supervisor
    if supervisor is None:
        return None
    title = "Components"
    if status.supervisor_stale:
        title += f" (as last written at {supervisor.updated_at}: the supervisor is not running)"
    table = Table(title=title)
    for column in ("component", "state", "pid", "restarts", "since", "last exit", "detail"):
        table.add_column(column, justify="right" if column in ("pid", "restarts") else "left")
    for component in supervisor.components:
        last = component.last_exit
        exit_text = "" if last is None else f"{last.reason} at {last.at[11:19]} after {last.uptime_s:.0f}s"
        style = {"failed": "bold red", "restarting": "yellow", "starting": "yellow"}.get(component.state)
        table.add_row(
            component.name,
            component.state,
            "" if component.pid is None else str(component.pid),
            str(component.restarts),
            component.since[11:19],
            escape(exit_text),
            escape(component.detail),
            style=style,
        )
    return table


def _count_table(title: str, column: str, labels: dict[str, str], counts: dict[str, int]) -> Table:
    """A table of ``counts`` labelled and ordered by ``labels``; names not counted are left out."""
    table = Table(title=title)
    table.add_column("what")
    table.add_column(column, justify="right")
    for name, label in labels.items():
        if name in counts:
            table.add_row(label, f"{counts[name]:,}")
    return table


_MESSAGE_COUNTS = {
    "messages": "received",
    "pending": "waiting for the forwarder",
    "conflicts": "conflicts (same control id, other content)",
    "mapped": "mapped to events",
    "routed": "routed (no financial effect)",
    "quarantined": "quarantined",
    "outcome_unknown": "outcome not yet known",
}


def _message_table(status: Status) -> Table | None:
    if status.messages is None:
        return None
    return _count_table("Message store", "messages", _MESSAGE_COUNTS, status.messages)


# The MLLP listener's counters `hcsync status` shows, in this order; refusals show only when not zero.
_MLLP_COUNTERS = {
    "connections": "connections accepted",
    "refused_total_cap": "refused: HCSYNC_MLLP_MAX_CONNECTIONS reached",
    "refused_peer_cap": "refused: HCSYNC_MLLP_MAX_CONNECTIONS_PER_PEER reached",
    "refused_tls": "refused: TLS handshake failed",
    "frames_timed_out": "closed: frame not finished within HCSYNC_MLLP_FRAME_TIMEOUT_S",
    "idle_closes": "closed: idle for HCSYNC_MLLP_IDLE_TIMEOUT_S",
    "oversize_frames": "frames over HCSYNC_MAX_MESSAGE_BYTES (AR)",
    "senders_refused": "messages from senders not allowed (AR)",
}


def _mllp_table(status: Status) -> Table | None:
    if status.mllp is None:
        return None
    # Connections accepted always; a refusal only when it happened.
    shown = {
        name: n for name, n in status.mllp.items() if name in _MLLP_COUNTERS and (n or name == "connections")
    }
    return _count_table("MLLP listener", "count", _MLLP_COUNTERS, shown)


_INBOX_COUNTERS = {
    "files_taken": "files taken (stored, moved to processed/)",
    "files_rejected": "files rejected (moved to rejected/ with a .reason)",
    "messages_stored": "messages stored",
    "duplicates": "already stored (resends)",
    "conflicts": "conflicts (quarantined)",
}


def _inbox_table(status: Status) -> Table | None:
    if status.inbox is None:
        return None
    shown = {name: n for name, n in status.inbox.items() if name in _INBOX_COUNTERS}
    return _count_table("Watched inbox", "count", _INBOX_COUNTERS, shown)


def _tables(status: Status) -> list[Table]:
    parts = (_component_table(status), _message_table(status), _mllp_table(status), _inbox_table(status))
    tables = [t for t in parts if t is not None]
    return tables + _pipeline_tables(status)


def _pipeline_tables(status: Status) -> list[Table]:
    if status.desired is None:
        asked = "nothing (HCSYNC_TRANSFORM_AUTOSCALE decides)"
    else:
        asked = "autoscaling" if status.desired == "auto" else f"{status.desired} (pinned)"
    pools = Table(title=f"Transform pools (asked for: {asked})")
    numeric = ("replicas", "in flight", "batches taken", "lag", "at bound")
    for column in ("worker", "mode", *numeric, "Ray nodes", "reported"):
        pools.add_column(column, justify="right" if column in numeric else "left")
    for pool in status.pools:
        nodes = ", ".join(sorted({node[:12] for node in pool.nodes}))
        pools.add_row(
            pool.worker,
            pool.mode,
            str(pool.replicas),
            str(pool.in_flight),
            str(pool.pending_batches),
            f"{pool.lag:,}",
            f"{pool.saturation:.0%}",
            nodes,
            pool.at[11:19],
        )
    pools.add_row("total", "", str(status.replicas), "", "", "", "", "", "", style="bold")

    lag = Table(title=f"Consumer lag (group {status.group})")
    for column in ("topic", "partition", "end offset", "committed", "lag"):
        lag.add_column(column, justify="left" if column == "topic" else "right")
    for row in status.lag:
        committed = "-" if row.committed is None else f"{row.committed:,}"
        lag.add_row(row.topic, str(row.partition), f"{row.end_offset:,}", committed, f"{row.lag:,}")
    lag.add_row("total", "", "", "", f"{status.total_lag:,}", style="bold")

    flow = Table(title=f"Throughput over {status.sample_s:.1f}s")
    flow.add_column("what")
    flow.add_column("value", justify="right")
    flow.add_row("messages/s through the pool", f"{status.messages_per_s:,.1f}")
    flow.add_row("canonical events/s", f"{status.events_per_s:,.1f}")
    flow.add_row("postings/s (charges, journal lines, stock)", f"{status.postings_per_s:,.1f}")
    flow.add_row("error rate (quarantined / messages)", f"{status.error_rate:.2%}")
    for name, value in status.totals.items():
        flow.add_row(f"total {name}", f"{value:,}")
    return [pools, lag, flow]


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    sample_s: Annotated[
        float, typer.Option(min=0.1, help="How long to sample the counters for rates.")
    ] = 2.0,
) -> None:
    """Show components, the message store, replicas, lag, throughput and error rate of a running system.

    Exits 1 when a part could not be read or a component failed (the rest is still shown).
    """
    settings = get_settings()
    try:
        result = asyncio.run(collect_status(settings, sample_s))
    except HcsyncError as exc:
        raise fail(f"cannot read the system: {exc}") from None
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
        if result.problems or any(c.state == "failed" for c in result.components):
            raise typer.Exit(1)
        return
    for table in _tables(result):
        console.print(table)
    if result.bottleneck is not None:
        console.print(escape(result.bottleneck.line()))
    for problem in result.problems:
        err_console.print(f"[red]unavailable[/]: {escape(problem)}")
    if result.problems or any(c.state == "failed" for c in result.components):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `scale` and `status` to the hcsync command line."""
    app.add_typer(scale_app, name="scale", help="Change the size of a running system's pools.")
    app.command("status")(status)
