"""Billing writes one call each against ApplyBatch: what one transaction per batch saves.

    .venv/bin/python -m bench.billing_bulk [--commands N] [--batch N] [--repeat N] [--no-grpc]

N commands (2,000 by default: an account upsert then a coding update for each of N/2 encounters, the
order the encounter agent emits them) go to a fresh SQLite billing database (WAL, as the adapter opens it),
side by side:

- **backend, one call each**: ``SqlBillingBackend.upsert_account`` / ``update_coding``, one write
  transaction per command (what the billing process did per gRPC call);
- **backend, ApplyBatch**: ``SqlBillingBackend.apply_batch`` with ``--batch`` commands per call (200, the
  dispatcher's default batch), one write transaction per call;
- the same two over gRPC (``python -m adapters.server billing`` in a child process, our BillingClient here,
  one call in flight at a time as the dispatcher sends them), unless ``--no-grpc``, twice: in plaintext
  without tokens (``HCSYNC_GRPC_INSECURE``, the baseline), and as in the stack, mutual TLS and a bearer
  token per call from credentials made for the run (adapters/credentials.py). The last lines say what
  TLS and tokens cost per command.

For each: wall milliseconds per command, CPU milliseconds per command (this process for the backend
runs; the server process, and the client, for the gRPC runs), and the transactions committed. Each run
is repeated ``--repeat`` times (3), the runs interleaved, on a fresh database each time, and the table
shows the best (lowest) wall and CPU figures of each: on a shared machine the other loads only ever add.
Every run must end with N/2 accounts and N/2 codings; the bench says so and fails otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, event

from adapters.billing.backend import SqlBillingBackend
from adapters.clients import BillingClient
from adapters.convert import account_from, coding_request_from
from adapters.credentials import WORKER, LocalCredentials, issue_local
from canonical.models import CodingUpdate, Diagnosis, Encounter, Patient, PatientClass, Procedure
from foundation.processes import free_port
from foundation.settings import Settings
from proto import billing_pb2

_READY_TIMEOUT_S = 60.0
WHEN = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)

Command = billing_pb2.UpsertAccountRequest | billing_pb2.UpdateCodingRequest


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    commands: int
    seconds: float
    cpu_s: float  # the process that applies the commands: this one, or the server
    client_cpu_s: float | None  # over gRPC, this process
    transactions: int | None
    accounts: int
    codings: int

    def per_command_ms(self, seconds: float) -> float:
        return 1000 * seconds / self.commands


def workload(count: int) -> list[Command]:
    """An upsert then a coding update per encounter, ``count`` commands in all."""
    commands: list[Command] = []
    for n in range(count // 2):
        encounter = Encounter(
            encounter_id=f"GH:V{n:06d}",
            facility="GH",
            department="ICU",
            patient_class=PatientClass.INPATIENT,
            attending_provider_id="1234567890",
            admitted_at=WHEN,
            account_number=f"ACC-{n:06d}",
        )
        patient = Patient(mrn=f"MRN-{n:06d}", assigning_authority="GH", family_name="Doe", given_name="Jo")
        account = account_from(
            encounter, patient, "admitted", f"evt-u-{n}", f"corr-{n}", state_version=1, patient_as_of=WHEN
        )
        commands.append(billing_pb2.UpsertAccountRequest(idempotency_key=f"u-{n}", account=account))
        coding = CodingUpdate(
            encounter_id=encounter.encounter_id,
            diagnoses=(Diagnosis(sequence=1, code="I50.9"), Diagnosis(sequence=2, code="E11.9")),
            procedures=(Procedure(sequence=1, code="99213"),),
        )
        commands.append(coding_request_from(coding, WHEN, f"d-{n}", f"evt-d-{n}", f"corr-{n}"))
    return commands


def batches(commands: Sequence[Command], size: int) -> list[billing_pb2.BillingBatchRequest]:
    """The commands as ApplyBatch requests of ``size`` items."""
    requests = []
    for start in range(0, len(commands), size):
        request = billing_pb2.BillingBatchRequest(idempotency_key=f"b-{start}")
        for command in commands[start : start + size]:
            if isinstance(command, billing_pb2.UpsertAccountRequest):
                request.items.add(upsert_account=command)
            else:
                request.items.add(update_coding=command)
        requests.append(request)
    return requests


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _check(backend: SqlBillingBackend) -> tuple[int, int]:
    totals = backend.totals()
    return totals.account_count, totals.coded_account_count


def _commits(run: Callable[[], None]) -> int:
    """Run ``run`` and return the transactions committed meanwhile (on any engine: only one is open)."""
    commits = 0

    def count(_connection: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(Engine, "commit", count)
    try:
        run()
    finally:
        event.remove(Engine, "commit", count)
    return commits


def measure_backend(name: str, commands: Sequence[Command], batch: int, workdir: Path) -> Result:
    """Apply the commands straight through a backend in this process: one call each, or in batches."""
    backend = SqlBillingBackend(f"sqlite:///{workdir / (name.replace(' ', '-') + '.db')}")
    requests = batches(commands, batch) if batch else []

    def run() -> None:
        if batch:
            for request in requests:
                backend.apply_batch(request)
            return
        for command in commands:
            if isinstance(command, billing_pb2.UpsertAccountRequest):
                backend.upsert_account(command)
            else:
                backend.update_coding(command)

    try:
        process = psutil.Process()
        cpu_before, started = _cpu_s(process), time.perf_counter()
        transactions = _commits(run)
        seconds, cpu = time.perf_counter() - started, _cpu_s(process) - cpu_before
        accounts, codings = _check(backend)
    finally:
        backend.close()
    return Result(name, len(commands), seconds, cpu, None, transactions, accounts, codings)


def _client_settings(local: LocalCredentials | None, **fields: object) -> Settings:
    """The bench's client settings: a writer's certificate and token (None: plaintext, the baseline)."""
    if local is None:
        return Settings.model_validate(fields | {"grpc_insecure": True})
    return local.apply(Settings.model_validate(fields), **local.client_settings(WORKER))


async def _send_grpc(
    local: LocalCredentials | None, address: str, commands: Sequence[Command], batch: int
) -> None:
    settings = _client_settings(local, grpc_timeout_s=60.0)
    async with BillingClient(settings, address) as client:
        await client.wait_ready(_READY_TIMEOUT_S)
        if batch:
            for request in batches(commands, batch):
                response = await client.apply_batch(request)
                if any(result.HasField("error") for result in response.results):
                    raise SystemExit("ApplyBatch refused an item")
            return
        for command in commands:
            if isinstance(command, billing_pb2.UpsertAccountRequest):
                await client.upsert_account(command)
            else:
                await client.update_coding(command)


async def _ready(local: LocalCredentials | None, address: str) -> None:
    async with BillingClient(_client_settings(local), address) as client:
        await client.wait_ready(_READY_TIMEOUT_S)


def measure_grpc(name: str, commands: Sequence[Command], batch: int, workdir: Path) -> Result:
    """Apply the commands over gRPC to an adapter in a child process, mutual TLS and tokens as in a stack."""
    return _measure_grpc(name, commands, batch, workdir, secure=True)


def measure_plaintext(name: str, commands: Sequence[Command], batch: int, workdir: Path) -> Result:
    """The same in plaintext without tokens (HCSYNC_GRPC_INSECURE): the baseline of what security costs."""
    return _measure_grpc(name, commands, batch, workdir, secure=False)


def _measure_grpc(
    name: str, commands: Sequence[Command], batch: int, workdir: Path, *, secure: bool
) -> Result:
    database_url = f"sqlite:///{workdir / (name.replace(' ', '-') + '.db')}"
    port = free_port()
    local = issue_local(workdir / "grpc", services=("billing",)) if secure else None
    server_settings = local.server_settings("billing") if local is not None else {"grpc_insecure": True}
    server_env = {f"HCSYNC_{k.upper()}": str(v) for k, v in server_settings.items()}
    env = {**os.environ, **server_env, "HCSYNC_LOG_LEVEL": os.environ.get("HCSYNC_LOG_LEVEL", "INFO")}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.server",
            "billing",
            "--database-url",
            database_url,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    address = f"127.0.0.1:{port}"
    try:
        asyncio.run(_ready(local, address))
        server, client = psutil.Process(child.pid), psutil.Process()
        server_before, client_before = _cpu_s(server), _cpu_s(client)
        started = time.perf_counter()
        asyncio.run(_send_grpc(local, address, commands, batch))
        seconds = time.perf_counter() - started
        server_cpu, client_cpu = _cpu_s(server) - server_before, _cpu_s(client) - client_before
    finally:
        child.terminate()
        child.wait(timeout=60)
    backend = SqlBillingBackend(database_url)
    try:
        accounts, codings = _check(backend)
    finally:
        backend.close()
    return Result(name, len(commands), seconds, server_cpu, client_cpu, None, accounts, codings)


def best(results: Sequence[Result]) -> Result:
    """The lowest wall time and the lowest CPU times of repeated runs of one kind."""
    first = results[0]
    clients = [r.client_cpu_s for r in results if r.client_cpu_s is not None]
    return Result(
        first.name,
        first.commands,
        min(r.seconds for r in results),
        min(r.cpu_s for r in results),
        min(clients) if clients else None,
        first.transactions,
        first.accounts,
        first.codings,
    )


def table(results: Sequence[Result], batch: int) -> Table:
    out = Table(title=f"billing upserts + codings: one call each vs ApplyBatch of {batch}")
    columns = ("run", "commands", "ms/cmd", "CPU ms/cmd", "client CPU ms/cmd", "transactions", "cmd/s")
    for column in columns:
        out.add_column(column, justify="left" if column == "run" else "right")
    for r in results:
        out.add_row(
            r.name,
            f"{r.commands:,}",
            f"{r.per_command_ms(r.seconds):.3f}",
            f"{r.per_command_ms(r.cpu_s):.3f}",
            "-" if r.client_cpu_s is None else f"{r.per_command_ms(r.client_cpu_s):.3f}",
            "-" if r.transactions is None else f"{r.transactions:,}",
            f"{r.commands / r.seconds:,.0f}",
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.billing_bulk",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--commands", type=int, default=2_000, help="upserts + codings in all (even)")
    parser.add_argument("--batch", type=int, default=200, help="commands per ApplyBatch call")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, the best one shown")
    parser.add_argument("--no-grpc", action="store_true", help="the backend runs only")
    args = parser.parse_args(argv)
    if args.commands < 2 or args.batch < 1 or args.repeat < 1:
        parser.error("--commands must be at least 2, --batch and --repeat at least 1")
    console = Console(width=None if sys.stdout.isatty() else 120)
    commands = workload(args.commands)
    console.print(f"[bold]hcsync billing bulk bench[/]: {os.cpu_count()} CPUs, {len(commands):,} commands")
    runs: list[tuple[str, Callable[[str, Sequence[Command], int, Path], Result], int]] = [
        ("backend, one call each", measure_backend, 0),
        (f"backend, ApplyBatch of {args.batch}", measure_backend, args.batch),
    ]
    if not args.no_grpc:
        runs += [
            ("gRPC plaintext, one call each", measure_plaintext, 0),
            (f"gRPC plaintext, ApplyBatch of {args.batch}", measure_plaintext, args.batch),
            ("gRPC, one call each", measure_grpc, 0),
            (f"gRPC, ApplyBatch of {args.batch}", measure_grpc, args.batch),
        ]
    every: dict[str, list[Result]] = {name: [] for name, _, _ in runs}
    for attempt in range(1, args.repeat + 1):
        for name, measure, batch in runs:
            with (
                tempfile.TemporaryDirectory(prefix="hcsync-billing-bulk-") as workdir,
                console.status(f"{name} ({attempt} of {args.repeat}) ..."),
            ):
                every[name].append(measure(name, commands, batch, Path(workdir)))
    results = [best(measured) for measured in every.values()]
    console.print(table(results, args.batch))
    expected = len(commands) // 2
    wrong = [r for m in every.values() for r in m if (r.accounts, r.codings) != (expected, expected)]
    for r in wrong:
        console.print(
            f"[red]{r.name}: {r.accounts:,} accounts and {r.codings:,} codings, expected {expected:,}[/]"
        )
    if wrong:
        raise SystemExit(1)
    console.print(f"every run stored {expected:,} accounts and {expected:,} codings")
    for kind in ("backend", "gRPC plaintext", "gRPC,"):
        pair = [r for r in results if r.name.startswith(kind)]
        if len(pair) == 2:
            single, batched = pair
            console.print(
                f"{kind.rstrip(',')}: ApplyBatch {single.per_command_ms(single.seconds):.2f} -> "
                f"{batched.per_command_ms(batched.seconds):.2f} ms per command "
                f"({single.seconds / batched.seconds:.2f}x the rate), billing CPU "
                f"{single.per_command_ms(single.cpu_s):.2f} -> "
                f"{batched.per_command_ms(batched.cpu_s):.2f} ms per command"
            )
    by_name = {r.name: r for r in results}
    for shape in ("one call each", f"ApplyBatch of {args.batch}"):
        plain, secure = by_name.get(f"gRPC plaintext, {shape}"), by_name.get(f"gRPC, {shape}")
        if plain is not None and secure is not None:
            console.print(
                f"mutual TLS and tokens, {shape}: {plain.per_command_ms(plain.seconds):.2f} -> "
                f"{secure.per_command_ms(secure.seconds):.2f} ms per command; billing CPU "
                f"{plain.per_command_ms(plain.cpu_s):.2f} -> {secure.per_command_ms(secure.cpu_s):.2f}, "
                f"client CPU {plain.per_command_ms(plain.client_cpu_s or 0):.3f} -> "
                f"{secure.per_command_ms(secure.client_cpu_s or 0):.3f}"
            )


if __name__ == "__main__":
    main()
