"""The model `detect` and `serve` score with: a run folder, or the small default model bundled in the package."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spoofrl.errors import SpoofrlError
from spoofrl.runfiles import CONFIG, WEIGHTS
from spoofrl.metrics.calibration import (Calibration, p_spoof_from_llr, p_spoof_from_logodds,
                                         read_calibration)

DEFAULT_MODEL_RESOURCE = ("assets", "default-model")
DEFAULT_TRAINED_ON = ("spoofrl's built-in benchmark, design 2 (`spoofrl data synth --preset demo`): real human "
                      "recordings from Debian packages as bona fide; their vocoded copies and rule-based TTS as "
                      "spoofs; no modern neural TTS or voice conversion; a demonstration model, not a production "
                      "detector (its MODEL_CARD.md has the measured numbers)")


def default_model_dir() -> Path:
    """Folder of the default model shipped inside the package (raises if this installation lacks it)."""
    from importlib.resources import files
    folder = Path(str(files("spoofrl").joinpath(*DEFAULT_MODEL_RESOURCE)))
    if not (folder / WEIGHTS).is_file():
        raise SpoofrlError(f"{folder}: the bundled default model is missing from this installation; pass "
                           f"--model RUN_DIR, or build it with scripts/train_default_model.sh")
    return folder


def _read_run_config(folder: Path) -> dict:
    from spoofrl.config import load_yaml
    path = folder / CONFIG
    return load_yaml(path) if path.is_file() else {}


NOT_RECORDED = "not recorded in the run's config.yaml"


def _training_manifest(run_config: dict) -> str | None:
    """The run config's data.manifest (the training data's manifest), when it names one."""
    data = run_config.get("data")
    manifest = data.get("manifest") if isinstance(data, dict) else None
    return str(manifest) if manifest else None


def _describe_training_data(manifest: str | None) -> str:
    """What a run folder says it was trained on, for the report."""
    return f"manifest {manifest}" if manifest else NOT_RECORDED


def public_file_name(path: str | Path) -> str:
    """A file's name with its folder's name ('demo/manifest.csv'): says which file without the machine's layout."""
    parts = Path(str(path).replace("\\", "/")).parts
    return "/".join(p for p in parts[-2:] if p not in ("/", "..", "."))


@dataclass
class LoadedModel:
    """A detector ready to score, with what the report needs to say about it."""
    model: object  # spoofrl.models.Detector
    folder: Path
    name: str
    is_default: bool
    trained_on: str
    calibration: Calibration | None
    device: object  # torch.device
    # Serialises inference when several threads (HTTP requests) share the model; decoding stays parallel.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    manifest: str | None = None  # the training manifest named by the run's config.yaml, as written there

    @property
    def sample_rate(self) -> int:
        return int(self.model.cfg.sample_rate)

    @property
    def score_type(self) -> str:
        return "llr" if self.calibration is not None else "log-odds"

    def to_scores(self, raw) -> np.ndarray:
        """Raw log-odds -> reported scores (LLRs when the model folder has a calibration)."""
        raw = np.asarray(raw, dtype=np.float64)
        return self.calibration.llr(raw) if self.calibration is not None else raw

    def p_spoof(self, scores) -> np.ndarray:
        """Probability of spoof for reported scores: LLR + the calibration's stated prior, or the model's softmax."""
        if self.calibration is not None:
            return p_spoof_from_llr(scores, self.calibration.prior)
        return p_spoof_from_logodds(scores)

    def info(self, public: bool = False) -> dict:
        """What the report says about the model. `public` (the HTTP service): names only, no server paths
        (no "path"; the training manifest as folder/file name)."""
        cal = self.calibration
        trained_on = self.trained_on
        if public and self.manifest:
            trained_on = _describe_training_data(public_file_name(self.manifest))
        place = {"folder": self.folder.name} if public else {"path": str(self.folder), "folder": self.folder.name}
        return {
            "name": self.name,
            **place,
            "default": self.is_default,
            "trained_on": trained_on,
            "demonstration_model": self.is_default,
            "score_type": self.score_type,
            "score_meaning": ("calibrated log-likelihood ratio of bona fide vs spoof (natural log)" if cal else
                              "raw log-odds of bona fide (natural log; uncalibrated)") + "; higher = more bona fide",
            "calibration": None if cal is None else {"a": cal.a, "b": cal.b, "prior_bonafide": cal.prior},
        }


def load_detection_model(model_dir: str | Path | None = None, device: str = "auto") -> LoadedModel:
    """Load `model_dir` (a run or model folder) or, when None, the bundled default model."""
    from spoofrl.device import pick_device
    from spoofrl.models import load_model
    is_default = model_dir is None
    folder = default_model_dir() if is_default else Path(model_dir)
    if not folder.is_dir():
        raise SpoofrlError(f"{folder}: model folder not found (expected a run folder with model.safetensors "
                           f"and config.yaml)")
    torch_device = pick_device(device)
    model = load_model(folder, torch_device)
    run_config = _read_run_config(folder)
    architecture = f"{model.cfg.frontend['name']} + {model.cfg.backend['name']}"
    # The default model's name itself says what it is, so every format (CSV's model column too) carries it.
    name = (f"spoofrl default model ({architecture}; a demonstration, no neural deepfakes seen)" if is_default
            else f"{folder.name} ({architecture})")
    manifest = None if is_default else _training_manifest(run_config)
    trained_on = DEFAULT_TRAINED_ON if is_default else _describe_training_data(manifest)
    return LoadedModel(model=model, folder=folder.resolve(), name=name, is_default=is_default,
                       trained_on=trained_on, calibration=read_calibration(folder), device=torch_device,
                       manifest=manifest)
