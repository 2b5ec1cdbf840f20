"""The per-layer latency regression: recovery of a known law, back-off, sklearn conventions, JSON, measuring."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from specedge.errors import ArtifactError, ConfigError
from specedge.models.profiler import LayerProfile, profile_model
from specedge.models.registry import get_model
from specedge.simulator.latency_model import LayerLatencyRegressor, layer_features, layer_kind
from specedge.simulator.measure import measure_classifier_s, measure_layers, measure_module_s


def _row(kind: str, size: int) -> LayerProfile:
    conv = kind.startswith("Conv")
    return LayerProfile(
        name=f"{kind}{size}",
        type="Conv2d" if conv else kind,
        input_shape=(size, 8, 8),
        output_shape=(size, 8, 8),
        kernel=(3, 3) if conv else None,
        stride=(1, 1) if conv else None,
        padding=(1, 1) if conv else None,
        groups=(size if kind == "Conv2d/dw" else 1) if conv else None,
        macs=size * size * 9 * 64 if conv else 0,
        params=size * size * 9 if conv else 0,
        param_bytes=size * size * 36 if conv else 0,
        activation_bytes=size * 64 * 4,
    )


def _law(rows: list[LayerProfile]) -> np.ndarray:
    """A known linear law per kind: 5 us + 1 ns/MAC for convs, 2 us + 0.1 ns/byte for ReLU."""
    x = layer_features(rows)
    conv = np.array([r.type == "Conv2d" for r in rows])
    return np.where(conv, 5e-6 + 1e-9 * x[:, 1], 2e-6 + 1e-10 * x[:, 3])


def test_layer_kinds() -> None:
    assert layer_kind(_row("Conv2d", 16)) == "Conv2d/k3"
    assert layer_kind(_row("Conv2d/dw", 16)) == "Conv2d/dw"
    assert layer_kind(_row("ReLU", 16)) == "ReLU"


def test_recovers_a_linear_law_and_extrapolates() -> None:
    train = [_row(kind, size) for kind in ("Conv2d", "ReLU") for size in (4, 8, 16, 32, 64)]
    model = LayerLatencyRegressor().fit(train, _law(train))
    assert set(model.coef_) >= {"Conv2d/k3", "Conv2d", "ReLU", "*"}
    bigger = [_row(kind, 256) for kind in ("Conv2d", "ReLU")]  # 4x beyond the largest training layer
    assert model.predict(bigger) == pytest.approx(_law(bigger), rel=1e-6)
    assert model.predict([]).shape == (0,)


def test_unseen_kinds_back_off_to_their_type_then_to_all_rows() -> None:
    train = [_row(kind, size) for kind in ("Conv2d", "ReLU") for size in (4, 8, 16, 32, 64)]
    model = LayerLatencyRegressor().fit(train, _law(train))
    depthwise = _row("Conv2d/dw", 16)  # kind unseen: the Conv2d model answers
    assert model.predict([depthwise])[0] == pytest.approx(float(_law([replace(depthwise, groups=1)])[0]), rel=1e-6)
    pool = replace(_row("ReLU", 16), type="MaxPool2d")  # type unseen: the model of all rows answers
    assert model.predict([pool])[0] > 0
    sparse = LayerLatencyRegressor(min_samples=6).fit(train, _law(train))
    assert "ReLU" not in sparse.coef_ and "*" in sparse.coef_


def test_sklearn_conventions_and_json_round_trip(tmp_path: Path) -> None:
    train = [_row(kind, size) for kind in ("Conv2d", "ReLU") for size in (4, 8, 16, 32, 64)]
    unfitted = LayerLatencyRegressor(min_samples=3)
    with pytest.raises(NotFittedError):
        unfitted.predict(train)
    assert clone(unfitted).get_params() == {"min_samples": 3}
    model = unfitted.fit(train, _law(train))
    assert model is unfitted
    model.save(tmp_path / "latency.json")
    loaded = LayerLatencyRegressor.load(tmp_path / "latency.json")
    assert loaded.get_params() == model.get_params()
    assert np.array_equal(loaded.predict(train), model.predict(train))


def test_fit_and_load_validate(tmp_path: Path) -> None:
    rows = [_row("ReLU", 4)]
    with pytest.raises(ConfigError, match="one latency per layer row"):
        LayerLatencyRegressor().fit(rows, [1.0, 2.0])
    with pytest.raises(ConfigError, match="finite and > 0"):
        LayerLatencyRegressor().fit(rows, [0.0])
    with pytest.raises(ConfigError, match="min_samples"):
        LayerLatencyRegressor(min_samples=0).fit(rows, [1.0])
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else", "features": []}')
    with pytest.raises(ArtifactError, match="malformed layer latency regressor"):
        LayerLatencyRegressor.load(bad)
    with pytest.raises(ArtifactError, match="cannot read"):
        LayerLatencyRegressor.load(tmp_path / "missing.json")


def test_measured_layers_of_a_tiny_model_fit_and_predict_it() -> None:
    torch.manual_seed(0)
    model = get_model("lenet5", num_classes=10, in_channels=1, input_size=16, width=0.25)
    timings = measure_layers(model, (1, 16, 16), rounds=3, calls_per_round=5, warmup=2)
    profile = profile_model(model, (1, 16, 16))
    assert [t.layer for t in timings] == list(profile.layers)
    assert all(t.latency_s > 0 for t in timings)
    regressor = LayerLatencyRegressor(min_samples=1).fit([t.layer for t in timings], [t.latency_s for t in timings])
    whole_s = measure_module_s(model, (1, 16, 16), warmup=2, repeats=10)
    assert whole_s > 0 and regressor.predict_model(profile) > 0


def test_measure_a_classifier_per_input() -> None:
    from specedge.models import build_classifier

    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 16, 16), width=0.25)
    images = np.zeros((3, 1, 16, 16), dtype=np.uint8)
    threads = torch.get_num_threads()
    assert measure_classifier_s(classifier, images, warmup=1, repeats=2) > 0
    assert torch.get_num_threads() == threads  # restored
    with pytest.raises(ConfigError, match="expected uint8 images"):
        measure_classifier_s(classifier, images.astype(np.float32))
    with pytest.raises(ConfigError, match="repeats >= 1"):
        measure_module_s(classifier.backbone, (1, 16, 16), repeats=0)
