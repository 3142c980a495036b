"""Audio LLMs (audio in, text out) for generative detection, trained by SFT and GRPO in spoofrl's trainer.

One interface, used unchanged by the GRPO core and generative SFT (see docs/alm.md):

    batch = collate_alm(items)                     # or AlmBatch.from_waves(waves, prompts, ...)
    comps = model.generate(batch, num, SamplingConfig(temperature=1.0, max_completion_length=64))
    logp, mask = model.token_logprobs(batch, comps, grad=True)     # [B, N, T] each
    loss = model.sft_loss(batch, targets_text)

Backend here: `SmallAlm`, a small ALM trainable from scratch (front-end + conv encoder + projector + a
Qwen2 / Llama LM built from its transformers config) with a locally trained tokenizer.
"""
from spoofrl.alm.base import AudioLM
from spoofrl.alm.batch import AlmBatch, Completions, collate_alm, completion_mask
from spoofrl.alm.config import AlmConfig, SamplingConfig
from spoofrl.alm.io import load_alm, read_alm_config, save_alm
from spoofrl.alm.model import SmallAlm, build_alm
from spoofrl.alm.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

__all__ = ["AlmBatch", "AlmConfig", "AudioLM", "Completions", "SamplingConfig", "SmallAlm", "build_alm", "collate_alm",
           "completion_mask", "load_alm", "load_tokenizer", "read_alm_config", "save_alm", "save_tokenizer",
           "train_tokenizer"]
