"""`spoofrl config`: every option of a config section with its type, default and documentation."""
from __future__ import annotations

import textwrap

from spoofrl.cli.common import add_deprecated_alias, add_format_option

# Config roots users write YAML for; "module:Class", imported lazily.
ROOTS = {
    "train": "spoofrl.training:TrainConfig",
    "experiment": "spoofrl.experiment:ExperimentConfig",
    "model": "spoofrl.models:ModelConfig",
}


def register(sub):
    p = sub.add_parser("config", help="document config options (train, experiment, model, a front-end or back-end)",
                       description="Print every option of a config section with its type, default and meaning. "
                                   "KIND is train, experiment, model, frontend or backend; the last two need NAME, "
                                   "a registry key (see `spoofrl models`). For train, experiment and model, NAME "
                                   "is an optional section to show alone, e.g. `spoofrl config train objective`.")
    p.add_argument("kind", choices=[*ROOTS, "frontend", "backend"],
                   help="which options: a config kind (train, experiment, ...) or a detector component kind")
    p.add_argument("name", nargs="?", help="registry key of the front-end / back-end, or a section of "
                                           "train / experiment / model (e.g. objective, data.augment)")
    fmt = add_format_option(p, ("text", "markdown"), "text (default) or markdown: a Markdown table (for docs)")
    add_deprecated_alias(p, "--markdown", fmt, const="markdown")
    p.set_defaults(func=run)


def _config_class(kind: str, name: str | None):
    import importlib

    from spoofrl.errors import ConfigError
    if kind in ROOTS:
        module, _, attr = ROOTS[kind].partition(":")
        return getattr(importlib.import_module(module), attr)
    if not name:
        raise ConfigError(f"'spoofrl config {kind}' needs the component's registry key, e.g. "
                          f"'spoofrl config {kind} {'logmel' if kind == 'frontend' else 'pool-linear'}'")
    from spoofrl.models.registry import BACKENDS, FRONTENDS
    return (FRONTENDS if kind == "frontend" else BACKENDS).get(name).Config


def format_rows(rows, markdown: bool) -> str:
    if markdown:
        lines = ["| option | type | default | meaning |", "|---|---|---|---|"]
        cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731  ('a' | 'b' types would split the cell)
        lines += [f"| `{k}` | {cell(t)} | `{cell(d)}` | {cell(doc)} |" for k, t, d, doc in rows]
        return "\n".join(lines)
    out = []
    for key, tp, default, doc in rows:
        head = f"{key}  [{tp}]" + (f"  default {default}" if default else "")
        out.append(head)
        if doc:
            out.append(textwrap.indent(textwrap.fill(doc, 96), "    "))
    return "\n".join(out)


def _section_rows(rows, kind: str, section: str | None):
    """The rows of one section (`objective`, `data.augment`, ...) of a root config; all rows without one."""
    from spoofrl.errors import ConfigError
    if kind not in ROOTS or not section:
        return rows
    picked = [r for r in rows if r[0] == section or r[0].startswith((section + ".", section + "[]."))]
    if not picked:
        sections = sorted({r[0] for r in rows if r[1] == "section"})
        raise ConfigError(f"'spoofrl config {kind}' has no section '{section}'; sections: {', '.join(sections)}")
    return picked


def run(args):
    from spoofrl.config import describe
    rows = describe(_config_class(args.kind, args.name))
    print(format_rows(_section_rows(rows, args.kind, args.name), args.format == "markdown"))
    return 0
