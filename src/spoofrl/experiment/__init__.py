"""The study runner: arms x seeds on a target domain and out-of-domain sets, cached and resumable, with a report.

`spoofrl experiment CONFIG.yaml` and `spoofrl demo` are thin wrappers around `run_experiment`.
"""
from spoofrl.experiment.config import ArmConfig, ExperimentConfig, load_experiment_config


def run_experiment(*args, **kwargs):
    """See `spoofrl.experiment.runner.run_experiment`."""
    from spoofrl.experiment.runner import run_experiment as _run
    return _run(*args, **kwargs)


def build_report(*args, **kwargs):
    """See `spoofrl.experiment.report.build_report`."""
    from spoofrl.experiment.report import build_report as _build
    return _build(*args, **kwargs)


__all__ = ["ExperimentConfig", "ArmConfig", "load_experiment_config", "run_experiment", "build_report"]
