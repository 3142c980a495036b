import torch

from spoofrl.models import build_model, load_model, load_model_preset, save_model


def test_preset_builds_trains_and_roundtrips(tmp_path):
    cfg = load_model_preset("logmel-linear")
    model = build_model(cfg)
    wave = torch.randn(3, 8000)
    logits = model(wave, torch.tensor([8000, 6000, 4000]))
    assert logits.shape == (3, 2)
    logits.sum().backward()
    save_model(model.eval(), tmp_path / "run")
    again = load_model(tmp_path / "run")
    assert torch.equal(again.score(wave), model.score(wave))      # the same weights through the same path
