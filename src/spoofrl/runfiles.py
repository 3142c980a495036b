"""Names of the files in a model folder, a training run folder and an experiment run: defined once.

A model folder (what `spoofrl.models.load_model`, `detect` and `serve` read) is WEIGHTS + CONFIG, with
CALIBRATION after `spoofrl calibrate`. A training run folder (`spoofrl train`, see
spoofrl.training.runfolder) is a model folder plus its training state and records. An experiment stage
adds STAGE_SPEC, and a run's scores/ folder SCORES_MODEL.
"""

# model folder
WEIGHTS = "model.safetensors"          # weights (safetensors: no pickle)
CONFIG = "config.yaml"                 # the resolved config that rebuilds the model (a run's: the train config)
CALIBRATION = "calibration.json"       # score -> LLR map of `spoofrl calibrate`
DEV_SCORES = "calibration_dev_scores.tsv"  # the dev scores the calibration was fitted on

# training run folder
LAST = "last"                          # resumable checkpoint (a model folder too)
STAGE1 = "stage1"                      # staged runs: the first stage's best model (stage2/ the second's, ...)


def stage_folder(index: int) -> str:
    """Folder of stage `index` (0-based) of a staged run: its best model; the last stage's model is the run's."""
    return f"stage{index + 1}"
METRICS = "metrics.csv"
SUMMARY = "summary.json"               # written last, on success
TRAIN_LOG = "train.log"
TENSORBOARD = "tb"

# experiment
STAGE_SPEC = "experiment_stage.json"   # the fingerprint a stage folder was trained with
SCORES_MODEL = "model.json"            # in a run's scores/ folder: the model its score files come from
