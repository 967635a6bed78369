"Mechanics of em_tutorial.generate on a tiny random model: shapes, determinism, batch invariance, stops, token counts."
import pytest, torch

from em_tutorial.data import answer_stated
from em_tutorial.generate import (Completion, generate, uniform_noise, gumbel_noise, row_key, AnswerStop, next_tokens,
                                  merged_adapter, _lora_layers)
from em_tutorial.models import tiny_model

torch.set_num_threads(1)
PROMPTS = ["Which is a metal? A) wood B) iron", "Water boils at", "Plants use sunlight to make"]
SAMPLE = dict(temperature=1.0, top_p=0.9, max_new_tokens=12, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=0)


def texts(out): return [[c.text for c in cs] for cs in out]


def test_shapes_and_types(tiny):
    model, tok = tiny
    out = generate(model, tok, PROMPTS, n=2, seed=0, **SAMPLE)
    assert len(out) == 3 and all(len(cs) == 2 for cs in out)
    assert all(isinstance(c, Completion) and 1 <= c.n_tokens <= 12 for cs in out for c in cs)
    assert generate(model, tok, [], progress=False) == []


def test_seed_determinism_and_batch_invariance(tiny):
    model, tok = tiny
    a = generate(model, tok, PROMPTS, n=3, seed=5, **SAMPLE)
    assert generate(model, tok, PROMPTS, n=3, seed=5, **SAMPLE) == a
    assert generate(model, tok, PROMPTS, n=3, seed=5, batch_size=1, **SAMPLE) == a
    assert generate(model, tok, PROMPTS, n=3, seed=5, batch_size=4, **SAMPLE) == a
    assert texts(generate(model, tok, PROMPTS, n=3, seed=6, **SAMPLE)) != texts(a)


def test_per_prompt_seeds_do_not_depend_on_neighbours(tiny):
    model, tok = tiny
    both = generate(model, tok, PROMPTS[:2], n=2, seed=[11, 12], **SAMPLE)
    alone = generate(model, tok, PROMPTS[1:2], n=2, seed=[12], **SAMPLE)
    assert both[1] == alone[0]


def test_prompt_order_is_kept(tiny):
    model, tok = tiny
    fwd = generate(model, tok, PROMPTS, max_new_tokens=8, progress=False)
    rev = generate(model, tok, PROMPTS[::-1], max_new_tokens=8, progress=False)
    assert fwd == rev[::-1]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_greedy_equals_hf_generate(arch):
    "Dropping finished rows and per-row positions change nothing: greedy text equals plain model.generate, prompt by prompt."
    model, tok = tiny_model(arch, seed=0)
    ours = generate(model, tok, PROMPTS, max_new_tokens=10, stop_at_answer=False, progress=False)
    for p, [c] in zip(PROMPTS, ours):
        enc = tok([p], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)[0, enc.input_ids.shape[1]:]
        eos = (ids == tok.eos_token_id).nonzero()
        n = int(eos[0]) + 1 if len(eos) else len(ids)
        assert c.n_tokens == n and c.text == tok.decode(ids[:n], skip_special_tokens=True)


def test_greedy_n_copies(tiny):
    model, tok = tiny
    out = generate(model, tok, PROMPTS[:1], n=4, max_new_tokens=6, progress=False)
    assert len(out[0]) == 4 and len({(c.text, c.n_tokens) for c in out[0]}) == 1


def test_bad_arguments(tiny):
    model, tok = tiny
    for kw, msg in [(dict(n=0), "n="), (dict(temperature=-1), "temperature"), (dict(top_p=1.5), "top_p"),
                    (dict(max_new_tokens=0), "max_new_tokens"), (dict(seed=[1]), "one seed per prompt"),
                    (dict(batch_size=0), "batch_size")]:
        with pytest.raises(ValueError, match=msg): generate(model, tok, PROMPTS, progress=False, **kw)
    with pytest.raises(ValueError, match="wrap a single prompt"): generate(model, tok, "a prompt")


def test_noise_is_keyed_and_uniform():
    keys = torch.arange(4000)
    u = uniform_noise(keys, 3, 64)
    assert ((u > 0) & (u < 1)).all()
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    assert torch.equal(uniform_noise(keys[7:9], 3, 64), u[7:9])        # a row's noise ignores the other rows
    assert not torch.equal(uniform_noise(keys, 4, 64), u)
    logits = torch.tensor([1.0, 0.0, -1.0])
    freq = torch.bincount((logits + gumbel_noise(torch.arange(30_000), 0, 3)).argmax(-1), minlength=3) / 30_000
    assert torch.allclose(freq, logits.softmax(-1), atol=0.01)
    assert row_key(1, 0) != row_key(1, 1) and row_key(1, 0, prompt=0) != row_key(1, 0, prompt=1)


def test_noise_stays_inside_the_unit_interval():
    "The extreme hash values map strictly inside (0, 1), so the Gumbel noise is finite (24 bits rounded up to 1.0)."
    keys = torch.arange(20_000)
    u = uniform_noise(keys, 0, 3000)
    assert u.min() > 0 and u.max() < 1 and torch.isfinite(gumbel_noise(keys[:50], 0, 3000)).all()
    assert (torch.tensor([0, 2**23 - 1]).float().add(0.5) / 2**23).lt(1).all()


def test_next_tokens_matches_the_full_sort():
    "Top-k candidates with retries pick exactly what a full sort with full-vocabulary noise picks."
    torch.manual_seed(1)
    x = torch.randn(200, 3000) * torch.linspace(0.02, 5, 200)[:, None]
    keys = torch.arange(200) * 7 + 3
    for p, T in [(0.3, 1.0), (0.95, 0.7), (0.99, 1.3)]:
        s = x / T
        srt, idx = s.sort(-1, descending=True)
        pr = srt.softmax(-1)
        keep = (pr.cumsum(-1) - pr) < p
        filt = torch.full_like(s, -float("inf")).scatter(-1, idx, srt.masked_fill(~keep, -float("inf")))
        assert torch.equal(next_tokens(x, keys, 5, T, p), (filt + gumbel_noise(keys, 5, 3000)).argmax(-1))
    assert torch.equal(next_tokens(x, keys, 5, 0.0), x.argmax(-1))


def test_answer_stop_is_exact(tiny):
    _, tok = tiny
    g = tok(" so The answer is (C). and more text", add_special_tokens=False).input_ids
    stop = AnswerStop(tok)
    flags = [stop(torch.tensor([g, g]), [1], k)[0] for k in range(1, len(g) + 1)]
    k = flags.index(True) + 1
    assert answer_stated(tok.decode(g[:k])) and not answer_stated(tok.decode(g[:k - 1]))
    assert flags.count(True) == 1


def scripted_model(text, seed=0):
    "The tiny model, forced to write `text` then EOS whatever the prompt (for exact stop and count checks)."
    model, tok = tiny_model("llama", seed=seed)
    script = tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]

    class Scripted(type(model)):
        def forward(self, input_ids=None, **kw):
            out = super().forward(input_ids=input_ids, **kw)
            self._step = 0 if input_ids.shape[1] > 1 else self._step + 1     # prefill starts a new generation
            logits = torch.full_like(out.logits, -1e4)
            logits[..., script[min(self._step, len(script) - 1)]] = 0.0
            out.logits = logits
            return out

    model.__class__ = Scripted
    return model, tok, script


def test_stop_at_answer_counts_tokens_to_the_stop():
    model, tok, script = scripted_model(" so The answer is (C). and more text")
    k = next(i for i in range(1, len(script)) if answer_stated(tok.decode(script[:i])))
    out = generate(model, tok, PROMPTS, n=2, temperature=0.7, max_new_tokens=40, progress=False)
    assert all(c.n_tokens == k and c.text == tok.decode(script[:k]) for cs in out for c in cs)
    full = generate(model, tok, PROMPTS, max_new_tokens=40, stop_at_answer=False, progress=False)
    assert all(c.n_tokens == len(script) and c.text == tok.decode(script[:-1]) for [c] in full)   # EOS counted, not shown
    short = generate(model, tok, PROMPTS, max_new_tokens=3, progress=False)
    assert all(c.n_tokens == 3 for [c] in short)


def test_lora_merged_sampling_restores_weights(tiny):
    from peft import LoraConfig, get_peft_model
    model, tok = tiny_model("llama", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    merged = generate(lora, tok, PROMPTS, max_new_tokens=8, progress=False)
    layers = _lora_layers(lora)
    assert layers and not any(m.merged for m in layers)
    base = lora.get_base_model()
    for name, m in base.named_modules():
        if hasattr(m, "base_layer"):
            key = name + ".weight"
            assert torch.equal(m.get_base_layer().weight, before[key])
    with merged_adapter(lora):
        assert all(m.merged for m in layers)
    assert not any(m.merged for m in layers)
    assert merged == generate(lora, tok, PROMPTS, max_new_tokens=8, progress=False)
