"""Runs an experiment: post-training (once, shared), then every arm x seed, then the report.

Caching and resumption:
- a training stage is finished when its run folder holds `summary.json` (written last by the trainer); a
  finished stage is never re-run, an unfinished one resumes from its `last/` checkpoint;
- each stage folder records the train config and the starting model (folder and identity) it was made with
  (`experiment_stage.json`); a later invocation whose config differs for that stage, or whose starting model
  was retrained since, stops with an error instead of mixing results;
- a run's score files are kept while they score exactly the test set's utterances with the same model
  (`scores/model.json` holds the identity of the model that wrote them).
So a killed experiment, rerun with the same command, continues where it stopped; adding seeds, arms or test
sets runs only what is new. Paths inside the output folder are recorded relative to it, so a copied or moved
output folder can be continued.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

from spoofrl.config import load_yaml, resolve_preset, save_yaml, to_dict
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.experiment.benchmark import available_cores
from spoofrl.experiment.config import ExperimentConfig, detector_name
from spoofrl.experiment.data import (TRAIN, DEV, build_training_manifests, prepare_rationales, read_test_sets,
                                     warn_overlaps)
from spoofrl.experiment.layout import Layout
from spoofrl.experiment.models import model_identity, posttrained_model, recorded_score_model, start_model
from spoofrl.runfiles import CONFIG, LAST, SCORES_MODEL, STAGE_SPEC, SUMMARY, WEIGHTS

LOG = logging.getLogger(__name__)



# ------------------------------------------------------------------------------------------ plans

@dataclass
class StagePlan:
    folder: Path
    train_config: dict                 # resolved TrainConfig as a plain dict
    init: Path | None                  # model folder the stage starts from (None: fresh initialisation)
    root: Path                         # the experiment's output folder (paths under it are stored relative)

    def finished(self) -> bool:
        return (self.folder / SUMMARY).is_file()


@dataclass
class RunPlan:
    detector: str
    arm: str
    seed: int
    folder: Path
    start: Path | None                 # starting model folder (the post-trained model) or None
    stages: list[StagePlan] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.detector}/{self.arm}/seed{self.seed}"

    def model_folder(self) -> Path:
        return self.stages[-1].folder if self.stages else self.start


def _base_train_dict(recipe: str, detector_preset: str, manifest: Path, seed: int, device: str,
                     rationales: Path | None = None) -> dict:
    """A recipe with the experiment's model, data and seed filled in (before any user override). A generation
    recipe keeps its own model section (the detector only names the study's folder) and gets the experiment's
    rationales (data.rationales) as generation.rationales."""
    data = load_yaml(resolve_preset("train", recipe))
    if str(data.get("task") or "detection") != "generation":
        data["model"] = {"preset": detector_preset}
    elif rationales is not None:
        data["generation"] = {**(data.get("generation") or {}), "rationales": str(rationales)}
    data_section = dict(data.get("data") or {})
    data_section.update({"manifest": str(manifest), "train_subsets": [TRAIN], "dev_subsets": [DEV]})
    data["data"] = data_section
    data["seed"] = seed
    data["device"] = device
    return data


def resolve_train_config(recipe: str, overrides: list[str], detector_preset: str, manifest: Path, seed: int,
                         device: str, where: str, rationales: Path | None = None) -> dict:
    """Validated, fully resolved train config of one stage, as a dict (errors name the arm/stage)."""
    from spoofrl.training import load_train_config
    try:
        cfg = load_train_config(_base_train_dict(recipe, detector_preset, manifest, seed, device, rationales),
                                overrides)
    except SpoofrlError as err:
        raise ConfigError(f"{where}: {err}") from None
    return to_dict(cfg)


def plan_posttraining(cfg: ExperimentConfig, layout: Layout, manifests: dict[str, Path]) -> list[StagePlan]:
    if not cfg.needs_posttraining() or cfg.posttrain.from_model:
        return []
    seeds = cfg.seed_list() if cfg.posttrain.per_seed else [cfg.seed_offset]
    plans = []
    for preset in cfg.detectors:
        for seed in seeds:
            train_cfg = resolve_train_config(cfg.posttrain.recipe, cfg.posttrain.overrides, preset,
                                             manifests["posttrain"], seed, cfg.device, "posttrain")
            plans.append(StagePlan(posttrained_model(cfg, layout, preset, seed), train_cfg, None, layout.root))
    return plans


def plan_runs(cfg: ExperimentConfig, layout: Layout, manifests: dict[str, Path], arms: list[str]) -> list[RunPlan]:
    """Every arm x seed run, seeds outermost (so early results cover every arm)."""
    runs = []
    seeds = sorted({s for arm in arms for s in cfg.arm_seeds(arm)})
    for seed in seeds:
        for preset in cfg.detectors:
            det = detector_name(preset)
            for arm in arms:
                if seed not in cfg.arm_seeds(arm):
                    continue
                spec = cfg.arms[arm]
                start = start_model(cfg, layout, preset, arm, seed)
                run = RunPlan(det, arm, seed, layout.run(det, arm, seed), start)
                init = start
                for i, stage in enumerate(spec.stage_list()):
                    overrides = cfg.finetune.overrides + spec.overrides + stage.overrides
                    where = f"arms.{arm}" + (f".stages[{i}]" if spec.stages else "")
                    train_cfg = resolve_train_config(stage.recipe or cfg.finetune.recipe, overrides, preset,
                                                     manifests["target"], seed, cfg.device, where,
                                                     manifests.get("rationales"))
                    folder = layout.stage(det, arm, seed, i)
                    run.stages.append(StagePlan(folder, train_cfg, init, layout.root))
                    init = folder
                runs.append(run)
    return runs


# ------------------------------------------------------------------------------------------ stages

def _portable(value, root: Path):
    """Paths inside the output folder written as 'OUT/...', so a moved output folder keeps its fingerprints."""
    if isinstance(value, dict):
        return {k: _portable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v, root) for v in value]
    prefix = str(root)
    if isinstance(value, str) and (value == prefix or value.startswith(prefix + os.sep)):
        return "OUT" + value[len(prefix):]
    return value


def _fingerprint(stage: StagePlan) -> dict:
    return _portable({"train_config": stage.train_config, "init": str(stage.init) if stage.init else None,
                      "init_model": model_identity(stage.init)}, stage.root)


def _describe(changes: list[str]) -> str:
    return ", ".join(changes[:3]) + (f" and {len(changes) - 3} more" if len(changes) > 3 else "")


def check_stage_spec(stage: StagePlan) -> None:
    """Refuse to continue or reuse a stage folder made with another config or from another starting model.

    Configs are compared as a resumed training run compares them (`config_differences`: options that do not
    change what is learned, such as the device or the loader workers, may differ)."""
    from spoofrl.training.config import config_differences
    path = stage.folder / STAGE_SPEC
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ConfigError(f"{path}: damaged (not JSON); delete {stage.folder} to redo that stage") from None
    new = json.loads(json.dumps(_fingerprint(stage)))  # same JSON types as the stored copy
    old.setdefault("init_model", new["init_model"])  # written before spoofrl recorded it: nothing to compare
    changes = config_differences(old.get("train_config") or {}, new["train_config"])
    if old.get("init") != new["init"]:
        changes.append(f"init: {old.get('init')} -> {new['init']}")
    redo = f"delete {stage.folder} to redo it, or write the experiment to another --out"
    if changes:
        raise ConfigError(f"{stage.folder}: made with a different configuration ({_describe(changes)}); {redo}")
    if old["init_model"] != new["init_model"]:
        what = "is gone" if new["init_model"] is None else "was retrained or replaced since"
        raise ConfigError(f"{stage.folder}: trained from a model that {what} ({stage.init}); {redo}")


def ensure_stage(stage: StagePlan) -> bool:
    """Train (or resume) a stage unless it is finished. Returns True when training happened now."""
    check_stage_spec(stage)
    if stage.finished():
        return False
    from spoofrl.training import load_train_config, train
    if stage.init is not None and not (stage.init / WEIGHTS).is_file():
        raise SpoofrlError(f"{stage.init}: no model.safetensors to start {stage.folder} from")
    resume = (stage.folder / LAST).is_dir()
    if stage.folder.exists() and not resume:
        shutil.rmtree(stage.folder)  # killed before its first checkpoint: nothing to keep
    stage.folder.mkdir(parents=True, exist_ok=True)
    (stage.folder / STAGE_SPEC).write_text(json.dumps(_fingerprint(stage), indent=1))
    LOG.info("%s %s", "resuming" if resume else "training", stage.folder)
    train(load_train_config(stage.train_config), stage.folder, init=stage.init, resume=resume)
    if not stage.finished():
        raise SpoofrlError(f"{stage.folder}: training ended without writing {SUMMARY}")
    return True


# ------------------------------------------------------------------------------------------ scoring

def _scores_match(path: Path, utts: list) -> bool:
    """True when an existing score file scores exactly these utterances (same ids, same labels)."""
    from spoofrl.metrics.scorefile import read_scores
    if not path.is_file():
        return False
    try:
        table = read_scores(path)
    except SpoofrlError:
        return False
    return sorted(zip(table.utt, table.label)) == sorted((u.utt, u.label) for u in utts)


def _scores_of_current_model(folder: Path, identity: str | None) -> None:
    """Empty a run's scores/ folder when its files come from another model than `identity` (a stage redone
    since, then killed before scoring); then record `identity` there."""
    if recorded_score_model(folder) == identity:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / SCORES_MODEL).write_text(json.dumps({"identity": identity}) + "\n")


def score_run(cfg: ExperimentConfig, layout: Layout, run: RunPlan) -> list[str]:
    """Write the run's score file of every test set that lacks an up-to-date one. Returns the sets scored."""
    from spoofrl.device import pick_device
    from spoofrl.errors import AudioError
    from spoofrl.inference import score_utterances
    from spoofrl.metrics.scorefile import write_scores
    from spoofrl.models import load_model
    test_sets = read_test_sets_quick(cfg)
    _scores_of_current_model(run.folder / "scores", model_identity(run.model_folder()))
    todo = {n: u for n, u in test_sets.items()
            if not _scores_match(layout.scores(run.detector, run.arm, run.seed, n), u)
            or (cfg.is_generation() and not _explanations_match(layout.explanations(run.detector, run.arm,
                                                                                    run.seed, n), u))}
    if not todo:
        return []
    device = pick_device(cfg.device)
    if cfg.is_generation():
        explain_run(cfg, layout, run, todo, device)
        return list(todo)
    model = load_model(run.model_folder(), device)
    for name, utts in todo.items():
        try:
            scores = score_utterances(model, utts, device=device, batch_size=cfg.scoring.batch_size,
                                      max_seconds=cfg.scoring.max_seconds or None, desc=f"{run.key} {name}")
        except AudioError as err:  # say which test set holds the file (the score files written so far stay)
            raise SpoofrlError(f"test set '{name}': {err}") from None
        write_scores(layout.scores(run.detector, run.arm, run.seed, name), [u.utt for u in utts], scores,
                     [u.label for u in utts], [u.attack for u in utts], [u.condition for u in utts])
    return list(todo)


def _explanations_match(path: Path, utts: list) -> bool:
    """An explanations file of a generation run holds one line per utterance of the test set."""
    if not path.is_file():
        return False
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip()) == len(utts)


def _run_evidence(layout: Layout, model_folder: Path, name: str, utts: list) -> list | None:
    """Each test clip's evidence items, measured against the model folder's evidence_reference.json (None for
    a model trained without rationales: its claims, if any, are not checked). When that profile is the
    experiment's own (OUT/data/rationales.reference.json), the items data.rationales measured are read
    back instead of measuring the clips again."""
    from spoofrl.audio import load_audio
    from spoofrl.evidence import ReferenceProfile, evidence
    from spoofrl.experiment.data import read_rationale_evidence, rationales_path, test_subset
    from spoofrl.explain.annotate import reference_path
    from spoofrl.training.tasks.generation import EVIDENCE_REFERENCE
    profile_file = model_folder / EVIDENCE_REFERENCE
    if not profile_file.is_file():
        return None
    ours = reference_path(rationales_path(layout))
    known = {}
    if ours.is_file() and ours.read_bytes() == profile_file.read_bytes():
        known = read_rationale_evidence(rationales_path(layout), test_subset(name))
    profile = ReferenceProfile.load(profile_file)
    sr = profile.config.sample_rate
    out = []
    for u in utts:
        items = known.get(str(u.audio_path.resolve()))
        if items is None:
            items = [i.to_dict() for i in evidence(load_audio(u.audio_path, sr), sr, profile)]
        out.append(items)
    return out


def explain_run(cfg: ExperimentConfig, layout: Layout, run: RunPlan, todo: dict, device) -> None:
    """Score a generation run's test sets: each clip's greedy completion, verdict score (log p(bonafide answer)
    - log p(spoof answer) after its own greedy rationale: `Explained.score`) and claims checked against its
    evidence; the explanations go to `<test set>.explain.jsonl`, then the usual score file (written last: it
    marks the set as done)."""
    from spoofrl.alm.io import load_alm
    from spoofrl.audio import load_audio
    from spoofrl.errors import AudioError
    from spoofrl.detect.explanations import explain_waves
    from spoofrl.metrics.scorefile import write_scores
    from spoofrl.training import load_train_config
    folder = run.model_folder()
    train_cfg = load_train_config(str(folder / CONFIG))
    model = load_alm(folder, device=device)
    sr = model.cfg.sample_rate
    limit = cfg.scoring.max_seconds
    for name, utts in todo.items():
        try:
            waves = []
            for u in utts:
                wave = load_audio(u.audio_path, sr)
                waves.append(wave[:int(limit * sr)] if limit else wave)
        except AudioError as err:
            raise SpoofrlError(f"test set '{name}': {err}") from None
        ev = _run_evidence(layout, folder, name, utts)
        LOG.info("%s: explaining %d clips of %s", run.key, len(utts), name)
        items = explain_waves(model, waves, train_cfg.generation.prompt,
                              max_completion_length=train_cfg.objective.max_completion_length, evidence=ev,
                              batch_size=cfg.scoring.batch_size, system=train_cfg.generation.system or None)
        path = layout.explanations(run.detector, run.arm, run.seed, name)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for u, item in zip(utts, items):
                record = {"utt": u.utt, "label": u.label, "attack": u.attack, "condition": u.condition,
                          **item.to_dict()}
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        tmp.replace(path)
        write_scores(layout.scores(run.detector, run.arm, run.seed, name), [u.utt for u in utts],
                     [x.score for x in items], [u.label for u in utts], [u.attack for u in utts],
                     [u.condition for u in utts])


def read_test_sets_quick(cfg: ExperimentConfig):
    """Test sets without re-checking that every audio file exists (done once before the runs start)."""
    from spoofrl.experiment.data import read_split
    return {name: read_split(cfg, split, name, check_audio=False) for name, split in cfg.test_sets().items()}


# ------------------------------------------------------------------------------------------ one run

def execute_run(cfg: ExperimentConfig, layout: Layout, run: RunPlan) -> dict:
    """Train the run's stages (cached), score its test sets (cached). Picklable entry point for workers."""
    t0 = time.time()
    trained = False
    if run.start is not None and not (run.start / WEIGHTS).is_file():
        raise SpoofrlError(f"{run.start}: the starting model of {run.key} has no {WEIGHTS}")
    for stage in run.stages:
        trained |= ensure_stage(stage)
    scored = score_run(cfg, layout, run)
    return {"key": run.key, "seconds": time.time() - t0, "trained": trained, "scored": scored}


def execute_stage(stage: StagePlan) -> dict:
    t0 = time.time()
    trained = ensure_stage(stage)
    key = Layout(stage.root).relative(stage.folder)  # e.g. 'lfcc-ffn/posttrain'
    return {"key": key, "seconds": time.time() - t0, "trained": trained, "scored": []}


# ------------------------------------------------------------------------------------------ scheduling

def _picklable(err: BaseException) -> BaseException:
    """`err`, or a plain exception with its message when it cannot cross the process boundary (an exception
    whose constructor takes other arguments than its message fails to unpickle, and the pool then hangs)."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        kind = SpoofrlError if isinstance(err, SpoofrlError) else RuntimeError
        return kind(str(err) if kind is SpoofrlError else f"{type(err).__name__}: {err}")


def _in_worker(fn, *args) -> dict:
    """Runs a task in a worker process. A signal (Ctrl-C, or the pool terminating its workers) stops the
    trainer, which saves its checkpoint and raises KeyboardInterrupt: the worker then exits, so that it
    takes no further task and the pool can shut down."""
    try:
        return fn(*args)
    except KeyboardInterrupt:
        logging.shutdown()
        os._exit(130)
    except Exception as err:
        raise _picklable(err) from None


def _worker_init(threads: int, console_level: int, logfile: str) -> None:
    import torch

    from spoofrl.log import setup_logging
    torch.set_num_threads(threads)
    os.environ["SPOOFRL_NO_PROGRESS"] = "1"  # bars of several processes would interleave
    setup_logging(console_level, logfile)  # the console as in the parent (-q, -v); the log file gets progress


def _console_level() -> int:
    from spoofrl.log import ConsoleHandler
    handlers = [h for h in logging.getLogger("spoofrl").handlers if isinstance(h, ConsoleHandler)]
    return handlers[0].level if handlers else logging.WARNING


class Progress:
    """'[k/n] done: KEY in 41 s; m left, about T to go' lines, the estimate from the runs that trained."""

    def __init__(self, total: int, workers: int, what: str):
        self.total, self.workers, self.what = total, workers, what
        self.done = 0
        self.durations: list[float] = []

    def finished(self, result: dict) -> None:
        self.done += 1
        if result["trained"]:
            self.durations.append(result["seconds"])
        left = self.total - self.done
        eta = ""
        if left and self.durations:
            seconds = sum(self.durations) / len(self.durations) * left / self.workers
            eta = f", about {_duration(seconds)} to go"
        did = (["trained"] if result["trained"] else []) + (["scored"] if result["scored"] else [])
        status = " and ".join(did) or "cached"
        LOG.info("[%d/%d %s] %s: %s in %s; %d left%s", self.done, self.total, self.what, result["key"], status,
                 _duration(result["seconds"]), left, eta)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class TaskPool:
    """Runs (function, *args) tasks in this process, or in `workers` processes kept for the whole experiment
    (starting a process costs seconds: each imports torch). Stops at the first failure; on a failure or
    Ctrl-C nothing new starts, and the runs in progress end (a trainer saves its checkpoint first)."""

    def __init__(self, workers: int, logfile: Path):
        self.workers, self.logfile = workers, logfile
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "TaskPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _processes(self) -> ProcessPoolExecutor:
        if self.pool is None:
            import multiprocessing

            from spoofrl.workers import pool_initializer
            threads = max(1, available_cores() // self.workers)
            LOG.info("starting %d worker processes of %d thread%s each", self.workers, threads,
                     "s" if threads > 1 else "")
            ctx = multiprocessing.get_context("spawn")  # fork after torch threads started can deadlock
            # workers die with this process (a kill -9 of the experiment leaves no orphans)
            self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx, **pool_initializer(
                _worker_init, (threads, _console_level(), str(self.logfile))))
        return self.pool

    def run(self, tasks: list[tuple], what: str) -> None:
        if not tasks:
            return
        progress = Progress(len(tasks), min(self.workers, len(tasks)), what)
        if self.workers <= 1 or len(tasks) == 1:
            for fn, *args in tasks:
                progress.finished(fn(*args))
            return
        try:
            pending = {self._processes().submit(_in_worker, fn, *args) for fn, *args in tasks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)  # report each as it ends
                for fut in done:
                    progress.finished(fut.result())  # a failed task raises here
        except BrokenProcessPool:
            self.pool = None
            raise SpoofrlError(f"a worker process of the {what} died (killed, or out of memory?); rerun the same "
                               f"command to continue: finished runs are kept, interrupted ones resume") from None
        except BaseException:
            self.close()
            raise


# ------------------------------------------------------------------------------------------ entry point

def _check_from_model(cfg: ExperimentConfig) -> None:
    if not cfg.posttrain.from_model:
        return
    for preset in cfg.detectors:
        folder = Path(cfg.posttrain.from_model.replace("{detector}", detector_name(preset)))
        if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
            raise ConfigError(f"posttrain.from_model: {folder} is not a spoofrl model folder "
                              f"(model.safetensors + config.yaml)")


def select_arms(cfg: ExperimentConfig, arms: list[str] | None) -> list[str]:
    if not arms:
        return list(cfg.arms)
    unknown = [a for a in arms if a not in cfg.arms]
    if unknown:
        raise ConfigError(f"--arms: unknown arm{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                          f"this experiment has {', '.join(cfg.arms)}")
    needed = cfg.with_dependencies(arms)
    extra = [a for a in needed if a not in arms]
    if extra:
        LOG.info("--arms: also running %s (the selected arms start from %s)", ", ".join(extra),
                 "its model" if len(extra) == 1 else "their models")
    return needed


def run_experiment(cfg: ExperimentConfig, out_dir: str | Path, *, arms: list[str] | None = None,
                   report_only: bool = False) -> dict:
    """Run (or continue) the experiment in `out_dir` and write its report. Returns the results dict."""
    from spoofrl.experiment.report import build_report
    from spoofrl.log import add_file_handler
    layout = Layout(Path(out_dir).resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    arms = select_arms(cfg, arms)
    package_log = logging.getLogger("spoofrl")
    level = package_log.level
    package_log.setLevel(min(package_log.getEffectiveLevel(), logging.INFO))  # the log file gets progress
    handler = add_file_handler(str(layout.log))                              # even with --quiet
    try:
        from spoofrl.experiment.data import ensure_benchmark_manifest
        ensure_benchmark_manifest(cfg, layout, make=not report_only)
        save_yaml(cfg, layout.config)
        if not report_only:
            _run_stages(cfg, layout, arms)
        return build_report(cfg, layout, arms)
    finally:
        package_log.removeHandler(handler)
        package_log.setLevel(level)
        handler.close()


def _run_stages(cfg: ExperimentConfig, layout: Layout, arms: list[str]) -> None:
    t0 = time.time()
    _check_from_model(cfg)
    sub = replace(cfg, arms={a: cfg.arms[a] for a in arms})
    test_sets = read_test_sets(sub)  # checks every test file exists before hours of training
    manifests = build_training_manifests(sub, layout)
    warn_overlaps(manifests, test_sets)
    rationales = prepare_rationales(sub, layout)
    if rationales is not None:
        manifests = {**manifests, "rationales": rationales}
    posttrain = plan_posttraining(sub, layout, manifests)
    runs = plan_runs(sub, layout, manifests, arms)
    for stage in posttrain + [s for r in runs for s in r.stages]:
        check_stage_spec(stage)  # a changed config fails now, not after hours of other runs
    LOG.info("experiment %s: %d detector(s), %d arm(s), %d run(s), %d post-training run(s); output %s",
             cfg.name, len(cfg.detectors), len(arms), len(runs), len(posttrain), layout.root)
    levels = sub.arm_levels()
    with TaskPool(cfg.workers, layout.log) as pool:
        pool.run([(execute_stage, s) for s in posttrain], "post-training runs")
        for level in sorted(set(levels.values())):  # an arm starting from another arm's model waits for it
            batch = [r for r in runs if levels[r.arm] == level]
            what = "arm runs" if level == 0 else "arm runs starting from another arm's model"
            pool.run([(execute_run, sub, layout, r) for r in batch], what)
    LOG.info("all runs finished in %s", _duration(time.time() - t0))
