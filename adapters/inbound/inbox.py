"""The watched inbox: files dropped in a directory, durable in the message store before they leave it.

Clearinghouses and payers deliver X12 as files (SFTP mailboxes, shared folders), and so do EHRs that batch
HL7 v2. ``hcsync up`` runs this watcher on ``HCSYNC_INBOX_DIR``. A file is taken once it has settled
(neither its size nor its modification time changed for ``inbox_settle_s``), so a file still being
written is left alone; names starting with a dot or ending in ``.part``, ``.tmp`` or ``.filepart`` are
never taken, which is how most transfer tools mark a file in flight.

A taken file is read and told by content (never by name), and every X12 interchange or HL7 message in it
is stored in the message store in one transaction. Only then is the file moved to ``processed/<date>/``:
that move is the inbox's acknowledgment. A crash between the two re-reads the file at the next start, and
the store answers duplicate for what it already holds, so nothing is lost and nothing is stored twice.
A file the watcher cannot take (FHIR, which hcsync does not yet ingest, an X12 file whose ISA cannot be
read, an empty or oversized file) is moved to ``rejected/`` beside a ``.reason`` file saying why; nothing
of it is stored. The forwarder puts what was stored on ``raw.x12`` or ``raw.hl7v2``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from adapters.inbound.files import read_delivered
from adapters.inbound.hl7v2 import hl7v2_inbound_bytes
from adapters.inbound.store import InboundMessage, MessageStore, Verdict, no_ack
from adapters.inbound.x12 import x12_inbound
from canonical.detect import detect
from foundation.settings import Settings

__all__ = ["CHANNEL", "FileOutcome", "Inbox", "InboxStats", "read_inbox_stats", "run_inbox"]

log = logging.getLogger(__name__)

# The channel stored messages name: where they came in.
CHANNEL = "inbox"
PROCESSED = "processed"
REJECTED = "rejected"
# Suffixes and prefixes that mark a file still in transfer.
_IN_FLIGHT_SUFFIXES = (".part", ".tmp", ".filepart", ".partial")
_STATS_FILE = "inbox.stats.json"


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What became of one file: stored (with the store's verdicts) or rejected with a reason."""

    name: str
    standard: str
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: str = ""  # why the file was not taken; empty when it was
    moved_to: str = ""


@dataclass(slots=True)
class InboxStats:
    """Counters since the watcher started (written to ``inbox.stats.json`` for `hcsync status`)."""

    files_taken: int = 0
    files_rejected: int = 0
    messages_stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    last_file_at: str = ""
    last_error: str = ""
    by_standard: dict[str, int] = field(default_factory=dict)


class Inbox:
    """One scan at a time over a directory: take settled files, store them, move them out of the way."""

    def __init__(
        self,
        settings: Settings,
        directory: Path,
        store: MessageStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.store = store
        self.stats = InboxStats()
        self._clock = clock
        # Size and modification time of each file at the previous scan: a file is settled when both held.
        self._seen: dict[Path, tuple[int, int]] = {}
        for sub in (PROCESSED, REJECTED):
            (directory / sub).mkdir(parents=True, exist_ok=True)

    def settled(self) -> list[Path]:
        """Return the files ready to take, oldest first; remember the others' size and time."""
        now = self._clock()
        ready: list[tuple[float, Path]] = []
        current: dict[Path, tuple[int, int]] = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            return []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.endswith(_IN_FLIGHT_SUFFIXES) or not entry.is_file():
                continue
            try:
                info = entry.stat()
            except FileNotFoundError:
                continue  # taken away between the listing and the stat
            path = Path(entry.path)
            mark = (info.st_size, info.st_mtime_ns)
            current[path] = mark
            quiet_s = now - info.st_mtime_ns / 1e9
            if self._seen.get(path) == mark and quiet_s >= self.settings.inbox_settle_s:
                ready.append((info.st_mtime_ns, path))
        self._seen = current
        return [path for _, path in sorted(ready)]

    def take(self, path: Path) -> FileOutcome:
        """Store one file's messages, then move it to processed/ (or to rejected/ with its reason)."""
        data = path.read_bytes()
        messages: list[InboundMessage] = []
        now = dt.datetime.now(dt.UTC)
        standard = detect(data).standard.value
        reason = ""
        if not data.strip():
            reason = "the file is empty"
        elif len(data) > self.settings.inbox_max_file_bytes:
            reason = (
                f"the file holds {len(data)} bytes, more than HCSYNC_INBOX_MAX_FILE_BYTES "
                f"({self.settings.inbox_max_file_bytes})"
            )
        else:
            contents = read_delivered(data, path.name)
            reason = contents.refused
            messages = [x12_inbound(x, CHANNEL, now) for x in contents.interchanges]
            messages += [hl7v2_inbound_bytes(raw, CHANNEL, now) for raw in contents.messages]
        if not reason:
            limit = self.settings.max_message_bytes
            too_big = [i for i, m in enumerate(messages, 1) if len(m.content) > limit]
            if too_big:
                reason = (
                    f"message(s) {too_big[:10]} of the file exceed HCSYNC_MAX_MESSAGE_BYTES "
                    f"({self.settings.max_message_bytes}); nothing of the file was stored"
                )
        if reason:
            return self._reject(path, standard, reason)
        counts = {Verdict.NEW: 0, Verdict.DUPLICATE: 0, Verdict.CONFLICT: 0}
        # One transaction for the whole file: it is stored entirely or not at all.
        for receipt in self.store.store([(message, no_ack) for message in messages]):
            counts[receipt.verdict] += 1
        moved = self._move(path, self.directory / PROCESSED / now.strftime("%Y%m%d"))
        outcome = FileOutcome(
            name=path.name,
            standard=standard,
            stored=counts[Verdict.NEW],
            duplicates=counts[Verdict.DUPLICATE],
            conflicts=counts[Verdict.CONFLICT],
            moved_to=str(moved.relative_to(self.directory)),
        )
        self._count(outcome)
        log.info(
            "inbox: %s (%s): %d stored, %d already stored, %d conflict(s); moved to %s",
            path.name,
            standard,
            outcome.stored,
            outcome.duplicates,
            outcome.conflicts,
            outcome.moved_to,
        )
        return outcome

    def scan(self) -> list[FileOutcome]:
        """Take every settled file once; a file that fails to store stays for the next scan."""
        outcomes: list[FileOutcome] = []
        for path in self.settled():
            try:
                outcomes.append(self.take(path))
            except FileNotFoundError:
                continue  # another watcher took it
            except Exception as exc:  # the store is down, say: the file stays and is taken again later
                self.stats.last_error = f"{path.name}: {type(exc).__name__}: {exc}"
                log.warning("inbox: %s not taken, retried next scan (%s)", path.name, self.stats.last_error)
                self._seen.pop(path, None)
        return outcomes

    def _reject(self, path: Path, standard: str, reason: str) -> FileOutcome:
        moved = self._move(path, self.directory / REJECTED)
        moved.with_name(moved.name + ".reason").write_text(reason + "\n", encoding="utf-8")
        outcome = FileOutcome(
            name=path.name,
            standard=standard,
            rejected=reason,
            moved_to=str(moved.relative_to(self.directory)),
        )
        self._count(outcome)
        log.warning("inbox: %s rejected, moved to %s: %s", path.name, outcome.moved_to, reason)
        return outcome

    @staticmethod
    def _move(path: Path, directory: Path) -> Path:
        """Move ``path`` into ``directory`` under its name, with a numbered suffix if the name is taken."""
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / path.name
        number = 1
        while target.exists():
            target = directory / f"{path.name}.{number}"
            number += 1
        os.replace(path, target)
        return target

    def _count(self, outcome: FileOutcome) -> None:
        stats = self.stats
        if outcome.rejected:
            stats.files_rejected += 1
        else:
            stats.files_taken += 1
            stats.messages_stored += outcome.stored
            stats.duplicates += outcome.duplicates
            stats.conflicts += outcome.conflicts
            stats.by_standard[outcome.standard] = stats.by_standard.get(outcome.standard, 0) + 1
        stats.last_file_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    def write_stats(self, run_dir: Path) -> None:
        """Write the counters for `hcsync status` (replaced atomically)."""
        target = run_dir / _STATS_FILE
        partial = target.with_suffix(".json.partial")
        partial.write_text(json.dumps({"directory": str(self.directory), **asdict(self.stats)}), "utf-8")
        os.replace(partial, target)


def read_inbox_stats(run_dir: Path) -> dict[str, object] | None:
    """The inbox's counters as it last wrote them, or None when it wrote none (or they cannot be read)."""
    try:
        data = json.loads((run_dir / _STATS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def inbox_directory(settings: Settings) -> Path:
    """The watched directory: HCSYNC_INBOX_DIR, else ``inbox`` in the run directory."""
    if settings.inbox_dir is not None:
        return settings.inbox_dir
    if settings.run_dir is None:
        raise ValueError("the inbox needs HCSYNC_INBOX_DIR or a run directory")
    return settings.run_dir / "inbox"


async def run_inbox(settings: Settings, run_dir: Path | None = None) -> None:
    """Watch the inbox until SIGTERM or SIGINT; write ``inbox.ready`` in the run dir once watching."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    store = MessageStore.from_settings(settings)
    directory = inbox_directory(settings)
    inbox = Inbox(settings, directory, store)
    try:
        if run_dir is not None:
            (run_dir / "inbox.ready").write_text("ready\n")
        log.info("ready: inbox watching %s into %s", directory, store.database_url)
        while not stop.is_set():
            outcomes = await asyncio.to_thread(inbox.scan)
            if run_dir is not None and outcomes:
                inbox.write_stats(run_dir)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.inbox_poll_interval_s)
        log.info("stopping: inbox")
    finally:
        store.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    stats = inbox.stats
    log.info("stopped: inbox after %d file(s) taken, %d rejected", stats.files_taken, stats.files_rejected)
