"""Canonical models: frozen, no extra fields, aware datetimes, PHI tagged, journal lines one-sided."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from canonical.models import Charge, JournalLine, Patient, TransactionType
from canonical.phi import MASK, masked, phi_fields

NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


def _charge(**overrides: object) -> Charge:
    fields: dict[str, object] = {
        "charge_id": "c1",
        "encounter_id": "NMH:V1",
        "transaction_type": TransactionType.CHARGE,
        "charge_code": "99283",
        "amount_cents": 100,
        "service_at": NOW,
        "facility": "NMH",
    }
    return Charge.model_validate(fields | overrides)


def test_models_are_frozen_and_closed() -> None:
    charge = _charge()
    with pytest.raises(ValidationError):
        charge.amount_cents = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        _charge(unexpected="x")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError):
        _charge(service_at=dt.datetime(2026, 11, 20, 9, 0))


def test_credit_sign_is_enforced() -> None:
    with pytest.raises(ValidationError):
        _charge(transaction_type=TransactionType.CREDIT, amount_cents=100)
    assert _charge(transaction_type=TransactionType.CREDIT, amount_cents=-100).amount_cents == -100


def test_patient_phi_fields_are_tagged_and_masked() -> None:
    assert {"mrn", "family_name", "given_name", "birth_date", "address", "phone"} <= phi_fields(Patient)
    assert "sex" not in phi_fields(Patient)
    patient = Patient(mrn="M1", family_name="Doe", given_name="Jane", birth_date=dt.date(1980, 1, 1), sex="F")
    shown = masked(patient)
    assert shown["mrn"] == MASK and shown["family_name"] == MASK and shown["birth_date"] == MASK
    assert shown["sex"] == "F"
    assert "Doe" not in str(shown)


def test_journal_line_needs_exactly_one_side() -> None:
    common = {
        "line_id": "l1",
        "journal_date": dt.date(2026, 11, 20),
        "account": "4000",
        "encounter_ref": "ENC-x",
        "source_event_id": "e1",
        "correlation_id": "c1",
    }
    with pytest.raises(ValidationError):
        JournalLine.model_validate(common | {"debit_cents": 5, "credit_cents": 5})
    with pytest.raises(ValidationError):
        JournalLine.model_validate(common | {"debit_cents": 0, "credit_cents": 0})
    assert JournalLine.model_validate(common | {"debit_cents": 5}).debit_cents == 5
