"""RequestLog: thread-safe, flushed JSON lines another process can read, bounded memory, the status received."""

from __future__ import annotations

import gc
import json
import threading
import time
from concurrent import futures
from dataclasses import replace
from pathlib import Path

import grpc
import psutil
import pytest
import torch

from specedge.cloud import InferenceEngine, create_server
from specedge.cloud.request_log import (
    MAX_DETAILS_CHARS,
    MAX_NAME_CHARS,
    RequestLog,
    RequestLogEntry,
    read_request_log,
)
from specedge.errors import CloudError
from specedge.models import build_classifier
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub


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


def test_memory_keeps_only_the_recent_entries(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    with RequestLog(path, keep=5) as log:
        for i in range(12):
            log.record(_entry(i))
        assert [e.request_id for e in log.entries()] == [f"r{i}" for i in range(7, 12)]
        assert len(log) == 5 and log.recorded == 12
    assert len(read_request_log(path)) == 12  # the file has them all


def test_huge_texts_are_cut_in_memory_and_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    huge = "x" * 10_000_000
    with RequestLog(path) as log:
        log.record(replace(_entry(1), request_id=huge, model_name=huge, details=huge, answered_by=huge))
        (entry,) = log.entries()
    assert len(entry.request_id) <= MAX_NAME_CHARS + 30 and entry.request_id.endswith(f"(+{10_000_000 - 256} chars)")
    assert len(entry.model_name) <= MAX_NAME_CHARS + 30
    assert len(entry.details) <= MAX_DETAILS_CHARS + 30
    assert path.stat().st_size < 5_000
    assert read_request_log(path) == [entry]


def test_new_fields_default_and_round_trip(tmp_path: Path) -> None:
    old_line = json.dumps({k: v for k, v in json.loads(_entry(1).to_json()).items()})
    assert RequestLogEntry.from_dict(json.loads(old_line)) == _entry(1)
    rich = replace(_entry(2), speculative_prediction=7, agreed=False, answered_by="big", recovery=True)
    path = tmp_path / "requests.jsonl"
    with RequestLog(path) as log:
        log.record(rich)
    assert read_request_log(path) == [rich]


def _slow_server(log: RequestLog, delay_s: float) -> tuple[grpc.Server, int]:
    """A server whose one unary method waits ``delay_s``, then records an OK entry with its context."""

    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(delay_s)
        log.record(_entry(1), context=context)
        return b"done"

    handler = grpc.method_handlers_generic_handler("test.Slow", {"Call": grpc.unary_unary_rpc_method_handler(handle)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.mark.parametrize("ending", ["ok", "deadline", "cancel"])
def test_records_the_status_the_client_received(ending: str) -> None:
    log = RequestLog()
    server, port = _slow_server(log, delay_s=0.6)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Slow/Call")
            if ending == "ok":
                assert call(b"", timeout=10) == b"done"
                expected = ("OK", "")
            elif ending == "deadline":
                with pytest.raises(grpc.RpcError) as info:
                    call(b"", timeout=0.2)
                assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                expected = ("DEADLINE_EXCEEDED", "OK")
            else:
                future = call.future(b"", timeout=10)
                time.sleep(0.2)
                future.cancel()
                expected = ("CANCELLED", "OK")
        deadline = time.monotonic() + 10
        while not log.entries() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop(5).wait()
    (entry,) = log.entries()
    assert (entry.status, entry.server_status) == expected


def test_server_log_memory_is_bounded_under_huge_ids(tmp_path: Path) -> None:
    """60 requests with 10 MiB ids (the outside review saw +523 MB RSS) leave little behind."""
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    log_path = tmp_path / "requests.jsonl"
    with RequestLog(log_path) as log:
        server, port = create_server({"master": InferenceEngine(classifier, model_name="master")}, request_log=log)
        process = psutil.Process()
        try:
            with grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 2**20),
                                              ("grpc.max_receive_message_length", 64 * 2**20)]
            ) as channel:  # fmt: skip
                stub = GRPCInferenceServiceStub(channel)
                for i in range(60):
                    request = pb.ModelInferRequest(model_name="master", id=f"{i:02d}" + "x" * (10 * 2**20))
                    request.inputs.add(name="images", datatype="UINT8", shape=[1, 1, 8, 8])
                    request.raw_input_contents.append(bytes(64))
                    stub.ModelInfer(request, timeout=30)
                    if i == 9:  # after warm-up: allocator pools, gRPC buffers
                        gc.collect()
                        baseline = process.memory_info().rss
            gc.collect()
            growth = process.memory_info().rss - baseline
        finally:
            server.stop(None)
        assert growth < 200 * 2**20, f"RSS grew {growth / 2**20:.0f} MiB"
        assert log.recorded == 60
        assert all(len(e.request_id) < 400 for e in log.entries())
    assert log_path.stat().st_size < 100_000
