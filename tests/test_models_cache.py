"""Frozen-front-end feature cache (spoofrl.features.cache) and the two-stage Detector API."""
from __future__ import annotations

import pytest
import torch

from conftest import chain_ops, float_tol
from spoofrl.errors import ConfigError
from spoofrl.features.cache import FeatureCache, feature_cache_key
from spoofrl.models import build_model

TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
            conv_dim=[16, 16, 16], conv_stride=[5, 4, 16], conv_kernel=[10, 8, 16],
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, mask_time_prob=0.0)
# TINY's features along two float32 paths (alone vs in a group, another batch shape): its longest chain of
# reductions (the conv feature extractor's 10, 16 x 8 and 16 x 16 taps, the 16 -> 32 projection, the positional
# conv's 16 x 8, then per layer (1-3) 32-wide projections and norms, 16-wide heads over <= 19 frames and the
# 64-wide feed-forward) is ~200 roundings (chain_ops), on |features| <= 3 (layer-normed): 7e-5. Zero padding
# mixed into an utterance moves its features by ~0.5. The logits add a mean over <= 19 frames and the 32 -> 16
# -> 2 head (weights < 1/sqrt(32)) on the same magnitude.
LAYER = (32,) * 6 + (16, 19, 64)
FEATURE_OPS = chain_ops(10, 128, 256, 16, 128, *LAYER * 3)
FEATURE_TOL = float_tol(torch.float32, FEATURE_OPS, 3)
LOGIT_TOL = float_tol(torch.float32, FEATURE_OPS + chain_ops(19, 3, 32, 16), 3)


def frozen_ssl(**frontend):
    torch.manual_seed(0)
    spec = {"name": "ssl", "config": TINY, "frozen": True, "layers": "1-3", "fusion": "weighted_sum", **frontend}
    return build_model({"frontend": spec, "backend": {"name": "ffn", "hidden": [16], "dropout": 0.0}}).eval()


def batch():
    g = torch.Generator().manual_seed(3)
    wave = torch.randn(3, 6400, generator=g)
    lengths = torch.tensor([6400, 4800, 6400])
    wave[1, 4800:] = 0
    return ["a.wav", "b.wav", "c.wav"], wave, lengths


def test_cache_hits_reproduce_direct_features(tmp_path):
    model = frozen_ssl()
    ids, wave, lengths = batch()
    cache = FeatureCache(tmp_path, model, dtype="float32")
    first, frames = cache.extract(model, ids, wave, lengths)
    assert (cache.hits, cache.misses) == (0, 3)
    again, frames_again = cache.extract(model, ids, wave, lengths)
    assert (cache.hits, cache.misses) == (3, 3)
    assert torch.equal(again, first)          # float32 entries read back as they were computed
    assert frames.tolist() == frames_again.tolist() == [19, 14, 19]
    # entries equal the front-end run on each utterance alone (no padding involved)
    alone, _ = model.extract_features(wave[1:2, :4800])
    torch.testing.assert_close(first[1, :14], alone[0], rtol=0, atol=FEATURE_TOL)
    assert (first[1, 14:] == 0).all()
    # equal-length utterances: the cached path gives the same logits as the plain forward pass
    direct = model(wave[[0, 2]], lengths[[0, 2]])
    torch.testing.assert_close(model.forward_features(first[[0, 2]], frames[[0, 2]]), direct, rtol=0, atol=LOGIT_TOL)
    assert len(list(cache.dir.rglob("*.safetensors"))) == 3


def test_float16_cache_is_close_and_consistent_across_epochs(tmp_path):
    model = frozen_ssl()
    ids, wave, lengths = batch()
    cache = FeatureCache(tmp_path, model)  # float16 by default
    first, frames = cache.extract(model, ids, wave, lengths)
    second, _ = FeatureCache(tmp_path, model).extract(model, ids, wave, lengths)
    torch.testing.assert_close(second, first, rtol=0, atol=0)  # epoch 1 sees what later epochs read
    exact, _ = model.extract_features(wave[:1])
    # float16 storage: one rounding of half an ulp (eps 9.8e-4 relative) on top of the float32 paths' noise
    torch.testing.assert_close(first[:1], exact, rtol=float_tol(torch.float16), atol=FEATURE_TOL)


def test_changed_input_under_same_id_is_recomputed(tmp_path):
    model = frozen_ssl()
    ids, wave, lengths = batch()
    cache = FeatureCache(tmp_path, model, dtype="float32")
    cache.extract(model, ids, wave, lengths)
    changed = wave.clone()
    changed[0] *= 0.5
    out, _ = cache.extract(model, ids, changed, lengths)
    assert cache.misses == 4  # a.wav recomputed, b and c reused
    expected, _ = model.extract_features(changed[:1])
    torch.testing.assert_close(out[:1], expected, rtol=0, atol=FEATURE_TOL)   # the old entry: 0.5x the input


def test_cache_key_follows_encode_options_only():
    base = feature_cache_key(frozen_ssl())
    assert feature_cache_key(frozen_ssl(fusion="concat", proj_dim=8)) == base  # head-only change
    assert feature_cache_key(frozen_ssl(layers="1-2")) != base
    assert feature_cache_key(frozen_ssl(normalize_waveform=False)) != base
    other_weights = frozen_ssl()
    with torch.no_grad():
        other_weights.frontend.ssl.encoder.layers[0].feed_forward.output_dense.bias.add_(0.1)
    assert feature_cache_key(other_weights) != base


def test_trainable_frontend_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="trainable"):
        FeatureCache(tmp_path, frozen_ssl(frozen=False))
    sinc = build_model({"frontend": {"name": "sinc"}, "backend": {"name": "pool-linear"}})
    assert not sinc.frontend_is_frozen
    fixed = build_model({"frontend": {"name": "sinc", "learnable": False}, "backend": {"name": "pool-linear"}})
    assert fixed.frontend_is_frozen and not fixed.frontend_cache_recommended


def test_two_stage_api_equals_forward_for_every_frontend():
    for frontend in ({"name": "logmel"}, {"name": "lfcc"}, {"name": "sinc"}):
        model = build_model({"frontend": frontend, "backend": {"name": "pool-linear"}}).eval()
        wave, lengths = torch.randn(2, 4000), torch.tensor([4000, 3000])
        raw, frames = model.extract_features(wave, lengths)
        assert torch.equal(model.forward_features(raw, frames), model(wave, lengths))   # forward is these two


def test_corrupt_or_truncated_entry_is_recomputed(tmp_path, caplog):
    model = frozen_ssl()
    ids, wave, lengths = batch()
    cache = FeatureCache(tmp_path, model, dtype="float32")
    first, _ = cache.extract(model, ids, wave, lengths)
    entry = cache.path_for("b.wav")
    entry.write_bytes(entry.read_bytes()[:50])  # e.g. a disk that filled up under another tool
    again, _ = cache.extract(model, ids, wave, lengths)
    assert cache.misses == 4 and "unreadable" in caplog.text
    assert torch.equal(again, first)          # b.wav recomputed alone, as the first time: the same path
    third, _ = FeatureCache(tmp_path, model, dtype="float32").extract(model, ids, wave, lengths)
    assert torch.equal(third, first)          # the rewritten entry reads back
