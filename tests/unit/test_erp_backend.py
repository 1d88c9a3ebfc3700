"""The SQL ERP backend: idempotent journal batches and lines, per-event balance, inventory, totals."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.convert import inventory_movement_from, journal_line_from
from adapters.erp.backend import SqlErpBackend
from adapters.erp.schema import Base, JournalBatchRow, JournalLineRow
from canonical.errors import InvalidMessageError
from canonical.models import InventoryMovement, JournalLine, MovementType
from foundation.sql import open_engine
from proto import erp_pb2
from tests.masterdata import ledger_set


def line(
    line_id: str,
    event: str,
    *,
    debit: int = 0,
    credit: int = 0,
    account: str = "1200",
    cost_centre: str = "ICU",
    currency: str = "USD",
    legal_entity: str = "GH-LE",
) -> erp_pb2.JournalLine:
    return erp_pb2.JournalLine(
        line_id=line_id,
        journal_date="2025-03-01",
        account=account,
        cost_centre=cost_centre,
        facility="GH",
        legal_entity=legal_entity,
        business_unit="GH-ACUTE",
        debit_cents=debit,
        credit_cents=credit,
        currency=currency,
        encounter_ref="ENC-0123456789abcdef01234567",
        source_event_id=event,
        correlation_id="corr-1",
        description="99213",
    )


def pair(event: str, cents: int, legal_entity: str = "GH-LE") -> list[erp_pb2.JournalLine]:
    """Return the balanced receivable/revenue pair of one charge event."""
    return [
        line(f"{event}-dr", event, debit=cents, account="1200", legal_entity=legal_entity),
        line(f"{event}-cr", event, credit=cents, account="4000", legal_entity=legal_entity),
    ]


def batch(key: str, *lines: erp_pb2.JournalLine, currency: str = "USD") -> erp_pb2.JournalBatch:
    return erp_pb2.JournalBatch(batch_id=f"batch-{key}", idempotency_key=key, currency=currency, lines=lines)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "erp.db"


@pytest.fixture
def backend(db_path: Path) -> Iterator[SqlErpBackend]:
    opened = SqlErpBackend(f"sqlite:///{db_path}", ledger_set)
    try:
        yield opened
    finally:
        opened.close()


def test_convert_builds_the_journal_line_message() -> None:
    canonical = JournalLine(
        line_id="l-1",
        journal_date=dt.date(2025, 3, 1),
        account="1200",
        cost_centre="ICU",
        facility="GH",
        legal_entity="GH-LE",
        business_unit="GH-ACUTE",
        debit_cents=12_500,
        encounter_ref="ENC-abc",
        source_event_id="evt-1",
        correlation_id="corr-1",
        description="99213 Office visit",
    )
    message = journal_line_from(canonical)
    assert (message.journal_date, message.debit_cents, message.credit_cents) == ("2025-03-01", 12_500, 0)
    assert (message.currency, message.encounter_ref) == ("USD", "ENC-abc")
    assert (message.legal_entity, message.business_unit) == ("GH-LE", "GH-ACUTE")


def test_a_balanced_batch_is_posted_and_its_replay_returns_the_original_ack(backend: SqlErpBackend) -> None:
    ack = backend.post_journal_batch(batch("b-1", *pair("evt-1", 12_500)))
    assert ack.batch_id == "batch-b-1"
    assert [(a.line_id, a.duplicate) for a in ack.accepted] == [("evt-1-dr", False), ("evt-1-cr", False)]
    assert all(a.posting_id for a in ack.accepted)
    assert list(ack.rejected) == []

    assert backend.post_journal_batch(batch("b-1", *pair("evt-1", 12_500))) == ack
    totals = backend.ledger_totals()
    assert (totals.line_count, totals.batch_count) == (2, 1)


def test_lines_are_idempotent_across_batches(backend: SqlErpBackend) -> None:
    first = backend.post_journal_batch(batch("b-1", *pair("evt-1", 12_500)))
    again = backend.post_journal_batch(batch("b-2", *pair("evt-1", 12_500), *pair("evt-2", 700)))
    assert [(a.line_id, a.duplicate) for a in again.accepted] == [
        ("evt-1-dr", True),
        ("evt-1-cr", True),
        ("evt-2-dr", False),
        ("evt-2-cr", False),
    ]
    assert [a.posting_id for a in again.accepted[:2]] == [a.posting_id for a in first.accepted]
    totals = backend.ledger_totals()
    assert (totals.line_count, totals.batch_count, totals.total_debit_cents) == (4, 2, 13_200)


def test_a_line_repeated_within_a_batch_is_posted_once(backend: SqlErpBackend) -> None:
    debit, credit = pair("evt-1", 500)
    ack = backend.post_journal_batch(batch("b-1", debit, credit, debit))
    assert [(a.line_id, a.duplicate) for a in ack.accepted] == [
        ("evt-1-dr", False),
        ("evt-1-cr", False),
        ("evt-1-dr", True),
    ]
    assert ack.accepted[2].posting_id == ack.accepted[0].posting_id
    assert backend.ledger_totals().line_count == 2


def test_an_unbalanced_event_is_rejected_whole_and_the_rest_commits(backend: SqlErpBackend) -> None:
    unbalanced = [
        line("evt-2-dr", "evt-2", debit=1_000),
        line("evt-2-cr", "evt-2", credit=900, account="4000"),
    ]
    ack = backend.post_journal_batch(batch("b-1", *pair("evt-1", 300), *unbalanced))
    assert [a.line_id for a in ack.accepted] == ["evt-1-dr", "evt-1-cr"]
    assert [r.line_id for r in ack.rejected] == ["evt-2-dr", "evt-2-cr"]
    for rejected in ack.rejected:
        assert "evt-2 does not balance" in rejected.reason
        assert "debit 1000 != credit 900" in rejected.reason
    totals = backend.ledger_totals()
    assert (totals.line_count, totals.total_debit_cents, totals.total_credit_cents) == (2, 300, 300)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (line("evt-1-cr", "evt-1", debit=100, credit=100), "exactly one of debit_cents or credit_cents"),
        (line("evt-1-cr", "evt-1"), "exactly one of debit_cents or credit_cents"),
        (line("evt-1-cr", "evt-1", credit=-100), "cannot be negative"),
        (line("evt-1-cr", "evt-1", credit=100, account=""), "account is empty"),
        (line("evt-1-cr", "evt-1", credit=100, currency="EUR"), "does not match batch currency 'USD'"),
        (
            line("evt-1-cr", "evt-1", credit=100, legal_entity=""),
            "line evt-1-cr: legal_entity is empty: the line was not enriched with master data",
        ),
        (line("evt-1-cr", "evt-1", credit=100, legal_entity="  "), "legal_entity is empty"),
    ],
)
def test_an_invalid_line_takes_its_event_down_with_it(
    backend: SqlErpBackend, bad: erp_pb2.JournalLine, reason: str
) -> None:
    ack = backend.post_journal_batch(batch("b-1", line("evt-1-dr", "evt-1", debit=100), bad))
    assert list(ack.accepted) == []
    reasons = {r.line_id: r.reason for r in ack.rejected}
    assert reason in reasons["evt-1-cr"]
    assert reasons["evt-1-dr"] == "event evt-1: rejected with invalid line evt-1-cr"
    assert backend.ledger_totals().line_count == 0


def test_a_bad_journal_date_or_missing_event_is_rejected(backend: SqlErpBackend) -> None:
    dated = line("evt-1-dr", "evt-1", debit=100)
    dated.journal_date = "01/03/2025"
    orphan = line("x-1", "", debit=100)
    ack = backend.post_journal_batch(batch("b-1", dated, line("evt-1-cr", "evt-1", credit=100), orphan))
    reasons = {r.line_id: r.reason for r in ack.rejected}
    assert "is not a YYYY-MM-DD date" in reasons["evt-1-dr"]
    assert "source_event_id is empty" in reasons["x-1"]
    assert list(ack.accepted) == []


@pytest.mark.parametrize(
    ("field", "request_"),
    [
        ("idempotency_key", erp_pb2.JournalBatch(batch_id="b", currency="USD")),
        ("batch_id", erp_pb2.JournalBatch(idempotency_key="k", currency="USD")),
        ("currency", erp_pb2.JournalBatch(batch_id="b", idempotency_key="k")),
        ("lines[1].line_id", batch("k", line("a", "e", debit=1), line("", "e", credit=1))),
    ],
)
def test_a_malformed_batch_names_the_field(
    backend: SqlErpBackend, field: str, request_: erp_pb2.JournalBatch
) -> None:
    with pytest.raises(InvalidMessageError) as refused:
        backend.post_journal_batch(request_)
    assert refused.value.fault.field == field
    assert backend.ledger_totals() == erp_pb2.LedgerTotals()


def test_a_reused_key_with_another_batch_is_refused(backend: SqlErpBackend) -> None:
    ack = backend.post_journal_batch(batch("b-1", *pair("evt-1", 100)))
    # The same lines in another order are still a replay of the same batch.
    assert backend.post_journal_batch(batch("b-1", *reversed(pair("evt-1", 100)))) == ack
    with pytest.raises(InvalidMessageError) as refused:
        backend.post_journal_batch(batch("b-1", *pair("evt-2", 100)))
    assert refused.value.fault.field == "idempotency_key"


def test_a_rejected_batch_replays_its_rejection_and_its_lines_can_be_resent(backend: SqlErpBackend) -> None:
    unbalanced = [line("evt-1-dr", "evt-1", debit=100), line("evt-1-cr", "evt-1", credit=90)]
    ack = backend.post_journal_batch(batch("b-1", *unbalanced))
    assert len(ack.rejected) == 2
    assert backend.post_journal_batch(batch("b-1", *unbalanced)) == ack
    # Rejected lines were not stored, so corrected lines under a new key post normally.
    fixed = backend.post_journal_batch(batch("b-2", *pair("evt-1", 100)))
    assert [a.duplicate for a in fixed.accepted] == [False, False]
    totals = backend.ledger_totals()
    assert (totals.line_count, totals.batch_count) == (2, 2)


def test_ledger_totals_by_account(backend: SqlErpBackend) -> None:
    backend.post_journal_batch(batch("b-1", *pair("evt-1", 1_000), *pair("evt-2", 250)))
    backend.post_journal_batch(
        batch(
            "b-2",
            line("evt-3-dr", "evt-3", debit=400, account="1200", cost_centre="ER"),
            line("evt-3-cr", "evt-3", credit=400, account="4000", cost_centre="ER"),
        )
    )
    totals = backend.ledger_totals()
    assert (totals.line_count, totals.batch_count) == (6, 2)
    assert totals.total_debit_cents == totals.total_credit_cents == 1_650
    assert [
        (a.account, a.cost_centre, a.debit_cents, a.credit_cents, a.line_count) for a in totals.by_account
    ] == [
        ("1200", "ER", 400, 0, 1),
        ("1200", "ICU", 1_250, 0, 2),
        ("4000", "ER", 0, 400, 1),
        ("4000", "ICU", 0, 1_250, 2),
    ]


def test_an_event_balanced_only_across_legal_entities_is_rejected_whole(backend: SqlErpBackend) -> None:
    # Receivable in one entity's books, revenue in another's: it balances overall, but neither ledger does.
    cross = [
        line("evt-2-dr", "evt-2", debit=1_000, legal_entity="GH-LE"),
        line("evt-2-cr", "evt-2", credit=600, account="4000", legal_entity="GH-LE"),
        line("evt-2-ic", "evt-2", credit=400, account="4000", legal_entity="NH-LE"),
    ]
    ack = backend.post_journal_batch(batch("b-1", *pair("evt-1", 300), *cross))
    assert [a.line_id for a in ack.accepted] == ["evt-1-dr", "evt-1-cr"]
    reasons = {r.line_id: r.reason for r in ack.rejected}
    assert list(reasons) == ["evt-2-dr", "evt-2-cr", "evt-2-ic"]
    assert len(set(reasons.values())) == 1
    reason = reasons["evt-2-dr"]
    assert "event evt-2 does not balance within legal entity GH-LE: debit 1000 != credit 600" in reason
    assert "balances only across legal entities GH-LE, NH-LE" in reason
    totals = backend.ledger_totals()
    assert (totals.line_count, totals.total_debit_cents, totals.total_credit_cents) == (2, 300, 300)
    # The replay of the batch is the same rejection, not a second judgement.
    assert backend.post_journal_batch(batch("b-1", *pair("evt-1", 300), *cross)) == ack


def test_an_event_balanced_within_each_legal_entity_posts(backend: SqlErpBackend) -> None:
    # An inter-company event with its due-to/due-from lines balances in both entities' books.
    both = [
        line("evt-1-dr", "evt-1", debit=1_000, legal_entity="GH-LE"),
        line("evt-1-due-from", "evt-1", credit=1_000, account="1900", legal_entity="GH-LE"),
        line("evt-1-due-to", "evt-1", debit=1_000, account="2900", legal_entity="NH-LE"),
        line("evt-1-cr", "evt-1", credit=1_000, account="4000", legal_entity="NH-LE"),
    ]
    ack = backend.post_journal_batch(batch("b-1", *both))
    assert list(ack.rejected) == []
    assert len(ack.accepted) == 4


def test_ledger_totals_by_legal_entity_account_and_cost_centre(backend: SqlErpBackend) -> None:
    backend.post_journal_batch(
        batch("b-1", *pair("evt-1", 1_000), *pair("evt-2", 250, "NH-LE"), *pair("evt-3", 50, "NH-LE"))
    )
    totals = backend.ledger_totals()
    assert (totals.line_count, totals.total_debit_cents, totals.total_credit_cents) == (6, 1_300, 1_300)
    assert [
        (a.legal_entity, a.account, a.cost_centre, a.debit_cents, a.credit_cents, a.line_count)
        for a in totals.by_account
    ] == [
        ("GH-LE", "1200", "ICU", 1_000, 0, 1),
        ("GH-LE", "4000", "ICU", 0, 1_000, 1),
        ("NH-LE", "1200", "ICU", 300, 0, 2),
        ("NH-LE", "4000", "ICU", 0, 300, 2),
    ]


def test_posted_lines_keep_their_dimensions(backend: SqlErpBackend, db_path: Path) -> None:
    backend.post_journal_batch(batch("b-1", *pair("evt-1", 100)))
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute(
            "SELECT line_id, legal_entity, business_unit FROM erp_journal_lines ORDER BY line_id"
        ).fetchall()
    assert rows == [("evt-1-cr", "GH-LE", "GH-ACUTE"), ("evt-1-dr", "GH-LE", "GH-ACUTE")]


def test_state_survives_a_restart(db_path: Path) -> None:
    first = SqlErpBackend(f"sqlite:///{db_path}", ledger_set)
    ack = first.post_journal_batch(batch("b-1", *pair("evt-1", 100)))
    first.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second = SqlErpBackend(f"sqlite:///{db_path}", ledger_set)
    try:
        assert second.post_journal_batch(batch("b-1", *pair("evt-1", 100))) == ack
        assert second.ledger_totals().line_count == 2
    finally:
        second.close()


def test_logs_name_batches_and_counts(backend: SqlErpBackend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    backend.post_journal_batch(batch("b-1", *pair("evt-1", 100)))
    assert "journal batch batch-b-1 (b-1): 2 lines, 2 accepted (0 duplicate), 0 rejected" in caplog.text


def movement(
    movement_id: str,
    item_code: str = "0409-4888-02",
    quantity_milli: int = 2_000,
    *,
    movement_type: str = "issue",
    facility: str = "GH",
    movement_date: str = "2025-03-01",
    legal_entity: str = "GH-LE",
    inventory_account: str = "1400",
    unit_cost_cents: int | None = None,
) -> erp_pb2.InventoryMovement:
    message = erp_pb2.InventoryMovement(
        movement_id=movement_id,
        movement_type=movement_type,
        item_code=item_code,
        code_system="NDC",
        quantity_milli=quantity_milli,
        unit="mL",
        facility=facility,
        cost_centre=f"{facility}-ICU",
        movement_date=movement_date,
        encounter_ref="ENC-0123456789abcdef01234567",
        source_event_id=f"evt-{movement_id}",
        correlation_id="corr-1",
        legal_entity=legal_entity,
        business_unit=f"{facility}-ACUTE",
        inventory_account=inventory_account,
    )
    if unit_cost_cents is not None:
        message.unit_cost_cents = unit_cost_cents
    return message


def described(message: erp_pb2.InventoryMovement, text: str) -> erp_pb2.InventoryMovement:
    """Return ``message`` with its description set to ``text``."""
    message.description = text
    return message


def stock(key: str, *movements: erp_pb2.InventoryMovement) -> erp_pb2.InventoryMovementBatch:
    return erp_pb2.InventoryMovementBatch(batch_id=f"inv-{key}", idempotency_key=key, movements=movements)


def test_convert_builds_the_inventory_movement_message() -> None:
    eastern = dt.timezone(dt.timedelta(hours=-5))
    canonical = InventoryMovement(
        movement_id="m-1",
        movement_type=MovementType.RETURN,
        item_code="0409-4888-02",
        code_system="NDC",
        quantity_milli=500,
        unit="mL",
        facility="GH",
        cost_centre="GH-ICU",
        legal_entity="GH-LE",
        business_unit="GH-ACUTE",
        inventory_account="1400",
        unit_cost_cents=0,
        # 23:30 local is the next day in UTC; the ERP gets the local day, as journal_date does.
        occurred_at=dt.datetime(2025, 3, 1, 23, 30, tzinfo=eastern),
        encounter_ref="ENC-abc",
        source_event_id="evt-1",
        correlation_id="corr-1",
    )
    message = inventory_movement_from(canonical)
    assert (message.movement_type, message.quantity_milli, message.movement_date) == (
        "return",
        500,
        "2025-03-01",
    )
    assert (message.item_code, message.cost_centre, message.encounter_ref) == (
        "0409-4888-02",
        "GH-ICU",
        "ENC-abc",
    )
    assert (message.legal_entity, message.business_unit, message.inventory_account) == (
        "GH-LE",
        "GH-ACUTE",
        "1400",
    )
    # A standard cost of zero is a cost (a free item), not a missing one.
    assert message.HasField("unit_cost_cents") and message.unit_cost_cents == 0
    uncosted = inventory_movement_from(canonical.model_copy(update={"unit_cost_cents": None}))
    assert not uncosted.HasField("unit_cost_cents")
    costed = inventory_movement_from(canonical.model_copy(update={"unit_cost_cents": 1_234}))
    assert (costed.HasField("unit_cost_cents"), costed.unit_cost_cents) == (True, 1_234)


def test_movements_are_recorded_and_a_batch_replay_returns_the_original_ack(backend: SqlErpBackend) -> None:
    ack = backend.post_inventory_movements(stock("s-1", movement("m-1"), movement("m-2", "SUP-9", 1_000)))
    assert ack.batch_id == "inv-s-1"
    assert [(a.movement_id, a.duplicate) for a in ack.accepted] == [("m-1", False), ("m-2", False)]
    assert all(a.posting_id.startswith("IM-") for a in ack.accepted)
    assert list(ack.rejected) == []
    assert (
        backend.post_inventory_movements(stock("s-1", movement("m-2", "SUP-9", 1_000), movement("m-1")))
        == ack
    )
    totals = backend.inventory_totals()
    assert (totals.movement_count, totals.batch_count) == (2, 1)


def test_movements_are_idempotent_across_and_within_batches(backend: SqlErpBackend) -> None:
    first = backend.post_inventory_movements(stock("s-1", movement("m-1")))
    again = backend.post_inventory_movements(stock("s-2", movement("m-1"), movement("m-3"), movement("m-3")))
    assert [(a.movement_id, a.duplicate) for a in again.accepted] == [
        ("m-1", True),
        ("m-3", False),
        ("m-3", True),
    ]
    assert again.accepted[0].posting_id == first.accepted[0].posting_id
    assert again.accepted[2].posting_id == again.accepted[1].posting_id
    assert backend.inventory_totals().movement_count == 2


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (movement("m-bad", quantity_milli=0), "quantity_milli must be above zero, got 0"),
        (movement("m-bad", quantity_milli=-500), "quantity_milli must be above zero, got -500"),
        (movement("m-bad", movement_type="waste"), "movement_type must be issue or return, got 'waste'"),
        (movement("m-bad", movement_type=""), "movement_type must be issue or return, got ''"),
        (movement("m-bad", item_code=""), "item_code is empty"),
        (movement("m-bad", facility=""), "facility is empty"),
        (
            movement("m-bad", legal_entity=""),
            "legal_entity is empty: the movement was not enriched with master data",
        ),
        (movement("m-bad", unit_cost_cents=-1), "unit_cost_cents cannot be negative, got -1"),
        (
            movement("m-bad", quantity_milli=2**62, unit_cost_cents=10_000),
            "quantity_milli exceeds the bound of 1000000000 thousandths of a unit in absolute value",
        ),
        (
            movement("m-bad", quantity_milli=10**9, unit_cost_cents=10**6),
            "quantity_milli at unit_cost_cents is worth more than 100000000000 cents",
        ),
        (
            movement("m-bad", unit_cost_cents=10**11 + 1),
            "unit_cost_cents exceeds the bound of 100000000000 cents in absolute value",
        ),
        (movement("m-bad", movement_date="03/01/2025"), "movement_date is not a YYYY-MM-DD date"),
        # Master data: every dimension must be a code of the set in force, named by field, never quoted.
        (
            movement("m-bad", legal_entity="Jane Doe"),
            f"legal_entity is not in the legal entities of master data {ledger_set().version}",
        ),
        (
            movement("m-bad", facility="ZZ"),
            f"facility is not in the facilities of master data {ledger_set().version}",
        ),
        (
            movement("m-bad", inventory_account="9999"),
            f"inventory_account is not in the chart of accounts of master data {ledger_set().version}",
        ),
        (
            described(movement("m-bad"), "Heparin for Jane Doe, MRN 12345"),
            "description is not master-data text (empty, or the item master's description of its item): "
            "free text is refused, it could carry patient data",
        ),
    ],
)
def test_a_bad_movement_is_rejected_alone(
    backend: SqlErpBackend, bad: erp_pb2.InventoryMovement, reason: str
) -> None:
    ack = backend.post_inventory_movements(stock("s-1", movement("m-1"), bad))
    assert [a.movement_id for a in ack.accepted] == ["m-1"]
    assert [(r.movement_id, r.reason) for r in ack.rejected] == [("m-bad", f"movement m-bad: {reason}")]
    assert backend.inventory_totals().movement_count == 1
    # Nothing of it was stored, so a corrected copy under a new key is recorded normally.
    fixed = backend.post_inventory_movements(stock("s-2", movement("m-bad")))
    assert [(a.movement_id, a.duplicate) for a in fixed.accepted] == [("m-bad", False)]


@pytest.mark.parametrize(
    ("field", "request_"),
    [
        ("idempotency_key", erp_pb2.InventoryMovementBatch(batch_id="b")),
        ("batch_id", erp_pb2.InventoryMovementBatch(idempotency_key="k")),
        ("movements[1].movement_id", stock("k", movement("a"), movement(""))),
    ],
)
def test_a_malformed_inventory_batch_names_the_field(
    backend: SqlErpBackend, field: str, request_: erp_pb2.InventoryMovementBatch
) -> None:
    with pytest.raises(InvalidMessageError) as refused:
        backend.post_inventory_movements(request_)
    assert refused.value.fault.field == field
    assert backend.inventory_totals() == erp_pb2.InventoryTotals()


def test_a_reused_inventory_key_with_another_batch_is_refused(backend: SqlErpBackend) -> None:
    backend.post_inventory_movements(stock("s-1", movement("m-1")))
    with pytest.raises(InvalidMessageError) as refused:
        backend.post_inventory_movements(stock("s-1", movement("m-2")))
    assert refused.value.fault.field == "idempotency_key"


def test_inventory_totals_by_facility_and_item(backend: SqlErpBackend) -> None:
    assert backend.inventory_totals() == erp_pb2.InventoryTotals()
    backend.post_inventory_movements(
        stock(
            "s-1",
            movement("m-1", "HEP", 2_000),
            movement("m-2", "HEP", 1_500),
            movement("m-3", "HEP", 500, movement_type="return"),
            movement("m-4", "GAUZE", 3_000),
            movement("m-5", "HEP", 250, facility="NH"),
        )
    )
    totals = backend.inventory_totals()
    assert (totals.movement_count, totals.batch_count, totals.issued_milli, totals.returned_milli) == (
        5,
        1,
        6_750,
        500,
    )
    assert [
        (i.facility, i.item_code, i.issued_milli, i.returned_milli, i.net_milli, i.movement_count)
        for i in totals.by_item
    ] == [
        ("GH", "GAUZE", 3_000, 0, 3_000, 1),
        ("GH", "HEP", 3_500, 500, 3_000, 3),
        ("NH", "HEP", 250, 0, 250, 1),
    ]
    # Inventory is not the ledger: no journal line or batch was posted.
    assert backend.ledger_totals() == erp_pb2.LedgerTotals()


def test_inventory_is_valued_at_standard_cost_issued_minus_returned(backend: SqlErpBackend) -> None:
    backend.post_inventory_movements(
        stock(
            "s-1",
            # 2.000 mL at 1.25 a mL: 2.50.
            movement("m-1", "HEP", 2_000, unit_cost_cents=125),
            # 0.500 mL back: 0.625 rounds half up to 0.63 (per movement, when recorded).
            movement("m-2", "HEP", 500, movement_type="return", unit_cost_cents=125),
            # 1.500 at 0.03: 0.045 rounds half up to 0.05; 0.499 at 0.01 rounds down to 0.00.
            movement("m-3", "GAUZE", 1_500, unit_cost_cents=3, inventory_account="1410"),
            movement("m-4", "GAUZE", 499, unit_cost_cents=1, inventory_account="1410"),
            # Not costed: counted in quantities and movements, no value.
            movement("m-5", "SUP-9", 4_000, inventory_account=""),
            # Another entity's stock, costed at zero: a free item.
            movement("m-6", "HEP", 1_000, facility="NH", legal_entity="NH-LE", unit_cost_cents=0),
        )
    )
    totals = backend.inventory_totals()
    assert (totals.movement_count, totals.value_cents) == (6, 250 - 63 + 5 + 0)
    assert [
        (i.facility, i.item_code, i.net_milli, i.value_cents, i.movement_count) for i in totals.by_item
    ] == [
        ("GH", "GAUZE", 1_999, 5, 2),
        ("GH", "HEP", 1_500, 187, 2),
        ("GH", "SUP-9", 4_000, 0, 1),
        ("NH", "HEP", 1_000, 0, 1),
    ]
    assert [
        (a.legal_entity, a.inventory_account, a.value_cents, a.movement_count)
        for a in totals.by_inventory_account
    ] == [
        ("GH-LE", "", 0, 1),
        ("GH-LE", "1400", 187, 2),
        ("GH-LE", "1410", 5, 2),
        ("NH-LE", "1400", 0, 1),
    ]


def test_a_return_above_the_issues_values_negative(backend: SqlErpBackend) -> None:
    backend.post_inventory_movements(
        stock("s-1", movement("m-1", "HEP", 3_000, movement_type="return", unit_cost_cents=1_001))
    )
    totals = backend.inventory_totals()
    # 3.000 at 10.01 = 30.03, returned: stock came back into the account.
    assert (totals.value_cents, totals.by_item[0].value_cents, totals.by_item[0].net_milli) == (
        -3_003,
        -3_003,
        -3_000,
    )


@pytest.mark.parametrize(
    ("quantity_milli", "unit_cost_cents"),
    [(1, 499), (1, 500), (1, 501), (1_500, 3), (333, 3), (2_500, 1), (7_777, 12_345), (1_000, 0)],
)
def test_the_recorded_value_is_the_canonical_value(
    backend: SqlErpBackend, quantity_milli: int, unit_cost_cents: int
) -> None:
    canonical = InventoryMovement(
        movement_id="m-1",
        movement_type=MovementType.ISSUE,
        item_code="HEP",
        quantity_milli=quantity_milli,
        facility="GH",
        legal_entity="GH-LE",
        unit_cost_cents=unit_cost_cents,
        occurred_at=dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC),
        encounter_ref="ENC-abc",
        source_event_id="evt-1",
        correlation_id="corr-1",
    )
    backend.post_inventory_movements(stock("s-1", inventory_movement_from(canonical)))
    assert backend.inventory_totals().value_cents == canonical.value_cents


def test_movements_keep_their_dimensions_and_cost(backend: SqlErpBackend, db_path: Path) -> None:
    backend.post_inventory_movements(
        stock("s-1", movement("m-1", unit_cost_cents=125), movement("m-2", "SUP-9", inventory_account=""))
    )
    with sqlite3.connect(db_path) as raw:
        rows = raw.execute(
            "SELECT movement_id, legal_entity, business_unit, inventory_account, unit_cost_cents, "
            "value_cents FROM erp_inventory_movements ORDER BY movement_id"
        ).fetchall()
    assert rows == [("m-1", "GH-LE", "GH-ACUTE", "1400", 125, 250), ("m-2", "GH-LE", "GH-ACUTE", "", None, 0)]


def test_a_ledger_of_the_previous_release_gains_the_inventory_tables(db_path: Path) -> None:
    engine = open_engine(f"sqlite:///{db_path}")
    for row in (JournalBatchRow, JournalLineRow):
        Base.metadata.tables[row.__tablename__].create(engine)
    engine.dispose()
    upgraded = SqlErpBackend(f"sqlite:///{db_path}", ledger_set)
    try:
        assert upgraded.post_inventory_movements(stock("s-1", movement("m-1"))).accepted[0].duplicate is False
        assert upgraded.inventory_totals().movement_count == 1
    finally:
        upgraded.close()


def test_inventory_logs_name_batches_and_counts(
    backend: SqlErpBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    backend.post_inventory_movements(stock("s-1", movement("m-1"), movement("m-2", quantity_milli=0)))
    assert "inventory batch inv-s-1 (s-1): 2 movements, 1 accepted (0 duplicate), 1 rejected" in caplog.text


# The ERP tables as the release before master-data enrichment created them, with a line pair and a
# movement posted then.
_ERP_BEFORE_DIMENSIONS = (
    """CREATE TABLE erp_journal_batches (
        idempotency_key VARCHAR NOT NULL, batch_id VARCHAR NOT NULL, currency VARCHAR NOT NULL,
        line_count BIGINT NOT NULL, accepted_count BIGINT NOT NULL, rejected_count BIGINT NOT NULL,
        request_digest VARCHAR NOT NULL, ack BLOB NOT NULL, received_at DATETIME NOT NULL,
        PRIMARY KEY (idempotency_key))""",
    """CREATE TABLE erp_journal_lines (
        line_id VARCHAR NOT NULL, posting_id VARCHAR NOT NULL, batch_key VARCHAR NOT NULL,
        journal_date DATE NOT NULL, account VARCHAR NOT NULL, cost_centre VARCHAR NOT NULL,
        facility VARCHAR NOT NULL, debit_cents BIGINT NOT NULL, credit_cents BIGINT NOT NULL,
        currency VARCHAR NOT NULL, encounter_ref VARCHAR NOT NULL, source_event_id VARCHAR NOT NULL,
        correlation_id VARCHAR NOT NULL, description VARCHAR NOT NULL, posted_at DATETIME NOT NULL,
        PRIMARY KEY (line_id), UNIQUE (posting_id),
        FOREIGN KEY(batch_key) REFERENCES erp_journal_batches (idempotency_key))""",
    """CREATE TABLE erp_inventory_batches (
        idempotency_key VARCHAR NOT NULL, batch_id VARCHAR NOT NULL, movement_count BIGINT NOT NULL,
        accepted_count BIGINT NOT NULL, rejected_count BIGINT NOT NULL, request_digest VARCHAR NOT NULL,
        ack BLOB NOT NULL, received_at DATETIME NOT NULL, PRIMARY KEY (idempotency_key))""",
    """CREATE TABLE erp_inventory_movements (
        movement_id VARCHAR NOT NULL, posting_id VARCHAR NOT NULL, batch_key VARCHAR NOT NULL,
        movement_type VARCHAR NOT NULL, item_code VARCHAR NOT NULL, code_system VARCHAR NOT NULL,
        description VARCHAR NOT NULL, quantity_milli BIGINT NOT NULL, unit VARCHAR NOT NULL,
        facility VARCHAR NOT NULL, cost_centre VARCHAR NOT NULL, movement_date DATE NOT NULL,
        encounter_ref VARCHAR NOT NULL, source_event_id VARCHAR NOT NULL, correlation_id VARCHAR NOT NULL,
        posted_at DATETIME NOT NULL, PRIMARY KEY (movement_id), UNIQUE (posting_id),
        FOREIGN KEY(batch_key) REFERENCES erp_inventory_batches (idempotency_key))""",
    """INSERT INTO erp_journal_batches VALUES ('b-old', 'batch-b-old', 'USD', 2, 2, 0, 'digest', X'',
        '2025-03-01 09:00:00')""",
    """INSERT INTO erp_journal_lines VALUES ('evt-0-dr', 'GL-old-dr', 'b-old', '2025-03-01', '1200', 'ICU',
        'GH', 700, 0, 'USD', 'ENC-1', 'evt-0', 'corr-0', '', '2025-03-01 09:00:00')""",
    """INSERT INTO erp_journal_lines VALUES ('evt-0-cr', 'GL-old-cr', 'b-old', '2025-03-01', '4000', 'ICU',
        'GH', 0, 700, 'USD', 'ENC-1', 'evt-0', 'corr-0', '', '2025-03-01 09:00:00')""",
    """INSERT INTO erp_inventory_batches VALUES ('s-old', 'inv-s-old', 1, 1, 0, 'digest', X'',
        '2025-03-01 09:00:00')""",
    """INSERT INTO erp_inventory_movements VALUES ('m-old', 'IM-old', 's-old', 'issue', 'HEP', 'NDC', '',
        2000, 'mL', 'GH', 'GH-ICU', '2025-03-01', 'ENC-1', 'evt-m-old', 'corr-0', '2025-03-01 09:00:00')""",
)


def test_a_ledger_without_dimensions_opens_and_gains_the_new_columns(db_path: Path) -> None:
    with sqlite3.connect(db_path) as raw:
        for statement in _ERP_BEFORE_DIMENSIONS:
            raw.execute(statement)
    upgraded = SqlErpBackend(f"sqlite:///{db_path}", ledger_set)
    try:
        # What was posted before keeps its place, under an empty legal entity, and is not costed.
        ledger = upgraded.ledger_totals()
        assert [(a.legal_entity, a.account, a.line_count) for a in ledger.by_account] == [
            ("", "1200", 1),
            ("", "4000", 1),
        ]
        inventory = upgraded.inventory_totals()
        assert (inventory.movement_count, inventory.issued_milli, inventory.value_cents) == (1, 2_000, 0)
        assert [
            (a.legal_entity, a.inventory_account, a.movement_count) for a in inventory.by_inventory_account
        ] == [("", "", 1)]
        # The old postings are still the postings of record, and new ones carry their dimensions.
        replay = upgraded.post_journal_batch(batch("b-1", *pair("evt-0", 700), *pair("evt-1", 100)))
        assert [(a.line_id, a.posting_id, a.duplicate) for a in replay.accepted[:2]] == [
            ("evt-0-dr", "GL-old-dr", True),
            ("evt-0-cr", "GL-old-cr", True),
        ]
        moved = upgraded.post_inventory_movements(
            stock("s-1", movement("m-old"), movement("m-1", unit_cost_cents=100))
        )
        assert [(a.posting_id, a.duplicate) for a in moved.accepted] == [
            ("IM-old", True),
            (moved.accepted[1].posting_id, False),
        ]
        assert [(a.legal_entity, a.account, a.line_count) for a in upgraded.ledger_totals().by_account] == [
            ("", "1200", 1),
            ("", "4000", 1),
            ("GH-LE", "1200", 1),
            ("GH-LE", "4000", 1),
        ]
        assert upgraded.inventory_totals().value_cents == 200  # 2.000 units at 1.00
    finally:
        upgraded.close()
    # Opening it again finds nothing left to add.
    SqlErpBackend(f"sqlite:///{db_path}", ledger_set).close()
    with sqlite3.connect(db_path) as raw:
        columns = {row[1] for row in raw.execute("PRAGMA table_info(erp_inventory_movements)")}
    assert {"legal_entity", "business_unit", "inventory_account", "unit_cost_cents", "value_cents"} <= columns
