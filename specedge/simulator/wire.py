"""Bytes on the wire for one ModelInfer: protobuf sizes, gRPC/HTTP/2 framing, TLS, TCP/IP, zstd.

SIEVE's simple model sends the bare input (thesis section 4.5.8); a real escalation sends a
serialised KServe v2 ``ModelInferRequest`` (what ``CloudClient`` reports as ``request_bytes``) inside
layers of framing. Per request on a kept-open gRPC channel (one HTTP/2 stream each):

    gRPC        5-byte message prefix (compressed flag, length)
    HTTP/2      HEADERS frame (9-byte frame header + HPACK block; tiny once the HPACK dynamic table
                knows the call's headers), the message in DATA frames (9 bytes each, at most
                ``max_frame_bytes`` of payload), response HEADERS and trailers, WINDOW_UPDATEs
    TLS         per record of up to 16 KiB: 5-byte header + 1-byte content type + 16-byte AEAD tag (TLS 1.3)
    TCP/IP      per MSS-sized segment: 20 (IPv4) + 20 (TCP) + 12 (timestamps option) bytes, and the
                receiver's delayed ACKs (one per two segments) in the other direction

The HTTP/2 numbers below were measured with grpcio 1.85 through a byte-counting proxy
(tests/simulator/test_wire.py checks the model against that proxy on the real server); TLS and
TCP/IP follow the RFCs and cannot be seen by a user-space proxy. Connection set-up (TCP and TLS
handshakes, the HTTP/2 preface and the first request's full headers) is paid per connection and
lives in :class:`specedge.simulator.links.ConnectionProfile`.

Compression: SIEVE's realistic model assumes 4x lossless input compression. Here zstd compresses
the serialised request (as gRPC message compression would); :func:`compression_ratio` measures it
on real images: 3.4x on MNIST and 1.15x on CIFAR-10 (JPEG-decoded) test images at level 3 (3.6x and
1.18x at level 19; 500 images each, measured here), so SIEVE's 4x is near the mark for sparse digits
and far from it for natural images.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import zstandard
from numpy.typing import ArrayLike

from specedge.errors import ConfigError
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "MessageSizes",
    "WireFraming",
    "compressed_request_bytes",
    "compression_ratio",
    "http2_stream_bytes",
    "infer_message_sizes",
    "wire_bytes",
]

#: Tensor names of the KServe v2 contract between ``edge.cloud_client`` and ``cloud.servicer``
#: (tests/simulator/test_wire.py checks the sizes built here against the real client's).
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


@dataclass(frozen=True)
class MessageSizes:
    """Serialised sizes of one ModelInfer (``ByteSize()``), as ``CloudClient`` reports them."""

    request_bytes: int
    response_bytes: int
    payload_bytes: int  # the raw input inside the request


def _request(images: np.ndarray, *, model_name: str, model_version: str, request_id: str) -> pb.ModelInferRequest:
    """The request ``CloudClient.infer`` builds."""
    request = pb.ModelInferRequest(model_name=model_name, model_version=model_version, id=request_id)
    datatype, shape, raw = tensors.encode_raw(images)
    request.inputs.add(name=INPUT_NAME, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def infer_message_sizes(
    image_shape: Sequence[int],
    num_classes: int,
    *,
    batch_size: int = 1,
    model_name: str = "master",
    model_version: str = "1",
    request_id: str = "input-000000",
    queue_time_us: int = 100,
    compute_time_us: int = 1000,
) -> MessageSizes:
    """Sizes of the real request and response messages for uint8 images of ``image_shape`` (C, H, W).

    Built like ``CloudClient.infer`` and the servicer's response (logits as raw FP32, queue and
    compute time as int64 parameters, whose varint size depends on their values), without a server.
    The client sends an empty model version; the server answers with its own (``model_version``).
    """
    if batch_size < 1 or num_classes < 1 or any(d < 1 for d in image_shape):
        raise ConfigError(
            f"message sizes need positive sizes; got batch {batch_size}, image shape {tuple(image_shape)}, "
            f"{num_classes} classes"
        )
    images = np.zeros((batch_size, *image_shape), dtype=np.uint8)
    request = _request(images, model_name=model_name, model_version="", request_id=request_id)
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id)
    tensors.write_parameters(response.parameters, {"queue_time_us": queue_time_us, "compute_time_us": compute_time_us})
    output = response.outputs.add(name=OUTPUT_NAME)
    output.datatype, shape, raw = tensors.encode_raw(np.zeros((batch_size, num_classes), dtype=np.float32))
    output.shape.extend(shape)
    response.raw_output_contents.append(raw)
    return MessageSizes(
        request_bytes=request.ByteSize(), response_bytes=response.ByteSize(), payload_bytes=images.nbytes
    )


# --- framing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireFraming:
    """Per-request framing constants; HTTP/2 values measured on grpcio 1.85 (C-core), warm channel."""

    grpc_prefix_bytes: int = 5  # gRPC length-prefixed message: 1 flag byte + 4 length bytes
    frame_header_bytes: int = 9  # every HTTP/2 frame (RFC 9113 section 4.1)
    max_frame_bytes: int = 16384  # SETTINGS_MAX_FRAME_SIZE default; grpc C-core peers allow more (fewer headers)
    request_headers_bytes: int = 9  # HPACK block of a request once its headers are in the dynamic table
    response_headers_bytes: int = 3  # HPACK block of the response headers
    trailers_bytes: int = 16  # HPACK block of the trailers (grpc-status, grpc-message)
    uplink_control_bytes: int = 26  # two WINDOW_UPDATE frames (13 bytes each) per call from the client
    downlink_control_bytes: int = 13  # one WINDOW_UPDATE frame per call from the server
    tls_record_bytes: int = 16384  # TLS maximum plaintext per record
    tls_record_overhead_bytes: int = 22  # TLS 1.3: 5 header + 1 content type + 16 AEAD tag (RFC 8446)
    mss_bytes: int = 1448  # 1500-byte MTU minus IPv4, TCP and timestamp headers
    tcp_ip_header_bytes: int = 52  # IPv4 20 + TCP 20 + timestamps option 12 (Linux default)
    segments_per_ack: int = 2  # delayed ACK: one pure ACK per two full segments (RFC 9293 section 3.8.6.3)

    def __post_init__(self) -> None:
        divisors = {
            "max_frame_bytes": self.max_frame_bytes,
            "tls_record_bytes": self.tls_record_bytes,
            "mss_bytes": self.mss_bytes,
            "segments_per_ack": self.segments_per_ack,
        }
        bad = {k: v for k, v in divisors.items() if v < 1}
        if bad:
            raise ConfigError(f"wire framing sizes must be >= 1; got {bad}")


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    return -(-a // b)


def http2_stream_bytes(
    request_message_bytes: ArrayLike, response_message_bytes: ArrayLike, framing: WireFraming = WireFraming()
) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of one ModelInfer's HTTP/2 stream, client -> server and server -> client (what a proxy counts).

    Takes serialised message sizes (ints or int arrays) and returns int64 arrays of the same shape.
    """

    def data(message: ArrayLike) -> np.ndarray:
        body = np.asarray(message, dtype=np.int64) + framing.grpc_prefix_bytes
        return np.asarray(body + framing.frame_header_bytes * np.maximum(_ceil_div(body, framing.max_frame_bytes), 1))

    h = framing.frame_header_bytes
    up = h + framing.request_headers_bytes + data(request_message_bytes) + framing.uplink_control_bytes
    down = (
        h + framing.response_headers_bytes + data(response_message_bytes) + h + framing.trailers_bytes
    ) + framing.downlink_control_bytes
    return up, down


def wire_bytes(
    request_message_bytes: ArrayLike,
    response_message_bytes: ArrayLike,
    *,
    tls: bool,
    framing: WireFraming = WireFraming(),
) -> tuple[np.ndarray, np.ndarray]:
    """Uplink and downlink bytes on the wire (IP packets) for one ModelInfer on a kept-open channel.

    Args:
        request_message_bytes: serialised request size(s) (``ByteSize()``), an int or an int array.
        response_message_bytes: serialised response size(s), same shape.
        tls: whether the channel is TLS-protected.
        framing: the framing constants.

    Returns:
        (uplink bytes, downlink bytes) as int64 arrays, each with the ACKs the other direction's data causes.
    """
    up, down = http2_stream_bytes(request_message_bytes, response_message_bytes, framing)
    if tls:
        up = up + framing.tls_record_overhead_bytes * _ceil_div(up, framing.tls_record_bytes)
        down = down + framing.tls_record_overhead_bytes * _ceil_div(down, framing.tls_record_bytes)
    up_segments = _ceil_div(up, framing.mss_bytes)
    down_segments = _ceil_div(down, framing.mss_bytes)
    header = framing.tcp_ip_header_bytes
    up_acks = header * _ceil_div(down_segments, framing.segments_per_ack)
    down_acks = header * _ceil_div(up_segments, framing.segments_per_ack)
    return up + header * up_segments + up_acks, down + header * down_segments + down_acks


# --- compression -----------------------------------------------------------------------------------


def _serialised_requests(images: np.ndarray, *, model_name: str, request_id: str) -> Iterator[bytes]:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ConfigError(f"expected uint8 images (N, C, H, W); got {images.dtype} {images.shape}")
    for image in images:
        yield _request(image[None], model_name=model_name, model_version="", request_id=request_id).SerializeToString()


def compressed_request_bytes(
    images: np.ndarray,
    *,
    level: int = 3,
    model_name: str = "master",
    request_id: str = "input-000000",
) -> np.ndarray:
    """Per image, the zstd-compressed size of its serialised ModelInferRequest (int64, ``(N,)``).

    Args:
        images: uint8 ``(N, C, H, W)``, one request per image.
        level: zstd compression level (1-22).
        model_name: the model named in the request.
        request_id: the request id (its bytes are compressed with the rest).
    """
    compressor = zstandard.ZstdCompressor(level=level)
    messages = _serialised_requests(images, model_name=model_name, request_id=request_id)
    return np.array([len(compressor.compress(message)) for message in messages], dtype=np.int64)


def compression_ratio(images: np.ndarray, *, level: int = 3) -> float:
    """Serialised request bytes / their zstd-compressed bytes over ``images`` (SIEVE assumes 4)."""
    raw = sum(len(message) for message in _serialised_requests(images, model_name="master", request_id="input-000000"))
    return float(raw / compressed_request_bytes(images, level=level).sum())
