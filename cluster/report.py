"""Collect the state of a running stack: topic counts, live counters, billing and ledger totals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from google.protobuf.json_format import MessageToDict
from redis.exceptions import RedisError

from adapters.clients import BillingClient, ErpClient
from canonical.errors import NotRetryableError, RetryableError, StackError
from cluster.kafka import topic_counts
from cluster.settings import Settings
from streams.stats import Stats
from streams.topics import TopicNames


@dataclass(slots=True)
class StackReport:
    """What `hcsync report` prints."""

    topics: dict[str, int]
    counters: dict[str, int]
    billing: dict[str, Any]
    ledger: dict[str, Any]
    revenue_account: str
    receivables_account: str
    derived: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def messages_received(self) -> int:
        return self.topics.get("raw.hl7v2", 0)

    @property
    def revenue_net_cents(self) -> int:
        """Revenue credits minus debits over every cost centre."""
        return sum(
            int(row.get("creditCents", 0)) - int(row.get("debitCents", 0))
            for row in self.ledger.get("byAccount", [])
            if row.get("account") == self.revenue_account
        )

    @property
    def receivables_net_cents(self) -> int:
        return sum(
            int(row.get("debitCents", 0)) - int(row.get("creditCents", 0))
            for row in self.ledger.get("byAccount", [])
            if row.get("account") == self.receivables_account
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
        raise StackError(
            f"broker at {settings.bootstrap} unreachable (HCSYNC_KAFKA_BOOTSTRAP): {exc}"
        ) from None
    client = aioredis.Redis.from_url(settings.redis)
    try:
        counters = await Stats(client, settings.topic_prefix).read()
    except RedisError as exc:
        raise StackError(f"redis at {settings.redis} unreachable (HCSYNC_REDIS_URL): {exc}") from None
    finally:
        await client.aclose()
    try:
        async with BillingClient(settings) as billing:
            billing_totals = MessageToDict(
                await billing.get_totals(), always_print_fields_with_no_presence=True
            )
        async with ErpClient(settings) as erp:
            ledger = MessageToDict(await erp.get_ledger_totals(), always_print_fields_with_no_presence=True)
    except (RetryableError, NotRetryableError) as exc:
        raise StackError(str(exc)) from None
    report = StackReport(
        topics={name: counts[full] for name, full in logical.items()},
        counters=counters,
        billing=billing_totals,
        ledger=ledger,
        revenue_account=settings.revenue_account,
        receivables_account=settings.receivables_account,
    )
    report.derived = {
        "revenue_net_cents": report.revenue_net_cents,
        "receivables_net_cents": report.receivables_net_cents,
    }
    return report
