"""Front-end and back-end components: numerical checks against references, shapes, config validation, I/O."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import chain_ops, float_tol
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.models import build_model, count_parameters, load_model, save_model
from spoofrl.models.detector import model_config_from_dict


def test_lfcc_matches_a_numpy_scipy_reference():
    from scipy.fft import dct
    from scipy.signal import get_window

    from spoofrl.features.lfcc import LFCC, linear_filterbank
    cfg = LFCC.Config(delta_order=0)
    wave = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    ours = LFCC(cfg).encode(torch.from_numpy(wave)[None], torch.tensor([4000]))[0][0].numpy()
    # reference: centred frames (reflect padding), periodic Hann window centred in the FFT, power spectrum
    padded = np.pad(wave, cfg.n_fft // 2, mode="reflect")
    window = np.zeros(cfg.n_fft)
    offset = (cfg.n_fft - cfg.win_length) // 2
    window[offset:offset + cfg.win_length] = get_window("hann", cfg.win_length, fftbins=True)
    frames = np.stack([padded[i:i + cfg.n_fft] * window
                       for i in range(0, len(padded) - cfg.n_fft + 1, cfg.hop_length)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    fb = linear_filterbank(cfg.n_filters, cfg.n_fft, cfg.sample_rate, cfg.f_min, cfg.f_max).numpy()
    reference = dct(np.log(np.maximum(power @ fb.T, 1e-10)), type=2, norm="ortho", axis=1)[:, :cfg.n_lfcc]
    assert ours.shape == reference.shape == (26, 20)
    # ours in float32 against float64: the 512-point STFT, the filters' sums over 257 bins and the 20-point DCT,
    # on |LFCC| <= 33 (white noise: the filters' energies within 13 dB, so no quiet filter inflates the log's
    # error): 1.7e-4; a wrong window, framing or filter moves coefficients by 0.1 to 1
    tol = float_tol(np.float32, chain_ops(512, 257, 20), 33)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=tol)


def test_linear_filterbank_is_evenly_spaced_triangles():
    from spoofrl.features.lfcc import linear_filterbank
    fb = linear_filterbank(20, 512, 16000, 0.0, 8000.0)
    peaks = fb.argmax(dim=1).numpy()
    assert fb.shape == (20, 257) and (fb >= 0).all() and fb.max() <= 1.0
    np.testing.assert_allclose(np.diff(peaks), np.full(19, 256 / 21), atol=1.0)


def test_lfcc_deltas_and_dimensions():
    model = build_model({"frontend": {"name": "lfcc", "n_lfcc": 13, "n_filters": 30, "delta_order": 2},
                         "backend": {"name": "pool-linear"}})
    feats, frames = model.frontend(torch.randn(2, 3200), torch.tensor([3200, 1600]))
    assert model.frontend.out_dim == 39 and feats.shape == (2, 21, 39) and frames.tolist() == [21, 11]


def test_sinc_filters_pass_their_own_band():
    from spoofrl.features.sinc import SincFilterbank
    bank = SincFilterbank(SincFilterbank.Config(n_filters=10, kernel_size=257))
    response = np.abs(np.fft.rfft(bank.filters().detach().squeeze(1).numpy(), n=4096, axis=1))
    freqs = np.fft.rfftfreq(4096, 1 / 16000)
    low, high = (t.detach().numpy() for t in bank.band_edges_hz())
    for i in range(10):
        peak = freqs[response[i].argmax()]
        assert low[i] - 50 <= peak <= high[i] + 50, (i, low[i], high[i], peak)
    assert np.all(np.diff(low) > 0)  # mel-spaced, increasing
    feats, frames = bank.encode(torch.randn(2, 3000), torch.tensor([3000, 2000]))
    assert feats.shape == (2, 1000, 10) and frames.tolist() == [1000, 667] and (feats >= 0).all()


def test_learnable_sinc_gets_gradients():
    model = build_model({"frontend": {"name": "sinc", "n_filters": 8}, "backend": {"name": "pool-linear"}})
    model(torch.randn(2, 2000)).sum().backward()
    assert model.frontend.low_offset_hz.grad.abs().sum() > 0
    assert torch.isfinite(model.frontend.band_offset_hz.grad).all()


@pytest.mark.parametrize("backend", [
    {"name": "lcnn"}, {"name": "lcnn", "lstm": False, "width": 0.5}, {"name": "resnet", "pooling": "attentive"},
    {"name": "ffn", "pooling": "mean_std"}, {"name": "pool-linear"},
    {"name": "aasist", "input_pool": [2, 1], "time_pool": [2, 2, 2, 1, 1, 1]},
])
def test_backends_handle_lengths_and_short_inputs(backend):
    model = build_model({"frontend": {"name": "logmel", "n_mels": 40}, "backend": backend}).eval()
    for samples in (16000, 800):  # 1 s, and 50 ms (a handful of frames)
        logits = model(torch.randn(3, samples), torch.tensor([samples, samples * 2 // 3, samples // 2]))
        assert logits.shape == (3, 2) and torch.isfinite(logits).all()


AASIST_WAVE_LENGTHS = [16000, 12000]  # 1 s and 0.75 s in one padded batch


@pytest.fixture(scope="module")
def aasist():
    """The aasist-sinc preset in eval mode, run once on a padded batch: the model, its inputs, the front-end
    output, the (masked) encoder output, the logits, and the output shapes of every graph stage."""
    from spoofrl.models import load_model_preset
    torch.manual_seed(0)
    model = build_model(load_model_preset("aasist-sinc")).eval()
    wave = 0.1 * torch.randn(2, max(AASIST_WAVE_LENGTHS), generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor(AASIST_WAVE_LENGTHS)
    backend, shapes, hooks = model.backend, {}, []

    def shape_of(x):
        return tuple(shape_of(t) for t in x) if isinstance(x, tuple) else tuple(x.shape)
    for name, module in backend.named_modules():
        if name.startswith(("gat_", "pool_", "hsgal", "out")) and name.count(".") <= 1:
            hooks.append(module.register_forward_hook(
                lambda mod, inp, out, name=name: shapes.update({name: (shape_of(inp[0]), shape_of(out))})))
    with torch.no_grad():
        feats, frames = model.extract_features(wave, lengths)
        encoded = backend._encode(feats, frames)
        logits = model(wave, lengths)
    for hook in hooks:
        hook.remove()
    return {"model": model, "wave": wave, "lengths": lengths, "feats": feats, "frames": frames, "encoded": encoded,
            "logits": logits, "shapes": shapes}


def test_aasist_preset_has_the_published_size_and_structure(aasist):
    """The aasist-sinc preset is AASIST (Jung et al., ICASSP 2022) as published: ~297 k parameters, a fixed
    70-filter sinc front-end, a 6-block residual encoder, GAT on 24 spectral and on the temporal nodes,
    graph pooling by [0.5, 0.7, 0.5, 0.5], two HS-GAL branches of two layers (64 -> 32) with a master node,
    and a 5 x 32 readout into 2 logits."""
    model, shapes = aasist["model"], aasist["shapes"]
    assert 280_000 < count_parameters(model) < 320_000  # AASIST: ~297 k parameters
    assert model.backend.pos_spectral.shape[1] == 24  # 70 sinc filters, pooled by 3 (ceil)
    assert not [n for n, p in model.frontend.named_parameters() if p.requires_grad]  # fixed sinc, as published
    assert [b.conv1.out_channels for b in model.backend.encoder] == [32, 32, 64, 64, 64, 64]
    # one padded batch: [B, 2] finite logits
    assert aasist["logits"].shape == (2, 2) and torch.isfinite(aasist["logits"]).all()
    # 16000 samples -> 5334 frames (sinc pool 3) -> 8 encoder frames (6 time pools of 3, ceil); 12000 -> 6
    assert aasist["frames"].tolist() == [5334, 4000] and aasist["encoded"].shape == (2, 64, 24, 8)
    # the padded item's frames past its length are zeroed after the encoder; the longer item's are not
    encoded = aasist["encoded"]
    assert (encoded[1, :, :, 6:] == 0).all() and (encoded[1, :, :, 5] != 0).any() and (encoded[0, :, :, 7] != 0).any()
    b = 2
    assert shapes["gat_spectral"] == ((b, 24, 64), (b, 24, 64)) and shapes["pool_spectral"][1] == (b, 12, 64)
    assert shapes["gat_temporal"] == ((b, 8, 64), (b, 8, 64)) and shapes["pool_temporal"][1] == (b, 5, 64)
    for k in (0, 1):  # two parallel branches: HS-GAL -> graph pooling -> HS-GAL, each with a master node
        assert shapes[f"hsgal1.{k}"] == ((b, 5, 64), ((b, 5, 32), (b, 12, 32), (b, 1, 32)))
        assert shapes[f"pool_hs_temporal.{k}"][1] == (b, 2, 32) and shapes[f"pool_hs_spectral.{k}"][1] == (b, 6, 32)
        assert shapes[f"hsgal2.{k}"] == ((b, 2, 32), ((b, 2, 32), (b, 6, 32), (b, 1, 32)))
        layer = model.backend.hsgal1[k]
        assert (layer.temperature, model.backend.hsgal2[k].temperature) == (100.0, 100.0)
        assert len({id(w) for w in (layer.w11, layer.w22, layer.w12, layer.w_master)}) == 4  # per node-type pair
    assert (model.backend.gat_spectral.temperature, model.backend.gat_temporal.temperature) == (2.0, 2.0)
    assert shapes["out"] == ((b, 160), (b, 2))  # readout: max |.| and mean of each node type + master


# (parameter, smallest change of the logits it must cause). Attention vectors act through a softmax at the
# layer's temperature (HS-GAL: 100, near-uniform attention): they are perturbed `temperature` times as much,
# and their smaller effect is still 100x above rounding (the unperturbed forward reproduces the logits exactly)
AASIST_STAGES = [
    ("pos_spectral", 1e-3), ("gat_spectral.with_att.weight", 1e-3), ("gat_spectral.att_weight", 1e-5),
    ("gat_temporal.with_att.weight", 1e-3), ("gat_temporal.att_weight", 1e-5),
    ("pool_spectral.score.weight", 1e-3), ("pool_temporal.score.weight", 1e-3),
    *[(f"masters.{k}", 1e-3) for k in (0, 1)],
    *[(f"{layer}.{k}.{w}", 1e-3) for layer in ("hsgal1", "hsgal2") for k in (0, 1)
      for w in ("with_att.weight", "type1.weight", "type2.weight", "with_att_master.weight")],
    *[(f"{layer}.{k}.{w}", 1e-5) for layer in ("hsgal1", "hsgal2") for k in (0, 1)
      for w in ("w11", "w22", "w12", "w_master")],
    *[(f"{pool}.{k}.score.weight", 1e-3) for pool in ("pool_hs_spectral", "pool_hs_temporal") for k in (0, 1)],
    ("out.weight", 1e-3),
]


def test_aasist_every_graph_stage_shapes_the_output(aasist):
    """Perturbing a weight of each graph stage - both GATs, every graph pooling, each HS-GAL layer of both
    branches (node transforms and the type-specific attention vectors T-T, S-S, T-S and master), the master
    nodes, the positional embedding, the readout - changes the logits: no stage is bypassed."""
    import copy
    model = copy.deepcopy(aasist["model"])
    encoded = aasist["encoded"]
    model.backend._encode = lambda feats, lengths: encoded  # the encoder's output, computed once
    feats, frames = aasist["feats"], aasist["frames"]
    params = dict(model.backend.named_parameters())
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        base = model.forward_features(feats, frames)
        assert torch.equal(base, aasist["logits"])
        for name, at_least in AASIST_STAGES:
            p = params[name]
            kept = p.clone()
            owner = model.backend.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model.backend
            scale = owner.temperature if at_least < 1e-3 else 1.0  # attention vectors: see AASIST_STAGES
            p.add_(torch.randn(p.shape, generator=generator) * (p.std() if p.numel() > 1 else 1.0) * scale)
            change = (model.forward_features(feats, frames) - base).abs().max().item()
            p.copy_(kept)
            assert change > at_least, (name, change)
        assert torch.equal(model.forward_features(feats, frames), base)  # every weight restored


def test_aasist_short_input_and_gradients():
    """A 0.1 s clip (one temporal node left after pooling) still gives finite [1, 2] logits; one training step's
    backward pass reaches the learnable sinc front-end, the encoder and every graph module."""
    from spoofrl.models import load_model_preset
    torch.manual_seed(0)
    spec = load_model_preset("aasist-sinc")
    model = build_model({"frontend": dict(spec.frontend, learnable=True), "backend": spec.backend})
    model.eval()
    with torch.no_grad():
        short = model(0.1 * torch.randn(1, 1600), torch.tensor([1600]))
    assert short.shape == (1, 2) and torch.isfinite(short).all()
    model.train()
    wave = 0.1 * torch.randn(2, 4800, generator=torch.Generator().manual_seed(3))
    logits = model(wave, torch.tensor([4800, 3600]))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    without = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0]
    assert without == [], without
    names = {n.split(".")[0] + "." + n.split(".")[1] for n, _ in model.named_parameters()}
    assert {"frontend.low_offset_hz", "frontend.band_offset_hz", "backend.encoder", "backend.gat_spectral",
            "backend.gat_temporal", "backend.hsgal1", "backend.hsgal2", "backend.pool_hs_spectral",
            "backend.masters", "backend.out"} <= names


def test_lcnn_mfm_halves_channels():
    from spoofrl.models.lcnn import MaxFeatureMap
    x = torch.randn(2, 6, 4, 4)
    out = MaxFeatureMap()(x)
    assert out.shape == (2, 3, 4, 4) and torch.equal(out, torch.maximum(x[:, :3], x[:, 3:]))


def test_unknown_options_are_named():
    with pytest.raises(ConfigError, match="'n_mel'.*frontend\\(logmel\\)"):
        build_model({"frontend": {"name": "logmel", "n_mel": 40}, "backend": {"name": "pool-linear"}})
    with pytest.raises(ConfigError, match="'hiden'.*backend\\(ffn\\)"):
        build_model({"frontend": {"name": "logmel"}, "backend": {"name": "ffn", "hiden": [3]}})
    with pytest.raises(ConfigError, match="unknown back-end 'lcn'"):
        build_model({"frontend": {"name": "logmel"}, "backend": {"name": "lcn"}})
    with pytest.raises(ConfigError, match="kernel_size"):
        build_model({"frontend": {"name": "sinc", "kernel_size": 128}, "backend": {"name": "pool-linear"}})
    with pytest.raises(ConfigError, match="time_pool"):
        build_model({"frontend": {"name": "sinc"}, "backend": {"name": "aasist", "time_pool": [3]}})


def test_model_section_may_name_a_preset():
    cfg = model_config_from_dict({"preset": "lcnn-lfcc"})
    assert cfg.frontend["name"] == "lfcc" and cfg.backend["name"] == "lcnn"
    cfg = model_config_from_dict({"preset": "lcnn-lfcc", "backend": {"lstm": False}})
    assert cfg.backend == {"name": "lcnn", "lstm": False, "dropout": 0.7}
    cfg = model_config_from_dict({"preset": "lcnn-lfcc", "backend": {"name": "ffn"}})
    assert cfg.backend == {"name": "ffn"}  # another component: the preset's options do not carry over


def test_load_model_errors(tmp_path):
    model = build_model({"frontend": {"name": "logmel", "n_mels": 20}, "backend": {"name": "pool-linear"}})
    folder = save_model(model, tmp_path / "run")
    if not torch.cuda.is_available():
        with pytest.raises(SpoofrlError, match="CUDA is not available"):
            load_model(folder, "cuda")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SpoofrlError, match="model.safetensors"):
        load_model(folder)
    save_model(build_model({"frontend": {"name": "logmel", "n_mels": 30}, "backend": {"name": "pool-linear"}}),
               tmp_path / "other")
    (tmp_path / "other" / "config.yaml").write_text((folder / "config.yaml").read_text())
    with pytest.raises(SpoofrlError, match="do not match"):
        load_model(tmp_path / "other")
    with pytest.raises(SpoofrlError, match="not found"):
        load_model(tmp_path / "nowhere")


def test_saved_config_is_fully_resolved(tmp_path):
    import yaml
    model = build_model({"frontend": {"name": "lfcc"}, "backend": {"name": "resnet"}})
    save_model(model, tmp_path / "run", run_config={"seed": 3})
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["seed"] == 3
    assert saved["model"]["frontend"]["delta_order"] == 2 and saved["model"]["backend"]["blocks"] == [2, 2, 2, 2]


@pytest.mark.parametrize("frontend, backend, match", [
    ({"name": "logmel", "n_mels": 0}, {}, "n_mels must be > 0"),
    ({"name": "logmel", "n_mels": 300}, {}, "cover no FFT bin"),  # 300 mel bands on a 512-point FFT
    ({"name": "logmel", "log_floor": 0.0}, {}, "log_floor must be > 0"),
    ({"name": "lfcc", "f_min": 0.0, "f_max": 20.0}, {}, "cover no FFT bin"),
    ({"name": "lfcc", "log_floor": float("nan")}, {}, "log_floor must be > 0"),
    ({"name": "sinc", "min_band_hz": 0.0}, {}, "min_band_hz > 0"),
    ({"name": "sinc", "min_low_hz": -5.0}, {}, "min_low_hz >= 0"),
    ({}, {"name": "pool-linear", "dropout": 1.5}, r"dropout must be in \[0, 1\)"),
    ({}, {"name": "resnet", "dropout": -0.1}, r"dropout must be in \[0, 1\)"),
    ({}, {"name": "resnet", "embed_dim": 0}, "embed_dim must be > 0"),
    ({}, {"name": "aasist", "branch_dropout": float("nan")}, "branch_dropout"),
    ({}, {"name": "aasist", "input_proj": -1}, "input_proj must be >= 0"),
    ({}, {"name": "aasist", "temperatures": [2.0, 0.0, 100.0, 100.0]}, "temperatures must be > 0"),
    ({}, {"name": "lcnn", "width": float("nan")}, "width must be > 0"),
])
def test_impossible_options_fail_at_build_time_naming_the_option(frontend, backend, match):
    """Each of these used to build a model that crashed in torch or produced constant / non-finite features."""
    spec = {"frontend": frontend or {"name": "logmel"}, "backend": backend or {"name": "pool-linear"}}
    with pytest.raises(ConfigError, match=match):
        build_model(spec)


def test_front_end_analyses_audio_at_the_model_sample_rate():
    model = build_model({"frontend": {"name": "logmel", "f_max": 4000.0}, "backend": {"name": "pool-linear"},
                         "sample_rate": 8000})
    assert model.frontend.cfg.sample_rate == 8000 and model.resolved_config().frontend["sample_rate"] == 8000
    # a 1 kHz tone peaks in the mel band around 1 kHz of an 8 kHz analysis
    import librosa
    t = torch.arange(8000) / 8000
    feats, _ = model.frontend(torch.sin(2 * torch.pi * 1000 * t)[None], torch.tensor([8000]))
    centres = librosa.mel_frequencies(n_mels=80 + 2, fmin=20.0, fmax=4000.0)[1:-1]
    assert abs(centres[int(feats[0].mean(0).argmax())] - 1000) < 60
    with pytest.raises(ConfigError, match="sample_rate is 16000 but model.sample_rate is 8000"):
        build_model({"frontend": {"name": "lfcc", "sample_rate": 16000, "f_max": 4000.0},
                     "backend": {"name": "pool-linear"}, "sample_rate": 8000})
    with pytest.raises(ConfigError, match="f_max <= sample_rate/2"):  # the 16 kHz default f_max of 8 kHz
        build_model({"frontend": {"name": "lfcc"}, "backend": {"name": "pool-linear"}, "sample_rate": 8000})


def test_score_is_the_log_odds_of_bona_fide():
    model = build_model({"frontend": {"name": "logmel", "n_mels": 20}, "backend": {"name": "pool-linear"}}).eval()
    wave = torch.randn(3, 4000)
    with torch.no_grad():
        logits = model(wave)
        model.backend.head.bias[1] += 2.0  # favour bona fide by 2 nats
        favoured = model(wave)
    probs = torch.softmax(logits, dim=-1)
    score = model.logits_to_score(logits)
    # softmax, ratio and log (or a sigmoid): a few float32 roundings on |logits| < 10 (exp turns an absolute
    # error of eps |z| into a relative one); log10 for ln, or the other class's odds, would be off by > 0.1
    tol = float_tol(torch.float32, 8, 10)       # 1e-5
    torch.testing.assert_close(score, torch.log(probs[:, 1] / probs[:, 0]), rtol=0, atol=tol)  # natural log
    torch.testing.assert_close(torch.sigmoid(score), probs[:, 1], rtol=0, atol=tol)
    assert torch.equal(model.score(wave), model.logits_to_score(favoured))       # the same forward
    torch.testing.assert_close(model.score(wave) - score, torch.full((3,), 2.0), rtol=0, atol=tol)  # up = bona fide


def test_load_model_devices_and_build_errors(tmp_path):
    tiny_ssl = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                    conv_dim=[8, 8], conv_stride=[5, 4], conv_kernel=[10, 8], num_conv_pos_embeddings=4,
                    num_conv_pos_embedding_groups=2)
    model = build_model({"frontend": {"name": "ssl", "config": tiny_ssl}, "backend": {"name": "pool-linear"}})
    folder = save_model(model, tmp_path / "run")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(load_model(folder, "auto").parameters()).device.type == expected
    with pytest.raises(SpoofrlError, match="bad device 'gpu'"):
        load_model(folder, "gpu")
    # a layer the saved encoder does not have: found only while building, still reported against the file
    text = (folder / "config.yaml").read_text().replace("layers: []", "layers: 1-5").replace("fusion: last",
                                                                                           "fusion: concat")
    (folder / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"run/config.yaml: .*layer 5 does not exist"):
        load_model(folder)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_trained_folder_loads_on_cpu_and_cuda(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build_model({"frontend": {"name": "lfcc"}, "backend": {"name": "lcnn", "width": 0.5}}).to("cuda")
    wave = torch.randn(2, 8000, device="cuda")
    torch.nn.functional.cross_entropy(model(wave), torch.tensor([0, 1], device="cuda")).backward()
    model.eval()
    folder = save_model(model, tmp_path / "run")
    on_cpu, on_gpu = load_model(folder, "cpu"), load_model(folder, "cuda")
    assert next(on_cpu.parameters()).device.type == "cpu" and on_gpu.frontend.window.device.type == "cuda"
    # cuDNN convolutions default to TF32 (10-bit mantissa): off here, so both devices compute in float32, along
    # other kernels: the LFCC (512-point STFT, 257-bin filters, 20-point DCT) and the LCNN's ~9 convolutions
    # (5 x 5 and 3 x 3 taps over <= 48 channels) and dense layers, ~350 roundings by chain_ops, on activations
    # |x| < 10: 4e-4; weights that did not load would move the scores by 0.1 or more
    tol = float_tol(torch.float32, 350, 10)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.testing.assert_close(on_cpu.score(wave.cpu()), model.score(wave).cpu(), rtol=0, atol=tol)
    torch.testing.assert_close(on_gpu.score(wave), model.score(wave), rtol=0, atol=tol)
