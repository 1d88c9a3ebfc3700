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
from streams.remittance_journal import REMITTANCE_REVENUE
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
        return sum(
            int(row.get("debitCents", 0)) - int(row.get("creditCents", 0))
            for row in self.ledger.get("byAccount", [])
            if row.get("account") in self.receivables_accounts
        )

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
