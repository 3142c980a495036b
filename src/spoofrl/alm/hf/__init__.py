"""Hugging Face audio LLMs (Qwen2-Audio, the Qwen2.5-Omni thinker, Granite Speech) behind spoofrl's `AudioLM`
interface, loaded from local folders, with LoRA adapters (peft) on their language models.

    from spoofrl.alm.hf import LoraOptions, load_hf_alm
    model = load_hf_alm("models/qwen2-audio-7b-instruct", lora=LoraOptions(r=16))
    comps = model.generate(batch, num=8, sampling=SamplingConfig(temperature=1.0, max_completion_length=64))
    logp, mask = model.token_logprobs(batch, comps, grad=True)      # audio encoder inside the forward
    with model.reference():                                         # adapters off: the reference policy
        ref_logp, _ = model.token_logprobs(batch, comps, grad=False)
    model.save("runs/merged", merge=True)                           # a plain transformers folder

See docs/alm.md, "Hugging Face audio LLMs".
"""
from spoofrl.alm.hf.base import HfAlm, ReferenceAlm
from spoofrl.alm.hf.granite import GraniteSpeechAlm
from spoofrl.alm.hf.loader import BACKENDS, MODEL_TYPES, detect_kind, load_hf_alm
from spoofrl.alm.hf.lora import LoraOptions
from spoofrl.alm.hf.qwen import Qwen2AudioAlm, Qwen25OmniThinkerAlm

__all__ = ["BACKENDS", "MODEL_TYPES", "GraniteSpeechAlm", "HfAlm", "LoraOptions", "Qwen2AudioAlm",
           "Qwen25OmniThinkerAlm", "ReferenceAlm", "detect_kind", "load_hf_alm"]
