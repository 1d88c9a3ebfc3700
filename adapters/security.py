"""gRPC security: TLS credentials for every server and client, and the bearer-token interceptor.

Every adapter server (adapters/server.py) listens with TLS (``server_credentials``), optionally requiring a
client certificate (mutual TLS), and runs :class:`BearerTokens` first among its interceptors. Every client
dials through ``secure_channel`` / ``channel_credentials``: TLS with the CA (and a client certificate when
one is configured) plus call credentials that put ``authorization: Bearer <token>`` on every call.

Tokens are signed JWTs (ES256 recommended), verified with the public key(s) of
``grpc_token_public_key_file``: signature, issuer, expiry and not-before (with ``grpc_token_leeway_s`` of
skew), then the audience (the service's name, "billing" or "erp") and the scope the method needs
(``<audience>:read`` or ``<audience>:write``, from the service's :class:`ServiceAccess` table; a method the
table does not name needs write). A missing or invalid token is UNAUTHENTICATED; a valid token for another
audience or without the scope is PERMISSION_DENIED. Refusals never echo the token. The caller (the token's
``sub``) is available to handlers through :func:`current_caller`. The gRPC health service stays open: it
answers without a token (still over TLS), so load balancers and probes can use it.

A client that is not configured explicitly (no ``grpc_ca_file`` or ``grpc_token_file``) on the embedded
default deployment uses the read-only credentials the embedded stack wrote into its run directory
(``HCSYNC_RUN_DIR``, else ``<home_dir>/runs/latest``): that is how `hcsync report` finds them.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from adapters.credentials import READER, LocalCredentials
from canonical.errors import ConfigurationError, HcsyncError
from foundation.settings import Settings

__all__ = [
    "LOCAL_CREDENTIALS_DIR",
    "OPEN_SERVICES",
    "BearerTokens",
    "Caller",
    "ClientFiles",
    "ServiceAccess",
    "TokenVerifier",
    "Verb",
    "channel_credentials",
    "client_files",
    "current_caller",
    "secure_aio_channel",
    "secure_channel",
    "server_credentials",
]

log = logging.getLogger(__name__)

Verb = Literal["read", "write"]
# Services that answer without a token (still over TLS): the standard health service only.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
# The folder of a run directory where the embedded stack writes its CA, certificates, keys and tokens.
LOCAL_CREDENTIALS_DIR = "grpc"
# Signature algorithms accepted per key type; symmetric (HS*) never: a public key is no shared secret.
_ALGORITHMS: dict[type, list[str]] = {
    ec.EllipticCurvePublicKey: ["ES256", "ES384", "ES512"],
    rsa.RSAPublicKey: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    ed25519.Ed25519PublicKey: ["EdDSA"],
}
_PEM_END = b"-----END PUBLIC KEY-----"
# Claims every token must carry.
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]


@dataclass(frozen=True, slots=True)
class ServiceAccess:
    """Which verb each method of one gRPC service needs, and the audience its tokens must name.

    ``service`` is the full name (``hcsync.billing.v1.BillingAdapter``); ``verbs`` maps method names to
    "read" or "write". A method not in the table needs write: a new RPC is closed until someone says it
    only reads.
    """

    service: str
    audience: str
    verbs: Mapping[str, Verb]

    def scope(self, method: str) -> str:
        """The scope a call of ``method`` needs, e.g. ``billing:write``."""
        return f"{self.audience}:{self.verbs.get(method, 'write')}"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made the current call: the verified token's subject, audiences and scopes."""

    subject: str
    audiences: tuple[str, ...]
    scopes: frozenset[str]


_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("hcsync_grpc_caller", default=None)


def current_caller() -> Caller | None:
    """The caller of the RPC being handled (None outside a call, or on an insecure server)."""
    return _CALLER.get()


class InvalidToken(HcsyncError):
    """A token that does not verify; the message says why and never holds the token."""


class TokenVerifier:
    """Verify signed JWTs against one or more public keys and an issuer."""

    def __init__(self, public_keys: Iterable[Any], issuer: str, leeway_s: float = 30.0) -> None:
        self._keys: list[tuple[Any, list[str]]] = []
        for key in public_keys:
            algorithms = next((algs for kind, algs in _ALGORITHMS.items() if isinstance(key, kind)), None)
            if algorithms is None:
                raise ConfigurationError(f"token public key of type {type(key).__name__} is not supported")
            self._keys.append((key, algorithms))
        if not self._keys:
            raise ConfigurationError("no token public key to verify bearer tokens with")
        self.issuer = issuer
        self.leeway_s = leeway_s

    @classmethod
    def from_file(cls, path: Path, issuer: str, leeway_s: float = 30.0) -> TokenVerifier:
        """Read every PEM public key of ``path`` (several while a signing key is rotated)."""
        setting = "HCSYNC_GRPC_TOKEN_PUBLIC_KEY_FILE"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{setting}: cannot read {path}: {exc.strerror}") from None
        keys = []
        for block in data.split(_PEM_END)[:-1]:
            try:
                keys.append(load_pem_public_key(block + _PEM_END))
            except ValueError as exc:
                raise ConfigurationError(f"{setting}: {path} holds a key that does not load: {exc}") from None
        if not keys:
            raise ConfigurationError(f"{setting}: {path} holds no PEM public key")
        return cls(keys, issuer, leeway_s)

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of ``token``; raise InvalidToken when it does not verify.

        The audience is not checked here (the caller knows which service is called).
        """
        for key, algorithms in self._keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=algorithms,
                    issuer=self.issuer,
                    leeway=self.leeway_s,
                    options={"require": _REQUIRED_CLAIMS, "verify_aud": False},
                )
            except jwt.InvalidSignatureError:
                continue  # another key of the file may have signed it
            except jwt.InvalidAlgorithmError:
                continue  # a key of another type
            except jwt.PyJWTError as exc:
                raise InvalidToken(_why(exc)) from None
            if not isinstance(claims.get("sub"), str) or not claims["sub"]:
                raise InvalidToken("the sub claim is not a name")
            return claims
        raise InvalidToken("the signature does not verify with the configured public key(s)")


def _why(exc: Exception) -> str:
    """Say why a token was refused in fixed words: PyJWT's messages are safe, but fixed words surely are."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet (nbf or iat in the future)"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token's issuer is not the one configured (HCSYNC_GRPC_TOKEN_ISSUER)"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token has no {exc.claim} claim"
    if isinstance(exc, jwt.DecodeError):
        return "not a well-formed signed JWT"
    return f"the token does not verify ({type(exc).__name__})"


def _audiences(claims: Mapping[str, Any]) -> tuple[str, ...]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list):
        return tuple(a for a in aud if isinstance(a, str))
    return ()


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    scope = claims.get("scope", "")
    if isinstance(scope, str):
        return frozenset(scope.split())
    if isinstance(scope, list):
        return frozenset(s for s in scope if isinstance(s, str))
    return frozenset()


def _bearer(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of the ``authorization`` metadata; "" when the header is not ``Bearer <token>``."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class _Refusal(HcsyncError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class BearerTokens(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc's aio types are partial
    """Admit a call only with a valid bearer token holding the scope its method needs.

    Run it first among a server's interceptors: an unauthenticated request is refused before its body is
    even decoded. ``services`` are the access tables of every service the server hosts; a call to a
    hosted service without a table (other than the open health service) is refused, a call to a method
    the server does not host is UNIMPLEMENTED for an authenticated caller.
    """

    def __init__(self, verifier: TokenVerifier, services: Iterable[ServiceAccess]) -> None:
        self._verifier = verifier
        self._services = {access.service: access for access in services}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        full_method: str = handler_call_details.method
        service, _, method = full_method.lstrip("/").rpartition("/")
        if service in OPEN_SERVICES:
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        try:
            caller = self._authenticate(handler_call_details.invocation_metadata)
            if handler is None:
                return None  # UNIMPLEMENTED, told to authenticated callers only
            self._authorize(service, method, caller)
        except _Refusal as refusal:
            return _refusing(handler, full_method, refusal)
        return _as_caller(handler, caller)

    def _authenticate(self, metadata: Iterable[tuple[str, Any]] | None) -> Caller:
        token = _bearer(metadata)
        if token is None:
            raise _Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                "no bearer token: send the metadata 'authorization: Bearer <token>'",
            )
        if not token:
            raise _Refusal(
                grpc.StatusCode.UNAUTHENTICATED, "the authorization metadata is not 'Bearer <token>'"
            )
        try:
            claims = self._verifier.verify(token)
        except InvalidToken as exc:
            raise _Refusal(grpc.StatusCode.UNAUTHENTICATED, f"invalid bearer token: {exc}") from None
        return Caller(subject=claims["sub"], audiences=_audiences(claims), scopes=_scopes(claims))

    def _authorize(self, service: str, method: str, caller: Caller) -> None:
        access = self._services.get(service)
        if access is None:
            raise _Refusal(grpc.StatusCode.PERMISSION_DENIED, f"no access policy for the service {service}")
        if access.audience not in caller.audiences:
            raise _Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the token of {caller.subject!r} is not for the {access.audience} service (audience)",
            )
        needed = access.scope(method)
        if needed not in caller.scopes:
            raise _Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method} needs the scope {needed}; the token of {caller.subject!r} has "
                f"{' '.join(sorted(caller.scopes)) or 'none'}",
            )


def _refusing(handler: grpc.RpcMethodHandler | None, method: str, refusal: _Refusal) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that refuses the call without decoding its body."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        log.warning(
            "gRPC %s refused for %s: %s: %s", method, context.peer(), refusal.code.name, refusal.details
        )
        await context.abort(refusal.code, refusal.details)

    if handler is not None and handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


def _as_caller(handler: grpc.RpcMethodHandler, caller: Caller) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour run while :func:`current_caller` returns ``caller``."""
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behavior = getattr(handler, kind)
        if behavior is not None:
            return handler._replace(**{kind: _with_caller(behavior, caller)})
    return handler


def _with_caller(behavior: Callable[..., Any], caller: Caller) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def stream(*args: Any) -> Any:
            token = _CALLER.set(caller)
            try:
                async for item in behavior(*args):
                    yield item
            finally:
                _CALLER.reset(token)

        return stream
    if inspect.iscoroutinefunction(behavior):

        async def call(*args: Any) -> Any:
            token = _CALLER.set(caller)
            try:
                return await behavior(*args)
            finally:
                _CALLER.reset(token)

        return call

    def plain(*args: Any) -> Any:  # a synchronous behaviour runs in a thread of its own context
        token = _CALLER.set(caller)
        try:
            return behavior(*args)
        finally:
            _CALLER.reset(token)

    return plain


# -- server credentials ----------------------------------------------------------------------------------
def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"HCSYNC_{setting.upper()}: cannot read {path}: {exc.strerror}") from None


def server_credentials(settings: Settings) -> tuple[grpc.ServerCredentials, TokenVerifier] | None:
    """TLS credentials and the token verifier of an adapter server; None under ``grpc_insecure``.

    Raise ConfigurationError naming every missing setting: a server never falls back to plaintext.
    """
    if settings.grpc_insecure:
        return None
    needed = ["grpc_server_cert_file", "grpc_server_key_file", "grpc_token_public_key_file"]
    if settings.grpc_require_client_cert:
        needed.append("grpc_ca_file")
    missing = [f"HCSYNC_{name.upper()}" for name in needed if getattr(settings, name) is None]
    if missing:
        raise ConfigurationError(
            f"a gRPC server needs TLS and token verification: set {', '.join(missing)} "
            "(or HCSYNC_GRPC_INSECURE=true on a developer's machine only)"
        )
    assert settings.grpc_server_cert_file is not None and settings.grpc_server_key_file is not None
    assert settings.grpc_token_public_key_file is not None
    cert = _read(settings.grpc_server_cert_file, "grpc_server_cert_file")
    key = _read(settings.grpc_server_key_file, "grpc_server_key_file")
    ca = _read(settings.grpc_ca_file, "grpc_ca_file") if settings.grpc_ca_file is not None else None
    credentials = grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=ca if settings.grpc_require_client_cert else None,
        require_client_auth=settings.grpc_require_client_cert,
    )
    verifier = TokenVerifier.from_file(
        settings.grpc_token_public_key_file, settings.grpc_token_issuer, settings.grpc_token_leeway_s
    )
    return credentials, verifier


# -- client credentials ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ClientFiles:
    """What a gRPC client presents: the CA it trusts, its certificate and key (optional) and its token."""

    ca_file: Path
    token_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


def _local_dir(settings: Settings) -> Path:
    run = (
        settings.run_dir if settings.run_dir is not None else settings.home_dir.resolve() / "runs" / "latest"
    )
    return run / LOCAL_CREDENTIALS_DIR


def _embedded_default(settings: Settings) -> bool:
    return not (settings.billing_target or settings.erp_target or settings.kafka_bootstrap)


def client_files(settings: Settings) -> ClientFiles | None:
    """The files a client uses: the settings', else the running embedded stack's read-only ones.

    None under ``grpc_insecure``. Raise ConfigurationError naming the settings when there are none.
    """
    if settings.grpc_insecure:
        return None
    if settings.grpc_ca_file is not None or settings.grpc_token_file is not None:
        missing = [
            f"HCSYNC_{name.upper()}"
            for name in ("grpc_ca_file", "grpc_token_file")
            if getattr(settings, name) is None
        ]
        if missing:
            raise ConfigurationError(f"a gRPC client needs {' and '.join(missing)} too")
        assert settings.grpc_ca_file is not None and settings.grpc_token_file is not None
        return ClientFiles(
            settings.grpc_ca_file,
            settings.grpc_token_file,
            settings.grpc_client_cert_file,
            settings.grpc_client_key_file,
        )
    local = LocalCredentials(_local_dir(settings), settings.grpc_token_issuer)
    if _embedded_default(settings) and local.ca_file.is_file():
        # A command beside a running embedded stack: its read-only caller.
        reader = local.client_settings(READER)
        return ClientFiles(
            reader["grpc_ca_file"],
            reader["grpc_token_file"],
            reader["grpc_client_cert_file"],
            reader["grpc_client_key_file"],
        )
    raise ConfigurationError(
        "a gRPC client needs TLS and a bearer token: set HCSYNC_GRPC_CA_FILE and HCSYNC_GRPC_TOKEN_FILE "
        "(with HCSYNC_GRPC_CLIENT_CERT_FILE and HCSYNC_GRPC_CLIENT_KEY_FILE for mutual TLS), or start the "
        f"embedded stack (`hcsync up`), whose credentials would be in {local.directory}"
    )


class _TokenFile(grpc.AuthMetadataPlugin):  # type: ignore[misc]  # grpc is untyped
    """Put the token of a file on every call, re-reading the file when it changes (rotation)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    def _current(self) -> str:
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._token = self._path.read_text("utf-8").strip()
                self._stamp = stamp
            return self._token

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        try:
            token = self._current()
        except OSError as exc:
            # The call fails UNAVAILABLE naming the file; the token itself is never in a message.
            callback(
                (), ConfigurationError(f"HCSYNC_GRPC_TOKEN_FILE: cannot read {self._path}: {exc.strerror}")
            )
            return
        callback((("authorization", f"Bearer {token}"),), None)


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS channel credentials with the bearer token on every call; None under ``grpc_insecure``."""
    files = client_files(settings)
    if files is None:
        return None
    ca = _read(files.ca_file, "grpc_ca_file")
    cert = _read(files.cert_file, "grpc_client_cert_file") if files.cert_file is not None else None
    key = _read(files.key_file, "grpc_client_key_file") if files.key_file is not None else None
    if not files.token_file.is_file():
        raise ConfigurationError(f"HCSYNC_GRPC_TOKEN_FILE: {files.token_file} does not exist")
    tls = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.composite_channel_credentials(
        tls, grpc.metadata_call_credentials(_TokenFile(files.token_file))
    )


def secure_aio_channel(address: str, settings: Settings, options: list[tuple[str, Any]] | None = None) -> Any:
    """A grpc.aio channel to ``address``: TLS and tokens, or plaintext under ``grpc_insecure``."""
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


def secure_channel(address: str, settings: Settings, options: list[tuple[str, Any]] | None = None) -> Any:
    """A synchronous channel to ``address``: TLS and tokens, or plaintext under ``grpc_insecure``."""
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)
