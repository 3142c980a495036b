"""The audio side of the small ALM: a registered front-end (log-mel by default, any FRONTENDS key works),
per-frame normalisation, a stride-2 conv stack, optional transformer layers, and the projector to the LM width.

waveforms [B, S] + lengths [B] -> audio embeddings [B, F', lm_width] + frame counts [B]; frames past each count
are zero, and an item's embeddings do not depend on the other items of its batch beyond the front-end's edge
frames (convolutions see zeros past each item's end whatever the padding).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from spoofrl.alm.config import AlmConfig
from spoofrl.config import from_dict
from spoofrl.errors import ConfigError
from spoofrl.models.base import frame_mask, zero_padding
from spoofrl.models.detector import on_cpu, on_meta
from spoofrl.models.registry import FRONTENDS


def build_frontend(cfg: AlmConfig) -> nn.Module:
    """The front-end named by `cfg.frontend["name"]`, its `sample_rate` option set to the model's."""
    spec = dict(cfg.frontend)
    name = spec.pop("name")
    fe_cls = FRONTENDS.get(name)
    if "sample_rate" in {f.name for f in dataclasses.fields(fe_cls.Config)}:
        own = spec.get("sample_rate", cfg.sample_rate)
        if own != cfg.sample_rate:
            raise ConfigError(f"alm.frontend({name}).sample_rate is {own} but alm.sample_rate is "
                              f"{cfg.sample_rate}; set alm.sample_rate only")
        spec["sample_rate"] = cfg.sample_rate

    def make():
        return fe_cls(from_dict(fe_cls.Config, spec, prefix=f"alm.frontend({name})"))

    if torch.get_default_device().type == "meta":
        # a size check (alm_skeleton): a front-end that computes its filters (its options are checked with
        # them) cannot be built on the meta device; it is built on the CPU, where it is small
        return on_meta(make) or on_cpu(make)
    return make()


def sinusoids(frames: int, dim: int, device: torch.device) -> torch.Tensor:
    """[frames, dim] fixed sinusoidal position encodings."""
    pos = torch.arange(frames, device=device, dtype=torch.float32)[:, None]
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    out = torch.zeros(frames, dim, device=device)
    out[:, 0:2 * half:2] = torch.sin(pos * freq)
    out[:, 1:2 * half:2] = torch.cos(pos * freq)
    return out


class AudioEncoder(nn.Module):
    """front-end -> norm -> conv stack (each layer halves the frame rate) -> transformer layers -> [B, F', C]."""

    def __init__(self, cfg: AlmConfig):
        super().__init__()
        self.cfg = cfg
        self.frontend = build_frontend(cfg)
        dim = self.frontend.out_dim
        self.norm = nn.LayerNorm(dim) if cfg.feature_norm == "layernorm" else nn.Identity()
        width = cfg.conv_channels
        self.convs = nn.ModuleList()
        if cfg.conv_layers == 0:
            self.convs.append(nn.Conv1d(dim, width, 1))
        for i in range(cfg.conv_layers):
            self.convs.append(nn.Conv1d(dim if i == 0 else width, width, cfg.conv_kernel, stride=2,
                                        padding=cfg.conv_kernel // 2))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, cfg.encoder_heads, cfg.encoder_ffn, cfg.encoder_dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.encoder_layers))
        self.final_norm = nn.LayerNorm(width) if cfg.encoder_layers else nn.Identity()
        self.dropout = nn.Dropout(cfg.encoder_dropout)
        self.out_dim = width

    def features(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Front-end features [B, F, D] (float32, zero past each item's frames) + frame counts [B].

        Items are analysed at their own length (in groups of equal length), so their features do not depend
        on how much padding the batch gave them: generation and scoring of the same item agree even when
        they batch it differently. Runs in float32 (outside autocast), without autograd when frozen."""
        frozen = self.frontend.is_frozen and not wave.requires_grad
        sizes = [int(n) for n in lengths.tolist()]
        with torch.no_grad() if frozen else contextlib.nullcontext(), \
                torch.autocast(wave.device.type, enabled=False):
            if all(n == wave.shape[1] for n in sizes):
                feats, frames = self.frontend(wave.float(), lengths)
                return feats.float(), frames
            groups: dict[int, list[int]] = {}
            for i, n in enumerate(sizes):
                groups.setdefault(n, []).append(i)
            parts: dict[int, torch.Tensor] = {}
            for n, rows in groups.items():
                index = torch.tensor(rows, device=wave.device)
                out, counts = self.frontend(wave[index, :n].float(), lengths[index])
                for row, i in enumerate(rows):
                    parts[i] = out[row, :int(counts[row])].float()
        frames = torch.tensor([parts[i].shape[0] for i in range(len(sizes))], device=wave.device)
        feats = wave.new_zeros((len(sizes), int(frames.max()), *parts[0].shape[1:]), dtype=torch.float32)
        for i, part in parts.items():
            feats[i, :part.shape[0]] = part
        return feats, frames

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frames = self.features(wave, lengths)
        x = zero_padding(self.norm(feats.float()), frames).transpose(1, 2)   # [B, D, F]
        for conv in self.convs:
            x = F.gelu(conv(x))
            k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
            frames = torch.div(frames + 2 * p - k, s, rounding_mode="floor") + 1
            x = self.dropout(x * frame_mask(frames, x.shape[-1])[:, None, :].to(x.dtype))
        x = x.transpose(1, 2)                                                 # [B, F', C]
        if self.layers:
            x = x + sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype)
            pad = ~frame_mask(frames, x.shape[1])
            for layer in self.layers:
                x = layer(x, src_key_padding_mask=pad)
            x = zero_padding(self.final_norm(x), frames)
        return x, frames


class Projector(nn.Module):
    """Audio encoder width -> LM width: Linear, GELU, Linear ('mlp') or one Linear ('linear')."""

    def __init__(self, kind: str, in_dim: int, out_dim: int):
        super().__init__()
        if kind == "mlp":
            self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
