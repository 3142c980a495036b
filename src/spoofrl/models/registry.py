"""Registries of front-ends and back-ends. Adding a component: one file + one line here.

Front-ends turn waveforms into frame features; back-ends turn frame features into (spoof, bonafide) logits.
Components defined outside the package can join with `FRONTENDS.register("name")` / `BACKENDS.register(...)`.
"""
from spoofrl.registry import Registry

FRONTENDS = Registry("front-end", {
    "logmel": "spoofrl.features.logmel:LogMel",
    "lfcc": "spoofrl.features.lfcc:LFCC",
    "sinc": "spoofrl.features.sinc:SincFilterbank",
    "ssl": "spoofrl.features.ssl:SSLEncoder",
})

BACKENDS = Registry("back-end", {
    "pool-linear": "spoofrl.models.pool_linear:PoolLinear",
    "ffn": "spoofrl.models.ffn:FFN",
    "lcnn": "spoofrl.models.lcnn:LCNN",
    "resnet": "spoofrl.models.resnet:ResNet",
    "aasist": "spoofrl.models.aasist:AASIST",
})
