"""A synchronous readiness probe for the adapter services: a totals call that must succeed.

It dials like every client (adapters/security.py: TLS and the bearer token of the settings), so a ready
adapter is one that also admits the caller's token.
"""

from __future__ import annotations

from typing import Literal

import grpc

from adapters.security import secure_channel
from foundation.settings import Settings
from proto import billing_pb2, billing_pb2_grpc, erp_pb2, erp_pb2_grpc, payer_pb2, payer_pb2_grpc


def probe(
    service: Literal["billing", "erp", "payer"] | str, settings: Settings, timeout_s: float = 1.0
) -> bool:
    """Return True when the service answers a totals (or status) call within ``timeout_s``."""
    addresses = {"billing": settings.billing_address, "payer": settings.payer_address}
    address = addresses.get(service, settings.erp_address)
    with secure_channel(address, settings) as channel:
        try:
            if service == "billing":
                billing_pb2_grpc.BillingAdapterStub(channel).GetTotals(
                    billing_pb2.GetTotalsRequest(), timeout=timeout_s
                )
            elif service == "payer":
                payer_pb2_grpc.PayerGatewayStub(channel).GetPayerStatus(
                    payer_pb2.GetPayerStatusRequest(), timeout=timeout_s
                )
            else:
                erp_pb2_grpc.ErpAdapterStub(channel).GetLedgerTotals(
                    erp_pb2.GetLedgerTotalsRequest(), timeout=timeout_s
                )
        except grpc.RpcError:
            return False
    return True
