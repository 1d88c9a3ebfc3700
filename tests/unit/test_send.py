"""cluster.send: keys, splitting, and refusing oversized messages before anything is sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from canonical.errors import InvalidMessageError
from cluster.send import messages_of, send_messages
from foundation.keys import keyed
from foundation.settings import Settings
from tests.hl7_samples import adt


def test_key_is_sender_and_control_id() -> None:
    assert keyed(adt("A01", "CTRL42", "V1")) == b"EPIC^NMH|CTRL42"
    assert keyed(b"garbage").startswith(b"undecodable|")


def test_files_split_into_messages(tmp_path: Path) -> None:
    path = tmp_path / "two.hl7"
    path.write_bytes(adt("A01", "C1", "V1") + adt("A03", "C2", "V1"))
    assert len(messages_of([path])) == 2


def test_oversized_messages_are_refused_whole() -> None:
    # Port 9 (discard) has no broker: the refusal must come before any connection attempt.
    settings = Settings(max_message_bytes=100, broker_port=9)
    with pytest.raises(InvalidMessageError, match="HCSYNC_MAX_MESSAGE_BYTES"):
        asyncio.run(send_messages(settings, [adt("A01", "C1", "V1")]))
