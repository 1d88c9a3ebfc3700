"""`hcsync claims list|show` against a real BillingAdapter (mutual TLS, the reader's token) over SQLite.

The billing database is filled through the real backend (a claimed, sent and remitted account), then a
real server serves it from a thread of its own; the commands run as an operator would run them, with the
reader's credentials in the environment. `show` prints PHI, so its audit record must come first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from adapters.billing.backend import SqlBillingBackend
from adapters.credentials import READER
from cluster.cli.claims import claims_app
from foundation.audit import AuditLog
from foundation.settings import get_settings
from tests.grpc_security import running_adapter, shared
from tests.masterdata import demo_set
from tests.unit.test_billing_revenue_cycle import (
    ACCOUNT,
    FAMILY,
    MEMBER,
    cas,
    claimable,
    clp,
    create,
    remittance,
    sent,
)

_START_S = 30.0  # seconds the server gets to start or stop on a loaded machine


@contextlib.contextmanager
def serving_billing(database_dir: Path) -> Iterator[str]:
    """Serve the billing database of ``database_dir`` from a thread with its own event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="claims-cli-billing", daemon=True)
    thread.start()
    context = running_adapter("billing", database_dir)
    try:
        adapter = asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(_START_S)
        try:
            yield adapter.address
        finally:
            asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop).result(_START_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_S)
        loop.close()


@pytest.fixture(scope="module")
def billing_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A billing with one account's two claims: the institutional one sent and paid, the other created."""
    folder = tmp_path_factory.mktemp("claims-cli")
    data = demo_set()
    backend = SqlBillingBackend(f"sqlite:///{folder / 'billing.db'}", lambda: data)
    try:
        claimable(backend)
        create(backend)
        sent(backend, f"{ACCOUNT}I")
        backend.post_remittance(
            remittance("T-1", clp(f"{ACCOUNT}I", 63_500, 40_000, cas("CO", "45", 23_500), icn="PCN-7"))
        )
    finally:
        backend.close()
    with serving_billing(folder) as address:
        yield address


def run(address: str, tmp_path: Path, *args: str) -> Result:
    """Run `hcsync claims ...` as the read-only caller, auditing into tmp_path."""
    reader = shared().local.client_settings(READER)
    env = {f"HCSYNC_{name.upper()}": str(value) for name, value in reader.items()}
    env |= {
        "HCSYNC_BILLING_TARGET": address,
        "HCSYNC_HOME_DIR": str(tmp_path),
        "HCSYNC_AUDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "HCSYNC_GRPC_TIMEOUT_S": "10",
        "HCSYNC_GRPC_RETRY_ATTEMPTS": "2",
    }
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(claims_app, list(args), env=env)
    finally:
        get_settings.cache_clear()


def audit(tmp_path: Path) -> list[tuple[str, tuple[str, ...], str, str]]:
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}")
    try:
        return [(r.what, r.objects, r.outcome, r.reason) for r in log.records()]
    finally:
        log.close()


def test_list_shows_the_claims_and_filters_them(billing_address: str, tmp_path: Path) -> None:
    every = run(billing_address, tmp_path, "list")
    assert every.exit_code == 0, every.output
    assert f"{ACCOUNT}I" in every.output and f"{ACCOUNT}P" in every.output
    assert "2 claim(s)" in every.output
    paid = run(billing_address, tmp_path, "list", "--status", "paid", "--json")
    assert paid.exit_code == 0, paid.output
    docs = [json.loads(line) for line in paid.output.splitlines()]
    assert [(d["claim_id"], d["paid_cents"], d["outstanding_cents"]) for d in docs] == [
        (f"{ACCOUNT}I", "40000", "0")
    ]
    assert FAMILY not in every.output + paid.output
    assert not (tmp_path / "audit.db").exists()  # nothing of a patient's was asked for: no audit
    by_account = run(billing_address, tmp_path, "list", "--account", ACCOUNT, "--reason", "T-42")
    assert by_account.exit_code == 0, by_account.output
    assert audit(tmp_path) == [("claims list", (f"{ACCOUNT}I", f"{ACCOUNT}P"), "shown", "T-42")]
    bad = run(billing_address, tmp_path, "list", "--status", "lost")
    assert bad.exit_code != 0


def test_show_audits_first_then_prints_the_claim(billing_address: str, tmp_path: Path) -> None:
    shown = run(billing_address, tmp_path, "show", f"{ACCOUNT}I", "--reason", "TICKET-9")
    assert shown.exit_code == 0, shown.output
    for expected in (FAMILY, MEMBER, "paid", "0450", "SENT", "T-1", "CO-45 235.00", "PCN-7"):
        assert expected in shown.output
    assert audit(tmp_path) == [("claims show", (f"{ACCOUNT}I",), "shown", "TICKET-9")]
    as_json = run(billing_address, tmp_path, "show", f"{ACCOUNT}P", "--json")
    document = json.loads(as_json.output)
    assert document["summary"]["status"] == "created"
    assert document["submission"]["claim"]["lines"][0]["procedure_code"] == "99222"
    missing = run(billing_address, tmp_path, "show", "NO-SUCH-CLAIM")
    assert missing.exit_code == 2
    assert "no claim NO-SUCH-CLAIM in billing" in missing.output
    assert audit(tmp_path)[-1][:3] == ("claims show", ("NO-SUCH-CLAIM",), "not found")


def test_show_prints_nothing_when_the_audit_cannot_be_written(billing_address: str, tmp_path: Path) -> None:
    (tmp_path / "audit.db").mkdir()  # a directory where the audit database should be
    shown = run(billing_address, tmp_path, "show", f"{ACCOUNT}I")
    assert shown.exit_code == 2
    assert "PHI not shown" in shown.output
    assert FAMILY not in shown.output and MEMBER not in shown.output


def test_a_billing_that_does_not_answer_is_a_clear_error(tmp_path: Path) -> None:
    result = run("127.0.0.1:9", tmp_path, "list")
    assert result.exit_code == 2
    assert "billing did not answer" in result.output
    assert "Traceback" not in result.output
