"""`spoofrl data synth`: determinism, split disjointness, resumption, README facts (tiny preset only)."""
from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.data.manifest import read_manifest
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.synth import splits
from spoofrl.synth.generate import generate
from spoofrl.synth.sources import espeak, same_espeak_speaker
from spoofrl.synth.splits import (DESIGN, OOD_ATTACKS, OOD_CHANNELS, OOD_VOICES, POSTTRAIN_VOICES, PRESETS,
                                  TARGET_VOICES, check_design, check_espeak_pools, make_plan, optional_voices)

SUBSETS = [d.name for d in DESIGN]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny benchmark made once through the CLI with 2 workers."""
    out = tmp_path_factory.mktemp("bench") / "tiny"
    assert main(["data", "synth", "--design", "v1", "--out", str(out), "--preset", "tiny", "--seed", "5", "--workers", "2"]) == 0
    return out


def _audio(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): sf.read(str(p), dtype="int16")[0]
            for p in sorted(folder.glob("audio/*/*.flac"))}


def test_manifest_is_the_foundation_format(tiny):
    rows = read_manifest(tiny / "manifest.csv")
    assert {r.subset for r in rows} == set(SUBSETS)
    for subset in SUBSETS:
        labels = {r.label for r in rows if r.subset == subset}
        assert labels == {"bonafide", "spoof"}, subset       # every subset can be scored (EER needs both)
    for r in rows:
        assert not Path(r.path).is_absolute() and r.audio_path.is_file()
        info = sf.info(str(r.audio_path))
        assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
        assert 1.0 < info.duration < 8.0
        assert (r.attack == "-") == (r.label == "bonafide")
        assert r.extra["base"] and r.extra["speaker"] and r.extra["text"]
    assert not list(tiny.rglob("*.part"))
    meta = [json.loads(line) for line in (tiny / "meta.jsonl").read_text().splitlines()]
    assert [m["path"] for m in meta] == [r.path for r in rows]


def test_same_seed_gives_identical_audio_and_manifest(tiny, tmp_path):
    again = generate(tmp_path / "again", preset="tiny", seed=5, workers=1, show_progress=False)
    assert again.written == again.files
    assert (tmp_path / "again" / "manifest.csv").read_bytes() == (tiny / "manifest.csv").read_bytes()
    first, second = _audio(tiny), _audio(tmp_path / "again")
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_another_seed_gives_other_texts():
    texts = lambda seed: {b.text for b in make_plan("tiny", seed)}  # noqa: E731
    assert texts(5) == texts(5)
    assert texts(5) != texts(6)


def test_texts_never_shared_between_subsets():
    plan = make_plan("demo", 0)
    subsets_of = defaultdict(set)
    for base in plan:
        subsets_of[base.text].add(base.subset)
    assert all(len(s) == 1 for s in subsets_of.values())
    assert len(subsets_of) == len(plan)                      # every utterance has its own sentence


def test_speakers_disjoint_where_the_split_says_unseen():
    check_design()
    plan = make_plan("demo", 0)
    speakers = defaultdict(set)
    for base in plan:
        speakers[base.subset].add(base.voice.speaker)
    training = speakers["posttrain"] | speakers["target_train"]
    assert not speakers["ood_source"] & training
    assert not speakers["ood_mix"] & training
    assert not speakers["target_train"] & speakers["posttrain"]
    # target_eval is in-domain: its speakers were seen in target_train but never in post-training
    assert speakers["target_eval"] <= {v.speaker for vs in TARGET_VOICES.values() for v in vs}
    assert not speakers["target_eval"] & speakers["posttrain"]
    # one person in two engines counts as one speaker and stays on one side
    all_pt = {v.speaker for vs in POSTTRAIN_VOICES.values() for v in vs}
    all_ood = {v.speaker for vs in OOD_VOICES.values() for v in vs}
    assert "kal" in all_pt and "slt" in all_ood


def test_ood_axes_unseen_in_training_and_covered_otherwise():
    plan = make_plan("demo", 0)
    items = defaultdict(list)
    for base in plan:
        items[base.subset] += base.items
    attacks = lambda s: {i.attack for i in items[s]} - {"-"}  # noqa: E731
    channels = lambda s: {i.channel for i in items[s]}  # noqa: E731
    trained_attacks = attacks("posttrain") | attacks("target_train")
    trained_channels = channels("posttrain") | channels("target_train")
    assert attacks("ood_attack") == set(OOD_ATTACKS) and not attacks("ood_attack") & trained_attacks
    assert channels("ood_channel") == set(OOD_CHANNELS) and not channels("ood_channel") & trained_channels
    # the other axes of each OOD subset are the post-training ones (post-training covers them)
    assert attacks("ood_source") <= attacks("posttrain") and attacks("ood_channel") <= attacks("posttrain")
    assert channels("ood_attack") <= channels("posttrain") and channels("ood_source") <= channels("posttrain")
    # the target domain differs from post-training in attacks and channels
    assert not attacks("target_train") & attacks("posttrain")
    assert channels("target_train") - channels("posttrain")


def test_channels_do_not_reveal_the_label():
    """Within a subset both classes draw channels from one distribution (checked on a large plan)."""
    plan = make_plan("demo", 0)
    counts = defaultdict(lambda: defaultdict(int))
    for base in plan:
        if base.subset == "posttrain":
            for item in base.items:
                counts[item.label][item.channel] += 1
    for channel in counts["bonafide"]:
        share_b = counts["bonafide"][channel] / sum(counts["bonafide"].values())
        share_s = counts["spoof"][channel] / sum(counts["spoof"].values())
        assert abs(share_b - share_s) < 0.08, channel


def test_resume_completes_a_half_made_set(tiny, tmp_path):
    half = tmp_path / "half"
    shutil.copytree(tiny, half)
    (half / "manifest.csv").unlink()
    removed = sorted(half.glob("audio/*/*.flac"))[::4]
    for p in removed:
        p.unlink()
    (removed[0].with_name(removed[0].name + ".part")).write_bytes(b"half a file")  # a killed write
    untouched = sorted(set(half.glob("audio/*/*.flac")))
    mtimes = {p: p.stat().st_mtime_ns for p in untouched}
    report = generate(half, preset="tiny", seed=5, workers=1, show_progress=False)
    assert report.written == len(removed) and report.skipped == report.files - len(removed)
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in untouched)      # finished files are not redone
    assert (half / "manifest.csv").read_bytes() == (tiny / "manifest.csv").read_bytes()
    first, second = _audio(tiny), _audio(half)
    for p in removed:
        key = p.relative_to(half).as_posix()
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_refuses_to_mix_benchmarks(tiny, tmp_path):
    with pytest.raises(ConfigError, match="--preset tiny --seed 5"):
        generate(tiny, preset="tiny", seed=6, show_progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate(foreign, preset="tiny", seed=0, show_progress=False)


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["data", "synth", "--design", "v1", "--out", str(tmp_path / "x"), "--preset", "tiny", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--workers must be at least 1" in err and err.count("\n") == 1


def test_readme_lists_subsets_sources_and_what_is_unseen(tiny):
    text = (tiny / "README.md").read_text()
    for subset in SUBSETS:
        assert f"| {subset} |" in text
    assert "almost entirely synthetic" in text and "not measure" in text
    unseen_rows = [line for line in text.splitlines() if line.startswith("| ood_attack | posttrain |")]
    assert len(unseen_rows) == 1
    assert "`hnm`" in unseen_rows[0] and "`celp`" in unseen_rows[0]   # tiny: one utterance, both OOD attacks
    engines = {json.loads(line)["engine"] for line in (tiny / "meta.jsonl").read_text().splitlines()}
    sources = text.split("## Speech sources")[1].split("## Subsets")[0]
    assert all(f"| {engine} |" in sources for engine in engines)
    with open(tiny / "manifest.csv", newline="") as fh:
        n_files = sum(1 for _ in csv.reader(fh)) - 1
    missing = json.loads((tiny / "synth.json").read_text())["left_out"]
    assert n_files == 3 * len(make_plan("tiny", 5, [v for v in optional_voices() if v.id in missing]))


def test_espeak_pools_hold_no_near_copies_of_one_voice(monkeypatch):
    check_espeak_pools()                                     # the shipped pools pass
    assert same_espeak_speaker("steph", "steph2") and same_espeak_speaker("linda", "belinda")
    assert same_espeak_speaker("john", "grandpa")             # same pitch range and formants, other name
    assert not same_espeak_speaker("m1", "f1") and not same_espeak_speaker("klatt", "klatt2")
    assert espeak("en-us+m3").speaker == espeak("de+m3").speaker != espeak("en-us+m4").speaker
    monkeypatch.setitem(splits.TARGET_VOICES, "espeak-ng", [espeak("en-us-nyc+belinda")])
    with pytest.raises(SpoofrlError, match="linda \\(post-training\\) ~ belinda \\(target\\)"):
        check_espeak_pools()


def test_optional_voices_are_left_out_by_plan_and_used_once():
    everything = make_plan("demo", 0)
    without = make_plan("demo", 0, optional_voices())
    assert not {b.voice.engine for b in without} & {"arctic", "openjtalk"}
    recorded = [b for b in everything if b.voice.engine == "arctic"]
    assert sorted(b.subset for b in recorded) == ["ood_source", "posttrain"]        # one utterance each
    assert {b.voice.speaker for b in recorded} == {"awb", "slt"}
    japanese = [b for b in everything if b.voice.engine == "openjtalk"]
    assert japanese and {b.subset for b in japanese} <= {"ood_source", "ood_mix"}
    assert all(b.style == "japanese" and not b.text.isascii() for b in japanese)
    assert all(b.text.isascii() for b in everything if b.voice.engine != "openjtalk")


def test_missing_optional_sources_are_logged_recorded_and_guarded(tmp_path, monkeypatch, caplog):
    import spoofrl.synth.generate as gen
    monkeypatch.setattr(gen, "optional_voice_problems", lambda voices: {v: "not installed here" for v in voices})
    out = tmp_path / "core_only"
    with caplog.at_level("WARNING", logger="spoofrl.synth.generate"):
        report = generate(out, preset="tiny", seed=5, show_progress=False)
    left_out = sorted(v.id for v in optional_voices())
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert all(any(v in w and "not installed here" in w for w in warned) for v in left_out)
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == report.files == 3 * sum(PRESETS["tiny"].bases.values())
    assert not any(r.source.split(":")[0] in ("arctic", "openjtalk") for r in rows)
    assert json.loads((out / "synth.json").read_text())["left_out"] == left_out
    assert "not installed here" in (out / "README.md").read_text()
    monkeypatch.setattr(gen, "optional_voice_problems", lambda voices: {})   # now "installed": other files
    with pytest.raises(ConfigError, match="optional voices left out"):
        generate(out, preset="tiny", seed=5, show_progress=False)


def test_optional_sources_speak_when_installed():
    from spoofrl.synth.sources import Prosody, arctic, openjtalk, optional_voice_problems, synthesize
    voices = [arctic("awb_a0007"), arctic("slt_a0009"), openjtalk()]
    usable = [v for v in voices if v not in optional_voice_problems(voices)]
    if not usable:
        pytest.skip("optional speech sources not installed (pip install 'spoofrl[synth]')")
    jobs = [(v, "明日、田中さんと駅の前で会いましょう。", Prosody(1.0, 1.0)) for v in usable]
    for voice, x in zip(usable, synthesize(jobs)):
        assert 1.0 < len(x) / 16000 < 6.0 and np.max(np.abs(x)) > 0.05, voice.id
    if openjtalk() in usable:  # pitch factor reaches the voice: F0 rises by about the factor asked for
        from spoofrl.synth import dsp
        low, high = synthesize([(openjtalk(), "今日はとても静かです。", Prosody(1.0, p)) for p in (0.9, 1.1)])
        f0 = [np.median(f[f > 0]) for f in (dsp.f0_track(y, 16000)[0] for y in (low, high))]
        assert 1.12 < f0[1] / f0[0] < 1.32


def test_every_voice_of_the_design_is_installed():
    """Each core voice a preset may draw passes the check (a misparsed voice list once refused 'Storm')."""
    from spoofrl.synth.sources import OPTIONAL_ENGINES, check_voices
    check_voices([v for v in splits.all_voices() if v.engine not in OPTIONAL_ENGINES])


def test_unknown_voices_are_named_before_generation():
    from spoofrl.synth.sources import SourceUnavailable, check_voices, espeak, festival
    with pytest.raises(SourceUnavailable, match="espeak-ng:en-us\\+nonexistent.*festival:no_such_voice"):
        check_voices([espeak("en-us+nonexistent"), espeak("en-us+m3"), festival("no_such_voice")])


@pytest.mark.parametrize("voice", ["espeak-ng:en-us+m3", "flite:kal16", "festival:kal_diphone"])
def test_planned_rate_and_pitch_reach_the_synthesizer(voice):
    """The plan varies speaking rate and pitch per utterance; each engine must really apply both."""
    from spoofrl.synth import dsp
    from spoofrl.synth.sources import Prosody, Voice, espeak, festival, flite, synthesize, trim_silence
    engine, name = voice.split(":")
    v: Voice = {"espeak-ng": espeak, "flite": flite, "festival": festival}[engine](name)
    text = "The bright lantern was carried by the sailor today."
    slow_low, fast_high = synthesize([(v, text, Prosody(0.9, 0.9)), (v, text, Prosody(1.25, 1.1))])
    f0 = [np.median(f[f > 0]) for f in (dsp.f0_track(x, 16000)[0] for x in (slow_low, fast_high))]
    assert f0[1] / f0[0] > 1.1                                   # asked for 1.1 / 0.9 = 1.22
    assert len(trim_silence(fast_high)) < 0.85 * len(trim_silence(slow_low))   # asked for 0.9 / 1.25 = 0.72


def test_optional_sources_that_would_download_or_are_absent_are_refused(tmp_path, monkeypatch):
    """Plain pyopenjtalk fetches its dictionary at first use (impossible offline): refused with the reason,
    like an absent package, before any synthesis is tried."""
    from spoofrl.synth import sources
    plain = tmp_path / "pyopenjtalk"
    plain.mkdir()
    monkeypatch.setattr(sources, "_package_dir", lambda package: plain if package == "pyopenjtalk" else None)
    problems = sources.optional_voice_problems([sources.openjtalk(), sources.arctic("awb_a0007")])
    assert "no bundled dictionary" in problems[sources.openjtalk()]
    assert "'pysptk', which is not installed" in problems[sources.arctic("awb_a0007")]
    with pytest.raises(sources.SourceUnavailable, match="pysptk"):
        sources.synthesize([(sources.arctic("awb_a0007"), "", sources.Prosody())])
