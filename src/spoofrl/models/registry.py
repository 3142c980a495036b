"""Registries of front-ends and back-ends. Adding a component: one file + one line here."""
from spoofrl.registry import Registry

FRONTENDS = Registry("front-end", {
    "logmel": "spoofrl.features.logmel:LogMel",
})

BACKENDS = Registry("back-end", {
    "pool-linear": "spoofrl.models.pool_linear:PoolLinear",
})
