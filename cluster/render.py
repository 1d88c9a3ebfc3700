"""Rich tables for people: the report, the demo summary and the reconciliation."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cluster.report import RevenueCycle, StackReport, format_milli, revenue_cycle


def money(cents: int) -> str:
    """Format cents as a signed amount with two decimals and thousands separators."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def report_tables(report: StackReport) -> list[Table]:
    """Return the tables of `hcsync report`."""
    version = report.masterdata_version or "none loaded"
    flow = Table(title=f"Pipeline (master data {version})", show_header=True)
    flow.add_column("what")
    flow.add_column("count", justify="right")
    rows = [
        ("messages received (raw.hl7v2)", report.messages_received),
        ("canonical events", report.counters.get("events_out", 0)),
        ("  in events.canonical records (batches)", report.topics.get("events.canonical", 0)),
        ("quarantined (exceptions)", report.topics.get("exceptions", 0)),
        ("messages processed by the pool", report.counters.get("raw_in", 0)),
        ("messages with no financial effect", report.counters.get("ignored", 0)),
        ("duplicate events ignored", report.counters.get("duplicate_events", 0)),
        ("charges held until registration (ever)", report.counters.get("held_charges", 0)),
        (
            "charges still held now",
            report.counters.get("held_charges", 0) - report.counters.get("held_released", 0),
        ),
        ("billing commands", report.counters.get("billing_commands", 0)),
        ("  in commands.billing records (batches)", report.topics.get("commands.billing", 0)),
        ("ERP commands", report.counters.get("erp_commands", 0)),
        ("  in commands.erp records (batches)", report.topics.get("commands.erp", 0)),
    ]
    for name, value in rows:
        flow.add_row(name, f"{value:,}")

    billing = Table(title="Billing")
    billing.add_column("what")
    billing.add_column("value", justify="right")
    billing.add_row("accounts", f"{int(report.billing.get('accountCount', 0)):,}")
    billing.add_row("charges posted", f"{int(report.billing.get('chargeCount', 0)):,}")
    billing.add_row("amount posted", money(int(report.billing.get("amountCents", 0))))
    for row in report.billing.get("byStatus", []):
        billing.add_row(f"accounts {row.get('status')}", f"{int(row.get('accountCount', 0)):,}")
    for label, value in report.coding_rows():
        billing.add_row(label, f"{value:,}")

    ledger = Table(title="ERP journal lines by legal entity, account and cost centre")
    for col in ("legal entity", "account", "cost centre", "lines", "debit", "credit"):
        ledger.add_column(col, justify="right" if col in ("lines", "debit", "credit") else "left")
    for row in report.ledger.get("byAccount", []):
        ledger.add_row(
            str(row.get("legalEntity", "")),
            str(row.get("account", "")),
            str(row.get("costCentre", "")),
            f"{int(row.get('lineCount', 0)):,}",
            money(int(row.get("debitCents", 0))),
            money(int(row.get("creditCents", 0))),
        )
    ledger.add_row(
        "total",
        "",
        "",
        f"{int(report.ledger.get('lineCount', 0)):,}",
        money(int(report.ledger.get("totalDebitCents", 0))),
        money(int(report.ledger.get("totalCreditCents", 0))),
        style="bold",
    )
    inventory = Table(title="ERP inventory by facility and item")
    for col in ("facility", "item", "movements", "issued", "returned", "net", "value"):
        inventory.add_column(col, justify="left" if col in ("facility", "item") else "right")
    for item in report.inventory_rows():
        inventory.add_row(
            item.facility,
            item.item_code,
            f"{item.movement_count:,}",
            format_milli(item.issued_milli),
            format_milli(item.returned_milli),
            format_milli(item.net_milli),
            money(item.value_cents),
        )
    inventory.add_row(
        "total",
        "",
        f"{int(report.inventory.get('movementCount', 0)):,}",
        format_milli(int(report.inventory.get("issuedMilli", 0))),
        format_milli(int(report.inventory.get("returnedMilli", 0))),
        format_milli(
            int(report.inventory.get("issuedMilli", 0)) - int(report.inventory.get("returnedMilli", 0))
        ),
        money(int(report.inventory.get("valueCents", 0))),
        style="bold",
    )
    tables = [flow, billing, ledger, inventory]
    if report.revenue_cycle or report.payer:
        tables.append(revenue_table(revenue_cycle(report)))
    return tables


def revenue_table(rc: RevenueCycle) -> Table:
    """Return the revenue cycle's reconciliation: the payer, billing and the ERP, to the cent."""
    table = Table(title="Revenue cycle")
    for col in ("control", "payer", "billing", "ERP", "status"):
        table.add_column(col, justify="left" if col in ("control", "status") else "right")

    def status(ok: bool) -> str:
        return "[green]agree[/]" if ok else "[red]DIFFER[/]"

    statuses = ", ".join(f"{n} {s}" for s, n in sorted(rc.claims_by_status.items()))
    table.add_row(
        "claims billed (837)", f"{rc.payer_claims:,} accepted", f"{rc.billing_claims:,}: {statuses}", "",
        status(rc.payer_claims == rc.sent_claims),
    )  # fmt: skip
    table.add_row("billed charges", "", money(rc.billed_cents), "", "")
    table.add_row(
        "835s", f"{rc.payer_remittances:,} issued", f"{rc.billing_remittances:,} posted", "",
        status(rc.payer_remittances == rc.payer_delivered == rc.billing_remittances),
    )  # fmt: skip
    cash = rc.paid_cents - rc.plb_cents
    table.add_row(
        "cash (BPR02: paid less PLB)", money(rc.payer_cash_cents), money(cash), money(rc.erp_cash_cents),
        status(rc.payer_cash_cents == cash == rc.erp_cash_cents),
    )  # fmt: skip
    table.add_row("paid (CLP04)", "", money(rc.paid_cents), "", "")
    table.add_row(
        "contractual and other adjustments (CO, OA, PI)", "", money(rc.contractual_cents),
        money(rc.erp_contractual_cents), status(rc.contractual_cents == rc.erp_contractual_cents),
    )  # fmt: skip
    table.add_row(
        "patient responsibility (PR)", "", money(rc.patient_cents), money(rc.erp_patient_cents),
        status(rc.patient_cents == rc.erp_patient_cents),
    )  # fmt: skip
    table.add_row(
        "provider-level adjustments (PLB)", "", money(rc.plb_cents), money(rc.erp_plb_cents),
        status(rc.plb_cents == rc.erp_plb_cents),
    )  # fmt: skip
    table.add_row("denied claims", "", f"{rc.denied_claims:,} ({money(rc.denied_cents)})", "", "")
    table.add_row("claims still open", "", money(rc.open_claims_cents), "", "")
    return table


def print_report(report: StackReport, console: Console) -> None:
    """Print the report tables."""
    for table in report_tables(report):
        console.print(table)
