"""Deterministic identifiers: the same source message always yields the same ids.

At-least-once delivery means any message may be processed twice; the sinks recognise the repeat because
every id below is a pure function of the source (sender, control id, position), never of time or chance.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping

from canonical.errors import ConfigurationError, HcsyncError

# A fixed namespace so ids are stable across processes, hosts and releases.
HCSYNC_NAMESPACE = uuid.UUID("5d0f3c52-8a43-4c55-9d7e-5b1f1f0a6c11")

# The id of the encounter reference key when none is configured; ids are short so references stay short.
DEFAULT_KEY_ID = "1"
KEY_ID_PATTERN = r"^[a-z0-9]{1,16}$"
# Hex digits of the HMAC kept in a reference: 96 bits, far beyond any hospital's count of encounters.
_REF_DIGEST_HEX = 24
# ENC-<key id>-<hmac>, or ENC-<hmac> as references were written before keys had ids.
_REF = re.compile(r"ENC-(?:(?P<kid>[a-z0-9]{1,16})-)?(?P<digest>[0-9a-f]{24})")


def message_key(sender: str, control_id: str) -> str:
    """Return the broker key of a source message: sender plus control id."""
    return f"{sender}|{control_id}"


def correlation_id(sender: str, control_id: str) -> str:
    """Return the id shared by every event, command and posting that one source message caused."""
    return str(uuid.uuid5(HCSYNC_NAMESPACE, f"msg|{sender}|{control_id}"))


def event_id(sender: str, control_id: str, position: int) -> str:
    """Return the id of the event at ``position`` (0-based) within one source message."""
    return str(uuid.uuid5(HCSYNC_NAMESPACE, f"evt|{sender}|{control_id}|{position}"))


def derived_id(parent_id: str, purpose: str) -> str:
    """Return an idempotency key for work derived from ``parent_id`` (a command, a journal line)."""
    return str(uuid.uuid5(HCSYNC_NAMESPACE, f"{purpose}|{parent_id}"))


class EncounterRefError(HcsyncError):
    """A string that is not an encounter reference, or one made with a key hcsync does not hold."""


def _ref_digest(encounter_id: str, key: bytes) -> str:
    return hmac.new(key, encounter_id.encode("utf-8"), hashlib.sha256).hexdigest()[:_REF_DIGEST_HEX]


def encounter_ref(encounter_id: str, key: bytes, key_id: str = DEFAULT_KEY_ID) -> str:
    """Return the pseudonymous encounter reference the ERP sees: a keyed HMAC, never the id itself.

    The reference names the key's id (``ENC-<key id>-<hmac>``), so after a key rotation the references
    made with the earlier key can still be resolved with it. No other id depends on the reference.
    """
    if re.fullmatch(KEY_ID_PATTERN, key_id) is None:
        raise ConfigurationError(f"encounter reference key id {key_id!r} must match {KEY_ID_PATTERN}")
    return f"ENC-{key_id}-{_ref_digest(encounter_id, key)}"


def parse_encounter_ref(ref: str) -> tuple[str | None, str]:
    """Return the key id (None for a reference made before keys had ids) and the HMAC of a reference."""
    match = _REF.fullmatch(ref.strip())
    if match is None:
        raise EncounterRefError(
            f"{ref[:60]!r} is not an encounter reference: expected ENC-<key id>-<24 hex digits> "
            "(or ENC-<24 hex digits> as written before key ids)"
        )
    return match["kid"], match["digest"]


def resolve_encounter_ref(ref: str, encounter_ids: Iterable[str], keys: Mapping[str, bytes]) -> str | None:
    """Return the encounter among ``encounter_ids`` that ``ref`` pseudonymises, None if none does.

    ``keys`` maps key ids to keys, the current one and every earlier one. A reference names its key; one
    made before references named keys is tried with every key (an HMAC collision is out of reach).
    """
    key_id, digest = parse_encounter_ref(ref)
    if key_id is None:
        candidates = list(keys.values())
    elif key_id in keys:
        candidates = [keys[key_id]]
    else:
        raise EncounterRefError(
            f"{ref.strip()} was made with key id {key_id!r}, which is neither HCSYNC_ENCOUNTER_REF_KEY_ID "
            f"nor in HCSYNC_ENCOUNTER_REF_PREVIOUS_KEYS (known ids: {', '.join(sorted(keys)) or 'none'})"
        )
    for encounter_id in encounter_ids:
        for key in candidates:
            if hmac.compare_digest(_ref_digest(encounter_id, key), digest):
                return encounter_id
    return None
