"""Granite Speech: stacked log-mel front-end (alm.hf.features.granite_log_mel), a conformer CTC encoder, a
windowed Q-Former projector, a Granite LM; the audio as `<|audio|>` in the prompt, EOS the tokenizer's
eos_token (`<|end_of_text|>`).

Audio positions per clip, as GraniteSpeechFeatureExtractor counts them and the projector produces them:
F = (samples // 160 + 1) // 2 stacked frames, in ceil(F / window_size) blocks of window_size // downsample_rate
query outputs each.

The encoder has no padding mask (its block attention, depthwise convolutions and projector windows would
mix a padded batch's zeros into a short clip), so each clip is encoded alone: its embeddings never depend on
its batch mates. The checkpoints ship a LoRA adapter that transformers enables whenever audio is present;
`load_hf_alm` folds it into the weights at load time (alm.hf.lora.merge_embedded_adapters), since every
prompt here has audio. Logits are the model's lm_head outputs, as GraniteSpeechForConditionalGeneration's
forward computes them (without the text config's logits_scaling).
"""
from __future__ import annotations

import torch

from spoofrl.alm.hf.base import HfAlm
from spoofrl.alm.hf.features import granite_audio_tokens, granite_frames, granite_log_mel
from spoofrl.errors import ConfigError


class GraniteSpeechAlm(HfAlm):
    kind = "granite_speech"
    model_class = "GraniteSpeechForConditionalGeneration"
    audio_paths = ("model.encoder", "model.projector")

    def setup_audio(self) -> None:
        super().setup_audio()
        config = self.core.config
        width = int(config.encoder_config.input_dim)
        self.n_mels = self.feature_int("n_mels", self.feature_int("feature_size", width // 2))
        if 2 * self.n_mels != width:
            raise ConfigError(f"{self.folder}: the feature extractor stacks 2 x {self.n_mels} mel bands, the "
                              f"encoder takes {width}")
        self.sample_rate = self.feature_int("sampling_rate", 16000)
        self.n_fft = self.feature_int("n_fft", 512)
        self.win_length = self.feature_int("win_length", 400)
        self.hop = self.feature_int("hop_length", 160)
        self.window_size = int(config.window_size)
        self.downsample_rate = int(config.downsample_rate)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """One clip [S] -> [F, 2 x n_mels]."""
        return granite_log_mel(wave, n_mels=self.n_mels, sample_rate=self.sample_rate, n_fft=self.n_fft,
                               win_length=self.win_length, hop=self.hop)

    def audio_token_counts(self, lengths: torch.Tensor) -> list[int]:
        return [granite_audio_tokens(granite_frames(int(n), self.hop), self.window_size, self.downsample_rate)
                for n in lengths.tolist()]

    def audio_inputs(self, waves, lengths):
        feats = [self.features(waves[i, :int(n)]) for i, n in enumerate(lengths.tolist())]
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        counts = torch.tensor(self.audio_token_counts(lengths), device=padded.device)
        mask = torch.arange(int(counts.max()), device=padded.device)[None] < counts[:, None]
        return {"input_features": padded, "input_features_mask": mask}

    def encode_audio(self, waves, lengths):
        dtype = self.audio_dtype()
        counts = self.audio_token_counts(lengths)
        parts = []
        for i, n in enumerate(lengths.tolist()):
            feats = self.features(waves[i, :int(n)])[None].to(dtype)
            parts.append(self.core.model.get_audio_features(feats).pooler_output[0])
            if parts[-1].shape[0] != counts[i]:
                raise ConfigError(f"the Granite projector returned {parts[-1].shape[0]} positions for clip {i}, "
                                  f"expected {counts[i]}")
        return torch.cat(parts), counts
