"""The training config: model, data, objective, optimiser, schedule. Every option documented.

`spoofrl config train` lists them; docs/training.md explains each with its source paper. A config is saved
fully resolved (every default filled in, the model preset expanded) as `config.yaml` in the run folder and
beside every checkpoint, and loads back to the same config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from spoofrl.config import (apply_overrides, differences, error_location, flatten, from_dict, invalid,
                            load_yaml_lines, option, parse_override, resolve_preset, to_dict)
from spoofrl.errors import ConfigError
from spoofrl.data.augment import AugmentConfig, CodecConfig, NoiseConfig, RawBoostConfig
from spoofrl.rewards import RewardSpec
from spoofrl.rl.advantages import SCALE_CHOICES
from spoofrl.training.registry import OBJECTIVES, TASKS

# Ranges of the options (`spoofrl config train` shows each as "allowed: ..."); every float must be finite.
MAX_CROP_SECONDS = 600      # a training crop (or max_seconds window) of up to 10 minutes of audio
MAX_BATCH = 65536           # utterances per batch and process
MAX_STEPS = 10**9           # optimizer-step counts and intervals

# ------------------------------------------------------------------------------------------ data


@dataclass
class DataConfig:
    manifest: str = option("", "manifest CSV (path,label,attack,source,condition,subset) of the training data")
    train_subsets: list[str] = option(factory=lambda: ["train"], doc="`subset` values used for training "
                                                                       "(empty = every row)")
    dev_subsets: list[str] = option(factory=lambda: ["dev"], doc="`subset` values of the dev set that chooses the "
                                                                   "best checkpoint by EER (empty = no validation: "
                                                                   "the last model is kept)")
    dev_manifest: str = option("", "manifest of the dev set; empty = data.manifest")
    crop_seconds: float = option(4.0, "training crop length (s): longer utterances are cut, shorter ones padded; "
                                      "0 = whole utterances (use batching: dynamic)", ge=0, le=MAX_CROP_SECONDS)
    crop: Literal["random", "start"] = option("random", "where the training crop starts: a random offset (new "
                                                        "each epoch) or the start of the file")
    pad: Literal["repeat", "zero"] = option("repeat", "padding of short utterances: repeat the signal, or zeros "
                                                      "that the model masks out (true lengths are passed)")
    batching: Literal["fixed", "dynamic"] = option("fixed", "fixed: batch_size utterances per batch; dynamic: "
                                                            "batches of similar duration filled up to "
                                                            "batch_seconds of (padded) audio")
    batch_size: int = option(16, "utterances per batch and process (batching: fixed)", ge=1, le=MAX_BATCH)
    batch_seconds: float = option(64.0, "seconds of padded audio per batch and process (batching: dynamic)",
                                        gt=0, le=3600)
    max_seconds: float = option(0.0, "with crop_seconds 0: utterances longer than this are cut to a random "
                                     "window of this length (0 = no limit)", ge=0, le=MAX_CROP_SECONDS)
    balance: Literal["none", "sampler", "loss"] = option(
        "none", "class balance: none; sampler = draw each class equally often (with replacement); loss = weight "
                "each utterance's loss by the inverse frequency of its class")
    workers: int = option(0, "data-loading worker processes (0 = load in the training process; 1-2 on a small "
                             "CPU machine, more with augmentation or codecs)", ge=0, le=256)
    dev_batch_size: int = option(16, "utterances per batch when scoring the dev set", ge=1, le=MAX_BATCH)
    dev_max_seconds: float = option(0.0, "score at most this many seconds of each dev file (0 = whole file)",
                                         ge=0, le=86400)
    check_audio: bool = option(True, "check at start that every audio file of the manifest exists")
    feature_cache: str = option("auto", "on-disk cache of a frozen front-end's output (spoofrl.features.cache), "
                                        "used for inputs that repeat (not augmented, crop at the file start): "
                                        "'auto' = RUN_DIR/feature_cache when the model recommends it (a frozen "
                                        "SSL encoder); 'off'; or a folder (shareable between runs)")
    augment: AugmentConfig = option(factory=AugmentConfig, doc="training-time augmentation (dev data never)")

    def validate(self):
        # single-option ranges are declared on the fields (option(..., ge=, le=)); here the combinations
        if self.crop_seconds == 0 and self.batching == "fixed" and self.batch_size > 1:
            raise ConfigError("crop_seconds 0 (whole utterances) with fixed batches pads every batch to its longest "
                              "file; use batching: dynamic (or batch_size 1)")


# ------------------------------------------------------------------------------------------ objective

SFT_THEN_GRPO = "sft_then_grpo"   # objective.name shorthand for two stages: sft, then grpo (see resolved_stages)


@dataclass
class ObjectiveConfig:
    name: str = option(
        "sft", "the objective (a name in spoofrl.training.registry.OBJECTIVES): sft = cross-entropy; grpo = group "
               "relative policy optimisation with the detector's softmax as the policy (arXiv 2603.02914); "
               "sft_then_grpo = shorthand for two stages, sft_steps of SFT then GRPO for the rest of the "
               "schedule (see `stages`); ignored when `stages` is given")
    # --- SFT
    label_smoothing: float = option(0.0, "SFT: label smoothing of the cross-entropy (0 = none)", ge=0, lt=1)
    class_weights: list[float] = option(factory=list, doc="SFT: cross-entropy weights of (spoof, bonafide); empty "
                                                          "= equal (data.balance: loss sets them from the class "
                                                          "frequencies)", gt=0, le=1e6)
    # --- GRPO
    num_generations: int = option(64, "GRPO: labels sampled per utterance, G (64 in arXiv 2603.02914)", ge=1, le=4096)
    estimator: Literal["sampled", "exact"] = option(
        "sampled", "GRPO: sampled = draw G labels per utterance; exact = weight both labels by their probability "
                   "(same expected loss and gradient, no sampling noise; spoofrl's addition)")
    reward_correct: float = option(1.0, "GRPO: reward of a sampled label equal to the truth (1 in the study)",
                                        ge=-1e6, le=1e6)
    reward_wrong: float = option(0.0, "GRPO: reward of a wrong label (0 in the study)", ge=-1e6, le=1e6)
    rewards: list[RewardSpec] = option(factory=list, doc="GRPO: reward functions from spoofrl.rewards.REWARDS with "
                                                          "weights and options, e.g. [{name: answer}, {name: format, "
                                                          "weight: 0.1}] (TRL's reward_funcs + reward_weights; "
                                                          "docs/rewards.md); empty = [{name: answer, options: "
                                                          "{correct: reward_correct, wrong: reward_wrong}}]")
    scale_rewards: Literal["group", "batch", "none"] = option(
        "batch", "GRPO advantage normalisation: group = mean/std over each utterance's G samples (the paper's "
                 "formula, DeepSeekMath arXiv 2402.03300; TRL's group); batch = mean and std over the whole batch "
                 "(the study's code; each process's batch under torchrun; differs from TRL's batch, which keeps "
                 "the group mean and only takes the std over the batch); none = centre per utterance without std "
                 "scaling (Dr. GRPO, arXiv 2503.20783; TRL's none)")
    negative: bool = option(True, "GRPO: false = the study's 'w/o negative reward' ablation: advantages are the raw "
                                  "rewards (no centring or scaling), i.e. reward x log-probability, which is SFT "
                                  "weighted by p(y|x); needs epsilon null and scale_rewards none, as in the study "
                                  "(recipe grpo-noneg); the logged loss is -mean(r log p) + beta KL as in its code")
    std_eps: float = option(1e-5, "GRPO: added to the reward std before dividing (1e-5 in the study)", ge=0, le=1)
    epsilon: float | None = option(0.2, "GRPO: clipping range of the ratio to the old policy (PPO, arXiv "
                                        "1707.06347; 0.2 in the study); null = no clipping and no old policy, "
                                        "the unclipped 'GRPO_s' variant of the study", gt=0, lt=1)
    epsilon_high: float | None = option(None, "GRPO: upper clipping range (DAPO's clip-higher, arXiv 2503.14476); "
                                              "null = epsilon", gt=0, le=10)
    old_policy_refresh_steps: int = option(1000, "GRPO: optimizer steps between refreshes of the old policy "
                                                 "(1000 in the study); 1 = the old policy is the current one "
                                                 "(no copy kept, the ratio is 1)", ge=1, le=MAX_STEPS)
    beta: float = option(0.04, "GRPO: weight of the KL penalty to the frozen reference model (0.04 in the study; "
                               "0 = no reference model needed)", ge=0, le=1000)
    kl_estimator: Literal["k1", "k3"] = option("k3", "GRPO: KL estimator on the sampled labels: k1 = log(pi/ref); "
                                                     "k3 = ref/pi - log(ref/pi) - 1 (the study, GRPO)")
    mixed_policy: bool = option(False, "GRPO: add the true label to each group as an off-policy sample with "
                                       "behaviour probability 1 and no clipping (MP-GRPO, arXiv 2509.16990); the "
                                       "group keeps G members: G-1 drawn labels and the truth")
    loss_type: Literal["grpo", "bnpo", "dapo", "dr_grpo"] = option(
        "grpo", "GRPO loss normalisation (TRL names); identical for one-label actions, differs for token "
                "sequences: grpo = per-sequence token mean; bnpo / dapo = token sum / token count (local / "
                "global); dr_grpo = constant normaliser")
    temperature: float = option(1.0, "GRPO: softmax temperature of the policy when sampling and scoring labels",
                                     ge=0.01, le=100)
    reference: str = option("", "GRPO: model folder used as the frozen KL reference (same architecture); empty = "
                                "the initial model (--init, or the stage switch of sft_then_grpo)")
    # --- GRPO of a generative policy (task: generation); TRL's GRPOConfig names and meanings
    top_p: float = option(1.0, "generation GRPO: nucleus sampling of the rollouts (TRL's top_p; 1.0 = off)", gt=0,
                               le=1)
    top_k: int | None = option(None, "generation GRPO: sample only among the k most probable tokens (TRL's top_k; "
                                     "null or 0 = off)", ge=0, le=10**6)
    min_p: float | None = option(None, "generation GRPO: drop tokens less probable than min_p x the most probable "
                                       "(TRL's min_p; null = off)", ge=0, le=1)
    max_completion_length: int = option(64, "task generation: most tokens of a completion, EOS included, in GRPO "
                                            "rollouts and in the greedy decoding of validation (TRL's "
                                            "max_completion_length; TRL's default is 256); also dr_grpo's "
                                            "constant normaliser", ge=1, le=65536)
    num_iterations: int = option(1, "generation GRPO: optimizer updates per rollout (TRL's num_iterations, mu of "
                                    "the GRPO paper); > 1 records the rollout's log-probs as the old policy so "
                                    "clipping acts. spoofrl differs: all mu updates happen in one training step, so "
                                    "schedule.steps counts rollouts (TRL's steps count updates)", ge=1, le=1000)
    mask_truncated_completions: bool = option(False, "generation GRPO: completions that reach "
                                                     "max_completion_length without EOS get no loss (they keep "
                                                     "their reward in the group statistics); TRL's option")
    micro_batch_size: int = option(0, "generation GRPO: items (each with its G completions) per forward with "
                                      "gradient; the rollout's loss and gradient are accumulated exactly over them. "
                                      "0 = the whole batch in one forward (TRL's per_device_train_batch_size x "
                                      "gradient_accumulation_steps splits completions, not items)", ge=0,
                                      le=MAX_BATCH)
    # --- SFT then GRPO
    sft_steps: int = option(0, "sft_then_grpo: optimizer steps of the SFT stage; the rest of schedule.steps is GRPO",
                               ge=0, le=MAX_STEPS)
    grpo_start: Literal["last", "best"] = option(
        "best", "sft_then_grpo: GRPO starts from the SFT stage's last weights, or its best on dev (saved in "
                "stage1/)")
    grpo_reference: Literal["switch", "init"] = option(
        "switch", "sft_then_grpo: the GRPO reference is the model GRPO starts from (switch) or the run's initial "
                  "model (init)")
    reset_optimizer: bool = option(True, "sft_then_grpo: fresh optimiser state (Adam moments) for the GRPO stage; "
                                         "the learning-rate schedule (warmup included) restarts in any case")
    grpo_lr: float | None = option(None, "sft_then_grpo: learning rate of the GRPO stage; null = optim.lr", gt=0, le=10)

    def validate(self):
        # single-option ranges are declared on the fields (option(..., ge=, le=)); here the combinations
        if self.rewards and (self.reward_correct, self.reward_wrong) != (1.0, 0.0):
            raise invalid("rewards", "with `rewards` given, set the label rewards as options of its answer reward "
                                     "({name: answer, options: {correct: ..., wrong: ...}}), not reward_correct / "
                                     "reward_wrong")
        if self.name != SFT_THEN_GRPO and self.name not in OBJECTIVES:
            raise invalid("name", f"unknown objective {self.name!r}; known: {', '.join(OBJECTIVES.names())}, "
                                  f"{SFT_THEN_GRPO}")
        if self.mixed_policy and self.estimator == "sampled" and self.num_generations < 2:
            raise invalid("num_generations", "mixed_policy needs num_generations >= 2 (G-1 drawn labels plus "
                                             "the truth)")
        if self.class_weights and len(self.class_weights) != 2:
            raise invalid("class_weights", "give two positive numbers (spoof, bonafide) or leave it empty")
        if self.epsilon_high is not None and self.epsilon is None:
            raise invalid("epsilon_high", "needs epsilon set (epsilon null means no clipping)")
        if not self.negative and (self.epsilon is not None or self.scale_rewards != "none"):
            # the study's 'w/o negative reward' ablation never clips nor scales: a lone negative=false on a
            # clipped recipe would silently train another variant (different gradient)
            raise invalid("negative", f"false is the study's 'w/o negative reward' ablation (raw rewards x log p), "
                                      f"which has no clipping and no reward scaling: also set objective.epsilon=null "
                                      f"and objective.scale_rewards=none (got epsilon {self.epsilon}, scale_rewards "
                                      f"{self.scale_rewards}), or use the grpo-noneg recipe")
        if self.scale_rewards not in SCALE_CHOICES:
            raise ConfigError(f"scale_rewards must be one of {SCALE_CHOICES}")
        if self.reward_correct <= self.reward_wrong:
            raise invalid("reward_correct", "must be larger than reward_wrong")
        if self.name == SFT_THEN_GRPO and self.sft_steps < 1:
            raise invalid("sft_steps", f"must be at least 1 with sft_then_grpo (optimizer steps of the SFT stage), "
                                       f"got {self.sft_steps}")


# ------------------------------------------------------------------------------------------ optimisation


@dataclass
class OptimConfig:
    name: Literal["adamw", "adam", "sgd"] = option("adamw", "optimiser (the study: AdamW)")
    lr: float = option(1e-4, "peak learning rate (the study: 1e-6 on billion-parameter SSL models; small CPU "
                             "models need about 1e-3)", gt=0, le=10)
    weight_decay: float = option(0.01, "weight decay (decoupled for adamw; the study: 0.01)", ge=0, le=10)
    betas: list[float] = option(factory=lambda: [0.9, 0.999], doc="Adam betas", ge=0, lt=1)
    eps: float = option(1e-8, "Adam epsilon (the study: 1e-6)", gt=0, le=1)
    momentum: float = option(0.9, "SGD momentum", ge=0, lt=1)
    max_grad_norm: float = option(100.0, "clip the gradient norm to this (the study: 100); 0 = no clipping",
                                         ge=0, le=1e9)
    frontend_lr_scale: float = option(1.0, "learning-rate multiplier of the front-end's trainable parameters "
                                           "(fine-tune SSL encoders more gently than the head; 0 freezes them)",
                                           ge=0, le=100)

    def validate(self):
        # single-option ranges (lr, eps, each beta, ...) are declared on the fields
        if len(self.betas) != 2:
            raise invalid("betas", f"must be two numbers in [0, 1), got {self.betas}")


@dataclass
class ScheduleConfig:
    steps: int = option(0, "optimizer steps in total; 0 = epochs x batches per epoch", ge=0, le=MAX_STEPS)
    epochs: int = option(1, "passes over the training data when steps is 0", ge=1, le=100_000)
    warmup_steps: int = option(0, "linear learning-rate warmup from 0", ge=0, le=MAX_STEPS)
    lr_schedule: Literal["constant", "linear", "cosine"] = option("constant", "learning rate after warmup: "
                                                                              "constant, or decaying to "
                                                                              "min_lr_ratio x lr")
    min_lr_ratio: float = option(0.0, "final learning rate / lr for linear and cosine decay", ge=0, le=1)
    eval_every: int = option(0, "validate on the dev set every N steps; 0 = once per epoch (and at the end)",
                                ge=0, le=MAX_STEPS)
    eval_at_start: bool = option(False, "also validate the initial model (step 0); it can then be kept as best")
    log_every: int = option(10, "write a metrics row (averages since the last row) every N steps", ge=1, le=MAX_STEPS)
    save_every: int = option(0, "write the resumable last/ checkpoint every N steps; 0 = at every validation",
                                ge=0, le=MAX_STEPS)
    early_stop: int = option(0, "stop after N validations without a better dev EER; 0 = never (staged runs: "
                                "in the last stage; earlier stages always run their steps)", ge=0, le=1_000_000)


# ------------------------------------------------------------------------------------------ generation


GENERATION_METRICS = ("exact_match", "answer", "bleu", "chrf")


@dataclass
class GenerationConfig:
    """What an audio LLM is asked and taught (task: generation). Templates take `{column}` fields from each
    manifest row: path, label, attack, source, condition, subset and the manifest's extra columns (e.g.
    transcript); `{{` and `}}` are literal braces."""

    prompt: str = option("<audio>\nIs this recording bona fide human speech or spoof? Answer with "
                         "<answer>bonafide</answer> or <answer>spoof</answer>.",
                         "the user turn; `<audio>` marks where the audio goes (first when absent)")
    system: str = option("", "system prompt of every item (empty: no system turn)")
    completion: str = option("<answer>{label}</answer>", "the target completion of each row: the SFT target, "
                                                          "the ground truth of mixed-policy GRPO, and the column "
                                                          "`reference` that the bleu / chrf rewards compare with")
    rationales: str = option("", "JSON lines of `spoofrl data rationales` (docs/explain.md): each training row's "
                                 "target is its record's `completion` (an evidence-grounded FT rationale and the "
                                 "answer) instead of `completion`, and its `evidence` (the items measured on the "
                                 "whole clip) is the column `evidence` that ft_grounded checks claims against. "
                                 "Needs whole clips (data.crop_seconds 0, data.max_seconds 0): the rationale's "
                                 "times are the clip's. Dev rows without a record use `completion`")
    metric: Literal["exact_match", "answer", "bleu", "chrf"] = option(
        "exact_match", "validation (model selection, lower is better): greedy completions of the dev items scored "
                       "as 1 - the share equal to the target completion (exact_match, whitespace-normalised), "
                       "1 - the share whose <answer> equals the `label` column (answer), or 1 - corpus BLEU / "
                       "chrF / 100 against the targets (bleu, chrf; sacrebleu)")
    dev_max_items: int = option(0, "validate on at most this many dev items (the first ones; 0 = all)", ge=0,
                                le=10**9)
    tokenizer_texts: list[str] = option(factory=list, doc="extra texts the model's tokenizer is trained on "
                                                           "besides the rendered prompts and completions (e.g. "
                                                           "answers only rewards know)")


def objective_rewards(cfg: ObjectiveConfig) -> list[RewardSpec]:
    """The rewards of a GRPO objective: `rewards`, or the study's label reward from reward_correct / wrong."""
    if cfg.rewards:
        return list(cfg.rewards)
    return [RewardSpec(name="answer", options={"correct": cfg.reward_correct, "wrong": cfg.reward_wrong})]


# ------------------------------------------------------------------------------------------ stages


@dataclass
class StageConfig:
    """One stage of a staged run (`stages: [{objective: sft, steps: 200}, {objective: grpo}]`): its objective
    and how it starts from the stage before it. spoofrl's addition (TRL trains one objective per trainer)."""

    objective: str = option("sft", "the stage's objective, a name in spoofrl.training.registry.OBJECTIVES (sft, "
                                   "grpo, ...)")
    steps: int = option(0, "optimizer steps of the stage; every stage but the last needs >= 1, the last takes the "
                           "rest of the schedule (schedule.steps or epochs) and must leave this 0", ge=0, le=MAX_STEPS)
    options: dict[str, Any] = option(factory=dict, doc="objective options of this stage over the `objective` "
                                                        "section, e.g. {beta: 0.0, num_generations: 8}")
    lr: float | None = option(None, "learning rate of the stage; null = optim.lr", gt=0, le=10)
    start: Literal["last", "best"] = option(
        "best", "stages after the first: start from the previous stage's last weights, or its best on dev (each "
                "stage but the last keeps its model in stageK/)")
    reference: Literal["switch", "init"] = option(
        "switch", "KL reference of the stage (objectives that use one, e.g. grpo with beta > 0): the model the "
                  "stage starts from (switch) or the run's initial model (init); objective.reference, when set, "
                  "is used instead")
    reset_optimizer: bool = option(True, "stages after the first: fresh optimiser state (Adam moments); the "
                                         "learning-rate schedule (warmup included) restarts in any case")

    def validate(self):
        if self.objective not in OBJECTIVES:
            raise invalid("objective", f"unknown objective {self.objective!r}; known: {', '.join(OBJECTIVES.names())}")
        if "name" in self.options:
            raise invalid("options", "give the stage's objective as `objective`, not options.name")


def resolved_stages(cfg: "TrainConfig") -> list[StageConfig]:
    """The run's stages: `stages` when given, else the shorthand objective.name=sft_then_grpo (SFT for
    objective.sft_steps, then GRPO with grpo_start / grpo_reference / reset_optimizer / grpo_lr), else one stage
    of objective.name."""
    if cfg.stages:
        return list(cfg.stages)
    o = cfg.objective
    if o.name == SFT_THEN_GRPO:
        return [StageConfig("sft", steps=o.sft_steps),
                StageConfig("grpo", lr=o.grpo_lr, start=o.grpo_start, reference=o.grpo_reference,
                            reset_optimizer=o.reset_optimizer)]
    return [StageConfig(o.name)]


def stage_objective(cfg: "TrainConfig", stage: StageConfig, key: str = "") -> "ObjectiveConfig":
    """The objective options of `stage`: the `objective` section with the stage's options over it, validated
    (errors name `key`.options.OPTION)."""
    if not stage.options:
        return cfg.objective
    merged = {**to_dict(cfg.objective), **stage.options, "name": stage.objective}
    return from_dict(ObjectiveConfig, merged, prefix=f"{key}.options" if key else "objective")


def describe_stages(cfg: "TrainConfig") -> str:
    """'grpo', or 'sft -> grpo' for a staged run."""
    return " -> ".join(s.objective for s in resolved_stages(cfg))


# ------------------------------------------------------------------------------------------ top level


@dataclass
class TrainConfig:
    task: str = option("detection", "what is trained, a name in spoofrl.training.registry.TASKS: detection = a "
                                    "two-class detector on manifest audio, model selection by dev EER; generation "
                                    "= an audio LLM writing text (spoofrl.alm), model selection by "
                                    "generation.metric")
    model: dict[str, Any] = option(factory=lambda: {"preset": "logmel-linear"},
                                   doc="detection: the detector, `preset: NAME` (configs/models/) with optional "
                                       "overrides, or a full model config (frontend, backend, sample_rate). "
                                       "generation: {alm: AlmConfig options, tokenizer: {vocab_size, "
                                       "extra_tokens}} (docs/alm.md); default {alm: {}}. With --init the starting "
                                       "model's architecture is used")
    data: DataConfig = option(factory=DataConfig, doc="training and dev data")
    objective: ObjectiveConfig = option(factory=ObjectiveConfig, doc="training objective and its options")
    stages: list[StageConfig] = option(factory=list, doc="a staged run: objectives one after the other, e.g. "
                                                          "[{objective: sft, steps: 200}, {objective: grpo}] (each "
                                                          "stage's options over the `objective` section); empty = "
                                                          "one stage of objective.name (sft_then_grpo: two)")
    generation: GenerationConfig = option(factory=GenerationConfig, doc="task generation: prompts, target "
                                                                         "completions and validation metric "
                                                                         "(ignored by task detection)")
    optim: OptimConfig = option(factory=OptimConfig, doc="optimiser")
    schedule: ScheduleConfig = option(factory=ScheduleConfig, doc="steps, validation, logging, checkpoints")
    seed: int = option(0, "random seed (data order, crops, augmentation, sampled labels, initialisation)",
                          ge=0, lt=2**32)
    device: str = option("auto", "'auto' (CUDA when present, else CPU), 'cpu', 'cuda'; under torchrun each "
                                 "process uses cuda:LOCAL_RANK")
    precision: Literal["fp32", "bf16", "fp16"] = option("fp32", "mixed precision on CUDA (autocast; fp16 adds a "
                                                                "gradient scaler); CPU always runs fp32")
    threads: int = option(0, "CPU threads of torch in each process; 0 = torch's default", ge=0, le=1024)
    parallel: Literal["ddp", "fsdp"] = option(
        "ddp", "how the processes of a torchrun job share the model (one process: ignored). ddp = each holds the "
               "whole model and its optimizer state, gradients all-reduced (DistributedDataParallel); fsdp = each "
               "holds 1/N of every parameter, gradient and optimizer moment (torch's FSDP2 fully_shard, decoder "
               "layers sharded one by one), for a model whose training state does not fit one device. Under fsdp "
               "generation and validation gather the full weights (one copy, without gradients or optimizer "
               "state), the frozen front-end's feature cache and the reference-logits cache are off, precision "
               "bf16 is FSDP's mixed precision (bf16 compute, fp32 gradient reduction; fp16 is refused), and "
               "micro-batched objectives need data.batching fixed (each process must run the same number of "
               "forwards). Checkpoints hold full tensors under both, so a run may resume with the other setting")

    def validate(self):
        if self.task not in TASKS:
            raise invalid("task", f"unknown task {self.task!r}; known: {', '.join(TASKS.names())}")
        if self.parallel == "fsdp" and self.precision == "fp16":
            raise invalid("precision", "parallel fsdp runs fp32 or bf16 (FSDP2 has no fp16 gradient scaler); use "
                                       "bf16")
        if self.data.balance == "loss" and self.objective.class_weights:
            raise invalid("objective.class_weights", "give either objective.class_weights or data.balance: loss, "
                                                     "not both")
        if self.objective.name == SFT_THEN_GRPO and self.schedule.steps and \
                self.schedule.steps <= self.objective.sft_steps:
            raise invalid("schedule.steps", f"must exceed objective.sft_steps ({self.objective.sft_steps}) to leave "
                                            f"steps for GRPO, got {self.schedule.steps}")
        if self.stages:
            self._validate_stages()

    def _validate_stages(self):
        if self.objective.name == SFT_THEN_GRPO:
            raise invalid("objective.name", "sft_then_grpo is the shorthand for two stages: give either it or "
                                            "`stages`, not both")
        *leading, last = self.stages
        for i, stage in enumerate(leading):
            if stage.steps < 1:
                raise invalid(f"stages[{i}].steps", "every stage but the last needs its number of steps (>= 1)")
        if last.steps:
            raise invalid(f"stages[{len(self.stages) - 1}].steps", "the last stage takes the rest of the schedule "
                                                                   "(schedule.steps or epochs): leave its steps 0")
        fixed = sum(s.steps for s in leading)
        if self.schedule.steps and self.schedule.steps <= fixed:
            raise invalid("schedule.steps", f"must exceed the steps of the stages before the last ({fixed}), got "
                                            f"{self.schedule.steps}")
        for i, stage in enumerate(self.stages):
            stage_objective(self, stage, f"stages[{i}]")


# ------------------------------------------------------------------------------------------ loading


def resolve_model_section(section: Any) -> dict:
    """`{preset: NAME, ...overrides}` or a full model config -> a full, validated, resolved model config dict
    (the preset and its overrides merged by `models.detector.model_config_from_dict`, as `load_model` does)."""
    from spoofrl.models.detector import is_complete_section, model_config_from_dict
    if not isinstance(section, dict):
        raise ConfigError(f"model: expected a mapping (preset: NAME, or frontend/backend), got {section!r}")
    if not is_complete_section(section):
        preset = section.get("preset")
        if not preset:
            raise ConfigError("model: give `preset: NAME` (a file in configs/models/) or a full frontend/backend "
                              "config")
        path = resolve_preset("models", str(preset))
        name = Path(path).stem if Path(str(preset)).suffix not in (".yaml", ".yml") else str(path)
        section = {**section, "preset": name}
    return to_dict(model_config_from_dict(section).resolved())


def task_class(name: Any):
    """The task class registered as `name` (its model section resolver and default); an unknown name is the
    `task` option's error."""
    if not isinstance(name, str) or name not in TASKS:
        raise invalid("task", f"unknown task {name!r}; known: {', '.join(TASKS.names())}")
    return TASKS.get(name)


# Options that may differ between a run and its resumption (or an experiment stage and its rerun) without
# changing what is learned. The one list: the trainer's resume check and the experiment's stage check use it.
NON_SEMANTIC_KEYS = ("device", "threads", "parallel", "data.workers", "data.check_audio", "schedule.log_every")


# Options the model build fills in, with the value a config gives to ask for that: a run folder's config.yaml holds
# the value filled in (e.g. the tokenizer's size), the config it is resumed with still the request.
FILLED_IN_WHEN_BUILT = {"model.alm.vocab_size": 0}


def config_differences(old: dict, new: dict) -> list[str]:
    """What changed between two resolved train configs, as 'key: old -> new' with dotted keys (model sections and
    lists of sections such as stages opened down to the option; NON_SEMANTIC_KEYS ignored). An option missing from
    `old` (a run folder of an earlier version, before the option existed) counts as its default, which is what
    that version did; an option of FILLED_IN_WHEN_BUILT that `new` leaves to the build counts as `old`'s value."""
    defaults = flatten(to_dict(TrainConfig()), keep_whole=("model",))
    old_flat, new_flat = flatten(old), flatten(new)
    for key in new_flat.keys() - old_flat.keys():
        if key in defaults:
            old_flat[key] = defaults[key]
    _open_lists_of_sections(old_flat, new_flat)
    for key, request in FILLED_IN_WHEN_BUILT.items():
        if new_flat.get(key) == request and key in old_flat:
            new_flat[key] = old_flat[key]
    return differences(old_flat, new_flat, ignore=NON_SEMANTIC_KEYS)


def _open_lists_of_sections(old_flat: dict, new_flat: dict) -> None:
    """Replace each differing list of sections of the same length on both sides by its items' options
    ('stages[1].lr'), so that a difference names the option; lists of other lengths stay whole."""
    opened = True
    while opened:
        opened = False
        for key in sorted(old_flat.keys() & new_flat.keys()):
            a, b = old_flat[key], new_flat[key]
            if _same_length_lists_of_sections(a, b) and a != b:
                del old_flat[key], new_flat[key]
                for i, (item_a, item_b) in enumerate(zip(a, b)):
                    old_flat.update(_flat_item(f"{key}[{i}]", item_a))
                    new_flat.update(_flat_item(f"{key}[{i}]", item_b))
                opened = True


def _same_length_lists_of_sections(a, b) -> bool:
    return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
            and any(isinstance(item, dict) for item in a + b))


def _flat_item(key: str, item) -> dict:
    return flatten(item, prefix=f"{key}.") if isinstance(item, dict) else {key: item}


def load_train_config(path_or_dict: str | Path | dict, overrides: list[str] | None = None) -> TrainConfig:
    """A YAML path (or a recipe name in configs/train/) or a dict -> validated TrainConfig.

    `overrides` are `key.path=value` strings (as `--set`). The model section is expanded to a full model
    config, so the saved config.yaml describes the model without the preset files.
    """
    lines: dict[str, int] | None = None
    if isinstance(path_or_dict, dict):
        data, where = path_or_dict, "train config"
    else:
        path = resolve_preset("train", str(path_or_dict))
        (data, lines), where = load_yaml_lines(path), str(path)
    data = apply_overrides(data, overrides)
    overridden = tuple(".".join(parse_override(text)[0]) for text in overrides or [])
    try:
        task = task_class(data.get("task", "detection"))
        if "model" in data:
            data["model"] = task.resolve_model_section(data["model"])
        cfg = from_dict(TrainConfig, data)
        if "model" not in data:
            cfg.model = task.resolve_model_section(task.default_model_section())
    except ConfigError as err:
        # FILE:LINE: key: reason, the line being the one of the key (or its section) in the file
        label = "--set" if lines is not None else "an override"  # a dict comes from code (e.g. an experiment)
        raise ConfigError(error_location(err, where, lines, overridden, label)) from None
    return cfg


__all__ = ["TrainConfig", "DataConfig", "AugmentConfig", "RawBoostConfig", "NoiseConfig", "CodecConfig",
           "ObjectiveConfig", "GenerationConfig", "OptimConfig", "ScheduleConfig", "StageConfig", "load_train_config",
           "resolve_model_section", "resolved_stages", "stage_objective", "describe_stages", "objective_rewards",
           "SFT_THEN_GRPO"]
