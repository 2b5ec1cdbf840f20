"""Transport security and authentication for the cloud server: TLS, mutual TLS and a bearer token.

- :class:`TlsConfig` names the PEM files; :meth:`TlsConfig.server_credentials` turns them into
  ``grpc.ssl_server_credentials``. With ``client_ca`` the server requires a client certificate
  signed by that CA (mutual TLS).
- :class:`TokenAuthInterceptor` checks ``authorization: Bearer <token>`` metadata on every RPC
  with a constant-time comparison and answers UNAUTHENTICATED otherwise. grpc.health.v1 checks
  stay open, so load balancers and orchestrators can probe without the secret; health reveals
  only SERVING / NOT_SERVING.
- :class:`DecodeGuardInterceptor` answers INVALID_ARGUMENT to a request whose bytes are not the
  method's protobuf message (gRPC itself would answer INTERNAL and log a traceback each time).
- :func:`is_loopback` tells whether a bind address is reachable from other machines, so the
  server can warn when it would serve plaintext (or send a token in clear) to the network.

Where the token comes from (``--token-file`` or the ``SPECEDGE_TOKEN`` environment variable) is
the CLI's business (:mod:`specedge.cli.serve`); :func:`read_token_file` reads and checks a file.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from specedge.errors import ConfigError

__all__ = [
    "AUTH_METADATA_KEY",
    "OPEN_SERVICES",
    "UNDECODABLE_DETAILS",
    "DecodeGuardInterceptor",
    "TlsConfig",
    "TokenAuthInterceptor",
    "is_loopback",
    "read_token_file",
]

AUTH_METADATA_KEY = "authorization"  # gRPC metadata keys are lower case
_BEARER = "Bearer "
OPEN_SERVICES = ("/grpc.health.v1.Health/",)  # method prefixes that need no token
_MAX_TOKEN_BYTES = 4096


@dataclass(frozen=True)
class TlsConfig:
    """PEM files for a TLS server: its certificate chain and key, and optionally a client CA.

    With ``client_ca`` set, clients must present a certificate signed by it (mutual TLS).
    """

    cert: Path
    key: Path
    client_ca: Path | None = None

    def server_credentials(self) -> grpc.ServerCredentials:
        """``grpc.ssl_server_credentials`` from the files; ConfigError naming a file that cannot be read."""
        cert = _read_pem(self.cert, "TLS certificate")
        key = _read_pem(self.key, "TLS private key")
        client_ca = _read_pem(self.client_ca, "TLS client CA") if self.client_ca is not None else None
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )


def _read_pem(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{what} {path} is not a PEM file (no '-----BEGIN' line)")
    return data


def read_token_file(path: Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace stripped); ConfigError if missing or empty."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read token file {path}: {exc}") from exc
    return check_token(text.strip(), source=f"token file {path}")


def check_token(token: str, *, source: str = "token") -> str:
    """``token`` if it can travel as a gRPC metadata value; ConfigError otherwise."""
    if not token:
        raise ConfigError(f"{source} is empty; put the shared secret in it")
    if len(token.encode("utf-8")) > _MAX_TOKEN_BYTES:
        raise ConfigError(f"{source} is longer than {_MAX_TOKEN_BYTES} bytes")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigError(f"{source} must be printable ASCII without spaces (it travels as gRPC metadata)")
    return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP literal, ``[::1]`` or a name) only accepts connections from this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or a wildcard: assume reachable from the network


class TokenAuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Refuse RPCs without ``authorization: Bearer <token>`` metadata (UNAUTHENTICATED).

    The comparison is constant-time (:func:`hmac.compare_digest`) so response timing does not
    reveal how much of a guess was right. Methods under :data:`OPEN_SERVICES` (health) pass.
    """

    def __init__(self, token: str) -> None:
        self._expected = (_BEARER + check_token(token)).encode("ascii")

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Pass authorised calls on; answer the rest UNAUTHENTICATED without running the method."""
        method = handler_call_details.method or ""
        if method.startswith(OPEN_SERVICES) or self._authorised(handler_call_details.invocation_metadata):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # unknown method: let gRPC answer UNIMPLEMENTED
        return _refusal(handler)

    def _authorised(self, metadata: Any) -> bool:
        presented = b""
        for key, value in metadata or ():
            if key == AUTH_METADATA_KEY:
                presented = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
                break
        return hmac.compare_digest(presented, self._expected)


_UNAUTHENTICATED = "missing or wrong bearer token; send metadata 'authorization: Bearer <token>'"


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that answers UNAUTHENTICATED."""

    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, _UNAUTHENTICATED)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return make(
        deny,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


UNDECODABLE_DETAILS = "the request bytes are not a valid protobuf message for this method"


class _Undecodable:
    """What the guarded deserializer returns for bytes that do not parse."""


_UNDECODABLE = _Undecodable()


class DecodeGuardInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Answer INVALID_ARGUMENT, not INTERNAL, to requests that cannot be deserialized.

    It swaps each method's request deserializer for one that returns a marker on failure, and
    ends the call with INVALID_ARGUMENT when the handler would receive the marker (for a
    request stream: when the handler reaches the bad message).
    """

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """The method's handler with a deserializer that cannot raise."""
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer

        def guarded(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception:  # DecodeError and anything a custom deserializer raises
                return _UNDECODABLE

        if handler.request_streaming:
            kind = "stream_unary" if handler.stream_unary is not None else "stream_stream"
            wrapped = _checking_stream(getattr(handler, kind))
        else:
            kind = "unary_unary" if handler.unary_unary is not None else "unary_stream"
            wrapped = _checking_unary(getattr(handler, kind))
        return handler._replace(request_deserializer=guarded, **{kind: wrapped})


def _checking_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def checked(request: Any, context: grpc.ServicerContext) -> Any:
        if request is _UNDECODABLE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE_DETAILS)
        return behaviour(request, context)

    return checked


def _checking_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    def checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        def messages() -> Iterator[Any]:
            for request in requests:
                if request is _UNDECODABLE:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE_DETAILS)
                yield request

        return behaviour(messages(), context)

    return checked
