""""A new component is one file + one registry line": a throwaway front-end and back-end, each written by the
test as its own module file and added with one registry entry, work everywhere a built-in one does: config
validation, training, save/load, `spoofrl models` and `spoofrl config`."""
from __future__ import annotations

import textwrap

import pytest
import torch

from spoofrl.cli import main
from spoofrl.errors import ConfigError, RegistryError
from spoofrl.models import build_model, load_model, save_model
from spoofrl.models.registry import BACKENDS, FRONTENDS
from spoofrl.registry import Registry

FRONTEND_FILE = '''
"""Frame energies in a few bands (a toy front-end)."""
from dataclasses import dataclass

import torch

from spoofrl.config import option
from spoofrl.models.base import Frontend, pooled_lengths


class FrameEnergy(Frontend):
    """Log energy of non-overlapping frames, repeated `dims` times with a learnable gain each."""

    @dataclass
    class Config:
        frame: int = option(160, "frame length in samples")
        dims: int = option(4, "output dimensions")

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.dims
        self.gain = torch.nn.Parameter(torch.ones(cfg.dims))

    def encode(self, wave, lengths):
        frames = wave[:, : wave.shape[1] // self.cfg.frame * self.cfg.frame].unflatten(1, (-1, self.cfg.frame))
        energy = (frames ** 2).mean(-1).clamp_min(1e-8).log()[..., None]  # [B, F, 1]
        return energy * self.gain, torch.clamp(lengths // self.cfg.frame, max=frames.shape[1])
'''

BACKEND_FILE = '''
"""Mean and max over valid frames -> Linear(2) (a toy back-end)."""
from dataclasses import dataclass

import torch
from torch import nn

from spoofrl.config import option
from spoofrl.models.base import Backend, masked_max, masked_mean


class MeanMax(Backend):
    """Mean and max over valid frames -> Linear(2)."""

    @dataclass
    class Config:
        scale: float = option(1.0, "multiplies the pooled statistics")

    def __init__(self, cfg, in_dim):
        super().__init__()
        self.cfg = cfg
        self.out = nn.Linear(2 * in_dim, 2)

    def forward(self, feats, lengths):
        pooled = torch.cat([masked_mean(feats, lengths), masked_max(feats, lengths)], dim=-1)
        return self.out(self.cfg.scale * pooled)
'''

SPEC = {"frontend": {"name": "toy-energy", "dims": 3}, "backend": {"name": "toy-meanmax", "scale": 0.5}}


@pytest.fixture
def toy_components(tmp_path, monkeypatch):
    """Two module files + one registry line each (entries restored afterwards)."""
    (tmp_path / "toy_energy.py").write_text(textwrap.dedent(FRONTEND_FILE))
    (tmp_path / "toy_meanmax.py").write_text(textwrap.dedent(BACKEND_FILE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(FRONTENDS, "_entries", dict(FRONTENDS._entries))
    monkeypatch.setattr(BACKENDS, "_entries", dict(BACKENDS._entries))
    FRONTENDS.add("toy-energy", "toy_energy:FrameEnergy")
    BACKENDS.add("toy-meanmax", "toy_meanmax:MeanMax")


def test_new_components_train_and_roundtrip(toy_components, tmp_path):
    torch.manual_seed(0)
    model = build_model(SPEC)
    assert model.frontend.out_dim == 3 and not model.frontend_is_frozen
    wave = torch.randn(4, 3200) * torch.tensor([[1.0], [0.1], [1.0], [0.1]])  # loud = bona fide
    labels = torch.tensor([1, 0, 1, 0])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(wave), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert model.frontend.gain.grad is not None  # the front-end's own parameter trains too
    folder = save_model(model.eval(), tmp_path / "run")
    again = load_model(folder)
    assert again.cfg.frontend == {"name": "toy-energy", "frame": 160, "dims": 3}
    torch.testing.assert_close(again.score(wave), model.score(wave), rtol=0, atol=0)


def test_new_components_are_validated_and_documented(toy_components, capsys):
    with pytest.raises(ConfigError, match=r"'dim'.*frontend\(toy-energy\).*valid: dims, frame"):
        build_model({**SPEC, "frontend": {"name": "toy-energy", "dim": 3}})
    with pytest.raises(ConfigError, match=r"scale: expected a number"):
        build_model({**SPEC, "backend": {"name": "toy-meanmax", "scale": "big"}})
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "toy-energy   Log energy of non-overlapping frames" in out
    assert "toy-meanmax  Mean and max over valid frames" in out
    assert main(["models", "--describe", "toy-meanmax"]) == 0
    assert "multiplies the pooled statistics" in capsys.readouterr().out
    assert main(["config", "frontend", "toy-energy"]) == 0
    assert "frame length in samples" in capsys.readouterr().out


def test_registry_errors():
    registry = Registry("widget", {"a": "spoofrl.models.lcnn:LCNN"})
    with pytest.raises(RegistryError, match="already registered"):
        registry.add("a", object)
    with pytest.raises(RegistryError, match="unknown widget 'b'; known: a"):
        registry.get("b")

    @registry.register("c")
    class C:
        pass
    assert registry.get("c") is C and registry.names() == ["a", "c"]
    registry.add("d", "spoofrl.models.no_such_module:Thing")
    with pytest.raises(RegistryError, match="widget 'd' is registered as 'spoofrl.models.no_such_module:Thing', "
                                            "which cannot be imported"):
        registry.get("d")
