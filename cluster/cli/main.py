"""The `hcsync` command line."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from canonical.errors import ConfigurationError, HcsyncError, MessageError
from canonical.hl7v2.mapping import canonicalize
from canonical.hl7v2.parser import split_messages
from cluster.cli.audit import audit_app
from cluster.cli.claims import claims_app
from cluster.cli.exceptions import exceptions_app
from cluster.cli.masterdata import masterdata_app
from cluster.cli.messages import messages_app
from cluster.cli.refs import refs_app
from cluster.cli.scale import register as register_scale
from cluster.cli.schema import register as register_schema
from foundation.logmask import install
from foundation.settings import Settings, get_settings

app = typer.Typer(help="hcsync: keep the EHR, billing and the ERP in sync.", no_args_is_help=True)
app.add_typer(exceptions_app, name="exceptions", help="Find, fix and replay quarantined messages.")
app.add_typer(masterdata_app, name="masterdata", help="Validate, compare, load and roll back master data.")
app.add_typer(messages_app, name="messages", help="Find, inspect and replay received messages.")
app.add_typer(refs_app, name="refs", help="Resolve encounter references of ERP lines (audited).")
app.add_typer(audit_app, name="audit", help="Read the PHI access audit.")
app.add_typer(claims_app, name="claims", help="List and show claims and their lifecycle (billing).")
register_schema(app)
register_scale(app)
console = Console()
err_console = Console(stderr=True)


def _logging(settings: Settings) -> None:
    install(settings.log_level)  # root logging to stderr, every handler masking PHI


def _run_dir(settings: Settings) -> Path:
    from foundation.runs import new_run_dir

    return settings.run_dir if settings.run_dir is not None else new_run_dir(settings, "up")


@app.command()
def up() -> None:
    """Run the embedded stack in the foreground until Ctrl-C."""
    from cluster.stack import Stack

    settings = get_settings()
    _logging(settings)
    run_dir = _run_dir(settings)
    stack = Stack(settings, run_dir)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    # Ctrl-C while starting raises KeyboardInterrupt, and Stack.start stops what it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with console.status("starting the stack..."):
        stack.start()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    console.print(
        f"hcsync is up: broker {settings.bootstrap}, redis {settings.redis_location}, "
        f"billing {settings.billing_address}, erp {settings.erp_address}, "
        f"mllp {settings.mllp_host}:{settings.mllp_port}; logs in {run_dir}"
    )
    console.print("components are supervised (`hcsync status` shows them); press Ctrl-C to stop")
    try:
        while not stopping:
            # A component that dies is restarted by the stack's supervisor; say what happens.
            while not stack.events.empty():
                event = stack.events.get_nowait()
                style = "red" if "FAILED" in event else "yellow"
                err_console.print(f"[{style}]{escape(event)}[/]")
            time.sleep(0.5)
    finally:
        with console.status("stopping: gateways, forwarder, workers, adapters, Redis, broker..."):
            stack.stop()
    console.print("stopped")


@app.command()
def worker() -> None:
    """Run the Faust worker (started by `hcsync up`)."""
    from streams.worker import run_worker

    settings = get_settings()
    _logging(settings)
    run_dir = _run_dir(settings)
    raise typer.Exit(run_worker(settings, run_dir))


@app.command()
def serve(service: Annotated[str, typer.Argument(help="billing, erp or payer")]) -> None:
    """Run one gRPC service (started by `hcsync up`): billing, ERP, or the reference payer."""
    from adapters.server import serve as serve_service

    settings = get_settings()
    _logging(settings)
    if service not in ("billing", "erp", "payer"):
        raise typer.BadParameter("service must be billing, erp or payer")
    run_dir = _run_dir(settings)
    configured = settings.database_url(service)  # type: ignore[arg-type]  # with its password
    url = configured or f"sqlite:///{run_dir / (service + '.db')}"
    try:
        asyncio.run(serve_service(service, settings, url))  # type: ignore[arg-type]
    except ConfigurationError as exc:  # no TLS or token settings: refuse, naming them
        err_console.print(f"[red]{service} adapter not started[/]: {escape(str(exc))}")
        raise typer.Exit(2) from None


@app.command()
def mllp() -> None:
    """Run the MLLP gateway (started by `hcsync up`): HL7 over TCP, ACK once in the message store."""
    from adapters.mllp.run import run_gateway

    settings = get_settings()
    _logging(settings)
    asyncio.run(run_gateway(settings))


@app.command()
def forwarder() -> None:
    """Run the forwarder (started by `hcsync up`): stored messages to the broker, outcomes to the store."""
    from adapters.inbound.forwarder import run_forwarder

    settings = get_settings()
    _logging(settings)
    asyncio.run(run_forwarder(settings, settings.run_dir))


@app.command()
def inbox() -> None:
    """Run the inbox watcher (started by `hcsync up`): delivered files into the message store."""
    from adapters.inbound.inbox import run_inbox

    settings = get_settings()
    _logging(settings)
    asyncio.run(run_inbox(settings, settings.run_dir))


def _send_mllp(settings: Settings, target: str, messages: list[bytes]) -> None:
    from adapters.mllp.client import MllpClientError, client_tls_context, send_mllp

    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter("--mllp takes HOST:PORT", param_hint="--mllp")
    try:
        # TLS, and the client certificate of mutual TLS, from HCSYNC_MLLP_CLIENT_TLS_* when set.
        results = asyncio.run(send_mllp(host, int(port), messages, tls=client_tls_context(settings)))
    except MllpClientError as exc:
        err_console.print(f"[red]MLLP send stopped after {len(exc.results)} ACK(s)[/]: {exc}")
        raise typer.Exit(2) from None
    except HcsyncError as exc:  # e.g. an answer that is not an MLLP frame of acceptable size
        err_console.print(f"[red]MLLP send stopped[/]: {exc}")
        raise typer.Exit(2) from None
    refused = [r for r in results if not r.positive]
    for result in refused:
        sys.stderr.write(f"{result.control_id}: {result.code} {result.text}\n")
    console.print(
        f"{len(results) - len(refused)} of {len(results)} message(s) acknowledged positively by {target}"
    )
    raise typer.Exit(1 if refused else 0)


# What `parse` says of a FHIR file, until its resources are mapped.
_NOT_READ = "this version of hcsync maps HL7 v2 and X12 to canonical models (FHIR is not yet mapped)"


@app.command()
def send(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
    mllp_target: Annotated[
        str | None, typer.Option("--mllp", help="Send over MLLP to HOST:PORT and wait for each ACK.")
    ] = None,
) -> None:
    """Store HL7 v2 files and X12 interchanges for the forwarder, or send HL7 over MLLP with --mllp."""
    from cluster.send import read_inputs, store_messages

    settings = get_settings()
    # By content, never by name: an X12 file goes in as interchanges, never as a broken HL7 message.
    inputs = read_inputs(files)
    if inputs.refused:
        for path, why in inputs.refused:
            err_console.print(f"[red]not sent[/]: {escape(str(path))}: {escape(why)}")
        err_console.print("nothing was sent")
        raise typer.Exit(2)
    messages, interchanges = inputs.messages, inputs.interchanges
    if mllp_target is not None:
        if interchanges:
            err_console.print("[red]not sent[/]: MLLP carries HL7 v2 only; send X12 files without --mllp")
            raise typer.Exit(2)
        _send_mllp(settings, mllp_target, messages)
        return
    try:
        report = store_messages(settings, messages, interchanges=interchanges)
    except HcsyncError as exc:
        err_console.print(f"[red]not stored[/]: {exc}")
        raise typer.Exit(2) from None
    kinds = []
    if messages:
        kinds.append(f"{len(messages)} HL7 v2 message(s) to {settings.topic('raw.hl7v2')}")
    if interchanges:
        controls = ", ".join(x.control for x in interchanges[:5]) + (" ..." if len(interchanges) > 5 else "")
        kinds.append(
            f"{len(interchanges)} X12 interchange(s) (ISA13 {controls}) to {settings.topic('raw.x12')}"
        )
    console.print(
        f"stored {report.stored} message(s) in the message store"
        + (f", {report.duplicates} already stored" if report.duplicates else "")
        + (f", {report.conflicts} conflict(s) (see `hcsync exceptions`)" if report.conflicts else "")
        + f"; the forwarder sends {'; '.join(kinds) or 'nothing'}"
    )


@app.command()
def parse(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
    masterdata: Annotated[
        Path | None,
        typer.Option(
            "--masterdata",
            exists=True,
            file_okay=False,
            help="Also enrich with this master-data directory, as the transform actors do (MD- rules).",
        ),
    ] = None,
) -> None:
    """Print the canonical events of HL7 files and the canonical models of X12 files as JSON lines.

    Errors go to stderr (exit 1). An X12 set hcsync does not handle, or an acknowledgment, is named on
    stderr and is not an error.
    """
    from actors.enrich import enrich
    from canonical.detect import Standard, detect
    from canonical.hl7v2.parser import parse_message
    from canonical.reference_files import MasterDataFileError, read_set

    try:
        data = read_set(masterdata) if masterdata is not None else None
    except MasterDataFileError as exc:
        err_console.print(f"[red]master data not usable[/]: {exc}")
        raise typer.Exit(2) from None
    failures = 0
    for path in files:
        content = path.read_bytes()
        found = detect(content)
        if found.standard is Standard.X12:
            failures += _parse_x12(path, content)
            continue
        if found.standard is Standard.FHIR:
            failures += 1
            sys.stderr.write(f"{path}: not parsed: it holds {found.describe()}: {_NOT_READ}\n")
            continue
        for index, raw in enumerate(split_messages(content), 1):
            try:
                msg = parse_message(raw)
                events = canonicalize(msg)
                if data is not None:
                    events = enrich(msg, events, data)
            except MessageError as exc:
                failures += 1
                sys.stderr.write(f"{path}#{index}: {exc}\n")
                continue
            for event in events:
                sys.stdout.write(event.model_dump_json() + "\n")
    raise typer.Exit(1 if failures else 0)


def _parse_x12(path: Path, content: bytes) -> int:
    """Print the canonical models of every set of an X12 file as JSON lines; return the error count.

    Each line names the set (ISA13, GS06, ST02, ST01, guide) and the model; errors, and the sets hcsync
    does not map (acknowledgments, other transactions and versions), go to stderr.
    """
    from canonical.x12.read import ReadStatus, read_file

    try:
        readings = read_file(content, str(path))
    except MessageError as exc:
        sys.stderr.write(f"{path}: {exc}\n")
        return 1
    errors = 0
    for reading in readings:
        if reading.status is ReadStatus.ERROR:
            errors += len(reading.errors)
            for fault in reading.errors:
                sys.stderr.write(f"{fault.describe()}\n")
            continue
        if reading.status is not ReadStatus.MAPPED:
            sys.stderr.write(f"{path}: {reading.describe()}\n")
            continue
        where = {
            "isa13": reading.isa13,
            "gs06": reading.gs06,
            "st02": reading.st02,
            "st01": reading.st01,
            "guide": reading.guide,
        }
        for model in reading.models:
            line = {**where, "model": type(model).__name__, "value": model.model_dump(mode="json")}
            sys.stdout.write(json.dumps(line) + "\n")
    return errors


@app.command()
def report(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Print the state of a running stack."""
    from cluster.render import print_report
    from cluster.report import collect

    settings = get_settings()
    try:
        result = asyncio.run(collect(settings))
    except HcsyncError as exc:
        err_console.print(f"[red]cannot read the stack[/]: {exc}")
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        print_report(result, console)


@app.command()
def demo(
    encounters: Annotated[int, typer.Option(min=1, help="Encounters in the synthetic day.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 7,
    timeout_s: Annotated[float, typer.Option(help="How long to wait for the pipeline to drain.")] = 600.0,
    late_charges: Annotated[
        int,
        typer.Option(min=0, help="Late charges with an unmapped code for the governance act (0: skip it)."),
    ] = 3,
) -> None:
    """Start the embedded stack, replay a synthetic hospital day, reconcile and stop."""
    from cluster.demo import run_demo

    settings = get_settings()
    ok = run_demo(settings, encounters, seed, timeout_s, console, late_charges)
    raise typer.Exit(0 if ok else 1)


def main() -> None:
    """Entry point of the `hcsync` console script."""
    app()
