"""Credentials the embedded stack, the benches and the tests make for themselves: a CA, certificates, a
token signing key and one token per caller, written to a directory.

A deployment never uses this: it points the ``grpc_*`` settings at its own PKI and token issuer. The
embedded stack calls :func:`issue_local` at start, in ``<run dir>/grpc``, and hands the files to its
children through settings (:meth:`LocalCredentials.server_settings`, ``client_settings``).

Layout of the directory: ``ca.crt``; ``<service>.crt`` / ``<service>.key`` per adapter (server
certificates, SAN: localhost, 127.0.0.1 and the given host names); ``token-signing.key`` (ES256 private,
0600) and ``token-signing.pub``; per caller ``<caller>.crt`` / ``<caller>.key`` (client certificate) and
``<caller>.token`` (a JWT naming only the audiences and scopes that caller needs). Private keys and
tokens are written readable by their owner only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from foundation.pki import CertificateAuthority, write_private
from foundation.settings import Settings

__all__ = [
    "CALLER_SCOPES",
    "READER",
    "SERVICES",
    "WORKER",
    "LocalCredentials",
    "issue_local",
    "new_signing_key",
    "public_key_pem",
    "sign_token",
]

# The adapter services (each token's audience names the ones its caller may call).
SERVICES = ("billing", "erp", "payer")
# The embedded stack's callers and what each may do: the workers' dispatchers write (and read, for their
# readiness), commands beside the stack (`hcsync report`, `hcsync status`, the demo) only read.
WORKER, READER = "worker", "reader"
CALLER_SCOPES: Mapping[str, tuple[str, ...]] = {
    WORKER: ("billing:read", "billing:write", "erp:read", "erp:write", "payer:read", "payer:write"),
    READER: ("billing:read", "erp:read", "payer:read"),
}
# As long as the embedded CA's certificates (foundation/pki.py): any run, yet they expire.
TOKEN_LIFETIME_S = 30 * 24 * 3600


def new_signing_key() -> ec.EllipticCurvePrivateKey:
    """A new ES256 (P-256) token signing key."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The PEM public key servers verify tokens of ``key`` with."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign_token(
    key: Any,
    *,
    issuer: str,
    subject: str,
    audience: Sequence[str],
    scopes: Iterable[str],
    lifetime_s: float = TOKEN_LIFETIME_S,
    not_before_s: float = 0.0,
    now: float | None = None,
    algorithm: str = "ES256",
) -> str:
    """A signed JWT with ``iss``, ``sub``, ``aud``, ``scope`` (space separated), ``iat``, ``nbf``, ``exp``.

    ``not_before_s`` delays validity from ``now``; a negative ``lifetime_s`` makes an expired token.
    """
    issued = time.time() if now is None else now
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": list(audience),
        "scope": " ".join(scopes),
        "iat": int(issued),
        "nbf": int(issued + not_before_s),
        "exp": int(issued + lifetime_s),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=algorithm)


@dataclass(frozen=True, slots=True)
class LocalCredentials:
    """The files :func:`issue_local` wrote."""

    directory: Path
    issuer: str

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def public_key_file(self) -> Path:
        return self.directory / "token-signing.pub"

    @property
    def signing_key_file(self) -> Path:
        return self.directory / "token-signing.key"

    def signing_key(self) -> ec.EllipticCurvePrivateKey:
        """The token signing key (tests sign their own tokens with it)."""
        key = serialization.load_pem_private_key(self.signing_key_file.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def server_settings(self, service: str, *, require_client_cert: bool = True) -> dict[str, Any]:
        """The settings of the ``service`` adapter's server."""
        return {
            "grpc_ca_file": self.ca_file,
            "grpc_server_cert_file": self.directory / f"{service}.crt",
            "grpc_server_key_file": self.directory / f"{service}.key",
            "grpc_require_client_cert": require_client_cert,
            "grpc_token_public_key_file": self.public_key_file,
            "grpc_token_issuer": self.issuer,
        }

    def client_settings(self, caller: str, *, certificate: bool = True) -> dict[str, Any]:
        """The settings of a client calling as ``caller`` (with its client certificate unless told not)."""
        out: dict[str, Any] = {
            "grpc_ca_file": self.ca_file,
            "grpc_token_file": self.directory / f"{caller}.token",
            "grpc_token_issuer": self.issuer,
        }
        if certificate:
            out["grpc_client_cert_file"] = self.directory / f"{caller}.crt"
            out["grpc_client_key_file"] = self.directory / f"{caller}.key"
        return out

    def apply(self, settings: Settings, **fields: Any) -> Settings:
        """``settings`` with ``fields`` (from the two methods above) set."""
        return settings.model_copy(update=fields)


def issue_local(
    directory: Path,
    *,
    hosts: Iterable[str] = (),
    issuer: str = "hcsync",
    callers: Mapping[str, Sequence[str]] = CALLER_SCOPES,
    services: Sequence[str] = SERVICES,
) -> LocalCredentials:
    """Make a CA, a server certificate per service, a signing key and a certificate and token per caller.

    Server certificates name localhost, 127.0.0.1 and ``hosts`` (the address the servers listen on). Each
    caller's token names as audiences only the services its scopes mention.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca = CertificateAuthority.create("hcsync embedded gRPC CA")
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    names = list(dict.fromkeys(["localhost", "127.0.0.1", *hosts]))
    for service in services:
        issued = ca.issue(f"hcsync {service} adapter", names=names, server=True)
        issued.write(directory / f"{service}.crt", directory / f"{service}.key")
    key = new_signing_key()
    write_private(
        directory / "token-signing.key",
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    (directory / "token-signing.pub").write_bytes(public_key_pem(key))
    for caller, scopes in callers.items():
        issued = ca.issue(f"hcsync {caller}", server=False, client=True)
        issued.write(directory / f"{caller}.crt", directory / f"{caller}.key")
        audience = [service for service in services if any(s.startswith(f"{service}:") for s in scopes)]
        token = sign_token(key, issuer=issuer, subject=caller, audience=audience, scopes=scopes)
        write_private(directory / f"{caller}.token", token.encode())
    return LocalCredentials(directory, issuer)
