"""Bring your own model: register an architecture, wrap it, save an artifact, reload it.

Run ``python examples/own_model.py [OUT_DIR]``. The steps match docs/MODELS.md:

1. a builder decorated with ``@register_model`` joins the zoo under a name (here
   ``tiny_cnn``); in your own package, put it in a module and load it with the CLI flag
   ``--plugin your.module`` or the ``specedge.models`` entry-point group;
2. ``build_classifier`` wraps the backbone with its uint8 preprocessing;
3. weights trained elsewhere go into ``classifier.backbone.load_state_dict``;
4. ``save_artifact`` writes safetensors + manifest; ``load_artifact`` rebuilds the same model.

Another process can load the artifact only once ``tiny_cnn`` is registered there too, e.g.
``specedge eval --plugin own_model --model OUT_DIR --dataset digits`` with this file's folder
on ``PYTHONPATH``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from specedge.models import build_classifier, load_artifact, profile_classifier, register_model, save_artifact


class TinyCNN(nn.Module):
    """conv3x3 -> ReLU -> global average pool -> FC: the smallest useful image classifier."""

    def __init__(self, *, num_classes: int, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` -> ``(N, num_classes)``."""
        logits: torch.Tensor = self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))
        return logits


# Reference costs at 1x8x8 with 10 classes: conv 8*8 px x 8 ch x 1*3*3 = 4,608 MACs and 80
# params; fc 8*10 = 80 MACs and 90 params. The registry documents them; main() checks them.
@register_model(
    "tiny_cnn",
    description="example: one conv layer and a linear head",
    min_input_size=4,
    default_input_size=8,
    reference_input=(1, 8, 8),
    reference_params=170,
    reference_macs=4_688,
)
def tiny_cnn(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 8, channels: int = 8) -> TinyCNN:
    """Builders are keyword-only; ``input_size`` is unused here because the head is size-free."""
    del input_size
    return TinyCNN(num_classes=num_classes, in_channels=in_channels, channels=channels)


def main(out_dir: Path) -> float:
    """Run the four steps into ``out_dir``; return the largest output difference after reloading."""
    torch.manual_seed(0)
    classifier = build_classifier("tiny_cnn", num_classes=10, image_shape=(1, 8, 8), mean=(0.3,), std=(0.2,))
    profile = profile_classifier(classifier)
    assert (profile.total_params, profile.total_macs) == (170, 4_688), profile.to_table()

    trained_elsewhere = TinyCNN(num_classes=10, in_channels=1, channels=8).state_dict()  # stand-in
    classifier.backbone.load_state_dict(trained_elsewhere)

    artifact = save_artifact(
        out_dir,
        classifier,
        dataset={"name": "digits", "image_shape": [1, 8, 8], "num_classes": 10},
        metrics={},  # e.g. {"test_accuracy": 0.97} once evaluated
        training={"note": "weights from examples/own_model.py, untrained"},
    )
    loaded = load_artifact(artifact)

    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    with torch.no_grad():
        classifier.eval()
        difference = float((classifier(images) - loaded.classifier(images)).abs().max())
    print(f"saved {artifact} ({loaded.manifest['params']} params, {loaded.manifest['macs']:,} MACs)")
    print(f"reloaded {loaded.spec.architecture}: max |difference| = {difference}")
    return difference


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "tiny_cnn")
