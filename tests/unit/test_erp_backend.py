"""The SQL ERP backend: idempotent journal batches and lines, per-event balance, inventory, totals."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import open_engine
from adapters.convert import inventory_movement_from, journal_line_from
from adapters.erp.backend import SqlErpBackend
from adapters.erp.schema import JournalBatchRow, JournalLineRow
from canonical.errors import InvalidMessageError
from canonical.models import InventoryMovement, JournalLine, MovementType
from proto import erp_pb2


def line(
    line_id: str,
    event: str,
    *,
    debit: int = 0,
    credit: int = 0,
    account: str = "1200",
    cost_centre: str = "ICU",
    currency: str = "USD",
) -> erp_pb2.JournalLine:
    return erp_pb2.JournalLine(
        line_id=line_id,
        journal_date="2025-03-01",
        account=account,
        cost_centre=cost_centre,
        facility="GH",
        debit_cents=debit,
        credit_cents=credit,
        currency=currency,
        encounter_ref="ENC-0123456789abcdef01234567",
        source_event_id=event,
        correlation_id="corr-1",
        description="99213 Office visit",
    )


def pair(event: str, cents: int) -> list[erp_pb2.JournalLine]:
    """Return the balanced receivable/revenue pair of one charge event."""
    return [
        line(f"{event}-dr", event, debit=cents, account="1200"),
        line(f"{event}-cr", event, credit=cents, account="4000"),
    ]


def batch(key: str, *lines: erp_pb2.JournalLine, currency: str = "USD") -> erp_pb2.JournalBatch:
    return erp_pb2.JournalBatch(batch_id=f"batch-{key}", idempotency_key=key, currency=currency, lines=lines)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "erp.db"


@pytest.fixture
def backend(db_path: Path) -> Iterator[SqlErpBackend]:
    opened = SqlErpBackend(f"sqlite:///{db_path}")
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
        debit_cents=12_500,
        encounter_ref="ENC-abc",
        source_event_id="evt-1",
        correlation_id="corr-1",
        description="99213 Office visit",
    )
    message = journal_line_from(canonical)
    assert (message.journal_date, message.debit_cents, message.credit_cents) == ("2025-03-01", 12_500, 0)
    assert (message.currency, message.encounter_ref) == ("USD", "ENC-abc")


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


def test_state_survives_a_restart(db_path: Path) -> None:
    first = SqlErpBackend(f"sqlite:///{db_path}")
    ack = first.post_journal_batch(batch("b-1", *pair("evt-1", 100)))
    first.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second = SqlErpBackend(f"sqlite:///{db_path}")
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
) -> erp_pb2.InventoryMovement:
    return erp_pb2.InventoryMovement(
        movement_id=movement_id,
        movement_type=movement_type,
        item_code=item_code,
        code_system="NDC",
        description="Heparin 5000 unit/mL",
        quantity_milli=quantity_milli,
        unit="mL",
        facility=facility,
        cost_centre=f"{facility}-ICU",
        movement_date=movement_date,
        encounter_ref="ENC-0123456789abcdef01234567",
        source_event_id=f"evt-{movement_id}",
        correlation_id="corr-1",
    )


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
            movement("m-bad", movement_date="03/01/2025"),
            "movement_date '03/01/2025' is not a YYYY-MM-DD date",
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


def test_a_ledger_of_the_previous_release_gains_the_inventory_tables(db_path: Path) -> None:
    engine = open_engine(f"sqlite:///{db_path}")
    JournalBatchRow.__table__.create(engine)
    JournalLineRow.__table__.create(engine)
    engine.dispose()
    upgraded = SqlErpBackend(f"sqlite:///{db_path}")
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
