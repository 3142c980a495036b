"""Monte-Carlo convergence check shared by the GRPO tests of labels and of token sequences."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch


def convergence_slope(sampled: Callable[[int, int], torch.Tensor], exact: torch.Tensor, sizes: list[int],
                      seeds: int) -> tuple[float, list[float]]:
    """Slope of log RMS error vs log G, and the RMS errors, of `sampled(g, seed)` around `exact`.

    An unbiased Monte-Carlo estimate converges like G^-1/2 (slope -0.5); a biased or non-converging one
    flattens out (slope towards 0)."""
    rms = []
    for g in sizes:
        errors = [float((sampled(g, s) - exact).norm()) for s in range(seeds)]
        rms.append(math.sqrt(np.mean(np.square(errors))))
    return float(np.polyfit(np.log(sizes), np.log(rms), 1)[0]), rms
