"""The embedded CA: what it issues passes a real TLS handshake, with and without client certificates."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from foundation.pki import CertificateAuthority


def _contexts(tmp_path: Path, *, mutual: bool) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = CertificateAuthority.create()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    ca.issue("billing", names=["localhost", "127.0.0.1"]).write(tmp_path / "srv.pem", tmp_path / "srv.key")
    ca.issue("worker", server=False, client=True).write(tmp_path / "cli.pem", tmp_path / "cli.key")
    assert (tmp_path / "srv.key").stat().st_mode & 0o077 == 0, "a private key must be owner-only"
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    if mutual:
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(tmp_path / "ca.pem")
    client = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    if mutual:
        client.load_cert_chain(tmp_path / "cli.pem", tmp_path / "cli.key")
    return server, client


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> str:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peer: dict[str, str] = {}

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                cert = tls.getpeercert()
                subject = dict(pair[0] for pair in cert["subject"]) if cert else {}
                peer["cn"] = str(subject.get("commonName", ""))
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client.wrap_socket(raw, server_hostname=host) as tls,
        ):
            assert tls.recv(2) == b"ok"
    finally:
        thread.join(5)
        listener.close()
    return peer.get("cn", "")


def test_a_server_certificate_verifies_by_name_and_address(tmp_path: Path) -> None:
    server, client = _contexts(tmp_path, mutual=False)
    assert _handshake(server, client, "localhost") == ""
    server, client = _contexts(tmp_path, mutual=False)
    assert _handshake(server, client, "127.0.0.1") == ""


def test_mutual_tls_names_the_client(tmp_path: Path) -> None:
    server, client = _contexts(tmp_path, mutual=True)
    assert _handshake(server, client, "localhost") == "worker"


def test_a_name_outside_the_certificate_is_refused(tmp_path: Path) -> None:
    server, client = _contexts(tmp_path, mutual=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "erp.example")


def test_a_client_without_a_certificate_is_refused_under_mutual_tls(tmp_path: Path) -> None:
    server, _ = _contexts(tmp_path, mutual=True)
    bare = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        _handshake(server, bare, "localhost")
