"""Map training (``glace-train``): options, augmentation, buffer, loss and the training loop."""
from glace_core.training.config import PRESETS, TrainConfig
from glace_core.training.trainer import TrainingInterrupted, TrainResult, train_map

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "TrainingInterrupted", "train_map"]
