"""ONNX export of a detector for inference, checked against PyTorch with onnxruntime.

The exported graph takes `wave` [batch, samples] (float32, at the model's sample rate) and `lengths` [batch]
(int64, true length of each zero-padded row) and returns `logits` [batch, 2] over (spoof, bonafide) and
`score` [batch] = logits[:, 1] - logits[:, 0], the raw log-odds of bona fide (higher = more bona fide;
a calibration.json beside the model is not applied). Batch and sample axes are dynamic, except the sample
axis of models whose graph depends on the input length in ways the tracer fixes (AASIST's graph pooling keeps a
number of nodes proportional to the length): those export with a fixed length, recorded in the file's
metadata, and inputs must be cropped or zero-padded to it.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spoofrl.models.detector import logits_to_score

from spoofrl.errors import SpoofrlError

log = logging.getLogger(__name__)

# Opsets accepted: from 14 (the first with the scaled-dot-product attention of SSL encoders) to 20, the newest
# that torch's TorchScript-based exporter supports.
OPSETS = range(14, 21)
# The traced length must exceed what the front-ends treat as a "very short input" (a spectral front-end pads
# inputs shorter than half its FFT first): tracing that branch would bake the padding into the graph.
MIN_EXPORT_SECONDS = 0.1


class _ScoringGraph(nn.Module):
    """(wave, lengths) -> (logits, score), the exported signature."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor):
        logits = self.detector(wave, lengths)
        return logits, logits_to_score(logits)


@dataclass
class ExportReport:
    path: Path
    dynamic_time: bool
    samples: int  # export length (the only accepted one when not dynamic_time)
    check_batch: int = 0
    check_lengths: tuple[int, ...] = ()  # samples per row of each checked batch
    max_abs_diff: float = math.nan
    tolerance: float = math.nan

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def supports_dynamic_time(model) -> bool:
    """False when a component declares that its traced graph is only valid at the export length."""
    return all(getattr(part, "onnx_dynamic_time", True) for part in (model.frontend, model.backend))


def export_onnx(model, path: str | Path, *, seconds: float = 4.0, opset: int = 17) -> ExportReport:
    """Trace `model` into an ONNX file at `path`; see the module doc for its signature. The model is moved to
    the CPU and left in eval mode."""
    if opset not in OPSETS:
        raise SpoofrlError(f"ONNX opset {opset} is not supported; use {OPSETS.start}..{OPSETS.stop - 1}")
    if not seconds >= MIN_EXPORT_SECONDS:
        raise SpoofrlError(f"export length {seconds} s is too short; use at least {MIN_EXPORT_SECONDS} s")
    model = getattr(model, "module", model).to("cpu").eval()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SpoofrlError(f"{path.parent}: cannot create the output folder ({err.strerror})") from None
    samples = int(round(seconds * model.cfg.sample_rate))
    dynamic_time = supports_dynamic_time(model)
    example = (torch.randn(2, samples) * 0.1, torch.tensor([samples, samples - samples // 5]))
    axes = {"wave": {0: "batch", 1: "samples"} if dynamic_time else {0: "batch"},
            "lengths": {0: "batch"}, "logits": {0: "batch"}, "score": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter; the onnxruntime check below is the real test
        try:
            # The wrapper must be in eval mode too: the exporter restores the wrapper's mode afterwards,
            # recursively, which for a new (training-mode) wrapper would leave the detector training.
            torch.onnx.export(_ScoringGraph(model).eval(), example, str(path), dynamo=False, opset_version=opset,
                              input_names=["wave", "lengths"], output_names=["logits", "score"],
                              dynamic_axes=axes, do_constant_folding=True)
        except OSError as err:
            raise SpoofrlError(f"{path}: cannot write the ONNX file ({err.strerror or err})") from None
        except Exception as err:  # the exporter raises many types for unsupported operators
            raise SpoofrlError(f"ONNX export failed: {type(err).__name__}: {' '.join(str(err).split())[:400]}") \
                from None
    _add_metadata(path, model, samples, dynamic_time)
    return ExportReport(path=path, dynamic_time=dynamic_time, samples=samples)


def _add_metadata(path: Path, model, samples: int, dynamic_time: bool) -> None:
    import onnx
    proto = onnx.load(str(path), load_external_data=False)
    info = {
        "spoofrl.score": "score = logits[:,1] - logits[:,0] = log-odds of bona fide (natural log); "
                         "higher = more bona fide; uncalibrated",
        "spoofrl.logits": "logits over (spoof, bonafide)",
        "spoofrl.sample_rate": str(model.cfg.sample_rate),
        "spoofrl.inputs": "wave float32 [batch, samples] zero-padded; lengths int64 [batch] true lengths",
        "spoofrl.preset": model.cfg.preset or "custom",
        "spoofrl.samples": "any" if dynamic_time else str(samples),
    }
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def check_lengths(report: ExportReport, sample_rate: int) -> tuple[int, ...]:
    """Input lengths to compare at: for a dynamic time axis one longer and one shorter than the export length
    (a value the tracer froze into the graph shows up there), else the export length."""
    if not report.dynamic_time:
        return (report.samples,)
    shorter = max(report.samples // 2, int(MIN_EXPORT_SECONDS * sample_rate))
    return report.samples + sample_rate * 37 // 100, shorter


def check_onnx(model, report: ExportReport, *, tolerance: float = 1e-3, seed: int = 0) -> ExportReport:
    """Run the ONNX file with onnxruntime and PyTorch on the same random batches of 3 zero-padded rows of
    different lengths (another batch size and, where dynamic, other lengths than the export used) and record
    the largest absolute difference of logits and scores."""
    import onnxruntime as ort
    model = getattr(model, "module", model).to("cpu").eval()
    rng = np.random.default_rng(seed)
    try:
        session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise SpoofrlError(f"{report.path}: onnxruntime cannot load the exported model "
                           f"({type(err).__name__}: {' '.join(str(err).split())[:400]})") from None
    report.check_lengths = check_lengths(report, model.cfg.sample_rate)
    report.max_abs_diff = max(_largest_difference(model, session, report.path, rng, samples)
                              for samples in report.check_lengths)
    report.tolerance, report.check_batch = tolerance, 3
    return report


def _largest_difference(model, session, path: Path, rng: np.random.Generator, samples: int) -> float:
    wave = (rng.standard_normal((3, samples)) * 0.1).astype(np.float32)
    lengths = np.array([samples, samples - samples // 7, samples - samples // 3], dtype=np.int64)
    for i, n in enumerate(lengths):
        wave[i, n:] = 0.0
    try:
        logits, score = session.run(["logits", "score"], {"wave": wave, "lengths": lengths})
    except Exception as err:  # onnxruntime raises its own exception types
        raise SpoofrlError(f"{path}: onnxruntime cannot run the exported model on {samples} samples "
                           f"({type(err).__name__}: {' '.join(str(err).split())[:400]})") from None
    with torch.no_grad():
        ref_logits = model(torch.from_numpy(wave), torch.from_numpy(lengths)).numpy()
    ref_score = logits_to_score(torch.from_numpy(ref_logits)).numpy()
    return float(max(np.abs(logits - ref_logits).max(), np.abs(score - ref_score).max()))
