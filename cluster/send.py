"""`hcsync send`: HL7 v2 files and X12 interchanges into the message store (the forwarder moves them on).

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

from adapters.inbound.files import read_delivered
from adapters.inbound.hl7v2 import hl7v2_inbound_bytes
from adapters.inbound.store import MessageStore, Verdict, no_ack
from adapters.inbound.x12 import x12_inbound
from canonical.errors import Fault, InvalidMessageError, StackError
from canonical.x12.envelope import Interchange
from foundation.settings import Settings

__all__ = [
    "Inputs",
    "StoreReport",
    "interchanges_of",
    "messages_of",
    "read_inputs",
    "send_messages",
    "store_messages",
]


@dataclass(frozen=True, slots=True)
class StoreReport:
    """What ``hcsync send`` stored."""

    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0

    @property
    def total(self) -> int:
        return self.stored + self.duplicates + self.conflicts


@dataclass(frozen=True, slots=True)
class Inputs:
    """What `send` makes of its files, each read and told by content once."""

    messages: list[bytes]  # HL7 v2 (and files of no known standard: the parser names what is wrong)
    interchanges: list[Interchange]  # X12, each read with its own delimiters
    refused: list[tuple[Path, str]]  # FHIR (not yet ingested), or X12 whose ISA cannot be read, and why


def read_inputs(paths: Iterable[Path]) -> Inputs:
    """Read every file once and sort it by content: HL7 v2 messages, X12 interchanges, or refused.

    X12 files are read into interchanges here, before anything is stored, so that a broken envelope header
    refuses the whole command with its location rather than storing part of a file. A file of no known
    standard is not refused: it goes in as HL7 v2, and the parser names what is wrong with it (quarantined
    with its bytes, as any broken message is).
    """
    inputs = Inputs([], [], [])
    for path in paths:
        contents = read_delivered(path.read_bytes(), path.name)
        if contents.refused:
            inputs.refused.append((path, contents.refused))
        inputs.interchanges.extend(contents.interchanges)
        inputs.messages.extend(contents.messages)
    return inputs


def messages_of(paths: Iterable[Path]) -> list[bytes]:
    """Return every HL7 v2 message of the files (those not X12 or FHIR), in file order."""
    return read_inputs(paths).messages


def interchanges_of(paths: Iterable[Path]) -> list[Interchange]:
    """Return every X12 interchange of the files that hold X12, in file order."""
    return read_inputs(paths).interchanges


def store_messages(
    settings: Settings,
    messages: Sequence[bytes],
    *,
    interchanges: Sequence[Interchange] = (),
    channel: str = "file",
    store: MessageStore | None = None,
) -> StoreReport:
    """Store HL7 v2 messages, then X12 interchanges, durably, in order, in one transaction per 500."""
    sizes = [len(raw) for raw in messages] + [len(x.text.encode(x.encoding)) for x in interchanges]
    too_big = [i for i, size in enumerate(sizes, 1) if size > settings.max_message_bytes]
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
        inbound = [hl7v2_inbound_bytes(raw, channel, now) for raw in messages]
        inbound += [x12_inbound(interchange, channel, now) for interchange in interchanges]
        for start in range(0, len(inbound), 500):
            chunk = [(message, no_ack) for message in inbound[start : start + 500]]
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
