"""A record of every ModelInfer call the cloud answered, in memory and as JSON lines.

The demo uses it to show that exactly the inputs the edge escalated reached the cloud: the edge
tags each escalation with a request id, the server records the id with its status and timings.
With a path, each entry is appended as one JSON object per line and flushed at once, so another
process can read the file while the server runs (:func:`read_request_log` skips a last line that
is still being written).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from specedge.errors import CloudError

__all__ = ["RequestLog", "RequestLogEntry", "read_request_log"]


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

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestLogEntry:
        """Inverse of :meth:`to_json` after ``json.loads``; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


class RequestLog:
    """Thread-safe list of :class:`RequestLogEntry`, mirrored to a JSON-lines file if ``path`` is set.

    The file is opened for appending on construction (its folder is created) and closed by
    :meth:`close` or on leaving a ``with`` block.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._entries: list[RequestLogEntry] = []
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")

    def record(self, entry: RequestLogEntry) -> None:
        """Append ``entry``; with a file, write and flush its line before returning."""
        line = entry.to_json() + "\n"
        with self._lock:
            self._entries.append(entry)
            if self._file is not None:
                self._file.write(line)
                self._file.flush()

    def entries(self) -> list[RequestLogEntry]:
        """A copy of the entries recorded so far, oldest first."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def close(self) -> None:
        """Close the file (if any); later entries are kept in memory only."""
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
