"""Spectrogram pictures of every attack (docs/attacks/*.png): one bona fide utterance beside its
copy-synthesis spoof, so a reader can see what each vocoder does to speech."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spoofrl.synth import dsp
from spoofrl.synth.attacks import ATTACKS
from spoofrl.synth.sources import SR, Prosody, flite, synthesize, trim_silence
from spoofrl.synth.splits import rng_for

TEXT = "The bright lantern was carried by the sailor."


def _log_spectrogram(x: np.ndarray) -> np.ndarray:
    power = np.abs(dsp.stft(x, 512, 64)) ** 2
    return 10 * np.log10(power.T + 1e-10)


def _save_small_png(fig, path: Path) -> None:
    """PNG with a 64-colour palette: spectrogram noise compresses badly in full colour (docs stay small)."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, dpi=72, format="png")
    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(colors=64).save(path, optimize=True)


def attack_figures(out_dir: str | Path, voice=flite("awb"), seed: int = 0) -> list[Path]:
    """Write <attack>.png for every attack; returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = synthesize([(voice, TEXT, Prosody())])[0]
    source = np.concatenate([np.zeros(int(0.1 * SR)), dsp.set_level(trim_silence(raw), SR, -26.0), np.zeros(int(0.1 * SR))])
    source += 1e-4 * rng_for(seed, "figure-floor").standard_normal(len(source))
    reference = _log_spectrogram(source)
    vmax = reference.max()
    paths = []
    for name, attack in ATTACKS.items():
        rng = rng_for(seed, f"figure/{name}")
        spoof = attack(source, SR, rng, **attack.sample_params(rng))
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
        for ax, spec, title in [(axes[0], reference, f"bona fide ({voice.id})"),
                                (axes[1], _log_spectrogram(spoof), f"{name} ({attack.family})")]:
            ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
                      extent=[0, len(source) / SR, 0, SR / 2000])
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("time (s)")
        axes[0].set_ylabel("frequency (kHz)")
        fig.suptitle(attack.doc, fontsize=9)
        fig.tight_layout()
        path = out / f"{name}.png"
        _save_small_png(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths
