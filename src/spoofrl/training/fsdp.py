"""Fully sharded data parallel training (torch's FSDP2, `torch.distributed.fsdp.fully_shard`) for the one trainer.

With `shard_model`, each process holds 1/world of every parameter, gradient and optimizer moment (a DTensor
sharded on dim 0); a block's parameters are all-gathered just before its forward and freed after it, and
gradients are reduce-scattered (averaged over processes, as DDP averages them) after its backward. Works on CPU
with gloo (a "cpu" DeviceMesh) as on CUDA with NCCL.

Every helper below also takes a model that was not sharded (one process, or DDP) and then does the plain
thing, so a caller needs no `if`. What changes for the trainer under FSDP:

- The parameters registered on the modules are the sharded DTensors, except the root's between a forward and
  its backward (see `shard_model`): build the optimizer and the trainable-parameter list from
  `model.parameters()` before training or between steps, snapshots with `snapshot_tensors`.
- Saving needs the full tensors: `full_state_dict` / `full_optimizer_state` / `gather_tensors` are
  collectives (every rank calls them; rank 0 gets the result). `full_weights` lets code that saves a module
  (`save_alm`, `save_weights`) run unchanged on rank 0.
- Parameter snapshots (old policy, reference) are local shards: `snapshot_tensors`, evaluated with `call_with`
  (torch.func.functional_call does not work on sharded modules: FSDP's pre-forward all-gather re-registers the
  live parameters over the swapped-in ones).
- Each forward of a sharded module is a collective, so every rank must run the same number of them (and of
  micro-batches). Loops whose length differs between ranks run inside `unsharded(model)`, which gathers every
  parameter once and keeps it for the block (generation, which stops at EOS: shard_model's gathered_methods),
  or on `plain_copy(model, build)`, an ordinary module with the current weights (validation on each rank's
  share of the dev set: score_utterances moves the model, which reshards an FSDP root).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

LOG = logging.getLogger(__name__)

MIXED_PRECISION = ("fp32", "bf16")


# --- sharding ---------------------------------------------------------------------------------------------------
def is_sharded(model: nn.Module) -> bool:
    """True when `model` went through `shard_model` (is an FSDP2 module)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def _fsdp_modules(model: nn.Module) -> list[nn.Module]:
    from torch.distributed.fsdp import FSDPModule
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def find_blocks(model: nn.Module, layer_classes: Sequence[type] | None = None) -> list[nn.Module]:
    """The modules to shard one by one (each is all-gathered on its own): instances of `layer_classes`; by
    default the classes that transformers models name in `_no_split_modules` (their decoder layers), or else
    the children of every nn.ModuleList. Blocks inside another block are left to the outer one."""
    if layer_classes is None:
        names = set()
        for m in model.modules():
            names.update(getattr(m, "_no_split_modules", None) or ())
        picked = [m for m in model.modules() if type(m).__name__ in names]
        if not picked:
            picked = [c for m in model.modules() if isinstance(m, nn.ModuleList) for c in m]
    else:
        wanted = tuple(layer_classes)
        picked = [m for m in model.modules() if isinstance(m, wanted)]
    picked = [m for m in picked if m is not model]
    inside = {id(d) for m in picked for d in m.modules() if d is not m}
    return [m for m in picked if id(m) not in inside]


def device_mesh(dist_info):
    """The 1-D mesh of all processes on this process's device type (gloo on "cpu", NCCL on "cuda")."""
    from torch.distributed.device_mesh import init_device_mesh
    return init_device_mesh(dist_info.device.type, (dist_info.world,))


def _mp_policy(mixed_precision: str, device: torch.device):
    """bf16 parameters in forward / backward with fp32 gradient reduction, on CUDA only (CPU: fp32)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy as policy
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {mixed_precision!r}")
    if mixed_precision == "bf16" and device.type == "cuda":
        return policy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if mixed_precision == "bf16":
        LOG.info("FSDP mixed precision bf16 asked for on %s: bf16 runs on CUDA only, using fp32", device.type)
    return policy()


def shard_model(model: nn.Module, dist_info, *, layer_classes: Sequence[type] | None = None,
                mixed_precision: str = "fp32", forward_methods: Sequence[str] = (),
                gathered_methods: Sequence[str] = (), replicate_frozen: bool = False) -> nn.Module:
    """Shard `model` (on dist_info.device already) over all processes: `fully_shard` on each block of
    `find_blocks(model, layer_classes)`, then on the root (which takes the remaining parameters: embeddings,
    heads, a small encoder). Returns the same module object (now an FSDPModule); unchanged when not distributed.

    forward_methods: methods of the root besides `forward` that callers use as entry points (SmallAlm:
    "token_logprobs"; a Detector: "forward_features"); they gather and free the root's parameters as forward
    does. One called inside another (Detector.forward calls forward_features) gathers them again (correct, one
    more all-gather of the root's parameters).
    gathered_methods: methods that run inside `unsharded(model)`, for those whose number of forwards differs
    between ranks (SmallAlm.generate: decoding stops when every row has ended).
    replicate_frozen: parameters with requires_grad False stay whole on every rank (not sharded), so code that
    uses only them needs no communication (a frozen front-end's extract_features, called a rank-dependent
    number of times with a feature cache). Leave False where the frozen part is what must be sharded (a LoRA
    base model).

    As torch does by default, blocks free their parameters after forward and the root keeps its own gathered
    until its backward (it needs them first there). Between a forward and its backward the root's registered
    parameters are therefore the gathered plain tensors: the helpers here that read or write parameters
    (`snapshot_tensors`, `call_with`) reshard first."""
    if not dist_info.enabled:
        return model
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
    options = dict(mesh=device_mesh(dist_info), mp_policy=_mp_policy(mixed_precision, dist_info.device))
    if replicate_frozen:
        options["ignored_params"] = {p for p in model.parameters() if not p.requires_grad}
    for block in find_blocks(model, layer_classes):
        fully_shard(block, **options)
    fully_shard(model, **options)
    for name in forward_methods:
        register_fsdp_forward_method(model, name)
    for name in gathered_methods:
        _run_unsharded(model, name)
    return model


def _run_unsharded(model: nn.Module, name: str) -> None:
    """Replace model.<name> by the same method run inside `unsharded(model)`."""
    method = getattr(model, name)

    def gathered(*args, **kwargs):
        with unsharded(model):
            return method(*args, **kwargs)

    gathered.__name__, gathered.__doc__ = name, method.__doc__
    setattr(model, name, gathered)


# --- gradients --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def no_sync(model: nn.Module) -> Iterator[None]:
    """Backward passes inside accumulate gradients locally, without communication (DDP's no_sync); the first
    backward outside reduces everything accumulated. Under FSDP the accumulated gradients are the unsharded ones
    (a full gradient's memory until that backward). For a DDP module, its own no_sync; else nothing."""
    if is_sharded(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    elif callable(getattr(model, "no_sync", None)):
        with model.no_sync():
            yield
    else:
        yield


def sync_running_stats(model: nn.Module) -> None:
    """Rank 0's batch-norm running statistics on every rank (what DDP does by broadcasting buffers before each
    forward; FSDP leaves buffers alone, so each rank's statistics would follow its own batches and the ranks'
    validation, snapshots and saves would disagree). Nothing for a model that is not sharded."""
    if not is_sharded(model):
        return
    import torch.distributed as dist
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]
    for buffer in (b for m in norms for b in m.buffers() if b is not None):
        dist.broadcast(buffer, src=0)


def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> float:
    """torch.nn.utils.clip_grad_norm_, returning the total norm over all processes' shards as a float (with
    DTensor gradients, torch returns it as a replicated DTensor)."""
    norm = torch.nn.utils.clip_grad_norm_(list(params), max_norm)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


# --- full state (saving, resuming) ---------------------------------------------------------------------------
def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=True, **kw)


def full_state_dict(model: nn.Module, *, all_ranks: bool = False) -> dict[str, torch.Tensor]:
    """The model's state dict with full, unsharded CPU tensors. Sharded: a collective (call it on every rank);
    rank 0 gets the tensors and the other ranks {} (all_ranks=True: every rank gets them)."""
    if not is_sharded(model):
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    state = get_model_state_dict(model, options=_options(cpu_offload=not all_ranks))
    buffers = {n for n, _ in model.named_buffers()}   # not sharded: returned as the live tensors, so copied
    return {k: v.detach().cpu().clone() if k in buffers else _compact(v) for k, v in state.items()}


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, from_rank0: bool = False,
                         strict: bool = True) -> None:
    """Load a full state dict (as full_state_dict returns) into the model, each rank keeping its shard. Every rank
    passes the state, or (from_rank0=True) rank 0 passes it, the others {}, and rank 0 broadcasts it.
    strict=False: `state` may hold only some of the model's tensors (e.g. LoRA adapters); a name the model lacks
    is still an error."""
    state = _with_tied_names(model, state)
    if not strict:
        known = set(model.state_dict())
        unknown = sorted(k for k in state if k not in known)
        if unknown:
            raise KeyError(f"the state has tensors the model lacks (e.g. {unknown[0]})")
    if not is_sharded(model):
        model.load_state_dict(state, strict=strict)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict
    set_model_state_dict(model, state, options=_options(broadcast_from_rank0=from_rank0, strict=strict))


def _with_tied_names(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of `state` (torch's set_model_state_dict replaces its values by shards) in which every name of a
    tied parameter has the tensor (safetensors' save_model keeps one name of tied weights)."""
    out = dict(state)
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    for group in names.values():
        present = [n for n in group if n in out]
        for n in group if present else ():
            out.setdefault(n, out[present[0]])
    return out


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, *, all_ranks: bool = False) -> dict:
    """The optimizer's state dict with full CPU tensors, keyed by parameter names (not by index). Sharded: a
    collective; rank 0 gets it, the others {} (unless all_ranks). Not sharded: optimizer.state_dict()."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    state = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=not all_ranks))
    # the gathered moments are new tensors, but the step counters are the optimizer's own (the next step would
    # change the saved state): copy them
    for per_param in state.get("state", {}).values():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor) and value.dim() == 0:
                per_param[key] = value.detach().clone()
    return state


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, *,
                              from_rank0: bool = False) -> None:
    """Load what full_optimizer_state returned (every rank passes it, or rank 0 with from_rank0=True)."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
    set_optimizer_state_dict(model, optimizer, _keyed_by_name(model, optimizer, _containers_copied(state)),
                             options=_options(broadcast_from_rank0=from_rank0))


def _keyed_by_name(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> dict:
    """An optimizer state keyed by parameter position (optimizer.state_dict() of a model that was not sharded:
    one process, or DDP) keyed by parameter names instead, as torch's set_optimizer_state_dict reads it: the
    i-th parameter of the optimizer's groups is the i-th saved one. A state keyed by names is returned as is."""
    groups = state.get("param_groups", [])
    if not groups or not all(isinstance(i, int) for g in groups for i in g.get("params", [])):
        return state
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    saved = [i for g in groups for i in g["params"]]
    if len(saved) != len(order):
        raise ValueError(f"the saved optimizer state has {len(saved)} parameters, the optimizer {len(order)}")
    name_of = dict(zip(saved, order))
    return {"state": {name_of[i]: v for i, v in state.get("state", {}).items()},
            "param_groups": [{**g, "params": [name_of[i] for i in g["params"]]} for g in groups]}


def _containers_copied(tree: Any) -> Any:
    """`tree` with its dicts and lists copied (tensors shared): torch's set_*_state_dict replace the values of
    the dicts they are given by shards, which would leave the caller's full state holding DTensors."""
    if isinstance(tree, dict):
        return {k: _containers_copied(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_containers_copied(v) for v in tree]
    return tree


def _compact(t: torch.Tensor) -> torch.Tensor:
    """`t` on the CPU in storage of its own size: a gathered unevenly sharded tensor is a view into the padded
    all-gather buffer, which safetensors refuses to save (and which holds memory for nothing)."""
    t = t.detach().cpu()
    if t.untyped_storage().nbytes() != t.numel() * t.element_size() or not t.is_contiguous():
        t = t.clone(memory_format=torch.contiguous_format)
    return t


def _slots(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Parameter]]:
    """(module, attribute, parameter) of every registered parameter, tied ones once per module using them."""
    for module in model.modules():
        for attr, p in module._parameters.items():
            if p is not None:
                yield module, attr, p


@contextlib.contextmanager
def full_weights(model: nn.Module, *, all_ranks: bool = False) -> Iterator[None]:
    """Inside, rank 0's model (every rank's with all_ranks) holds full CPU parameters in place of its shards, so
    code that saves a module (save_alm, save_weights, save_model_folder) runs on it unchanged; the shards come
    back on exit. A collective on entry (every rank enters). Only for reading the weights: no forward inside."""
    if not is_sharded(model):
        yield
        return
    import torch.distributed as dist
    reshard(model)   # the registered parameters are then the shards (not a root's gathered copies)
    slots = list(_slots(model))
    mine = all_ranks or dist.get_rank() == 0
    full: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    for _, _, p in slots:
        if id(p) in seen:   # tied parameters are gathered once (on every rank alike) and stay tied
            continue
        seen.add(id(p))
        value = p.full_tensor() if hasattr(p, "full_tensor") else p   # a collective: every rank takes part
        if mine:   # only the saving rank keeps the full copy
            full[id(p)] = _compact(value)
        del value
    try:
        if mine:
            fresh = {k: nn.Parameter(v, requires_grad=False) for k, v in full.items()}
            for module, attr, p in slots:
                module._parameters[attr] = fresh[id(p)]
        yield
    finally:
        if mine:
            for module, attr, p in slots:
                module._parameters[attr] = p


# --- parameter snapshots (old policy, reference) ------------------------------------------------------------
def snapshot_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Frozen copies of the trainable parameters (this rank's shards, as DTensors: no communication) and of the
    buffers, keyed by name: what ParamSnapshot.of stores. Not sharded: plain copies."""
    reshard(model)   # the root's registered parameters are its gathered ones between forward and backward
    tensors = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    tensors.update({n: b.detach().clone() for n, b in model.named_buffers()})
    return tensors


def call_with(model: nn.Module, snapshot: dict[str, torch.Tensor], fn: Callable[[], Any]) -> Any:
    """fn() under no_grad with the snapshot's values in the model's parameters and buffers, the live values back
    afterwards. Set eval mode around it as for functional_call.

    Under FSDP the values are copied into the shards in place (torch.func.functional_call runs on the live
    weights there: FSDP's pre-forward all-gather re-registers them over the swapped-in ones) and every module is
    resharded before and after, so nothing gathered outlives the call: it may run between a live forward and
    its backward (GRPO's old / reference logits), whose backward gathers the live shards again. Not sharded:
    the tensors are swapped in as functional_call does (no copy; a pending backward is untouched)."""
    if not is_sharded(model):
        from torch.nn.utils.stateless import _reparametrize_module   # functional_call's own swap
        with torch.no_grad(), _reparametrize_module(model, snapshot):
            return fn()
    with torch.no_grad():
        reshard(model)   # first: the parameters to write are then the registered ones
        targets = dict(model.named_parameters())
        targets.update(dict(model.named_buffers()))
        missing = [k for k in snapshot if k not in targets]
        if missing:
            raise KeyError(f"the snapshot has tensors the model lacks (e.g. {missing[0]})")
        live = {k: targets[k].detach().clone() for k in snapshot}
        try:
            for k, v in snapshot.items():
                targets[k].copy_(v)
            return fn()
        finally:
            reshard(model)
            for k, v in live.items():
                targets[k].copy_(v)


def reshard(model: nn.Module) -> None:
    """Free every gathered parameter of a sharded model (no-op otherwise, or when nothing is gathered)."""
    for m in _fsdp_modules(model) if is_sharded(model) else ():
        m.reshard()


def gather_tensors(tensors: dict[str, torch.Tensor], *, all_ranks: bool = False) -> dict[str, torch.Tensor]:
    """Full CPU copies of a snapshot (DTensor shards gathered), to save it: a collective when it holds DTensors;
    rank 0 gets the tensors, the other ranks {} (all_ranks: everyone)."""
    import torch.distributed as dist
    out = {k: _compact(v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in tensors.items()}
    sharded = any(hasattr(v, "full_tensor") for v in tensors.values())
    if sharded and not all_ranks and dist.get_rank() != 0:
        return {}
    return out


def shard_like(model: nn.Module, full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A snapshot from full tensors (a saved snapshot, a reference model's weights): each tensor cut to this rank's
    shard of the model's same-named parameter, as a DTensor (no communication: every rank passes `full`); tensors
    of unsharded parameters and buffers are moved to the model's device."""
    from torch.distributed.tensor import DTensor, distribute_tensor
    live = dict(model.named_parameters())
    live.update(dict(model.named_buffers()))
    out = {}
    for k, v in full.items():
        ref = live.get(k)
        if isinstance(ref, DTensor):
            out[k] = distribute_tensor(v.to(ref.device_mesh.device_type), ref.device_mesh, ref.placements,
                                       src_data_rank=None)
        else:
            out[k] = v.to(ref.device if ref is not None else v.device)
    return out


def plain_copy(model: nn.Module, build: Callable[[], nn.Module]) -> nn.Module:
    """An ordinary module with the model's current weights, on every rank: `build()` makes the architecture
    (e.g. build_model(cfg.model)); it goes to the model's device, in the model's train / eval mode. For code that
    runs a rank-dependent number of forwards and moves the model (score_utterances calls model.to(), which
    reshards an FSDP root): validation. A collective; the full model's memory while it lives."""
    with torch.random.fork_rng(devices=[]):   # building draws initial weights: leave the training's RNG alone
        copy = build()
    load_full_state_dict(copy, full_state_dict(model, all_ranks=True))
    device = next(iter(model.parameters())).device
    return copy.to(device).train(model.training)


@contextlib.contextmanager
def unsharded(model: nn.Module) -> Iterator[None]:
    """Gather every parameter once and keep it gathered inside (no resharding after forwards), so forwards there
    communicate nothing and ranks may run different numbers of them: generation (decoding stops at EOS),
    validation on each rank's share. Costs the full model's memory for the block; no backward inside, and no
    model.to() (FSDP reshards the root there, and its next forward all-gathers again: use plain_copy for code
    that moves the model). `model`: the root that shard_model sharded. A collective on entry, except inside
    another `unsharded(model)` (nothing happens there: validation may wrap its loop of generate calls, each a
    gathered method, and gather once); nothing for a model that is not sharded."""
    if not is_sharded(model) or getattr(model, "_spoofrl_unsharded", False):
        yield
        return
    model._get_fsdp_state()._lazy_init()   # root and groups settled as a first forward would (no-op later)
    modules = _fsdp_modules(model)
    for m in modules:
        m.set_reshard_after_forward(False, recurse=False)
    model._spoofrl_unsharded = True
    try:
        for m in modules:
            m.unshard()
        yield
    finally:
        model._spoofrl_unsharded = False
        for m in modules:   # back to shard_model's (torch's) setting: the blocks reshard, the root not
            m.set_reshard_after_forward(m is not model, recurse=False)
            m.reshard()


__all__ = ["shard_model", "is_sharded", "find_blocks", "device_mesh", "no_sync", "sync_running_stats", "clip_grad_norm",
           "full_state_dict", "load_full_state_dict", "full_optimizer_state", "load_full_optimizer_state",
           "full_weights", "snapshot_tensors", "call_with", "reshard", "gather_tensors", "shard_like",
           "plain_copy", "unsharded", "MIXED_PRECISION"]
