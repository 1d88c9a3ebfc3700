"""No PHI in any log of the real embedded stack, whatever path a message takes.

Messages carrying distinctive PHI (a family and given name, an MRN, a date of birth, a street, a phone
number and an SSN, all unique to this test) go through every path: valid ADT and DFT sent to the broker,
messages that fail mapping (no PV1-19, a bad timestamp, a bad date of birth, a bad amount, an unknown
charge code) and are quarantined, bytes that are no HL7 message at all, the MLLP gateway (a committed
message and a refused one), and a replay with ``hcsync exceptions replay``. Whether the valid messages are
posted or quarantined (master data) does not matter: the test waits until the ingest agent has seen every
message, the expected ones are in the quarantine store, and the counters stop moving.

What is scanned, for each PHI value as a case-sensitive substring (the date of birth as YYYYMMDD and
YYYY-MM-DD, the SSN with and without dashes):

* every log the stack names (``Component.log_path``: broker, redis, billing, erp, mllp, worker -- each
  component's stdout and stderr) and every other ``*.log``, ``*.out`` or ``*.err`` file in the run
  directory;
* Ray's session directory behind the run directory's ``ray`` link: every ``*.log``, ``*.out``, ``*.err``
  file under ``logs`` (the Ray workers running the transform actors, raylet, GCS, the driver's core
  worker, rotated logs in ``logs/old``), ``debug_state.txt``, and every file under ``logs/events`` and
  ``logs/export_events``;
* the output of the ``hcsync exceptions replay`` process.

Not scanned, because they are data, not logs, and hold PHI by design: the SQLite databases (billing,
ERP, the quarantine store), the Faust table directory and the broker's in-memory storage.

The stack logs at ``settings.log_level`` (INFO); DEBUG lines are not produced, so not covered here. The
unit tests of :mod:`foundation.logmask` cover what the masking filter does to any line, DEBUG included.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.mllp.client import send_mllp
from cluster.send import send_messages
from cluster.stack import Stack, settings_env
from foundation.settings import Settings
from streams.quarantine_store import QuarantineItem, QuarantineStore
from tests.integration.conftest import report_now, settle, wait_until

LOG_SUFFIXES = (".log", ".out", ".err")


@dataclass(frozen=True)
class Phi:
    """One patient's PHI, unique to this test run."""

    uid: str
    family: str
    given: str
    mrn: str
    dob: str  # YYYYMMDD
    street: str
    phone: str
    ssn: str

    @classmethod
    def new(cls) -> Phi:
        uid = uuid.uuid4().hex[:8].upper()
        n = int(uid, 16)
        dob = f"{1931 + n % 60}{1 + n % 12:02d}{1 + n % 28:02d}"
        return cls(
            uid=uid,
            family=f"Quixlotl{uid}",
            given=f"Zenobia{uid}",
            mrn=f"PHI{uid}",
            dob=dob,
            street=f"{1000 + n % 9000} Zebulon Way",
            phone=f"312-555-{n % 10_000:04d}",
            ssn=f"{900 + n % 99}-{10 + n % 89}-{1000 + n % 9000}",
        )

    def secrets(self) -> dict[str, str]:
        """Return what must not appear in a log, by a label that says which PHI it is."""
        return {
            "family name": self.family,
            "given name": self.given,
            "MRN": self.mrn,
            "date of birth": self.dob,
            "date of birth (ISO)": f"{self.dob[:4]}-{self.dob[4:6]}-{self.dob[6:]}",
            "street": self.street,
            "street name": "Zebulon",
            "phone": self.phone,
            "SSN": self.ssn,
            "SSN (digits)": self.ssn.replace("-", ""),
        }

    def pid(self, *, dob: str | None = None) -> str:
        return (
            f"PID|1||{self.mrn}^^^NMH^MR||{self.family}^{self.given}||{self.dob if dob is None else dob}|F|||"
            f"{self.street}^^Springfield^IL^62701||{self.phone}|||||ACC{self.uid}^^^NMH^AN|{self.ssn}"
        )


def _hl7(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode()


def _msh(kind: str, control_id: str, at: str = "20261120083000") -> str:
    return f"MSH|^~\\&|EPIC|NMH|HCSYNC|HCSYNC|{at}||{kind}|{control_id}|P|2.5.1"


def _pv1(visit: str) -> str:
    return (
        f"PV1|1|I|MEDSURG^101^A^NMH||||1234567890^Smith^John^^^^MD|||MEDSURG|||||||||"
        f"{visit}^^^NMH^VN|||||||||||||||||||||||||20261120083000|"
    )


def _adt(
    phi: Phi, control_id: str, visit: str, *, at: str = "20261120083000", dob: str | None = None
) -> bytes:
    return _hl7(_msh("ADT^A01^ADT_A01", control_id, at), f"EVN|A01|{at}", phi.pid(dob=dob), _pv1(visit))


def _dft(phi: Phi, control_id: str, visit: str, lines: list[tuple[str, str]]) -> bytes:
    charges = [
        f"FT1|{i}|T{control_id}-{i}||20261120090000|20261120093000|CG|{code}^Charge {code}^CPT||Charge {code}"
        f"|1|{amount}||MEDSURG^^^NMH"
        for i, (code, amount) in enumerate(lines, 1)
    ]
    return _hl7(
        _msh("DFT^P03^DFT_P03", control_id, "20261120093000"),
        "EVN|P03|20261120093000",
        phi.pid(),
        _pv1(visit),
        *charges,
    )


@pytest.fixture
def stack_store(stack: Stack) -> Iterator[QuarantineStore]:
    """The quarantine store the stack's quarantine agent writes."""
    opened = QuarantineStore(f"sqlite:///{stack.run_dir / 'quarantine.db'}")
    yield opened
    opened.close()


def _items(store: QuarantineStore, control_id: str) -> list[QuarantineItem]:
    return store.list(message_id=control_id, status=None, limit=None)


def _holding(store: QuarantineStore, marker: bytes) -> list[QuarantineItem]:
    """Return the items whose original bytes contain ``marker`` (for messages without a control id)."""
    return [item for item in store.list(status=None, limit=None) if marker in store.original(item.record_id)]


def _replay(settings: Settings, stack: Stack, control_id: str, output: Path) -> None:
    """Run `hcsync exceptions replay` as its own process, as an operator would; keep what it prints."""
    env = (
        os.environ
        | settings_env(settings)
        | {"HCSYNC_QUARANTINE_DATABASE_URL": f"sqlite:///{stack.run_dir / 'quarantine.db'}"}
    )
    with output.open("wb") as out:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cluster.cli",
                "exceptions",
                "replay",
                "--message-id",
                control_id,
                "--yes",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, output.read_text(errors="replace")
    assert "replayed 1 item(s)" in output.read_text(errors="replace")


def _log_files(stack: Stack, extra: list[Path]) -> list[Path]:
    """Return every log-like file of the run (see the module doc), the stack's own logs first."""
    named = [c.log_path for c in stack.components if c.log_path is not None]
    found: dict[Path, None] = dict.fromkeys(named)
    for path in sorted(stack.run_dir.rglob("*")):
        if path.is_file() and path.suffix in LOG_SUFFIXES:
            found[path] = None
    ray_link = stack.run_dir / "ray"
    if ray_link.is_symlink() or ray_link.is_dir():
        logs = ray_link.resolve() / "logs"
        for root, _dirs, files in os.walk(logs):
            here = Path(root)
            in_events = here.relative_to(logs).parts[:1] in (("events",), ("export_events",))
            for name in sorted(files):
                path = here / name
                if in_events or path.suffix in (*LOG_SUFFIXES, ".txt"):
                    found[path] = None
    return [*found, *extra]


def _scan(files: list[Path], secrets: dict[str, str]) -> list[str]:
    """Return "file:line: label" for every occurrence of a secret."""
    hits: list[str] = []
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:  # a Ray log rotated away while we looked
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for label, value in secrets.items():
                if value in line:
                    hits.append(f"{path}:{number}: {label} {value!r} in {line[:300]!r}")
    return hits


def test_no_phi_reaches_any_log(
    settings: Settings, stack: Stack, stack_store: QuarantineStore, tmp_path: Path
) -> None:
    phi = Phi.new()
    uid = phi.uid
    visit = f"VP{uid}"
    cid = {
        name: f"{name}{uid}"
        for name in ("ADT", "DFT", "NOVISIT", "BADTIME", "BADDOB", "BADAMT", "BADCODE", "MLLP", "NOMSH10")
    }
    valid = [
        _adt(phi, cid["ADT"], visit),
        _dft(phi, cid["DFT"], visit, [("99283", "350.00"), ("80053", "75.25")]),
    ]
    pv1_no_visit = _pv1("").replace("^^^NMH^VN", "")
    # Refused by the mapping whatever the master data: these must reach the quarantine store.
    failing = {
        "NOVISIT": _hl7(
            _msh("ADT^A01^ADT_A01", cid["NOVISIT"]), "EVN|A01|20261120083000", phi.pid(), pv1_no_visit
        ),
        "BADTIME": _adt(phi, cid["BADTIME"], visit, at="2026112X083000"),
        "BADAMT": _dft(phi, cid["BADAMT"], visit, [("99283", "3x0.00")]),
    }
    # Posted or quarantined, depending on the mapping's leniency and on the master data.
    others = [
        _adt(phi, cid["BADDOB"], visit, dob=f"{phi.dob}X"),
        _dft(phi, cid["BADCODE"], visit, [("ZZ999", "10.00")]),
    ]
    # No MSH: quarantined with what it starts with quoted in the reason (the record's data, not a log).
    undecodable = f"{phi.family}^{phi.given}|{uid}\r{phi.pid()}\r".encode()
    before = settle(settings, 1.0)
    started = time.monotonic()

    # 1. Straight to the broker, as `hcsync send` does.
    direct = [*valid, *failing.values(), *others, undecodable]
    assert asyncio.run(send_messages(settings, direct)) == len(direct)

    # 2. Through the stack's MLLP gateway: one committed, one refused there (no MSH-10), never committed.
    no_control_id = _hl7(_msh("ADT^A08^ADT_A01", ""), "EVN|A08|20261120083000", phi.pid(), _pv1(visit))
    acks = asyncio.run(
        send_mllp(
            settings.mllp_host,
            settings.mllp_port,
            [_adt(phi, cid["MLLP"], visit).replace(b"ADT^A01", b"ADT^A08", 1), no_control_id],
        )
    )
    assert [a.positive for a in acks] == [True, False], acks
    in_raw = len(direct) + 1

    # Every message has an outcome: ingest saw them all, the failing ones are in the quarantine store.
    def wait_for_ingest(what: str, extra: int = 0) -> None:
        target = before.counters.get("raw_in", 0) + in_raw + extra
        wait_until(
            f"{what}: counter raw_in >= {target}",
            lambda: report_now(settings).counters.get("raw_in", 0),
            timeout_s=120,
            done=lambda raw_in: raw_in >= target,
        )

    wait_for_ingest("the ingest agent to see every message")
    wait_until(
        "the failing messages in the quarantine store: at least one item each (items by message)",
        lambda: {name: len(_items(stack_store, cid[name])) for name in failing},
        done=lambda found: all(found.values()),
    )
    marker = f"^{phi.given}|{uid}".encode()
    wait_until(
        "the undecodable bytes in the quarantine store (items holding them)",
        lambda: [item.record_id for item in _holding(stack_store, marker)],
        done=bool,
    )
    [novisit] = _items(stack_store, cid["NOVISIT"])
    # The PHI did travel: the store (data, not a log) holds it.
    assert phi.family.encode() in stack_store.original(novisit.record_id)

    # 3. Replayed by the operator's command; the unchanged message fails again.
    _replay(settings, stack, cid["NOVISIT"], tmp_path / "replay.out")
    wait_for_ingest("the replayed message to be seen", extra=1)
    wait_until(
        "the replay's failure in the store: an item of the message with 2 occurrences (occurrences)",
        lambda: [item.occurrences for item in _items(stack_store, cid["NOVISIT"])],
        done=lambda occurrences: any(n >= 2 for n in occurrences),
    )
    settle(settings)
    elapsed = time.monotonic() - started

    files = _log_files(stack, [tmp_path / "replay.out"])
    names = {path.name for path in files}
    assert {"worker.log", "mllp.log", "billing.log", "erp.log"} <= names, sorted(names)
    ray_workers = [p for p in files if p.name.startswith("worker-") and p.suffix in (".out", ".err")]
    assert ray_workers, "no Ray worker log found behind the run directory's ray link"
    hits = _scan(files, phi.secrets())
    scanned = f"{len(files)} files ({sum(p.stat().st_size for p in files if p.exists()):,} bytes)"
    assert not hits, f"PHI in logs after {elapsed:.0f}s, scanning {scanned}:\n" + "\n".join(hits[:50])


def test_the_scan_finds_phi_where_it_is(tmp_path: Path) -> None:
    """The scanner itself: a planted value is reported with its file and line."""
    phi = Phi.new()
    planted = tmp_path / "planted.log"
    planted.write_text(f"ok\nframe {base64.b64encode(b'x').decode()} {phi.pid()}\n")
    hits = _scan([planted], phi.secrets())
    assert hits and all(hit.startswith(f"{planted}:2: ") for hit in hits)
    for label in ("family name", "MRN", "date of birth", "street", "phone", "SSN"):
        assert any(hit.startswith(f"{planted}:2: {label} ") for hit in hits), label
