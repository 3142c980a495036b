"""spoofrl.alm: the built-in small audio LLM and the interface GRPO and generative SFT use
(generate -> Completions, token_logprobs, sft_loss), its tokenizer and its save / load format."""
from __future__ import annotations

import contextlib
import json
import time

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from conftest import chain_ops, float_tol
from spoofrl.alm import (AlmBatch, AlmConfig, AudioLM, Completions, SamplingConfig, build_alm, collate_alm,
                         completion_mask, load_alm, load_tokenizer, save_alm, save_tokenizer, train_tokenizer)
from spoofrl.alm.toy import TOY_ANSWERS, toy_batch, toy_item, toy_texts
from spoofrl.config import from_dict
from spoofrl.errors import ConfigError

EXTRA = ("<answer>", "</answer>")
# Log-probs of the default AlmConfig along two float32 paths (KV-cached decoding vs one teacher-forced forward,
# an item alone vs in a padded batch, sft_loss vs transformers' labels loss). Its longest chain of reductions:
# the 512-point STFT and 257-bin mel sums, a 64-wide feature norm, 2 convs over 128 channels x 3 taps, then
# 3 transformer layers of width 128 (the encoder's and the LM's 2: 32-wide heads over ~100 positions, 256-wide
# MLPs), the 128-wide projector and lm_head and a 320-way log-softmax: ~440 roundings (chain_ops), on
# |log-probs| < 8 (ln 320 = 5.8 for these near-uniform heads, |logits| < 2)
LAYER = (128,) * 6 + (32, 100, 256)
LOGP_TOL = float_tol(torch.float32, chain_ops(512, 257, 64, 384, 384, *LAYER * 3, 128, 128, 128, 320), 8)  # 4e-4


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(toy_texts() + ["<answer>low</answer>", "the sound is clean"], vocab_size=320,
                           extra_tokens=EXTRA)


@pytest.fixture(scope="module")
def model(tok):
    return build_alm(AlmConfig(), tok, seed=0).eval()


@pytest.fixture(scope="module")
def batch():
    return toy_batch(3, seed=5)   # three items of different lengths


@contextlib.contextmanager
def eos_bias(model, value: float):
    """Make EOS more (value > 0) or less likely, in generation and scoring alike; restored afterwards."""
    eos = model.eos_token_id
    old = model.logit_bias[eos].item()
    model.logit_bias[eos] = value
    try:
        yield
    finally:
        model.logit_bias[eos] = old


# --- tokenizer --------------------------------------------------------------------------------------------
def test_tokenizer_round_trips_and_saves(tok, tmp_path):
    for text in ["Is the sound low or high?", "an unseen façade — 音 with bytes \t and spaces  ",
                 "<answer>high</answer>"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok("<answer>", add_special_tokens=False)["input_ids"]) == 1          # extra token: one id
    answer = tok("<answer>x", add_special_tokens=False)["input_ids"]
    assert tok.decode(answer, skip_special_tokens=True) == "<answer>x"
    for special in ("<pad>", "<|im_start|>", "<|im_end|>", "<audio>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>"
    rendered = tok.apply_chat_template([{"role": "user", "content": "<audio>\nhi"}], tokenize=False,
                                       add_generation_prompt=True)
    assert rendered == "<|im_start|>user\n<audio>\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tok(rendered, add_special_tokens=False)["input_ids"], skip_special_tokens=True) == \
        "user\n\nhi\nassistant\n"
    save_tokenizer(tok, tmp_path)
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "tokenizer_config.json").is_file()
    again = load_tokenizer(tmp_path)
    from transformers import PreTrainedTokenizerFast
    direct = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    expected = tok(rendered, add_special_tokens=False)["input_ids"]
    for t in (again, direct):
        assert t(rendered, add_special_tokens=False)["input_ids"] == expected
        assert t.apply_chat_template([{"role": "user", "content": "<audio>\nhi"}], tokenize=False,
                                     add_generation_prompt=True) == rendered
    assert len(again) == len(tok)


def test_tokenizer_refuses_bad_options():
    with pytest.raises(ConfigError):
        train_tokenizer(["a"], vocab_size=100)
    with pytest.raises(ConfigError):
        train_tokenizer(["a"], extra_tokens=["<audio>"])


# --- config, batch ----------------------------------------------------------------------------------------
def test_config_is_typed_and_validated():
    cfg = from_dict(AlmConfig, {"lm_class": "llama", "lm_layers": 3, "frontend": {"name": "lfcc"}})
    assert cfg.lm_layers == 3 and cfg.downsample == 4
    for bad in ({"lm_heads": 3}, {"lm_kv_heads": 3}, {"conv_kernel": 4}, {"lm_class": "gpt2"}, {"lm_width": "x"},
                {"no_such_option": 1}, {"frontend": {"n_mels": 40}}):
        with pytest.raises(ConfigError):
            from_dict(AlmConfig, bad)
    with pytest.raises(ConfigError):
        from_dict(SamplingConfig, {"temperature": 0})
    with pytest.raises(ConfigError):
        from_dict(SamplingConfig, {"top_p": 1.5})


def test_collate_and_select():
    rng = np.random.default_rng(0)
    items = [toy_item(rng) for _ in range(3)]
    b = collate_alm(items)
    assert b.waves.shape == (3, max(len(it["wave"]) for it in items)) and b.waves.dtype == torch.float32
    assert b.lengths.tolist() == [len(it["wave"]) for it in items]
    assert b.references == [it["completion"] for it in items] and b.columns["label"] == [it["label"] for it in items]
    assert b.system is None
    part = b.select([2, 0])
    assert part.lengths.tolist() == [len(items[2]["wave"]), len(items[0]["wave"])]
    assert part.waves.shape[1] == max(part.lengths.tolist()) and part.columns["label"] == [items[2]["label"],
                                                                                            items[0]["label"]]
    assert torch.equal(part.waves[0, :part.lengths[0]], torch.from_numpy(items[2]["wave"]))
    with pytest.raises(ConfigError):
        collate_alm([{"wave": items[0]["wave"]}])
    with pytest.raises(ConfigError):
        AlmBatch(torch.zeros(2, 10), torch.tensor([10, 10]), ["a"])


def test_prompt_layout(model, batch):
    pre = model.prefix(batch)
    audio = model.ids.audio
    ids = model.prompt_ids(batch.prompts[0])
    frames = pre.audio_frames.tolist()
    # 10 ms front-end frames, / 4 by the conv stack: about 25 audio positions per second
    for n, length in zip(frames, batch.lengths.tolist()):
        assert abs(n - length / 16000 * 25) <= 2
    assert (pre.attn.sum(1) == torch.tensor([len(ids) - 1 + n for n in frames])).all()
    assert pre.pos[0, -1] == pre.attn[0].sum() - 1
    assert model.prompt_ids("<audio> first") != model.prompt_ids("first")
    assert model.prompt_ids("first")[:model.prompt_ids("first").index(audio) + 1] == \
        model.prompt_ids("<audio>\nfirst")[:model.prompt_ids("first").index(audio) + 1]
    with_system = model.prompt_ids("q", "be brief")
    assert len(with_system) > len(model.prompt_ids("q")) and with_system.count(audio) == 1
    for bad in ("<audio><audio>", "a <|im_end|> b", "<pad>"):
        with pytest.raises(ConfigError):
            model.prompt_ids(bad)


# --- save / load --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lm_class", ["qwen2", "llama"])
def test_save_load_gives_identical_outputs(tok, batch, tmp_path, lm_class):
    cfg = AlmConfig(lm_class=lm_class, lm_layers=2, lm_width=64, lm_ffn=128, conv_channels=64, encoder_ffn=128)
    m = build_alm(cfg, tok, seed=3).eval()
    folder = save_alm(m, tmp_path / "alm")
    files = sorted(p.name for p in folder.iterdir())
    assert {"alm.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
    assert not [f for f in files if f.endswith((".pt", ".bin", ".pkl", ".tmp"))]
    meta = json.loads((folder / "alm.json").read_text())
    assert meta["alm"]["vocab_size"] == len(tok) and meta["lm_config"]["model_type"] == lm_class
    assert meta["encoder"]["frontend"]["name"] == "logmel" and meta["encoder"]["frontend"]["n_mels"] == 64
    loaded = load_alm(folder, device="cpu")
    assert loaded.cfg == m.cfg and not loaded.training and isinstance(loaded, AudioLM)
    comps = m.generate(batch, 2, SamplingConfig(max_completion_length=6, seed=1))
    for grad in (False, True):
        a, _ = m.token_logprobs(batch, comps, grad=grad)
        b, _ = loaded.token_logprobs(batch, comps, grad=grad)
        assert torch.equal(a, b)
    greedy = SamplingConfig(do_sample=False, max_completion_length=6)
    assert torch.equal(m.generate(batch, 1, greedy).ids, loaded.generate(batch, 1, greedy).ids)
    with pytest.raises(ConfigError):
        load_alm(tmp_path, device="cpu")


# --- generation ---------------------------------------------------------------------------------------------
def _check_completions(model, comps: Completions, b: int, n: int, max_len: int):
    eos, pad = model.eos_token_id, model.pad_token_id
    t = comps.ids.shape[-1]
    assert comps.ids.shape == comps.mask.shape == comps.logprobs.shape == (b, n, t) and t <= max_len
    assert comps.ids.dtype == torch.int64 and comps.mask.dtype == torch.bool and comps.truncated.shape == (b, n)
    assert len(comps.text) == b and all(len(row) == n for row in comps.text)
    for i in range(b):
        for j in range(n):
            ids, mask = comps.ids[i, j].tolist(), comps.mask[i, j].tolist()
            end = ids.index(eos) + 1 if eos in ids else t
            assert mask == [k < end for k in range(t)]
            assert all(x == pad for x in ids[end:])
            assert comps.truncated[i, j] == (eos not in ids)
            assert not set(ids[:end]) & set(model.ids.suppressed())
            assert comps.text[i][j] == model.tokenizer.decode(ids[:end], skip_special_tokens=True)
            if comps.truncated[i, j]:
                assert end == max_len
    assert (comps.logprobs[~comps.mask] == 0).all() and (comps.logprobs[comps.mask] < 0).all()
    # generation stops at the step where the last row produced EOS
    assert t == int(comps.mask.sum(-1).max())


def test_generate_shapes_masks_and_eos(model, batch):
    with eos_bias(model, 4.0):   # EOS likely: completions of many lengths
        comps = model.generate(batch, 5, SamplingConfig(max_completion_length=10, seed=0))
    _check_completions(model, comps, 3, 5, 10)
    lengths = comps.mask.sum(-1)
    assert len(set(lengths.flatten().tolist())) > 2 and comps.truncated.any() and not comps.truncated.all()
    with eos_bias(model, 50.0):  # EOS first: one-token completions, nothing truncated, empty texts
        first = model.generate(batch, 4, SamplingConfig(max_completion_length=10, seed=0))
    assert first.ids.shape == (3, 4, 1) and first.mask.all() and not first.truncated.any()
    assert (first.ids == model.eos_token_id).all() and all(t == "" for row in first.text for t in row)
    with eos_bias(model, float("-inf")):  # EOS impossible: every completion is cut at max_completion_length
        cut = model.generate(batch, 2, SamplingConfig(max_completion_length=7, seed=0))
    _check_completions(model, cut, 3, 2, 7)
    assert cut.ids.shape[-1] == 7 and cut.truncated.all() and cut.mask.all()


def test_greedy_is_deterministic_and_top_k_1_is_greedy(model, batch):
    greedy = SamplingConfig(do_sample=False, max_completion_length=8)
    a = model.generate(batch, 3, greedy)
    b = model.generate(batch, 3, greedy)
    assert torch.equal(a.ids, b.ids) and (a.ids == a.ids[:, :1]).all()   # all N copies identical
    for s in (SamplingConfig(top_k=1, max_completion_length=8, seed=7),
              SamplingConfig(top_p=1e-6, max_completion_length=8, seed=7, temperature=1.7)):
        assert torch.equal(model.generate(batch, 3, s).ids, a.ids)


def test_sampling_with_a_seed_is_reproducible(model, batch):
    s = SamplingConfig(max_completion_length=8, seed=11, temperature=1.3, top_p=0.95, top_k=50)
    state = torch.random.get_rng_state()
    a, b = model.generate(batch, 4, s), model.generate(batch, 4, s)
    assert torch.equal(torch.random.get_rng_state(), state)   # a seeded call leaves the global RNG alone
    assert torch.equal(a.ids, b.ids) and a.text == b.text
    other = model.generate(batch, 4, SamplingConfig(max_completion_length=8, seed=12, temperature=1.3))
    assert not torch.equal(other.ids[..., :2], a.ids[..., :2])
    assert len({tuple(r) for r in a.ids.view(-1, a.ids.shape[-1]).tolist()}) > 6   # rows sample independently
    unseeded = SamplingConfig(max_completion_length=8)
    c = model.generate(batch, 4, unseeded, generator=torch.Generator().manual_seed(3))
    d = model.generate(batch, 4, unseeded, generator=torch.Generator().manual_seed(3))
    assert torch.equal(c.ids, d.ids)


# --- scoring -----------------------------------------------------------------------------------------------
def test_token_logprobs_equal_the_generation_step_logprobs(model, batch):
    """One teacher-forced forward (audio encoder included) gives the log-probs the KV-cached decoding
    computed token by token: both see the audio the same way."""
    for temperature in (1.0, 0.7):
        with eos_bias(model, 2.0):
            comps = model.generate(batch, 4, SamplingConfig(max_completion_length=12, seed=2, top_k=40,
                                                            temperature=temperature))
            assert comps.temperature == temperature
            logp, mask = model.token_logprobs(batch, comps, grad=False, temperature=temperature)
        assert torch.equal(mask, comps.mask) and not logp.requires_grad
        assert (logp - comps.logprobs).abs().max() < LOGP_TOL   # a token scored one place off: O(0.1 - 1)
    model.zero_grad()
    with eos_bias(model, 2.0):
        logp, _ = model.token_logprobs(batch, comps, grad=True, temperature=0.7)
    assert (logp.detach() - comps.logprobs).abs().max() < LOGP_TOL
    logp.sum().backward()
    for part in (model.encoder.convs[0].weight, model.projector.net[0].weight, model.lm.lm_head.weight):
        assert part.grad is not None and part.grad.abs().sum() > 0
    model.zero_grad()


def test_token_logprobs_depend_on_the_audio_not_on_batch_mates(model, batch):
    comps = model.generate(batch, 2, SamplingConfig(max_completion_length=8, seed=4))
    logp, mask = model.token_logprobs(batch, comps, grad=False)
    # each item gets another one's audio
    swapped = AlmBatch(batch.waves.roll(1, 0), batch.lengths.roll(1, 0), batch.prompts)
    other, _ = model.token_logprobs(swapped, comps, grad=False)
    # each item's audio matters: another clip moves the log-probs of this random model by 5e-3 to 0.2 (the
    # smallest for two clips of one class), above the 4e-4 that rounding can explain
    assert ((logp - other).abs() * mask).amax(dim=(1, 2)).min() > max(1e-3, 2 * LOGP_TOL)
    quiet = AlmBatch(batch.waves * 0.0, batch.lengths, batch.prompts)
    assert (model.token_logprobs(quiet, comps, grad=False)[0] - logp).abs().max() > max(1e-3, 2 * LOGP_TOL)
    # an item scored alone (no padding) or with other batch mates gives the same log-probs
    for i in range(len(batch)):
        alone, _ = model.token_logprobs(batch.select([i]), comps.select([i]), grad=False)
        t = alone.shape[-1]
        assert (alone - logp[i:i + 1, :, :t]).abs().max() < LOGP_TOL    # padding that leaked: ~ the above


def test_sft_loss_counts_only_the_completion_tokens(model, batch):
    targets = ["it sounds low", "<answer>high</answer>", "x"]
    comps = model.completions_from_text(targets)
    counts = [len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in targets]  # + EOS
    assert comps.mask.sum(-1).flatten().tolist() == counts and not comps.truncated.any()
    loss = model.sft_loss(batch, targets)
    logp, mask = model.token_logprobs(batch, comps, grad=False)
    # the same forward with and without autograd (kernels may differ): means of log-probs, within LOGP_TOL;
    # a prompt, audio or padding position counted would move the loss by O(1)
    torch.testing.assert_close(loss, -logp.sum() / mask.sum(), atol=LOGP_TOL, rtol=0)
    seq = model.sft_loss(batch, targets, reduction="sequence")
    torch.testing.assert_close(seq, -(logp.sum(-1) / mask.sum(-1)).mean(), atol=LOGP_TOL, rtol=0)
    # the same as transformers' labels loss with every prompt / audio / padding label ignored (-100)
    bias = model.logit_bias.clone()
    model.logit_bias.zero_()          # transformers' loss knows nothing of the suppressed tokens
    try:
        ours = model.sft_loss(batch, targets)
        pre = model.prefix(batch)
        ids = comps.ids[:, 0]
        embeds = torch.cat([pre.embeds, model.lm.get_input_embeddings()(ids)], dim=1)
        attn = torch.cat([pre.attn, torch.ones_like(ids)], dim=1)
        pos = torch.cat([pre.pos, pre.pos[:, -1:] + 1 + torch.arange(ids.shape[1])], dim=1)
        labels = torch.full_like(attn, -100)
        labels[:, pre.embeds.shape[1]:] = ids.masked_fill(~comps.mask[:, 0], -100)
        hf = model.lm(inputs_embeds=embeds, attention_mask=attn, position_ids=pos, labels=labels).loss
    finally:
        model.logit_bias.copy_(bias)
    torch.testing.assert_close(ours, hf, atol=LOGP_TOL, rtol=0)    # log_softmax + gather vs cross_entropy
    assert model.sft_loss(AlmBatch(batch.waves, batch.lengths, batch.prompts, references=targets)) == loss
    with pytest.raises(ConfigError):
        model.sft_loss(batch, ["only one"])
    with pytest.raises(ConfigError):
        model.completions_from_text(["a <|im_end|> b"])


def test_sft_learns_the_toy_task():
    """60 Adam steps of batch 8 on the toy task (low tone vs high-passed noise, one prompt): greedy exact
    match >= 90% on 64 held-out items. Measured (lr 1e-3): 100% at steps 20, 40 and 60 for each of 12 seeds;
    lr 3e-3 is too high (2 of 3 seeds stuck near 50% at step 40-50, answering without listening)."""
    torch.manual_seed(0)
    m = build_alm(AlmConfig(), train_tokenizer(toy_texts(), vocab_size=300), seed=0)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    test = toy_batch(64, seed=10_000)
    greedy = SamplingConfig(do_sample=False, max_completion_length=8)

    def accuracy() -> float:
        m.eval()
        comps = m.generate(test, 1, greedy)
        return float(np.mean([comps.text[i][0] == test.references[i] for i in range(len(test))]))

    before = accuracy()
    rng = np.random.default_rng(100)
    m.train()
    start = time.perf_counter()
    for _ in range(60):
        loss = m.sft_loss(collate_alm([toy_item(rng) for _ in range(8)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    step_s = (time.perf_counter() - start) / 60
    after = accuracy()
    print(f"toy SFT: exact match {before:.2f} -> {after:.2f} after 60 steps, loss {loss.item():.3f}, "
          f"{step_s * 1000:.0f} ms/step")
    assert before < 0.5 and after >= 0.9
    assert set(test.references) == set(TOY_ANSWERS.values())


# --- the GRPO core through AlmPolicy ----------------------------------------------------------------------
def test_alm_policy_runs_the_grpo_core(model, batch):
    from spoofrl.alm.policy import AlmPolicy
    from spoofrl.rl import GRPOSettings, grpo_loss

    policy = AlmPolicy(model, SamplingConfig(max_completion_length=6, seed=0, temperature=0.9))

    def reward(actions, targets, **_):
        texts = policy.decode(actions)
        return torch.tensor([[float(len(t)) for t in row] for row in texts])

    model.train()
    try:
        out = grpo_loss(policy, batch, None, reward, GRPOSettings(num_generations=4, beta=0.0))
        model.zero_grad()
        out.loss.backward()
    finally:
        model.eval()
    assert torch.isfinite(out.loss) and out.actions.shape[:2] == (3, 4)
    assert model.encoder.convs[0].weight.grad.abs().sum() > 0
    assert torch.equal(completion_mask(out.actions, model.eos_token_id), policy.last.mask)
    ref = policy.reference_actions(["it sounds low"] * 3, length=out.actions.shape[-1])
    assert ref.shape == (3, 1, out.actions.shape[-1]) and policy.log_prob(batch, ref).logp.shape == ref.shape
    model.zero_grad()


def test_benchmark_prints_numbers():
    from spoofrl.alm.bench import benchmark
    out = benchmark(items=2, num=8, tokens=16, sft_batch=8, repeats=1)
    print("alm micro-benchmark:", {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()})
    assert out["generate_tokens_per_s"] > 0 and out["tokens_per_row"] == 16


def test_bf16_autocast_path_runs(tok, batch, monkeypatch):
    """The CUDA path runs forwards under bf16 autocast; here the same code under CPU bf16 autocast: dtypes
    mix without errors, log-probs stay float32 and agree with the cached decoding to bf16 precision."""
    m = build_alm(AlmConfig(), tok, seed=1).eval()
    monkeypatch.setattr(m, "autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    comps = m.generate(batch, 2, SamplingConfig(max_completion_length=5, seed=0))
    logp, mask = m.token_logprobs(batch, comps, grad=True)
    assert logp.dtype == torch.float32 and comps.logprobs.dtype == torch.float32
    # each of the ~17 matmuls on the path (2 convs, 4 per transformer layer x 3, projector 2, lm_head) rounds
    # its operands to bf16 (eps 7.8e-3) and accumulates in float32; independent roundings add up like sqrt(17),
    # on |logits| < 2: 0.064; a token scored one place off would be off by the log-probs' spread, ~1
    assert (logp.detach() - comps.logprobs).abs().max() < float_tol("bfloat16", chain_ops(17), 2)
    m.sft_loss(batch, ["low", "high", "low"]).backward()
    assert m.encoder.convs[0].weight.grad is not None
