"""spoofrl: train, RL-fine-tune (GRPO), evaluate and serve audio deepfake detectors.

Score convention everywhere: higher = more bona fide. A model's raw score is the log-odds of bona fide
(logit difference, natural log); a calibrated score is a log-likelihood ratio (see `spoofrl calibrate`).
"""
__version__ = "0.1.0"


def load_model(path, device="cpu"):
    """Load a saved detector folder (model.safetensors + config.yaml); no pickle involved."""
    from spoofrl.models.io import load_model as _load
    return _load(path, device)


__all__ = ["load_model", "__version__"]
