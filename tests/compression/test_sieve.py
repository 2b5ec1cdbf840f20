import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from specedge.compression.sieve import (
    KINDS,
    VARIANT_THRESHOLDS,
    PrefixCache,
    SieveConfig,
    best_bias,
    compress_sieve,
    exponent_bits_needed,
    exponent_histogram,
    sieve_search,
)
from specedge.errors import ConfigError
from specedge.models.classifier import build_classifier
from specedge.models.layers import apply_activation_formats, apply_weight_formats, compressible_layers
from specedge.numerics.floats import FloatFormat
from specedge.training import predict_logits

MIN_NORMALIZED = 0.998
MIN_COVERAGE = 0.5
MAX_MANTISSA = 6
BATCH = 512


def _digits_halves():
    """scikit-learn digits as uint8 (N, 1, 8, 8), split 50/50 into train and validation."""
    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    half = len(order) // 2
    train, val = order[:half], order[half:]
    return (images[train], digits.target[train]), (images[val], digits.target[val].astype(np.int64))


def _train(model, images, labels, *, epochs=3):
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    """LeNet-5 at width 0.25 trained for a few epochs (about 95% validation accuracy), and its validation half."""
    (train_x, train_y), (val_x, val_y) = _digits_halves()
    torch.manual_seed(0)
    model = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    return _train(model, train_x, train_y), val_x, val_y


@pytest.fixture(scope="module")
def search(trained):
    model, val_x, val_y = trained
    return sieve_search(model, val_x, val_y, batch_size=BATCH, progress=False)


def _tensors(search):
    """Trials grouped by tensor, in search order."""
    groups = {}
    for trial in search.trials:
        groups.setdefault((trial.layer, trial.kind), []).append(trial)
    return groups


def _histograms(model, images):
    """Exponent histograms of every layer's weights and (over ``images``) inputs, computed independently."""
    layers = dict(compressible_layers(model))
    histograms = {(name, "weights"): exponent_histogram(layer.weight) for name, layer in layers.items()}
    seen = {name: [] for name in layers}
    handles = [
        layer.register_forward_pre_hook(lambda _m, args, name=name: seen[name].append(args[0].clone()))
        for name, layer in layers.items()
    ]
    with torch.no_grad():
        model(torch.from_numpy(images))
    for handle in handles:
        handle.remove()
    histograms |= {(name, "activations"): exponent_histogram(torch.cat(values)) for name, values in seen.items()}
    return histograms


# --- exponent statistics ------------------------------------------------------------------------


def test_exponent_histogram_counts_floor_log2_and_ignores_zeros():
    values = torch.tensor([0.0, -0.0, 1.0, 1.5, -0.75, 0.25, 2.0**-140, float("inf"), 3e38])
    histogram = exponent_histogram(values)
    observed = {int(i) - 149: int(histogram[i]) for i in np.flatnonzero(histogram)}
    assert observed == {-140: 1, -2: 1, -1: 1, 0: 2, 127: 1}


def _histogram(counts):
    histogram = np.zeros(277, dtype=np.int64)
    for exponent, count in counts.items():
        histogram[exponent + 149] = count
    return histogram


def test_exponent_bits_needed_is_the_smallest_width_spanning_all_exponents():
    assert exponent_bits_needed(_histogram({})) == 2
    assert exponent_bits_needed(_histogram({-3: 1, -2: 5})) == 2  # 2 normal exponents
    assert exponent_bits_needed(_histogram({-3: 1, -1: 5})) == 3  # 3 needed, 6 available
    assert exponent_bits_needed(_histogram({-20: 1, -7: 5})) == 4  # 14 needed, 14 available
    assert exponent_bits_needed(_histogram({-149: 1, 127: 1})) == 8  # nothing spans 277


def test_best_bias_maximises_coverage_and_prefers_the_higher_range():
    histogram = _histogram({-10: 1, -5: 3, -4: 3, 0: 1})
    assert best_bias(histogram, 2) == (6, 6 / 8)  # normal exponents -5..-4
    # Width 3 covers 6 exponents: -5..0 (7 values) beats -10..-5 (4 values).
    assert best_bias(histogram, 3) == (6, 7 / 8)
    # Width 4 (14 exponents) covers everything many ways; the highest window starts at -10.
    assert best_bias(histogram, 4) == (11, 1.0)
    # A tie between two single exponents goes to the larger one.
    assert best_bias(_histogram({-9: 2, -1: 2}), 2) == (2, 0.5)
    assert best_bias(_histogram({}), 3) == (3, 1.0)
    bias, coverage = best_bias(histogram, 8)
    assert (bias, coverage) == (127, 1.0)  # only float32's own range fits in float32


# --- the search's rules ------------------------------------------------------------------------


def test_trials_pass_exactly_at_the_threshold(search):
    assert search.trials
    assert search.baseline_validation_accuracy > 0.9
    for trial in search.trials:
        assert trial.passed == (trial.normalized_accuracy >= MIN_NORMALIZED)
        assert trial.format.overflow == "saturate"
        assert trial.bits == 1 + trial.format.exponent_bits + trial.format.mantissa_bits


def test_mantissa_sweeps_descend_and_stop_after_the_first_failure(search):
    for (layer, kind), trials in _tensors(search).items():
        for w, group in itertools.groupby(trials, key=lambda t: t.format.exponent_bits):
            sweep = list(group)
            assert [t.format.mantissa_bits for t in sweep] == list(range(MAX_MANTISSA, MAX_MANTISSA - len(sweep), -1))
            assert all(t.passed for t in sweep[:-1]), (layer, kind, w)
            assert not sweep[-1].passed or sweep[-1].format.mantissa_bits == 0, (layer, kind, w)
            assert len({(t.format.exponent_bias, t.coverage) for t in sweep}) == 1


def test_exponent_sweep_runs_from_e_max_down_until_coverage_drops(trained, search):
    """Widths tried: e_max, e_max - 1, ..., w_last, each covering >= 50%; w_last - 1 covers < 50% (or w_last is 2)."""
    model, val_x, _ = trained
    histograms = _histograms(model, val_x)
    tensors = _tensors(search)
    assert set(tensors) == {(name, kind) for name, _ in compressible_layers(model) for kind in KINDS}
    for key, trials in tensors.items():
        widths = list(dict.fromkeys(t.format.exponent_bits for t in trials))
        e_max = exponent_bits_needed(histograms[key])
        assert widths == list(range(e_max, e_max - len(widths), -1)), key
        for trial in trials:
            assert trial.coverage >= MIN_COVERAGE
            assert (trial.format.exponent_bias, trial.coverage) == best_bias(
                histograms[key], trial.format.exponent_bits
            )
        if widths[-1] > 2:
            assert best_bias(histograms[key], widths[-1] - 1)[1] < MIN_COVERAGE, key
    assert any(min(t.format.exponent_bits for t in trials) < 8 for trials in tensors.values())


def _chosen(variant, layer, kind):
    formats = variant.config.weight_formats if kind == "weights" else variant.config.activation_formats
    return formats.get(layer)


def _check_variant_rules(search):
    for name, variant in search.variants.items():
        threshold = VARIANT_THRESHOLDS[name]
        for (layer, kind), trials in _tensors(search).items():
            passing = [t for t in trials if t.passed]
            fmt = _chosen(variant, layer, kind)
            if fmt is None:  # fp32: nothing passed, or backed off past every qualifying config
                assert not passing or variant.backoff_steps > 0
                continue
            (trial,) = [t for t in passing if t.format == fmt]
            most_accurate = max(t.normalized_accuracy for t in passing)
            qualifying = [t for t in passing if threshold is not None and t.normalized_accuracy >= threshold]
            if not qualifying:
                assert trial.normalized_accuracy == most_accurate
            elif variant.backoff_steps == 0:
                assert trial.bits == min(t.bits for t in qualifying)
                assert trial.normalized_accuracy >= threshold
        if name == "exact":
            assert variant.backoff_steps == 0
        else:
            assert variant.normalized_validation_accuracy >= threshold
    exact = search.variants["exact"]
    for (layer, kind), trials in _tensors(search).items():
        passing = [t for t in trials if t.passed]
        if not passing:
            assert _chosen(exact, layer, kind) is None
            continue
        best = max(t.normalized_accuracy for t in passing)
        fewest = min(t.bits for t in passing if t.normalized_accuracy == best)
        assert _chosen(exact, layer, kind) == next(
            t.format for t in passing if t.normalized_accuracy == best and t.bits == fewest
        )


def test_variants_choose_passing_configs_by_their_rule(search):
    _check_variant_rules(search)


def test_variants_compress_and_their_accuracy_is_reproducible(trained, search):
    model, val_x, val_y = trained
    fp32_predictions = predict_logits(model, val_x, batch_size=BATCH).argmax(axis=1)
    for variant in search.variants.values():
        compressed = compress_sieve(model, variant.config)
        predictions = predict_logits(compressed, val_x, batch_size=BATCH).argmax(axis=1)
        accuracy = float(np.mean(predictions == val_y))
        assert variant.validation_accuracy == accuracy
        assert variant.normalized_validation_accuracy == accuracy / search.baseline_validation_accuracy
        assert variant.validation_agreement == float(np.mean(predictions == fp32_predictions))
    accurate = search.variants["accurate"].config
    assert len(accurate.weight_formats) + len(accurate.activation_formats) > 0
    assert all(fmt.bits < 16 for fmt in accurate.weight_formats.values())


def test_report_is_json_ready_and_config_round_trips(search):
    report = json.loads(json.dumps(search.to_dict()))
    assert report["pass"] == "sieve"
    assert report["prefix_cache"] is True and search.prefix_cache
    assert report["evaluations"] == search.evaluations >= len(search.trials) + 1
    assert report["kept_fp32"] == [{"module": "preprocess", "type": "Preprocess", "reason": search.kept_fp32[0][2]}]
    for name, variant in search.variants.items():
        assert SieveConfig.from_dict(report["variants"][name]["config"]) == variant.config


# --- the prefix cache ---------------------------------------------------------------------------


def _check_cache_matches_full_forward(backbone, inputs, layers):
    cache = PrefixCache.trace(backbone, inputs)
    assert cache is not None
    assert cache.layers == [name for name, _ in compressible_layers(backbone)]
    fmt = FloatFormat(3, 1, 4, overflow="saturate")
    with torch.no_grad():
        for layer in layers:
            cache.move_to(layer)
            original = dict(compressible_layers(backbone))[layer].weight.detach().clone()
            apply_weight_formats(backbone, {layer: fmt})
            handles = apply_activation_formats(backbone, {layer: fmt})
            for cached, x in zip(cache.logits(), inputs, strict=True):
                full = backbone(x)
                torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
            handles[0].remove()
            dict(compressible_layers(backbone))[layer].weight.copy_(original)
            for cached, x in zip(cache.logits(), inputs, strict=True):
                torch.testing.assert_close(cached, backbone(x), rtol=1e-5, atol=1e-5)


def test_prefix_cache_matches_full_forward_on_lenet(trained):
    model, val_x, _ = trained
    with torch.no_grad():
        inputs = [model.preprocess(torch.from_numpy(val_x[i : i + 100])) for i in (0, 100)]
    _check_cache_matches_full_forward(model.backbone, inputs, ["features.3", "classifier.3", "features.0"])


def test_prefix_cache_keeps_skip_tensors_of_a_residual_net(rng):
    torch.manual_seed(0)
    backbone = build_classifier("resnet20", num_classes=10, image_shape=(3, 16, 16), width=4).backbone.eval()
    inputs = [torch.from_numpy(rng.standard_normal((4, 3, 16, 16), dtype=np.float32)) for _ in range(2)]
    layers = ["stages.0.conv2", "stages.3.conv1", "stages.6.conv2", "fc", "stages.1.conv1"]  # the last goes back
    _check_cache_matches_full_forward(backbone, inputs, layers)


def test_search_with_and_without_cache_agree_and_keep_batchnorm_fp32(rng):
    """An untrained ResNet-8 labelled by its own predictions: fp32 is 100% right, every change counts."""
    torch.manual_seed(0)
    model = build_classifier("resnet8", num_classes=10, image_shape=(3, 16, 16), width=2).eval()
    images = rng.integers(0, 256, size=(48, 3, 16, 16), dtype=np.uint8)
    labels = predict_logits(model, images).argmax(axis=1)
    options = {"max_mantissa_bits": 1, "min_coverage": 0.9, "batch_size": 16}
    cached = sieve_search(model, images, labels, **options)
    full = sieve_search(model, images, labels, prefix_cache=False, **options)
    assert cached.prefix_cache and not full.prefix_cache
    assert [t.to_dict() for t in cached.trials] == [t.to_dict() for t in full.trials]
    assert cached.variants == full.variants
    kept = {module: kind for module, kind, _ in cached.kept_fp32}
    assert kept["backbone.stem.1"] == "BatchNorm2d"
    assert "running_mean" in dict((m, r) for m, _, r in cached.kept_fp32)["backbone.stem.1"]
    _check_variant_rules(cached)
    # Per-tensor losses add up here (exact < 1.0), so accurate has to back off to reach 1.0.
    assert cached.variants["exact"].normalized_validation_accuracy < 1.0
    assert cached.variants["accurate"].backoff_steps > 0
    assert cached.variants["accurate"].normalized_validation_accuracy == 1.0


def test_untraceable_backbones_fall_back_to_full_passes(trained):
    model, val_x, val_y = trained

    class Gated(nn.Module):
        """Data-dependent control flow around a layer: torch.fx cannot trace it."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) if x.sum() > -1e30 else self.inner(-x)

    gated = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    gated.load_state_dict(model.state_dict())
    gated.backbone = Gated(gated.backbone)
    result = sieve_search(gated.eval(), val_x[:200], val_y[:200], max_mantissa_bits=0, min_coverage=0.9)
    assert not result.prefix_cache
    assert result.trials and result.trials[0].layer == "backbone.inner.features.0"


# --- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_refused_with_one_clear_line(trained):
    model, val_x, val_y = trained
    cases = [
        ((val_x[:0], val_y[:0]), {}, "empty"),
        ((val_x, val_y[:-1]), {}, "one integer label per validation image"),
        ((val_x.astype(np.float32), val_y), {}, "must be uint8"),
        ((val_x, val_y), {"min_coverage": 1.5}, "min_coverage"),
        ((val_x, val_y), {"max_mantissa_bits": 24}, "max_mantissa_bits"),
        ((val_x[:50], (predict_logits(model, val_x[:50]).argmax(axis=1) + 1) % 10), {}, "no validation image right"),
    ]
    for args, options, match in cases:
        with pytest.raises(ConfigError, match=match) as info:
            sieve_search(model, *args, **options)
        assert "\n" not in str(info.value)


def test_a_model_without_conv_or_linear_layers_is_refused(trained):
    _, val_x, val_y = trained
    model = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    model.backbone = nn.Sequential(nn.Flatten(), nn.ReLU())
    with pytest.raises(ConfigError, match="no Conv2d or Linear layer"):
        sieve_search(model, val_x, val_y)
