"""The demo's governance act: a charge code the charge master does not know yet is stopped before billing
and the ERP, the mapping is added as a new master-data version while the stack runs, the quarantined
messages are replayed and post, and a second replay posts nothing more.

Late charges are built from DFT messages of the generated day (the same patient, visit and department),
each with one line of the new code and a control id of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from actors.masterdata import MasterDataStore
from canonical.hl7v2.parser import parse_message
from canonical.reference import ChargeCode, MasterDataSet, RecordChange, diff_sets
from canonical.reference_files import write_set
from cluster.report import collect
from cluster.send import send_messages
from cluster.synth import SyntheticDay
from foundation.settings import Settings
from streams.quarantine_store import QuarantineItem, QuarantineStore
from streams.replay import replay

RULE = "MD-CHARGE-CODE-UNMAPPED"
NEW_CODE = "99499"
NEW_DESCRIPTION = "Unlisted evaluation and management service"
NEW_PRICE_CENTS = 12_000
# The new code posts like the other evaluation and management visits: to the revenue account of 99283.
REVENUE_LIKE = "99283"


@dataclass(slots=True)
class GovernanceResult:
    """What the act did, for the summary and the reconciliation."""

    messages: tuple[bytes, ...] = ()
    quarantined: list[QuarantineItem] = field(default_factory=list)
    version_before: str = ""
    version_after: str = ""
    changes: list[RecordChange] = field(default_factory=list)
    fixed_dir: Path | None = None
    replayed: int = 0
    charges_after_replay: int = 0
    charges_after_second_replay: int = 0

    @property
    def lines(self) -> int:
        return len(self.messages)

    @property
    def cents(self) -> int:
        return NEW_PRICE_CENTS * len(self.messages)

    @property
    def posted_once(self) -> bool:
        return self.charges_after_second_replay == self.charges_after_replay


def late_charges(day: SyntheticDay, count: int) -> tuple[bytes, ...]:
    """Return ``count`` DFT^P03 messages charging the new code to encounters of the day."""
    out: list[bytes] = []
    for raw in day.messages:
        if len(out) == count:
            break
        msg = parse_message(raw)
        if msg.event_code != "DFT^P03":
            continue
        segments = raw.decode("utf-8").rstrip("\r").split("\r")
        kept = [seg for seg in segments if not seg.startswith("FT1|")]
        header = kept[0].split("|")
        header[9] = f"GOV{len(out) + 1:04d}{msg.control_id}"  # MSH-10 (the MSH-1 separator is field 1)
        kept[0] = "|".join(header)
        ft1 = next(seg for seg in segments if seg.startswith("FT1|")).split("|")
        ft1 += [""] * (14 - len(ft1))
        amount = f"{NEW_PRICE_CENTS // 100}.{NEW_PRICE_CENTS % 100:02d}"
        ft1[1], ft1[2], ft1[6] = "1", f"G{header[9]}", "CG"
        ft1[7], ft1[9] = f"{NEW_CODE}^{NEW_DESCRIPTION}^CPT", NEW_DESCRIPTION
        ft1[10], ft1[11], ft1[12] = "1", amount, amount
        out.append(("\r".join([*kept, "|".join(ft1)]) + "\r").encode("utf-8"))
    return tuple(out)


def with_new_code(data: MasterDataSet) -> MasterDataSet:
    """Return the set in force plus the new charge code, as a new version."""
    like = data.charge_code(REVENUE_LIKE)
    assert like is not None, f"the demo charge master has {REVENUE_LIKE}"
    code = ChargeCode(
        code=NEW_CODE,
        code_system="CPT",
        description=NEW_DESCRIPTION,
        revenue_account=like.revenue_account,
        price_cents=NEW_PRICE_CENTS,
    )
    manifest = data.manifest.model_copy(
        update={
            "version": f"{data.version}-1",
            "description": f"{data.manifest.description} Adds {NEW_CODE} ({NEW_DESCRIPTION}).".strip(),
        }
    )
    return data.model_copy(update={"manifest": manifest, "charge_codes": (*data.charge_codes, code)})


async def _charges_posted(settings: Settings) -> int:
    report = await collect(settings)
    return int(report.billing.get("chargeCount", 0))


async def _wait(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


async def run_governance(
    settings: Settings,
    day: SyntheticDay,
    run_dir: Path,
    store: QuarantineStore,
    console: Console,
    *,
    count: int = 3,
    timeout_s: float = 120.0,
) -> GovernanceResult:
    """Send late charges with an unmapped code, fix the master data, replay, and replay again."""
    result = GovernanceResult(messages=late_charges(day, count))
    ids = {parse_message(raw).control_id for raw in result.messages}
    masterdata = MasterDataStore.from_url(settings.redis, settings.topic_prefix)
    before = await _charges_posted(settings)
    await send_messages(settings.model_copy(update={"run_dir": run_dir}), list(result.messages))

    async def quarantined() -> bool:
        items = await asyncio.to_thread(store.list, rule=RULE, status=None, limit=None)
        result.quarantined = [item for item in items if item.source_message_id in ids]
        return len(result.quarantined) == len(ids)

    await _wait(f"{count} {RULE} quarantine records", quarantined, timeout_s)
    held = await _charges_posted(settings)
    table = Table(
        title=f"Governance: {count} late charges with code {NEW_CODE} stopped before billing and ERP"
    )
    for column in ("record", "rule", "field", "found", "encounter"):
        table.add_column(column, no_wrap=True)
    for item in result.quarantined:
        table.add_row(item.record_id[:8], item.rule, item.field, item.found, escape(item.encounter_id or ""))
    console.print(table)
    if result.quarantined:
        console.print(f"how to fix: {escape(result.quarantined[0].fix_hint)}", soft_wrap=True)
    console.print(f"charges posted meanwhile: {held - before} (billing and the ERP saw nothing)")

    current = await asyncio.to_thread(masterdata.current)
    assert current is not None, "the stack loaded master data at start"
    fixed = with_new_code(current)
    result.version_before, result.version_after = current.version, fixed.version
    result.changes = diff_sets(current, fixed)
    result.fixed_dir = write_set(fixed, run_dir / f"masterdata-{fixed.version}")
    await asyncio.to_thread(masterdata.load, fixed, loaded_by="hcsync demo")
    added = fixed.charge_code(NEW_CODE)
    assert added is not None
    console.print(
        f"master data {fixed.version} loaded while the stack runs ({len(result.changes)} change: "
        f"{NEW_CODE} -> revenue {added.revenue_account}); files in {result.fixed_dir}"
    )

    record_ids = [item.record_id for item in result.quarantined]
    report = await replay(settings, store, record_ids)
    result.replayed = report.total

    async def posted() -> bool:
        return await _charges_posted(settings) >= held + count

    await _wait("the replayed charges to post", posted, timeout_s)
    result.charges_after_replay = await _charges_posted(settings)
    await replay(settings, store, record_ids)
    await asyncio.sleep(3.0)  # time for a duplicate to show, were there one
    result.charges_after_second_replay = await _charges_posted(settings)
    console.print(
        f"replayed {result.replayed} item(s): {result.charges_after_replay - held} charge line(s) posted; "
        f"replayed again: {result.charges_after_second_replay - result.charges_after_replay} more"
    )
    return result


__all__ = ["GovernanceResult", "late_charges", "run_governance", "with_new_code"]
