"""Score your own audio: model loading (bundled default or a run folder), input expansion
(files, folders, globs), streamed chunked scoring with a per-chunk timeline, a speech gate (voice activity
detection: verdict no-speech) and report formats. Used by `spoofrl detect` and `spoofrl serve`; see docs/detect.md."""
from spoofrl.detect.engine import NO_SPEECH, DetectInterrupted, DetectOptions, FileResult, detect_files, detect_one
from spoofrl.detect.inputs import expand_inputs
from spoofrl.detect.model import LoadedModel, default_model_dir, load_detection_model
from spoofrl.detect.report import format_csv, format_table, report_dict
from spoofrl.detect.vad import speech_share

__all__ = ["DetectInterrupted", "DetectOptions", "FileResult", "NO_SPEECH", "detect_files", "detect_one",
           "expand_inputs", "LoadedModel", "default_model_dir", "load_detection_model", "format_csv", "format_table",
           "report_dict", "speech_share"]
