"""`spoofrl models`: the model zoo - registered front-ends and back-ends, presets with parameter counts,
and the documented options of any component or preset."""
from __future__ import annotations

from spoofrl.cli.common import add_deprecated_alias, add_format_option, add_set_option

DESCRIPTION = """\
List the detector components and presets, or describe one of them.

Every detector = a front-end (waveform -> frame features) + a back-end (features -> logits over
(spoof, bonafide)). Its score is the log-odds of bona fide, logits[1] - logits[0]: higher = more bona fide.
Presets live in configs/models/; use one in a training config as `model: {preset: NAME}`.
Parameter counts marked * are SSL presets naming no checkpoint folder, counted with an encoder of XLS-R 300M
size; `--describe NAME --set frontend.path=DIR` counts yours.

Examples:
  spoofrl models                                  # components and presets with parameter counts
  spoofrl models --describe ssl                   # every option of the SSL front-end
  spoofrl models --describe ssl-ffn-fusion --set frontend.path=/models/xls-r-300m
"""


def register(sub):
    import argparse
    p = sub.add_parser("models", help="list front-ends, back-ends and model presets (with parameter counts)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--describe", metavar="NAME",
                   help="a front-end or back-end registry key (prints its options with types, defaults and "
                        "meaning) or a preset name / YAML path (prints its resolved config and size)")
    fmt = add_format_option(p, ("text", "markdown"), "with --describe KEY: text (default) or markdown, a Markdown "
                            "table of the options (for docs)")
    add_deprecated_alias(p, "--markdown", fmt, const="markdown")
    add_set_option(p)
    p.set_defaults(func=run)
    from spoofrl.cli.cmd_models_fetch import register_fetch
    register_fetch(p.add_subparsers(dest="models_command", metavar="COMMAND"))


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def _preset_note(path) -> str:
    """The first comment line of a preset file (its one-line title)."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            note = line.lstrip("# ").strip()
            return note if len(note) <= 70 else note[:67] + "..."
    return ""


def build_for_counting(cfg):
    """(model, note) for parameter counts. An SSL preset that names no checkpoint folder is built with an
    encoder of a reference size (XLS-R 300M) on the meta device (no memory, no weights); note says so."""
    import dataclasses

    import torch

    from spoofrl.features.ssl import REFERENCE_ENCODER, CheckpointNeeded
    from spoofrl.models import build_model
    try:
        return build_model(cfg), ""
    except CheckpointNeeded:
        name, architecture = REFERENCE_ENCODER
        sized = dataclasses.replace(cfg, frontend={**cfg.frontend, "config": architecture})
        with torch.device("meta"):
            return build_model(sized), f"with an encoder of {name} size (set frontend.path for yours)"


def _size(cfg) -> tuple[str, str]:
    """(parameters, trainable) of a model config; '*' marks a count made with the reference SSL encoder."""
    from spoofrl.models import count_parameters
    model, note = build_for_counting(cfg)
    mark = "*" if note else ""
    return f"{count_parameters(model):,}{mark}", f"{count_parameters(model, trainable_only=True):,}{mark}"


def list_all() -> str:
    from spoofrl.config import config_dir
    from spoofrl.errors import SpoofrlError
    from spoofrl.models import load_model_preset
    from spoofrl.models.registry import BACKENDS, FRONTENDS
    lines = ["Front-ends (model.frontend.name):"]
    lines += [f"  {k:<12} {_first_line(FRONTENDS.get(k).__doc__)}" for k in FRONTENDS.names()]
    lines += ["", "Back-ends (model.backend.name):"]
    lines += [f"  {k:<12} {_first_line(BACKENDS.get(k).__doc__)}" for k in BACKENDS.names()]
    lines += ["", "Presets (configs/models/; `model: {preset: NAME}` in a training config):",
              f"  {'name':<20} {'front-end':<10} {'back-end':<12} {'parameters':>13} {'trainable':>13}  about"]
    for path in sorted((config_dir() / "models").glob("*.yaml")):
        try:
            cfg = load_model_preset(str(path))
            total, trainable = _size(cfg)
        except SpoofrlError:  # one broken preset file must not hide the others
            lines.append(f"  {path.stem:<20} invalid preset: `spoofrl models --describe {path.stem}` says why")
            continue
        lines.append(f"  {path.stem:<20} {cfg.frontend['name']:<10} {cfg.backend['name']:<12} {total:>13} "
                     f"{trainable:>13}  {_preset_note(path)}")
    from spoofrl.features.ssl import REFERENCE_ENCODER
    lines += ["", f"*: an SSL preset naming no checkpoint, counted with an encoder of {REFERENCE_ENCODER[0]} size; "
              "set model.frontend.path to a local checkpoint folder (config.json + weights).",
              "Scores: log-odds of bona fide (logits[1] - logits[0]); higher = more bona fide.",
              "Options of a component or preset: spoofrl models --describe NAME"]
    return "\n".join(lines)


def describe_component(name: str, markdown: bool) -> str | None:
    from spoofrl.cli.cmd_config import format_rows
    from spoofrl.config import describe
    from spoofrl.models.registry import BACKENDS, FRONTENDS
    for kind, registry in (("front-end", FRONTENDS), ("back-end", BACKENDS)):
        if name in registry:
            cls = registry.get(name)
            head = f"{kind} '{name}': {(cls.__doc__ or '').strip()}\n\nOptions (model.{kind.replace('-', '')}.*):"
            return head + "\n" + format_rows(describe(cls.Config), markdown)
    return None


def describe_preset(name: str, overrides: list[str]) -> str:
    import yaml

    from spoofrl.config import resolve_preset, to_dict
    from spoofrl.errors import ConfigError
    from spoofrl.models import count_parameters, load_model_preset
    cfg = load_model_preset(name, overrides)
    try:
        model, note = build_for_counting(cfg)
    except ConfigError as err:  # build-time checks (e.g. layers an encoder does not have): name the file
        raise ConfigError(f"{resolve_preset('models', name)}: {err}") from None
    # A reference-size stand-in has no real encoder config to show: print the preset as resolved instead.
    text = yaml.safe_dump(to_dict(cfg.resolved() if note else model.resolved_config()), sort_keys=False)
    return (f"{text}\nparameters: {count_parameters(model):,} "
            f"(trainable {count_parameters(model, trainable_only=True):,}){' ' + note if note else ''}\n"
            f"front-end frozen: {model.frontend_is_frozen}; feature cache recommended: "
            f"{model.frontend_cache_recommended}")


def run(args):
    from spoofrl.errors import ConfigError
    if not args.describe:
        if args.overrides:
            raise ConfigError("--set applies to --describe PRESET only")
        print(list_all())
        return 0
    text = None if args.overrides else describe_component(args.describe, args.format == "markdown")
    if text is None:
        from spoofrl.config import resolve_preset
        try:
            resolve_preset("models", args.describe)
        except ConfigError:
            from spoofrl.models.registry import BACKENDS, FRONTENDS
            raise ConfigError(f"'{args.describe}' is neither a component (front-ends: "
                              f"{', '.join(FRONTENDS.names())}; back-ends: {', '.join(BACKENDS.names())}) "
                              f"nor a preset (see `spoofrl models`)") from None
        text = describe_preset(args.describe, args.overrides)
    print(text)
    return 0
