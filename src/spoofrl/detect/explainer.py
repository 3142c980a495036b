"""The explainer `spoofrl explain` runs: a model folder the user names, or the default one bundled with spoofrl.

An explainer folder is what a generation run writes (spoofrl.training.tasks.generation): the audio LLM, the
run's `config.yaml` (the prompt and system prompt it was trained with, `objective.max_completion_length`) and
`evidence_reference.json`, the bona fide reference profile its rationales were measured against, which is what
its claims are checked with. The two kinds of audio LLM folder are told apart by their files:

| files | kind | loaded by |
|---|---|---|
| `alm.json` | `spoofrl-alm` (a SmallAlm) | `spoofrl.alm.load_alm` |
| `config.json` (a `model_type`), or `adapter_config.json` (LoRA adapters naming their base folder) | `huggingface` | `spoofrl.alm.hf.load_hf_alm` |

A folder without `config.yaml` (e.g. a Hugging Face model never trained here) is run with the default prompt of
`spoofrl.training.config.GenerationConfig`; one without `evidence_reference.json` is explained unchecked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spoofrl
from spoofrl.errors import SpoofrlError

NO_BUNDLED_EXPLAINER = ("no bundled explainer in this installation; pass --model RUN_DIR "
                        "(train one: scripts/train_explainer.sh)")
SMALL_ALM, HUGGING_FACE = "spoofrl-alm", "huggingface"
# Without a config.yaml nothing says how long the model's rationales run: two sections of a few claims each
# take about 100-200 tokens, so 256 leaves room without letting a rambling model run for ever.
DEFAULT_MAX_COMPLETION_LENGTH = 256


def default_explainer_path() -> Path:
    """Where the default explainer is shipped inside the package (the folder may not exist yet)."""
    return Path(spoofrl.__file__).parent / "assets" / "explainer"


@dataclass
class Explainer:
    """A loaded explainer and what running it needs."""

    model: Any                      # a SmallAlm or an HfAlm (spoofrl.alm's AudioLM interface)
    folder: Path
    kind: str                       # SMALL_ALM or HUGGING_FACE
    bundled: bool
    sample_rate: int                # the rate the model hears audio at
    prompt: str
    system: str | None
    max_completion_length: int
    reference: Any | None           # spoofrl.evidence.ReferenceProfile; None: claims are not checked
    config_found: bool              # config.yaml was there (else the default prompt is used)

    def info(self) -> dict:
        ref = self.reference
        return {"name": "bundled explainer" if self.bundled else self.folder.name, "path": str(self.folder),
                "kind": self.kind, "bundled": self.bundled, "sample_rate": self.sample_rate,
                "prompt": self.prompt, "system": self.system, "max_completion_length": self.max_completion_length,
                "config": str(self.folder / "config.yaml") if self.config_found else None,
                "claims_checked": ref is not None,
                "evidence_reference": None if ref is None else {"path": str(self.reference_path),
                                                                "n_clips": ref.n_clips}}

    @property
    def reference_path(self) -> Path:
        from spoofrl.training.tasks.generation import EVIDENCE_REFERENCE
        return self.folder / EVIDENCE_REFERENCE


def explainer_folder(model_dir: str | Path | None) -> Path:
    """The folder to load: `model_dir`, or the bundled explainer (a SpoofrlError when it is not installed)."""
    if model_dir is None:
        folder = default_explainer_path()
        if not folder.is_dir():
            raise SpoofrlError(NO_BUNDLED_EXPLAINER)
        return folder
    folder = Path(model_dir)
    if not folder.is_dir():
        raise SpoofrlError(f"--model {model_dir}: no such folder")
    return folder


def model_kind(folder: Path) -> str:
    """SMALL_ALM or HUGGING_FACE, from the files the folder holds."""
    if (folder / "alm.json").is_file():
        return SMALL_ALM
    if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
        return HUGGING_FACE
    raise SpoofrlError(f"{folder}: not an explainer folder (no alm.json of a spoofrl audio LLM, no config.json or "
                       f"adapter_config.json of a Hugging Face one); give the folder of a generation run "
                       f"(spoofrl train, task: generation); detectors are run by spoofrl detect")


def _run_config(folder: Path):
    """The run's TrainConfig, or None when the folder has no config.yaml."""
    from spoofrl.runfiles import CONFIG
    from spoofrl.training.config import load_train_config
    path = folder / CONFIG
    return load_train_config(str(path)) if path.is_file() else None


def _load_model(folder: Path, kind: str, run_config, device: str):
    """(model, sample rate) of the folder's audio LLM on `device`."""
    if kind == SMALL_ALM:
        from spoofrl.alm import load_alm
        model = load_alm(folder, device=device)
        return model, int(model.cfg.sample_rate)
    from spoofrl.alm.hf import load_hf_alm
    hf = (run_config.model.get("hf") if run_config is not None else None) or {}
    # The run's kind and dtype; its LoRA options are not passed: a saved folder already holds its adapters.
    model = load_hf_alm(folder, kind=hf.get("kind", "auto"), device=device, dtype=hf.get("dtype", "auto"))
    return model, int(model.feature_config.get("sampling_rate", 16000))


def _reference(folder: Path):
    """The folder's evidence reference profile, or None without one (a malformed one is an error)."""
    from spoofrl.evidence import ReferenceProfile
    from spoofrl.training.tasks.generation import EVIDENCE_REFERENCE
    path = folder / EVIDENCE_REFERENCE
    return ReferenceProfile.load(path) if path.is_file() else None


def load_explainer(model_dir: str | Path | None = None, device: str = "auto") -> Explainer:
    """The explainer in `model_dir` (None: the bundled one), in eval mode on `device`."""
    from spoofrl.training.config import GenerationConfig
    folder = explainer_folder(model_dir)
    kind = model_kind(folder)
    run_config = _run_config(folder)   # read before the weights: a bad config fails fast
    generation = run_config.generation if run_config is not None else GenerationConfig()
    max_length = (run_config.objective.max_completion_length if run_config is not None
                  else DEFAULT_MAX_COMPLETION_LENGTH)
    reference = _reference(folder)
    model, sample_rate = _load_model(folder, kind, run_config, device)
    return Explainer(model=model, folder=folder, kind=kind, bundled=model_dir is None, sample_rate=sample_rate,
                     prompt=generation.prompt, system=generation.system or None, max_completion_length=max_length,
                     reference=reference, config_found=run_config is not None)


__all__ = [
    "DEFAULT_MAX_COMPLETION_LENGTH",
    "HUGGING_FACE",
    "NO_BUNDLED_EXPLAINER",
    "SMALL_ALM",
    "Explainer",
    "default_explainer_path",
    "explainer_folder",
    "load_explainer",
    "model_kind",
]
