"""Push HL7 files to raw.hl7v2: one record per message, keyed by sender and control id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from aiokafka.errors import KafkaConnectionError, KafkaError

from canonical.errors import Fault, InvalidMessageError, StackError
from canonical.hl7v2.parser import split_messages
from foundation.kafka import broker_unreachable, producer
from foundation.keys import keyed
from foundation.settings import Settings
from foundation.topics import TopicNames


def messages_of(paths: Iterable[Path]) -> list[bytes]:
    """Return every message of the files, in file order."""
    out: list[bytes] = []
    for path in paths:
        out.extend(split_messages(path.read_bytes()))
    return out


async def send_messages(settings: Settings, messages: list[bytes]) -> int:
    """Send messages and wait until the broker has acknowledged each one; return the count."""
    topic = TopicNames(settings.topic_prefix).raw_hl7v2
    too_big = [i for i, raw in enumerate(messages, 1) if len(raw) > settings.max_message_bytes]
    if too_big:
        raise InvalidMessageError(
            Fault(
                rule="MESSAGE-TOO-LARGE",
                reason=f"message(s) {too_big[:10]} exceed {settings.max_message_bytes} bytes "
                "(HCSYNC_MAX_MESSAGE_BYTES); nothing was sent",
            )
        )
    prod = producer(settings)
    try:
        await prod.start()
        futures = [await prod.send(topic, value=raw, key=keyed(raw)) for raw in messages]
        await asyncio.gather(*futures)
    except KafkaConnectionError as exc:
        raise broker_unreachable(settings, exc) from None
    except KafkaError as exc:
        raise StackError(f"the broker at {settings.bootstrap} refused a message: {exc!r}") from None
    finally:
        await prod.stop()
    return len(messages)
