"""On the real embedded stack: the ERP holds references that name their key; `hcsync refs resolve` finds the
encounter from billing's, with the current key or, after a rotation, with the earlier one; each lookup is
in the PHI access audit."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

from pydantic import SecretStr
from sqlalchemy import Select, select

from adapters.billing.schema import AccountRow
from adapters.erp.schema import JournalLineRow
from canonical.ids import encounter_ref
from cluster.send import send_messages
from cluster.stack import Stack
from foundation.audit import AuditLog, default_audit_url
from foundation.settings import DEMO_ENCOUNTER_REF_KEY
from foundation.sql import open_engine, reading
from tests.hl7_samples import adt, dft
from tests.integration.conftest import run_cli, wait_until


def _rows(url: str, query: Select[tuple[str]]) -> list[str]:
    engine = open_engine(url)
    try:
        with reading(engine) as connection:
            return [row[0] for row in connection.execute(query)]
    finally:
        engine.dispose()


def test_an_erp_reference_resolves_to_its_encounter_across_a_rotation_and_is_audited(stack: Stack) -> None:
    settings = stack.settings
    visit = f"V{uuid.uuid4().hex[:10].upper()}"
    messages = [
        adt("A01", f"A{visit}", visit),
        dft(f"D{visit}", visit, [("CG", "99283", "ED visit", 1, "350.00")]),
    ]
    assert asyncio.run(send_messages(settings, messages)) == 2
    billing, erp = f"sqlite:///{stack.run_dir / 'billing.db'}", f"sqlite:///{stack.run_dir / 'erp.db'}"
    (encounter_id,) = wait_until(
        f"billing's account of {visit}",
        lambda: _rows(
            billing, select(AccountRow.account_id).where(AccountRow.account_id.endswith(f":{visit}"))
        ),
        90.0,
        done=lambda found: len(found) == 1,
    )
    # The embedded stack posts with the demo key, id 1: ENC-1-<hmac>, never the encounter id.
    ref = encounter_ref(encounter_id, DEMO_ENCOUNTER_REF_KEY.encode(), "1")
    assert ref.startswith("ENC-1-") and visit not in ref
    wait_until(
        f"the ERP lines of {visit}'s charge",
        lambda: _rows(erp, select(JournalLineRow.encounter_ref).where(JournalLineRow.encounter_ref == ref)),
        90.0,
        done=lambda found: len(found) == 2,  # receivable and revenue
    )

    shown = run_cli(settings, "refs", "resolve", ref, "--reason", "INC-13 ledger query")
    assert shown.strip() == f"{ref} is encounter {encounter_id}"
    # Rotated: a new current key with id 2, the demo key kept as id 1. The ERP's lines still resolve.
    rotated = settings.model_copy(
        update={
            "encounter_ref_key": SecretStr(secrets.token_hex(32)),
            "encounter_ref_key_id": "2",
            "encounter_ref_previous_keys": SecretStr(json.dumps({"1": DEMO_ENCOUNTER_REF_KEY})),
        }
    )
    assert json.loads(run_cli(rotated, "refs", "resolve", ref, "--json")) == {
        "ref": ref,
        "encounter_id": encounter_id,
    }
    # Without the earlier key, the reference names a key hcsync no longer holds.
    forgotten = rotated.model_copy(update={"encounter_ref_previous_keys": SecretStr("{}")})
    refused = run_cli(forgotten, "refs", "resolve", ref, code=2, with_stderr=True)
    assert "key id '1', which is neither HCSYNC_ENCOUNTER_REF_KEY_ID nor in" in refused

    log = AuditLog(default_audit_url(settings))
    try:
        records = [r for r in log.records(what="refs resolve") if r.objects == (ref,)]
    finally:
        log.close()
    assert [(r.outcome, r.reason) for r in records] == [("shown", "INC-13 ledger query"), ("shown", "")]
    assert all(encounter_id not in json.dumps(r.as_json()) for r in records)
