"""Run the BillingAdapter or the ErpAdapter as a grpc.aio server over its SQL reference backend.

Usage: ``python -m adapters.server billing|erp [--database-url URL] [--port N]``. The server logs
"ready" once it listens and its database answers, and stops gracefully on SIGTERM or SIGINT.

Every server listens with TLS (``grpc_server_cert_file`` / ``grpc_server_key_file``; with
``grpc_require_client_cert`` only clients with a certificate of ``grpc_ca_file`` get through the
handshake) and admits a call only with a bearer token that verifies against
``grpc_token_public_key_file`` and holds the scope of the method (adapters/security.py; the tables
``BILLING_ACCESS`` and ``ERP_ACCESS`` below say which methods only read). Without that configuration
it refuses to start with a ConfigurationError naming the settings, unless ``grpc_insecure`` (a
developer's machine only) makes it plaintext without tokens.

The standard gRPC health service (grpc.health.v1.Health) answers without a token, over the same TLS:
SERVING for "" and the service's full name once the server listens, NOT_SERVING from the stop signal.
Readiness of the stack stays a GetTotals / GetLedgerTotals call (``wait_ready`` in adapters.clients,
adapters.probe): it also proves the database and the caller's token.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Literal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from adapters.billing.backend import SqlBillingBackend
from adapters.billing.service import BillingService
from adapters.erp.backend import SqlErpBackend
from adapters.erp.masterdata import governed_masterdata
from adapters.erp.service import ErpService
from adapters.inbound.inbox import inbox_directory
from adapters.interceptors import UndecodableRequests
from adapters.payer.payer import ReferencePayer
from adapters.payer.service import PayerService, master_data_payers, remit_on_schedule
from adapters.payer.store import PayerStore
from adapters.security import BearerTokens, ServiceAccess, server_credentials
from canonical.errors import ConfigurationError, StackError
from foundation.logmask import install
from foundation.settings import Settings, get_settings
from proto import billing_pb2, billing_pb2_grpc, erp_pb2, erp_pb2_grpc, payer_pb2, payer_pb2_grpc

__all__ = [
    "BILLING_ACCESS",
    "ERP_ACCESS",
    "PAYER_ACCESS",
    "AdapterServer",
    "ServiceName",
    "build_server",
    "default_database_url",
    "main",
    "serve",
]

log = logging.getLogger(__name__)

ServiceName = Literal["billing", "erp", "payer"]

# Seconds calls in flight get to finish after a stop signal before they are cancelled.
GRACE_S = 5.0
_SERVER_OPTIONS = [
    # Without this, Linux lets a second server bind the same port and silently share its traffic.
    ("grpc.so_reuseport", 0),
]
# What each RPC needs: "read" or "write" scope of the service's audience. An RPC missing here needs write.
BILLING_ACCESS = ServiceAccess(
    service=billing_pb2.DESCRIPTOR.services_by_name["BillingAdapter"].full_name,
    audience="billing",
    verbs={
        "UpsertAccount": "write",
        "PostCharges": "write",
        "UpdateCoding": "write",
        "MergePatient": "write",
        "UpdatePatient": "write",
        "MoveAccount": "write",
        "ApplyBatch": "write",
        "GetTotals": "read",
        "RecordCoverage": "write",
        "RecordEligibility": "write",
        "CreateClaims": "write",
        "UpdateClaimStatus": "write",
        "PostRemittance": "write",
        "GetClaimList": "read",
        "GetClaim": "read",
    },
)
ERP_ACCESS = ServiceAccess(
    service=erp_pb2.DESCRIPTOR.services_by_name["ErpAdapter"].full_name,
    audience="erp",
    verbs={
        "PostJournalBatch": "write",
        "PostInventoryMovements": "write",
        "GetLedgerTotals": "read",
        "GetInventoryTotals": "read",
    },
)
PAYER_ACCESS = ServiceAccess(
    service=payer_pb2.DESCRIPTOR.services_by_name["PayerGateway"].full_name,
    audience="payer",
    verbs={
        "CheckEligibility": "write",
        "SubmitClaims": "write",
        "GetPayerStatus": "read",
    },
)
ACCESS: dict[str, ServiceAccess] = {"billing": BILLING_ACCESS, "erp": ERP_ACCESS, "payer": PAYER_ACCESS}


@dataclass
class AdapterServer:
    """A built adapter server: the grpc.aio server, the address it is bound to and its backend."""

    service: ServiceName
    server: grpc.aio.Server
    host: str
    port: int
    backend: SqlBillingBackend | SqlErpBackend | ReferencePayer
    health: health.aio.HealthServicer
    secure: bool = True

    @property
    def address(self) -> str:
        """Return host:port, as a client dials it."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Start serving, after checking that the backend's database answers."""
        await asyncio.to_thread(self._check_backend)
        await self.server.start()
        for name in ("", ACCESS[self.service].service):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float | None = GRACE_S) -> None:
        """Stop serving, letting calls in flight finish within ``grace_s``, then close the backend."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        await asyncio.to_thread(self.backend.close)

    def _check_backend(self) -> None:
        if isinstance(self.backend, SqlBillingBackend):
            self.backend.totals()
        elif isinstance(self.backend, ReferencePayer):
            self.backend.store.counts()
        else:
            # Both reads: the inventory tables are new in 1.1, and a database that cannot hold them
            # should fail here, at start, not on the first movement.
            self.backend.ledger_totals()
            self.backend.inventory_totals()


def default_database_url(service: ServiceName, settings: Settings) -> str:
    """Return the database URL of ``service``: its setting (with its password), else SQLite in home_dir."""
    configured = settings.database_url(service)
    if configured:
        return configured
    return f"sqlite:///{(settings.home_dir / 'adapters' / f'{service}.db').resolve()}"


def build_server(
    service: ServiceName,
    settings: Settings,
    database_url: str,
    *,
    host: str | None = None,
    port: int | None = None,
) -> AdapterServer:
    """Build, not start, an adapter server on ``host``:``port`` (settings' by default; port 0 picks one)."""
    bind_host = host or settings.grpc_host
    ports = {"billing": settings.billing_port, "erp": settings.erp_port, "payer": settings.payer_port}
    bind_port = port if port is not None else ports[service]
    security = server_credentials(settings)  # ConfigurationError names what is missing
    interceptors: list[grpc.aio.ServerInterceptor] = [UndecodableRequests()]
    if security is not None:
        # First: a call without a valid token is refused before its body is decoded.
        interceptors.insert(0, BearerTokens(security[1], [ACCESS[service]]))
    else:
        log.warning("%s adapter: plaintext gRPC without tokens (HCSYNC_GRPC_INSECURE)", service)
    server = grpc.aio.server(options=_SERVER_OPTIONS, interceptors=interceptors)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    backend: SqlBillingBackend | SqlErpBackend | ReferencePayer
    if service == "billing":
        # Claims and remittances read the facility, charge code and payer master data in force, as the ERP.
        backend = SqlBillingBackend(database_url, governed_masterdata(settings))
        billing_pb2_grpc.add_BillingAdapterServicer_to_server(BillingService(backend), server)
    elif service == "payer":
        # The payer knows its payers' kinds from master data, and delivers 835s into hcsync's inbox.
        delivery = settings.payer_delivery_dir or inbox_directory(settings)
        payers = master_data_payers(governed_masterdata(settings))
        backend = ReferencePayer(settings, PayerStore(database_url), payers, delivery)
        payer_pb2_grpc.add_PayerGatewayServicer_to_server(PayerService(backend), server)
    else:
        # The ERP checks every line's dimensions against the master data in force (this deployment's Redis).
        backend = SqlErpBackend(database_url, governed_masterdata(settings))
        erp_pb2_grpc.add_ErpAdapterServicer_to_server(ErpService(backend), server)
    try:
        address = f"{bind_host}:{bind_port}"
        bound: int = (
            server.add_insecure_port(address)
            if security is None
            else server.add_secure_port(address, security[0])
        )
    except RuntimeError as exc:
        backend.close()
        raise StackError(f"{service} adapter cannot listen on {bind_host}:{bind_port}: {exc}") from exc
    if bound == 0:
        backend.close()
        raise StackError(f"{service} adapter cannot listen on {bind_host}:{bind_port}")
    return AdapterServer(
        service=service,
        server=server,
        host=bind_host,
        port=bound,
        backend=backend,
        health=health_servicer,
        secure=security is not None,
    )


async def serve(service: ServiceName, settings: Settings, database_url: str) -> None:
    """Serve ``service`` on its settings port until SIGTERM or SIGINT, then stop gracefully."""
    adapter = build_server(service, settings, database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    schedule: asyncio.Task[None] | None = None
    try:
        await adapter.start()
        log.info(
            "ready: %s adapter on %s (%s)",
            service,
            adapter.address,
            "TLS, bearer tokens" if adapter.secure else "PLAINTEXT, no tokens",
        )
        if isinstance(adapter.backend, ReferencePayer):
            interval_s = settings.payer_remit_interval_s
            schedule = asyncio.create_task(remit_on_schedule(adapter.backend, interval_s, stop))
        await stop.wait()
        log.info("stopping: %s adapter, %.1fs grace", service, GRACE_S)
    finally:
        stop.set()
        if schedule is not None:
            await asyncio.gather(schedule, return_exceptions=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await adapter.stop(GRACE_S)
    log.info("stopped: %s adapter", service)


def main(argv: list[str] | None = None) -> None:
    """Run one adapter server from the command line."""
    parser = argparse.ArgumentParser(prog="python -m adapters.server", description=__doc__)
    parser.add_argument("service", choices=["billing", "erp", "payer"])
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL; default from settings, else SQLite in home_dir"
    )
    parser.add_argument("--port", type=int, help="port to listen on; default from settings")
    args = parser.parse_args(argv)
    settings = get_settings()
    service: ServiceName = args.service
    if args.port is not None:
        settings = settings.model_copy(update={f"{service}_port": args.port})
    install(settings.log_level, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(service, settings, args.database_url or default_database_url(service, settings)))
    except ConfigurationError as exc:
        raise SystemExit(f"{service} adapter not started: {exc}") from None


if __name__ == "__main__":
    main()
