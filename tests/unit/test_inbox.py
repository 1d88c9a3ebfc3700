"""The watched inbox: settled files are stored, then moved; refused files go to rejected/ with a reason."""

from __future__ import annotations

import os
from pathlib import Path

from adapters.inbound.inbox import PROCESSED, REJECTED, Inbox, inbox_directory
from adapters.inbound.store import MessageFilter, MessageStore
from foundation.settings import Settings
from tests.hl7_samples import adt
from tests.x12_samples import interchange


class Clock:
    """A clock the test moves: settling is about time passing, not about sleeping."""

    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


def _inbox(tmp_path: Path, **settings: object) -> tuple[Inbox, MessageStore, Clock]:
    store = MessageStore(f"sqlite:///{tmp_path / 'messages.db'}")
    clock = Clock()
    config = Settings(run_dir=tmp_path, inbox_settle_s=1.0, **settings)  # type: ignore[arg-type]
    return Inbox(config, inbox_directory(config), store, clock=clock), store, clock


def _drop(inbox: Inbox, name: str, data: bytes, clock: Clock) -> Path:
    path = inbox.directory / name
    path.write_bytes(data)
    os.utime(path, (clock.now - 10, clock.now - 10))
    return path


def test_a_file_is_taken_only_once_it_has_settled_then_stored_and_moved(tmp_path: Path) -> None:
    inbox, store, clock = _inbox(tmp_path)
    try:
        path = _drop(inbox, "claims.837", ("\ufeff" + interchange(after="\r\n")).encode("utf-8"), clock)
        assert inbox.scan() == []  # first sight: its size and time are remembered, not trusted yet
        assert path.exists()
        [outcome] = inbox.scan()
        assert (outcome.standard, outcome.stored, outcome.rejected) == ("x12", 1, "")
        assert not path.exists()
        assert (inbox.directory / outcome.moved_to).is_file()
        assert outcome.moved_to.startswith(PROCESSED + "/")
        [stored] = store.list(MessageFilter(standard="x12"))
        assert (stored.control_id, stored.channel) == ("000000123", "inbox")
    finally:
        store.close()


def test_a_file_still_growing_or_marked_in_flight_is_left_alone(tmp_path: Path) -> None:
    inbox, store, clock = _inbox(tmp_path)
    try:
        growing = _drop(inbox, "claims.837", interchange().encode()[:200], clock)
        _drop(inbox, "next.837.part", interchange().encode(), clock)
        _drop(inbox, ".hidden", interchange().encode(), clock)
        assert inbox.scan() == []
        growing.write_bytes(interchange().encode())  # more bytes arrived since the last scan
        os.utime(growing, (clock.now - 10, clock.now - 10))
        assert inbox.scan() == []
        [outcome] = inbox.scan()
        assert outcome.name == "claims.837" and outcome.stored == 1
        fresh = _drop(inbox, "fresh.837", interchange("000000999").encode(), clock)
        os.utime(fresh, (clock.now, clock.now))  # written just now: not yet quiet for inbox_settle_s
        assert inbox.scan() == [] and inbox.scan() == []
        clock.now += 5
        assert [o.name for o in inbox.scan()] == ["fresh.837"]
        assert (inbox.directory / "next.837.part").exists() and (inbox.directory / ".hidden").exists()
    finally:
        store.close()


def test_a_resent_file_is_a_duplicate_and_is_not_stored_twice(tmp_path: Path) -> None:
    inbox, store, clock = _inbox(tmp_path)
    try:
        for _ in range(2):
            _drop(inbox, "claims.837", interchange().encode(), clock)
            inbox.scan()
            inbox.scan()
        assert len(store.list(MessageFilter(standard="x12"))) == 1
        assert (inbox.stats.files_taken, inbox.stats.messages_stored, inbox.stats.duplicates) == (2, 1, 1)
        names = sorted(p.name for p in (inbox.directory / PROCESSED).rglob("*") if p.is_file())
        assert names == ["claims.837", "claims.837.1"]  # the second delivery keeps its own copy
    finally:
        store.close()


def test_hl7_batches_are_taken_and_fhir_and_broken_x12_are_rejected_with_a_reason(tmp_path: Path) -> None:
    inbox, store, clock = _inbox(tmp_path)
    try:
        batch = adt("A01", "C1", "V1") + b"\r" + adt("A03", "C2", "V1")
        _drop(inbox, "adt.hl7", batch, clock)
        _drop(inbox, "patient.json", b'{"resourceType": "Patient", "id": "p1"}', clock)
        _drop(inbox, "broken.x12", b"ISA*00*short~", clock)
        _drop(inbox, "empty.x12", b"  \n", clock)
        inbox.scan()
        outcomes = {o.name: o for o in inbox.scan()}
        assert outcomes["adt.hl7"].stored == 2 and outcomes["adt.hl7"].standard == "hl7v2"
        for name in ("patient.json", "broken.x12", "empty.x12"):
            assert outcomes[name].rejected, name
            reason = (inbox.directory / REJECTED / f"{name}.reason").read_text()
            assert reason.strip() == outcomes[name].rejected
        assert "FHIR is not yet ingested" in outcomes["patient.json"].rejected
        assert "ISA" in outcomes["broken.x12"].rejected
        assert len(store.list(MessageFilter())) == 2
        assert inbox.stats.files_rejected == 3
    finally:
        store.close()


def test_an_oversized_file_is_rejected_whole(tmp_path: Path) -> None:
    inbox, store, clock = _inbox(tmp_path, inbox_max_file_bytes=100)
    try:
        _drop(inbox, "big.837", interchange().encode(), clock)
        inbox.scan()
        [outcome] = inbox.scan()
        assert "HCSYNC_INBOX_MAX_FILE_BYTES" in outcome.rejected
        assert store.list(MessageFilter()) == []
    finally:
        store.close()


def test_a_file_the_store_cannot_take_stays_for_the_next_scan(tmp_path: Path) -> None:
    inbox, store, clock = _inbox(tmp_path)
    path = _drop(inbox, "claims.837", interchange().encode(), clock)
    inbox.scan()
    store.close()
    (tmp_path / "messages.db").unlink()
    (tmp_path / "messages.db").mkdir()  # the database path is now unusable: the store raises
    try:
        assert inbox.scan() == []
        assert path.exists() and "claims.837" in inbox.stats.last_error
    finally:
        (tmp_path / "messages.db").rmdir()
