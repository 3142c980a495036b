"""SSL front-end: families, local checkpoint folders, layer selection and fusion (shapes AND which layers)."""
from __future__ import annotations

import copy

import pytest
import torch

from spoofrl.errors import ConfigError
from spoofrl.features.ssl import parse_layers
from spoofrl.models import build_model, load_model, save_model

TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
            conv_dim=[16, 16, 16], conv_stride=[5, 4, 16], conv_kernel=[10, 8, 16],
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, mask_time_prob=0.0)
WAVE = torch.randn(2, 6400, generator=torch.Generator().manual_seed(0))


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
    torch.testing.assert_close(raw[:, :, 0], _reference_layer_output(full.frontend, k))
    assert not torch.allclose(raw[:, :, 0], _reference_layer_output(full.frontend, k + 1))


def test_layer_zero_is_the_transformer_input():
    model = ssl_model(fusion="concat", layers=[0, 1])
    raw, _ = model.extract_features(WAVE)
    layer1 = model.frontend.ssl.encoder.layers[0]
    with torch.no_grad():
        again = layer1(raw[:, :, 0])
    again = again[0] if isinstance(again, tuple) else again
    torch.testing.assert_close(raw[:, :, 1], again)


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
    torch.testing.assert_close(perturbed[:, :, :2], clean[:, :, :2])
    torch.testing.assert_close(perturbed[:, :, 2], clean[:, :, 2] + 1.0)
    assert not torch.allclose(perturbed[:, :, 3], clean[:, :, 3])


def test_weighted_sum_weights_get_gradients_and_match_manual_fusion():
    model = ssl_model(fusion="weighted_sum", layers="1-3", frozen=True).train()
    with torch.no_grad():
        model.frontend.layer_weights.copy_(torch.tensor([0.0, 1.0, -1.0]))
    raw, frame_lengths = model.extract_features(WAVE)
    feats = model.frontend.head(raw, frame_lengths)
    w = torch.softmax(torch.tensor([0.0, 1.0, -1.0]), 0)
    torch.testing.assert_close(feats, w[0] * raw[:, :, 0] + w[1] * raw[:, :, 1] + w[2] * raw[:, :, 2])
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
    torch.testing.assert_close(model.forward_features(raw, frame_lengths), model(WAVE))
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
    torch.testing.assert_close(raw[:, :, 0], expected)
    save_model(model, tmp_path / "run")
    import shutil
    shutil.rmtree(tmp_path / "ckpt")
    torch.testing.assert_close(load_model(tmp_path / "run").score(WAVE), model.score(WAVE))


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
    torch.testing.assert_close(raw[:, :, 0], expected)
    padded = torch.cat([WAVE[:1, :4000], torch.zeros(1, 2400)], dim=1)
    batch = torch.cat([padded, WAVE[1:]])
    raw_batch, frames = model.extract_features(batch, torch.tensor([4000, 6400]))
    alone, frames_alone = model.extract_features(WAVE[:1, :4000])
    assert frames[0] == frames_alone[0] == alone.shape[1]
    torch.testing.assert_close(raw_batch[:1, :frames[0]], alone, atol=1e-4, rtol=1e-4)
