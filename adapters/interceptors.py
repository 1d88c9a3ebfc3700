"""Server interceptors every adapter's gRPC server runs (adapters/server.py).

``UndecodableRequests``: a request body that does not decode as the method's message is answered
INVALID_ARGUMENT, naming the method and the decoder's error, instead of the UNKNOWN grpc gives when a
deserializer raises; a client then knows the call can never succeed and does not retry it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

__all__ = ["UndecodableRequests"]


@dataclass(frozen=True, slots=True)
class _Undecodable:
    """What the deserializer hands on in place of a request it could not decode."""

    error: str


class UndecodableRequests(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc's aio types are partial
    """Answer an undecodable unary request with INVALID_ARGUMENT; every other call passes untouched."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer
        behavior = handler.unary_unary
        method = handler_call_details.method

        def tolerant(data: bytes) -> Any:
            try:
                return decode(data)
            except Exception as exc:  # protobuf's DecodeError, or anything a decoder raises
                # The type and message only: a decoder's message names offsets, never the bytes (PHI).
                return _Undecodable(f"{type(exc).__name__}: {str(exc)[:200]}")

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{method}: the request body does not decode as the method's message ({request.error})",
                )
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=tolerant, response_serializer=handler.response_serializer
        )
