"""SSL front-end: families, local checkpoint folders, layer selection and fusion (shapes AND which layers)."""
from __future__ import annotations

import copy

import pytest
import torch

from conftest import chain_ops, float_tol
from spoofrl.errors import ConfigError
from spoofrl.features.ssl import parse_layers
from spoofrl.models import build_model, load_model, save_model

TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
            conv_dim=[16, 16, 16], conv_stride=[5, 4, 16], conv_kernel=[10, 8, 16],
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, mask_time_prob=0.0)
WAVE = torch.randn(2, 6400, generator=torch.Generator().manual_seed(0))
LAYER = (32,) * 6 + (16, 19, 64)   # a TINY layer's reductions: 32-wide projections and norms, 16-wide heads over
                                   # <= 19 frames, the 64-wide feed-forward


def hidden_tol(layers: int) -> float:
    """Hidden states of TINY-sized encoders through `layers` layers, along two float32 paths (with or without an
    attention mask, our hooks vs Hugging Face's call, a layer re-run, another batch shape): the conv feature
    extractor's 10, 16 x 8 and 16 x 16 taps, the 16 -> 32 projection, the positional conv's 16 x 8 and the
    layers' reductions (chain_ops: ~250 for 4 layers), on |h| <= 4 (layer-normed; 3.2 at most here): ~1e-4.
    Effects checked are >= 3e-2 (a layer of these 0.02-initialised encoders moves the stream by that much)."""
    return float_tol(torch.float32, chain_ops(10, 128, 256, 16, 128, *LAYER * layers), 4)


def ssl_model(**frontend):
    frontend.setdefault("config", TINY)
    torch.manual_seed(0)
    return build_model({"frontend": {"name": "ssl", **frontend}, "backend": {"name": "pool-linear"}}).eval()


def test_parse_layers():
    assert parse_layers("4-9") == [4, 5, 6, 7, 8, 9]
    assert parse_layers("3,5, 7") == [3, 5, 7]
    assert parse_layers([2, 1, 2]) == [1, 2]
    assert parse_layers("") == []
    for bad in ("a-b", "5-3", [-1]):
        with pytest.raises(ConfigError):
            parse_layers(bad)


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm", "hubert"])
def test_families_build_and_fuse(family):
    model = ssl_model(model_type=family, layers="1-3", fusion="weighted_sum")
    raw, frame_lengths = model.extract_features(WAVE, torch.tensor([6400, 3200]))
    assert raw.shape == (2, 19, 3, 32)  # 6400 samples -> 19 frames (CNN without padding), 3 layers, hidden 32
    assert frame_lengths.tolist() == [19, 9]
    assert model.frontend.family == family and model.frontend.out_dim == 32
    assert model(WAVE).shape == (2, 2)


def test_fusion_shapes_and_projection():
    assert ssl_model(fusion="concat", layers="2-4").frontend.out_dim == 3 * 32
    assert ssl_model(fusion="concat", layers="2-4", proj_dim=16).frontend.out_dim == 16
    last = ssl_model()  # default: fusion 'last' on the last layer
    assert last.frontend.layer_ids == [4]
    everything = ssl_model(fusion="weighted_sum")
    assert everything.frontend.layer_ids == [0, 1, 2, 3, 4]
    feats, _ = everything.frontend(WAVE, torch.tensor([6400, 6400]))
    assert feats.shape == (2, 19, 32)


def test_unused_top_layers_are_removed():
    model = ssl_model(fusion="concat", layers="1-2")
    assert len(model.frontend.ssl.encoder.layers) == 2
    assert not any(".layers.2." in name for name in model.state_dict())


def _reference_layer_output(frontend, k: int) -> torch.Tensor:
    """Output of transformer layer k computed by Hugging Face itself: the model cut after k layers
    (post-norm wav2vec 2.0's last_hidden_state is the last layer's output)."""
    hf = copy.deepcopy(frontend.ssl)
    hf.encoder.layers = hf.encoder.layers[:k]
    from spoofrl.features.ssl import normalize_waveform
    wave = normalize_waveform(WAVE, torch.tensor([6400, 6400]))
    with torch.no_grad():
        return hf(wave).last_hidden_state


@pytest.mark.parametrize("k", [1, 3])
def test_selected_layer_is_the_right_one(k):
    model = ssl_model(fusion="last", layers=[k])
    raw, _ = model.extract_features(WAVE)
    full = ssl_model(fusion="last")  # same seed -> same weights, all 4 layers kept
    torch.testing.assert_close(raw[:, :, 0], _reference_layer_output(full.frontend, k), rtol=0, atol=hidden_tol(k))
    # the next layer's output differs by ~3e-2
    assert float((raw[:, :, 0] - _reference_layer_output(full.frontend, k + 1)).abs().max()) > 30 * hidden_tol(4)


def test_layer_zero_is_the_transformer_input():
    model = ssl_model(fusion="concat", layers=[0, 1])
    raw, _ = model.extract_features(WAVE)
    layer1 = model.frontend.ssl.encoder.layers[0]
    with torch.no_grad():
        again = layer1(raw[:, :, 0])
    again = again[0] if isinstance(again, tuple) else again
    torch.testing.assert_close(raw[:, :, 1], again, rtol=0, atol=hidden_tol(1))


def test_perturbing_a_layer_changes_only_that_layer_and_later_slots():
    model = ssl_model(fusion="concat", layers="1-4")
    clean, _ = model.extract_features(WAVE)
    layers = model.frontend.ssl.encoder.layers
    # prepend: runs before the front-end's own hook, as if layer 3 itself had computed something else
    handle = layers[2].register_forward_hook(lambda mod, args, out: (out[0] + 1.0, *out[1:])
                                             if isinstance(out, tuple) else out + 1.0, prepend=True)
    try:
        perturbed, _ = model.extract_features(WAVE)
    finally:
        handle.remove()
    # slots hold layers 1, 2, 3, 4; the hook changed layer 3's output
    assert torch.equal(perturbed[:, :, :2], clean[:, :, :2])      # the same layers on the same input
    # layer 3 + 1.0 added by the hook and here: one float32 rounding each, of |h| + 1 <= 5
    torch.testing.assert_close(perturbed[:, :, 2], clean[:, :, 2] + 1.0, rtol=0, atol=float_tol(torch.float32, 2, 5))
    assert float((perturbed[:, :, 3] - clean[:, :, 3]).abs().max()) > 30 * hidden_tol(4)


def test_weighted_sum_weights_get_gradients_and_match_manual_fusion():
    model = ssl_model(fusion="weighted_sum", layers="1-3", frozen=True).train()
    with torch.no_grad():
        model.frontend.layer_weights.copy_(torch.tensor([0.0, 1.0, -1.0]))
    raw, frame_lengths = model.extract_features(WAVE)
    feats = model.frontend.head(raw, frame_lengths)
    w = torch.softmax(torch.tensor([0.0, 1.0, -1.0]), 0)
    # the softmax and a 3-term sum, in whatever order: a few float32 roundings of |h| <= 4; the weights of
    # another layer (or unnormalised ones) would move the sum by O(1)
    torch.testing.assert_close(feats, w[0] * raw[:, :, 0] + w[1] * raw[:, :, 1] + w[2] * raw[:, :, 2], rtol=0,
                               atol=float_tol(torch.float32, 8, 4))
    model.forward_features(raw, frame_lengths).sum().backward()
    grad = model.frontend.layer_weights.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().min() > 0
    assert all(p.grad is None for p in model.frontend.ssl.parameters())  # frozen encoder


def test_frozen_encoder_stays_in_eval_mode_and_forward_splits():
    model = ssl_model(frozen=True, fusion="weighted_sum")
    model.train()
    assert not model.frontend.ssl.training and model.backend.training
    assert model.frontend_is_frozen and model.frontend_cache_recommended
    raw, frame_lengths = model.extract_features(WAVE)
    assert not raw.requires_grad  # frozen: computed without autograd
    assert torch.equal(model.forward_features(raw, frame_lengths), model(WAVE))   # forward is these two calls
    tuned = ssl_model(frozen=False, freeze_feature_encoder=True)
    assert not tuned.frontend_is_frozen
    assert not any(p.requires_grad for p in tuned.frontend.ssl.feature_extractor.parameters())
    assert all(p.requires_grad for p in tuned.frontend.ssl.encoder.parameters())


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm", "hubert"])
def test_local_checkpoint_folder(family, tmp_path):
    import transformers
    from spoofrl.features.ssl import FAMILIES
    config_cls, model_cls = (getattr(transformers, n) for n in FAMILIES[family])
    torch.manual_seed(1)
    hf = model_cls(config_cls(**TINY)).eval()
    hf.save_pretrained(str(tmp_path / "ckpt"))
    model = build_model({"frontend": {"name": "ssl", "path": str(tmp_path / "ckpt"), "normalize_waveform": False},
                         "backend": {"name": "pool-linear"}}).eval()
    assert model.frontend.family == family  # model_type 'auto' read from config.json
    with torch.no_grad():
        expected = hf(WAVE).last_hidden_state
    raw, _ = model.extract_features(WAVE)
    torch.testing.assert_close(raw[:, :, 0], expected, rtol=0, atol=hidden_tol(4))
    save_model(model, tmp_path / "run")
    import shutil
    shutil.rmtree(tmp_path / "ckpt")
    assert torch.equal(load_model(tmp_path / "run").score(WAVE), model.score(WAVE))   # same weights, same path


def test_bad_ssl_configs_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        ssl_model(path=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="hidden_sise"):
        ssl_model(config={**TINY, "hidden_sise": 8})
    with pytest.raises(ConfigError, match="layers 0..4"):
        ssl_model(layers="3-7", fusion="concat")
    with pytest.raises(ConfigError, match="one layer"):
        ssl_model(layers="1-2", fusion="last")
    with pytest.raises(ConfigError, match="frontend.path"):
        build_model({"frontend": {"name": "ssl"}, "backend": {"name": "pool-linear"}})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(ConfigError, match="empty"):
        ssl_model(path=str(tmp_path / "empty"))


def test_prenorm_model_last_layer_and_padding_mask():
    """For a pre-norm ("stable layer norm", XLS-R-like) model, layer N includes the final layer norm, and the
    padding mask makes a padded utterance's frames equal to those of the utterance alone."""
    cfg = {**TINY, "do_stable_layer_norm": True, "feat_extract_norm": "layer"}
    model = ssl_model(config=cfg, normalize_waveform=False)
    assert model.frontend.use_attention_mask
    raw, _ = model.extract_features(WAVE)
    with torch.no_grad():
        expected = model.frontend.ssl(WAVE).last_hidden_state
    torch.testing.assert_close(raw[:, :, 0], expected, rtol=0, atol=hidden_tol(4))
    padded = torch.cat([WAVE[:1, :4000], torch.zeros(1, 2400)], dim=1)
    batch = torch.cat([padded, WAVE[1:]])
    raw_batch, frames = model.extract_features(batch, torch.tensor([4000, 6400]))
    alone, frames_alone = model.extract_features(WAVE[:1, :4000])
    assert frames[0] == frames_alone[0] == alone.shape[1]
    # without the mask the zeros would enter every frame through attention and the positional conv: >= 3e-2
    torch.testing.assert_close(raw_batch[:1, :frames[0]], alone, rtol=0, atol=hidden_tol(4))


SIX_LAYERS = {**TINY, "num_hidden_layers": 6}


def _checkpoint(folder, family: str, config: dict, head: str = "Model"):
    """A Hugging Face folder written with save_pretrained; returns the bare encoder it holds, in eval mode."""
    import transformers
    from spoofrl.features.ssl import FAMILIES
    config_name, model_name = FAMILIES[family]
    torch.manual_seed(2)
    hf = getattr(transformers, model_name.replace("Model", head))(getattr(transformers, config_name)(**config))
    hf.save_pretrained(str(folder))
    return getattr(hf, hf.base_model_prefix, hf).eval()


def _from_folder(folder, **frontend):
    spec = {"name": "ssl", "path": str(folder), "normalize_waveform": False, **frontend}
    return build_model({"frontend": spec, "backend": {"name": "pool-linear"}}).eval()


@pytest.mark.parametrize("family", ["wav2vec2", "wavlm", "hubert"])
def test_selected_layers_are_hugging_face_hidden_states(family, tmp_path):
    """Slots of a range such as '2-4' hold exactly hidden_states[2..4] of the checkpoint, and each fusion
    combines those (and only those)."""
    hf = _checkpoint(tmp_path / "ckpt", family, SIX_LAYERS)
    with torch.no_grad():
        states = hf(WAVE, output_hidden_states=True).hidden_states  # 7 tensors: input + 6 layers
    concat = _from_folder(tmp_path / "ckpt", layers="2-4", fusion="concat")
    raw, frames = concat.extract_features(WAVE)
    for slot, layer in enumerate((2, 3, 4)):
        torch.testing.assert_close(raw[:, :, slot], states[layer], rtol=0, atol=hidden_tol(layer))
    torch.testing.assert_close(concat.frontend.head(raw, frames), torch.cat(states[2:5], dim=-1), rtol=0,
                               atol=hidden_tol(4))
    summed = _from_folder(tmp_path / "ckpt", layers="0,3,6", fusion="weighted_sum")
    with torch.no_grad():
        summed.frontend.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
        feats, _ = summed.frontend(WAVE, frames)
    w = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0)
    torch.testing.assert_close(feats, w[0] * states[0] + w[1] * states[3] + w[2] * states[6], rtol=0,
                               atol=hidden_tol(6) + float_tol(torch.float32, 8, 4))
    last = _from_folder(tmp_path / "ckpt", layers=[5], fusion="last")
    torch.testing.assert_close(last.frontend(WAVE, frames)[0], states[5], rtol=0, atol=hidden_tol(5))


def _perturb_layer(folder, layer: int) -> None:
    """Add noise to every weight of transformer layer `layer` (1-based) in a saved checkpoint."""
    from safetensors.torch import load_file, save_file
    path = folder / "model.safetensors"
    state = load_file(str(path))
    marker = f"encoder.layers.{layer - 1}."
    hit = [k for k in state if marker in k]
    assert hit
    for k in hit:
        state[k] = state[k] + 0.5 * torch.randn_like(state[k])
    save_file(state, str(path), metadata={"format": "pt"})


def test_only_selected_layers_and_those_below_matter(tmp_path):
    """Changing a layer above the selection leaves the features bit-identical (those layers are not even
    run); changing a selected layer or one below it changes them."""
    _checkpoint(tmp_path / "ckpt", "wav2vec2", SIX_LAYERS)

    def features(**frontend):
        raw, _ = _from_folder(tmp_path / "ckpt", **frontend).extract_features(WAVE)
        return raw

    spec = {"layers": "1,3", "fusion": "concat"}
    clean = features(**spec)
    _perturb_layer(tmp_path / "ckpt", 5)
    _perturb_layer(tmp_path / "ckpt", 6)
    assert torch.equal(features(**spec), clean)
    _perturb_layer(tmp_path / "ckpt", 2)  # between the selected layers: slot 1 (layer 1) keeps its value
    changed = features(**spec)
    assert torch.equal(changed[:, :, 0], clean[:, :, 0])
    # weights +0.5 noise in layer 2, or two more layers: far above the rounding of hidden_tol(6)
    assert float((changed[:, :, 1] - clean[:, :, 1]).abs().max()) > 30 * hidden_tol(6)
    assert float((features(layers=[6], fusion="last") - features(layers=[4], fusion="last")).abs().max()) > \
        30 * hidden_tol(6)


def test_xlsr_style_checkpoint_with_pretraining_heads(tmp_path, caplog, capfd):
    """XLS-R / MMS checkpoints are wav2vec 2.0 pre-training (or CTC) models, pre-norm, with tensors under a
    'wav2vec2.' prefix plus a quantizer or an output head; the encoder loads from them exactly, with one
    log line instead of transformers' loading report."""
    import logging
    prenorm = {**TINY, "do_stable_layer_norm": True, "feat_extract_norm": "layer", "vocab_size": 12}
    hf = _checkpoint(tmp_path / "xlsr", "wav2vec2", prenorm, head="ForPreTraining")
    with caplog.at_level(logging.INFO, logger="spoofrl.features.ssl"):
        model = _from_folder(tmp_path / "xlsr")
    assert model.frontend.use_attention_mask  # layer-norm CNN features: padding masks are used
    with torch.no_grad():
        expected = hf(WAVE).last_hidden_state
    torch.testing.assert_close(model.extract_features(WAVE)[0][:, :, 0], expected, rtol=0, atol=hidden_tol(4))
    assert "7 checkpoint tensors outside the encoder ignored (e.g. project_hid" in caplog.text
    assert "LOAD REPORT" not in capfd.readouterr().err
    hf = _checkpoint(tmp_path / "mms", "wav2vec2", prenorm, head="ForCTC")
    with torch.no_grad():
        expected = hf(WAVE).last_hidden_state
    torch.testing.assert_close(_from_folder(tmp_path / "mms").extract_features(WAVE)[0][:, :, 0], expected, rtol=0,
                               atol=hidden_tol(4))


def test_unbuildable_hugging_face_config_is_a_config_error():
    with pytest.raises(ConfigError, match=r"config: cannot build a wav2vec2 encoder"):
        ssl_model(config={**TINY, "hidden_size": 30, "num_conv_pos_embedding_groups": 4})


def test_gradient_checkpointing_gives_the_same_gradients():
    quiet = {**TINY, "hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
             "feat_proj_dropout": 0.0}

    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = ssl_model(config=quiet, frozen=False, layers="1-3", fusion="weighted_sum",
                          gradient_checkpointing=checkpointing).train()
        model(WAVE).sum().backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys() and any(".encoder.layers.0." in n for n in plain)
    # the same forward re-run inside the backward pass, whose sums may be taken in another order: the forward's
    # chain twice plus the sums over 2 x 19 frames, on |grad| (~2 at most); a gradient lost to checkpointing
    # would be off by all of itself
    scale = max(float(g.abs().max()) for g in plain.values())
    tol = float_tol(torch.float32, 2 * chain_ops(10, 128, 256, 16, 128, *LAYER * 3) + chain_ops(38), scale)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=0, atol=tol, msg=name)


def test_missing_transformers_is_explained(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an install without the [ssl] extra sees
    with pytest.raises(ConfigError, match=r"needs Hugging Face transformers: pip install 'spoofrl\[ssl\]'"):
        ssl_model()


def test_damaged_checkpoint_folders_name_the_folder(tmp_path):
    _checkpoint(tmp_path / "ckpt", "wav2vec2", TINY)
    with pytest.raises(ConfigError, match=r"ckpt: cannot load a wav2vec2 encoder \(tensor shapes"):
        _from_folder(tmp_path / "ckpt", config={"hidden_size": 64})
    with open(tmp_path / "ckpt" / "model.safetensors", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(ConfigError, match=r"ckpt: cannot load a wav2vec2 encoder \(SafetensorError"):
        _from_folder(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"ckpt: cannot load .*no file named model.safetensors"):
        _from_folder(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ConfigError, match=r"config.json: model_type 'bert' is not supported"):
        _from_folder(tmp_path / "ckpt")
