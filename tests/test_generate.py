"""Mechanics of em_tutorial.generate on a tiny random model: shapes, determinism, batch invariance, stops,
token counts."""
import pytest, torch

import em_tutorial.generate as gen
from em_tutorial.data import answer_stated
from em_tutorial.generate import (Completion, generate, uniform_noise, gumbel_noise, row_key, AnswerStop,
                                  next_tokens, merged_adapter, _lora_layers)
from em_tutorial.models import tiny_model

torch.set_num_threads(1)
PROMPTS = ["Which is a metal? A) wood B) iron", "Water boils at", "Plants use sunlight to make"]
SAMPLE = dict(temperature=1.0, top_p=0.9, max_new_tokens=12, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=0)


def texts(out): return [[c.text for c in cs] for cs in out]


MIXED = PROMPTS + ["Short",
                   "A much longer prompt about rocks, minerals, metals and the water cycle in general"]


def chaotic(arch="llama", ends=(281, 73, 436, 120, 88)):
    """The tiny model with its matrices scaled 10x, so that its greedy text depends on the whole context
    (at init it repeats one token and would hide a broken cache), and a few frequent tokens made extra
    end-of-sequence tokens, so that rows finish at different steps and waiting rows join a running batch."""
    model, tok = tiny_model(arch, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2: p.mul_(10)
    model.generation_config.eos_token_id = [tok.eos_token_id, *ends]
    return model, tok


def hf_greedy(model, tok, prompt, max_new_tokens):
    "(text, n_tokens) of plain `model.generate`, greedy, cut after the first end-of-sequence token."
    enc = tok([prompt], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)[0, enc.input_ids.shape[1]:].tolist()
    ends = model.generation_config.eos_token_id
    ends = [ends] if isinstance(ends, int) else ends
    n = next((k + 1 for k, t in enumerate(ids) if t in ends), len(ids))
    return tok.decode(ids[:n], skip_special_tokens=True), n


def count_admissions(monkeypatch) -> list:
    """Record (running length, newcomers' length) of every admission of waiting rows into a running batch's
    free slots."""
    joins, write = [], gen.write_rows
    monkeypatch.setattr(gen, "write_rows", lambda c, m, s, o, om: joins.append((m.shape[1], om.shape[1]))
                                                                  or write(c, m, s, o, om))
    return joins


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


def test_samples_do_not_depend_on_batch_size_order_or_refill(monkeypatch):
    """Continuous batching: rows finish at different steps and waiting rows join; a sample still depends
    only on its row."""
    model, tok = chaotic()
    joins = count_admissions(monkeypatch)
    seeds = [3, 1, 4, 1, 5]
    kw = dict(n=3, temperature=1.0, top_p=0.9, max_new_tokens=16, progress=False)
    ref = generate(model, tok, MIXED, seed=seeds, batch_size=1, **kw)
    assert len({c.n_tokens for cs in ref for c in cs}) > 3   # the rows do end at different steps
    for bs in (4, 7, None):
        assert generate(model, tok, MIXED, seed=seeds, batch_size=bs, **kw) == ref
    assert generate(model, tok, MIXED, seed=seeds, batch_size=4, continuous=False, **kw) == ref
    assert joins   # batch 4 and 7 did admit into running batches
    perm = [4, 2, 0, 3, 1]
    shuffled = generate(model, tok, [MIXED[i] for i in perm], seed=[seeds[i] for i in perm],
                        batch_size=4, **kw)
    assert shuffled == [ref[i] for i in perm]


def test_out_of_memory_halves_the_batch_and_keeps_the_samples(tiny, monkeypatch):
    """An out-of-memory error halves the batch size; finished rows are kept, the others start again,
    samples unchanged."""
    model, tok = tiny
    ref = generate(model, tok, PROMPTS, n=3, seed=5, batch_size=1, **SAMPLE)
    forward, calls = type(model).forward, []

    def tight(self, input_ids=None, **kw):   # a device that holds at most 2 rows
        calls.append(len(input_ids))
        if len(input_ids) > 2: raise torch.OutOfMemoryError("pretend")
        return forward(self, input_ids=input_ids, **kw)

    monkeypatch.setattr(type(model), "forward", tight)
    assert generate(model, tok, PROMPTS, n=3, seed=5, batch_size=8, **SAMPLE) == ref
    assert max(calls) > 2 and calls[-1] <= 2
    with pytest.raises(torch.OutOfMemoryError):   # batch 1 and still out of memory: the error is raised
        monkeypatch.setattr(type(model), "forward",
                            lambda self, **kw: (_ for _ in ()).throw(torch.OutOfMemoryError("x")))
        generate(model, tok, PROMPTS, batch_size=4, **SAMPLE)


def test_per_prompt_seeds_do_not_depend_on_neighbours(tiny):
    model, tok = tiny
    both = generate(model, tok, PROMPTS[:2], n=2, seed=[11, 12], **SAMPLE)
    alone = generate(model, tok, PROMPTS[1:2], n=2, seed=[12], **SAMPLE)
    assert both[1] == alone[0]


def test_on_done_hands_over_each_prompt_once_as_it_finishes(tiny):
    """`on_done(i, completions)` fires once per prompt, when its last sample ends (batch 2: the others
    wait), with what `generate` returns; greedy decoding hands over n copies, as it returns them."""
    model, tok = tiny
    seen = []
    out = generate(model, tok, PROMPTS, n=2, seed=3, batch_size=2, on_done=lambda i, cs: seen.append((i, cs)),
                   **SAMPLE)
    assert sorted(i for i, _ in seen) == [0, 1, 2] and all(cs == out[i] for i, cs in seen)
    seen.clear()
    out = generate(model, tok, PROMPTS, n=2, max_new_tokens=8, progress=False,
                   on_done=lambda i, cs: seen.append((i, cs)))
    assert sorted(i for i, _ in seen) == [0, 1, 2] and all(cs == out[i] and len(cs) == 2 for i, cs in seen)


def test_prompt_order_is_kept(tiny):
    model, tok = tiny
    fwd = generate(model, tok, PROMPTS, max_new_tokens=8, progress=False)
    rev = generate(model, tok, PROMPTS[::-1], max_new_tokens=8, progress=False)
    assert fwd == rev[::-1]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_greedy_equals_hf_generate(arch):
    """Dropping finished rows and per-row positions change nothing: greedy text equals plain
    model.generate, prompt by prompt."""
    model, tok = tiny_model(arch, seed=0)
    ours = generate(model, tok, PROMPTS, max_new_tokens=10, progress=False)
    for p, [c] in zip(PROMPTS, ours):
        enc = tok([p], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=10, do_sample=False,
                                 pad_token_id=tok.pad_token_id)[0, enc.input_ids.shape[1]:]
        eos = (ids == tok.eos_token_id).nonzero()
        n = int(eos[0]) + 1 if len(eos) else len(ids)
        assert c.n_tokens == n and c.text == tok.decode(ids[:n], skip_special_tokens=True)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_greedy_equals_hf_generate_when_rows_join(arch, monkeypatch):
    """Rows admitted into a running batch (their cache left-padded to the batch's length, or the batch's to
    theirs) decode exactly as plain `model.generate` does alone, on a model whose text depends on the whole
    context."""
    model, tok = chaotic(arch)
    joins = count_admissions(monkeypatch)
    ref = [hf_greedy(model, tok, p, 16) for p in MIXED]
    assert len({n for _, n in ref}) > 2
    for bs in (1, 2, 3, None):
        out = generate(model, tok, MIXED, max_new_tokens=16, batch_size=bs, progress=False)
        assert [(c.text, c.n_tokens) for [c] in out] == ref
    # `generate` admits the longest prompts first;
    # shortest first, the running rows get padded to the newcomers
    ids = tok(MIXED, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(MIXED)), key=lambda i: len(ids[i]))
    done = dict(gen._decode(model, tok, ids, [(i, 0) for i in order], [0] * len(order), 0.0, 1.0, 16,
                            None, 2))
    assert [(done[r].text, done[r].n_tokens) for r in range(len(order))] == [ref[i] for i in order]
    assert any(a > b for a, b in joins) and any(a < b for a, b in joins)


@pytest.mark.parametrize("shortest_first", [False, True])
def test_every_decode_step_equals_a_plain_forward(monkeypatch, shortest_first):
    """The logits each row samples from equal the model's logits on (its prompt + its tokens so far) alone:
    no cache, no padding. Checked at every step of every row while rows finish at different steps and
    waiting rows join (longest prompts first, as `generate` admits them, and shortest first, where the
    running rows get padded)."""
    model, tok = chaotic(ends=range(3, 40))
    seen, pick = [], gen.next_tokens

    def spy(logits, keys, step, *args):
        out = pick(logits, keys, step, *args)
        seen.append((logits.clone(), keys.tolist(), step.tolist(), out.tolist())); return out

    monkeypatch.setattr(gen, "next_tokens", spy)
    joins = count_admissions(monkeypatch)
    ids = tok(MIXED, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(MIXED)), key=lambda i: len(ids[i]) * (1 if shortest_first else -1))
    rows = [(i, j) for i in order for j in range(2)]
    done = dict(gen._decode(model, tok, ids, rows, list(range(len(rows))), 1.0, 1.0, 12, None, 3))
    assert sorted(done) == list(range(len(rows))) and joins and len({c.n_tokens for c in done.values()}) > 3
    steps = {r: {} for r in range(len(rows))}                     # row -> step -> (token, logits)
    for logits, keys, ts, out in seen:
        for b, (r, t) in enumerate(zip(keys, ts)): steps[r][t] = (out[b], logits[b])
    for r, d in steps.items():
        assert sorted(d) == list(range(done[r].n_tokens))
        prompt, new = ids[rows[r][0]], [d[t][0] for t in range(len(d))]
        with torch.no_grad(): full = model(torch.tensor([prompt + new])).logits[0, len(prompt) - 1:-1]
        torch.testing.assert_close(torch.stack([d[t][1] for t in range(len(d))]), full, atol=1e-4, rtol=1e-4)


def test_shared_prefix_and_pieces_change_no_sample(tiny, monkeypatch):
    """Prefilling a shared prefix once, and the prompts in pieces, give the same samples on a seed as one
    plain prefill."""
    import em_tutorial.kvcache as kv
    model, tok = tiny
    head = "You are a careful assistant. Read the question, think it through step by step, then answer. "
    prompts = [head + p for p in MIXED]
    ids = tok(prompts, add_special_tokens=False)["input_ids"]
    assert kv.shared_prefix(ids) >= kv.SHARED_PREFIX_MIN
    kw = dict(n=2, seed=7, batch_size=4, **SAMPLE)
    ref = generate(model, tok, prompts, **kw)   # shared prefix, one piece per admission
    monkeypatch.setattr(kv, "PREFILL_TOKENS", max(map(len, ids)))   # one prompt per piece
    assert generate(model, tok, prompts, **kw) == ref
    monkeypatch.setattr(kv, "SHARED_PREFIX_MIN", 10**9)   # and no shared prefix
    assert generate(model, tok, prompts, **kw) == ref


def test_cache_stays_bounded(monkeypatch):
    """The shared cache never grows past the longest live row and newcomer: columns that are padding for
    every live row are dropped."""
    model, tok = chaotic()
    lengths, trim = [], gen.trim

    def trimmed(cache, mask, live):
        mask = trim(cache, mask, live)
        assert all(layer.keys.shape[2] == mask.shape[1] for layer in cache.layers)
        lengths.append(mask.shape[1]); return mask

    monkeypatch.setattr(gen, "trim", trimmed)
    ids = tok(MIXED, add_special_tokens=False)["input_ids"]
    rows = [(i, j) for i in range(len(MIXED)) for j in range(6)]
    list(gen._decode(model, tok, ids, rows, list(range(len(rows))), 1.0, 1.0, 16, None, 4))
    assert lengths and max(lengths) <= max(map(len, ids)) + 16


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
    freq = torch.bincount((logits + gumbel_noise(torch.arange(30_000), 0, 3)).argmax(-1),
                          minlength=3) / 30_000
    assert torch.allclose(freq, logits.softmax(-1), atol=0.01)
    assert row_key(1, 0) != row_key(1, 1) and row_key(1, 0, prompt=0) != row_key(1, 0, prompt=1)


def test_noise_stays_inside_the_unit_interval():
    """The extreme hash values map strictly inside (0, 1), so the Gumbel noise is finite (24 bits rounded
    up to 1.0)."""
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


def test_per_row_steps_equal_one_row_at_a_time(tiny):
    "With continuous batching each row has its own step: the noise and the answer stop follow it, row by row."
    torch.manual_seed(0)
    x, keys, steps = torch.randn(6, 500) * 3, torch.arange(6) + 11, torch.tensor([0, 3, 3, 7, 1, 2])
    for p in (0.9, 1.0):
        alone = [int(next_tokens(x[r:r + 1], keys[r:r + 1], int(steps[r]), 0.8, p)) for r in range(6)]
        assert next_tokens(x, keys, steps, 0.8, p).tolist() == alone
    _, tok = tiny
    g = tok(" so The answer is (C). and more text", add_special_tokens=False).input_ids
    stop, ids = AnswerStop(tok, answer_stated), torch.tensor([g, g, g])
    k = next(n for n in range(1, len(g) + 1) if stop(ids, [0], n)[0])   # the token that completes the answer
    assert stop(ids, [0, 1, 2], [3, k, len(g)]) == [False, True, False]


def test_answer_stop_is_exact(tiny):
    _, tok = tiny
    g = tok(" so The answer is (C). and more text", add_special_tokens=False).input_ids
    stop = AnswerStop(tok, answer_stated)
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
    out = generate(model, tok, PROMPTS, n=2, temperature=0.7, max_new_tokens=40, stop=answer_stated,
                   progress=False)
    assert all(c.n_tokens == k and c.text == tok.decode(script[:k]) for cs in out for c in cs)
    full = generate(model, tok, PROMPTS, max_new_tokens=40, progress=False)
    # EOS counted, not shown
    assert all(c.n_tokens == len(script) and c.text == tok.decode(script[:-1]) for [c] in full)
    short = generate(model, tok, PROMPTS, max_new_tokens=3, stop=answer_stated, progress=False)
    assert all(c.n_tokens == 3 for [c] in short)


def test_lora_merged_sampling_restores_weights(tiny):
    from peft import LoraConfig, get_peft_model
    model, tok = tiny_model("llama", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                            init_lora_weights=False))
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

