"""`spoofrl data synth --design real`: the benchmark made from real recordings (design v2).

Runs on a fixture manifest of a few short speech-like clips made here (packaged as Ogg Vorbis at
22.05 kHz, G.722 and 8 kHz PCM, in the languages of the three speaker pools), so no download is needed:
speaker-disjoint pools, TTS spoofs labelled as attacks, every spoof packaged like its base, language /
gender / duration parity between the classes, determinism (1 or 2 workers) and resumption, and the
channel-parity probe on the generated set. Plan-level checks run on a larger manifest without audio.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.data.manifest import read_manifest
from spoofrl.errors import ConfigError
from spoofrl.synth import real_design as rd
from spoofrl.synth.packaging import Packaging, package_many, rate_roundtrip, vorbis_bitrate
from spoofrl.synth.real_generate import generate_real, trim
from spoofrl.synth.real_readme import class_balance, ks_distance, total_variation

SR = 16000
FIELDS = ["path", "label", "attack", "source", "condition", "subset", "speaker", "language", "gender", "transcript",
          "text_source", "gloss", "license", "package", "version", "duration", "sample_rate"]

# (source, speaker, language, gender, packaging, transcript, seconds)
CLIPS = [
    ("game-en", "game:alice", "en", "f", "vorbis-22k", "The bridge was closed this morning.", 1.6),
    ("game-en", "game:alice", "en", "f", "vorbis-22k", "Bring the lantern to the harbour.", 1.5),
    ("game-en", "game:bob", "en", "m", "vorbis-22k", "Nobody opened the old gate.", 1.4),
    ("game-en", "game:bob", "en", "m", "vorbis-22k", "", 1.3),
    ("game-en", "game:bob", "en", "m", "vorbis-22k", "", 9.5),                       # cut into 2 segments
    ("phone-es", "phone:ana", "es", "f", "g722-16k", "Marque cero para obtener ayuda.", 1.7),
    ("phone-es", "phone:ana", "es", "f", "g722-16k", "La conferencia ha sido bloqueada.", 1.5),
    ("words-de", "words:de", "de", "-", "pcm16-8k", "Apfel", 1.1),
    ("game-nl", "game-nl:vis", "nl", "m", "vorbis-22k", "Het is een stalagmiet.", 1.6),
    ("game-nl", "game-nl:vis", "nl", "m", "vorbis-22k", "Blijf nu maar even overal af.", 1.5),
    ("game-nl", "game-nl:kat", "nl", "f", "vorbis-22k", "Zie je dat schrijfblok?", 1.4),
    ("phone-fr", "phone:june", "fr", "f", "g722-16k", "La conférence a été prolongée.", 1.6),
    ("phone-it", "phone:carlo", "it", "m", "g722-16k", "Messaggio contrassegnato come urgente.", 1.7),
    ("phone-it", "phone:carlo", "it", "m", "g722-16k", "", 0.6),                     # too short: not used
]
PRESET = rd.RealPreset("fixture", {"posttrain": 4, "posttrain_dev": 1, "target_train": 1, "target_dev": 1,
                                   "target_eval": 1, "ood_attack": 1, "ood_source": 1, "ood_channel": 1, "ood_mix": 1},
                       "test fixture")


def write_fetch_manifest(path: Path, rows: list[dict]) -> Path:
    """A manifest in `spoofrl data fetch`'s format (FIELDS) holding `rows`."""
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def speechlike(seconds: float, seed: int, f0: float) -> np.ndarray:
    """A voiced, syllable-modulated signal with formant-like resonances and silent margins (real-like
    enough for F0 tracking, vocoders and trimming)."""
    from scipy import signal as sps
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f = f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t) + 0.02 * rng.standard_normal())
    pulses = (np.diff(np.floor(np.cumsum(f / SR)), prepend=0) > 0).astype(float)
    x = pulses + 0.02 * rng.standard_normal(n)
    for centre in (500 + 200 * rng.random(), 1500 + 400 * rng.random(), 2600 + 300 * rng.random()):
        b, a = sps.iirpeak(centre, 6, fs=SR)
        x = sps.lfilter(b, a, x) + 0.3 * x
    env = np.clip(np.sin(2 * np.pi * 3.5 * t + rng.random() * 6) * 0.8 + 0.5, 0, 1)
    margin = int(0.25 * SR)
    env[:margin] = 0
    env[-margin:] = 0
    y = x * env
    y = 0.3 * y / (np.max(np.abs(y)) + 1e-9) + 3e-4 * rng.standard_normal(n)
    return y.astype(np.float32)


def _write_clip(path: Path, x: np.ndarray, packaging: str) -> int:
    from spoofrl.audio import resample
    if packaging == "vorbis-22k":
        sf.write(str(path), resample(x, SR, 22050), 22050, format="OGG", subtype="VORBIS")
        return 22050
    if packaging == "pcm16-8k":
        sf.write(str(path), resample(x, SR, 8000), 8000, subtype="PCM_16")
        return 8000
    raw = path.with_suffix(".f32")
    raw.write_bytes(x.astype(np.float32).tobytes())
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", "16000", "-ac", "1", "-i",
                    str(raw), "-c:a", "g722", "-f", "g722", str(path)], check=True)
    raw.unlink()
    return 16000


def make_fixture(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    suffix = {"vorbis-22k": ".ogg", "pcm16-8k": ".wav", "g722-16k": ".g722"}
    for i, (source, speaker, lang, gender, pack, text, seconds) in enumerate(CLIPS):
        name = f"clips/{source}/{i:02d}{suffix[pack]}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        rate = _write_clip(folder / name, speechlike(seconds, i, 210.0 if gender == "f" else 120.0), pack)
        rows.append({"path": name, "label": "bonafide", "attack": "-", "source": source, "condition": pack,
                     "subset": "-", "speaker": speaker, "language": lang, "gender": gender, "transcript": text,
                     "text_source": "fixture", "gloss": "", "license": "CC0-1.0", "package": f"fixture-{source}",
                     "version": "1", "duration": f"{seconds:.3f}", "sample_rate": str(rate)})
    return write_fetch_manifest(folder / "manifest.csv", rows)


@pytest.fixture(scope="module")
def fixture_manifest(tmp_path_factory) -> Path:
    return make_fixture(tmp_path_factory.mktemp("real") / "cache")


@pytest.fixture(scope="module")
def bench(fixture_manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "real"
    generate_real(out, PRESET, seed=5, workers=2, real_manifest=fixture_manifest, show_progress=False)
    return out


def _audio(folder: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(folder).as_posix(): sf.read(str(p), dtype="int16")[0] for p in sorted(folder.glob("audio/*/*.flac"))}


def _rows(bench: Path):
    return read_manifest(bench / "manifest.csv")


# ------------------------------------------------------------------------------------------ the files


def test_manifest_files_and_version(bench):
    rows = _rows(bench)
    assert {r.subset for r in rows} == set(rd.SUBSETS)
    for subset in rd.SUBSETS:
        assert {r.label for r in rows if r.subset == subset} == {"bonafide", "spoof"}, subset
    for r in rows:
        info = sf.info(str(r.audio_path))
        assert info.samplerate == 16000 and info.channels == 1
        assert rd.MIN_S - 0.01 <= info.duration <= rd.MAX_S + 0.01
        assert (r.attack == "-") == (r.label == "bonafide")
        assert abs(float(r.extra["duration"]) - info.duration) < 1e-3
    stamp = json.loads((bench / "synth.json").read_text())
    assert stamp["design"] == "real" and stamp["version"] == rd.VERSION and stamp["preset"] == "fixture"
    readme = (bench / "README.md").read_text()
    assert "design `real` (version 2" in readme and "What it does not measure" in readme
    assert "neural TTS" in readme
    # the 0.6 s clip is not used; the 9.5 s clip is cut into 2 segments, with no transcript for TTS
    origins = Counter(r.extra["origin"] for r in rows if r.label == "bonafide")
    assert "clips/phone-it/13.g722" not in origins
    long_clip = [r for r in rows if r.extra["origin"] == "clips/game-en/04.ogg"]
    assert {r.extra["segment"] for r in long_clip} == {"1/2", "2/2"}
    assert all(r.extra["kind"] in ("bonafide", "copy") for r in long_clip)


def test_speaker_pools_are_disjoint(bench):
    rows = _rows(bench)
    pools = defaultdict(set)
    for r in rows:
        pools[rd.SUBSET_POOL[r.subset]].add(r.extra["speaker"])
    assert not pools["posttrain"] & pools["target"]
    assert not pools["posttrain"] & pools["ood"]
    assert not pools["target"] & pools["ood"]
    langs = {pool: {r.extra["language"] for r in rows if rd.SUBSET_POOL[r.subset] == pool} for pool in rd.POOLS}
    assert langs["target"] == {"nl"} and langs["ood"] <= set(rd.OOD_LANGUAGES)
    assert not langs["posttrain"] & (set(rd.OOD_LANGUAGES) | set(rd.TARGET_LANGUAGES))
    # a real clip, and a text, belongs to one subset only
    subsets_of = defaultdict(set)
    for r in rows:
        subsets_of[r.extra["origin"]].add(r.subset)
    assert all(len(s) == 1 for s in subsets_of.values())


def test_tts_spoofs_are_labelled_attacks(bench):
    rows = _rows(bench)
    tts = [r for r in rows if r.extra["kind"] in ("tts", "tts+vocoder")]
    assert tts, "the fixture plan has TTS spoofs"
    for r in rows:
        engine = r.extra["tts_engine"]
        if r.label == "bonafide":
            assert r.extra["kind"] == "bonafide" and engine == "-" and r.extra["tts_voice"] == "-"
            assert r.extra["vocoder"] == "-"
        elif r.extra["kind"] == "copy":
            assert engine == "-" and r.attack == r.extra["vocoder"] and r.attack in rd.ATTACKS
        else:
            assert r.label == "spoof" and engine in rd.TTS_ENGINES and r.attack.startswith("tts-")
            assert r.attack == (engine if r.extra["kind"] == "tts" else f"{engine}+{r.extra['vocoder']}")
            assert r.extra["text"] and r.extra["tts_voice"] != "-"
            if r.extra["language"] != "en":
                assert TTS_ENGINE_OF(engine) == "espeak-ng"
    seen = {r.extra["tts_engine"] for r in rows if r.subset in rd.TRAINING_SUBSETS}
    for r in rows:
        if r.subset in ("ood_attack", "ood_mix") and r.extra["tts_engine"] != "-":
            assert r.extra["tts_engine"] not in seen
            assert r.extra["tts_engine"] in rd.OOD_TTS


def TTS_ENGINE_OF(engine_id: str) -> str:
    return rd.TTS_ENGINES[engine_id].engine


def test_spoofs_carry_their_base_packaging(bench):
    rows = _rows(bench)
    by_base = defaultdict(list)
    for r in rows:
        by_base[r.extra["base"]].append(r)
    for base, items in by_base.items():
        bona = [r for r in items if r.label == "bonafide"]
        assert len(bona) == 1 and len(items) == 3, base
        for r in items:
            for key in ("packaging", "language", "gender", "speaker", "origin"):
                assert r.extra[key] == bona[0].extra[key], (base, key)
            assert r.source == bona[0].source
            assert r.condition == (r.extra["packaging"] if r.extra["channel"] == "clean"
                                   else f"{r.extra['packaging']}+{r.extra['channel']}")
    # 8 kHz packaging: nothing above 4 kHz in either class
    narrow = [r for r in rows if r.extra["packaging"] == "pcm16-8k" and r.extra["channel"] == "clean"]
    assert {r.label for r in narrow} == {"bonafide", "spoof"}
    for r in narrow:
        x, _ = sf.read(str(r.audio_path), dtype="float64")
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / SR)
        assert spec[f > 4300].sum() < 1e-4 * spec.sum(), r.path


def test_class_parity_of_language_gender_duration_condition(bench):
    rows = _rows(bench)
    bona = [r for r in rows if r.label == "bonafide"]
    spoof = [r for r in rows if r.label == "spoof"]
    assert total_variation([r.extra["language"] for r in bona], [r.extra["language"] for r in spoof]) == 0.0
    assert total_variation([r.extra["gender"] for r in bona], [r.extra["gender"] for r in spoof]) == 0.0
    assert total_variation([r.extra["packaging"] for r in bona], [r.extra["packaging"] for r in spoof]) == 0.0
    d_bona = [float(r.extra["duration"]) for r in bona]
    d_spoof = [float(r.extra["duration"]) for r in spoof]
    assert abs(np.mean(d_spoof) / np.mean(d_bona) - 1) < 0.1
    assert ks_distance(d_bona, d_spoof) < 0.25
    for r in spoof:            # per base: a spoof is as long as its clip, TTS within 30 %
        ref = next(b for b in bona if b.extra["base"] == r.extra["base"])
        ratio = float(r.extra["duration"]) / float(ref.extra["duration"])
        assert (ratio == 1.0) if r.extra["kind"] == "copy" else 0.95 <= ratio <= 1.3, r.path
    balance = class_balance(rows)
    assert set(balance) == set(rd.SUBSETS)
    assert all(b["tv_language"] == b["tv_gender"] == b["tv_packaging"] == 0.0 for b in balance.values())


def test_worker_count_does_not_change_the_files_and_resume_completes(bench, fixture_manifest, tmp_path):
    again = tmp_path / "again"
    report = generate_real(again, PRESET, seed=5, workers=1, real_manifest=fixture_manifest, show_progress=False)
    assert report.written == report.files
    assert (again / "manifest.csv").read_bytes() == (bench / "manifest.csv").read_bytes()
    assert (again / "meta.jsonl").read_bytes() == (bench / "meta.jsonl").read_bytes()
    first, second = _audio(bench), _audio(again)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    # resume: delete some files and the manifest, rerun, identical again
    victims = sorted(again.glob("audio/*/*.flac"))[::7]
    for p in victims:
        p.unlink()
    (again / "manifest.csv").unlink()
    report = generate_real(again, PRESET, seed=5, workers=2, real_manifest=fixture_manifest, show_progress=False)
    assert report.written == len(victims) and report.skipped == report.files - len(victims)
    assert _audio(again).keys() == first.keys()
    for p in victims:
        key = p.relative_to(again).as_posix()
        np.testing.assert_array_equal(sf.read(str(p), dtype="int16")[0], first[key], err_msg=key)


def test_refuses_to_mix_designs_and_settings(bench, fixture_manifest, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bench, copy)
    with pytest.raises(ConfigError, match="seed"):
        generate_real(copy, PRESET, seed=4, workers=1, real_manifest=fixture_manifest, show_progress=False)
    assert main(["data", "synth", "--design", "v1", "--out", str(copy), "--preset", "tiny"]) == 2          # v1 into a real folder
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "synth.json").write_text(json.dumps({"preset": "tiny", "seed": 0, "left_out": []}))
    with pytest.raises(ConfigError, match="design 'v1'"):
        generate_real(v1, PRESET, seed=0, real_manifest=fixture_manifest, show_progress=False)


def test_probe_on_the_generated_set(bench, fixture_manifest, tmp_path):
    from spoofrl.synth.probe import FEATURES, run_probe
    result = run_probe(bench)
    saved = json.loads((bench / "probe.json").read_text())
    assert saved["features"] == list(FEATURES) and set(saved["eer_percent"]) == {"linear", "mlp"}
    for probe in ("linear", "mlp"):
        assert set(saved["eer_percent"][probe]) == set(rd.SUBSETS)
        assert all(0.0 <= e <= 100.0 for e in result.eer[probe].values())
        assert set(result.by_kind[probe]) <= {"copy", "tts", "tts+vocoder"}
    assert any(line.startswith("  paired gap") for line in result.lines())
    # the ablation without parity (spoofs not packaged, TTS not matched to its clip) leaves a larger gap
    # between a TTS spoof's packaging features and its clip's: the measure sees what parity removes
    loose = tmp_path / "loose"
    generate_real(loose, PRESET, seed=5, workers=1, real_manifest=fixture_manifest, show_progress=False, parity=False)
    assert json.loads((loose / "synth.json").read_text())["parity"] is False
    off = run_probe(loose, write=False)
    tts = [k for k in ("tts", "tts+vocoder") if k in result.paired_gap and k in off.paired_gap]
    assert tts, "the fixture has TTS spoofs through the clean channel"
    assert sum(result.paired_gap[k] for k in tts) < sum(off.paired_gap[k] for k in tts)


# ------------------------------------------------------------------------------------------ the plan


def _big_manifest(tmp_path: Path) -> Path:
    """Rows only (no audio): many speakers, languages and packagings, for plan-level checks."""
    rows = []
    rng = np.random.default_rng(0)
    langs = ["en", "es", "cs", "de", "nl", "fr", "it", "ru", "uk", "ml"]
    for k in range(600):
        lang = langs[k % len(langs)]
        spk = f"src{k % 4}:{lang}{k % 3}"
        pack = ["vorbis-22k", "vorbis-44k", "g722-16k", "pcm16-8k"][k % 4]
        rate = {"vorbis-22k": 22050, "vorbis-44k": 44100, "g722-16k": 16000, "pcm16-8k": 8000}[pack]
        rows.append({"path": f"clips/{k}.ogg", "label": "bonafide", "attack": "-", "source": f"src{k % 4}",
                     "condition": pack, "subset": "-", "speaker": spk, "language": lang,
                     "gender": "fm-"[k % 3], "transcript": f"word {k}" if k % 5 else "", "text_source": "",
                     "gloss": "", "license": "CC0-1.0", "package": "p", "version": "1",
                     "duration": f"{float(rng.uniform(0.5, 12.0)):.3f}", "sample_rate": str(rate)})
    return write_fetch_manifest(tmp_path / "manifest.csv", rows)


def test_plan_is_deterministic_disjoint_and_balanced(tmp_path):
    clips = rd.read_real_manifest(_big_manifest(tmp_path))
    plan = rd.make_real_plan(clips, "small", 0)
    again = rd.make_real_plan(list(reversed(clips)), "small", 0)
    assert [(b.base_id, b.clip.clip_id, b.segment, [(i.attack, i.channel, i.level_db) for i in b.items]) for b in plan] \
        == [(b.base_id, b.clip.clip_id, b.segment, [(i.attack, i.channel, i.level_db) for i in b.items]) for b in again]
    assert rd.plan_digest(plan) != rd.plan_digest(rd.make_real_plan(clips, "small", 1))
    speakers = defaultdict(set)
    for b in plan:
        speakers[b.pool].add(b.clip.speaker)
        assert b.clip.duration >= rd.MIN_CLIP_S
        assert b.segments == (1 if b.clip.duration <= rd.MAX_S else int(np.ceil(b.clip.duration / rd.SEGMENT_S)))
        assert b.text == "" or b.segments == 1
    assert not speakers["posttrain"] & speakers["target"] and not speakers["posttrain"] & speakers["ood"]
    assert not speakers["target"] & speakers["ood"]
    # axes unseen where the split says so
    items = defaultdict(set)
    for b in plan:
        for i in b.items:
            items[(b.subset, "vocoder")].add(i.vocoder)
            items[(b.subset, "tts")].add(i.tts_engine)
            items[(b.subset, "channel")].add(i.channel)
    for axis in ("vocoder", "tts"):
        seen = items[("posttrain", axis)] | items[("target_train", axis)]
        assert not (items[("ood_attack", axis)] - {"-"}) & seen, axis
    assert not items[("ood_channel", "channel")] & (items[("posttrain", "channel")] | items[("target_train", "channel")])
    # the TTS of a clip speaks its language and (where known) its speaker's gender
    for b in plan:
        for i in b.items:
            if i.tts_voice is not None and i.tts_voice.engine == "espeak-ng":
                assert i.tts_voice.name.startswith(rd.espeak_language(b.clip.language, b.clip.speaker) + "+")
            if i.tts_voice is not None and b.clip.gender in ("f", "m"):
                assert i.tts_gender == b.clip.gender or (b.clip.gender == "f" and i.tts_pitch > 1.2)


def test_tiny_preset_reads_only_asterisk_en(tmp_path):
    clips = rd.read_real_manifest(_big_manifest(tmp_path))
    with pytest.raises(ConfigError, match="asterisk-en"):
        rd.make_real_plan(clips, "tiny", 0)


def test_design_invariants():
    rd.check_real_design()
    assert rd.tts_text("at [@]") == "at" and rd.tts_text("TIES / TEIS") == "TIES"
    assert rd.tts_text("... номера ...") == "номера" and rd.tts_text("[a beep]") == ""
    assert rd.espeak_language("en", "klettres:en_GB") == "en-gb" and rd.espeak_language("nds") == "de"
    assert rd.espeak_language("xx") == ""


# ------------------------------------------------------------------------------------------ signals


def test_packaging_matches_the_clip_band_and_keeps_length():
    x = np.random.default_rng(1).standard_normal(SR) * 0.05
    out = package_many([x, x, x], [Packaging.parse("pcm16-8k", 8000), Packaging.parse("vorbis-22k", 22050, 40000),
                                   Packaging.parse("g722-16k", 16000)])
    f = np.fft.rfftfreq(SR, 1 / SR)
    for y in out:
        assert len(y) == len(x) and np.all(np.isfinite(y))
    narrow = np.abs(np.fft.rfft(out[0])) ** 2
    assert narrow[f > 4300].sum() < 1e-4 * narrow.sum()
    assert np.corrcoef(out[1], x)[0, 1] > 0.8
    assert len(rate_roundtrip(x, Packaging.parse("vorbis-44k", 44100))) == len(x)
    assert Packaging.parse("vorbis-22k").rate == 22050


def test_vorbis_bitrate_is_read_from_the_header(tmp_path):
    path = tmp_path / "a.ogg"
    sf.write(str(path), speechlike(1.0, 0, 150.0), SR, format="OGG", subtype="VORBIS")
    assert 8000 <= vorbis_bitrate(path) <= 500000
    assert vorbis_bitrate(tmp_path / "missing.ogg") == 0


def test_trim_keeps_margins_and_minimum_length():
    x = np.zeros(3 * SR)
    x[SR:SR + 1600] = 0.3 * np.sin(np.arange(1600) / 5.0)                 # 0.1 s of sound
    y = trim(x)
    assert abs(len(y) - int(rd.MIN_S * SR)) <= 1
    x[SR:2 * SR] = 0.3 * np.sin(np.arange(SR) / 5.0)
    assert abs(len(trim(x)) - (SR + 2 * int(rd.MARGIN_S * SR))) <= 320
