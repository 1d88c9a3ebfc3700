"""`hcsync send`: HL7 files into the message store (the forwarder moves them to raw.hl7v2).

Like the gateways, ``send`` makes every message durable in the message store and returns once it is; the
forwarder of the running stack sends stored messages to the broker. A message stored before (same sender,
control id and content) is a resend and is not stored again; one with the same sender and control id but
other content is stored as a conflict and quarantined, never processed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.inbound.hl7v2 import hl7v2_inbound_bytes
from adapters.inbound.store import MessageStore, Verdict
from canonical.detect import Detected, Standard, detect
from canonical.errors import Fault, InvalidMessageError, StackError
from canonical.hl7v2.parser import split_messages
from foundation.settings import Settings

__all__ = ["StoreReport", "messages_of", "not_hl7v2", "send_messages", "store_messages"]


@dataclass(frozen=True, slots=True)
class StoreReport:
    """What ``hcsync send`` stored."""

    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0

    @property
    def total(self) -> int:
        return self.stored + self.duplicates + self.conflicts


def not_hl7v2(paths: Iterable[Path]) -> list[tuple[Path, Detected]]:
    """Return the files that hold X12 or FHIR (by content), which `send` refuses: it stores HL7 v2 only.

    A file of no known standard is not among them: it goes in as HL7 v2, and the parser names what is
    wrong with it (quarantined with its bytes, as any broken message is).
    """
    out: list[tuple[Path, Detected]] = []
    for path in paths:
        found = detect(path.read_bytes())
        if found.standard in (Standard.X12, Standard.FHIR):
            out.append((path, found))
    return out


def messages_of(paths: Iterable[Path]) -> list[bytes]:
    """Return every message of the files, in file order."""
    out: list[bytes] = []
    for path in paths:
        out.extend(split_messages(path.read_bytes()))
    return out


def _ack_none(_verdict: Verdict, _first: object) -> None:
    return None  # a file gets no ACK; a later MLLP resend of the same message gets a fresh one


def store_messages(
    settings: Settings,
    messages: Sequence[bytes],
    *,
    channel: str = "file",
    store: MessageStore | None = None,
) -> StoreReport:
    """Store messages durably, in order, in one transaction per 500; return what was stored."""
    too_big = [i for i, raw in enumerate(messages, 1) if len(raw) > settings.max_message_bytes]
    if too_big:
        raise InvalidMessageError(
            Fault(
                rule="MESSAGE-TOO-LARGE",
                reason=f"message(s) {too_big[:10]} exceed {settings.max_message_bytes} bytes "
                "(HCSYNC_MAX_MESSAGE_BYTES); nothing was stored",
            )
        )
    own = store is None
    try:
        target = store if store is not None else MessageStore.from_settings(settings)
    except StackError:
        raise
    except Exception as exc:
        raise StackError(
            f"message store unusable (HCSYNC_MESSAGE_STORE_URL): {type(exc).__name__}: {exc}"
        ) from None
    counts = {Verdict.NEW: 0, Verdict.DUPLICATE: 0, Verdict.CONFLICT: 0}
    try:
        now = dt.datetime.now(dt.UTC)
        for start in range(0, len(messages), 500):
            chunk = [
                (hl7v2_inbound_bytes(raw, channel, now), _ack_none) for raw in messages[start : start + 500]
            ]
            for receipt in target.store(chunk):
                counts[receipt.verdict] += 1
    except Exception as exc:
        raise StackError(f"the message store refused the messages ({type(exc).__name__}: {exc})") from None
    finally:
        if own:
            target.close()
    return StoreReport(counts[Verdict.NEW], counts[Verdict.DUPLICATE], counts[Verdict.CONFLICT])


async def send_messages(settings: Settings, messages: list[bytes]) -> int:
    """Store messages durably for the forwarder; return how many are stored (resends included)."""
    report = await asyncio.to_thread(store_messages, settings, messages)
    return report.total
