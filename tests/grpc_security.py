"""Secured adapter servers and clients for tests that build servers directly (not through the stack).

Every adapter server refuses to start without TLS and a token key, so a test that runs one in-process
takes its settings from here:

    async with (
        running_adapter("billing", tmp_path) as adapter,
        BillingClient(client_settings(), adapter.address) as client,
    ): ...

``running_adapter`` serves with mutual TLS and bearer tokens from credentials made once per test process
(:func:`shared`); ``client_settings()`` is a writer ("worker": read and write on billing and ERP, with a
client certificate), ``client_settings("reader")`` a reader. A raw channel (to send bytes of your own)
is ``secure_aio_channel(address, client_settings())`` from adapters.security. Tests of the security
itself make their own :class:`GrpcSecurity` in ``tmp_path`` and sign tokens of any shape with
:meth:`GrpcSecurity.token`.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.credentials import WORKER, LocalCredentials, issue_local, sign_token
from adapters.server import AdapterServer, ServiceName, build_server
from foundation.settings import Settings, get_settings

# Short deadlines so failures show fast; few retries.
BASE: dict[str, Any] = {"grpc_host": "127.0.0.1", "grpc_timeout_s": 5.0, "grpc_retry_attempts": 3}


@dataclass(frozen=True)
class GrpcSecurity:
    """A CA, server certificates for billing and ERP, a signing key and the worker and reader tokens."""

    local: LocalCredentials

    @classmethod
    def create(cls, directory: Path) -> GrpcSecurity:
        return cls(issue_local(directory))

    def server_settings(self, service: ServiceName, *, mutual: bool = True, **overrides: Any) -> Settings:
        """Settings of a ``service`` server: TLS (mutual unless told not), tokens of this signing key."""
        fields = BASE | self.local.server_settings(service, require_client_cert=mutual)
        return Settings.model_validate(fields | overrides)

    def client_settings(
        self, caller: str = WORKER, *, certificate: bool = True, **overrides: Any
    ) -> Settings:
        """Settings of a client calling as ``caller`` ("worker" writes, "reader" reads)."""
        return Settings.model_validate(
            BASE | self.local.client_settings(caller, certificate=certificate) | overrides
        )

    def token(
        self,
        *,
        subject: str = "test-caller",
        audience: Sequence[str] = ("billing", "erp"),
        scopes: Sequence[str] = ("billing:read", "billing:write", "erp:read", "erp:write"),
        lifetime_s: float = 600.0,
        not_before_s: float = 0.0,
        issuer: str | None = None,
        key: Any = None,
    ) -> str:
        """A token of any shape, signed with this signing key unless ``key`` is given."""
        return sign_token(
            key if key is not None else self.local.signing_key(),
            issuer=issuer if issuer is not None else self.local.issuer,
            subject=subject,
            audience=audience,
            scopes=scopes,
            lifetime_s=lifetime_s,
            not_before_s=not_before_s,
        )

    def settings_with_token(self, token: str, name: str, **overrides: Any) -> Settings:
        """Client settings (with the worker's certificate) sending ``token``, written to a file ``name``."""
        path = self.local.directory / f"{name}.token"
        path.write_text(token, "utf-8")
        return self.client_settings(grpc_token_file=path, **overrides)


@asynccontextmanager
async def serving(
    security: GrpcSecurity,
    service: ServiceName,
    database_dir: Path,
    *,
    port: int = 0,
    mutual: bool = True,
    **overrides: Any,
) -> AsyncIterator[AdapterServer]:
    """Run one secured adapter server on 127.0.0.1 with its SQLite database in ``database_dir``.

    Its Redis (where the ERP reads master data) is the process settings' unless ``overrides`` name one:
    tests.masterdata.settings_redis points the process at a test's redis-server.
    """
    overrides.setdefault("redis_url", get_settings().redis_url)
    adapter = build_server(
        service,
        security.server_settings(service, mutual=mutual, **overrides),
        f"sqlite:///{database_dir / f'{service}.db'}",
        host="127.0.0.1",
        port=port,
    )
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop(grace_s=1.0)


_SHARED: list[GrpcSecurity] = []


def shared() -> GrpcSecurity:
    """The credentials of this test process, made on first use (about 10 ms) and removed at exit."""
    if not _SHARED:
        directory = Path(tempfile.mkdtemp(prefix="hcsync-grpc-test-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        _SHARED.append(GrpcSecurity.create(directory / "grpc"))
    return _SHARED[0]


def client_settings(caller: str = WORKER, **overrides: Any) -> Settings:
    """Settings of a client of :func:`running_adapter` servers, calling as ``caller``."""
    return shared().client_settings(caller, **overrides)


def running_adapter(
    service: ServiceName, database_dir: Path, *, port: int = 0, **overrides: Any
) -> AbstractAsyncContextManager[AdapterServer]:
    """A secured ``service`` server (mutual TLS, tokens of :func:`shared`), database in database_dir."""
    return serving(shared(), service, database_dir, port=port, **overrides)
