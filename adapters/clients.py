"""Async gRPC clients of the BillingAdapter and the ErpAdapter, with deadlines and retries.

Every call has a deadline of ``settings.grpc_timeout_s``. UNAVAILABLE, DEADLINE_EXCEEDED and
RESOURCE_EXHAUSTED are retried with exponential back-off, up to ``settings.grpc_retry_attempts``
attempts, then raise :class:`RetryableError`; UNAUTHENTICATED and PERMISSION_DENIED (the caller's token
or certificate) raise :class:`ConfigurationError`; any other failure raises :class:`NotRetryableError`.
Retrying is safe because every write the adapters accept is idempotent on a key in the request.
Channels use TLS and carry the bearer token of the settings (adapters/security.py).
Create a client inside the event loop that uses it (grpc.aio channels belong to one loop).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.message import Message

from adapters.security import secure_aio_channel
from canonical.errors import ConfigurationError, NotRetryableError, RetryableError, StackError
from foundation.settings import Settings
from proto import billing_pb2, billing_pb2_grpc, erp_pb2, erp_pb2_grpc, payer_pb2, payer_pb2_grpc

__all__ = [
    "CREDENTIAL_CODES",
    "RETRYABLE_CODES",
    "BillingClient",
    "ErpClient",
    "PayerClient",
    "item_refusal",
]

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Message)

RETRYABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
# The caller's credentials were refused: the operator's to fix, never the data's. Raised as
# ConfigurationError, so a dispatcher stalls and retries (picking up a fixed token file) instead of
# quarantining every command.
CREDENTIAL_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
# First back-off pause; it doubles per attempt up to the cap, with jitter so clients do not retry in step.
_BACKOFF_S = 0.05
_BACKOFF_CAP_S = 2.0
# Pause between readiness probes in wait_ready.
_READY_POLL_S = 0.1
_CHANNEL_OPTIONS = [
    # grpc's own reconnect back-off starts at 1 s; shorter, a restarted adapter is found sooner.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class _AdapterClient:
    """One grpc.aio channel to one adapter, and the retry loop its calls share."""

    _kind = "adapter"

    def __init__(
        self,
        address: str,
        settings: Settings,
        *,
        backoff_s: float = _BACKOFF_S,
        backoff_cap_s: float = _BACKOFF_CAP_S,
    ) -> None:
        self.address = address
        self._timeout_s = settings.grpc_timeout_s
        self._attempts = settings.grpc_retry_attempts
        self._backoff_s = backoff_s
        self._backoff_cap_s = backoff_cap_s
        # TLS and the bearer token of the settings (ConfigurationError when there are none).
        self._channel = secure_aio_channel(address, settings, options=_CHANNEL_OPTIONS)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(
        self,
        rpc: str,
        method: Callable[..., Awaitable[Any]],
        request: Message,
        response_type: type[R],
        *,
        timeout_s: float | None = None,
        attempts: int | None = None,
    ) -> R:
        """Call ``method`` with a deadline, retrying transient failures with exponential back-off."""
        pause = self._backoff_s
        tries = attempts or self._attempts
        for attempt in range(1, tries + 1):
            try:
                response = await method(request, timeout=timeout_s or self._timeout_s)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in CREDENTIAL_CODES:
                    raise ConfigurationError(
                        f"{rpc} to {self._kind} at {self.address} refused this caller's credentials: "
                        f"{code.name}: {exc.details()} (HCSYNC_GRPC_TOKEN_FILE, HCSYNC_GRPC_CLIENT_CERT_FILE)"
                    ) from exc
                if code not in RETRYABLE_CODES:
                    raise NotRetryableError(
                        f"{rpc} to {self._kind} at {self.address} failed: {code.name}: {exc.details()}"
                    ) from exc
                if attempt == tries:
                    raise RetryableError(
                        f"{rpc} to {self._kind} at {self.address} failed after {attempt} attempts: "
                        f"{code.name}: {exc.details()}"
                    ) from exc
                log.info("%s to %s: %s, attempt %d of %d", rpc, self.address, code.name, attempt, tries)
                await asyncio.sleep(pause * random.uniform(0.5, 1.0))
                pause = min(pause * 2, self._backoff_cap_s)
                continue
            if not isinstance(response, response_type):
                raise NotRetryableError(
                    f"{rpc} to {self._kind} at {self.address} answered {type(response).__name__}, "
                    f"expected {response_type.__name__}"
                )
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _wait_ready(
        self, rpc: str, probe: Callable[..., Awaitable[Any]], request: Message, timeout_s: float
    ) -> None:
        """Call the read-only ``probe`` until it succeeds; raise StackError when ``timeout_s`` runs out."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StackError(f"{self._kind} at {self.address} not ready after {timeout_s}s: {last}")
            try:
                # wait_for_ready queues the call until the channel connects instead of failing fast.
                await probe(request, timeout=min(remaining, self._timeout_s), wait_for_ready=True)
                return
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                last = f"{rpc}: {code.name}: {exc.details()}"
                if code not in RETRYABLE_CODES:
                    # Something answers but cannot serve this (another service on the port, say).
                    raise StackError(f"{self._kind} at {self.address} is not serving: {last}") from exc
            await asyncio.sleep(min(_READY_POLL_S, max(deadline - time.monotonic(), 0)))


class BillingClient(_AdapterClient):
    """Client of hcsync.billing.v1.BillingAdapter."""

    _kind = "billing adapter"

    def __init__(
        self,
        settings: Settings,
        address: str | None = None,
        *,
        backoff_s: float = _BACKOFF_S,
        backoff_cap_s: float = _BACKOFF_CAP_S,
    ) -> None:
        super().__init__(
            address or settings.billing_address, settings, backoff_s=backoff_s, backoff_cap_s=backoff_cap_s
        )
        self._stub = billing_pb2_grpc.BillingAdapterStub(self._channel)

    async def upsert_account(
        self, req: billing_pb2.UpsertAccountRequest
    ) -> billing_pb2.UpsertAccountResponse:
        """Create or update an account; a replay returns DUPLICATE with the original version."""
        return await self._call(
            "UpsertAccount", self._stub.UpsertAccount, req, billing_pb2.UpsertAccountResponse
        )

    async def post_charges(self, req: billing_pb2.PostChargesRequest) -> billing_pb2.PostChargesResponse:
        """Post charges; each result is ACCEPTED, DUPLICATE (original posting_id) or REJECTED (reason)."""
        return await self._call("PostCharges", self._stub.PostCharges, req, billing_pb2.PostChargesResponse)

    async def update_coding(self, req: billing_pb2.UpdateCodingRequest) -> billing_pb2.UpdateCodingResponse:
        """Replace an encounter's coding; APPLIED, STALE (a later one is stored) or DUPLICATE."""
        return await self._call(
            "UpdateCoding", self._stub.UpdateCoding, req, billing_pb2.UpdateCodingResponse
        )

    async def merge_patient(self, req: billing_pb2.MergePatientRequest) -> billing_pb2.MergePatientResponse:
        """Merge a prior patient identifier into the surviving one; MERGED or DUPLICATE, accounts moved."""
        return await self._call(
            "MergePatient", self._stub.MergePatient, req, billing_pb2.MergePatientResponse
        )

    async def update_patient(
        self, req: billing_pb2.UpdatePatientRequest
    ) -> billing_pb2.UpdatePatientResponse:
        """Put a person's demographics on the patient's accounts; UPDATED, STALE or DUPLICATE."""
        return await self._call(
            "UpdatePatient", self._stub.UpdatePatient, req, billing_pb2.UpdatePatientResponse
        )

    async def move_account(self, req: billing_pb2.MoveAccountRequest) -> billing_pb2.MoveAccountResponse:
        """Move an account or a visit to another patient; MOVED or DUPLICATE, accounts moved."""
        return await self._call("MoveAccount", self._stub.MoveAccount, req, billing_pb2.MoveAccountResponse)

    async def apply_batch(self, req: billing_pb2.BillingBatchRequest) -> billing_pb2.BillingBatchResponse:
        """Apply upserts, codings, merges, person updates and moves in order in one call and one
        transaction; one result per item, in order: the single call's answer, or the error it would raise
        (turn it into that error with :func:`item_refusal`)."""
        return await self._call("ApplyBatch", self._stub.ApplyBatch, req, billing_pb2.BillingBatchResponse)

    async def get_totals(self) -> billing_pb2.BillingTotals:
        """Return the billing system's reconciliation totals."""
        return await self._call(
            "GetTotals", self._stub.GetTotals, billing_pb2.GetTotalsRequest(), billing_pb2.BillingTotals
        )

    async def record_coverage(
        self, req: billing_pb2.RecordCoverageRequest
    ) -> billing_pb2.RecordCoverageResponse:
        """Record an encounter's coverage of one priority; CREATED, UPDATED, STALE or DUPLICATE."""
        return await self._call(
            "RecordCoverage", self._stub.RecordCoverage, req, billing_pb2.RecordCoverageResponse
        )

    async def record_eligibility(
        self, req: billing_pb2.RecordEligibilityRequest
    ) -> billing_pb2.RecordEligibilityResponse:
        """Record a 271 outcome or a follow-up flag; RECORDED, STALE or DUPLICATE."""
        return await self._call(
            "RecordEligibility", self._stub.RecordEligibility, req, billing_pb2.RecordEligibilityResponse
        )

    async def create_claims(self, req: billing_pb2.CreateClaimsRequest) -> billing_pb2.CreateClaimsResponse:
        """Build an account's claims. A refusal (FAILED_PRECONDITION) raises NotRetryableError whose
        message holds the details "<rule>: <reason>"."""
        return await self._call(
            "CreateClaims", self._stub.CreateClaims, req, billing_pb2.CreateClaimsResponse
        )

    async def update_claim_status(
        self, req: billing_pb2.UpdateClaimStatusRequest
    ) -> billing_pb2.UpdateClaimStatusResponse:
        """Apply a claim lifecycle event (837 sent, 999, TA1)."""
        return await self._call(
            "UpdateClaimStatus", self._stub.UpdateClaimStatus, req, billing_pb2.UpdateClaimStatusResponse
        )

    async def post_remittance(
        self, req: billing_pb2.PostRemittanceRequest
    ) -> billing_pb2.PostRemittanceResponse:
        """Post one 835; POSTED or DUPLICATE with the ERP summary, or refused under an X12-835-* rule."""
        return await self._call(
            "PostRemittance", self._stub.PostRemittance, req, billing_pb2.PostRemittanceResponse
        )

    async def list_claims(self, req: billing_pb2.ClaimListRequest) -> billing_pb2.ClaimList:
        """List claims by status, account and payer (read scope)."""
        return await self._call("GetClaimList", self._stub.GetClaimList, req, billing_pb2.ClaimList)

    async def get_claim(self, req: billing_pb2.GetClaimRequest) -> billing_pb2.GetClaimResponse:
        """Return one claim with its history and payments (read scope; PHI)."""
        return await self._call("GetClaim", self._stub.GetClaim, req, billing_pb2.GetClaimResponse)

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once GetTotals succeeds; raise StackError if it does not within ``timeout_s``."""
        await self._wait_ready("GetTotals", self._stub.GetTotals, billing_pb2.GetTotalsRequest(), timeout_s)


def item_refusal(address: str, error: billing_pb2.BillingItemError) -> NotRetryableError:
    """Return the error of an ApplyBatch item the billing adapter at ``address`` refused, worded as the
    refusal of a single call: the code and the details name the call and the field, never a value. It
    does not name the item's place in the batch: the same command refused in another batch reads the same."""
    return NotRetryableError(
        f"ApplyBatch to billing adapter at {address} refused an item: {error.code}: {error.message}"
    )


class ErpClient(_AdapterClient):
    """Client of hcsync.erp.v1.ErpAdapter."""

    _kind = "ERP adapter"

    def __init__(
        self,
        settings: Settings,
        address: str | None = None,
        *,
        backoff_s: float = _BACKOFF_S,
        backoff_cap_s: float = _BACKOFF_CAP_S,
    ) -> None:
        super().__init__(
            address or settings.erp_address, settings, backoff_s=backoff_s, backoff_cap_s=backoff_cap_s
        )
        self._stub = erp_pb2_grpc.ErpAdapterStub(self._channel)

    async def post_journal_batch(self, batch: erp_pb2.JournalBatch) -> erp_pb2.JournalAck:
        """Post a journal batch; a replay of its idempotency key returns the original ack."""
        return await self._call("PostJournalBatch", self._stub.PostJournalBatch, batch, erp_pb2.JournalAck)

    async def post_inventory_movements(self, batch: erp_pb2.InventoryMovementBatch) -> erp_pb2.InventoryAck:
        """Record inventory movements; a replay of the batch's idempotency key returns the original ack."""
        return await self._call(
            "PostInventoryMovements", self._stub.PostInventoryMovements, batch, erp_pb2.InventoryAck
        )

    async def get_inventory_totals(self) -> erp_pb2.InventoryTotals:
        """Return the inventory's reconciliation totals."""
        return await self._call(
            "GetInventoryTotals",
            self._stub.GetInventoryTotals,
            erp_pb2.GetInventoryTotalsRequest(),
            erp_pb2.InventoryTotals,
        )

    async def get_ledger_totals(self) -> erp_pb2.LedgerTotals:
        """Return the ledger's reconciliation totals."""
        return await self._call(
            "GetLedgerTotals",
            self._stub.GetLedgerTotals,
            erp_pb2.GetLedgerTotalsRequest(),
            erp_pb2.LedgerTotals,
        )

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once GetLedgerTotals succeeds; raise StackError if it does not within ``timeout_s``."""
        await self._wait_ready(
            "GetLedgerTotals", self._stub.GetLedgerTotals, erp_pb2.GetLedgerTotalsRequest(), timeout_s
        )


class PayerClient(_AdapterClient):
    """Client of hcsync.payer.v1.PayerGateway: the payer's (or clearinghouse's) real-time X12 gateway."""

    _kind = "payer gateway"

    def __init__(
        self,
        settings: Settings,
        address: str | None = None,
        *,
        backoff_s: float = _BACKOFF_S,
        backoff_cap_s: float = _BACKOFF_CAP_S,
    ) -> None:
        super().__init__(
            address or settings.payer_address, settings, backoff_s=backoff_s, backoff_cap_s=backoff_cap_s
        )
        self._stub = payer_pb2_grpc.PayerGatewayStub(self._channel)
        self._eligibility_timeout_s = settings.payer_timeout_s

    async def check_eligibility(self, interchange: bytes) -> list[bytes]:
        """Send a 270; return the payer's answer (its 271, or a TA1/999).

        One attempt with the eligibility deadline (``payer_timeout_s``): a payer that does not answer in
        time raises RetryableError, and the encounter is flagged for follow-up rather than waited on.
        """
        answer = await self._call(
            "CheckEligibility",
            self._stub.CheckEligibility,
            payer_pb2.X12Request(interchange=interchange),
            payer_pb2.X12Response,
            timeout_s=self._eligibility_timeout_s,
            attempts=1,
        )
        return list(answer.interchanges)

    async def submit_claims(self, interchange: bytes) -> list[bytes]:
        """Send an 837; return its 999 (and TA1). A resend of the same interchange gets the same answer."""
        answer = await self._call(
            "SubmitClaims",
            self._stub.SubmitClaims,
            payer_pb2.X12Request(interchange=interchange),
            payer_pb2.X12Response,
        )
        return list(answer.interchanges)

    async def get_status(self) -> payer_pb2.PayerStatus:
        """What the payer holds and has paid."""
        return await self._call(
            "GetPayerStatus",
            self._stub.GetPayerStatus,
            payer_pb2.GetPayerStatusRequest(),
            payer_pb2.PayerStatus,
        )

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once GetPayerStatus succeeds; raise StackError if it does not within ``timeout_s``."""
        await self._wait_ready(
            "GetPayerStatus", self._stub.GetPayerStatus, payer_pb2.GetPayerStatusRequest(), timeout_s
        )
