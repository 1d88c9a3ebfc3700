"""`hcsync demo`: start the embedded stack, replay a synthetic hospital day, reconcile, stop.

The stack runs on the shipped demo master data (cluster/masterdata/demo), which gives every posting its
legal entity, business unit, cost centre and revenue account. After the day, a governance act sends late
charges with a code the charge master lacks: they are quarantined, the mapping is loaded as a new
master-data version while the stack runs, and the replayed charges post exactly once
(cluster/demo_governance.py).

The demo passes only if the source charge total (what the generated DFT messages carry, late charges
included) equals the billing total and the ERP revenue total, every charge line reached both, every
coded account reached billing, the stock the ERP recorded as used equals, item by item, what the supply
charges and medication administrations of the day consumed, and the governance act posted each late
charge once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from adapters.inbound.store import MessageStore
from cluster.demo_governance import GovernanceResult, run_governance
from cluster.render import money, print_report
from cluster.report import RevenueCycle, StackReport, collect, format_milli, revenue_cycle
from cluster.send import store_messages
from cluster.stack import Stack
from cluster.synth import SyntheticDay, generate_day
from foundation.runs import new_run_dir
from foundation.settings import Settings
from streams.quarantine_store import QuarantineStore
from streams.remittance_journal import REMITTANCE_REVENUE
from streams.stats import Stats


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """Source, billing and ERP control totals side by side."""

    source_lines: int
    billing_lines: int
    erp_revenue_lines: int
    source_cents: int
    billing_cents: int
    erp_revenue_cents: int
    erp_receivables_cents: int
    source_coded_accounts: int = 0
    billing_coded_accounts: int = 0
    # Stock used by (facility, item code), thousandths of a unit.
    source_stock: dict[tuple[str, str], int] = field(default_factory=dict)
    erp_stock: dict[tuple[str, str], int] = field(default_factory=dict)
    # The governance act: late charges quarantined, then replayed after the master-data fix, once.
    governance: GovernanceResult | None = None
    # The revenue cycle: claims billed, paid and adjusted, in billing, at the payer and in the ERP.
    revenue: RevenueCycle | None = None

    @property
    def governance_ok(self) -> bool:
        g = self.governance
        return g is None or (len(g.quarantined) == g.lines and g.replayed == g.lines and g.posted_once)

    @property
    def stock_agrees(self) -> bool:
        return self.source_stock == self.erp_stock

    @property
    def settled_cents(self) -> int:
        """Billed charges 835s settled (paid and adjusted): what left the receivables."""
        return 0 if self.revenue is None else self.revenue.settled_cents

    @property
    def receivables_agree(self) -> bool:
        """The ERP's receivables are the charges less what 835s settled."""
        return self.erp_receivables_cents == self.source_cents - self.settled_cents

    @property
    def balanced(self) -> bool:
        return (
            self.source_lines == self.billing_lines == self.erp_revenue_lines
            and self.source_cents == self.billing_cents == self.erp_revenue_cents
            and self.receivables_agree
            and self.source_coded_accounts == self.billing_coded_accounts
            and self.stock_agrees
            and self.governance_ok
            and (self.revenue is None or self.revenue.agrees)
        )


def reconcile(
    day: SyntheticDay, report: StackReport, governance: GovernanceResult | None = None
) -> Reconciliation:
    """Compare the generated day (and the late charges of the governance act) with billing and the ERP."""
    late_lines = governance.lines if governance is not None else 0
    late_cents = governance.cents if governance is not None else 0
    # Charge revenue only: the contractual allowances and interest 835s post are revenue accounts too.
    revenue_lines = sum(
        int(row.get("lineCount", 0))
        for row in report.ledger.get("byAccount", [])
        if row.get("account") in report.revenue_accounts and row.get("account") not in REMITTANCE_REVENUE
    )
    return Reconciliation(
        source_lines=day.expected.charge_lines + late_lines,
        billing_lines=int(report.billing.get("chargeCount", 0)),
        erp_revenue_lines=revenue_lines,
        source_cents=day.expected.net_charge_cents + late_cents,
        billing_cents=int(report.billing.get("amountCents", 0)),
        erp_revenue_cents=report.revenue_net_cents,
        erp_receivables_cents=report.receivables_net_cents,
        governance=governance,
        source_coded_accounts=day.expected.bar_messages,
        billing_coded_accounts=int(report.billing.get("codedAccountCount", 0)),
        source_stock={key: milli for key, milli in day.expected.stock_milli_by_item.items() if milli},
        erp_stock={
            (row.facility, row.item_code): row.net_milli for row in report.inventory_rows() if row.net_milli
        },
        revenue=revenue_cycle(report) if report.revenue_cycle or report.payer else None,
    )


async def _send_and_watch(settings: Settings, day: SyntheticDay, console: Console, timeout_s: float) -> None:
    client = aioredis.Redis.from_url(settings.redis)
    stats = Stats(client, settings.topic_prefix)
    total = len(day.messages)
    # Like every inbound path, the day goes into the message store; the stack's forwarder sends it on.
    store = MessageStore.from_settings(settings)
    try:
        with Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            sent_task = progress.add_task("messages stored", total=total)
            done_task = progress.add_task("messages processed", total=total)
            posted_task = progress.add_task("charge lines posted", total=day.expected.charge_lines)
            for start in range(0, total, 500):
                chunk = day.messages[start : start + 500]
                await asyncio.to_thread(store_messages, settings, chunk, channel="demo", store=store)
                progress.update(sent_task, completed=start + len(chunk))
                counters = await stats.read()
                progress.update(done_task, completed=counters["raw_in"])
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                counters = await stats.read()
                progress.update(done_task, completed=min(counters["raw_in"], total))
                posted = counters["charges_posted"] + counters["charges_duplicate"]
                progress.update(posted_task, completed=min(posted, day.expected.charge_lines))
                lines = counters["journal_lines_accepted"] + counters["journal_lines_duplicate"]
                if (
                    counters["raw_in"] >= total
                    and posted >= day.expected.charge_lines
                    and lines >= 2 * day.expected.charge_lines
                ):
                    break
                await asyncio.sleep(0.5)
            # Coding and stock movements travel beside the charges; give them the rest of the time.
            while time.monotonic() < deadline:
                if reconcile(day, await collect(settings)).balanced:
                    break
                await asyncio.sleep(0.5)
    finally:
        store.close()
        await client.aclose()


async def _wait_revenue_cycle(
    settings: Settings, day: SyntheticDay, governance: GovernanceResult | None, timeout_s: float
) -> None:
    """Wait until every claim sent is paid or denied and the payer, billing and the ERP agree.

    Claims go out as soon as an account is discharged and coded; the payer holds them a moment, pays
    them by 835 on its schedule into the inbox, and the 835s post in billing and the ERP.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rec = reconcile(day, await collect(settings), governance)
        if rec.revenue is not None and rec.revenue.done and rec.balanced:
            return
        await asyncio.sleep(1.0)


def summary_table(day: SyntheticDay, report: StackReport, rec: Reconciliation, elapsed_s: float) -> Table:
    """Return the demo's summary table."""
    table = Table(title=f"hcsync demo: {day.expected.encounters} encounters, {elapsed_s:.1f}s")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("messages in", f"{report.messages_received:,}")
    table.add_row("canonical events", f"{report.counters.get('events_out', 0):,}")
    table.add_row("quarantined", f"{report.topics.get('exceptions', 0):,}")
    table.add_row("billing accounts", f"{int(report.billing.get('accountCount', 0)):,}")
    table.add_row("charges posted", f"{rec.billing_lines:,}")
    table.add_row("journal lines", f"{int(report.ledger.get('lineCount', 0)):,}")
    return table


def reconciliation_table(rec: Reconciliation) -> Table:
    """Return the reconciliation: source = billing = ERP."""
    table = Table(title="Reconciliation")
    for col in ("control", "source", "billing", "ERP", "status"):
        table.add_column(col, justify="left" if col in ("control", "status") else "right")
    lines_ok = rec.source_lines == rec.billing_lines == rec.erp_revenue_lines
    table.add_row(
        "charge lines",
        f"{rec.source_lines:,}",
        f"{rec.billing_lines:,}",
        f"{rec.erp_revenue_lines:,}",
        "[green]agree[/]" if lines_ok else "[red]DIFFER[/]",
    )
    cents_ok = rec.source_cents == rec.billing_cents == rec.erp_revenue_cents
    table.add_row(
        "net charges / revenue",
        money(rec.source_cents),
        money(rec.billing_cents),
        money(rec.erp_revenue_cents),
        "[green]agree[/]" if cents_ok else "[red]DIFFER[/]",
    )
    table.add_row(
        "receivables still open (charges less what 835s settled)",
        money(rec.source_cents - rec.settled_cents),
        money(rec.billing_cents - rec.settled_cents),
        money(rec.erp_receivables_cents),
        "[green]agree[/]" if rec.receivables_agree else "[red]DIFFER[/]",
    )
    coded_ok = rec.source_coded_accounts == rec.billing_coded_accounts
    table.add_row(
        "coded accounts (BAR)",
        f"{rec.source_coded_accounts:,}",
        f"{rec.billing_coded_accounts:,}",
        "",
        "[green]agree[/]" if coded_ok else "[red]DIFFER[/]",
    )
    table.add_row(
        f"stock used ({len(rec.source_stock)} items)",
        format_milli(sum(rec.source_stock.values())),
        "",
        format_milli(sum(rec.erp_stock.values())),
        "[green]agree item by item[/]" if rec.stock_agrees else "[red]DIFFER[/]",
    )
    g = rec.governance
    if g is not None:
        table.add_row(
            f"late charges ({g.version_before} -> {g.version_after})",
            f"{g.lines:,} quarantined",
            f"{g.replayed:,} replayed",
            f"+{g.charges_after_second_replay - g.charges_after_replay:,} on a 2nd replay",
            "[green]posted once[/]" if rec.governance_ok else "[red]DIFFER[/]",
        )
    return table


def run_demo(
    settings: Settings,
    encounters: int,
    seed: int,
    timeout_s: float,
    console: Console,
    late_charges: int = 3,
) -> bool:
    """Run the whole demo (the governance act too, unless ``late_charges`` is 0); True when totals agree."""
    started = time.monotonic()
    day = generate_day(encounters=encounters, seed=seed)
    run_dir = new_run_dir(settings, "demo")
    console.print(f"[bold]hcsync demo[/]: run directory {run_dir}")
    stack = Stack(settings, run_dir)
    with console.status("starting broker, Redis, adapters, Ray and the Faust worker..."):
        stack.start()
    console.print(f"stack ready in {time.monotonic() - started:.1f}s")
    governance: GovernanceResult | None = None
    try:
        in_run = settings.model_copy(update={"run_dir": run_dir})
        asyncio.run(_send_and_watch(in_run, day, console, timeout_s))
        if late_charges:
            store = QuarantineStore(f"sqlite:///{run_dir / 'quarantine.db'}")
            try:
                governance = asyncio.run(
                    run_governance(settings, day, run_dir, store, console, count=late_charges)
                )
            finally:
                store.close()
        with console.status("revenue cycle: claims to the payer, 999s and 835s back, payments posted..."):
            asyncio.run(_wait_revenue_cycle(in_run, day, governance, timeout_s))
        report = asyncio.run(collect(settings))
    finally:
        with console.status("stopping the stack..."):
            stack.stop()
    rec = reconcile(day, report, governance)
    console.print(summary_table(day, report, rec, time.monotonic() - started))
    print_report(report, console)
    console.print(reconciliation_table(rec))
    if rec.balanced:
        console.print("[bold green]source, billing and ERP totals agree[/]")
    else:
        console.print(f"[bold red]totals differ[/]: see the logs in {run_dir}")
    return rec.balanced
