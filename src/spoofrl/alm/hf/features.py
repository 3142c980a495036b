"""Audio front-ends of the Hugging Face audio LLMs, computed with torch.stft (on the model's device, no
torchaudio, no numpy round trip), each item at its own length so its features never depend on batch mates.

- `whisper_log_mel`: the log-mel of transformers' WhisperFeatureExtractor (Qwen2-Audio, Qwen2.5-Omni): a
  periodic Hann window of n_fft samples, centred frames (reflect padding), power spectrum without the last
  frame, Slaney-normalised Slaney-scale mel filters from 0 to 8 kHz, log10 floored at 1e-10, values floored
  at (the clip's maximum - 8), then (x + 4) / 4. The extractor zero-pads each clip to `chunk_length`
  seconds (and cuts longer ones) before the STFT; frames whose window holds only that padding are -10 and
  cannot move the maximum, so computing on the clip plus n_fft zeros gives the same values on its frames.
  Valid frames: ceil(samples / hop), as the extractor's sample mask taken every `hop` samples.
- `granite_log_mel`: GraniteSpeechFeatureExtractor's features (torchaudio MelSpectrogram defaults: a
  periodic Hann window of win_length samples centred in n_fft, centred frames with reflect padding, power
  spectrum, HTK-scale mel filters without normalisation from 0 Hz to Nyquist), log10 floored at 1e-10,
  floored at (maximum - 8), / 4 + 1, the last frame dropped when the count is odd, and pairs of consecutive
  frames stacked into one vector of 2 x n_mels. The extractor pads a batch to its longest clip before the
  STFT (so a short clip's last frames see zeros instead of its reflection); here each clip is analysed alone,
  as the extractor does for a batch of one.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from spoofrl.errors import ConfigError


@lru_cache(maxsize=8)
def _mel_filters(n_freqs: int, n_mels: int, sample_rate: int, f_max: float, scale: str) -> torch.Tensor:
    """[n_freqs, n_mels] float32 triangular filters: transformers' own filter bank, the one its extractors use
    (scale "slaney": Slaney-normalised, as Whisper; "htk": unnormalised HTK, as torchaudio's default)."""
    from transformers.audio_utils import mel_filter_bank

    norm = "slaney" if scale == "slaney" else None
    bank = mel_filter_bank(num_frequency_bins=n_freqs, num_mel_filters=n_mels, min_frequency=0.0,
                           max_frequency=f_max, sampling_rate=sample_rate, norm=norm, mel_scale=scale)
    return torch.from_numpy(bank).float()


def whisper_frames(lengths: torch.Tensor, hop: int, max_samples: int) -> torch.Tensor:
    """[B] valid log-mel frames of clips of `lengths` samples (cut to `max_samples`)."""
    return (lengths.clamp(max=max_samples) + hop - 1) // hop


def whisper_log_mel(waves: torch.Tensor, lengths: torch.Tensor, *, n_mels: int, sample_rate: int = 16000,
                    n_fft: int = 400, hop: int = 160, max_samples: int = 480000,
                    fixed_length: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """waves [B, S] + lengths [B] -> (log-mel [B, n_mels, F] float32, valid frames [B]).

    fixed_length: F = max_samples / hop (every clip padded to `max_samples`, as Qwen2-Audio's encoder needs);
    otherwise F = the longest clip's frame count."""
    device = waves.device
    lengths = lengths.to(device).clamp(max=max_samples)
    if int(lengths.min()) < 1:
        raise ConfigError("an audio clip is empty")
    total = max_samples if fixed_length else int(lengths.max()) + n_fft
    # zeros after each clip's end (the extractor's padding), whatever the batch's own padding held
    keep = torch.arange(total, device=device)[None] < lengths[:, None]
    x = torch.zeros(waves.shape[0], total, device=device)
    width = min(total, waves.shape[1])
    x[:, :width] = waves[:, :width].float()
    x = x * keep
    window = torch.hann_window(n_fft, device=device)
    spec = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spec[..., :-1].abs() ** 2
    filters = _mel_filters(n_fft // 2 + 1, n_mels, sample_rate, 8000.0, "slaney").to(device)
    logmel = (filters.T @ power).clamp_min(1e-10).log10()
    top = logmel.amax(dim=(1, 2), keepdim=True)
    logmel = (torch.maximum(logmel, top - 8.0) + 4.0) / 4.0
    frames = whisper_frames(lengths, hop, max_samples)
    if not fixed_length:
        logmel = logmel[..., :int(frames.max())]
    return logmel, frames


def granite_frames(samples: int, hop: int = 160) -> int:
    """Stacked feature vectors of a clip of `samples` samples: (samples // hop + 1) // 2."""
    return (samples // hop + 1) // 2


def granite_log_mel(wave: torch.Tensor, *, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 512,
                    win_length: int = 400, hop: int = 160) -> torch.Tensor:
    """One clip [S] -> stacked log-mel [granite_frames(S), 2 * n_mels] float32."""
    if wave.dim() != 1 or wave.numel() <= n_fft // 2:
        raise ConfigError(f"Granite Speech features need a clip longer than {n_fft // 2} samples "
                          f"(reflect padding of the STFT), got {wave.numel()}")
    window = torch.hann_window(win_length, device=wave.device)
    spec = torch.stft(wave.float(), n_fft, hop, win_length=win_length, window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    filters = _mel_filters(n_fft // 2 + 1, n_mels, sample_rate, sample_rate / 2, "htk").to(wave.device)
    mel = (spec.abs() ** 2).T @ filters                      # [T, n_mels]
    logmel = mel.clamp_min(1e-10).log10()
    logmel = torch.maximum(logmel, logmel.max() - 8.0) / 4 + 1
    usable = logmel.shape[0] - logmel.shape[0] % 2
    return logmel[:usable].reshape(usable // 2, 2 * n_mels)


def granite_audio_tokens(frames: int, window_size: int, downsample_rate: int) -> int:
    """LM positions of one clip: its stacked frames in blocks of `window_size` (the last one zero-padded),
    each block turned into window_size // downsample_rate query outputs by the Q-Former projector."""
    return math.ceil(frames / window_size) * (window_size // downsample_rate)
