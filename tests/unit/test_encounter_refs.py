"""Encounter references name their key, and resolve back to encounters with the key they name, earlier keys
included (canonical/ids.py, cluster/refs.py, `hcsync refs resolve`)."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from adapters.billing.backend import SqlBillingBackend
from adapters.convert import account_from
from canonical import ids
from canonical.envelope import ErpDimensions
from canonical.ids import EncounterRefError, encounter_ref, parse_encounter_ref, resolve_encounter_ref
from canonical.models import Charge, Encounter, Patient, PatientClass, TransactionType
from cluster.cli.refs import refs_app
from foundation.audit import AuditLog
from foundation.settings import get_settings
from proto import billing_pb2
from streams.posting import PostingRules

OLD_KEY, NEW_KEY = secrets.token_bytes(32), secrets.token_bytes(32)
KEYS = {"k2": NEW_KEY, "k1": OLD_KEY}
ENCOUNTERS = [f"NMH:V{n}" for n in range(1, 200)]


def _legacy_ref(encounter_id: str, key: bytes) -> str:
    """A reference as written before references named their key: ENC-<24 hex>."""
    return "ENC-" + ids.encounter_ref(encounter_id, key).rpartition("-")[2]


def test_a_reference_names_its_key_and_hides_the_encounter() -> None:
    ref = encounter_ref("NMH:V42", NEW_KEY, "k2")
    assert re.fullmatch(r"ENC-k2-[0-9a-f]{24}", ref) and "V42" not in ref
    assert ref == encounter_ref("NMH:V42", NEW_KEY, "k2")  # deterministic
    assert ref != encounter_ref("NMH:V42", OLD_KEY, "k2")
    assert ref.rpartition("-")[2] == encounter_ref("NMH:V42", NEW_KEY, "k9").rpartition("-")[2]
    assert parse_encounter_ref(ref) == ("k2", ref.rpartition("-")[2])
    legacy = _legacy_ref("NMH:V42", OLD_KEY)
    assert parse_encounter_ref(legacy) == (None, legacy[4:])


@pytest.mark.parametrize(
    "bad", ["", "ENC-", "ENC-k1-xyz", "ENC-K1-" + "0" * 24, "NMH:V42", "ENC-k1-" + "0" * 25]
)
def test_what_is_not_a_reference_is_refused(bad: str) -> None:
    with pytest.raises(EncounterRefError, match="is not an encounter reference"):
        parse_encounter_ref(bad)


def test_references_made_with_any_held_key_resolve() -> None:
    new = encounter_ref("NMH:V150", NEW_KEY, "k2")
    old = encounter_ref("NMH:V7", OLD_KEY, "k1")  # made before the rotation
    assert resolve_encounter_ref(new, ENCOUNTERS, KEYS) == "NMH:V150"
    assert resolve_encounter_ref(old, ENCOUNTERS, KEYS) == "NMH:V7"
    # Made before references named keys: tried with every key held.
    assert resolve_encounter_ref(_legacy_ref("NMH:V99", OLD_KEY), ENCOUNTERS, KEYS) == "NMH:V99"
    # The key the reference names, not another: an old reference does not resolve with the new key.
    assert resolve_encounter_ref(f"ENC-k2-{old.rpartition('-')[2]}", ENCOUNTERS, KEYS) is None
    assert resolve_encounter_ref(encounter_ref("NMH:V999", NEW_KEY, "k2"), ENCOUNTERS, KEYS) is None
    with pytest.raises(EncounterRefError, match="key id 'k0', which is neither HCSYNC_ENCOUNTER_REF_KEY_ID"):
        resolve_encounter_ref(encounter_ref("NMH:V1", OLD_KEY, "k0"), ENCOUNTERS, KEYS)


def test_posting_ids_do_not_depend_on_the_reference_key_or_its_id() -> None:
    charge = Charge(
        charge_id="evt-1",
        encounter_id="NMH:V42",
        transaction_type=TransactionType.CHARGE,
        charge_code="99283",
        amount_cents=45_000,
        service_at=dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC),
        facility="NMH",
    )
    dims = ErpDimensions(
        masterdata_version="v1",
        legal_entity="LE1",
        business_unit="BU1",
        cost_centre="CC1",
        receivables_account="1200",
        revenue_account="4000",
    )
    before = PostingRules(encounter_ref_key=OLD_KEY, encounter_ref_key_id="k1").journal_lines(
        charge, dims, "evt-1", "corr-1"
    )
    after = PostingRules(encounter_ref_key=NEW_KEY, encounter_ref_key_id="k2").journal_lines(
        charge, dims, "evt-1", "corr-1"
    )
    assert [line.line_id for line in before] == [line.line_id for line in after]
    assert [line.encounter_ref for line in before] != [line.encounter_ref for line in after]
    without_refs = [line.model_dump(exclude={"encounter_ref"}) for line in before]
    assert without_refs == [line.model_dump(exclude={"encounter_ref"}) for line in after]
    assert before[0].encounter_ref.startswith("ENC-k1-") and after[0].encounter_ref.startswith("ENC-k2-")


@pytest.fixture
def billing_db(tmp_path: Path) -> Iterator[str]:
    """A billing database holding accounts for a few encounters, written by the real backend."""
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    backend = SqlBillingBackend(url)
    patient = Patient(mrn="MRN-1", family_name="Lovelace", given_name="Ada", birth_date=dt.date(1815, 12, 10))
    try:
        for n in (3, 7, 42):
            encounter = Encounter(
                encounter_id=f"NMH:V{n}",
                facility="NMH",
                department="ED",
                patient_class=PatientClass.EMERGENCY,
                attending_provider_id="1234567890",
                admitted_at=dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC),
            )
            account = account_from(encounter, patient, "admitted", f"evt-{n}", "corr-1")
            backend.upsert_account(billing_pb2.UpsertAccountRequest(idempotency_key=f"k{n}", account=account))
    finally:
        backend.close()
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _resolve(tmp_path: Path, billing_url: str, *args: str, **env: str) -> Result:
    environment = {
        "HCSYNC_BILLING_DATABASE_URL": billing_url,
        "HCSYNC_HOME_DIR": str(tmp_path / "home"),
        "HCSYNC_ENCOUNTER_REF_KEY": NEW_KEY.hex(),
        "HCSYNC_ENCOUNTER_REF_KEY_ID": "k2",
        "HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS": json.dumps({"k1": OLD_KEY.hex()}),
    } | env
    return CliRunner().invoke(refs_app, ["resolve", *args], env=environment)


def test_the_cli_resolves_current_and_earlier_references_and_audits_each(
    tmp_path: Path, billing_db: str
) -> None:
    new = encounter_ref("NMH:V42", NEW_KEY.hex().encode(), "k2")
    old = encounter_ref("NMH:V7", OLD_KEY.hex().encode(), "k1")
    shown = _resolve(tmp_path, billing_db, new, "--reason", "INC-4711 ledger query")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.strip() == f"{new} is encounter NMH:V42"
    shown = _resolve(tmp_path, billing_db, old, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == {"ref": old, "encounter_id": "NMH:V7"}
    missing = _resolve(tmp_path, billing_db, encounter_ref("NMH:V8", NEW_KEY.hex().encode(), "k2"))
    assert missing.exit_code == 1 and "matches no encounter" in missing.stderr
    unknown = _resolve(tmp_path, billing_db, encounter_ref("NMH:V7", OLD_KEY, "k0"))
    assert unknown.exit_code == 2 and "key id 'k0'" in unknown.stderr

    log = AuditLog(f"sqlite:///{tmp_path / 'home' / 'audit.db'}")
    try:
        records = log.records(what="refs resolve")
    finally:
        log.close()
    assert [(r.objects, r.outcome, r.reason) for r in records] == [
        ((new,), "shown", "INC-4711 ledger query"),
        ((old,), "shown", ""),
        ((missing_ref(missing),), "not found", ""),
    ]
    assert all("NMH:V" not in json.dumps(r.as_json()) for r in records)  # the ids read, not what they showed


def missing_ref(result: Result) -> str:
    return result.stderr.split()[0]
