"""Knowledge distillation: train a small speculative CNN to imitate the master.

Hinton et al. (2015) soft targets: the student minimises
``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, y)``.
Imitating the master, rather than learning the labels alone, matters for speculation: the
speculative model should be confident where the master is right and unsure where the two
disagree, which is what the misspeculation detector exploits (thesis section 4.3.3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from specedge.data import DatasetSplits
from specedge.errors import ConfigError
from specedge.models import ImageClassifier, build_classifier, profile_classifier
from specedge.training import TrainConfig, TrainResult, check_fits, fit
from specedge.training.trainer import LossFn

__all__ = ["DistillationReport", "distill", "distillation_loss"]


@dataclass(frozen=True)
class DistillationReport:
    """What distillation produced, relative to the master."""

    architecture: str
    arch_kwargs: dict[str, Any]
    temperature: float
    alpha: float
    master_macs: int
    student_macs: int
    master_params: int
    student_params: int
    training: TrainResult

    @property
    def mac_reduction(self) -> float:
        """How many times fewer multiply-accumulates the student needs."""
        return self.master_macs / max(self.student_macs, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for manifests."""
        return {
            "pass": "distillation",
            "architecture": self.architecture,
            "arch_kwargs": self.arch_kwargs,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "master_macs": self.master_macs,
            "student_macs": self.student_macs,
            "master_params": self.master_params,
            "student_params": self.student_params,
            "mac_reduction": self.mac_reduction,
            "training": self.training.to_dict(),
        }


def distillation_loss(teacher: ImageClassifier, *, temperature: float, alpha: float) -> LossFn:
    """The soft-target loss above, with the teacher's logits computed on the same batch."""
    if temperature <= 0:
        raise ConfigError(f"distillation temperature must be > 0; got {temperature}")
    if not 0 <= alpha <= 1:
        raise ConfigError(f"distillation alpha must lie in [0, 1]; got {alpha}")
    teacher.eval()

    def loss(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(images)
        soft = F.kl_div(
            F.log_softmax(logits / temperature, dim=1),
            F.log_softmax(teacher_logits / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(logits, labels)

    return loss


def distill(
    master: ImageClassifier,
    splits: DatasetSplits,
    architecture: str,
    config: TrainConfig,
    *,
    arch_options: Mapping[str, Any] | None = None,
    input_size: int | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
    show_progress: bool = False,
) -> tuple[ImageClassifier, DistillationReport]:
    """Train a ``architecture(**arch_options)`` student on ``splits`` against ``master``.

    The student reuses the master's preprocessing (same normalisation statistics) and raw input
    geometry, so both models read the same raw pixels; ``input_size`` may resize them for the
    student's backbone (default: as :func:`~specedge.models.build_classifier` chooses). The
    options come as one mapping, so a student option may share a name with a parameter here,
    such as MobileNet's ``alpha`` and the distillation weight ``alpha`` (foundation review item 9).

    Raises:
        TrainingError: the student did not learn (see :func:`specedge.training.fit`).
    """
    spec = master.spec
    check_fits(spec, splits, what="the master")
    torch.manual_seed(config.seed)
    student = build_classifier(
        architecture,
        num_classes=spec.num_classes,
        image_shape=spec.image_shape,
        mean=spec.mean,
        std=spec.std,
        input_size=input_size,
        arch_options=arch_options,
    )
    loss = distillation_loss(master, temperature=temperature, alpha=alpha)
    history = fit(student, splits, config, loss_fn=loss, show_progress=show_progress, description="distill")
    master_profile, student_profile = profile_classifier(master), profile_classifier(student)
    report = DistillationReport(
        architecture=architecture,
        arch_kwargs=dict(student.spec.arch_kwargs),
        temperature=temperature,
        alpha=alpha,
        master_macs=master_profile.total_macs,
        student_macs=student_profile.total_macs,
        master_params=master_profile.total_params,
        student_params=student_profile.total_params,
        training=history,
    )
    return student, report
