"""Detectors: back-ends, the Detector wrapper, registries, save/load."""
from spoofrl.models.detector import Detector, ModelConfig, build_model, count_parameters, load_model_preset
from spoofrl.models.io import load_model, save_model
from spoofrl.models.registry import BACKENDS, FRONTENDS

__all__ = ["Detector", "ModelConfig", "build_model", "count_parameters", "load_model_preset", "load_model",
           "save_model", "FRONTENDS", "BACKENDS"]
