"""One trainer loop with pluggable objectives (SFT, GRPO, SFT then GRPO); resumable; multi-process.

    cfg = load_train_config("grpo", ["objective.beta=0"])   # a recipe in configs/train/, a YAML path or a dict
    train(cfg, "runs/grpo", init="runs/posttrain")          # -> the run folder

See spoofrl.training.runfolder for the files of a run and docs/training.md for every option.
"""
from spoofrl.training.config import (DataConfig, ObjectiveConfig, OptimConfig, ScheduleConfig, TrainConfig,
                                     load_train_config)
from spoofrl.training.trainer import Trainer, train

__all__ = ["TrainConfig", "DataConfig", "ObjectiveConfig", "OptimConfig", "ScheduleConfig", "load_train_config",
           "train", "Trainer"]
