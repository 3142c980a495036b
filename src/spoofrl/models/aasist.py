"""AASIST back-end (Jung et al., ICASSP 2022): spectro-temporal graph attention.

Pipeline on features [B, F(time), D(filters or bins)], pictured as a one-channel image [B, 1, D, F]:
  1. optional linear projection of D (AASIST-SSL projects 1024-dim SSL features to 128), max-pooling
     (`input_pool`), batch-norm, SELU;
  2. encoder: residual blocks of (2x3) convolutions, each followed by max-pooling along time
     (`time_pool`); the feature axis keeps its size;
  3. two graphs from the encoder output e [B, C, D', F']:
       spectral nodes = max over time of |e| (one node per feature row, plus a learnt positional embedding),
       temporal nodes = max over features of |e| (one node per frame);
     each goes through a graph attention layer (GAT) and a graph pooling that keeps the top-scoring nodes;
  4. two parallel branches of heterogeneous stacking graph attention (HS-GAL): both node types in one graph
     with type-specific attention weights (T-T, S-S, T-S) plus a learnt "stack" (master) node attending to
     all nodes; a second HS-GAL layer refines each branch residually; branches are merged by element-wise max;
  5. readout: max of |nodes| and mean of nodes per type, plus the master node -> dropout -> Linear(2).
With the `sinc` front-end (70 filters, kernel 129, pool 3) and the defaults here this is the published
AASIST (about 0.3 M parameters), whose first 3x3 max-pooling is split between the front-end (time) and
`input_pool` (filters). Designed, like the original, for fixed-length crops: padded frames are zeroed
after the encoder but remain temporal nodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spoofrl.config import ConfigError, option
from spoofrl.models.base import Backend, check_dropout, frame_mask, pooled_lengths


def _pairwise_products(x: torch.Tensor) -> torch.Tensor:
    """[B, N, D] -> [B, N, N, D] with entry (i, j) = x_i * x_j (the attention input of AASIST's GAT)."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def _batch_norm_nodes(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    return bn(x.transpose(1, 2)).transpose(1, 2)


class GraphAttention(nn.Module):
    """Graph attention over fully connected nodes: attention from tanh(W (x_i * x_j)) . w / temperature;
    output = W_att (attention-weighted neighbours) + W_self x, batch-norm, SELU."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.with_att = nn.Linear(in_dim, out_dim)
        self.without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.drop = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        scores = torch.tanh(self.att_proj(_pairwise_products(x))) @ self.att_weight  # [B, N, N, 1]
        attention = torch.softmax(scores.squeeze(-1) / self.temperature, dim=-1)
        out = self.with_att(attention @ x) + self.without_att(x)
        return F.selu(_batch_norm_nodes(self.bn, out))


class HeteroGraphAttention(nn.Module):
    """AASIST's heterogeneous graph attention layer over temporal (type 1) and spectral (type 2) nodes plus
    a master node. Returns updated (temporal nodes, spectral nodes, master)."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.type1 = nn.Linear(in_dim, in_dim)
        self.type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_proj_master = nn.Linear(in_dim, out_dim)

        def weight():
            return nn.Parameter(nn.init.xavier_normal_(torch.empty(out_dim, 1)))
        self.w11, self.w22, self.w12, self.w_master = weight(), weight(), weight(), weight()
        self.with_att = nn.Linear(in_dim, out_dim)
        self.without_att = nn.Linear(in_dim, out_dim)
        self.with_att_master = nn.Linear(in_dim, out_dim)
        self.without_att_master = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.drop = nn.Dropout(0.2)

    def _attention(self, x: torch.Tensor, n1: int) -> torch.Tensor:
        """[B, N, N] attention with a separate weight vector per block (T-T, S-S, and T-S / S-T)."""
        hidden = torch.tanh(self.att_proj(_pairwise_products(x)))  # [B, N, N, out]
        n = x.shape[1]
        is_t = torch.arange(n, device=x.device) < n1
        same_t = (is_t[:, None] & is_t[None, :])[None, :, :, None]
        same_s = (~is_t[:, None] & ~is_t[None, :])[None, :, :, None]
        scores = torch.where(same_t, hidden @ self.w11, torch.where(same_s, hidden @ self.w22, hidden @ self.w12))
        return torch.softmax(scores.squeeze(-1) / self.temperature, dim=-1)

    def _update_master(self, x: torch.Tensor, master: torch.Tensor) -> torch.Tensor:
        scores = torch.tanh(self.att_proj_master(x * master)) @ self.w_master  # [B, N, 1]
        attention = torch.softmax(scores / self.temperature, dim=1)
        pooled = (attention * x).sum(1, keepdim=True)  # [B, 1, in]
        return self.with_att_master(pooled) + self.without_att_master(master)

    def forward(self, x1, x2, master):
        n1 = x1.shape[1]
        x = self.drop(torch.cat([self.type1(x1), self.type2(x2)], dim=1))
        master = self._update_master(x, master)
        out = self.with_att(self._attention(x, n1) @ x) + self.without_att(x)
        out = F.selu(_batch_norm_nodes(self.bn, out))
        return out[:, :n1], out[:, n1:], master


class GraphPool(nn.Module):
    """Keep the `ratio` best-scoring nodes (at least one); nodes are scaled by their sigmoid score."""

    def __init__(self, ratio: float, dim: int, dropout: float = 0.3):
        super().__init__()
        self.ratio = ratio
        self.score = nn.Linear(dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.score(self.drop(h)))  # [B, N, 1]
        keep = max(int(h.shape[1] * self.ratio), 1)
        idx = torch.topk(scores.squeeze(-1), keep, dim=1).indices
        return torch.gather(h * scores, 1, idx[..., None].expand(-1, -1, h.shape[-1]))


class ResidualBlock(nn.Module):
    """AASIST encoder block: [BN, SELU,] conv (2x3) -> BN -> SELU -> conv (2x3), shortcut, max-pool on time."""

    def __init__(self, in_ch: int, out_ch: int, time_pool: int, first: bool):
        super().__init__()
        self.pre = nn.Identity() if first else nn.Sequential(nn.BatchNorm2d(in_ch), nn.SELU())
        self.conv1 = nn.Conv2d(in_ch, out_ch, (2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, (2, 3), padding=(0, 1))
        self.shortcut = nn.Conv2d(in_ch, out_ch, (1, 3), padding=(0, 1)) if in_ch != out_ch else nn.Identity()
        self.time_pool = time_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.selu(self.bn2(self.conv1(self.pre(x)))))
        out = out + self.shortcut(x)
        if self.time_pool > 1:
            out = F.max_pool2d(out, (1, self.time_pool), ceil_mode=True)
        return out


class AASIST(Backend):
    """AASIST: residual CNN encoder -> spectral and temporal graphs -> heterogeneous graph attention -> readout."""

    # Graph pooling keeps int(ratio * nodes) temporal nodes; a traced (ONNX) graph fixes that count.
    onnx_dynamic_time = False

    @dataclass
    class Config:
        input_proj: int = option(0, "project each frame's features to this size first (AASIST-SSL: 128); 0 = no")
        input_pool: list[int] = option(factory=lambda: [3, 1], doc="[feature, time] max-pool before the "
                                       "encoder (with sinc pool 3 this is AASIST's 3x3 pooling)")
        channels: list[int] = option(factory=lambda: [32, 32, 64, 64, 64, 64],
                                     doc="output channels of each encoder residual block")
        time_pool: list[int] = option(factory=lambda: [3, 3, 3, 3, 3, 3],
                                      doc="max-pool factor along time after each block (one per block)")
        gat_dims: list[int] = option(factory=lambda: [64, 32], doc="node sizes of the graph layers: "
                                     "[GAT and first HS-GAL input, HS-GAL output]")
        pool_ratios: list[float] = option(factory=lambda: [0.5, 0.7, 0.5, 0.5], doc="fraction of nodes kept "
                                          "by graph pooling: [spectral, temporal, HS-GAL spectral, HS-GAL temporal]")
        temperatures: list[float] = option(factory=lambda: [2.0, 2.0, 100.0, 100.0], doc="attention softmax "
                                           "temperatures: [spectral GAT, temporal GAT, HS-GAL 1, HS-GAL 2]")
        dropout: float = option(0.5, "dropout on the readout vector")
        branch_dropout: float = option(0.2, "dropout on each HS-GAL branch's output (AASIST's 'drop_way')")

        def validate(self):
            if len(self.input_pool) != 2 or min(self.input_pool) < 1:
                raise ConfigError(f"input_pool must be [feature, time] factors >= 1, got {self.input_pool}")
            if not self.channels or len(self.time_pool) != len(self.channels):
                raise ConfigError(f"time_pool needs one factor per encoder block ({len(self.channels)}), "
                                  f"got {self.time_pool}")
            if len(self.gat_dims) != 2 or len(self.pool_ratios) != 4 or len(self.temperatures) != 4:
                raise ConfigError("gat_dims needs 2 entries, pool_ratios and temperatures 4 each")
            if not all(0 < r <= 1 for r in self.pool_ratios):
                raise ConfigError(f"pool_ratios must be in (0, 1], got {self.pool_ratios}")
            if self.input_proj < 0 or min(self.channels) < 1 or min(self.gat_dims) < 1 or min(self.time_pool) < 1:
                raise ConfigError("input_proj must be >= 0; channels, gat_dims and time_pool entries >= 1")
            if not all(t > 0 for t in self.temperatures):
                raise ConfigError(f"temperatures must be > 0, got {self.temperatures}")
            check_dropout(dropout=self.dropout, branch_dropout=self.branch_dropout)

    def __init__(self, cfg: "AASIST.Config", in_dim: int):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(in_dim, cfg.input_proj) if cfg.input_proj else None
        rows = cfg.input_proj or in_dim
        rows = (rows + cfg.input_pool[0] - 1) // cfg.input_pool[0]  # spectral nodes (ceil-mode pooling)
        self.first_bn = nn.BatchNorm2d(1)
        blocks, channels = [], 1
        for i, (width, pool) in enumerate(zip(cfg.channels, cfg.time_pool)):
            blocks.append(ResidualBlock(channels, width, pool, first=i == 0))
            channels = width
        self.encoder = nn.Sequential(*blocks)
        g0, g1 = cfg.gat_dims
        self.pos_spectral = nn.Parameter(torch.randn(1, rows, channels))
        self.gat_spectral = GraphAttention(channels, g0, cfg.temperatures[0])
        self.gat_temporal = GraphAttention(channels, g0, cfg.temperatures[1])
        self.pool_spectral = GraphPool(cfg.pool_ratios[0], g0)
        self.pool_temporal = GraphPool(cfg.pool_ratios[1], g0)
        self.masters = nn.ParameterList([nn.Parameter(torch.randn(1, 1, g0)) for _ in range(2)])
        self.hsgal1 = nn.ModuleList([HeteroGraphAttention(g0, g1, cfg.temperatures[2]) for _ in range(2)])
        self.hsgal2 = nn.ModuleList([HeteroGraphAttention(g1, g1, cfg.temperatures[3]) for _ in range(2)])
        self.pool_hs_spectral = nn.ModuleList([GraphPool(cfg.pool_ratios[2], g1) for _ in range(2)])
        self.pool_hs_temporal = nn.ModuleList([GraphPool(cfg.pool_ratios[3], g1) for _ in range(2)])
        self.branch_drop = nn.Dropout(cfg.branch_dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(5 * g1, 2)
        self.time_downsampling = cfg.input_pool[1]
        for pool in cfg.time_pool:
            self.time_downsampling *= pool

    def _encode(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, F, D] -> encoder output [B, C, D', F'] with frames past each length set to 0."""
        if self.proj is not None:
            feats = self.proj(feats)
        x = F.max_pool2d(feats.transpose(1, 2).unsqueeze(1), tuple(self.cfg.input_pool), ceil_mode=True)
        x = self.encoder(F.selu(self.first_bn(x)))
        valid = frame_mask(pooled_lengths(lengths, self.time_downsampling), x.shape[-1])
        return x * valid[:, None, None, :].to(x.dtype)

    def _branch(self, k: int, temporal: torch.Tensor, spectral: torch.Tensor):
        master = self.masters[k].expand(temporal.shape[0], -1, -1)
        t, s, master = self.hsgal1[k](temporal, spectral, master)
        s, t = self.pool_hs_spectral[k](s), self.pool_hs_temporal[k](t)
        t_aug, s_aug, master_aug = self.hsgal2[k](t, s, master)
        return (self.branch_drop(t + t_aug), self.branch_drop(s + s_aug), self.branch_drop(master + master_aug))

    def forward(self, feats, lengths):
        e = self._encode(feats, lengths).abs()
        spectral = e.amax(dim=3).transpose(1, 2) + self.pos_spectral  # [B, D', C]
        temporal = e.amax(dim=2).transpose(1, 2)  # [B, F', C]
        spectral = self.pool_spectral(self.gat_spectral(spectral))
        temporal = self.pool_temporal(self.gat_temporal(temporal))
        (t1, s1, m1), (t2, s2, m2) = self._branch(0, temporal, spectral), self._branch(1, temporal, spectral)
        t, s, master = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)
        readout = torch.cat([t.abs().amax(1), t.mean(1), s.abs().amax(1), s.mean(1), master.squeeze(1)], dim=-1)
        return self.out(self.drop(readout))
