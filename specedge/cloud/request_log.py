"""A record of every ModelInfer call the cloud answered: streamed to JSON lines, the recent ones in memory.

The demo uses it to show that exactly the inputs the edge escalated reached the cloud: the edge
tags each escalation with a request id, the server records the id with its status and timings.
With a path, each entry is appended as one JSON object per line and flushed at once, so another
process can read the file while the server runs (:func:`read_request_log` skips a last line that
is still being written).

Memory stays bounded whatever clients send: only the most recent ``keep`` entries stay in memory
(for tests and the demo; the file has them all), and ids, names and details are cut to a few
hundred characters before they are kept or written (a 10 MiB request id costs a 10 MiB request,
not 10 MiB of log).

Given the RPC's ``context``, :meth:`RequestLog.record` logs the status the client actually
receives: an answer computed after the client's deadline passed, or after it cancelled, is
logged DEADLINE_EXCEEDED or CANCELLED, with what the server meant to answer in ``server_status``.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import grpc

from specedge.errors import CloudError, ConfigError

__all__ = ["DEFAULT_KEEP", "MAX_DETAILS_CHARS", "MAX_NAME_CHARS", "RequestLog", "RequestLogEntry", "read_request_log"]

DEFAULT_KEEP = 1000  # entries kept in memory
MAX_NAME_CHARS = 256  # request ids, model names, answered_by
MAX_DETAILS_CHARS = 1000


@dataclass(frozen=True)
class RequestLogEntry:
    """One ModelInfer call as the server saw it."""

    request_id: str
    model_name: str
    batch_size: int  # as declared by the request's input shape; 0 when it had none
    status: str  # gRPC status code name: "OK", "INVALID_ARGUMENT", ...
    queue_time_us: int  # 0 unless the request reached the engine
    compute_time_us: int
    received_unix_s: float
    details: str = ""  # the error message sent to the client, "" on success
    speculative_prediction: int | None = None  # the edge's own answer, sent with a recovery request
    agreed: bool | None = None  # whether the cloud's answer equals speculative_prediction
    answered_by: str = ""  # Dynamic Duo: "little", "big" or "little+big"; "" for a single model
    recovery: bool = False  # a recovery request from the edge (parameter specedge_recovery)
    server_status: str = ""  # what the server answered when the client did not receive it; "" = status

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestLogEntry:
        """Inverse of :meth:`to_json` after ``json.loads``; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


class RequestLog:
    """Thread-safe log of :class:`RequestLogEntry`: all to a JSON-lines file, the recent ones in memory.

    With ``path`` set, every entry is written there; the most recent ``keep`` stay in memory.

    The file is opened for appending on construction (its folder is created) and closed by
    :meth:`close` or on leaving a ``with`` block.
    """

    def __init__(self, path: Path | None = None, *, keep: int = DEFAULT_KEEP) -> None:
        if keep < 0:
            raise ConfigError(f"keep must be >= 0 entries; got {keep}")
        self.path = Path(path) if path is not None else None
        self._entries: deque[RequestLogEntry] = deque(maxlen=keep)
        self.recorded = 0  # entries recorded since construction, kept in memory or not
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")

    def record(self, entry: RequestLogEntry, *, context: grpc.ServicerContext | None = None) -> None:
        """Append ``entry`` (long texts cut); with a file, write and flush its line before returning.

        With ``context`` (the RPC's, before its handler returns) the logged status is the one the
        client receives: if the RPC already ended (deadline passed or client cancelled), that code.
        """
        entry = _bounded(entry)
        if context is not None:
            entry = _as_received(entry, context)
        line = entry.to_json() + "\n"
        with self._lock:
            self.recorded += 1
            self._entries.append(entry)
            if self._file is not None:
                self._file.write(line)
                self._file.flush()

    def entries(self) -> list[RequestLogEntry]:
        """A copy of the most recent entries (at most ``keep``), oldest first."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def close(self) -> None:
        """Close the file (if any); later entries are kept in memory only (the recent ones)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} chars)"


def _bounded(entry: RequestLogEntry) -> RequestLogEntry:
    """``entry`` with request id, model name and details cut to a bounded length."""
    cut: dict[str, Any] = {
        "request_id": _cut(entry.request_id, MAX_NAME_CHARS),
        "model_name": _cut(entry.model_name, MAX_NAME_CHARS),
        "answered_by": _cut(entry.answered_by, MAX_NAME_CHARS),
        "details": _cut(entry.details, MAX_DETAILS_CHARS),
    }
    if all(getattr(entry, key) is value for key, value in cut.items()):
        return entry
    return replace(entry, **cut)


def _as_received(entry: RequestLogEntry, context: grpc.ServicerContext) -> RequestLogEntry:
    """``entry`` with the status the client gets: the server's, unless the RPC has already ended.

    A server-side RPC is no longer active once the client cancelled it or its deadline passed
    (gRPC cancels it then); the answer the handler is about to return is never sent. An RPC
    that ends in the moment between this check and sending the answer is still logged with
    the server's status.
    """
    if context.is_active():
        return entry
    received = grpc.StatusCode.DEADLINE_EXCEEDED if context.time_remaining() <= 0 else grpc.StatusCode.CANCELLED
    return replace(entry, status=received.name, server_status=entry.status)


def read_request_log(path: Path) -> list[RequestLogEntry]:
    """Entries of a JSON-lines request log, oldest first; a missing file reads as empty.

    A last line without its newline is being written right now and is skipped.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # the part after the last newline is incomplete (or empty)
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(RequestLogEntry.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise CloudError(f"request log {path} line {number} is not a valid entry: {exc}") from exc
    return entries
