"""The chaos workload and its audit: emergency visits with unique control ids, and what must be posted.

Each visit is four messages sent in order down one lane: a registration (A04), a charge (DFT^P03, one
line of a visit-specific amount), an update (A08) and a discharge (A03). Once the stack has settled, the
audit reads billing and the ERP's databases directly (read-only) and checks, for every visit:

- every acknowledged ADT message was applied to the billing account (its upsert key is recorded);
- the charge is posted exactly once, for its amount, and the ERP has exactly its two journal lines
  (receivable and revenue), balanced;
- order per encounter held: whatever order the events were processed in, the account ends as the last
  message says (discharged, under the name the update gave the patient), not as an older one.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from canonical import ids
from tests.hl7_samples import adt, dft

SENDER = "EPIC^NMH"
FACILITY = "NMH"
RENAMED = "Janet"


@dataclass(frozen=True, slots=True)
class Visit:
    """One emergency visit of the workload."""

    number: int
    visit: str
    control_ids: tuple[str, str, str, str]  # A04, DFT, A08, A03
    amount_cents: int
    messages: tuple[bytes, ...]

    @property
    def encounter_id(self) -> str:
        return f"{FACILITY}:{self.visit}"

    @property
    def adt_ids(self) -> tuple[str, str, str]:
        return (self.control_ids[0], self.control_ids[2], self.control_ids[3])

    @property
    def charge_correlation(self) -> str:
        return ids.correlation_id(SENDER, self.control_ids[1])

    def upsert_keys(self) -> list[str]:
        return [ids.derived_id(ids.event_id(SENDER, cid, 0), "billing.account") for cid in self.adt_ids]


def visits(prefix: str, count: int, start: int = 0) -> list[Visit]:
    """Return ``count`` visits whose control ids and visit numbers all begin with ``prefix``."""
    out: list[Visit] = []
    base = dt.datetime(2026, 12, 1, 8, 0)
    for n in range(start, start + count):
        visit = f"{prefix}{n:06d}"
        at = base + dt.timedelta(seconds=n)
        stamp = [(at + dt.timedelta(minutes=m)).strftime("%Y%m%d%H%M%S") for m in range(3)]
        cents = 10_000 + n % 90_000  # 100.00 and up: each visit's own amount
        amount = f"{cents // 100}.{cents % 100:02d}"
        cids = (f"{prefix}A{n}", f"{prefix}D{n}", f"{prefix}U{n}", f"{prefix}Z{n}")
        messages = (
            adt("A04", cids[0], visit, patient_class="E", dept="ED", admit=stamp[0], at=stamp[0]),
            dft(cids[1], visit, [("CG", "99283", "ED visit", 1, amount)], dept="ED"),
            # The update renames the patient: the account must end with the newer name.
            adt(
                "A08",
                cids[2],
                visit,
                patient_class="E",
                dept="ED",
                admit=stamp[0],
                at=stamp[1],
                given=RENAMED,
            ),
            adt(
                "A03",
                cids[3],
                visit,
                patient_class="E",
                dept="ED",
                admit=stamp[0],
                discharge=stamp[2],
                at=stamp[2],
                given=RENAMED,
            ),
        )
        out.append(Visit(n, visit, cids, cents, messages))
    return out


def lanes(workload: Sequence[Visit], count: int) -> list[list[bytes]]:
    """Spread the visits over ``count`` lanes, each visit's messages in order on one lane."""
    out: list[list[bytes]] = [[] for _ in range(count)]
    for visit in workload:
        out[visit.number % count].extend(visit.messages)
    return [lane for lane in out if lane]


def _read(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def _in(conn: sqlite3.Connection, query: str, values: Iterable[str]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    items = list(values)
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows.extend(conn.execute(query.format(marks=marks), chunk).fetchall())
    return rows


@dataclass
class Audit:
    """What the databases say of a workload; empty lists mean all is well."""

    visits: int
    missing_upserts: list[str] = field(default_factory=list)
    missing_charges: list[str] = field(default_factory=list)
    doubled_charges: list[str] = field(default_factory=list)
    wrong_amounts: list[str] = field(default_factory=list)
    missing_lines: list[str] = field(default_factory=list)
    doubled_lines: list[str] = field(default_factory=list)
    unbalanced: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    # Quarantine items of the workload's encounters: a valid workload has none, whatever was killed.
    quarantined: list[str] = field(default_factory=list)
    charges_posted: int = 0
    lines_posted: int = 0
    # Messages whose effect is in billing and the ERP: each ADT applied, each charge with its two lines.
    messages_posted: int = 0

    @property
    def lost(self) -> int:
        return len(self.missing_upserts) + len(self.missing_charges) + len(self.missing_lines)

    @property
    def doubled(self) -> int:
        return len(self.doubled_charges) + len(self.doubled_lines)

    @property
    def clean(self) -> bool:
        return not (
            self.missing_upserts
            or self.missing_charges
            or self.doubled_charges
            or self.wrong_amounts
            or self.missing_lines
            or self.doubled_lines
            or self.unbalanced
            or self.out_of_order
            or self.quarantined
        )

    def describe(self) -> str:
        parts = [
            f"{self.visits} visits: {self.charges_posted} charges, {self.lines_posted} journal lines posted"
        ]
        for name in (
            "missing_upserts",
            "missing_charges",
            "doubled_charges",
            "wrong_amounts",
            "missing_lines",
            "doubled_lines",
            "unbalanced",
            "out_of_order",
            "quarantined",
        ):
            found: list[str] = getattr(self, name)
            if found:
                parts.append(f"{name.replace('_', ' ')} ({len(found)}): {', '.join(found[:8])}")
        return "; ".join(parts)


def audit(run_dir: Path, workload: Sequence[Visit]) -> Audit:
    """Read billing and the ERP and compare them with what the workload must have posted."""
    result = Audit(visits=len(workload))
    by_corr = {v.charge_correlation: v for v in workload}
    with _read(run_dir / "billing.db") as billing:
        upserts = {
            str(key)
            for (key,) in _in(
                billing,
                "select idempotency_key from billing_account_upserts where idempotency_key in ({marks})",
                [key for v in workload for key in v.upsert_keys()],
            )
        }
        charges = _in(
            billing,
            "select correlation_id, amount_cents from billing_charges where correlation_id in ({marks})",
            by_corr,
        )
        accounts = {
            str(account): (str(status), str(given))
            for account, status, given in _in(
                billing,
                "select account_id, status, given_name from billing_accounts where account_id in ({marks})",
                [v.encounter_id for v in workload],
            )
        }
    with _read(run_dir / "erp.db") as erp:
        lines = _in(
            erp,
            "select correlation_id, debit_cents, credit_cents from erp_journal_lines "
            "where correlation_id in ({marks})",
            by_corr,
        )
    quarantine_db = run_dir / "quarantine.db"
    if quarantine_db.exists():
        with _read(quarantine_db) as quarantine:
            result.quarantined = [
                f"{encounter} {stage} {rule}: {reason[:160]}"
                for encounter, stage, rule, reason in _in(
                    quarantine,
                    "select encounter_id, stage, rule, reason from quarantine_items "
                    "where encounter_id in ({marks})",
                    [v.encounter_id for v in workload],
                )
            ]
    charge_count = Counter(str(corr) for corr, _ in charges)
    line_count = Counter(str(corr) for corr, _, _ in lines)
    amounts: dict[str, int] = {str(corr): int(amount) for corr, amount in charges}  # type: ignore[call-overload]
    debit: Counter[str] = Counter()
    credit: Counter[str] = Counter()
    for corr, d, c in lines:
        debit[str(corr)] += int(d)  # type: ignore[call-overload]
        credit[str(corr)] += int(c)  # type: ignore[call-overload]
    result.charges_posted = len(charges)
    result.lines_posted = len(lines)
    for visit in workload:
        corr = visit.charge_correlation
        name = visit.visit
        missing = [key for key in visit.upsert_keys() if key not in upserts]
        result.messages_posted += 3 - len(missing) + (charge_count[corr] >= 1 and line_count[corr] >= 2)
        if missing:
            result.missing_upserts.append(f"{name} ({len(missing)} of 3 ADT)")
        if charge_count[corr] == 0:
            result.missing_charges.append(name)
        elif charge_count[corr] > 1:
            result.doubled_charges.append(f"{name} x{charge_count[corr]}")
        elif amounts[corr] != visit.amount_cents:
            result.wrong_amounts.append(f"{name}: {amounts[corr]} != {visit.amount_cents}")
        if line_count[corr] < 2:
            result.missing_lines.append(f"{name} ({line_count[corr]} of 2)")
        elif line_count[corr] > 2:
            result.doubled_lines.append(f"{name} x{line_count[corr]}")
        elif not debit[corr] == credit[corr] == visit.amount_cents:
            result.unbalanced.append(f"{name}: debit {debit[corr]}, credit {credit[corr]}")
        account = accounts.get(visit.encounter_id)
        if account != ("discharged", RENAMED):
            result.out_of_order.append(f"{name}: {account}")
    return result
