"""What the ERP checks every journal line and stock movement against: the governed master data in force.

The ERP adapter reads the same versioned master-data set the transform actors enrich with (actors.masterdata:
Redis, the version in force checked on every call, the set re-read only when the version changed). A line
whose account, legal entity, business unit, cost centre or facility is not in that set is rejected, naming
the field, never the value: a value that is not a code of ours may be anything, patient data included.

Free text is the other way patient data could reach the ledger, so the ERP accepts no free text:

* a journal line's description is empty, a charge code of master data, or that code followed by a space
  and its master-data description (cut at 120 characters, as the posting rules cut it). The ERP stores the
  code and its master-data description;
* a stock movement's description is empty or the item master's description of its item; the ERP stores
  the item master's description.

Anything else is rejected as "not master-data text", without quoting it.
"""

from __future__ import annotations

from collections.abc import Callable

from actors.masterdata import MasterDataCache, MasterDataStore
from canonical.reference import MasterDataSet
from foundation.settings import Settings
from proto import erp_pb2

__all__ = [
    "DESCRIPTION_CHARS",
    "MasterDataSource",
    "governed_masterdata",
    "journal_text",
    "line_master_fault",
    "movement_master_fault",
    "movement_text",
]

# Returns the master-data set in force (MasterDataCache.current); raises a RetryableError while none is.
MasterDataSource = Callable[[], MasterDataSet]
# The posting rules cut a line's text at this many characters.
DESCRIPTION_CHARS = 120
# Seconds a Redis read of master data may take before the call answers UNAVAILABLE.
_REDIS_TIMEOUT_S = 5.0


def governed_masterdata(settings: Settings) -> MasterDataSource:
    """Return the master data in force in the deployment's Redis (the embedded one unless redis_url is set).

    One GET of the version pointer per call; the set itself is read again only when the version changed.
    With no set loaded (or Redis down before any set was read) a call raises MasterDataUnavailable, which
    the service answers UNAVAILABLE: the caller retries, as enrichment waits for master data.
    """
    store = MasterDataStore.from_url(settings.redis, settings.topic_prefix, timeout_s=_REDIS_TIMEOUT_S)
    return MasterDataCache(store).current


def _unknown(field: str, domain: str, data: MasterDataSet) -> str:
    return f"{field} is not in the {domain} of master data {data.version}"


# Each dimension a line or movement carries: (its field, the master-data domain named in a refusal, how the
# set looks a code up, whether an empty value is allowed). Checked in this order; the first failure is named.
_Dimension = tuple[str, str, Callable[[MasterDataSet, str], object], bool]
_LINE_DIMENSIONS: tuple[_Dimension, ...] = (
    ("account", "chart of accounts", MasterDataSet.account, False),
    ("legal_entity", "legal entities", MasterDataSet.legal_entity, False),
    ("business_unit", "business units", MasterDataSet.business_unit, True),
    ("cost_centre", "cost centres", MasterDataSet.cost_centre, True),
    ("facility", "facilities", MasterDataSet.facility, True),
)
_MOVEMENT_DIMENSIONS: tuple[_Dimension, ...] = (
    ("legal_entity", "legal entities", MasterDataSet.legal_entity, False),
    ("facility", "facilities", MasterDataSet.facility, False),
    ("business_unit", "business units", MasterDataSet.business_unit, True),
    ("cost_centre", "cost centres", MasterDataSet.cost_centre, True),
    ("inventory_account", "chart of accounts", MasterDataSet.account, True),
)


def _dimension_fault(item: object, dimensions: tuple[_Dimension, ...], data: MasterDataSet) -> str:
    """Name the first dimension of ``item`` that is not in ``data`` (an empty optional one passes)."""
    for field, domain, lookup, optional in dimensions:
        value: str = getattr(item, field)
        if (value or not optional) and lookup(data, value) is None:
            return _unknown(field, domain, data)
    return ""


def line_master_fault(line: erp_pb2.JournalLine, data: MasterDataSet) -> str:
    """Return why a journal line's dimensions or text are not master data, or an empty string."""
    where = f"line {line.line_id}"
    fault = _dimension_fault(line, _LINE_DIMENSIONS, data)
    if fault:
        return f"{where}: {fault}"
    if journal_text(line.description, data) is None:
        return (
            f"{where}: description is not master-data text (a charge code, alone or with its master-data "
            "description): free text is refused, it could carry patient data"
        )
    return ""


def movement_master_fault(movement: erp_pb2.InventoryMovement, data: MasterDataSet) -> str:
    """Return why a stock movement's dimensions or text are not master data, or an empty string."""
    where = f"movement {movement.movement_id}"
    fault = _dimension_fault(movement, _MOVEMENT_DIMENSIONS, data)
    if fault:
        return f"{where}: {fault}"
    if movement_text(movement, data) is None:
        return (
            f"{where}: description is not master-data text (empty, or the item master's description of "
            "its item): free text is refused, it could carry patient data"
        )
    return ""


def _master_text(sent: str, full: str) -> bool:
    """Whether ``sent`` is ``full``, or ``full`` cut where the posting rules cut it."""
    return sent in (full, full[:DESCRIPTION_CHARS])


def journal_text(description: str, data: MasterDataSet) -> str | None:
    """Return the text the ERP stores for a line's description, or None when it is not master-data text."""
    if not description:
        return ""
    code, _, rest = description.partition(" ")
    charge_code = data.charge_code(code)
    if charge_code is None:
        return None
    text = f"{code} {charge_code.description}".strip()
    if rest and not _master_text(description, text):
        return None
    return text


def movement_text(movement: erp_pb2.InventoryMovement, data: MasterDataSet) -> str | None:
    """Return the text the ERP stores for a movement's description; None when it is not master-data text."""
    item = data.item(movement.item_code)
    text = item.description if item is not None else ""
    if movement.description and not (text and _master_text(movement.description, text)):
        return None
    return text
