import pytest
import torch
import torch.nn.functional as F

from specedge.compression import distill, distillation_loss
from specedge.data import load_dataset
from specedge.errors import ConfigError
from specedge.models import build_classifier
from specedge.training import TrainConfig, channel_stats, fit


class _Fixed(torch.nn.Module):
    """A 'teacher' that returns given logits, to check the loss against hand-computed values."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, images):
        return self.logits


def test_loss_reduces_to_cross_entropy_and_to_zero_kl():
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 5
    images = torch.zeros(8, 1, 2, 2, dtype=torch.uint8)
    ce_only = distillation_loss(_Fixed(logits * 2), temperature=3.0, alpha=0.0)
    assert ce_only(logits, labels, images) == pytest.approx(float(F.cross_entropy(logits, labels)))
    same = distillation_loss(_Fixed(logits), temperature=3.0, alpha=1.0)
    assert float(same(logits, labels, images)) == pytest.approx(0.0, abs=1e-6)
    soft = distillation_loss(_Fixed(torch.zeros(8, 5)), temperature=2.0, alpha=1.0)
    p = F.log_softmax(logits / 2, dim=1)
    uniform = torch.full((8, 5), 0.2)
    expected = 4.0 * (uniform * (uniform.log() - p)).sum(1).mean()
    assert float(soft(logits, labels, images)) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(("temperature", "alpha", "match"), [(0.0, 0.5, "temperature"), (2.0, 1.5, "alpha")])
def test_bad_options(temperature, alpha, match):
    with pytest.raises(ConfigError, match=match):
        distillation_loss(_Fixed(torch.zeros(1, 2)), temperature=temperature, alpha=alpha)


def test_distill_derives_a_smaller_model_that_shares_preprocessing():
    splits = load_dataset("digits")
    mean, std = channel_stats(splits.train.images)
    torch.manual_seed(0)
    master = build_classifier("lenet5", num_classes=10, image_shape=splits.image_shape, mean=mean, std=std)
    fit(master, splits, TrainConfig(epochs=3, lr=5e-3))
    student, report = distill(master, splits, "lenet5", TrainConfig(epochs=3, lr=5e-3), arch_options={"width": 0.25})
    assert report.student_macs < report.master_macs and report.mac_reduction > 5
    assert student.spec.mean == master.spec.mean and student.spec.input_size == master.spec.input_size
    assert report.training.best_val_accuracy > 0.5
    assert report.to_dict()["arch_kwargs"] == {"width": 0.25}


def test_distill_refuses_a_dataset_the_master_cannot_read():
    master = build_classifier("lenet5", num_classes=10, image_shape=(1, 28, 28), width=0.25)
    with pytest.raises(ConfigError, match="expects images"):
        distill(master, load_dataset("digits"), "lenet5", TrainConfig(epochs=1))
