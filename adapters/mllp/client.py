"""An MLLP client: send messages one at a time over one connection and read the ACK of each.

It waits for each ACK before sending the next message, which is what the gateway's in-order handling
expects and what makes the result list line up with the input. A message whose MSH-15 is NE, ER or SU may
legitimately get no ACK; this client is for senders that want one (original mode or AL), and reports the
missing answer as a timeout.

:func:`client_tls_context` builds the TLS context a sender uses from the settings: the CA it trusts for the
gateway (``mllp_client_tls_ca_file``) and, for mutual TLS, the certificate it presents.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

from adapters.mllp.ack import POSITIVE_CODES
from adapters.mllp.framing import MllpDecoder, encode
from canonical.errors import ConfigurationError, DecodeError, Fault, StackError
from canonical.hl7v2.parser import parse_message
from foundation.settings import Settings

__all__ = ["AckResult", "MllpClientError", "client_tls_context", "next_frame", "parse_ack", "send_mllp"]

# Largest ACK accepted: an ACK is a few hundred bytes, anything near this is not one.
_MAX_ACK_BYTES = 1_048_576
_READ_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class AckResult:
    """The answer to one message: MSA-2, MSA-1, whether that is positive, the error text, the ACK bytes."""

    control_id: str
    code: str
    positive: bool
    # ERR-8 (user message), else MSA-3 (text message), else the text of the error code in ERR-1 or ERR-3.
    text: str
    raw: bytes


class MllpClientError(StackError):
    """The exchange failed; ``results`` holds the ACKs received before it did, in order."""

    def __init__(self, message: str, results: list[AckResult]) -> None:
        super().__init__(message)
        self.results = results


def client_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """Return the sender's TLS context from the settings, or None when the sender speaks plain TCP.

    ``mllp_client_tls_ca_file`` turns TLS on (the gateway's certificate must be issued by it and name the
    host dialled); ``mllp_client_tls_cert_file`` and ``mllp_client_tls_key_file`` add the client
    certificate a gateway with mutual TLS asks for.
    """
    ca = settings.mllp_client_tls_ca_file
    cert, key = settings.mllp_client_tls_cert_file, settings.mllp_client_tls_key_file
    if (cert is None) != (key is None):
        raise ConfigurationError(
            "HCSYNC_MLLP_CLIENT_TLS_CERT_FILE and HCSYNC_MLLP_CLIENT_TLS_KEY_FILE must be set together"
        )
    if ca is None:
        if cert is not None:
            raise ConfigurationError(
                "a client certificate (HCSYNC_MLLP_CLIENT_TLS_CERT_FILE) needs TLS: set "
                "HCSYNC_MLLP_CLIENT_TLS_CA_FILE to the CA of the gateway's certificate"
            )
        return None
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the MLLP CA {ca} (HCSYNC_MLLP_CLIENT_TLS_CA_FILE): {exc}"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(certfile=cert, keyfile=key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the MLLP client certificate {cert} with key {key} "
                f"(HCSYNC_MLLP_CLIENT_TLS_CERT_FILE, HCSYNC_MLLP_CLIENT_TLS_KEY_FILE): {exc}"
            ) from exc
    return context


def parse_ack(raw: bytes) -> AckResult:
    """Read an ACK's MSA and ERR segments; raise DecodeError when it is not an ACK."""
    msg = parse_message(raw)
    msa = msg.segment("MSA")
    if msa is None:
        raise DecodeError(
            Fault(
                rule="MLLP-NOT-AN-ACK",
                reason="the answer has no MSA segment",
                message_id=msg.control_id,
                segment="MSA",
            )
        )
    code = msa.get(1).strip().upper()
    err = msg.segment("ERR")
    text = err.get(8) if err is not None else ""
    text = text or msa.get(3)
    if not text and err is not None:
        text = err.get(1, 4, 2) or err.get(3, 2)
    return AckResult(control_id=msa.get(2, 0), code=code, positive=code in POSITIVE_CODES, text=text, raw=raw)


async def next_frame(reader: asyncio.StreamReader, decoder: MllpDecoder) -> bytes:
    """Return the next frame from the connection; raise ConnectionError when the peer closes it first."""
    while True:
        for frame in decoder.frames():
            return frame
        chunk = await reader.read(_READ_BYTES)
        if not chunk:
            raise ConnectionError("the peer closed the connection before answering")
        decoder.feed(chunk)


async def send_mllp(
    host: str,
    port: int,
    messages: list[bytes],
    *,
    tls: ssl.SSLContext | None = None,
    timeout_s: float = 30,
) -> list[AckResult]:
    """Send each message over one MLLP connection, wait for its ACK, and return the ACKs in order.

    ``timeout_s`` bounds the connection and each ACK. Raises MllpClientError (with the ACKs received so
    far) when the peer cannot be reached, closes the connection, stays silent, or answers out of turn.
    """
    target = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls is not None else None),
            timeout_s,
        )
    except (OSError, TimeoutError) as exc:
        raise MllpClientError(f"cannot connect to the MLLP gateway at {target}: {exc!r}", []) from exc
    decoder = MllpDecoder(_MAX_ACK_BYTES)
    results: list[AckResult] = []
    try:
        for number, raw in enumerate(messages, 1):
            sent_id = _control_id(raw)
            where = f"message {number} (control id {sent_id or '?'})"
            try:
                writer.write(encode(raw))
                await asyncio.wait_for(writer.drain(), timeout_s)
                answer = await asyncio.wait_for(next_frame(reader, decoder), timeout_s)
            except TimeoutError as exc:
                raise MllpClientError(
                    f"{target} sent no ACK for {where} within {timeout_s:g}s", results
                ) from exc
            except OSError as exc:
                raise MllpClientError(f"connection to {target} lost at {where}: {exc}", results) from exc
            try:
                result = parse_ack(answer)
            except DecodeError as exc:
                raise MllpClientError(
                    f"{target} answered {where} with something that is not an ACK", results
                ) from exc
            if result.control_id and sent_id and result.control_id != sent_id:
                raise MllpClientError(
                    f"{target} answered {where} with an ACK for control id {result.control_id}", results
                )
            results.append(result)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return results


def _control_id(raw: bytes) -> str:
    """Return the MSH-10 of an outgoing message, or "" when it does not parse."""
    try:
        return parse_message(raw).control_id
    except DecodeError:
        return ""
