"""Tiny random Hugging Face audio LLMs saved as real checkpoints, for tests and benchmarks (nothing downloaded).

Each: 1 LM layer of width 32, a 1-2 layer audio encoder, a 300-token BPE tokenizer trained here with the
family's special tokens and a chat template in its style, weights scrambled so outputs depend visibly on the
inputs; `BUILDERS[kind](folder)` writes config, weights, tokenizer and processor files for `load_hf_alm`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

PROMPT = "Is the sound low or high?"
TEXTS = [PROMPT, "it sounds low", "it sounds high", "low", "high", "system", "user", "assistant"]
OMNI_TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}"
    "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'audio' %}"
    "<|audio_bos|><|AUDIO|><|audio_eos|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# string contents only, as Granite's: the structured audio part is not understood, the text form is used
GRANITE_TEMPLATE = (
    "{% for m in messages %}<|start_of_role|>{{ m['role'] }}<|end_of_role|>{{ m['content'] }}<|end_of_text|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|start_of_role|>assistant<|end_of_role|>{% endif %}")
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
GRANITE_FEATURES = {"feature_extractor_type": "GraniteSpeechFeatureExtractor", "n_mels": 16, "n_fft": 512,
                    "win_length": 400, "hop_length": 160, "sampling_rate": 16000, "projector_window_size": 15,
                    "projector_downsample_rate": 5}


def tiny_tokenizer(specials, eos, pad, template):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    wrapped = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad)
    wrapped.chat_template = template
    return wrapped


def lm_config(vocab: int, **extra) -> dict:
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, **extra)


def scrambled(model):
    """Random weights large enough that outputs depend visibly on the inputs (the default 0.02 initialisation
    of a 32-wide model gives near-uniform next-token distributions)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def build_qwen2_audio(folder: Path) -> None:
    template = transformers.Qwen2AudioProcessor.default_chat_template.fget(None)   # the processor's own
    tok = tiny_tokenizer(QWEN_SPECIALS, "<|im_end|>", "<|endoftext|>", template)
    config = transformers.Qwen2AudioConfig(
        audio_config=dict(model_type="qwen2_audio_encoder", num_mel_bins=16, encoder_layers=1,
                          encoder_attention_heads=2, encoder_ffn_dim=64, d_model=32, max_source_positions=50),
        text_config=dict(model_type="qwen2", **lm_config(len(tok))),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"))
    scrambled(transformers.Qwen2AudioForConditionalGeneration(config)).save_pretrained(folder)
    # 50 encoder positions = 100 frames = 1 s chunks
    extractor = transformers.WhisperFeatureExtractor(feature_size=16, chunk_length=1)
    transformers.Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tok).save_pretrained(folder)


def omni_thinker_config(tok):
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|IMAGE|>",
                                                      "<|VIDEO|>", "<|vision_bos|>")}
    return transformers.Qwen2_5OmniThinkerConfig(
        audio_config=dict(num_mel_bins=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                          d_model=32, output_dim=32, n_window=10, max_source_positions=100),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[0]),
        text_config=lm_config(len(tok), rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                         "mrope_section": [2, 3, 3]}),
        audio_token_index=ids["<|AUDIO|>"], audio_start_token_id=ids["<|audio_bos|>"],
        audio_end_token_id=ids["<|audio_eos|>"], image_token_index=ids["<|IMAGE|>"],
        video_token_index=ids["<|VIDEO|>"], vision_start_token_id=ids["<|vision_bos|>"])


def omni_tokenizer():
    specials = [*QWEN_SPECIALS, "<|IMAGE|>", "<|VIDEO|>", "<|vision_bos|>"]
    return tiny_tokenizer(specials, "<|im_end|>", "<|endoftext|>", OMNI_TEMPLATE)


def build_omni_thinker(folder: Path) -> None:
    tok = omni_tokenizer()
    model = scrambled(transformers.Qwen2_5OmniThinkerForConditionalGeneration(omni_thinker_config(tok)))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    transformers.WhisperFeatureExtractor(feature_size=16).save_pretrained(folder)   # 30 s chunks


def granite_config(tok, **extra):
    return transformers.GraniteSpeechConfig(
        encoder_config=dict(input_dim=32, num_layers=2, hidden_dim=32, feedforward_mult=2, num_heads=2, dim_head=16,
                            output_dim=8, context_size=20, max_pos_emb=32, dropout=0.0, conv_kernel_size=5),
        projector_config=dict(model_type="blip_2_qformer", hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
                              cross_attention_frequency=1),
        text_config=dict(model_type="granite", **lm_config(len(tok))),
        audio_token_index=tok.convert_tokens_to_ids("<|audio|>"), **extra)


def granite_tokenizer():
    specials = ["<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>", "<|audio|>"]
    return tiny_tokenizer(specials, "<|end_of_text|>", "<|end_of_text|>", GRANITE_TEMPLATE)   # pad = eos


def build_granite(folder: Path, model=None) -> None:
    tok = granite_tokenizer()
    model = model or scrambled(transformers.GraniteSpeechForConditionalGeneration(
        granite_config(tok, has_lora_adapter=False)))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    # written by hand: GraniteSpeechFeatureExtractor needs torchaudio to be built
    (folder / "preprocessor_config.json").write_text(json.dumps(GRANITE_FEATURES))


BUILDERS = {"qwen2_audio": build_qwen2_audio, "qwen2_5_omni_thinker": build_omni_thinker,
            "granite_speech": build_granite}
