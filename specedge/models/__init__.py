"""Models: the zoo, complete classifiers, per-layer profiles and on-disk artifacts.

    registry     architectures by name with reference costs (``register_model``, ``get_model``)
    zoo/         built-in families: LeNet-5, ConvNet (SIEVE), MobileNet-V1 (M&MNet), CIFAR ResNet
    classifier   ``ImageClassifier`` = uint8 preprocessing + backbone, rebuilt from a ``ClassifierSpec``
    profiler     per-layer shapes, MACs, parameters and activation bytes (cost-model features)
    artifact     a directory of safetensors weights + JSON manifest; never pickle

See docs/MODELS.md for the zoo table and for bringing your own architecture or weights.
"""

from __future__ import annotations

from specedge.models.artifact import LoadedModel, load_artifact, save_artifact
from specedge.models.classifier import ClassifierSpec, ImageClassifier, Preprocess, build_classifier
from specedge.models.profiler import LayerProfile, ModelProfile, profile_classifier, profile_model
from specedge.models.registry import (
    ModelEntry,
    get_model,
    import_plugin,
    list_models,
    model_entry,
    register_model,
)

__all__ = [
    "ClassifierSpec",
    "ImageClassifier",
    "LayerProfile",
    "LoadedModel",
    "ModelEntry",
    "ModelProfile",
    "Preprocess",
    "build_classifier",
    "get_model",
    "import_plugin",
    "list_models",
    "load_artifact",
    "model_entry",
    "profile_classifier",
    "profile_model",
    "register_model",
    "save_artifact",
]
