"""The built-in benchmark: offline speech sources, copy-synthesis attacks (vocoders and codecs), channels,
the split design, the generator behind `spoofrl data synth` and `spoofrl vocode`. See docs/benchmark.md.

Registries: `spoofrl.synth.attacks.ATTACKS` and `spoofrl.synth.channels.CHANNELS` (id -> callable
`(x, sr, rng, **params)` with documented parameter ranges). Entry points:
`spoofrl.synth.generate.generate(out_dir, preset, seed, workers)` and
`spoofrl.synth.vocode.vocode(inp, out_dir, attacks, seed, workers)`.
"""
