"""Training and evaluation of classifiers: seeded, early-stopped on validation, with progress bars."""

from specedge.training.evaluate import EvalResult, evaluate, evaluate_logits, predict_logits, softmax
from specedge.training.recipes import check_fits, save_evaluated, train_new
from specedge.training.trainer import (
    DEFAULT_TRAIN_CONFIG,
    EpochStats,
    TrainConfig,
    TrainingError,
    TrainResult,
    at_chance,
    chance_threshold,
    channel_stats,
    fit,
)

__all__ = [
    "DEFAULT_TRAIN_CONFIG",
    "EpochStats",
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "at_chance",
    "chance_threshold",
    "channel_stats",
    "check_fits",
    "evaluate",
    "evaluate_logits",
    "fit",
    "predict_logits",
    "save_evaluated",
    "softmax",
    "train_new",
]
