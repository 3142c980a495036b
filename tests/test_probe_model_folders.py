"""Hostile and damaged model folders (project issue 25): every one is a one-line ConfigError naming the file, raised
before anything large is allocated; chat templates render under limits; saved weights are byte-reproducible.

The folders are built here: a tiny SmallAlm (spoofrl's own audio LLM), a tiny Qwen2-Audio checkpoint
(spoofrl.alm.hf.tiny) and a tiny detector, each then damaged one way. "Before anything is allocated" is checked by
replacing the real constructor with one that fails the test when called."""
from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spoofrl.errors import ConfigError, SpoofrlError

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

from spoofrl.alm import AlmConfig, build_alm, load_alm, save_alm, train_tokenizer  # noqa: E402
from spoofrl.alm.hf import LoraOptions, load_hf_alm  # noqa: E402
from spoofrl.alm.hf.tiny import build_qwen2_audio  # noqa: E402
from spoofrl.alm.toy import toy_texts  # noqa: E402

TINY_ALM = dict(lm_layers=1, lm_width=32, lm_heads=2, lm_kv_heads=1, lm_ffn=64, conv_channels=16, encoder_layers=0)
HUGE_STRING = "{{ 'x' * 20000000000 }}"
ENDLESS_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


# --- folders ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alm_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("alm") / "model"
    save_alm(build_alm(AlmConfig(**TINY_ALM), train_tokenizer(toy_texts(), vocab_size=300), seed=0), folder)
    return folder


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qwen2_audio")
    torch.manual_seed(0)
    build_qwen2_audio(folder)
    return folder


@pytest.fixture(scope="module")
def detector_folder(tmp_path_factory) -> Path:
    from spoofrl.models import build_model, save_model
    folder = tmp_path_factory.mktemp("detector") / "model"
    torch.manual_seed(0)
    save_model(build_model({"frontend": {"name": "logmel", "n_mels": 20},
                            "backend": {"name": "ffn", "hidden": [16]}}), folder)
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def one_line_error(load, *args, error=ConfigError, **kwargs) -> str:
    with pytest.raises(error) as caught:
        load(*args, **kwargs)
    text = str(caught.value)
    assert "\n" not in text, text
    return text


def rewrite_weights(path: Path, change) -> None:
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def fail_if_called(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} was built: the check must come before anything is allocated")
    return refuse


# --- 6: one tensor too many or too few ---------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["extra", "missing"])
def test_load_alm_names_the_missing_or_unexpected_tensor(alm_folder, tmp_path, damage):
    folder = copy_of(alm_folder, tmp_path)
    weights = folder / "model.safetensors"
    removed = []

    def change(tensors):
        if damage == "extra":
            tensors["stray.weight"] = torch.zeros(2)
        else:
            removed.append(sorted(tensors)[0])
            del tensors[removed[0]]

    rewrite_weights(weights, change)
    text = one_line_error(load_alm, folder, device="cpu")
    assert str(weights) in text
    assert ("unexpected" in text and "stray.weight" in text) if damage == "extra" else \
        ("missing" in text and removed[0] in text)


def test_explain_cli_reports_a_missing_tensor_on_one_line(alm_folder, tmp_path, capsys):
    from spoofrl.cli import main
    folder = copy_of(alm_folder, tmp_path)
    rewrite_weights(folder / "model.safetensors", lambda t: t.pop(sorted(t)[-1]))
    clip = tmp_path / "clip.wav"
    sf.write(clip, (0.1 * np.random.default_rng(0).standard_normal(8000)).astype("float32"), 16000)
    assert main(["explain", "--model", str(folder), str(clip), "--device", "cpu"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "internal error" not in errors[0]
    assert str(folder / "model.safetensors") in errors[0] and "missing" in errors[0]


# --- 3: absurd sizes ------------------------------------------------------------------------------------------------
def test_alm_json_with_a_huge_width_is_refused_before_building(alm_folder, tmp_path, monkeypatch):
    """A 2 KB alm.json asking for width 16000 (6.6 GB): the header of model.safetensors says otherwise."""
    folder = copy_of(alm_folder, tmp_path)

    def widen(meta):
        meta["alm"]["lm_width"] = 16000
        meta["lm_config"].update(hidden_size=16000)

    edit_json(folder / "alm.json", widen)
    monkeypatch.setattr("spoofrl.alm.io.SmallAlm", fail_if_called("the SmallAlm"))
    text = one_line_error(load_alm, folder, device="cpu")
    assert str(folder / "model.safetensors") in text and "wrong shape" in text


def test_alm_json_lm_config_must_agree_with_the_alm_config(alm_folder, tmp_path, monkeypatch):
    folder = copy_of(alm_folder, tmp_path)

    def deepen(meta):
        meta["lm_config"]["num_hidden_layers"] = 50000
        meta["lm_config"]["layer_types"] = ["full_attention"] * 50000

    edit_json(folder / "alm.json", deepen)
    monkeypatch.setattr("spoofrl.alm.io.SmallAlm", fail_if_called("the SmallAlm"))
    text = one_line_error(load_alm, folder, device="cpu")
    assert str(folder / "alm.json") in text and "num_hidden_layers" in text


@pytest.mark.parametrize("option, value", [("lm_layers", 1_000_000), ("lm_width", 1_000_000),
                                           ("lm_ffn", 10_000_000), ("encoder_layers", 100_000),
                                           ("conv_channels", 1_000_000), ("vocab_size", 10**9)])
def test_alm_size_options_are_bounded(option, value):
    """`--set model.alm.lm_layers=1000000` is refused by the option's documented bound."""
    import dataclasses

    from spoofrl.config import from_dict
    with pytest.raises(ConfigError, match=option):
        from_dict(AlmConfig, {option: value}, prefix="alm")
    field = next(f for f in dataclasses.fields(AlmConfig) if f.name == option)
    assert "le" in field.metadata["bounds"]      # documented: `spoofrl config` prints the range


def test_build_alm_above_the_parameter_cap_is_refused_on_the_meta_device(monkeypatch):
    """Within every bound but 32 billion parameters in all: refused with the estimate, the LM only ever built on
    the meta device."""
    import spoofrl.alm.model as alm_model
    real = alm_model.build_lm

    def meta_only(*args):
        assert torch.get_default_device().type == "meta", "the LM was built for real"
        return real(*args)

    monkeypatch.setattr(alm_model, "build_lm", meta_only)
    cfg = AlmConfig(lm_layers=128, lm_width=4096, lm_heads=32, lm_kv_heads=8, lm_ffn=16384)
    text = one_line_error(build_alm, cfg, train_tokenizer(toy_texts(), vocab_size=300))
    assert "31.2 billion parameters" in text


def test_hf_config_with_absurd_layer_counts_is_refused_before_loading(hf_folder, tmp_path, monkeypatch):
    folder = copy_of(hf_folder, tmp_path)
    edit_json(folder / "config.json", lambda c: c["text_config"].update(num_hidden_layers=50000))
    monkeypatch.setattr(transformers.Qwen2AudioForConditionalGeneration, "from_pretrained",
                        fail_if_called("the HF model"))
    text = one_line_error(load_hf_alm, folder, device="cpu")
    assert str(folder / "config.json") in text and "num_hidden_layers" in text


def test_hf_config_describing_more_weights_than_the_checkpoint_holds_is_refused(hf_folder, tmp_path, monkeypatch):
    """200 layers (transformers accepts the config; its loader would initialise 199 of them at random)."""
    folder = copy_of(hf_folder, tmp_path)
    edit_json(folder / "config.json", lambda c: c["text_config"].update(
        num_hidden_layers=200, layer_types=["full_attention"] * 200))
    monkeypatch.setattr(transformers.Qwen2AudioForConditionalGeneration, "from_pretrained",
                        fail_if_called("the HF model"))
    text = one_line_error(load_hf_alm, folder, device="cpu")
    assert str(folder / "model.safetensors") in text and "fewer than" in text


def test_detector_config_is_checked_against_the_weights_before_building(detector_folder, tmp_path, monkeypatch):
    from spoofrl.models import load_model
    from spoofrl.models.detector import Detector
    folder = copy_of(detector_folder, tmp_path)
    text = (folder / "config.yaml").read_text()
    (folder / "config.yaml").write_text(text.replace("- 16", "- 4096"))
    monkeypatch.setattr(Detector, "__init__", fail_if_called("the detector"))
    message = one_line_error(load_model, folder, error=SpoofrlError)
    assert str(folder / "model.safetensors") in message and "wrong shape" in message


def test_detector_above_the_parameter_cap_is_refused_before_building(monkeypatch):
    from spoofrl.models import build_model
    from spoofrl.models.detector import Detector
    monkeypatch.setattr(Detector, "__init__", fail_if_called("the detector"))
    huge = {"hidden_size": 16384, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 65536,
            "conv_dim": [16, 16], "conv_stride": [5, 4], "conv_kernel": [10, 8]}
    text = one_line_error(build_model, {"frontend": {"name": "ssl", "model_type": "wav2vec2", "config": huge},
                                        "backend": {"name": "pool-linear"}})
    assert "billion parameters" in text


# --- 7: missing or unexpected weights in a Hugging Face checkpoint ------------------------------------------------
@pytest.mark.parametrize("damage", ["missing", "renamed", "extra"])
def test_hf_checkpoint_with_missing_or_extra_weights_is_an_error(hf_folder, tmp_path, damage):
    """transformers would initialise a missing weight at random and ignore an extra one, with a warning."""
    folder = copy_of(hf_folder, tmp_path)
    weights = folder / "model.safetensors"
    # the checkpoint's own name (transformers maps it to the module's model.language_model.layers.0...)
    name = "language_model.model.layers.0.self_attn.q_proj.weight"

    def change(tensors):
        if damage == "extra":
            tensors["bogus.weight"] = torch.zeros(2)
            return
        tensor = tensors.pop(name)
        if damage == "renamed":      # as many weights as the model has, one of them under a name it lacks
            tensors["bogus.weight"] = tensor

    rewrite_weights(weights, change)
    text = one_line_error(load_hf_alm, folder, device="cpu")
    assert str(weights) in text
    if damage == "missing":
        assert "fewer than" in text     # the header already says so, before loading
    if damage == "renamed":
        assert "missing 1" in text and "layers.0.self_attn.q_proj.weight" in text
    if damage != "missing":
        assert "unexpected 1" in text and "bogus.weight" in text


def test_adapter_folder_with_a_missing_adapter_tensor_is_an_error(hf_folder, tmp_path):
    folder = copy_of(hf_folder, tmp_path)
    adapters = load_hf_alm(folder, device="cpu", lora=LoraOptions(r=2)).save(tmp_path / "adapters", merge=False)
    rewrite_weights(adapters / "adapter_model.safetensors", lambda t: t.pop(sorted(t)[0]))
    text = one_line_error(load_hf_alm, adapters, device="cpu")
    assert str(adapters / "adapter_model.safetensors") in text and "missing" in text


def test_adapter_rank_is_bounded(hf_folder, tmp_path):
    folder = copy_of(hf_folder, tmp_path)
    adapters = load_hf_alm(folder, device="cpu", lora=LoraOptions(r=2)).save(tmp_path / "adapters", merge=False)
    edit_json(adapters / "adapter_config.json", lambda c: c.update(r=10**9))
    text = one_line_error(load_hf_alm, adapters, device="cpu")
    assert str(adapters / "adapter_config.json") in text and "rank" in text


# --- 10: damaged files --------------------------------------------------------------------------------------------
def write_header(path: Path, header: dict) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text)


HOSTILE_WEIGHTS = {
    "4 TB tensor": lambda p: write_header(p, {"w": {"dtype": "F32", "shape": [1 << 40, 1024],
                                                    "data_offsets": [0, 1 << 52]}}),
    "2^63 header length": lambda p: p.write_bytes(struct.pack("<Q", 1 << 63) + b"{}"),
    "pickle": lambda p: p.write_bytes(pickle.dumps({"w": [1.0, 2.0]})),
}


def loaders(alm_folder, hf_folder, detector_folder):
    from spoofrl.models import load_model
    return {"alm": (alm_folder, load_alm), "hf": (hf_folder, load_hf_alm), "detector": (detector_folder, load_model)}


@pytest.mark.parametrize("kind", ["alm", "hf", "detector"])
@pytest.mark.parametrize("damage", sorted(HOSTILE_WEIGHTS))
def test_hostile_safetensors_files_are_one_line_errors(alm_folder, hf_folder, detector_folder, tmp_path, kind,
                                                       damage):
    source, load = loaders(alm_folder, hf_folder, detector_folder)[kind]
    folder = copy_of(source, tmp_path)
    HOSTILE_WEIGHTS[damage](folder / "model.safetensors")
    text = one_line_error(load, folder, device="cpu")
    assert str(folder / "model.safetensors") in text and "not a readable safetensors file" in text


def test_sharded_checkpoint_loads_and_a_shard_outside_the_folder_is_refused(hf_folder, tmp_path):
    folder = copy_of(hf_folder, tmp_path)
    model = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(str(folder))
    (folder / "model.safetensors").unlink()
    model.save_pretrained(str(folder), max_shard_size="50KB")
    assert len(list(folder.glob("model-*.safetensors"))) > 1
    load_hf_alm(folder, device="cpu")          # the headers of every shard are read, their weights counted
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(next(folder.glob("model-*.safetensors")), outside)
    edit_json(folder / "model.safetensors.index.json",
              lambda index: index["weight_map"].update({k: "../elsewhere.safetensors" for k in index["weight_map"]}))
    text = one_line_error(load_hf_alm, folder, device="cpu")
    assert str(folder / "model.safetensors.index.json") in text and "elsewhere" in text


def test_a_string_where_an_int_belongs_in_hf_config_json(hf_folder, tmp_path):
    folder = copy_of(hf_folder, tmp_path)
    edit_json(folder / "config.json", lambda c: c["text_config"].update(hidden_size="32"))
    text = one_line_error(load_hf_alm, folder, device="cpu")
    assert str(folder / "config.json") in text and "hidden_size" in text


def test_a_string_where_an_int_belongs_in_the_feature_extractor_config(hf_folder, tmp_path):
    folder = copy_of(hf_folder, tmp_path)
    edit_json(folder / "processor_config.json", lambda c: c["feature_extractor"].update(hop_length="ten"))
    text = one_line_error(load_hf_alm, folder, device="cpu")
    assert str(folder / "processor_config.json") in text and "hop_length" in text


@pytest.mark.parametrize("kind", ["alm", "hf"])
def test_tokenizer_json_without_added_tokens(alm_folder, hf_folder, tmp_path, kind):
    folder = copy_of(alm_folder if kind == "alm" else hf_folder, tmp_path)
    edit_json(folder / "tokenizer.json", lambda t: t.pop("added_tokens"))
    text = one_line_error(load_alm if kind == "alm" else load_hf_alm, folder, device="cpu")
    assert str(folder) in text and "tokenizer" in text and "added_tokens" in text


# --- 5: hostile chat templates --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["alm", "hf"])
@pytest.mark.parametrize("template", [HUGE_STRING, ENDLESS_LOOPS, "{% for %}"], ids=["20GB", "loops", "syntax"])
def test_hostile_chat_templates_are_refused_at_load(alm_folder, hf_folder, tmp_path, kind, template):
    folder = copy_of(alm_folder if kind == "alm" else hf_folder, tmp_path)
    if kind == "hf":
        edit_json(folder / "processor_config.json", lambda c: c.pop("chat_template", None))
        (folder / "chat_template.json").unlink(missing_ok=True)
    (folder / "chat_template.jinja").write_text(template)
    text = one_line_error(load_alm if kind == "alm" else load_hf_alm, folder, device="cpu")
    assert str(folder / "chat_template.jinja") in text


def test_explain_cli_refuses_a_hostile_template_with_exit_2(alm_folder, tmp_path, capsys):
    from spoofrl.cli import main
    folder = copy_of(alm_folder, tmp_path)
    (folder / "chat_template.jinja").write_text(HUGE_STRING)
    clip = tmp_path / "clip.wav"
    sf.write(clip, (0.1 * np.random.default_rng(0).standard_normal(8000)).astype("float32"), 16000)
    assert main(["explain", "--model", str(folder), str(clip), "--device", "cpu"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "internal error" not in errors[0]
    assert str(folder / "chat_template.jinja") in errors[0]


@pytest.mark.parametrize("template", [
    "{% set ns = namespace(s='x' * 1000) %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{{ [[0] * 1000] * 1000 }}",
    "{{ 'x'.center(10 ** 9) }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ 2 ** 100000000 }}",
    "{{ ('x' * 50000) | replace('x', 'y' * 50000) }}",
    "{{ ('x\n' * 50000) | indent(50000) }}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{% for i in range(100000) %}{{ 'x' * 10 }}{% endfor %}",
], ids=["doubling", "nested-lists", "center", "percent-width", "format-width", "power", "replace", "indent",
        "recursion", "long-output"])
def test_chat_template_limits(template):
    from spoofrl.alm.template import ChatTemplate, TemplateLimitError
    with pytest.raises(TemplateLimitError, match="t.jinja"):
        ChatTemplate(template, "t.jinja")


def test_bounded_rendering_matches_transformers_on_real_templates():
    from spoofrl.alm.hf.tiny import GRANITE_TEMPLATE, OMNI_TEMPLATE, omni_tokenizer
    from spoofrl.alm.template import ChatTemplate, template_variables
    from spoofrl.alm.tokenizer import CHAT_TEMPLATE
    tok = omni_tokenizer()
    qwen2_audio = transformers.Qwen2AudioProcessor.default_chat_template.fget(None)
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "audio"}]}]
    for source in (CHAT_TEMPLATE, OMNI_TEMPLATE, GRANITE_TEMPLATE, qwen2_audio):
        expected = tok.apply_chat_template(messages, chat_template=source, tokenize=False, add_generation_prompt=True)
        assert ChatTemplate(source, "t").render(messages, **template_variables(tok)) == expected


def test_models_with_a_bounded_template_still_copy_and_pickle(alm_folder, hf_folder):
    """A reference model is a deepcopy; worker processes pickle: the compiled template travels as its text."""
    import copy
    for model in (load_alm(alm_folder, device="cpu"), load_hf_alm(hf_folder, device="cpu")):
        for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert twin.prompt_ids("<audio> hi") == model.prompt_ids("<audio> hi")
            assert twin.template.origin == model.template.origin


# --- 15: reproducible bytes -----------------------------------------------------------------------------------------
def test_saving_the_same_alm_twice_writes_the_same_bytes(tmp_path):
    """Tied embeddings put two entries in the safetensors metadata, which safetensors writes in hash order."""
    model = build_alm(AlmConfig(**TINY_ALM), train_tokenizer(toy_texts(), vocab_size=300), seed=0)
    blobs = {(save_alm(model, tmp_path / str(i)) / "model.safetensors").read_bytes() for i in range(10)}
    assert len(blobs) == 1
    (length,) = struct.unpack("<Q", next(iter(blobs))[:8])
    metadata = json.loads(next(iter(blobs))[8:8 + length])["__metadata__"]
    assert list(metadata) == sorted(metadata) and len(metadata) == 2


def test_save_tensors_sorts_metadata_and_loads_back(tmp_path):
    from spoofrl.models.io import read_weights, save_tensors
    tensors = {"b": torch.arange(3.0), "a": torch.ones(2, 2, dtype=torch.float16)}
    metadata = {f"key{i}": str(i) for i in (5, 1, 9, 3, 7)}
    save_tensors(tensors, tmp_path / "one.safetensors", metadata)
    save_tensors(tensors, tmp_path / "two.safetensors", dict(reversed(list(metadata.items()))))
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()
    back = read_weights(tmp_path / "one.safetensors")
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    from safetensors import safe_open
    with safe_open(str(tmp_path / "one.safetensors"), "pt") as handle:
        assert handle.metadata() == metadata
