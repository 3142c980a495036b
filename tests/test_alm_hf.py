"""Hugging Face audio LLM backends (spoofrl.alm.hf): Qwen2-Audio, the Qwen2.5-Omni thinker, Granite Speech.

Each model is a tiny random config (1 LM layer, width 32, a 1-2 layer audio encoder, a 300-token tokenizer
trained here with the family's special tokens and a chat template in its style), saved with save_pretrained
and loaded back through `load_hf_alm` from the folder, as a real checkpoint would be.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import chain_ops, float_tol, spectral_db_tol
from spoofrl.alm import AlmBatch, AudioLM, SamplingConfig, completion_mask
from spoofrl.alm.hf import LoraOptions, detect_kind, load_hf_alm
from spoofrl.alm.hf.features import granite_audio_tokens, granite_frames, granite_log_mel, whisper_log_mel
from spoofrl.errors import ConfigError

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

KINDS = ["qwen2_audio", "qwen2_5_omni_thinker", "granite_speech"]
from spoofrl.alm.hf.tiny import BUILDERS, PROMPT, build_granite, granite_config, granite_tokenizer, scrambled  # noqa: E402,E501

# Log-probs of one tiny model along two float32 paths (batched vs alone, cached decoding vs one forward, merged
# vs separate LoRA weights, our scoring vs the model's own forward). The longest chain of reductions, Granite's:
# the 512-point STFT and 257-bin mel sums, 2 Conformer layers of width 32 (64-wide feed-forward and pointwise
# convs, 16-wide heads over a 20-frame context, a 5-tap depthwise conv), a Q-Former layer (cross-attention
# over a 15-frame window), one LM layer of width 32 (~40 positions, 64-wide MLP) and a 300-way log-softmax: ~340
# roundings (chain_ops), on |logits| < 5 and |log-probs| < 10 (measured ranges of these weights, not the noise)
CONFORMER = (32,) * 9 + (64,) * 3 + (16, 20, 5)
LOGP_TOL = float_tol(torch.float32, chain_ops(512, 257, *CONFORMER * 2, *(32,) * 7, 64, 16, 15,
                                              *(32,) * 7, 40, 64, 300), 10)     # 4e-4
# Effects the tests check are >= 0.2 (another clip, one Adam step of lr 1e-2 on the adapters, an adapter of
# weights ~0.5): 30 LOGP_TOL (1.2e-2) tells them from rounding with margins of 30 and 15 either side
EFFECT = 30 * LOGP_TOL


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for kind, build in BUILDERS.items():
        torch.manual_seed(0)
        out[kind] = tmp_path_factory.mktemp(kind)
        build(out[kind])
    return out


def clips(seed: int = 0, lengths=(4800, 8800)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=g) for n in lengths]


def make_batch(seed: int = 0) -> AlmBatch:
    """Two clips of different lengths (0.3 s, 0.55 s); the audio marked in one prompt, first in the other."""
    return AlmBatch.from_waves(clips(seed), [f"<audio>{PROMPT}", PROMPT], references=["it sounds low", "high"],
                               label=["it sounds low", "high"])


def load(folders, kind, **kwargs):
    return load_hf_alm(folders[kind], device="cpu", **kwargs)


def sample(model, batch, num=2, length=6, seed=1, **sampling):
    return model.generate(batch, num, SamplingConfig(max_completion_length=length, **sampling),
                          generator=torch.Generator().manual_seed(seed))


def assert_log_power_close(mine, ref, n_ops):
    """Features of one clip in Whisper's / Granite's units, log10(power) / 4 (+ offset): 40 dB per unit. A cell
    L dB under the clip's loudest carries 10^(L/20) times the loudest's rounding error (spectral_db_tol): ~1e-6
    at the top, ~1e-2 at the floor 80 dB down that both extractors clamp at; a wrong window, frame or filter
    moves the loud cells by 1e-2 to 1."""
    ref = torch.as_tensor(ref, dtype=torch.float64)
    below_db = (40 * (ref.max() - ref)).numpy()
    tol = torch.from_numpy(spectral_db_tol(below_db, n_ops) / 40)
    gap = (mine.double() - ref).abs()
    assert (gap <= tol).all(), float((gap / tol).max())


WHISPER_OPS = chain_ops(400, 201)     # float32 STFT of 400 samples, mel filters summing up to 201 bins
GRANITE_OPS = chain_ops(512, 257)


def adam_step(model, loss_fn, lr=1e-2):
    params = model.trainable_parameters()
    optimizer = torch.optim.Adam(params, lr=lr)
    optimizer.zero_grad()
    loss_fn().backward()
    optimizer.step()


# --- feature extraction ----------------------------------------------------------------------------------------
def test_whisper_log_mel_matches_transformers_whisper_feature_extractor():
    waves = clips(3, (4800, 8800, 20800))        # the last one is cut at the 1 s chunk
    batch = AlmBatch.from_waves(waves, PROMPT)
    extractor = transformers.WhisperFeatureExtractor(feature_size=16, chunk_length=1)
    ref = extractor([w.numpy() for w in waves], sampling_rate=16000, return_attention_mask=True,
                    return_tensors="pt")
    mine, frames = whisper_log_mel(batch.waves, batch.lengths, n_mels=16, max_samples=16000, fixed_length=True)
    assert mine.shape == ref.input_features.shape == (3, 16, 100)
    assert torch.equal(frames, ref.attention_mask.sum(-1))
    for i in range(3):
        assert_log_power_close(mine[i], ref.input_features[i], WHISPER_OPS)
    # variable length (the Omni thinker): 128 mels, 30 s chunks, each clip's valid frames only
    extractor = transformers.WhisperFeatureExtractor(feature_size=128)
    ref = extractor([w.numpy() for w in waves], sampling_rate=16000, return_attention_mask=True,
                    return_tensors="pt")
    mine, frames = whisper_log_mel(batch.waves, batch.lengths, n_mels=128, max_samples=480000)
    assert torch.equal(frames, ref.attention_mask.sum(-1)) and mine.shape[-1] == int(frames.max()) == 130
    for i, f in enumerate(frames.tolist()):
        assert_log_power_close(mine[i, :, :f], ref.input_features[i, :, :f], WHISPER_OPS)


def granite_definition_mel(wave: np.ndarray, n_mels=16, n_fft=512, win=400, hop=160, sr=16000) -> np.ndarray:
    """torchaudio.transforms.MelSpectrogram's published defaults re-implemented in float64 numpy: centred frames
    with reflect padding, a periodic Hann window of `win` samples centred in n_fft, power spectrum, HTK mel
    filters without normalisation (melscale_fbanks) from 0 Hz to Nyquist. -> [n_mels, T]."""
    x = np.pad(np.asarray(wave, np.float64), n_fft // 2, mode="reflect")
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2:(n_fft - win) // 2 + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    count = 1 + (len(x) - n_fft) // hop
    power = np.stack([np.abs(np.fft.rfft(x[t * hop:t * hop + n_fft] * window)) ** 2 for t in range(count)])

    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    points = 700.0 * (10 ** (np.linspace(mel(0.0), mel(sr / 2), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    slopes = points[None, :] - freqs[:, None]
    gaps = np.diff(points)
    bank = np.maximum(0.0, np.minimum(-slopes[:, :-2] / gaps[:-1], slopes[:, 2:] / gaps[1:]))
    return (power @ bank).T


def granite_definition(wave: np.ndarray, n_mels=16) -> np.ndarray:
    """GraniteSpeechFeatureExtractor._extract_mel_spectrograms for one clip, written out: log10 floored at
    1e-10, floored at max - 8, / 4 + 1, last frame dropped if odd, frame pairs stacked."""
    logmel = np.log10(np.maximum(granite_definition_mel(wave, n_mels).T, 1e-10))
    logmel = np.maximum(logmel, logmel.max() - 8.0) / 4 + 1
    logmel = logmel[:len(logmel) - len(logmel) % 2]
    return logmel.reshape(-1, 2 * n_mels)


def test_granite_features_match_the_published_definition(monkeypatch):
    from transformers.models.granite_speech import feature_extraction_granite_speech as fx

    for n in (4800, 8800, 4960, 300):
        wave = clips(5, (n,))[0]
        mine = granite_log_mel(wave, n_mels=16)
        expected = granite_definition(wave.numpy())
        assert mine.shape == expected.shape == (granite_frames(n), 32)
        assert_log_power_close(mine, expected, GRANITE_OPS)      # float32 against the float64 definition
    # the extractor's own code after the mel filter bank (log, floor, stacking), with the definition's mel
    # spectrogram in place of torchaudio's (which does not import here)
    class DefinitionMel:
        def to(self, device):
            return self

        def __call__(self, audio):
            return torch.from_numpy(np.stack([granite_definition_mel(a.numpy()) for a in audio])).float()

    monkeypatch.setattr(fx, "requires_backends", lambda *args, **kwargs: None)
    fake = SimpleNamespace(mel_filters=DefinitionMel(), melspec_kwargs={"hop_length": 160},
                           projector_window_size=15, projector_downsample_rate=5)
    wave = clips(6, (8800,))[0]
    theirs = fx.GraniteSpeechFeatureExtractor._extract_mel_spectrograms(fake, wave[None])
    assert_log_power_close(granite_log_mel(wave, n_mels=16), theirs[0], GRANITE_OPS)
    lengths = [300, 4800, 8800, 16000, 47999]
    counts = fx.GraniteSpeechFeatureExtractor._get_num_audio_features(fake, lengths)
    assert counts == [granite_audio_tokens(granite_frames(n), 15, 5) for n in lengths]


def test_granite_features_match_the_real_extractor_when_torchaudio_imports():
    pytest.importorskip("torchaudio", reason="torchaudio does not import here: GraniteSpeechFeatureExtractor "
                                             "cannot be built (the definition test above covers it)")
    from transformers import GraniteSpeechFeatureExtractor

    wave = clips(7, (8800,))[0]
    theirs = GraniteSpeechFeatureExtractor(n_mels=16)([wave])["input_features"]
    assert_log_power_close(granite_log_mel(wave, n_mels=16), theirs[0], GRANITE_OPS)


def test_audio_token_counts_match_the_processors(folders):
    from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import _get_feat_extract_output_lengths

    lengths = torch.tensor([321, 4800, 8800, 16000, 47999])
    omni = load(folders, "qwen2_5_omni_thinker")
    frames = (lengths + 159) // 160
    assert omni.audio_token_counts(lengths) == _get_feat_extract_output_lengths(frames).tolist()
    # Qwen2-Audio: its processor expands the placeholder and computes the features; ours must match both
    model = load(folders, "qwen2_audio")
    processor = transformers.Qwen2AudioProcessor.from_pretrained(str(folders["qwen2_audio"]))
    batch = make_batch()
    for i in range(2):
        item = batch.select([i])
        text = model.render_prompt(item.prompts[0])
        out = processor(text=[text], audio=[item.waves[0].numpy()], sampling_rate=16000, return_tensors="pt")
        assert out["input_ids"][0].tolist() == model.prompt_rows(item, model.audio_token_counts(item.lengths))[0]
        mine = model.audio_inputs(item.waves, item.lengths)
        assert_log_power_close(mine["input_features"][0], out["input_features"][0], WHISPER_OPS)
        assert torch.equal(mine["feature_attention_mask"], out["feature_attention_mask"].long())


# --- the AudioLM interface, per model family ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_load_generate_shapes_eos_and_truncation(folders, kind):
    model = load(folders, kind)
    assert isinstance(model, AudioLM) and detect_kind(folders[kind]) == kind and not model.training
    assert model.render_prompt(PROMPT).count(model.audio_token) == 1
    model.logit_bias[model.eos_token_id] = 4.0   # EOS likely: some rows end, some run to the limit
    batch = make_batch()
    comps = sample(model, batch, num=4, length=3)
    b, n, t = comps.ids.shape
    assert (b, n) == (2, 4) and 1 <= t <= 3 and comps.mask.shape == comps.logprobs.shape == (2, 4, t)
    has_eos = (comps.ids == model.eos_token_id).any(-1)
    assert torch.equal(comps.truncated, ~has_eos) and comps.truncated.any() and has_eos.any()
    assert torch.equal(comps.mask, completion_mask(comps.ids, model.eos_token_id))
    assert (comps.ids[~comps.mask] == model.pad_token_id).all()
    assert torch.equal(comps.mask.sum(-1)[comps.truncated], torch.full((int(comps.truncated.sum()),), t))
    assert (comps.logprobs[comps.mask] < 0).all() and (comps.logprobs[~comps.mask] == 0).all()
    assert comps.text == model.decode(comps.ids, comps.mask)
    assert not torch.isin(comps.ids, torch.tensor(model.suppressed_tokens())).any()


@pytest.mark.parametrize("kind", KINDS)
def test_token_logprobs_equal_the_generation_logprobs(folders, kind):
    model = load(folders, kind)
    batch = make_batch()
    for sampling in ({}, {"temperature": 0.7, "top_k": 20}):
        comps = sample(model, batch, num=2, length=6, **sampling)
        logp, mask = model.token_logprobs(batch, comps, grad=False, temperature=comps.temperature)
        assert logp.dtype == torch.float32 and torch.equal(mask, comps.mask)
        assert float((logp - comps.logprobs).abs().max()) < LOGP_TOL
    # an item scored alone gives what it got in the batch (its features and audio never see its batch mate)
    alone, _ = model.token_logprobs(batch.select([1]), comps.select([1]), grad=False, temperature=0.7)
    assert float((alone - logp[1:, :, :alone.shape[-1]]).abs().max()) < LOGP_TOL


@pytest.mark.parametrize("kind", KINDS)
def test_scoring_matches_the_models_own_forward(folders, kind):
    """The model's own forward (its processor-shaped audio inputs, its audio merging, its lm_head), one item
    at a time without padding, gives the same log-probs as our left-padded batched scoring."""
    model = load(folders, kind)
    batch = make_batch()
    comps = model.completions_from_text(["it sounds low", "high low"])
    logp, mask = model.token_logprobs(batch, comps, grad=False)
    for i in range(2):
        item = batch.select([i])
        target = comps.ids[i, 0][comps.mask[i, 0]]
        row = model.prompt_rows(item, model.audio_token_counts(item.lengths))[0]
        ids = torch.tensor([row + target.tolist()])
        with torch.no_grad():
            out = model.core(input_ids=ids, attention_mask=torch.ones_like(ids),
                             **model.audio_inputs(item.waves, item.lengths))
        logits = out.logits[0, len(row) - 1:len(row) - 1 + len(target)].float() + model.logit_bias
        native = torch.log_softmax(logits, -1).gather(-1, target[:, None]).squeeze(-1)
        assert float((native - logp[i, 0][mask[i, 0]]).abs().max()) < LOGP_TOL


@pytest.mark.parametrize("kind", KINDS)
def test_logprobs_depend_on_the_audio(folders, kind):
    model = load(folders, kind)
    batch = make_batch()
    comps = model.completions_from_text(batch.references)
    logp, _ = model.token_logprobs(batch, comps, grad=False)
    other = make_batch()                 # item 0 becomes a tone instead of noise; item 1 stays
    other.waves[0, :4800] = 0.3 * torch.sin(2 * torch.pi * 300 * torch.arange(4800) / 16000)
    changed, _ = model.token_logprobs(other, comps, grad=False)
    assert float((changed[0] - logp[0]).abs().max()) > EFFECT
    assert float((changed[1] - logp[1]).abs().max()) < LOGP_TOL      # same shapes, other batch mate
    # and gradients reach the audio encoder through the scoring forward
    model.model.zero_grad()
    logp, _ = model.token_logprobs(batch, comps, grad=True)
    (-logp.sum()).backward()
    audio = model.core.get_submodule(model.audio_paths[0])
    assert sum(float(p.grad.abs().sum()) for p in audio.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_lora_sits_on_the_language_model_and_one_sft_step_lowers_the_loss(folders, kind):
    from peft.tuners.lora import LoraLayer

    model = load(folders, kind, lora={"r": 4, "alpha": 8.0})        # as read from YAML
    assert model.lora == LoraOptions(r=4, alpha=8.0)
    adapted = [n for n, m in model.core.named_modules() if isinstance(m, LoraLayer)]
    assert len(adapted) == 4 and all(n.startswith(model.lm_path + ".") for n in adapted)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    model.train()
    assert all(not m.training for p in model.audio_paths for m in model.core.get_submodule(p).modules())
    batch = make_batch()
    before = float(model.sft_loss(batch))
    adam_step(model, lambda: model.sft_loss(batch), lr=2e-2)
    model.eval()
    assert float(model.sft_loss(batch)) < before - EFFECT      # the loss, a mean of log-probs, fell by > 1e-2


@pytest.mark.parametrize("kind", KINDS)
def test_grpo_step_changes_the_adapters_and_reference_is_the_base_model(folders, kind):
    from spoofrl.alm.policy import AlmPolicy
    from spoofrl.rewards import RewardSpec, build_rewards
    from spoofrl.rl import GRPOSettings, make_rollout, train_on_rollout

    base = load(folders, kind)
    model = load(folders, kind, lora=LoraOptions(r=4, alpha=8.0))
    batch = make_batch()
    probe = model.completions_from_text(["it sounds low", "high"])
    base_logp, _ = base.token_logprobs(batch, probe, grad=False)
    policy = AlmPolicy(model, SamplingConfig(max_completion_length=4))
    reference = AlmPolicy(model.reference_view(), policy.sampling, grad=False)
    rewards = build_rewards([RewardSpec(name="answer")])
    # mixed policy: the reference text is one member of each group, so the advantages are not all zero
    settings = GRPOSettings(num_generations=3, beta=0.04, mixed_policy=True)
    rollout = make_rollout(policy, batch, rewards, settings, ref_policy=reference,
                           generator=torch.Generator().manual_seed(0))
    assert torch.equal(rollout.rewards[:, -1], torch.ones(2)) and rollout.advantages.abs().sum() > 0
    own = policy.log_prob(batch, rollout.actions)
    assert float((rollout.ref_logp - own.logp.detach()).abs().max()) < LOGP_TOL   # adapters start at zero
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    history = train_on_rollout(policy, rollout, settings, optimizer, num_iterations=1, micro_batch_size=1)
    model.eval()
    assert np.isfinite(history[0]["loss"])
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)
    outside, _ = model.token_logprobs(batch, probe, grad=False)
    with model.reference():
        inside, _ = model.token_logprobs(batch, probe, grad=False)
    view, _ = model.reference_view().token_logprobs(batch, probe, grad=False)
    assert float((inside - base_logp).abs().max()) < LOGP_TOL and torch.equal(inside, view)
    assert float((outside - base_logp).abs().max()) > EFFECT


@pytest.mark.parametrize("kind", KINDS)
def test_save_merged_and_adapter_folders_round_trip(folders, kind, tmp_path):
    model = load(folders, kind, lora=LoraOptions(r=4, alpha=8.0))
    batch = make_batch()
    adam_step(model, lambda: model.sft_loss(batch), lr=2e-2)
    probe = model.completions_from_text(["it sounds low", "high"])
    trained, _ = model.token_logprobs(batch, probe, grad=False)
    with model.reference():
        base, _ = model.token_logprobs(batch, probe, grad=False)
    merged = load_hf_alm(model.save(tmp_path / "merged", merge=True), device="cpu")
    assert type(merged) is type(model) and merged.lora is None and not hasattr(merged.model, "peft_config")
    logp, _ = merged.token_logprobs(batch, probe, grad=False)
    assert float((logp - trained).abs().max()) < LOGP_TOL          # W + BA folded vs applied apart
    folder = model.save(tmp_path / "adapters", merge=False)
    assert (folder / "adapter_config.json").is_file() and not (folder / "config.json").exists()
    again = load_hf_alm(folder, device="cpu")
    assert again.lora.r == 4 and again.lora.alpha == 8.0 and again.trainable_parameters()
    logp, _ = again.token_logprobs(batch, probe, grad=False)
    assert torch.equal(logp, trained)             # the same weights through the same modules: bit for bit
    with again.reference():
        logp, _ = again.token_logprobs(batch, probe, grad=False)
    assert torch.equal(logp, base)


@pytest.mark.parametrize("kind", ["qwen2_audio", "granite_speech"])
def test_training_the_audio_encoder_keeps_the_original_for_the_reference(folders, kind, tmp_path):
    model = load(folders, kind, lora=LoraOptions(r=4, freeze_audio_encoder=False))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("modules_to_save" in n for n in trainable) and any("lora_" in n for n in trainable)
    batch = make_batch()
    probe = model.completions_from_text(["it sounds low", "high"])
    with model.reference():
        base, _ = model.token_logprobs(batch, probe, grad=False)
    adam_step(model, lambda: model.sft_loss(batch), lr=2e-2)
    trained, _ = model.token_logprobs(batch, probe, grad=False)
    with model.reference():
        again, _ = model.token_logprobs(batch, probe, grad=False)
    assert torch.equal(again, base) and float((trained - base).abs().max()) > EFFECT
    merged = load_hf_alm(model.save(tmp_path / "merged"), device="cpu")
    logp, _ = merged.token_logprobs(batch, probe, grad=False)
    assert float((logp - trained).abs().max()) < LOGP_TOL          # W + BA folded vs applied apart


@pytest.mark.parametrize("freeze", [True, False])
def test_adapter_state_names_load_an_adapter_file_as_peft_does(folders, freeze, tmp_path):
    """What the trainer loads a stage's best adapters with (also into FSDP shards): the adapter file's tensors
    under the model's own state-dict names, every other weight left alone; peft's set_peft_model_state_dict
    gives the same model. freeze False: the trained audio encoder's copies (modules_to_save) too."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file
    lora = LoraOptions(r=4, alpha=8.0, freeze_audio_encoder=freeze)
    model = load(folders, "qwen2_audio", lora=lora)
    batch = make_batch()
    adam_step(model, lambda: model.sft_loss(batch), lr=2e-2)
    adapters = load_file(str(model.save(tmp_path / "adapters", merge=False) / "adapter_model.safetensors"))
    ours, theirs = load(folders, "qwen2_audio", lora=lora), load(folders, "qwen2_audio", lora=lora)
    named = ours.adapter_state_names(adapters)
    assert len(named) == len(adapters) and all(k in dict(ours.named_parameters()) for k in named)
    result = ours.load_state_dict(named, strict=False)
    assert not result.unexpected_keys
    set_peft_model_state_dict(theirs.model, adapters)
    mine, peft_loaded, trained = ours.state_dict(), theirs.state_dict(), model.state_dict()
    assert all(torch.equal(mine[k], peft_loaded[k]) and torch.equal(mine[k], trained[k]) for k in mine)
    with pytest.raises(ConfigError, match="lack"):
        ours.adapter_state_names({"base_model.model.nothing.lora_A.weight": torch.zeros(1)})


# --- loading ------------------------------------------------------------------------------------------------------
def test_full_qwen2_5_omni_checkpoint_loads_its_thinker(folders, tmp_path):
    """A Qwen2.5-Omni folder (model_type qwen2_5_omni, weights under "thinker."): the thinker is loaded."""
    from safetensors.torch import load_file, save_file

    source = folders["qwen2_5_omni_thinker"]
    folder = tmp_path / "omni"
    shutil.copytree(source, folder)
    weights = load_file(str(source / "model.safetensors"))
    save_file({f"thinker.{k}": v for k, v in weights.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    thinker = json.loads((source / "config.json").read_text())
    full = transformers.Qwen2_5OmniConfig(thinker_config=thinker, enable_audio_output=False)
    full.save_pretrained(str(folder))
    assert json.loads((folder / "config.json").read_text())["model_type"] == "qwen2_5_omni"
    model, reference = load_hf_alm(folder, device="cpu"), load(folders, "qwen2_5_omni_thinker")
    batch = make_batch()
    probe = model.completions_from_text(batch.references)
    assert torch.equal(model.token_logprobs(batch, probe, grad=False)[0],
                       reference.token_logprobs(batch, probe, grad=False)[0])


def test_granite_embedded_adapter_is_merged_at_load(tmp_path):
    """Granite Speech checkpoints carry a LoRA beside the base weights, which transformers switches on with
    audio: loading folds it in (here through peft directly, as transformers' own adapter loading needs a newer
    peft than the one installed)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    native = scrambled(transformers.GraniteSpeechForConditionalGeneration(
        granite_config(granite_tokenizer(), has_lora_adapter=True)))
    folder = tmp_path / "granite"
    build_granite(folder, native)
    native = get_peft_model(native, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in native.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    native.save_pretrained(str(folder))          # adapter_config.json + adapter_model.safetensors
    model = load_hf_alm(folder, device="cpu")
    assert model.lora is None and not any("lora" in n for n, _ in model.named_parameters())
    batch = make_batch().select([0])
    target = model.completions_from_text(["it sounds low"])
    logp, _ = model.token_logprobs(batch, target, grad=False)
    row = model.prompt_rows(batch, model.audio_token_counts(batch.lengths))[0]
    ids = torch.tensor([row + target.ids[0, 0].tolist()])
    native.eval()
    with torch.no_grad():
        logits = native(input_ids=ids, **model.audio_inputs(batch.waves, batch.lengths)).logits
    t = target.ids.shape[-1]
    expected = torch.log_softmax(logits[0, len(row) - 1:len(row) - 1 + t].float() + model.logit_bias, -1)
    expected = expected.gather(-1, target.ids[0, 0][:, None]).squeeze(-1)
    assert float((expected - logp[0, 0]).abs().max()) < LOGP_TOL    # merged at load vs peft's separate LoRA
    with native.disable_adapter(), torch.no_grad():
        plain = native(input_ids=ids, **model.audio_inputs(batch.waves, batch.lengths)).logits
    assert float((plain - logits).abs().max()) > EFFECT          # the adapter mattered


def test_loader_errors_name_the_folder_and_what_is_missing(folders, tmp_path):
    def message(folder, **kwargs) -> str:
        with pytest.raises(ConfigError) as err:
            load_hf_alm(folder, device="cpu", **kwargs)
        text = str(err.value)
        assert "\n" not in text and str(folder) in text
        return text

    assert "no such model folder" in message(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "no config.json" in message(tmp_path / "empty")
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert "'llama' is not a supported audio LLM" in message(tmp_path / "llama")
    assert "holds a qwen2_audio model, not granite_speech" in message(folders["qwen2_audio"], kind="granite_speech")
    copy = tmp_path / "no_weights"
    shutil.copytree(folders["granite_speech"], copy)
    (copy / "model.safetensors").unlink()
    assert "no weights" in message(copy)
    copy = tmp_path / "no_tokenizer"
    shutil.copytree(folders["granite_speech"], copy)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (copy / name).unlink()
    assert "no tokenizer" in message(copy)
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/x"}))
    assert "'org/x' is not a local model folder" in message(tmp_path / "adapters")


def test_options_and_misuse_errors(folders):
    from spoofrl.config import from_dict

    assert from_dict(LoraOptions, {"r": 8, "alpha": 16}).target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    for bad in ({"r": 0}, {"target_modules": []}, {"target_modules": ["a.b"]}, {"bias": "some"}):
        with pytest.raises(ConfigError):
            from_dict(LoraOptions, bad)
    model = load(folders, "qwen2_audio")
    with pytest.raises(ConfigError, match="needs LoRA adapters"), model.reference():
        pass
    with pytest.raises(ConfigError, match="reserved tokens"):
        model.completions_from_text(["a <|AUDIO|> b"])
    with pytest.raises(ConfigError, match="2 <audio> placeholders"):
        model.render_prompt("<audio> and <audio>")
    with pytest.raises(ConfigError, match="too short"):
        model.generate(AlmBatch.from_waves([torch.zeros(200)], PROMPT), 1)
    with pytest.raises(ConfigError, match="matched|target"):
        load(folders, "qwen2_audio", lora=LoraOptions(target_modules=["no_such_layer"]))
