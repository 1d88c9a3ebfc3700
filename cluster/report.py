"""Collect the state of a running stack: topic counts, live counters, billing, ledger and inventory totals.

Totals are kept as the adapters' JSON (camelCase, int64 as strings); the accessors below turn the parts
`hcsync report` shows into plain numbers and rows.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from google.protobuf.json_format import MessageToDict
from redis.exceptions import RedisError

from actors.masterdata import MasterDataStore
from adapters.clients import BillingClient, ErpClient, PayerClient
from canonical.errors import ConfigurationError, NotRetryableError, RetryableError, StackError
from canonical.reference import AccountType
from foundation.kafka import broker_unreachable, redis_unreachable, topic_counts
from foundation.settings import Settings
from foundation.topics import TopicNames
from streams.remittance_journal import (
    CASH_ACCOUNT,
    CONTRACTUAL_ALL,
    INTEREST_ACCOUNT,
    PATIENT_RECEIVABLE_ACCOUNT,
    RECOVERY_ACCOUNT,
    REMITTANCE_REVENUE,
)
from streams.stats import Stats


def _int(values: dict[str, Any], name: str) -> int:
    """Return a number of a protobuf JSON dict (int64 values arrive as strings), 0 when absent."""
    return int(values.get(name, 0))


def format_milli(milli: int) -> str:
    """Format a quantity in thousandths of a unit, dropping a zero fraction: 2500 -> 2.5, 3000 -> 3."""
    sign = "-" if milli < 0 else ""
    whole, fraction = divmod(abs(milli), 1000)
    text = f"{whole:,}.{fraction:03d}".rstrip("0").rstrip(".")
    return f"{sign}{text}"


@dataclass(frozen=True, slots=True)
class ItemRow:
    """Stock moved for one item at one facility."""

    facility: str
    item_code: str
    issued_milli: int
    returned_milli: int
    net_milli: int
    movement_count: int
    value_cents: int = 0  # net value at the item master's standard cost


@dataclass(slots=True)
class StackReport:
    """What `hcsync report` prints."""

    topics: dict[str, int]
    counters: dict[str, int]
    billing: dict[str, Any]
    ledger: dict[str, Any]
    # Classified by the master data in force: revenue accounts, and each legal entity's receivables.
    revenue_accounts: list[str]
    receivables_accounts: list[str]
    masterdata_version: str = ""
    derived: dict[str, int] = field(default_factory=dict)
    inventory: dict[str, Any] = field(default_factory=dict)
    payer: dict[str, Any] = field(default_factory=dict)  # the payer gateway's status, when it answers

    def account_net_cents(self, *accounts: str) -> int:
        """Debits minus credits of the ledger accounts named, over every legal entity and cost centre."""
        return sum(
            int(row.get("debitCents", 0)) - int(row.get("creditCents", 0))
            for row in self.ledger.get("byAccount", [])
            if row.get("account") in accounts
        )

    @property
    def revenue_cycle(self) -> dict[str, Any]:
        """Billing's revenue-cycle totals (claims, payments, adjustments), empty before any."""
        found: dict[str, Any] = self.billing.get("revenueCycle", {})
        return found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def messages_received(self) -> int:
        return self.topics.get("raw.hl7v2", 0)

    @property
    def revenue_net_cents(self) -> int:
        """Revenue credits minus debits over every cost centre, the contra-revenue of 835s left out.

        Contractual allowances and the interest a payer adds are revenue accounts too, but they are what
        remittances post, not charges; the revenue-cycle reconciliation counts them.
        """
        return sum(
            int(row.get("creditCents", 0)) - int(row.get("debitCents", 0))
            for row in self.ledger.get("byAccount", [])
            if row.get("account") in self.revenue_accounts and row.get("account") not in REMITTANCE_REVENUE
        )

    @property
    def receivables_net_cents(self) -> int:
        return self.account_net_cents(*self.receivables_accounts)

    def coding_rows(self) -> list[tuple[str, int]]:
        """Return billing's coding, merge, person update, move, reversal and supply totals as rows."""
        return [
            ("coded accounts", _int(self.billing, "codedAccountCount")),
            ("diagnoses", _int(self.billing, "diagnosisCount")),
            ("procedures", _int(self.billing, "procedureCount")),
            ("accounts with a DRG", _int(self.billing, "drgCount")),
            ("patient merges", _int(self.billing, "mergeCount")),
            ("accounts moved by merges", _int(self.billing, "mergedAccountCount")),
            ("person updates", _int(self.billing, "patientUpdateCount")),
            ("account and visit moves", _int(self.billing, "accountMoveCount")),
            ("accounts moved by them", _int(self.billing, "movedAccountCount")),
            ("reversals and credits", _int(self.billing, "reversalCount")),
            ("supply charges", _int(self.billing, "supplyChargeCount")),
        ]

    def inventory_rows(self) -> list[ItemRow]:
        """Return the inventory totals per facility and item code, as the ERP sorted them."""
        return [
            ItemRow(
                facility=str(row.get("facility", "")),
                item_code=str(row.get("itemCode", "")),
                issued_milli=_int(row, "issuedMilli"),
                returned_milli=_int(row, "returnedMilli"),
                net_milli=_int(row, "netMilli"),
                movement_count=_int(row, "movementCount"),
                value_cents=_int(row, "valueCents"),
            )
            for row in self.inventory.get("byItem", [])
        ]


@dataclass(frozen=True, slots=True)
class RevenueCycle:
    """The revenue cycle's control totals: the payer's, billing's and the ERP's, in cents."""

    payer_claims: int  # claims the payer received and accepted
    payer_remittances: int  # 835s issued
    payer_delivered: int  # 835s delivered into the inbox
    payer_cash_cents: int  # the BPR02 of every 835
    billing_claims: int  # claims billing built
    claims_by_status: dict[str, int]
    billed_cents: int  # of every claim billing built
    sent_claims: int  # claims that went to the payer
    paid_cents: int  # CLP04
    plb_cents: int  # PLB, withheld (positive) or added (negative)
    contractual_cents: int  # CO, OA, PI, CR
    patient_cents: int  # PR
    denied_claims: int
    denied_cents: int
    open_claims_cents: int  # billed claims not yet settled
    billing_remittances: int
    erp_cash_cents: int  # cash 1010
    erp_contractual_cents: int  # contractual allowances 4960-4962
    erp_patient_cents: int  # patient responsibility receivable 1300
    erp_plb_cents: int  # 2200 recoveries less 4990 interest

    @property
    def settled_cents(self) -> int:
        return self.paid_cents + self.contractual_cents + self.patient_cents

    @property
    def payer_agrees(self) -> bool:
        return (
            self.payer_claims == self.sent_claims
            and self.payer_remittances == self.payer_delivered == self.billing_remittances
            and self.payer_cash_cents == self.paid_cents - self.plb_cents
        )

    @property
    def agrees(self) -> bool:
        return (
            self.payer_agrees
            and self.erp_cash_cents == self.paid_cents - self.plb_cents
            and self.erp_contractual_cents == self.contractual_cents
            and self.erp_patient_cents == self.patient_cents
            and self.erp_plb_cents == self.plb_cents
        )

    @property
    def done(self) -> bool:
        """Every claim sent has been paid or denied (none waits at the payer or for its 835)."""
        waiting = sum(self.claims_by_status.get(s, 0) for s in ("sent", "accepted", "accepted_with_errors"))
        return self.sent_claims > 0 and waiting == 0 and self.agrees


def revenue_cycle(report: StackReport) -> RevenueCycle:
    """The revenue cycle's totals from billing, the payer gateway and the ledger."""
    rc = report.revenue_cycle
    by_status = {str(row.get("status")): int(row.get("claimCount", 0)) for row in rc.get("byStatus", [])}
    adjustments = {str(row.get("group")): int(row.get("amountCents", 0)) for row in rc.get("adjustments", [])}
    payer = report.payer
    return RevenueCycle(
        payer_claims=int(payer.get("claimsHeld", 0)) + int(payer.get("claimsRemitted", 0)),
        payer_remittances=int(payer.get("remittancesIssued", 0)),
        payer_delivered=int(payer.get("remittancesDelivered", 0)),
        payer_cash_cents=int(payer.get("remittedCents", 0)),
        billing_claims=int(rc.get("claimCount", 0)),
        claims_by_status=by_status,
        billed_cents=int(rc.get("billedCents", 0)),
        sent_claims=sum(n for status, n in by_status.items() if status not in ("created", "rejected")),
        paid_cents=int(rc.get("paidCents", 0)),
        plb_cents=int(rc.get("providerAdjustmentCents", 0)),
        contractual_cents=sum(cents for group, cents in adjustments.items() if group != "PR"),
        patient_cents=adjustments.get("PR", 0),
        denied_claims=int(rc.get("deniedCount", 0)),
        denied_cents=int(rc.get("deniedCents", 0)),
        open_claims_cents=int(rc.get("outstandingCents", 0)),
        billing_remittances=int(rc.get("remittanceCount", 0)),
        erp_cash_cents=report.account_net_cents(CASH_ACCOUNT),
        erp_contractual_cents=report.account_net_cents(*CONTRACTUAL_ALL),
        erp_patient_cents=report.account_net_cents(PATIENT_RECEIVABLE_ACCOUNT),
        erp_plb_cents=report.account_net_cents(RECOVERY_ACCOUNT, INTEREST_ACCOUNT),
    )


async def collect(settings: Settings) -> StackReport:
    """Read everything the report shows from the running services."""
    names = TopicNames(settings.topic_prefix)
    logical = {
        "raw.hl7v2": names.raw_hl7v2,
        "events.canonical": names.events,
        "exceptions": names.exceptions,
        "commands.billing": names.billing,
        "commands.erp": names.erp,
    }
    try:
        counts = await topic_counts(settings, logical.values())
    except KafkaError as exc:
        raise broker_unreachable(settings, exc) from None
    client = aioredis.Redis.from_url(settings.redis)
    try:
        counters = await Stats(client, settings.topic_prefix).read()
        masterdata = await asyncio.to_thread(
            MasterDataStore.from_url(settings.redis, settings.topic_prefix).current
        )
    except RedisError as exc:
        raise redis_unreachable(settings, exc) from None
    finally:
        await client.aclose()
    try:
        async with BillingClient(settings) as billing:
            billing_totals = MessageToDict(
                await billing.get_totals(), always_print_fields_with_no_presence=True
            )
        payer: dict[str, Any] = {}
        try:
            async with PayerClient(settings) as gateway:
                payer = MessageToDict(await gateway.get_status(), always_print_fields_with_no_presence=True)
        except (RetryableError, NotRetryableError, ConfigurationError):
            payer = {}  # a deployment whose payer gateway is not ours, or not up: the report goes on
        async with ErpClient(settings) as erp:
            ledger = MessageToDict(await erp.get_ledger_totals(), always_print_fields_with_no_presence=True)
            inventory = MessageToDict(
                await erp.get_inventory_totals(), always_print_fields_with_no_presence=True
            )
    except (RetryableError, NotRetryableError) as exc:
        raise StackError(str(exc)) from None
    report = StackReport(
        topics={name: counts[full] for name, full in logical.items()},
        counters=counters,
        billing=billing_totals,
        ledger=ledger,
        revenue_accounts=sorted(
            a.account for a in masterdata.accounts if a.account_type is AccountType.REVENUE
        )
        if masterdata is not None
        else [],
        receivables_accounts=sorted({e.receivables_account for e in masterdata.legal_entities})
        if masterdata is not None
        else [],
        masterdata_version=masterdata.version if masterdata is not None else "",
        inventory=inventory,
        payer=payer,
    )
    report.derived = derived(report)
    return report


def derived(report: StackReport) -> dict[str, int]:
    """Return the plain numbers `--json` adds to the adapters' totals, for scripts that compare runs."""
    return {
        "revenue_net_cents": report.revenue_net_cents,
        "receivables_net_cents": report.receivables_net_cents,
        "coded_accounts": _int(report.billing, "codedAccountCount"),
        "diagnoses": _int(report.billing, "diagnosisCount"),
        "procedures": _int(report.billing, "procedureCount"),
        "merges": _int(report.billing, "mergeCount"),
        "accounts_merged": _int(report.billing, "mergedAccountCount"),
        "person_updates": _int(report.billing, "patientUpdateCount"),
        "account_moves": _int(report.billing, "accountMoveCount"),
        "accounts_moved": _int(report.billing, "movedAccountCount"),
        "inventory_movements": _int(report.inventory, "movementCount"),
        "inventory_issued_milli": _int(report.inventory, "issuedMilli"),
        "inventory_returned_milli": _int(report.inventory, "returnedMilli"),
        "inventory_net_milli": _int(report.inventory, "issuedMilli")
        - _int(report.inventory, "returnedMilli"),
        "inventory_value_cents": _int(report.inventory, "valueCents"),
    }
