"""Qwen2-Audio and the Qwen2.5-Omni thinker: Whisper log-mel front-end, Whisper-style encoder, the audio
as `<|audio_bos|><|AUDIO|>...<|AUDIO|><|audio_eos|>` in a ChatML prompt, EOS `<|im_end|>`.

Audio positions per clip, as both models' processors and forwards count them: L = ceil(samples / 160) valid
log-mel frames, (L - 1) // 2 + 1 after the stride-2 conv, then (that - 2) // 2 + 1 after the stride-2 average
pool.

- Qwen2-Audio's encoder takes exactly 2 x max_source_positions frames (30 s): every clip is padded (and a
  longer one cut) to `chunk_length` seconds, as its processor does, and the encoder masks the frames after
  the clip's own.
- The Omni thinker's encoder takes only each clip's valid frames (packed, in chunks of 2 x n_window); clips
  are cut at the feature extractor's `chunk_length` (from the folder's preprocessor config, as its
  processor does). Its M-RoPE positions reduce, without images or video, to the text positions on all three
  axes, which the text model builds from 2-D position ids; the vision tower is loaded but never run.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from spoofrl.alm.hf.base import HfAlm
from spoofrl.alm.hf.features import whisper_frames, whisper_log_mel
from spoofrl.errors import ConfigError


class _WhisperAudio(HfAlm):
    """Shared by both: the Whisper front-end options and features, and the audio token count."""

    turn_end = "<|im_end|>"
    fixed_length: ClassVar[bool]     # features padded (and cut) to the chunk, or each clip's valid frames only
    audio_bos = "<|audio_bos|>"
    audio_eos = "<|audio_eos|>"

    def setup_audio(self) -> None:
        super().setup_audio()
        config = self.core.config
        self.audio_markup = f"{self.audio_bos}{self.audio_token}{self.audio_eos}"
        n_mels = int(config.audio_config.num_mel_bins)
        self.n_mels = self.feature_int("feature_size", n_mels)
        if self.n_mels != n_mels:
            raise ConfigError(f"{self.folder}: the feature extractor makes {self.n_mels} mel bands, the audio "
                              f"encoder takes {n_mels}")
        self.sample_rate = self.feature_int("sampling_rate", 16000)
        self.n_fft = self.feature_int("n_fft", 400)
        self.hop = self.feature_int("hop_length", 160)
        self.max_samples = self.feature_int("chunk_length", self.default_chunk_seconds()) * self.sample_rate

    def default_chunk_seconds(self) -> int:
        return 30          # WhisperFeatureExtractor's default

    def reserved_tokens(self) -> list[str]:
        return [self.audio_token, self.audio_bos, self.audio_eos]

    def audio_token_counts(self, lengths: torch.Tensor) -> list[int]:
        frames = whisper_frames(lengths, self.hop, self.max_samples)
        return (((frames - 1) // 2 + 1 - 2) // 2 + 1).tolist()

    def _check_counts(self, lengths: torch.Tensor, counts: list[int]) -> None:
        short = [i for i, c in enumerate(counts) if c < 1]
        if short:
            raise ConfigError(f"audio clips {short} are too short for the audio encoder (at least "
                              f"{2 * self.hop + 1} samples), lengths {lengths[short].tolist()}")

    def log_mel(self, waves: torch.Tensor, lengths: torch.Tensor, fixed: bool):
        return whisper_log_mel(waves, lengths, n_mels=self.n_mels, sample_rate=self.sample_rate, n_fft=self.n_fft,
                               hop=self.hop, max_samples=self.max_samples, fixed_length=fixed)

    def audio_inputs(self, waves, lengths):
        feats, frames = self.log_mel(waves, lengths, fixed=self.fixed_length)
        mask = torch.arange(feats.shape[-1], device=feats.device)[None] < frames[:, None]
        return {"input_features": feats, "feature_attention_mask": mask.long()}


class Qwen2AudioAlm(_WhisperAudio):
    kind = "qwen2_audio"
    model_class = "Qwen2AudioForConditionalGeneration"
    fixed_length = True
    audio_paths = ("model.audio_tower", "model.multi_modal_projector")

    def setup_audio(self) -> None:
        super().setup_audio()
        needed = 2 * int(self.core.config.audio_config.max_source_positions)
        if self.max_samples // self.hop != needed:
            raise ConfigError(f"{self.folder}: the feature extractor's chunk ({self.max_samples} samples, "
                              f"{self.max_samples // self.hop} frames) is not the {needed} frames the audio "
                              f"encoder takes")

    def default_chunk_seconds(self) -> int:
        frames = 2 * int(self.core.config.audio_config.max_source_positions)
        return frames * 160 // 16000

    def encode_audio(self, waves, lengths):
        from transformers.masking_utils import create_bidirectional_mask

        inputs = self.audio_inputs(waves, lengths)
        feats, frames = inputs["input_features"], inputs["feature_attention_mask"].sum(-1)
        counts = self.audio_token_counts(lengths)
        self._check_counts(lengths, counts)
        tower = self.core.get_submodule("model.audio_tower")
        dtype = self.audio_dtype()
        # the encoder masks the frames after each clip (as Qwen2AudioModel.forward builds the mask)
        after_conv = (frames - 1) // 2 + 1
        width = (feats.shape[-1] - 2) // 2 + 1
        valid = torch.arange(width, device=feats.device)[None] < after_conv[:, None]
        mask = create_bidirectional_mask(config=tower.config, attention_mask=valid.long(),
                                         inputs_embeds=feats.new_zeros(len(frames), width, 1, dtype=dtype))
        hidden = tower(feats.to(dtype), attention_mask=mask).last_hidden_state
        audio = self.core.get_submodule("model.multi_modal_projector")(hidden)
        wanted = torch.tensor(counts, device=audio.device)
        keep = torch.arange(audio.shape[1], device=audio.device)[None] < wanted[:, None]
        return audio[keep], counts


class Qwen25OmniThinkerAlm(_WhisperAudio):
    kind = "qwen2_5_omni_thinker"
    model_class = "Qwen2_5OmniThinkerForConditionalGeneration"
    fixed_length = False
    audio_paths = ("model.audio_tower",)

    def setup_audio(self) -> None:
        super().setup_audio()
        config = self.core.config
        ids = [getattr(config, name, None) for name in ("audio_start_token_id", "audio_end_token_id")]
        if all(isinstance(i, int) for i in ids):
            self.audio_bos, self.audio_eos = (self.tokenizer.convert_ids_to_tokens(i) for i in ids)
            self.audio_markup = f"{self.audio_bos}{self.audio_token}{self.audio_eos}"

    def suppressed_tokens(self) -> list[int]:
        # the image / video placeholders cannot be generated either
        config = self.core.config
        extra = [getattr(config, n, None) for n in ("image_token_id", "video_token_id")]
        return super().suppressed_tokens() + [int(i) for i in extra if isinstance(i, int)]

    def encode_audio(self, waves, lengths):
        inputs = self.audio_inputs(waves, lengths)
        counts = self.audio_token_counts(lengths)
        self._check_counts(lengths, counts)
        feats = inputs["input_features"].to(self.audio_dtype())
        audio = self.core.model.get_audio_features(feats, feature_attention_mask=inputs["feature_attention_mask"])
        audio = audio.last_hidden_state
        if audio.shape[0] != sum(counts):
            raise ConfigError(f"the Omni audio encoder returned {audio.shape[0]} positions for {sum(counts)} "
                              f"audio tokens")
        return audio, counts
