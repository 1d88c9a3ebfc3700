"""`hcsync claims`: the claims billing built and where each is in its life (issue 14).

Both commands ask the BillingAdapter over gRPC, as `hcsync status` does: with the settings' client
credentials, else the read-only caller of the running embedded stack (adapters.security.client_files).
They only read (GetClaimList and GetClaim need the billing read scope).

``list`` shows no patient data beyond the claim and account ids; filtering by ``--account`` tells which
claims one patient's visit has, so that is audited like `hcsync messages list --visit`. ``show`` prints the
subscriber and patient (names, member id, birth date, address): it writes the PHI access audit record
first, with ``--reason``, and shows nothing when the audit cannot be written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.markup import escape
from rich.table import Table

from adapters.billing.revenue_cycle import ClaimLifecycle
from adapters.clients import BillingClient
from canonical.errors import ConfigurationError, NotRetryableError, RetryableError
from cluster.cli.audit import ReasonOption, record_access
from cluster.cli.console import fail, stdout_console, when
from foundation.settings import get_settings
from proto import billing_pb2

__all__ = ["claims_app"]

claims_app = typer.Typer(help="List and show claims and their lifecycle (billing).", no_args_is_help=True)

T = TypeVar("T")
DEFAULT_LIMIT = 50  # claims `list` shows unless told
_UNKNOWN_RULE = "BILLING-CLAIM-UNKNOWN"


def _money(cents: int) -> str:
    """Render cents as currency units with two decimals (negative with a sign)."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def _unknown(exc: NotRetryableError) -> bool:
    """Whether billing answered that it has no such claim."""
    cause = exc.__cause__
    return (
        isinstance(cause, grpc.aio.AioRpcError)
        and cause.code() == grpc.StatusCode.FAILED_PRECONDITION
        and (cause.details() or "").startswith(f"{_UNKNOWN_RULE}:")
    )


async def _list(request: billing_pb2.ClaimListRequest) -> billing_pb2.ClaimList:
    async with BillingClient(get_settings()) as client:
        return await client.list_claims(request)


async def _get(claim_id: str) -> billing_pb2.GetClaimResponse:
    async with BillingClient(get_settings()) as client:
        return await client.get_claim(billing_pb2.GetClaimRequest(claim_id=claim_id))


def _ask(work: Coroutine[Any, Any, T]) -> T:
    """Run one billing call; a failure ends the command with what went wrong (never a traceback)."""
    try:
        return asyncio.run(work)
    except ConfigurationError as exc:
        raise fail(f"cannot reach billing: {exc}") from None
    except RetryableError as exc:
        raise fail(f"billing did not answer: {exc}") from None


def _doc(message: billing_pb2.ClaimSummary | billing_pb2.GetClaimResponse) -> dict[str, object]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


@claims_app.command("list")
def list_claims(
    status: Annotated[
        str | None, typer.Option(help=f"Lifecycle status: {', '.join(ClaimLifecycle.ALL)}.")
    ] = None,
    account: Annotated[
        str | None, typer.Option(help="Account (encounter) id: the claims of one visit (audited).")
    ] = None,
    payer: Annotated[str | None, typer.Option(help="Payer id (X12 payer identifier).")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="Show at most this many claims.")
    ] = DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
    reason: ReasonOption = None,
) -> None:
    """List claims, most recently changed first, with their amounts settled and outstanding."""
    if status is not None and status not in ClaimLifecycle.ALL:
        raise typer.BadParameter(f"must be one of {', '.join(ClaimLifecycle.ALL)}", param_hint="--status")
    request = billing_pb2.ClaimListRequest(
        status=status or "", encounter_id=account or "", payer_id=payer or "", limit=limit
    )
    try:
        claims = list(_ask(_list(request)).claims)
    except NotRetryableError as exc:
        raise fail(str(exc)) from None
    if claims and account is not None:
        record_access("claims list", [claim.claim_id for claim in claims], "shown", reason)
    if as_json:
        sys.stdout.write("".join(json.dumps(_doc(claim)) + "\n" for claim in claims))
        return
    table = Table(title=f"{len(claims)} claim(s)")
    for column in ("claim id", "account", "type", "status", "freq", "payer", "facility"):
        table.add_column(column, no_wrap=True)
    for column in ("billed", "paid", "adjusted", "outstanding"):
        table.add_column(column, justify="right")
    table.add_column("changed (UTC)", no_wrap=True)
    for claim in claims:
        table.add_row(
            escape(claim.claim_id),
            escape(claim.encounter_id),
            claim.claim_type,
            claim.status,
            claim.frequency,
            escape(claim.payer_id),
            escape(claim.facility),
            _money(claim.total_charge_cents),
            _money(claim.paid_cents),
            _money(claim.adjusted_cents),
            _money(claim.outstanding_cents),
            when(claim.updated_at.ToDatetime(dt.UTC)),
        )
    stdout_console().print(table)


@claims_app.command("show")
def show(
    claim_id: Annotated[str, typer.Argument(help="Claim id (CLM01: the account id and I or P).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    reason: ReasonOption = None,
) -> None:
    """Show one claim: what its 837 carries (PHI: audited), its lifecycle, payments and adjustments."""
    try:
        found = _ask(_get(claim_id))
    except NotRetryableError as exc:
        if _unknown(exc):
            record_access("claims show", [claim_id], "not found", reason)
            raise fail(f"no claim {claim_id} in billing") from None
        raise fail(str(exc)) from None
    record_access("claims show", [claim_id], "shown", reason)
    if as_json:
        sys.stdout.write(json.dumps(_doc(found), indent=2) + "\n")
        return
    _print_claim(found)


def _print_claim(found: billing_pb2.GetClaimResponse) -> None:
    console = stdout_console()
    summary, submission = found.summary, found.submission
    claim = submission.claim
    console.print(
        f"claim {escape(claim.claim_id)} ({claim.claim_type}, frequency {claim.frequency}, version "
        f"{summary.version}): [bold]{summary.status}[/]"
    )
    console.print(
        f"account {escape(claim.encounter_id)}, facility {escape(summary.facility)}, billing NPI "
        f"{claim.billing_provider_npi}, payer {escape(submission.payer.payer_id)} "
        f"{escape(submission.payer.name)}"
    )
    subscriber = submission.subscriber
    console.print(
        f"subscriber {escape(subscriber.family_name)}, {escape(subscriber.given_name)} (member "
        f"{escape(subscriber.member_id)}, born {subscriber.birth_date or '?'}), relationship "
        f"{submission.relationship}, group {escape(submission.group_number) or '-'}"
    )
    if submission.HasField("patient"):
        patient = submission.patient
        console.print(
            f"patient {escape(patient.family_name)}, {escape(patient.given_name)} "
            f"(born {patient.birth_date or '?'})"
        )
    period = f", statement {claim.statement_from} to {claim.statement_to}" if claim.statement_from else ""
    console.print(
        f"diagnoses {', '.join(claim.diagnosis_codes)}{f', DRG {claim.drg}' if claim.drg else ''}{period}"
    )
    if claim.payer_claim_control_number:
        console.print(f"replaces payer claim {escape(claim.payer_claim_control_number)}")
    console.print(
        f"billed {_money(summary.total_charge_cents)}, paid {_money(summary.paid_cents)}, adjusted "
        f"{_money(summary.adjusted_cents)} (patient {_money(summary.patient_responsibility_cents)}), "
        f"outstanding {_money(summary.outstanding_cents)}"
    )
    lines = Table(title="lines")
    for column in ("#", "revenue", "procedure", "units", "charge", "service date", "charge code"):
        lines.add_column(column, no_wrap=True)
    for line in claim.lines:
        lines.add_row(
            str(line.line_number),
            line.revenue_code,
            escape(line.procedure_code),
            str(line.units),
            _money(line.charge_cents),
            line.service_date,
            escape(line.charge_code),
        )
    console.print(lines)
    history = Table(title="history")
    for column in ("when (UTC)", "event", "status", "ISA13/GS06/ST02", "ack", "detail"):
        history.add_column(column)
    for event in found.history:
        numbers = "/".join(
            n
            for n in (
                event.interchange_control_number,
                event.group_control_number,
                event.transaction_set_control_number,
            )
            if n
        )
        history.add_row(
            when(event.occurred_at.ToDatetime(dt.UTC)),
            event.event,
            event.status,
            escape(numbers),
            escape(event.ack_code),
            escape(event.error_text or event.remittance_id),
        )
    console.print(history)
    for payment in found.payments:
        adjustments = ", ".join(
            f"{a.group}-{escape(a.reason_code)} {_money(a.amount_cents)}" for a in payment.adjustments
        )
        console.print(
            f"835 trace {escape(payment.trace_number)} of {payment.payment_date}: "
            f"CLP02 {payment.clp_status}, "
            f"charge {_money(payment.charge_cents)}, paid {_money(payment.paid_cents)}, patient "
            f"{_money(payment.patient_responsibility_cents)}, payer claim "
            f"{escape(payment.payer_claim_control_number) or '-'}; {adjustments or 'no adjustments'}"
        )
