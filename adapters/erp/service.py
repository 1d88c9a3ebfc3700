"""The ErpAdapter gRPC servicer: the backend validates and posts, in a worker thread."""

from __future__ import annotations

import grpc

from adapters import answer
from adapters.erp.backend import ErpBackend
from proto import erp_pb2, erp_pb2_grpc

__all__ = ["ErpService"]


class ErpService(erp_pb2_grpc.ErpAdapterServicer):
    """grpc.aio servicer of hcsync.erp.v1.ErpAdapter over an :class:`ErpBackend`."""

    def __init__(self, backend: ErpBackend) -> None:
        self._backend = backend

    async def PostJournalBatch(
        self, request: erp_pb2.JournalBatch, context: grpc.aio.ServicerContext
    ) -> erp_pb2.JournalAck:
        """Post a batch of journal lines."""
        return await answer(context, "PostJournalBatch", lambda: self._backend.post_journal_batch(request))

    async def GetLedgerTotals(
        self, request: erp_pb2.GetLedgerTotalsRequest, context: grpc.aio.ServicerContext
    ) -> erp_pb2.LedgerTotals:
        """Return reconciliation totals of the ledger."""
        return await answer(context, "GetLedgerTotals", self._backend.ledger_totals)

    async def PostInventoryMovements(
        self, request: erp_pb2.InventoryMovementBatch, context: grpc.aio.ServicerContext
    ) -> erp_pb2.InventoryAck:
        """Record a batch of inventory movements."""
        return await answer(
            context, "PostInventoryMovements", lambda: self._backend.post_inventory_movements(request)
        )

    async def GetInventoryTotals(
        self, request: erp_pb2.GetInventoryTotalsRequest, context: grpc.aio.ServicerContext
    ) -> erp_pb2.InventoryTotals:
        """Return reconciliation totals of the inventory movements."""
        return await answer(context, "GetInventoryTotals", self._backend.inventory_totals)
