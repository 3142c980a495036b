"""Pieces shared by the 2-D convolutional back-ends (LCNN, ResNet, AASIST)."""
from __future__ import annotations

import torch
from torch import nn

from spoofrl.models.base import zero_padding


class InputNorm(nn.Module):
    """Batch normalisation of each feature dimension ([B, F, D] -> same), padding frames then set to 0.

    Statistics are learnt over the training data (not per utterance), so long-term spectral differences
    between utterances - often the very artefacts of a codec or vocoder - are kept."""

    def __init__(self, dim: int, enabled: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim) if enabled else None

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            feats = self.bn(feats.transpose(1, 2)).transpose(1, 2)
        return zero_padding(feats, lengths)


def image_to_frames(x: torch.Tensor) -> torch.Tensor:
    """[B, C, F(time), D'] conv maps -> [B, F, C * D'] one vector per (downsampled) frame."""
    b, c, f, d = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, f, c * d)
