"""The BillingAdapter gRPC servicer: the backend validates and posts, in a worker thread."""

from __future__ import annotations

import grpc

from adapters import answer
from adapters.billing.backend import BillingBackend
from proto import billing_pb2, billing_pb2_grpc

__all__ = ["BillingService"]


class BillingService(billing_pb2_grpc.BillingAdapterServicer):
    """grpc.aio servicer of hcsync.billing.v1.BillingAdapter over a :class:`BillingBackend`."""

    def __init__(self, backend: BillingBackend) -> None:
        self._backend = backend

    async def UpsertAccount(
        self, request: billing_pb2.UpsertAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.UpsertAccountResponse:
        """Create or update the account of one encounter."""
        return await answer(context, "UpsertAccount", lambda: self._backend.upsert_account(request))

    async def PostCharges(
        self, request: billing_pb2.PostChargesRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.PostChargesResponse:
        """Post charge and credit lines, one result per line."""
        return await answer(context, "PostCharges", lambda: self._backend.post_charges(request))

    async def UpdateCoding(
        self, request: billing_pb2.UpdateCodingRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.UpdateCodingResponse:
        """Replace the coding of one encounter unless a later coding is stored."""
        return await answer(context, "UpdateCoding", lambda: self._backend.update_coding(request))

    async def MergePatient(
        self, request: billing_pb2.MergePatientRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.MergePatientResponse:
        """Move the accounts of a prior patient identifier to the surviving patient."""
        return await answer(context, "MergePatient", lambda: self._backend.merge_patient(request))

    async def UpdatePatient(
        self, request: billing_pb2.UpdatePatientRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.UpdatePatientResponse:
        """Put a person's current demographics on every account of the patient."""
        return await answer(context, "UpdatePatient", lambda: self._backend.update_patient(request))

    async def MoveAccount(
        self, request: billing_pb2.MoveAccountRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.MoveAccountResponse:
        """Move an account or a visit to another patient."""
        return await answer(context, "MoveAccount", lambda: self._backend.move_account(request))

    async def ApplyBatch(
        self, request: billing_pb2.BillingBatchRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.BillingBatchResponse:
        """Apply upserts, codings, merges, person updates and moves in order, one result per item."""
        return await answer(context, "ApplyBatch", lambda: self._backend.apply_batch(request))

    async def GetTotals(
        self, request: billing_pb2.GetTotalsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.BillingTotals:
        """Return reconciliation totals."""
        return await answer(context, "GetTotals", self._backend.totals)

    async def RecordCoverage(
        self, request: billing_pb2.RecordCoverageRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.RecordCoverageResponse:
        """Record an encounter's insurance of one priority."""
        return await answer(context, "RecordCoverage", lambda: self._backend.record_coverage(request))

    async def RecordEligibility(
        self, request: billing_pb2.RecordEligibilityRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.RecordEligibilityResponse:
        """Record a 271 outcome or a follow-up flag."""
        return await answer(context, "RecordEligibility", lambda: self._backend.record_eligibility(request))

    async def CreateClaims(
        self, request: billing_pb2.CreateClaimsRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.CreateClaimsResponse:
        """Build, rebuild or replace the claims of one account."""
        return await answer(context, "CreateClaims", lambda: self._backend.create_claims(request))

    async def UpdateClaimStatus(
        self, request: billing_pb2.UpdateClaimStatusRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.UpdateClaimStatusResponse:
        """Apply a claim lifecycle event (837 sent, 999, TA1)."""
        return await answer(context, "UpdateClaimStatus", lambda: self._backend.update_claim_status(request))

    async def PostRemittance(
        self, request: billing_pb2.PostRemittanceRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.PostRemittanceResponse:
        """Post one 835 all or nothing."""
        return await answer(context, "PostRemittance", lambda: self._backend.post_remittance(request))

    async def GetClaimList(
        self, request: billing_pb2.ClaimListRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.ClaimList:
        """List claims by status, account and payer."""
        return await answer(context, "GetClaimList", lambda: self._backend.list_claims(request))

    async def GetClaim(
        self, request: billing_pb2.GetClaimRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.GetClaimResponse:
        """Return one claim with its history, payments and adjustments."""
        return await answer(context, "GetClaim", lambda: self._backend.get_claim(request))
