"""The PayerGateway gRPC servicer over the reference payer, and the schedule that pays its claims."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import grpc

from adapters import answer
from adapters.payer.adjudication import PayerProfile
from adapters.payer.payer import ReferencePayer
from canonical.reference import MasterDataSet, PayerType
from proto import payer_pb2, payer_pb2_grpc

__all__ = ["PayerService", "master_data_payers", "remit_on_schedule"]

log = logging.getLogger(__name__)


def master_data_payers(masterdata: Callable[[], MasterDataSet]) -> Callable[[str, str], PayerProfile]:
    """Look payers up in the master data in force: their name and kind (which sets what they allow).

    A payer id the master data does not know (or master data not yet loaded) is answered as a payer of
    kind "other" under the name the transaction gave: the reference payer serves any payer id.
    """

    def lookup(payer_id: str, name: str) -> PayerProfile:
        try:
            payer = masterdata().get("payers", payer_id)
        except Exception as exc:  # Redis down or no set loaded: decide with what the transaction says
            log.warning("payer %s looked up without master data (%s)", payer_id, type(exc).__name__)
            payer = None
        if payer is None:
            return PayerProfile(payer_id, name or payer_id, PayerType.OTHER)
        return PayerProfile(payer.payer_id, payer.name, payer.payer_type)

    return lookup


class PayerService(payer_pb2_grpc.PayerGatewayServicer):
    """grpc.aio servicer of hcsync.payer.v1.PayerGateway over a :class:`ReferencePayer`."""

    def __init__(self, payer: ReferencePayer) -> None:
        self._payer = payer

    async def CheckEligibility(
        self, request: payer_pb2.X12Request, context: grpc.aio.ServicerContext
    ) -> payer_pb2.X12Response:
        """Answer a 270 with its 271 (or a TA1/999 when it cannot be answered)."""
        answers = await answer(
            context, "CheckEligibility", lambda: self._payer.eligibility(request.interchange)
        )
        return payer_pb2.X12Response(interchanges=answers)

    async def SubmitClaims(
        self, request: payer_pb2.X12Request, context: grpc.aio.ServicerContext
    ) -> payer_pb2.X12Response:
        """Acknowledge an 837 with its 999 (and TA1); the accepted claims are paid later by 835."""
        answers = await answer(context, "SubmitClaims", lambda: self._payer.claims(request.interchange))
        return payer_pb2.X12Response(interchanges=answers)

    async def GetPayerStatus(
        self, request: payer_pb2.GetPayerStatusRequest, context: grpc.aio.ServicerContext
    ) -> payer_pb2.PayerStatus:
        """What the payer holds and has paid."""
        counts = await answer(context, "GetPayerStatus", self._payer.store.counts)
        return payer_pb2.PayerStatus(**counts)


async def remit_on_schedule(payer: ReferencePayer, interval_s: float, stop: asyncio.Event) -> None:
    """Pay what is due every ``interval_s`` until ``stop``; a failed round is logged and tried again."""
    while not stop.is_set():
        try:
            issued = await asyncio.to_thread(payer.remit_due)
            if issued:
                log.info("payer: %d 835(s) issued and delivered to %s", len(issued), payer.delivery_dir)
        except Exception as exc:
            log.warning(
                "payer: remittance round failed (%s: %s); next round in %.0fs",
                type(exc).__name__,
                exc,
                interval_s,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
