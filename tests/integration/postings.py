"""What billing and the ERP posted for a test's encounters, read from the stack's SQLite databases.

Failure messages use it to name the encounters whose charges are missing or posted twice, so a red run
explains itself without a rerun.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Postings:
    """Charges per encounter in billing, and journal lines per charge (its source event) in the ERP."""

    charges: Counter[str]
    lines: Counter[str]

    def explain(self, encounters: list[str], charges_each: int, lines_each: int = 2) -> str:
        """Say which of ``encounters`` lack charges or have too many, and which charges' lines are off."""
        found = {e: self.charges[e] for e in encounters}
        short = sorted(e for e, n in found.items() if n < charges_each)
        extra = sorted(e for e, n in found.items() if n > charges_each)
        off = sorted(f"{event}: {n}" for event, n in self.lines.items() if n != lines_each)
        return (
            f"expected {charges_each} charge(s) for each of {len(encounters)} encounters, "
            f"{lines_each} journal lines per charge; found {sum(found.values())} charges; "
            f"{len(short)} encounter(s) short {_listed(short, found)}; "
            f"{len(extra)} with too many {_listed(extra, found)}; "
            f"{len(off)} charge(s) with another number of journal lines {off[:10]}"
        )


def _listed(encounters: list[str], found: dict[str, int]) -> str:
    shown = ", ".join(f"{e} ({found[e]})" for e in encounters[:20])
    return f"[{shown}{', ...' if len(encounters) > 20 else ''}]"


def postings(run_dir: Path, encounter_pattern: str) -> Postings:
    """Read the postings of encounters whose id matches the SQL LIKE ``encounter_pattern``."""
    with closing(sqlite3.connect(run_dir / "billing.db")) as billing:
        rows = billing.execute(
            "SELECT encounter_id, source_event_id FROM billing_charges WHERE encounter_id LIKE ?",
            (encounter_pattern,),
        ).fetchall()
    charges = Counter(encounter for encounter, _ in rows)
    events = sorted({event for _, event in rows})
    lines: Counter[str] = Counter({event: 0 for event in events})
    with closing(sqlite3.connect(run_dir / "erp.db")) as erp:
        for start in range(0, len(events), 500):  # SQLite caps the parameters of one statement
            chunk = events[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for (event,) in erp.execute(
                f"SELECT source_event_id FROM erp_journal_lines WHERE source_event_id IN ({marks})", chunk
            ):
                lines[event] += 1
    return Postings(charges=charges, lines=lines)
