"""RequestLog: thread-safe, in memory and as flushed JSON lines another process can read."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from specedge.cloud.request_log import RequestLog, RequestLogEntry, read_request_log
from specedge.errors import CloudError


def _entry(i: int, status: str = "OK") -> RequestLogEntry:
    return RequestLogEntry(
        request_id=f"r{i}",
        model_name="master",
        batch_size=i,
        status=status,
        queue_time_us=i,
        compute_time_us=10 * i,
        received_unix_s=1_700_000_000.0 + i,
    )


def test_in_memory_only() -> None:
    log = RequestLog()
    log.record(_entry(1))
    entries = log.entries()
    entries.clear()  # a copy
    assert log.entries() == [_entry(1)]
    assert len(log) == 1
    log.close()


def test_json_lines_are_flushed_per_entry(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "requests.jsonl"
    with RequestLog(path) as log:
        log.record(_entry(1))
        # readable before close: the line was flushed
        assert read_request_log(path) == [_entry(1)]
        log.record(_entry(2, "INVALID_ARGUMENT"))
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["request_id"] for line in lines] == ["r1", "r2"]
        assert json.loads(lines[1])["status"] == "INVALID_ARGUMENT"
    assert read_request_log(path) == [_entry(1), _entry(2, "INVALID_ARGUMENT")]


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    with RequestLog(path) as log:
        log.record(_entry(1))
    with RequestLog(path) as log:
        log.record(_entry(2))
        assert log.entries() == [_entry(2)]
    assert [e.request_id for e in read_request_log(path)] == ["r1", "r2"]


def test_concurrent_records_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    with RequestLog(path) as log:
        threads = [
            threading.Thread(target=lambda k=k: [log.record(_entry(100 * k + i)) for i in range(50)]) for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(log) == 200
    on_disk = read_request_log(path)
    assert sorted(e.request_id for e in on_disk) == sorted(f"r{100 * k + i}" for k in range(4) for i in range(50))


def test_reader_skips_a_line_being_written_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    assert read_request_log(path) == []
    path.write_text(_entry(1).to_json() + "\n" + '{"request_id": "r2", "mod', encoding="utf-8")
    assert read_request_log(path) == [_entry(1)]


def test_reader_rejects_corrupt_lines(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(CloudError, match="line 1 is not a valid entry"):
        read_request_log(path)
