"""DuoModel and load_duo: the little answers, the big recomputes the doubted rows and every recovery."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch

from specedge.cloud import InferenceEngine, InferenceResult, create_server
from specedge.cloud.duo import ANSWERED_BY, DuoModel, load_duo
from specedge.cloud.engine import ModelConfigInfo
from specedge.cloud.statistics import BatchStats, Duration, ModelStats
from specedge.detector import MisspeculationDetector
from specedge.edge.cloud_client import CloudClient
from specedge.errors import ArtifactError, ConfigError, TensorError
from specedge.models import ImageClassifier, build_classifier, save_artifact
from specedge.pairing import PoolMember, analyse_duo, write_duo
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub

N_ROWS = 200
#: What this version's engine.infer takes besides the images (the batching engine adds arrival, deadline, recovery).
ENGINE_KEYWORDS = frozenset(inspect.signature(InferenceEngine.infer).parameters) - {"self", "images"}


def _logits(model: ImageClassifier, images: np.ndarray) -> np.ndarray:
    """The model's own logits for uint8 ``images``, outside any engine."""
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(np.ascontiguousarray(images))).numpy()


class CountingEngine(InferenceEngine):
    """An engine that records the batch size of every call it serves."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []

    def infer(self, images: np.ndarray, **keywords: Any) -> InferenceResult:  # type: ignore[override]
        self.calls.append(len(images))
        return super().infer(images, **{key: value for key, value in keywords.items() if key in ENGINE_KEYWORDS})


@pytest.fixture(scope="module")
def pair(digits_models):  # type: ignore[no-untyped-def]
    """The digits master as big, its distilled student as little, and their logits on validation."""
    splits, master, speculative = digits_models
    little_logits = _logits(speculative, splits.val.images)
    big_logits = _logits(master, splits.val.images)
    return splits, speculative, master, little_logits, big_logits


def _detector(pair: Any, policy: str = "threshold") -> MisspeculationDetector:
    splits, _, _, little_logits, big_logits = pair
    detector = MisspeculationDetector(policy=policy, quality="accuracy", target=1.0, delta=None)
    return detector.fit(little_logits, big_logits.argmax(axis=1), splits.val.labels)


_OPEN: list[DuoModel] = []


@pytest.fixture(autouse=True)
def _close_duos() -> Iterator[None]:
    """Every duo a test builds is closed after it (a batching engine runs worker threads)."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def _opened(duo: DuoModel) -> DuoModel:
    _OPEN.append(duo)
    return duo


def _duo(pair: Any, detector: MisspeculationDetector) -> DuoModel:
    _, speculative, master, _, _ = pair
    little = CountingEngine(speculative, model_name="little")
    big = CountingEngine(master, model_name="master")
    return _opened(DuoModel(little, big, detector, model_name="master"))


@pytest.mark.parametrize("policy", ["threshold", "per-class-heuristic"])
def test_each_row_is_the_big_answer_where_the_probe_doubts_and_the_little_elsewhere(pair: Any, policy: str) -> None:
    splits = pair[0]
    duo = _duo(pair, _detector(pair, policy))
    images = splits.test.images[:N_ROWS]
    little_logits, big_logits = _logits(pair[1], images), _logits(pair[2], images)
    escalate = duo.detector.decide(little_logits).escalate
    assert 0 < escalate.sum() < N_ROWS  # both branches are exercised

    result = duo.infer(images)

    expected = np.where(escalate, big_logits.argmax(axis=1), little_logits.argmax(axis=1))
    np.testing.assert_array_equal(result.logits.argmax(axis=1), expected)
    np.testing.assert_allclose(result.logits[~escalate], little_logits[~escalate], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.logits[escalate], big_logits[escalate], rtol=1e-5, atol=1e-5)
    assert duo.little.calls == [N_ROWS] and duo.big.calls == [int(escalate.sum())]  # type: ignore[attr-defined]
    assert result.logits.dtype == np.float32 and result.logits.shape == (N_ROWS, 10)
    assert getattr(result, "answered_by", "little+big") == "little+big"


def test_a_recovery_request_runs_on_the_big_model_only(pair: Any) -> None:
    splits = pair[0]
    duo = _duo(pair, _detector(pair))
    images = splits.test.images[:8]

    result = duo.infer(images, recovery=True)

    assert duo.little.calls == [] and duo.big.calls == [8]  # type: ignore[attr-defined]
    np.testing.assert_allclose(result.logits, _logits(pair[2], images), rtol=1e-5, atol=1e-5)
    assert getattr(result, "answered_by", "big") == "big"


def test_confident_rows_never_reach_the_big_model(pair: Any) -> None:
    splits = pair[0]
    duo = _duo(pair, _detector(pair))
    decisions = duo.detector.decide(_logits(pair[1], splits.test.images))
    confident = splits.test.images[~decisions.escalate][:16]

    result = duo.infer(confident)

    assert duo.little.calls == [16] and duo.big.calls == []  # type: ignore[attr-defined]
    assert result.queue_time_us >= 0 and result.compute_time_us >= 0
    assert getattr(result, "answered_by", "little") in ANSWERED_BY[:1]


def test_metadata_is_the_big_signature_under_the_duo_name(pair: Any) -> None:
    duo = _duo(pair, _detector(pair))
    duo.model_name = "duo"
    meta = duo.metadata()
    assert meta.name == "duo" and meta.versions == ("1",)
    assert (meta.inputs, meta.outputs) == (duo.big.metadata().inputs, duo.big.metadata().outputs)
    assert duo.ready


def test_statistics_count_the_duo_requests_and_the_forward_passes_of_both_engines(pair: Any) -> None:
    splits = pair[0]
    duo = _duo(pair, _detector(pair))
    duo.infer(splits.test.images[:N_ROWS])
    duo.infer(splits.test.images[:4], recovery=True)
    with pytest.raises(TensorError):
        duo.infer(splits.test.images[:2, :, :4])

    stats = duo.statistics()

    assert (stats.name, stats.version) == ("master", "1")
    assert stats.success.count == 2 and stats.success.ns > 0 and stats.inference_count == N_ROWS + 4
    assert stats.fail.count == 1
    assert stats.queue.count == stats.compute_infer.count == 2 and stats.compute_infer.ns > 0  # the probe at least
    engines = [getattr(engine, "statistics", None) for engine in (duo.little, duo.big)]
    executions = sum(statistics().execution_count for statistics in engines if statistics is not None)
    assert stats.execution_count == executions
    assert sum(batch.count for batch in stats.batch_stats.values()) == executions


def test_config_is_the_big_engine_schedule_under_the_duo_name(pair: Any) -> None:
    duo = _duo(pair, _detector(pair))
    duo.model_name = "duo"
    config = duo.config()
    assert config.name == "duo" and config.max_batch_size == duo.max_batch


class SchedulingEngine(InferenceEngine):
    """The batching engine's surface (arrival, deadline, recovery keywords; config; statistics), faked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keywords: list[dict[str, Any]] = []

    def infer(  # type: ignore[override]
        self, images: np.ndarray, *, arrival_ns: int, deadline_ns: int | None = None, recovery: bool = False
    ) -> InferenceResult:
        self.keywords.append({"arrival_ns": arrival_ns, "deadline_ns": deadline_ns, "recovery": recovery})
        return InferenceResult(logits=_logits(self.classifier, images), queue_time_us=5, compute_time_us=7)

    def config(self) -> ModelConfigInfo:
        return ModelConfigInfo(self.model_name, "pytorch", self.max_batch, max_queue_delay_us=100, max_queue_size=8)

    def statistics(self) -> ModelStats:
        return ModelStats(
            self.model_name, "1", execution_count=3, queue=Duration(3, 30), batch_stats={2: BatchStats(3, 9)}
        )


def test_a_batching_engine_gets_arrival_deadline_and_recovery_and_its_time_is_summed(pair: Any) -> None:
    splits, speculative, master, _, _ = pair
    little = SchedulingEngine(speculative, model_name="little", max_batch=64)
    big = SchedulingEngine(master, model_name="master")
    duo = _opened(DuoModel(little, big, _detector(pair), model_name="duo"))
    images = splits.test.images[:N_ROWS]
    doubted = duo.detector.decide(_logits(speculative, images)).escalate
    mixed = images[np.flatnonzero(doubted)[:1].tolist() + np.flatnonzero(~doubted)[:3].tolist()]

    result = duo.infer(mixed, arrival_ns=1_000, deadline_ns=2**62)
    duo.infer(mixed[:1], arrival_ns=2_000, recovery=True)

    assert little.keywords == [{"arrival_ns": 1_000, "deadline_ns": 2**62, "recovery": False}]
    escalated, recovered = big.keywords
    assert escalated["arrival_ns"] > 1_000 and escalated["deadline_ns"] == 2**62 and not escalated["recovery"]
    assert recovered == {"arrival_ns": 2_000, "deadline_ns": None, "recovery": True}
    assert result.queue_time_us == 5 + 5 and result.compute_time_us >= 7 + 7
    assert duo.config() == ModelConfigInfo("duo", "pytorch", 64, max_queue_delay_us=100, max_queue_size=8)
    stats = duo.statistics()
    assert stats.execution_count == 6 and stats.queue == Duration(2, 60) and stats.batch_stats == {2: BatchStats(6, 18)}


def test_a_probe_for_other_classes_or_models_of_other_shapes_is_refused(pair: Any) -> None:
    _, speculative, master, _, _ = pair
    detector = _detector(pair)
    other = build_classifier("lenet5", num_classes=4, image_shape=(1, 8, 8), width=0.25)
    with pytest.raises(ConfigError, match="must share their signature"):
        DuoModel(
            InferenceEngine(other, model_name="l"), InferenceEngine(master, model_name="b"), detector, model_name="duo"
        )
    four = MisspeculationDetector(delta=None).fit(
        np.eye(4)[[0, 1, 2, 3, 0]] * 5, np.array([0, 1, 2, 3, 1]), np.array([0, 1, 2, 3, 1])
    )
    with pytest.raises(ConfigError, match="fitted on 4 classes; the models output 10"):
        DuoModel(
            InferenceEngine(speculative, model_name="l"),
            InferenceEngine(master, model_name="b"),
            four,
            model_name="duo",
        )


# --- from the pairing's output to a served model -------------------------------------------------


@pytest.fixture(scope="module")
def paired(pair: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Artifacts of both models and the duo.json that ``specedge pair --kind duo`` writes for them."""
    splits, speculative, master, little_val, big_val = pair
    root = tmp_path_factory.mktemp("duo")
    little_dir = save_artifact(root / "lenet5-a0.5-r1-distilled", speculative, dataset={"name": "digits"}, metrics={})
    big_dir = save_artifact(root / "master-artifact", master, dataset={"name": "digits"}, metrics={})
    test = splits.test.images
    little_test, big_test = _logits(speculative, test), _logits(master, test)
    members = [
        PoolMember(little_dir.name, little_val, little_test, 0.1, 1.0, 1, 1),
        PoolMember("master", big_val, big_test, 1.0, 10.0, 10, 10),
    ]
    analysis = analyse_duo(members, splits.val.labels, splits.test.labels, target=1.0)
    assert analysis.probe is not None, "the distilled student should pair with its master"
    return write_duo(root, analysis.probe), little_dir, big_dir


def test_load_duo_serves_the_pairing_output(paired: tuple[Path, Path, Path], pair: Any) -> None:
    duo_json, little_dir, big_dir = paired
    duo = _opened(load_duo(duo_json, big=big_dir))  # the little is found next to duo.json by its pool name

    assert duo.model_name == "master-artifact" and duo.little.model_name == little_dir.name
    state = json.loads(duo_json.read_text())
    assert duo.detector.policy == state["policy"]
    images = pair[0].test.images[:64]
    little_logits, big_logits = _logits(pair[1], images), _logits(pair[2], images)
    escalate = duo.detector.decide(little_logits).escalate
    expected = np.where(escalate, big_logits.argmax(axis=1), little_logits.argmax(axis=1))
    np.testing.assert_array_equal(duo.infer(images).logits.argmax(axis=1), expected)


def test_load_duo_names_a_missing_artifact(paired: tuple[Path, Path, Path]) -> None:
    duo_json, _, _ = paired
    with pytest.raises(ConfigError, match=r"names the big model 'master'.*--big DIR"):
        load_duo(duo_json)


def test_load_duo_refuses_artifacts_other_than_the_pair(paired: tuple[Path, Path, Path], tmp_path: Path) -> None:
    duo_json, little_dir, big_dir = paired
    with pytest.raises(ArtifactError, match=r"is not the little model 'lenet5-a0.5-r1-distilled'"):
        load_duo(duo_json, little=big_dir, big=big_dir)
    swapped = save_artifact(
        tmp_path / little_dir.name,
        build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=1.0),
        dataset={"name": "digits"},
        metrics={},
    )
    with pytest.raises(ArtifactError, match=r"is not cheaper than the big.*swapped"):
        load_duo(duo_json, little=swapped, big=big_dir)
    other_data = save_artifact(
        tmp_path / "other",
        build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=1.0),
        dataset={"name": "mnist"},
        metrics={},
    )
    with pytest.raises(ArtifactError, match=r"trained on 'digits'.*'mnist'"):
        load_duo(duo_json, little=little_dir, big=other_data)
    four = save_artifact(
        tmp_path / "four",
        build_classifier("lenet5", num_classes=4, image_shape=(1, 8, 8), width=1.0),
        dataset={"name": "digits"},
        metrics={},
    )
    with pytest.raises(ArtifactError, match="differ in class count: 10 vs 4"):
        load_duo(duo_json, little=little_dir, big=four)


def test_load_duo_refuses_a_file_that_is_not_a_duo(tmp_path: Path) -> None:
    path = tmp_path / "duo.json"
    path.write_text('{"format": "something-else"}')
    with pytest.raises(ConfigError, match="is not a Dynamic Duo file"):
        load_duo(path)


def test_a_server_answers_model_infer_with_the_merged_logits(paired: tuple[Path, Path, Path], pair: Any) -> None:
    duo_json, _, big_dir = paired
    duo = _opened(load_duo(duo_json, big=big_dir, model_name="duo"))
    images = pair[0].test.images[:64]
    expected = duo.infer(images).logits
    server, port = create_server({"duo": duo})  # type: ignore[dict-item]  # a ServedModel, not an InferenceEngine
    try:
        with CloudClient(f"127.0.0.1:{port}", model_name="duo") as client:
            client.wait_until_ready(10)
            assert client.model_metadata()["name"] == "duo"
            answer = client.infer(images, request_id="duo-1").logits
    finally:
        server.stop(None)
    np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-5)


def test_a_recovery_request_through_the_server_runs_on_the_big_model_only(pair: Any) -> None:
    duo = _duo(pair, _detector(pair))
    images = pair[0].test.images[:4]
    request = pb.ModelInferRequest(model_name="master", id="recovery-1")
    tensors.write_parameters(request.parameters, {"specedge_recovery": True})
    datatype, shape, raw = tensors.encode_raw(images)
    request.inputs.add(name="images", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    server, port = create_server({"master": duo})  # type: ignore[dict-item]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)  # type: ignore[no-untyped-call]
    finally:
        server.stop(None)
    assert duo.little.calls == [] and duo.big.calls == [4]  # type: ignore[attr-defined]
    logits = tensors.decode_outputs(response)["logits"]
    np.testing.assert_allclose(logits, _logits(pair[2], images), rtol=1e-5, atol=1e-5)
    assert tensors.read_parameters(response.parameters).get("answered_by", "big") == "big"
