"""The one training loop of spoofrl. Objectives (SFT, GRPO, ...) are plug-ins, run one after the other in stages.

Determinism: the batch order and every crop / augmentation are functions of (seed, epoch, index), and each
step re-seeds torch (dropout) and the label sampler from (seed, step, rank). Together with the checkpointed
model, optimiser, scheduler, snapshots and caches, a resumed run reproduces the uninterrupted one.
"""
from __future__ import annotations

import logging
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch

from spoofrl.config import to_dict
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.training import distributed, fsdp
from spoofrl.runfiles import CONFIG, LAST, SUMMARY, TRAIN_LOG, WEIGHTS, stage_folder
from spoofrl.training.config import (NON_SEMANTIC_KEYS, ObjectiveConfig, StageConfig, TrainConfig, config_differences,
                                     describe_stages, resolved_stages, stage_objective)
from spoofrl.training.forward import ParamSnapshot
from spoofrl.training.objectives import Objective
from spoofrl.training.runfolder import (MetricsWriter, load_checkpoint, recover_interrupted_save, save_checkpoint,
                                        set_rng_state, write_summary)
from spoofrl.training.registry import TASKS

LOG = logging.getLogger(__name__)

CSV_STATS = ("loss", "reward_mean", "kl", "clip_frac", "entropy")


def step_seed(seed: int, step: int, rank: int, salt: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank, salt]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _listed(differences: list[str], most: int) -> str:
    """The first `most` config differences, '; '-separated, and how many more there are."""
    more = len(differences) - most
    return "; ".join(differences[:most]) + (f"; and {more} more" if more > 0 else "")


def _one_line(err: BaseException, limit: int = 300) -> str:
    return " ".join(str(err).split())[:limit] or type(err).__name__


def lr_factor(local_step: int, total: int, warmup: int, kind: str, min_ratio: float) -> float:
    """Learning-rate multiplier at `local_step` of a stage of `total` steps."""
    if warmup and local_step < warmup:
        return (local_step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(max(local_step - warmup, 0) / max(total - warmup, 1), 1.0)
    if kind == "linear":
        return 1.0 - (1.0 - min_ratio) * progress
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Interrupt:
    """SIGINT / SIGTERM set a flag; the loop saves last/ and stops at the end of the current step. A second
    signal stops at once."""

    def __init__(self):
        self.flag = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        LOG.warning("interrupted: saving the checkpoint after this step (interrupt again to stop at once)")

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class _Update:
    """What an objective calls to change the model in one training step: `backward(loss)` (as often as it has
    micro-batches; the fp16 gradient scaler applied) and `step()` (unscale, clip to optim.max_grad_norm,
    optimizer step, zero the gradients; as often as it makes updates). The trainer calls them itself for an
    objective that only returns its loss."""

    def __init__(self, trainer: "Trainer", step: int):
        self.trainer, self.step_index = trainer, step
        self.grad_norms: list[float] = []

    def backward(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise SpoofrlError(f"the loss is {loss.item()} at step {self.step_index}; lower optim.lr or check "
                               f"the data")
        self.trainer.scaler.scale(loss).backward()

    def step(self) -> float:
        t = self.trainer
        t.scaler.unscale_(t.optimizer)
        max_norm = t.cfg.optim.max_grad_norm or float("inf")
        norm = fsdp.clip_grad_norm(t.trainable, max_norm)
        t.scaler.step(t.optimizer)
        t.scaler.update()
        t.optimizer.zero_grad(set_to_none=True)
        self.grad_norms.append(norm)
        return norm


@dataclass
class _Stage:
    config: StageConfig
    options: ObjectiveConfig  # the objective section with the stage's options over it
    objective: Objective
    start: int    # first global step
    end: int      # one past the last


class Trainer:
    def __init__(self, cfg: TrainConfig, out_dir: str | Path, *, init: str | Path | None = None,
                 resume: bool = False, stop_after: int | None = None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.init = Path(init).resolve() if init else None
        self.resume = resume
        self.stop_after = stop_after
        self.interrupt = _Interrupt()
        self._log_handler: logging.Handler | None = None
        self.metrics: MetricsWriter | None = None
        self.pending_eval: dict | None = None  # the metrics row of a validation under way (or failed)
        self.saved_step = 0                     # step of the last/ checkpoint on disk

    @property
    def model(self):
        """The trained model (the task builds and holds it)."""
        return self.task.model

    # ------------------------------------------------------------------------------------------ entry
    def run(self) -> Path:
        self.dist = distributed.setup(self.cfg.device)
        self.device = self.dist.device
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.interrupt.install()
        package_log = logging.getLogger("spoofrl")
        level = package_log.level
        if not self.dist.is_main:  # under torchrun, rank 0 reports progress; the others only warnings
            package_log.setLevel(logging.WARNING)
        try:
            return self._run()
        finally:
            package_log.setLevel(level)
            self.interrupt.restore()
            if self.metrics is not None:
                self.metrics.close()
            if self._log_handler is not None:
                logging.getLogger("spoofrl").removeHandler(self._log_handler)
                self._log_handler.close()
            distributed.teardown(self.dist)

    def _run(self) -> Path:
        t0 = time.time()
        if self.init is not None and not (self.init / WEIGHTS).is_file():  # before anything is written to --out
            raise SpoofrlError(f"{self.init}: --init needs a model folder (model.safetensors + config.yaml)")
        checkpoint = self._prepare_folder()
        if checkpoint == "finished":
            diff = self._finished_run_differences()
            if diff:
                LOG.warning("%s is already finished (summary.json); nothing to do, and the config given differs "
                            "from the one it was trained with (trained with -> given: %s): to train with it, use "
                            "another --out", self.out, _listed(diff, 6))
            else:
                LOG.info("%s is already finished (summary.json); nothing to do", self.out)
            return self.out
        self._build_model(checkpoint)
        self._build_data()
        self._build_stages()
        self._build_optimizer(self.stage_lr(0))
        self.reference = self._initial_reference() if self._needs_initial_reference() else None
        self._set_stage(0)
        self.seconds_before = 0.0
        self.log_sums: dict[str, float] = {}  # statistics since the last metrics row (checkpointed)
        self.log_count = 0
        if checkpoint is not None:
            self._restore(checkpoint)
        self._open_metrics(checkpoint)
        LOG.info("training %s for %d steps (%s) on %s%s; output %s", describe_stages(self.cfg), self.total_steps,
                 ", ".join(f"{st.config.objective}: {st.end - st.start}" for st in self.stages), self.device,
                 f" x {self.dist.world} processes ({self.cfg.parallel})" if self.dist.enabled else "", self.out)
        finished = self._loop(t0)
        if finished:
            self._finish(t0)
        return self.out

    # ------------------------------------------------------------------------------------------ folder
    def _prepare_folder(self):
        """Check the folder against resume / fresh start; returns a checkpoint, None, or 'finished'."""
        out = self.out
        if self.dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            recover_interrupted_save(out)
        distributed.barrier(self.dist)
        has_last, finished = (out / LAST).is_dir(), (out / SUMMARY).is_file()
        if not self.resume and (has_last or finished):
            raise ConfigError(f"{out}: holds a {'finished' if finished else 'started'} run; use --resume to "
                              f"continue it, or another --out")
        if self.dist.is_main:
            from spoofrl.log import add_file_handler
            self._log_handler = add_file_handler(str(out / TRAIN_LOG))
        if finished:
            return "finished"
        if self.resume and not has_last:
            LOG.info("%s: no checkpoint to resume from; starting from scratch", out)
            return None
        return load_checkpoint(out) if has_last else None

    def _finished_run_differences(self) -> list[str]:
        """For --resume of a finished run: how the config given differs from the run's (its config.yaml), [] when
        it does not or the run's config cannot be read. The model section is compared as a resume compares it:
        not at all for a run started with --init (whose architecture it used)."""
        import json

        from spoofrl.config import load_yaml
        try:
            old = load_yaml(self.out / CONFIG)
            summary = json.loads((self.out / SUMMARY).read_text())
        except (SpoofrlError, OSError, ValueError):
            return []
        new = to_dict(self.cfg)
        recorded_init = summary.get("init") if isinstance(summary, dict) else None
        if recorded_init or self.init is not None:
            new["model"] = old.get("model")
        return config_differences(old, new)

    def _open_metrics(self, checkpoint) -> None:
        if self.dist.is_main:
            self.metrics = MetricsWriter(self.out, None if checkpoint is None else self.step,
                                         metric_column=self.task.metric_column)

    # ------------------------------------------------------------------------------------------ model
    def _init_of_resumed_run(self, checkpoint) -> None:
        """--resume continues with the run's own --init: it may be left out (the checkpoint has the weights and the
        architecture; the folder need not exist any more), but not changed."""
        recorded = checkpoint["state"].get("init")
        if self.init is None:
            self.init = Path(recorded) if recorded else None
        elif recorded is None:
            raise ConfigError(f"{self.out}: the run was started without --init; resume it without --init")
        elif str(self.init) != recorded:
            raise ConfigError(f"{self.out}: the run was started with --init {recorded}; resume it with that --init "
                              f"or none")

    def _build_model(self, checkpoint) -> None:
        self.task = TASKS.get(self.cfg.task)(self.cfg, self.out, self.dist)
        if checkpoint is not None:
            self._init_of_resumed_run(checkpoint)
            if self.init is not None:
                self.cfg.model = checkpoint["state"]["config"]["model"]
        if checkpoint is None or self.init is None:
            self.cfg.model = self.task.model_section(self.init)
        self.task.build_model(self.init if checkpoint is None else None)
        self.saved_config = to_dict(self.cfg)
        if checkpoint is not None:
            old = checkpoint["state"].get("config", {})
            diff = config_differences(old, self.saved_config)
            if diff:
                raise ConfigError(f"{self.out}: the checkpoint was made with another config (checkpoint -> given: "
                                  f"{_listed(diff, 4)}); resume with the same config")
        if self.dist.is_main:
            from spoofrl.config import save_yaml
            save_yaml(self.saved_config, self.out / CONFIG)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not self.trainable:
            raise ConfigError("the model has no trainable parameters")
        self._setup_precision()

    def _setup_precision(self) -> None:
        precision = self.cfg.precision
        cuda = self.device.type == "cuda"
        if precision != "fp32" and not cuda:
            LOG.info("precision %s asked for, but mixed precision runs on CUDA only: using fp32", precision)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.autocast = (lambda: torch.autocast("cuda", dtype=dtype)) if cuda and dtype else nullcontext
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and precision == "fp16")

    # ------------------------------------------------------------------------------------------ data
    def _build_data(self) -> None:
        self.task.build_data()

    # ------------------------------------------------------------------------------------------ stages
    def _build_stages(self) -> None:
        s = self.cfg.schedule
        total = s.steps or sum(self.task.steps_in_epoch(e) for e in range(s.epochs))
        configs = resolved_stages(self.cfg)
        bounds, start = [], 0
        for i, stage in enumerate(configs):
            end = total if i == len(configs) - 1 else start + stage.steps
            if end >= total and i < len(configs) - 1:
                raise ConfigError(f"the stages before the last take {sum(c.steps for c in configs[:-1])} steps, "
                                  f"leaving none for the last stage in a schedule of {total}")
            bounds.append((start, end))
            start = end
        class_weights = self.task.loss_class_weights()
        self.stages = []
        for i, (config, (a, b)) in enumerate(zip(configs, bounds)):
            options = stage_objective(self.cfg, config, f"stages[{i}]")
            objective = self.task.objectives().get(config.objective)(options, class_weights)
            self.stages.append(_Stage(config, options, objective, a, b))
        self.total_steps = total
        self.step = 0
        self._check_sharded_forwards()

    def _check_sharded_forwards(self) -> None:
        """Under FSDP each forward is a collective, so every process must run as many: a micro-batched
        objective splits a batch by its number of items, which dynamic batching makes differ between processes."""
        if not (self.dist.enabled and self.cfg.parallel == "fsdp") or self.cfg.data.batching == "fixed":
            return
        for i, stage in enumerate(self.stages):
            if getattr(stage.options, "micro_batch_size", 0):
                raise ConfigError(f"stages[{i}] ({stage.config.objective}): objective.micro_batch_size with "
                                  f"parallel fsdp needs data.batching fixed (with dynamic batches the processes "
                                  f"would run different numbers of sharded forwards and wait for each other)")

    def stage_lr(self, index: int) -> float:
        lr = self.stages[index].config.lr
        return self.cfg.optim.lr if lr is None else lr

    def _build_optimizer(self, lr: float) -> None:
        o = self.cfg.optim
        groups = self.task.param_groups(lr)
        if o.name == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
        elif o.name == "adam":
            self.optimizer = torch.optim.Adam(groups, lr=lr, betas=tuple(o.betas), eps=o.eps,
                                              weight_decay=o.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(o.betas), eps=o.eps,
                                               weight_decay=o.weight_decay)

    def _build_scheduler(self, start: int, end: int) -> None:
        s = self.cfg.schedule
        total = end - start
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda k: lr_factor(k, total, s.warmup_steps, s.lr_schedule, s.min_lr_ratio))

    def _needs_initial_reference(self) -> bool:
        """A reference taken at the start: the first stage uses one, or a later stage whose reference is the
        initial model (or a given folder)."""
        return any(st.objective.needs_reference and (i == 0 or bool(self.cfg.objective.reference)
                                                     or st.config.reference == "init")
                   for i, st in enumerate(self.stages))

    def _set_stage(self, index: int) -> None:
        """Objective, model access, best tracking and learning-rate schedule of stage `index`."""
        stage = self.stages[index]
        self.stage = index
        self.objective = stage.objective
        if self.objective.needs_reference and self.reference is None:
            self.reference = ParamSnapshot.of(self.model)
        self.access = self.task.access(self.objective, self.reference, self.autocast)
        self.stage_start, self.stage_end = stage.start, stage.end
        self.best_eer, self.best_step, self.evals_since_best = None, None, 0
        self._build_scheduler(stage.start, stage.end)

    def _initial_reference(self) -> ParamSnapshot:
        folder = self.cfg.objective.reference
        return self.task.reference_from(folder) if folder else ParamSnapshot.of(self.model)

    def _next_stage(self) -> None:
        """Stage k -> k+1: keep stage k's model in stageK/, start from its best (or last) weights, set the
        reference, optionally a fresh optimiser state, enter the next stage."""
        done, index = self.stage, self.stage + 1
        nxt = self.stages[index].config
        folder = self.out / stage_folder(done)
        if distributed.broadcast_object(self.dist, not self.task.has_model(folder)):
            self._save_on_main(lambda: self.task.save_model(folder, self.saved_config))  # no dev set: its last
        distributed.barrier(self.dist)
        if nxt.start == "best":
            self.task.load_weights(folder)
        from spoofrl.models.io import save_weights
        start = folder / f"{self.stages[index].config.objective}_start.safetensors"
        self._save_on_main(lambda: save_weights(self.model, start))
        if not self.cfg.objective.reference and nxt.reference == "switch" and \
                self.stages[index].objective.needs_reference:
            self.reference = ParamSnapshot.of(self.model)
        if nxt.reset_optimizer:
            self._build_optimizer(self.stage_lr(index))
        else:  # keep the Adam moments, restart the schedule at the next stage's rate
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] = self.stage_lr(index) * group["lr_scale"]
        self._set_stage(index)
        LOG.info("step %d: %s stage done; %s starts from its %s weights", self.step,
                 self.stages[done].config.objective, nxt.objective, nxt.start)

    # ------------------------------------------------------------------------------------------ resume
    def _save_on_main(self, save) -> None:
        """save() on rank 0 with the model's full weights in place (under FSDP they are gathered first: a
        collective every process enters)."""
        with fsdp.full_weights(self.model):
            if self.dist.is_main:
                save()

    def _state(self) -> dict:
        return {"step": self.step, "stage": self.stage, "best_eer": self.best_eer, "best_step": self.best_step,
                "evals_since_best": self.evals_since_best, "init": str(self.init) if self.init else None,
                "log_sums": self.log_sums, "log_count": self.log_count, "pending_eval": self.pending_eval,
                "seconds": self.seconds_before + (time.time() - self._t0), "config": self.saved_config}

    def _restore(self, ckpt: dict) -> None:
        state = ckpt["state"]
        tensors = ckpt["tensors"]
        self.reference = ParamSnapshot.from_state(tensors["reference"], self.device, self.model) \
            if "reference" in tensors else None
        if state["stage"] != self.stage:
            self._set_stage(state["stage"])  # the switch's results (weights, reference) come from the checkpoint
        elif self.reference is not None and self.access.ref is not None:
            self.access.ref = self.reference
        last = self.out / LAST
        try:
            fsdp.load_full_state_dict(self.model, {k: v.to(self.device) for k, v in ckpt["model"].items()})
        except RuntimeError as err:  # missing keys, shape mismatches
            raise SpoofrlError(f"{last / WEIGHTS}: weights do not match the run's model ({_one_line(err)}); "
                               f"delete {last} to start over") from None
        optim = ckpt["optim"]
        try:
            fsdp.load_full_optimizer_state(self.model, self.optimizer, optim["optimizer"])
            self.scheduler.load_state_dict(optim["scheduler"])
            self.scaler.load_state_dict(optim["scaler"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise SpoofrlError(f"{last / 'optimizer.pt'}: does not fit the run's optimizer ({_one_line(err)}); "
                               f"delete {last} to start over") from None
        try:
            set_rng_state(*ckpt["rng"])
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as err:
            raise SpoofrlError(f"{last / 'rng.pt'} / rng.json: not a saved random state ({_one_line(err)}); "
                               f"delete {last} to start over") from None
        if "old_policy" in tensors:
            self.access.old = ParamSnapshot.from_state(tensors["old_policy"], self.device, self.model)
        if "ref_cache" in tensors and self.access.ref_cache is not None:
            self.access.ref_cache.load_state(tensors["ref_cache"])
        self.step = state["step"]
        self.best_eer, self.best_step = state["best_eer"], state["best_step"]
        self.evals_since_best = state["evals_since_best"]
        self.log_sums, self.log_count = state["log_sums"], state["log_count"]
        self.pending_eval = state.get("pending_eval")
        self.seconds_before = state.get("seconds", 0.0)
        self.saved_step = self.step
        LOG.info("resumed %s at step %d", self.out, self.step)

    def _save_last(self) -> None:
        # under FSDP gathering the snapshots, optimizer state and weights are collectives: every process
        # takes part, rank 0 writes
        if self.dist.is_main or fsdp.is_sharded(self.model):
            tensors = {"reference": self.reference.state() if self.reference is not None else {},
                       "old_policy": self.access.old.state() if self.access.old is not None else {},
                       "ref_cache": self.access.ref_cache.state() if self.access.ref_cache is not None else {}}
            optim = {"optimizer": fsdp.full_optimizer_state(self.model, self.optimizer),
                     "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}
            self._save_on_main(lambda: save_checkpoint(self.out, detector=self.model, config=self.saved_config,
                                                       optim_state=optim, state=self._state(), tensors=tensors))
        self.saved_step = self.step
        distributed.barrier(self.dist)

    def _save_after_error(self) -> None:
        """Keep the steps done before a user error (an unreadable audio file, a non-finite loss): last/ is written
        so that, the cause fixed, --resume goes on from there. Errors strike between optimizer steps, so the state
        is consistent. Not under torchrun: the other processes wait in a collective call and cannot join a save."""
        if self.dist.enabled or self.step <= self.saved_step:
            return
        self._save_last()
        LOG.warning("stopped by an error at step %d; last/ holds the steps done: fix the cause and continue with "
                    "--resume (same --out)", self.step)

    # ------------------------------------------------------------------------------------------ loop
    def _loop(self, t0: float) -> bool:
        """Train to the end of the schedule; False when stopped early by --stop-after (no summary)."""
        from spoofrl.log import progress
        self._t0 = t0
        bar = progress(range(self.step, self.total_steps), desc=f"train {self.cfg.objective.name}",
                       total=self.total_steps - self.step, unit="step", disable=None if self.dist.is_main else True)
        try:
            return self._steps(bar)
        except SpoofrlError:
            self._save_after_error()
            raise
        finally:
            if hasattr(bar, "close"):
                bar.close()

    def _steps(self, bar) -> bool:
        if self.step == self.stage_start and self.cfg.schedule.eval_at_start and self.task.has_dev:
            self._evaluate_and_log({})
        # a validation that failed before this --resume comes first, as it did in the uninterrupted run
        outcome = self._end_step(self.pending_eval, True) if self.pending_eval is not None else ""
        if outcome:
            return outcome != "stop_after"
        for step, epoch, pos, batch in self.task.batches(self.step, self.total_steps):
            if self.stage + 1 < len(self.stages) and step >= self.stages[self.stage + 1].start:
                self._next_stage()
                if self.cfg.schedule.eval_at_start and self.task.has_dev:
                    self._evaluate_and_log({})
            stats = self._train_step(step, batch)
            self.step = step + 1
            for k, v in stats.items():
                self.log_sums[k] = self.log_sums.get(k, 0.0) + v
            self.log_count += 1
            bar.update(1)
            end_of_epoch = pos == self.task.steps_in_epoch(epoch) - 1
            row = {"epoch": round(epoch + (pos + 1) / self.task.steps_in_epoch(epoch), 4)}
            do_eval = self._eval_due(end_of_epoch)
            if self.step % self.cfg.schedule.log_every == 0 or do_eval or self.step == self.total_steps:
                means = {k: v / self.log_count for k, v in self.log_sums.items()}
                row.update({k: means.get(k) for k in CSV_STATS})
                self._tb(means, "train")
                self.log_sums, self.log_count = {}, 0
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{means.get('loss', float('nan')):.4f}", refresh=False)
                if not do_eval:
                    self._write_row(row)
            outcome = self._end_step(row, do_eval)
            if outcome:
                return outcome != "stop_after"
        return True

    def _end_step(self, row: dict, do_eval: bool) -> str:
        """Validation and checkpoints after a step: '' to go on, 'early_stop' or 'stop_after' to stop."""
        stop = False
        if do_eval:
            self.pending_eval = row  # saved in last/ if validation fails (a bad dev file), redone on --resume
            stop = self._evaluate_and_log(row)
            self.pending_eval = None
        interrupted = distributed.any_flag(self.dist, self.interrupt.flag)
        save_every = self.cfg.schedule.save_every
        if (save_every and self.step % save_every == 0) or (not save_every and do_eval) or interrupted:
            self._save_last()
        if interrupted:
            LOG.warning("stopped at step %d; continue with --resume (same --out)", self.step)
            raise KeyboardInterrupt
        if self.stop_after is not None and self.step >= self.stop_after and self.step < self.total_steps:
            self._save_last()
            LOG.info("stopped after step %d as asked (--stop-after); continue with --resume", self.step)
            return "stop_after"
        if stop:
            LOG.info("early stop at step %d: %d validations without a better %s", self.step,
                     self.evals_since_best, self.task.metric)
            return "early_stop"
        return ""

    def _eval_due(self, end_of_epoch: bool) -> bool:
        if not self.task.has_dev:
            return False
        every = self.cfg.schedule.eval_every
        return ((every and self.step % every == 0) or (not every and end_of_epoch)
                or self.step == self.stage_end or self.step == self.total_steps)

    def _train_step(self, step: int, batch) -> dict[str, float]:
        torch.manual_seed(step_seed(self.cfg.seed, step, self.dist.rank, 1))  # dropout and friends
        generator = torch.Generator(device=self.device)
        generator.manual_seed(step_seed(self.cfg.seed, step, self.dist.rank, 2))  # sampled labels
        obj = self.objective
        refresh = self.stages[self.stage].options.old_policy_refresh_steps
        if obj.needs_old_policy and (step - self.stage_start) % refresh == 0:
            self.access.old = ParamSnapshot.of(self.model)
        self.task.wrapped.train()
        batch, weights = self.task.step_inputs(batch, self.access, obj)
        update = _Update(self, step)
        self.optimizer.zero_grad(set_to_none=True)
        if getattr(obj, "updates_itself", False):   # e.g. generation GRPO: micro-batches, num_iterations updates
            loss, stats = obj(batch, self.access, weights, generator, update)
            if not update.grad_norms:
                raise SpoofrlError(f"objective {obj.name} took no optimizer step at step {step}")
        else:
            loss, stats = obj(batch, self.access, weights, generator)
            update.backward(loss)
            update.step()
        self.scheduler.step()
        fsdp.sync_running_stats(self.model)   # as DDP's buffer broadcast: rank 0's batch-norm statistics
        out = {k: float(v) for k, v in stats.items()}
        out.update(loss=float(loss.detach()), grad_norm=sum(update.grad_norms) / len(update.grad_norms),
                   lr=self.optimizer.param_groups[0]["lr"])
        return out

    # ------------------------------------------------------------------------------------------ validation
    def validate(self) -> float:
        """The task's validation metric (lower is better: detection's dev EER)."""
        return self.task.validate()

    def _evaluate_and_log(self, row: dict) -> bool:
        """Validate, keep the best model, write the row; True when early stopping says stop."""
        value = self.validate()
        better = self.best_eer is None or value < self.best_eer
        if better:
            self.best_eer, self.best_step, self.evals_since_best = value, self.step, 0
            folder = self.out / stage_folder(self.stage) if self.stage + 1 < len(self.stages) else self.out
            self._save_on_main(lambda: self.task.save_model(folder, self.saved_config))
        else:
            self.evals_since_best += 1
        LOG.info("step %d: %s %.2f%% (best %.2f%% at step %d)", self.step, self.task.metric, value * 100,
                 self.best_eer * 100, self.best_step)
        column = self.task.metric_column
        row = dict(row, **{column: value})
        row.setdefault("epoch", None)
        self._write_row(row)
        self._tb({column: value}, "dev")
        patience = self.cfg.schedule.early_stop
        # a stage before the last always runs its steps: stopping there would skip the later stages altogether
        last_stage = self.stage == len(self.stages) - 1
        return bool(patience) and last_stage and self.evals_since_best >= patience

    def _write_row(self, row: dict) -> None:
        if self.metrics is not None:
            self.metrics.row({"step": self.step, "lr": self.optimizer.param_groups[0]["lr"], **row})

    def _tb(self, values: dict, prefix: str) -> None:
        if self.metrics is not None:
            self.metrics.scalars(self.step, values, prefix)

    # ------------------------------------------------------------------------------------------ end
    def _finish(self, t0: float) -> None:
        if not self.task.has_dev:
            self._save_on_main(lambda: self.task.save_model(self.out, self.saved_config))  # no dev set: the last
        self._save_last()
        if self.dist.is_main:
            write_summary(self.out, {
                "best_step": self.best_step if self.task.has_dev else self.step,
                f"best_{self.task.metric_column}": self.best_eer, "steps": self.step,
                "seconds": round(self.seconds_before + time.time() - t0, 2),
                "objective": self.cfg.objective.name if not self.cfg.stages else describe_stages(self.cfg), "init": str(self.init) if self.init else None,
                "processes": self.dist.world, "device": str(self.device), **self.task.summary()})
        distributed.barrier(self.dist)
        LOG.info("finished: %d steps, best %s %s at step %s; model in %s", self.step, self.task.metric,
                 f"{self.best_eer * 100:.2f}%" if self.best_eer is not None else "n/a", self.best_step, self.out)


def train(cfg: TrainConfig, out_dir: str | Path, *, init: str | Path | None = None, resume: bool = False,
          stop_after: int | None = None) -> Path:
    """Train according to `cfg` into `out_dir` (see spoofrl.training.runfolder for its files).

    init: a model folder to start from (its architecture is used; it is also the GRPO reference unless
    objective.reference is set). resume: continue the run in out_dir from last/. stop_after: save last/ and
    return after this many steps (time-limited job slots; summary.json is not written).
    """
    return Trainer(cfg, out_dir, init=init, resume=resume, stop_after=stop_after).run()


__all__ = ["Trainer", "train", "lr_factor", "step_seed", "config_differences", "NON_SEMANTIC_KEYS"]
