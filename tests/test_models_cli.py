"""`spoofrl models` and `spoofrl export --onnx` (checked with onnxruntime)."""
from __future__ import annotations

import pytest
import torch

from conftest import float_tol
from spoofrl.cli import main
from spoofrl.models import build_model, load_model_preset, save_model


def test_models_lists_components_and_presets_with_sizes(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for key in ("logmel", "lfcc", "sinc", "ssl", "pool-linear", "ffn", "lcnn", "resnet", "aasist"):
        assert f"  {key} " in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "357,050" in lines["lcnn-lfcc"]  # parameters of the built preset
    # SSL presets without a checkpoint are sized with an XLS-R 300M-size encoder, counted independently here
    import transformers

    from spoofrl.features.ssl import REFERENCE_ENCODER
    with torch.device("meta"):
        encoder = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**REFERENCE_ENCODER[1]))
    expected = sum(p.numel() for p in encoder.parameters()) + 1024 * 2 + 2  # + the linear head
    assert f"{expected:,}*" in lines["ssl-linear"] and expected > 300_000_000
    assert "higher = more bona fide" in out


def test_models_lists_other_presets_when_one_is_broken(tmp_path, monkeypatch, capsys):
    from spoofrl.config import config_dir
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "good.yaml").write_text((config_dir() / "models" / "logmel-linear.yaml").read_text())
    (tmp_path / "models" / "broken.yaml").write_text("frontend: {name: logmel, n_mel: 3}\nbackend: {name: ffn}\n")
    monkeypatch.setattr("spoofrl.config.config_dir", lambda: tmp_path)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "broken               invalid preset" in out and "242" in out.split("good")[1]
    assert main(["models", "--describe", "broken"]) == 2
    assert "broken.yaml: model: unknown option 'n_mel'" in capsys.readouterr().err


def test_models_describe(capsys):
    assert main(["models", "--describe", "ssl"]) == 0
    out = capsys.readouterr().out
    assert "fusion" in out and "weighted_sum" in out and "layers" in out
    assert main(["models", "--describe", "ssl-tiny-ffn-fusion"]) == 0
    out = capsys.readouterr().out
    assert "parameters:" in out and "hidden_size: 64" in out
    assert main(["models", "--describe", "no-such-thing"]) == 2
    assert "neither a component" in capsys.readouterr().err
    assert main(["models", "--describe", "logmel-linear", "--set", "frontend.n_mel=3"]) == 2
    assert "'n_mel'" in capsys.readouterr().err
    assert main(["models", "--describe", "ssl-ffn-fusion"]) == 0  # no checkpoint: sized with XLS-R 300M
    out = capsys.readouterr().out
    assert "layers: 4-9" in out and "with an encoder of XLS-R 300M size" in out
    assert main(["models", "--describe", "ssl-tiny-ffn-fusion", "--set", "frontend.layers=4-9"]) == 2
    assert "ssl-tiny-ffn-fusion.yaml: model.frontend(ssl).layers: layer 9 does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["lcnn-lfcc", "ssl-tiny-ffn-fusion"])
def test_export_onnx_matches_pytorch(preset, tmp_path, capsys):
    torch.manual_seed(0)
    save_model(build_model(load_model_preset(preset)).eval(), tmp_path / "run")
    out = tmp_path / "model.onnx"
    assert main(["export", str(tmp_path / "run"), "--onnx", str(out), "--seconds", "1"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "[batch, samples]" in text and "OK" in text
    assert "3 x 1.37 s and 3 x 0.50 s" in text  # longer and shorter than the traced length

    import numpy as np
    import onnxruntime as ort
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    wave = np.random.default_rng(1).standard_normal((2, 24000)).astype(np.float32) * 0.1
    logits, score = session.run(None, {"wave": wave, "lengths": np.array([24000, 24000])})
    # the graph's score from its own logits: one float32 subtraction, or two if folded otherwise, of |logits|
    np.testing.assert_allclose(score, logits[:, 1] - logits[:, 0], rtol=0,
                               atol=float_tol(np.float32, 2, float(np.abs(logits).max())))
    meta = {p.key: p.value for p in __import__("onnx").load(str(out)).metadata_props}
    assert "higher = more bona fide" in meta["spoofrl.score"]


def test_export_fails_clearly_over_tolerance(tmp_path, capsys):
    save_model(build_model(load_model_preset("logmel-linear")), tmp_path / "run")
    code = main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "m.onnx"), "--tolerance", "1e-30"])
    assert code == 2
    assert "does not reproduce PyTorch" in capsys.readouterr().err


def test_export_aasist_has_a_fixed_length(tmp_path, capsys):
    from spoofrl.models.export import check_onnx, export_onnx
    torch.manual_seed(0)
    model = build_model(load_model_preset("aasist-sinc", ["backend.time_pool=[3, 3, 1, 1, 1, 1]"])).eval()
    report = check_onnx(model, export_onnx(model, tmp_path / "a.onnx", seconds=0.25))
    assert not report.dynamic_time and report.check_lengths == (4000,) and report.passed


@pytest.mark.parametrize("args, message", [
    (["--opset", "9"], "opset 9 is not supported; use 14..20"),
    (["--seconds", "0.01"], "too short; use at least 0.1 s"),
    (["--onnx", "/proc/no/such/dir/m.onnx"], "cannot create the output folder"),
    (["--onnx", "model.txt"], "should end in .onnx"),
])
def test_export_refuses_bad_arguments_in_one_line(args, message, tmp_path, capsys):
    save_model(build_model(load_model_preset("logmel-linear")), tmp_path / "run")
    argv = ["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "m.onnx"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_export_leaves_the_model_in_eval_mode(tmp_path):
    """The exporter restores the training flag of what it traced; the model must stay in eval mode (dropout
    off) so scores computed after an export are still the model's."""
    from spoofrl.models.export import export_onnx
    torch.manual_seed(0)
    model = build_model(load_model_preset("ssl-tiny-linear")).eval()
    wave = torch.randn(2, 8000) * 0.1
    before = model.score(wave)
    export_onnx(model, tmp_path / "m.onnx", seconds=0.5)
    assert not any(m.training for m in model.modules())
    torch.testing.assert_close(model.score(wave), before, rtol=0, atol=0)
