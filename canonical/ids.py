"""Deterministic identifiers: the same source message always yields the same ids.

At-least-once delivery means any message may be processed twice; the sinks recognise the repeat because
every id below is a pure function of the source (sender, control id, position), never of time or chance.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

# A fixed namespace so ids are stable across processes, hosts and releases.
HCSYNC_NAMESPACE = uuid.UUID("5d0f3c52-8a43-4c55-9d7e-5b1f1f0a6c11")


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


def encounter_ref(encounter_id: str, key: bytes) -> str:
    """Return the pseudonymous encounter reference the ERP sees: a keyed HMAC, never the id itself."""
    digest = hmac.new(key, encounter_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"ENC-{digest[:24]}"
