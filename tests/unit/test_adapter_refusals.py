"""What the adapters' backends refuse (issue 13): amounts beyond the bounds, credits out of nothing, reused
idempotency keys, ERP lines outside master data or with free text; and totals that never overflow.

Each refusal names the field and the problem and never quotes a value that could be patient data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, select

from adapters import KEY_REUSED_RULE
from adapters.billing.backend import SqlBillingBackend
from adapters.bounds import MAX_CALL_CENTS, MAX_ITEMS_PER_CALL, MAX_LINE_CENTS
from adapters.erp.backend import SqlErpBackend
from adapters.erp.masterdata import journal_text
from canonical.errors import InvalidMessageError
from foundation.sql import INT64_MAX, INT64_MIN, int64, joined, open_engine, total
from proto import billing_pb2
from tests.masterdata import ledger_set
from tests.unit.test_billing_backend import charge, encounter, post, upsert
from tests.unit.test_erp_backend import batch, movement, pair, stock

ChargeStatus = billing_pb2.ChargeResult.Status
PHI = "Jane Doe MRN 4455"  # what an outsider put in free text and codes; no refusal may echo it


@pytest.fixture
def billing(tmp_path: Path) -> Iterator[SqlBillingBackend]:
    opened = SqlBillingBackend(f"sqlite:///{tmp_path / 'billing.db'}")
    try:
        opened.upsert_account(upsert("k-1"))
        yield opened
    finally:
        opened.close()


@pytest.fixture
def erp(tmp_path: Path) -> Iterator[SqlErpBackend]:
    opened = SqlErpBackend(f"sqlite:///{tmp_path / 'erp.db'}", ledger_set)
    try:
        yield opened
    finally:
        opened.close()


def refused(work: object) -> InvalidMessageError:
    """Return the refusal ``work()`` raised."""
    assert callable(work)
    with pytest.raises(InvalidMessageError) as caught:
        work()
    return caught.value


# -- sums -----------------------------------------------------------------------------------------------


def test_total_is_exact_past_int64_and_int64_clamps(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'sums.db'}")
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("v", BigInteger))
    table.metadata.create_all(engine)
    values = [INT64_MAX, INT64_MAX, -5, INT64_MIN, 123_456_789_012, 0]
    with engine.begin() as connection:
        connection.execute(table.insert(), [{"v": v} for v in values])
        high, low = connection.execute(select(*total(table.c.v))).one()
        empty = connection.execute(select(*total(table.c.v)).where(table.c.v > INT64_MAX - 1)).one()
    assert joined(high, low) == sum(values)  # beyond int64: SQLite's SUM would raise "integer overflow"
    assert joined(*empty) == 2 * INT64_MAX
    assert (int64(2**70, "t"), int64(-(2**70), "t"), int64(-7, "t")) == (INT64_MAX, INT64_MIN, -7)
    engine.dispose()


# -- billing: bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("amount_cents", MAX_LINE_CENTS + 1, f"exceeds the bound of {MAX_LINE_CENTS} cents"),
        ("amount_cents", -(2**63) + 1, f"exceeds the bound of {MAX_LINE_CENTS} cents"),
        ("unit_amount_cents", 2**63 - 1, f"exceeds the bound of {MAX_LINE_CENTS} cents"),
        ("unit_cost_cents", 2**62, f"exceeds the bound of {MAX_LINE_CENTS} cents"),
        ("quantity", 10**6 + 1, "exceeds the bound of 1000000 units"),
    ],
)
def test_a_charge_beyond_the_line_bounds_is_refused_naming_the_field(
    billing: SqlBillingBackend, name: str, value: int, reason: str
) -> None:
    bad = charge("c-2")
    if name == "amount_cents" and value < 0:
        bad.transaction_type = "CD"
    setattr(bad, name, value)
    error = refused(lambda: billing.post_charges(post("p-1", charge("c-1"), bad)))
    assert error.fault.field == f"charges[1].{name}"
    assert reason in error.fault.reason and str(value) not in error.fault.reason
    assert billing.totals().charge_count == 0  # refused whole: the valid charge was not stored either


@pytest.mark.parametrize("seconds", [2**62, -(2**62), 253_402_300_800])
def test_a_timestamp_outside_its_range_is_refused_naming_the_field(
    billing: SqlBillingBackend, seconds: int
) -> None:
    """Found by the fuzz suite: ToDatetime raised on such values and the call answered INTERNAL."""
    billing.upsert_account(upsert("k-1"))
    bad = charge("c-2")
    bad.service_at.seconds = seconds
    error = refused(lambda: billing.post_charges(post("p-1", charge("c-1"), bad)))
    assert (error.fault.field, error.fault.reason) == (
        "charges[1].service_at",
        "is outside the Timestamp range (years 0001 to 9999)",
    )
    coding = billing_pb2.UpdateCodingRequest(idempotency_key="d-1", encounter_id="GH:V100")
    coding.coded_at.seconds = seconds
    assert refused(lambda: billing.update_coding(coding)).fault.field == "coded_at"
    assert billing.totals().charge_count == 0


def test_a_line_at_the_bound_is_accepted(billing: SqlBillingBackend) -> None:
    at_bound = charge("c-1", MAX_LINE_CENTS)
    at_bound.unit_amount_cents = MAX_LINE_CENTS
    [result] = billing.post_charges(post("p-1", at_bound)).results
    assert result.status == ChargeStatus.ACCEPTED


def test_a_call_beyond_its_bounds_is_refused(billing: SqlBillingBackend) -> None:
    lines = [charge(f"c-{n}", MAX_LINE_CENTS) for n in range(MAX_CALL_CENTS // MAX_LINE_CENTS + 1)]
    error = refused(lambda: billing.post_charges(post("p-1", *lines)))
    assert (error.fault.field, error.fault.reason) == (
        "charges",
        f"amount_cents summed exceeds the bound of {MAX_CALL_CENTS} cents per call in absolute value",
    )
    many = [charge(f"c-{n}", 100) for n in range(MAX_ITEMS_PER_CALL + 1)]
    error = refused(lambda: billing.post_charges(post("p-2", *many)))
    assert (error.fault.field, error.fault.reason) == (
        "charges",
        f"holds more than {MAX_ITEMS_PER_CALL} charges",
    )
    assert billing.totals().charge_count == 0


# -- billing: credits need an original ----------------------------------------------------------------


def test_a_credit_without_an_original_is_held_out_of_the_books(billing: SqlBillingBackend) -> None:
    response = billing.post_charges(post("p-1", charge("c-1", -123_456_789)))
    [result] = response.results
    assert (result.status, result.posting_id) == (ChargeStatus.HELD, "")
    assert result.reason == (
        "charges[0].amount_cents: a credit needs an original: the account's net for charge code 99213 is "
        "0 cents, less than the 123456789 cents it takes back; held until the account's charges of that "
        "code cover it"
    )
    assert "GH:V100" not in result.reason  # the visit number is an identifier
    totals = billing.totals()
    assert (totals.charge_count, totals.amount_cents, totals.reversal_count) == (0, 0, 0)
    assert (totals.held_credit_count, totals.held_credit_cents) == (1, -123_456_789)
    # A replay is held again, not twice; a charge of another code releases nothing.
    assert (
        billing.post_charges(post("p-1", charge("c-1", -123_456_789))).results[0].status == ChargeStatus.HELD
    )
    other = charge("c-2", 200_000_000)
    other.charge_code = "99214"
    assert list(billing.post_charges(post("p-2", other)).released) == []
    assert billing.totals().held_credit_count == 1


def test_a_held_credit_is_posted_when_its_original_comes(billing: SqlBillingBackend) -> None:
    # The pipeline keeps no order across messages: a credit may come before the charge it takes back.
    held = billing.post_charges(post("p-1", charge("c-2", -12_500)))
    assert held.results[0].status == ChargeStatus.HELD
    original = billing.post_charges(post("p-2", charge("c-1", 10_000)))
    assert list(original.released) == []  # 10,000 does not cover 12,500
    covering = billing.post_charges(post("p-3", charge("c-3", 2_500)))
    [released] = covering.released
    assert (released.charge_id, released.status) == ("c-2", ChargeStatus.ACCEPTED)
    totals = billing.totals()
    assert (totals.charge_count, totals.amount_cents, totals.reversal_count) == (3, 0, 1)
    assert (totals.held_credit_count, totals.held_credit_cents) == (0, 0)
    # Its replay now finds the posting the release made.
    again = billing.post_charges(post("p-1", charge("c-2", -12_500))).results[0]
    assert (again.status, again.posting_id) == (ChargeStatus.DUPLICATE, released.posting_id)


def test_a_reversal_takes_back_at_most_what_was_charged_for_its_code(billing: SqlBillingBackend) -> None:
    first = billing.post_charges(post("p-1", charge("c-1", 10_000)))
    assert first.results[0].status == ChargeStatus.ACCEPTED
    reversal = charge("c-2", 6_000)
    reversal.amount_cents = -6_000  # a CG with a negative amount
    other_code = charge("c-3", -1_000)
    other_code.charge_code = "99214"
    too_much = charge("c-5", 501)
    too_much.amount_cents = -501  # a CG reversal too
    response = billing.post_charges(
        post("p-2", reversal, charge("c-4", -4_000), too_much, other_code, charge("c-6", 500))
    )
    assert [(r.charge_id, ChargeStatus.Name(r.status)) for r in response.results] == [
        ("c-2", "ACCEPTED"),
        ("c-4", "ACCEPTED"),  # 10,000 + 500 (c-6: every charge of the call counts) - 6,000 - 4,000
        ("c-5", "HELD"),  # 501 > the 500 left
        ("c-3", "HELD"),  # nothing was charged for 99214
        ("c-6", "ACCEPTED"),
    ]
    assert response.results[1].reason == ""
    assert response.results[2].reason.startswith("charges[2].amount_cents: a reversal needs an original")
    assert response.results[3].reason.startswith("charges[3].amount_cents: a credit needs an original")
    totals = billing.totals()
    assert (totals.charge_count, totals.amount_cents, totals.reversal_count) == (4, 500, 2)
    assert (totals.held_credit_count, totals.held_credit_cents) == (2, -1_501)


# -- idempotency keys ---------------------------------------------------------------------------------


def test_a_reused_charges_key_is_refused_and_a_replay_answers_the_original(
    billing: SqlBillingBackend,
) -> None:
    original = billing.post_charges(post("p-1", charge("c-1"), charge("c-2", 700)))
    error = refused(lambda: billing.post_charges(post("p-1", charge("c-1"), charge("c-2", 800))))
    assert (error.fault.rule, error.fault.field) == (KEY_REUSED_RULE, "idempotency_key")
    assert error.fault.reason == "p-1 was already used for another set of charges"
    error = refused(lambda: billing.post_charges(post("p-1", charge("c-1"))))
    assert error.fault.rule == KEY_REUSED_RULE
    # The same charges, in another order: a replay, answered DUPLICATE with the original postings.
    replay = billing.post_charges(post("p-1", charge("c-2", 700), charge("c-1")))
    assert [(r.charge_id, r.status, r.posting_id) for r in replay.results] == [
        ("c-2", ChargeStatus.DUPLICATE, original.results[1].posting_id),
        ("c-1", ChargeStatus.DUPLICATE, original.results[0].posting_id),
    ]
    assert (billing.totals().charge_count, billing.totals().amount_cents) == (2, 13_200)


def test_a_replayed_key_posts_a_charge_refused_before_for_want_of_its_account(
    billing: SqlBillingBackend,
) -> None:
    waiting = charge("c-9", encounter_id="GH:V999")
    assert billing.post_charges(post("p-1", waiting)).results[0].status == ChargeStatus.REJECTED
    billing.upsert_account(upsert("k-3", enc=encounter("GH:V999")))
    assert billing.post_charges(post("p-1", waiting)).results[0].status == ChargeStatus.ACCEPTED


def test_reused_keys_of_every_keyed_write_are_refused_as_reused(
    billing: SqlBillingBackend, erp: SqlErpBackend
) -> None:
    error = refused(lambda: billing.upsert_account(upsert("k-1", enc=encounter("GH:V2"))))
    assert (error.fault.rule, error.fault.reason) == (
        KEY_REUSED_RULE,
        "k-1 was already used for another account or another event",
    )
    erp.post_journal_batch(batch("b-1", *pair("evt-1", 100)))
    error = refused(lambda: erp.post_journal_batch(batch("b-1", *pair("evt-1", 200))))
    assert (error.fault.rule, error.fault.reason) == (
        KEY_REUSED_RULE,
        "b-1 was already used for another journal batch",
    )
    erp.post_inventory_movements(stock("s-1", movement("m-1")))
    error = refused(lambda: erp.post_inventory_movements(stock("s-1", movement("m-2"))))
    assert (error.fault.rule, error.fault.reason) == (
        KEY_REUSED_RULE,
        "s-1 was already used for another inventory batch",
    )


def test_an_older_billing_database_gains_the_charge_keys_table(tmp_path: Path) -> None:
    path = tmp_path / "billing.db"
    SqlBillingBackend(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as raw:
        raw.execute("DROP TABLE billing_charge_batches")
    reopened = SqlBillingBackend(f"sqlite:///{path}")
    try:
        reopened.upsert_account(upsert("k-1"))
        assert reopened.post_charges(post("p-1", charge("c-1"))).results[0].status == ChargeStatus.ACCEPTED
        assert (
            refused(lambda: reopened.post_charges(post("p-1", charge("c-2")))).fault.rule == KEY_REUSED_RULE
        )
    finally:
        reopened.close()


# -- totals never overflow --------------------------------------------------------------------------


def test_billing_totals_answer_after_int64_max_rows(billing: SqlBillingBackend, tmp_path: Path) -> None:
    billing.post_charges(post("p-1", charge("c-1")))
    with sqlite3.connect(tmp_path / "billing.db") as raw:
        # Rows as a backend without bounds stored them: two at the int64 maximum.
        for charge_id in ("x-1", "x-2"):
            raw.execute(
                "INSERT INTO billing_charges SELECT ?, 'BP-' || ?, encounter_id, transaction_id, "
                "transaction_type, charge_code, code_system, description, quantity, unit_amount_cents, ?, "
                "currency, service_at, facility, department, source_event_id, correlation_id, request_key, "
                "posted_at, procedure_code, ndc_code, 1, filler_order_number, unit_cost_cents "
                "FROM billing_charges WHERE charge_id = 'c-1'",
                (charge_id, charge_id, INT64_MAX),
            )
    totals = billing.totals()
    assert (totals.charge_count, totals.amount_cents, totals.supply_amount_cents) == (3, INT64_MAX, INT64_MAX)
    assert [(f.facility, f.charge_count, f.amount_cents) for f in totals.by_facility] == [
        ("GH", 3, INT64_MAX)
    ]
    # A credit against them is judged on the exact net, not an overflowed one.
    assert (
        billing.post_charges(post("p-2", charge("c-2", -12_500))).results[0].status == ChargeStatus.ACCEPTED
    )


def test_erp_totals_answer_after_int64_max_rows(erp: SqlErpBackend, tmp_path: Path) -> None:
    erp.post_journal_batch(batch("b-1", *pair("evt-1", 100)))
    erp.post_inventory_movements(stock("s-1", movement("m-1", unit_cost_cents=125)))
    with sqlite3.connect(tmp_path / "erp.db") as raw:
        for suffix in ("a", "b"):
            raw.execute(
                "INSERT INTO erp_journal_lines SELECT line_id || ?, posting_id || ?, batch_key, "
                "journal_date, account, cost_centre, facility, ?, ?, currency, encounter_ref, "
                "source_event_id, correlation_id, description, posted_at, legal_entity, business_unit "
                "FROM erp_journal_lines WHERE line_id = 'evt-1-dr'",
                (suffix, suffix, INT64_MAX, INT64_MAX),
            )
            raw.execute(
                "INSERT INTO erp_inventory_movements SELECT movement_id || ?, posting_id || ?, batch_key, "
                "movement_type, item_code, code_system, description, ?, unit, facility, cost_centre, "
                "movement_date, encounter_ref, source_event_id, correlation_id, posted_at, legal_entity, "
                "business_unit, inventory_account, unit_cost_cents, ? FROM erp_inventory_movements "
                "WHERE movement_id = 'm-1'",
                (suffix, suffix, INT64_MAX, INT64_MAX),
            )
    ledger = erp.ledger_totals()
    assert (ledger.line_count, ledger.total_debit_cents, ledger.total_credit_cents) == (
        4,
        INT64_MAX,
        INT64_MAX,
    )
    assert {(a.account, a.debit_cents) for a in ledger.by_account} == {("1200", INT64_MAX), ("4000", 0)}
    inventory = erp.inventory_totals()
    assert (inventory.movement_count, inventory.issued_milli, inventory.value_cents) == (
        3,
        INT64_MAX,
        INT64_MAX,
    )
    [item] = inventory.by_item
    assert (item.issued_milli, item.net_milli, item.value_cents) == (INT64_MAX, INT64_MAX, INT64_MAX)


# -- ERP: bounds, master data, free text ------------------------------------------------------------


def test_erp_lines_beyond_the_bounds_are_rejected_and_a_call_beyond_its_bound_refused(
    erp: SqlErpBackend,
) -> None:
    huge = pair("evt-1", MAX_LINE_CENTS + 1)
    ack = erp.post_journal_batch(batch("b-1", *huge, *pair("evt-2", 100)))
    assert [a.line_id for a in ack.accepted] == ["evt-2-dr", "evt-2-cr"]
    reasons = {r.line_id: r.reason for r in ack.rejected}
    assert (
        reasons["evt-1-dr"]
        == f"line evt-1-dr: debit_cents exceeds the bound of {MAX_LINE_CENTS} cents in absolute value"
    )
    events = [
        line for n in range(MAX_CALL_CENTS // MAX_LINE_CENTS + 1) for line in pair(f"e-{n}", MAX_LINE_CENTS)
    ]
    error = refused(lambda: erp.post_journal_batch(batch("b-2", *events)))
    assert error.fault.field == "lines" and "per call" in error.fault.reason


@pytest.mark.parametrize(
    ("field", "value", "domain"),
    [
        ("account", PHI, "chart of accounts"),
        ("legal_entity", PHI, "legal entities"),
        ("business_unit", PHI, "business units"),
        ("cost_centre", PHI, "cost centres"),
        ("facility", PHI, "facilities"),
        ("account", "9999", "chart of accounts"),
    ],
)
def test_a_line_outside_master_data_is_rejected_naming_the_field(
    erp: SqlErpBackend, field: str, value: str, domain: str
) -> None:
    debit, credit = pair("evt-1", 500)
    setattr(credit, field, value)
    ack = erp.post_journal_batch(batch("b-1", debit, credit))
    assert list(ack.accepted) == []
    reasons = {r.line_id: r.reason for r in ack.rejected}
    assert (
        reasons["evt-1-cr"]
        == f"line evt-1-cr: {field} is not in the {domain} of master data {ledger_set().version}"
    )
    assert reasons["evt-1-dr"] == "event evt-1: rejected with invalid line evt-1-cr"
    assert all(value not in reason for reason in reasons.values())
    assert erp.ledger_totals().line_count == 0


def test_free_text_is_refused_and_the_erp_writes_master_data_text(erp: SqlErpBackend, tmp_path: Path) -> None:
    debit, credit = pair("evt-1", 500)
    debit.description = f"99213 {PHI}"
    ack = erp.post_journal_batch(batch("b-1", debit, credit))
    [rejected, _] = ack.rejected
    assert rejected.reason == (
        "line evt-1-dr: description is not master-data text (a charge code, alone or with its master-data "
        "description): free text is refused, it could carry patient data"
    )
    assert PHI not in rejected.reason
    debit.description = PHI  # not even starting with a code
    assert len(erp.post_journal_batch(batch("b-2", debit, credit)).rejected) == 2

    master = "99213 Office visit, established patient, low complexity"
    debit.description, credit.description = "99213", master
    ack = erp.post_journal_batch(batch("b-3", debit, credit))
    assert len(ack.accepted) == 2
    with sqlite3.connect(tmp_path / "erp.db") as raw:
        stored = {row[0] for row in raw.execute("SELECT description FROM erp_journal_lines")}
    assert stored == {master}
    assert journal_text("", ledger_set()) == "" and journal_text(master[:20], ledger_set()) is None


def test_a_movement_stores_its_item_master_description(erp: SqlErpBackend, tmp_path: Path) -> None:
    ack = erp.post_inventory_movements(stock("s-1", movement("m-1")))
    assert len(ack.accepted) == 1
    with sqlite3.connect(tmp_path / "erp.db") as raw:
        [(text,)] = raw.execute("SELECT description FROM erp_inventory_movements").fetchall()
    assert text == "Heparin 5000 unit/mL"
