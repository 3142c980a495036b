"""Parameter ranges of attacks and channels, and drawing values from them with a seeded generator."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spoofrl.errors import ConfigError


@dataclass(frozen=True)
class ParamSpace:
    """name -> ("float", low, high) | ("int", low, high) (inclusive) | ("choice", [values])."""
    ranges: dict[str, tuple] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.ranges)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in self.ranges.items():
            kind = spec[0]
            if kind == "float":
                out[name] = round(float(rng.uniform(spec[1], spec[2])), 4)
            elif kind == "int":
                out[name] = int(rng.integers(spec[1], spec[2] + 1))
            elif kind == "choice":
                values = spec[1]
                out[name] = values[int(rng.integers(len(values)))]
            else:
                raise ValueError(f"bad parameter kind {kind!r} for {name}")
        return out

    def complete(self, params: dict[str, Any], rng: np.random.Generator, owner: str) -> dict[str, Any]:
        """`params` with every missing parameter drawn from its range; unknown names are refused."""
        unknown = sorted(set(params) - set(self.ranges))
        if unknown:
            raise ConfigError(f"{owner}: unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                              f"valid: {', '.join(self.names) or '(none)'}")
        if set(self.ranges) <= set(params):
            return dict(params)
        drawn = self.sample(rng)
        return {**drawn, **params}

    def describe(self) -> str:
        parts = []
        for name, spec in self.ranges.items():
            if spec[0] == "choice":
                parts.append(f"{name} in {{{', '.join(str(v) for v in spec[1])}}}")
            else:
                parts.append(f"{name} {spec[1]}..{spec[2]}")
        return ", ".join(parts) or "(no parameters)"
