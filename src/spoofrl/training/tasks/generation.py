"""The generation task: an audio LLM (spoofrl.alm) that writes text about manifest audio, trained by the one loop.

Each manifest row becomes an item: its audio, a prompt and a target completion rendered from the row by the
`generation` templates (`{label}`, `{attack}`, `{transcript}`, ...). The data plan (crops, batches, class
balance) is detection's, so a run sees the audio as a detector run would; what differs is the model (a
SmallAlm built from `model.alm` with a tokenizer trained on the task's texts, or --init's saved ALM), how
objectives reach it (`GenerationAccess`: policies that generate and score completions) and validation
(greedy completions of the dev items scored by `generation.metric`).
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from spoofrl.alm.batch import AlmBatch, Completions
from spoofrl.alm.config import AlmConfig, SamplingConfig
from spoofrl.config import from_dict, option, save_yaml, to_dict
from spoofrl.data.manifest import Utterance
from spoofrl.errors import ConfigError
from spoofrl.runfiles import CONFIG, WEIGHTS
from spoofrl.training import distributed, fsdp
from spoofrl.training.config import TrainConfig
from spoofrl.training.forward import ParamSnapshot
from spoofrl.training.tasks.detection import DetectionTask

LOG = logging.getLogger(__name__)

TOKENIZER_FOLDER = "tokenizer"   # in the run folder: the tokenizer trained at the start, reused on --resume
DEFAULT_EXTRA_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]


@dataclass
class TokenizerConfig:
    """The tokenizer trained for a model built from scratch (spoofrl.alm.tokenizer.train_tokenizer)."""

    vocab_size: int = option(512, "most entries (the 256 bytes and the special tokens included)", ge=260,
                             le=1_000_000)
    extra_tokens: list[str] = option(factory=lambda: list(DEFAULT_EXTRA_TOKENS),
                                     doc="texts that become single, non-special tokens (kept in decoded text, so "
                                         "rewards can parse them)")


@dataclass
class HfModelConfig:
    """A Hugging Face audio LLM from a local folder (spoofrl.alm.hf.load_hf_alm; docs/alm.md)."""

    path: str = option("", "the model folder (Qwen2-Audio, Qwen2.5-Omni or its thinker, Granite Speech: config.json, "
                           "weights, tokenizer, processor files), or an adapter folder a LoRA run saved")
    kind: Literal["auto", "qwen2_audio", "qwen2_5_omni_thinker", "granite_speech"] = option(
        "auto", "the backend; auto = from config.json's model_type")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", "weights' dtype: auto = bfloat16 on a CUDA device that supports it, float32 otherwise")
    lora: dict[str, Any] = option(factory=dict, doc="LoRA adapters on the language model (spoofrl.alm.hf.LoraOptions: "
                                                     "r, alpha, dropout, target_modules, bias, "
                                                     "freeze_audio_encoder); empty = every weight trains")

    def validate(self):
        if not self.path:
            raise ConfigError("model.hf.path: give the folder of the model")


def _lora_options(hf: HfModelConfig):
    from spoofrl.alm.hf import LoraOptions
    return from_dict(LoraOptions, hf.lora, prefix="model.hf.lora") if hf.lora else None


def resolve_alm_section(section: Any) -> dict:
    """{alm: AlmConfig options, tokenizer: TokenizerConfig options} or {hf: HfModelConfig options} -> the same
    with every default filled in."""
    if not isinstance(section, dict):
        raise ConfigError(f"model: expected a mapping {{alm: ..., tokenizer: ...}} or {{hf: ...}}, got {section!r}")
    if "hf" in section:
        unknown = sorted(set(section) - {"hf"})
        if unknown:
            raise ConfigError(f"model: {unknown} with model.hf (a Hugging Face model brings its own architecture "
                              f"and tokenizer)")
        hf = from_dict(HfModelConfig, section["hf"] or {}, prefix="model.hf")
        lora = _lora_options(hf)
        return {"hf": {**to_dict(hf), "lora": to_dict(lora) if lora else {}}}
    unknown = sorted(set(section) - {"alm", "tokenizer"})
    if unknown:
        raise ConfigError(f"model: unknown keys {unknown} for task generation (give alm: and tokenizer:, or hf:; "
                          f"a detector preset is for task detection)")
    alm = from_dict(AlmConfig, section.get("alm") or {}, prefix="model.alm")
    tokenizer = from_dict(TokenizerConfig, section.get("tokenizer") or {}, prefix="model.tokenizer")
    return {"alm": to_dict(alm), "tokenizer": to_dict(tokenizer)}


# --- rows -> prompts and targets -----------------------------------------------------------------------------
def row_fields(utt: Utterance) -> dict[str, str]:
    """The `{column}` fields of a manifest row."""
    return {"path": utt.path, "label": utt.label, "attack": utt.attack, "source": utt.source,
            "condition": utt.condition, "subset": utt.subset, **utt.extra}


def render(template: str, fields: dict[str, str], option_name: str, where: str) -> str:
    try:
        return template.format_map(fields)
    except KeyError as err:
        raise ConfigError(f"{where}: generation.{option_name} uses {{{err.args[0]}}}, which this row has no "
                          f"column for (columns: {', '.join(fields)})") from None
    except (ValueError, IndexError) as err:
        raise ConfigError(f"generation.{option_name}: not a valid template ({err}); write literal braces as "
                          f"{{{{ and }}}}") from None


@dataclass
class Items:
    """The rendered text of each row of a split."""

    prompts: list[str]
    system: list[str] | None
    targets: list[str]
    columns: dict[str, list]

    @classmethod
    def of(cls, utts: list[Utterance], cfg, manifest: str, rationales: dict | None = None, *,
           need_rationales: bool = False) -> "Items":
        """The rows' texts; with `rationales` ((utt, subset) -> record of `spoofrl data rationales`) a row's
        target is its record's completion and its evidence the column `evidence` (a row without a record is
        an error when need_rationales, else it keeps the template's target and has no evidence)."""
        prompts, system, targets = [], [], []
        names = sorted({k for u in utts for k in row_fields(u)})
        columns: dict[str, list] = {k: [] for k in [*names, "reference", *(["evidence"] if rationales else [])]}
        for u in utts:
            fields = row_fields(u)
            where = f"{manifest} (row {u.path})"
            prompts.append(render(cfg.prompt, fields, "prompt", where))
            system.append(render(cfg.system, fields, "system", where))
            record = None if rationales is None else rationales.get((u.utt, u.subset))
            if record is None and need_rationales and rationales is not None:
                raise ConfigError(f"{cfg.rationales}: no rationale for {where}, subset {u.subset}; run spoofrl data "
                                  f"rationales on the training subsets")
            targets.append(render(cfg.completion, fields, "completion", where) if record is None
                           else str(record["completion"]))
            for k in names:
                columns[k].append(fields.get(k))
            columns["reference"].append(targets[-1])
            if rationales is not None:
                columns["evidence"].append(None if record is None else record["evidence"])
        return cls(prompts, system if cfg.system else None, targets, columns)

    def batch(self, rows: list[int], waves: torch.Tensor, lengths: torch.Tensor) -> AlmBatch:
        return AlmBatch(waves, lengths, [self.prompts[i] for i in rows],
                        None if self.system is None else [self.system[i] for i in rows],
                        [self.targets[i] for i in rows], {k: [v[i] for i in rows] for k, v in self.columns.items()})

    def texts(self) -> list[str]:
        return [*self.prompts, *(self.system or []), *self.targets]


# --- how objectives reach the model --------------------------------------------------------------------------
class AlmTrainForward(nn.Module):
    """What DDP wraps (and what parameter snapshots are evaluated through): teacher-forced log-probs of
    completions, the audio encoder inside the forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: AlmBatch, completions: Completions, temperature: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.token_logprobs(batch, completions, grad=torch.is_grad_enabled(), temperature=temperature)


class GenerationAccess:
    """Policies over the current model (scored through the DDP wrapper, with gradient) and the reference (a
    parameter snapshot, no gradient). `old` and `ref_cache` stay None: a rollout records its old log-probs."""

    def __init__(self, task: "GenerationTask", reference: ParamSnapshot | None):
        self.task, self.ref = task, reference
        self.old = None
        self.ref_cache = None

    @property
    def model(self):
        return self.task.model

    def score(self, batch: AlmBatch, completions: Completions, grad: bool, temperature: float = 1.0):
        with torch.set_grad_enabled(grad):
            return self.task.wrapped(batch, completions, temperature)

    def _score_reference(self, batch: AlmBatch, completions: Completions, grad: bool, temperature: float):
        if self.ref is None:
            raise ConfigError("this objective needs a reference model, and none was set")
        return self.ref.call(self.task.forward, (batch, completions, temperature), prefix="model.")

    def policy(self, sampling: SamplingConfig):
        from spoofrl.alm.policy import AlmPolicy
        owner = self.task.model if self.task.sharded else self.task.wrapped   # whose gradient sync to skip
        return AlmPolicy(self.model, sampling, scorer=self.score, no_sync=lambda: fsdp.no_sync(owner))

    def ref_policy(self, sampling: SamplingConfig):
        from spoofrl.alm.policy import AlmPolicy
        return AlmPolicy(self.model, sampling, grad=False, scorer=self._score_reference)


# --- the task ------------------------------------------------------------------------------------------------
class GenerationTask(DetectionTask):
    name = "generation"
    metric_column = "dev_error"

    def __init__(self, cfg: TrainConfig, out: Path, dist: distributed.DistInfo):
        super().__init__(cfg, out, dist)
        self.metric = f"dev error (1 - {cfg.generation.metric})"
        self.forward: AlmTrainForward | None = None

    @staticmethod
    def default_model_section() -> dict:
        return {"alm": {}}

    @staticmethod
    def resolve_model_section(section) -> dict:
        return resolve_alm_section(section)

    @staticmethod
    def objectives():
        from spoofrl.training.registry import GENERATION_OBJECTIVES
        return GENERATION_OBJECTIVES

    # ------------------------------------------------------------------------------------------ model
    @cached_property
    def hf(self) -> HfModelConfig | None:
        """The model.hf section, parsed once (None for the built-in ALM)."""
        section = self.cfg.model.get("hf")
        return None if section is None else from_dict(HfModelConfig, section, prefix="model.hf")

    @property
    def sample_rate(self) -> int:
        if self.hf is not None:
            return int(self.model.feature_config.get("sampling_rate", 16000))
        return self.model.cfg.sample_rate

    def model_section(self, init: Path | None) -> dict:
        if init is None:
            return self.cfg.model
        if "hf" in self.cfg.model:
            raise ConfigError("--init with model.hf: give the starting folder as model.hf.path")
        from spoofrl.alm.io import read_alm_config
        alm, _ = read_alm_config(init)
        section = {"alm": to_dict(alm), "tokenizer": self.cfg.model.get("tokenizer", {})}
        if section["alm"] != self.cfg.model.get("alm"):
            LOG.info("--init: using the architecture and tokenizer of %s, not the config's model section", init)
        return resolve_alm_section(section)

    def build_model(self, init_weights: Path | None) -> nn.Module:
        from spoofrl.alm.io import load_alm
        from spoofrl.alm.model import build_alm
        hf = self.hf
        if hf is not None:
            from spoofrl.alm.hf import load_hf_alm
            torch.manual_seed(self.cfg.seed)   # the adapters' initialisation
            model = load_hf_alm(hf.path, kind=hf.kind, lora=_lora_options(hf), device=self.device, dtype=hf.dtype)
        elif init_weights is not None:
            model = load_alm(init_weights, device=self.device)
        else:
            tokenizer = self._tokenizer()
            alm = from_dict(AlmConfig, self.cfg.model["alm"], prefix="model.alm")
            model = build_alm(alm, tokenizer, seed=self.cfg.seed, device=self.device)
            self.cfg.model["alm"] = to_dict(model.cfg)   # vocab_size resolved: the saved config says it
        self.model = model.train()
        if self.sharded:   # decoding stops at EOS, after a different number of steps on each process: gathered
            self._shard(self.model, forward_methods=("token_logprobs",), gathered_methods=("generate",))
        self.forward = AlmTrainForward(self.model)
        self.wrapped = self._ddp(self.forward) if self.dist.enabled and not self.sharded else self.forward
        return self.model

    def _tokenizer(self):
        """The run's tokenizer: the one saved in the run folder (a resumed run), else trained on the task's
        texts (every rendered prompt and completion of the training rows, plus generation.tokenizer_texts)."""
        from spoofrl.alm.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
        folder = self.out / TOKENIZER_FOLDER
        if (folder / "tokenizer.json").is_file():
            return load_tokenizer(folder)
        opts = from_dict(TokenizerConfig, self.cfg.model.get("tokenizer") or {}, prefix="model.tokenizer")
        texts = self._train_items().texts() + list(self.cfg.generation.tokenizer_texts)
        tokenizer = train_tokenizer(texts, vocab_size=opts.vocab_size, extra_tokens=opts.extra_tokens)
        if self.dist.is_main:
            save_tokenizer(tokenizer, folder)
        return tokenizer

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [p for p in self.model.parameters() if p.requires_grad], "lr": lr, "lr_scale": 1.0}]

    def save_model(self, folder: Path, config: dict) -> None:
        """A model folder with the run's config.yaml: an ALM folder (spoofrl.alm.load_alm), or for model.hf
        the adapter folder of a LoRA model (naming its base) or the whole model (spoofrl.alm.hf.load_hf_alm)."""
        if self.hf is not None:
            self.model.save(folder, merge=False)
        else:
            from spoofrl.alm.io import save_alm
            save_alm(self.model, folder)
        save_yaml(config, folder / CONFIG)
        profile = rationale_reference(self.cfg.generation.rationales)
        if profile is not None:   # what the model's claims are checked against (spoofrl explain)
            shutil.copyfile(profile, folder / EVIDENCE_REFERENCE)

    def has_model(self, folder: Path) -> bool:
        """An ALM folder, a LoRA adapter folder or a (possibly multi-file) transformers folder."""
        from spoofrl.alm.hf.loader import ADAPTER_WEIGHTS
        return any((folder / name).is_file() for name in (WEIGHTS, ADAPTER_WEIGHTS, f"{WEIGHTS}.index.json"))

    def load_weights(self, folder: Path) -> None:
        from safetensors.torch import load_file
        device = str(self.device)
        if self.hf is None:
            fsdp.load_full_state_dict(self.model, load_file(str(folder / WEIGHTS), device=device))
        elif self.model.lora is not None:
            from spoofrl.alm.hf.loader import ADAPTER_WEIGHTS
            adapters = load_file(str(folder / ADAPTER_WEIGHTS), device=device)
            fsdp.load_full_state_dict(self.model, self.model.adapter_state_names(adapters), strict=False)
        else:   # a transformers folder (its file names differ from the module's: loaded through the backend)
            fsdp.load_full_state_dict(self.model, self._folder_state(str(folder)))

    def _folder_state(self, folder: str) -> dict[str, torch.Tensor]:
        if self.hf is not None:
            from spoofrl.alm.hf import load_hf_alm
            return load_hf_alm(folder, device="cpu").state_dict()
        from spoofrl.alm.io import load_alm
        return load_alm(folder, device="cpu").state_dict()

    # ------------------------------------------------------------------------------------------ data
    def _rationales(self) -> dict | None:
        """(utt, subset) -> record of generation.rationales, read once (None without the option)."""
        path = self.cfg.generation.rationales
        if not path:
            return None
        if getattr(self, "_rationale_records", None) is None:
            d = self.cfg.data
            if d.crop_seconds or d.max_seconds:
                raise ConfigError("generation.rationales describe whole clips (their times are the clip's): set "
                                  "data.crop_seconds 0 and data.max_seconds 0 (with data.batching dynamic)")
            self._rationale_records = read_rationales(path)
        return self._rationale_records

    def _train_items(self) -> Items:
        """The training rows' texts, read once (the tokenizer is trained on them before build_data)."""
        if getattr(self, "train_items", None) is None:
            d = self.cfg.data
            self._train_rows = self._read_split(d.manifest, d.train_subsets, "training")
            self.train_items = Items.of(self._train_rows, self.cfg.generation, d.manifest, self._rationales(),
                                        need_rationales=True)
        return self.train_items

    def _training_utterances(self) -> list[Utterance]:
        self._train_items()
        return self._train_rows

    def build_data(self) -> None:
        super().build_data()
        d = self.cfg.data
        limit = self.cfg.generation.dev_max_items
        if limit and len(self.dev_utts) > limit:
            self.dev_utts = self.dev_utts[:limit]
        self.dev_items = Items.of(self.dev_utts, self.cfg.generation, d.dev_manifest or d.manifest,
                                  self._rationales())

    def _check_train_labels(self) -> None:
        """Generation learns texts, not two classes: one class is fine (e.g. speech-to-text of TTS audio)."""

    def _check_dev_labels(self, manifest: str) -> None:
        """Generation validates texts, not an EER: a dev set of one class is fine."""

    # ------------------------------------------------------------------------------------------ steps
    def access(self, objective, reference: ParamSnapshot | None, autocast) -> GenerationAccess:
        return GenerationAccess(self, reference if objective.needs_reference else None)

    def step_inputs(self, batch, access, objective):
        """The detection batch as an AlmBatch (prompts, targets and columns of its rows) on the device."""
        batch = batch.to(self.device)
        alm = self.train_items.batch(batch.index.tolist(), batch.wave, batch.lengths)
        weighted = self.cfg.data.balance == "loss" and objective.sample_weighted
        return alm, self.class_weights[batch.targets] if weighted else None

    def validate(self) -> float:
        """1 - generation.metric of greedy completions of the dev items, split over the processes."""
        from spoofrl.inference import eval_mode
        mine = list(range(self.dist.rank, len(self.dev_utts), self.dist.world))
        sampling = SamplingConfig(do_sample=False, max_completion_length=self.cfg.objective.max_completion_length)
        texts: list[str] = []
        size = self.cfg.data.dev_batch_size
        # each process decodes its share (different numbers of forwards): under FSDP with the weights gathered once
        with eval_mode(self.model), fsdp.unsharded(self.model):
            for start in range(0, len(mine), size):
                rows = mine[start:start + size]
                batch = self._dev_batch(rows)
                texts.extend(g[0] for g in self.model.generate(batch, 1, sampling).text)
        full: list[str] = [""] * len(self.dev_utts)
        for idx, part in distributed.gather_objects(self.dist, (mine, texts)):
            for i, t in zip(idx, part):
                full[i] = t
        self.last_dev_texts = full
        return 1.0 - generation_score(self.cfg.generation.metric, full, self.dev_items)

    def _dev_batch(self, rows: list[int]) -> AlmBatch:
        from spoofrl.audio import load_audio
        sr, limit = self.sample_rate, self.cfg.data.dev_max_seconds
        waves = []
        for i in rows:
            x = load_audio(self.dev_utts[i].audio_path, sr)
            waves.append(x[:int(limit * sr)] if limit else x)
        padded = AlmBatch.from_waves(waves, "")
        return self.dev_items.batch(rows, padded.waves, padded.lengths).to(self.device)

    def summary(self) -> dict:
        return {"train_utterances": len(self.train_utts), "dev_utterances": len(self.dev_utts),
                "metric": self.cfg.generation.metric}


EVIDENCE_REFERENCE = "evidence_reference.json"   # in a model folder: the profile its rationales were measured by


def read_rationales(path: str) -> dict[tuple[str, str], dict]:
    """The records of a `spoofrl data rationales` file by (utt, subset); a bad line names the file and line."""
    import json
    records: dict[tuple[str, str], dict] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"generation.rationales: cannot read {path} ({err})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = (str(record["utt"]), str(record["subset"]))
            record["completion"], record["evidence"]   # noqa: B018  (both must be there)
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(f"{path}:{number}: not a rationale record ({type(err).__name__}: {err}); expected "
                              f"the JSON lines of spoofrl data rationales") from None
        records[key] = record
    return records


def rationale_reference(rationales: str) -> Path | None:
    """The reference profile `spoofrl data rationales` wrote beside a rationales file (None without one)."""
    if not rationales:
        return None
    from spoofrl.explain.annotate import reference_path
    path = reference_path(Path(rationales))
    return path if path.is_file() else None


def _normal(text: str) -> str:
    return " ".join(str(text).split())


def generation_score(metric: str, predictions: list[str], items: Items) -> float:
    """The dev score in [0, 1] (higher is better) of greedy completions against the items' targets."""
    if not predictions:
        return 0.0
    if metric == "exact_match":
        return float(np.mean([_normal(p) == _normal(t) for p, t in zip(predictions, items.targets)]))
    if metric == "answer":
        from spoofrl.rewards.answer import extract_answer
        labels = items.columns["label"]
        return float(np.mean([_normal(extract_answer(p) or "").casefold() == str(lab).casefold()
                              for p, lab in zip(predictions, labels)]))
    import sacrebleu
    scorer = sacrebleu.corpus_bleu if metric == "bleu" else sacrebleu.corpus_chrf
    return float(scorer(predictions, [items.targets]).score) / 100.0
