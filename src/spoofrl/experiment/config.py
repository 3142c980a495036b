"""The experiment config: data splits, detectors, recipes, arms, seeds, scoring and report settings.

An experiment compares *arms* (ways of adapting a post-trained detector to a target domain) over several
seeds, on the target domain (in-domain) and on out-of-domain (OOD) test sets. Every option is documented
(`spoofrl config experiment`). Relative paths are resolved against the current directory when the config is
loaded (a recipe or detector YAML that is not there is also looked for beside the config file); the resolved
config (absolute paths, every default filled in) is saved as `experiment.yaml` in the output folder.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spoofrl.config import apply_overrides, from_dict, load_yaml, option, parse_override, resolve_preset
from spoofrl.errors import ConfigError

# Arm names become folder names and table rows: keep them simple.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
IN_DOMAIN_DEFAULT = "target"


@dataclass
class SplitConfig:
    subsets: list[str] = option(factory=list, doc="values of the manifest's `subset` column to keep; empty = every "
                                                  "row of the manifest")
    manifest: str = option("", "manifest CSV of this split; empty = data.manifest")

    def is_empty(self) -> bool:
        return not self.subsets and not self.manifest


@dataclass
class BenchmarkConfig:
    preset: str = option("", "make the built-in benchmark (`spoofrl data synth --preset`, e.g. small, demo) in "
                             "OUT/benchmark and use it as data.manifest when that is empty; empty = none")
    design: str = option("real", "`spoofrl data synth --design`: real (real bona fide recordings, design 2; "
                                 "`spoofrl data fetch` first, cached) or v1 (synthetic bona fide, offline)")
    seed: int = option(0, "benchmark seed")


@dataclass
class RationalesConfig:
    annotate: bool = option(False, "write evidence-grounded rationales (`spoofrl data rationales`) of every clip "
                                   "of the configured splits into OUT/data/rationales.jsonl (resumable), with the "
                                   "bona fide reference profile fitted on the training splits' bona fide rows; "
                                   "every generation stage then gets generation.rationales (an arm may override "
                                   "it with generation.rationales='' to train on the answer only)")
    seed: int = option(0, "seed of the rationales' wording")
    max_claims: int = option(3, "claims per rationale at most")
    workers: int = option(0, "annotation processes (0 = the available cores)")


@dataclass
class ExperimentDataConfig:
    manifest: str = option("", "default manifest (CSV path,label,attack,source,condition,subset) of every split "
                               "that names no manifest of its own")
    benchmark: BenchmarkConfig = option(factory=BenchmarkConfig, doc="make the built-in benchmark as part of the "
                                                                     "experiment (when data.manifest is empty)")
    rationales: RationalesConfig = option(factory=RationalesConfig,
                                          doc="rationale SFT targets and per-clip evidence for generation studies "
                                              "(docs/explain.md)")
    posttrain: SplitConfig = option(factory=lambda: SplitConfig(["posttrain"]),
                                    doc="training data of the post-training stage (broad, multi-attack); default subsets [posttrain]")
    posttrain_dev: SplitConfig = option(factory=lambda: SplitConfig(["posttrain_dev"]),
                                        doc="dev data choosing the best post-training checkpoint; default subsets "
                                            "[posttrain_dev]; subsets [] and no manifest = hold out "
                                            "posttrain.dev_fraction of the post-training data")
    target_train: SplitConfig = option(factory=lambda: SplitConfig(["target_train"]),
                                       doc="fine-tuning data of the new (target) domain; default subsets [target_train]")
    target_dev: SplitConfig = option(factory=lambda: SplitConfig(["target_dev"]),
                                     doc="dev data choosing the best fine-tuning checkpoint (the study used "
                                         "ASVspoof 2019 LA dev; the demo uses the target domain's dev subset); "
                                         "default subsets [target_dev]")
    target_eval: SplitConfig = option(factory=lambda: SplitConfig(["target_eval"]),
                                      doc="in-domain test set; default subsets [target_eval]")
    in_domain_name: str = option(IN_DOMAIN_DEFAULT, "column name of the in-domain test set in tables")
    ood: dict[str, SplitConfig] = option(factory=dict, doc="out-of-domain test sets: name -> split; their mean EER "
                                                           "is the 'OOD avg' column")


@dataclass
class PosttrainConfig:
    recipe: str = option("posttrain", "train recipe of the post-training stage: a name in configs/train/ or a "
                                      "YAML path")
    overrides: list[str] = option(factory=list, doc="key=value overrides applied to that recipe (as `--set`)")
    dev_fraction: float = option(0.1, "share of the post-training data held out as its dev set when "
                                      "data.posttrain_dev is empty (chosen by a hash of the path, per label)")
    from_model: str = option("", "use this spoofrl model folder (model.safetensors + config.yaml) as the "
                                 "post-trained model instead of training one; '{detector}' in the path is "
                                 "replaced by the detector's name")
    per_seed: bool = option(False, "post-train once per seed (seed s fine-tunes from post-training seed s) "
                                   "instead of once, shared by every arm and seed as in the study")


@dataclass
class FinetuneConfig:
    recipe: str = option("finetune", "base train recipe of every fine-tuning stage: a name in configs/train/ "
                                     "or a YAML path")
    overrides: list[str] = option(factory=list, doc="key=value overrides applied to the base recipe for every arm")


@dataclass
class StageConfig:
    recipe: str = option("", "train recipe of this stage; empty = finetune.recipe")
    overrides: list[str] = option(factory=list, doc="key=value overrides of this stage (after the arm's)")


@dataclass
class ArmConfig:
    label: str = option("", "name shown in tables and plots; empty = the arm's key")
    init: Literal["posttrained", "none"] = option("posttrained", "start from the post-trained model, or from a "
                                                                 "freshly initialised one (no post-training)")
    train: bool = option(True, "false: no fine-tuning, the starting model is only scored (the 'post-trained "
                               "only' row)")
    overrides: list[str] = option(factory=list, doc="key=value overrides of the base recipe for this arm, e.g. "
                                                    "objective.name=grpo, objective.beta=0")
    stages: list[StageConfig] = option(factory=list, doc="several stages run in sequence, each initialised from "
                                                         "the previous one's best model (e.g. SFT then GRPO); "
                                                         "empty = one stage")
    after: str = option("", "start from this other arm's final model of the same seed instead of the "
                            "post-trained model, e.g. 'sft' for SFT->GRPO: its SFT stage is the sft arm's run, "
                            "trained once and shared (and the GRPO reference is that SFT model, as in the study)")

    def stage_list(self) -> list[StageConfig]:
        if not self.train:
            return []
        return self.stages or [StageConfig()]


@dataclass
class ScoringConfig:
    batch_size: int = option(16, "utterances per scoring batch")
    max_seconds: float = option(0.0, "score at most this many seconds of each file (0 = whole file)")


@dataclass
class ReportConfig:
    bootstrap: int = option(1000, "bootstrap replicates of each EER confidence interval")
    alpha: float = option(0.05, "confidence intervals cover 1 - alpha")
    bootstrap_seed: int = option(0, "random seed of the bootstrap (as `spoofrl metrics --seed`)")
    compare: list[str] = option(factory=lambda: ["grpo vs sft", "sft vs posttrained", "grpo vs posttrained",
                                                 "sft_then_grpo vs sft", "grpo_noneg vs grpo"],
                                doc="arm pairs 'A vs B' discussed in the written reading (pairs with an arm "
                                    "that is not run are skipped)")
    det_seed: int = option(-1, "seed whose DET curves and histograms are drawn (-1 = each arm's first seed)")


@dataclass
class ExperimentConfig:
    name: str = option("experiment", "experiment name (report title)")
    detectors: list[str] = option(factory=lambda: ["logmel-linear"],
                                  doc="model presets (names in configs/models/ or YAML paths) to compare arms on")
    data: ExperimentDataConfig = option(factory=ExperimentDataConfig, doc="manifests and splits")
    posttrain: PosttrainConfig = option(factory=PosttrainConfig, doc="the post-training stage, shared by the arms")
    finetune: FinetuneConfig = option(factory=FinetuneConfig, doc="the base fine-tuning recipe of the arms")
    arms: dict[str, ArmConfig] = option(factory=dict, doc="arm name -> how it adapts the post-trained model: "
                                        "{label, train, init, overrides, stages, after} (docs/experiment.md)")
    seeds: int = option(3, "runs per arm (seeds seed_offset .. seed_offset + seeds - 1)")
    seed_offset: int = option(0, "first seed")
    device: str = option("auto", "'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'")
    workers: int = option(1, "arm runs trained at once in separate processes (CPU: split the cores between them)")
    scoring: ScoringConfig = option(factory=ScoringConfig, doc="how test sets are scored")
    report: ReportConfig = option(factory=ReportConfig, doc="metrics, confidence intervals and the written reading")

    def validate(self) -> None:
        _check_names("arm", self.arms)
        _check_names("OOD test set", self.data.ood)
        if not self.arms:
            raise ConfigError("arms: no arms to run (add e.g. 'sft: {overrides: [objective.name=sft]}')")
        if not self.detectors:
            raise ConfigError("detectors: name at least one model preset")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be at least 1, got {self.seeds}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if not 0.0 <= self.posttrain.dev_fraction < 1.0:
            raise ConfigError(f"posttrain.dev_fraction must be in [0, 1), got {self.posttrain.dev_fraction}")
        if self.data.in_domain_name in self.data.ood:
            raise ConfigError(f"data.ood: '{self.data.in_domain_name}' is also the in-domain test set's name")
        if self.is_generation() and len(self.detectors) != 1:
            raise ConfigError("detectors: a generation study (finetune.recipe is task: generation) names one "
                              "detector, e.g. [alm]: the model is the recipe's model section")
        if self.data.benchmark.design not in ("real", "v1"):
            raise ConfigError(f"data.benchmark.design: real or v1, got {self.data.benchmark.design!r}")
        names = [detector_name(d) for d in self.detectors]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"detectors: two presets share the name {', '.join(dup)}")
        for name, arm in self.arms.items():
            _validate_arm(name, arm)
        self.arm_levels()  # checks 'after' references
        for pair in self.report.compare:
            parse_pair(pair)
        if self.report.bootstrap < 1:
            raise ConfigError(f"report.bootstrap must be at least 1, got {self.report.bootstrap}")
        if not 0.0 < self.report.alpha < 1.0:
            raise ConfigError(f"report.alpha must be in (0, 1), got {self.report.alpha}")

    # ------------------------------------------------------------------------------------------ helpers
    def seed_list(self) -> list[int]:
        return list(range(self.seed_offset, self.seed_offset + self.seeds))

    def arm_label(self, arm: str) -> str:
        return self.arms[arm].label or arm

    def test_sets(self) -> dict[str, SplitConfig]:
        """In-domain first, then the OOD sets in config order."""
        return {self.data.in_domain_name: self.data.target_eval, **self.data.ood}

    def ood_names(self) -> list[str]:
        return list(self.data.ood)

    def needs_posttraining(self) -> bool:
        return any(a.init == "posttrained" and not a.after for a in self.arms.values())

    def is_generation(self) -> bool:
        """True when the base fine-tuning recipe is a `task: generation` config (an audio LLM study): the model
        is then the recipe's model section, and `detectors` only names the one folder / table of the study."""
        return recipe_task(self.finetune.recipe) == "generation"

    def shares_posttraining(self) -> bool:
        return not self.posttrain.per_seed

    def arm_levels(self) -> dict[str, int]:
        """arm -> 0 for arms that start from the post-trained (or a fresh) model, 1 + the level of `after`
        otherwise; runs of level k start after every run of level k - 1 has finished."""
        levels: dict[str, int] = {}

        def level(name: str, chain: tuple[str, ...]) -> int:
            if name in levels:
                return levels[name]
            after = self.arms[name].after
            if not after:
                levels[name] = 0
                return 0
            if after not in self.arms:
                raise ConfigError(f"arms.{name}.after: no arm named {after!r} (arms: {', '.join(self.arms)})")
            if after in chain:
                raise ConfigError(f"arms.{name}.after: circular ({' -> '.join(chain + (name, after))})")
            if not self.arms[after].train:
                raise ConfigError(f"arms.{name}.after: arm {after!r} trains nothing; start from the post-trained "
                                  f"model (leave 'after' empty) instead")
            levels[name] = level(after, chain + (name,)) + 1
            return levels[name]

        for name in self.arms:
            level(name, ())
        return levels

    def with_dependencies(self, arms: list[str]) -> list[str]:
        """The arms plus every arm they start from (`after`), in config order."""
        wanted = set(arms)
        for name in arms:
            after = self.arms[name].after
            while after:
                wanted.add(after)
                after = self.arms[after].after
        return [a for a in self.arms if a in wanted]

    def arm_seeds(self, arm: str) -> list[int]:
        """Seeds an arm is run with: an untrained arm on a shared post-trained model has one run (the others
        would be identical copies)."""
        spec = self.arms[arm]
        if not spec.train and spec.init == "posttrained" and self.shares_posttraining():
            return [self.seed_offset]
        return self.seed_list()


def _check_names(kind: str, mapping: dict) -> None:
    for name in mapping:
        if not NAME_RE.match(str(name)):
            raise ConfigError(f"{kind} name {name!r}: use letters, digits, '_', '-', '.', '+' (it names a folder)")


def _validate_arm(name: str, arm: ArmConfig) -> None:
    if not arm.train and (arm.stages or arm.overrides):
        raise ConfigError(f"arms.{name}: train is false, so it has no stages or overrides to apply")
    if arm.after and not arm.train:
        raise ConfigError(f"arms.{name}: 'after: {arm.after}' with train false would only score arm "
                          f"{arm.after}'s model again")
    if not arm.train and arm.init == "none":
        raise ConfigError(f"arms.{name}: init none with train false would score an untrained random model")
    for text in arm.overrides + [o for s in arm.stages for o in s.overrides]:
        try:
            parse_override(text)
        except ConfigError as err:
            raise ConfigError(f"arms.{name}: {err}") from None


def recipe_task(recipe: str) -> str:
    """The `task` of a train recipe (detection when it names none, or when it cannot be read: check_presets
    reports a missing recipe)."""
    try:
        data = load_yaml(resolve_preset("train", recipe))
    except ConfigError:
        return "detection"
    return str((data or {}).get("task") or "detection")


def parse_pair(text: str) -> tuple[str, str]:
    """'grpo vs sft' -> ('grpo', 'sft')."""
    parts = [p.strip() for p in re.split(r"\s+vs\.?\s+", text.strip())]
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"report.compare: {text!r} is not of the form 'ARM vs ARM'")
    return parts[0], parts[1]


def detector_name(preset: str) -> str:
    """Folder/table name of a detector: the preset name, or a YAML path's file stem."""
    path = Path(preset)
    return path.stem if path.suffix in (".yaml", ".yml") else preset


# ------------------------------------------------------------------------------------------ loading

def _resolve_path(value: str, base: Path) -> str:
    if not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_recipe(value: str, base: Path, beside: Path | None = None) -> str:
    """Recipes and detectors: a preset name stays a name; a YAML path becomes absolute. A relative path that
    does not exist under `base` but exists beside the config file (`beside`) is taken from there, so bundled
    configs can name files in their own folder (configs/experiments/models/...) from any directory."""
    if not value or Path(value).suffix not in (".yaml", ".yml"):
        return value
    resolved = _resolve_path(value, base)
    if beside is not None and not Path(resolved).is_file() and (beside / value).is_file():
        return str((beside / value).resolve())
    return resolved


def resolve_paths(cfg: ExperimentConfig, base: Path | None = None, beside: Path | None = None) -> ExperimentConfig:
    """Make every manifest / model / recipe path absolute (relative to `base`, default the current directory;
    recipe and detector files also beside the config file, see `_resolve_recipe`)."""
    base = Path.cwd() if base is None else base
    data = cfg.data
    data.manifest = _resolve_path(data.manifest, base)
    splits = [data.posttrain, data.posttrain_dev, data.target_train, data.target_dev, data.target_eval,
              *data.ood.values()]
    for split in splits:
        split.manifest = _resolve_path(split.manifest, base)
    cfg.posttrain.from_model = _resolve_path(cfg.posttrain.from_model, base)
    cfg.posttrain.recipe = _resolve_recipe(cfg.posttrain.recipe, base, beside)
    cfg.finetune.recipe = _resolve_recipe(cfg.finetune.recipe, base, beside)
    for arm in cfg.arms.values():
        for stage in arm.stages:
            stage.recipe = _resolve_recipe(stage.recipe, base, beside)
    cfg.detectors = [_resolve_recipe(d, base, beside) for d in cfg.detectors]
    return cfg


def load_experiment_config(source: str | Path | dict, overrides: list[str] | None = None,
                           base: Path | None = None) -> ExperimentConfig:
    """A YAML path (or a preset name in configs/experiments/) or a dict -> validated ExperimentConfig.

    `overrides` are `key.path=value` strings applied before validation (as `--set`)."""
    beside = None
    if isinstance(source, dict):
        data, where = source, "experiment config"
    else:
        path = resolve_preset("experiments", str(source))
        data, where, beside = load_yaml(path), str(path), Path(path).resolve().parent
    data = apply_overrides(data, overrides)
    try:
        cfg = from_dict(ExperimentConfig, data)
        check_presets(resolve_paths(cfg, base, beside))
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return cfg


def check_presets(cfg: ExperimentConfig) -> None:
    """Every named detector and recipe exists (and a detector is a valid model config), so a typo fails
    with the option's name now rather than as a train-config error later."""
    from spoofrl.models.detector import load_model_preset
    for preset in ([] if cfg.is_generation() else cfg.detectors):
        try:
            load_model_preset(preset)
        except ConfigError as err:
            raise ConfigError(f"detectors: {err}") from None
    recipes = {"finetune.recipe": cfg.finetune.recipe}
    if cfg.needs_posttraining() and not cfg.posttrain.from_model:
        recipes["posttrain.recipe"] = cfg.posttrain.recipe
    recipes.update({f"arms.{name}.stages[{i}].recipe": stage.recipe
                    for name, arm in cfg.arms.items() for i, stage in enumerate(arm.stages) if stage.recipe})
    for key, recipe in recipes.items():
        try:
            resolve_preset("train", recipe)
        except ConfigError as err:
            raise ConfigError(f"{key}: {err}") from None


def split_manifest(cfg: ExperimentConfig, split: SplitConfig, what: str) -> str:
    """The manifest a split reads, or a clear error when neither it nor data.manifest names one."""
    manifest = split.manifest or cfg.data.manifest
    if not manifest:
        raise ConfigError(f"data.{what}: no manifest (set data.manifest or data.{what}.manifest)")
    return manifest


__all__ = ["ExperimentConfig", "ExperimentDataConfig", "BenchmarkConfig", "RationalesConfig", "recipe_task", "SplitConfig", "PosttrainConfig", "FinetuneConfig", "StageConfig",
           "ArmConfig", "ScoringConfig", "ReportConfig", "load_experiment_config", "detector_name", "parse_pair",
           "split_manifest", "field"]
