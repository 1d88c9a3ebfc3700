"""Encounter references back to encounters: what finance asks when an ERP line needs its patient account.

The ERP holds only the keyed pseudonym of an encounter (``ENC-<key id>-<hmac>``). Billing holds the
encounter ids. Resolving a reference computes the reference of each encounter id billing knows with the key
the reference names (the current key or an earlier one, see HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS) until one
matches: nothing is stored that maps references to encounters, so the key remains the only way back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

from sqlalchemy import select, union

from adapters.billing.schema import AccountRow, ChargeRow
from canonical.errors import StackError
from canonical.ids import resolve_encounter_ref
from foundation.runs import run_database_url
from foundation.settings import Settings
from foundation.sql import open_engine, reading, sqlite_path

__all__ = ["billing_database_url", "billing_encounter_ids", "resolve_ref"]


def billing_database_url(settings: Settings) -> str:
    """Return the billing database's URL (with its password): the setting, else the running stack's file."""
    return run_database_url(
        settings, settings.database_url("billing"), "billing.db", "HCSYNC_BILLING_DATABASE_URL"
    )


def billing_encounter_ids(database_url: str) -> Generator[str, None, None]:
    """Yield every encounter id billing knows: its accounts' and its charges'."""
    engine = open_engine(database_url)
    try:
        query = union(select(AccountRow.account_id), select(ChargeRow.encounter_id))
        with reading(engine) as connection:
            for (encounter_id,) in connection.execution_options(stream_results=True).execute(query):
                yield encounter_id
    finally:
        engine.dispose()


def resolve_ref(settings: Settings, ref: str) -> str | None:
    """Return the encounter id ``ref`` pseudonymises among billing's encounters, None if none.

    Raises EncounterRefError for a string that is not a reference or names a key id hcsync does not hold,
    and StackError when there is no billing database to read.
    """
    url = billing_database_url(settings)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StackError(
            f"no billing database at {path}: start the stack (`hcsync up`) or point "
            "HCSYNC_BILLING_DATABASE_URL (or HCSYNC_RUN_DIR) at one"
        )
    with contextlib.closing(billing_encounter_ids(url)) as encounter_ids:
        return resolve_encounter_ref(ref, encounter_ids, settings.encounter_ref_keys())
