"em_tutorial.scoring on a tiny random model: teacher-forced log-probabilities against a token-by-token reference, and against generate's own."
import pytest, torch

from em_tutorial.generate import generate
from em_tutorial.models import tiny_model
from em_tutorial.scoring import token_logprobs

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model("llama", seed=0)


def _reference_logprobs(model, ctx, cont, temperature, top_p):
    "Token by token, one unpadded forward pass per prefix, the nucleus cut by sorting."
    out = []
    with torch.inference_mode():
        for t in range(len(cont)):
            s = model(torch.tensor([ctx + cont[:t]])).logits[0, -1].double() / temperature
            v, i = s.sort(descending=True); p = v.softmax(-1)
            s = s.scatter(-1, i, v.masked_fill(p.cumsum(-1) - p >= top_p, -float("inf")))
            out.append(float(s.log_softmax(-1)[cont[t]]))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9), (1.3, 0.5)])
def test_token_logprobs_match_reference(tiny, temperature, top_p):
    model, tok = tiny
    pairs = [([5, 9, 11, 3], [7, 8, 2]), ([4], [10, 12, 13, 14, 15]), ([6, 6, 6, 6, 6, 6, 6], [1])]
    got = token_logprobs(model, pairs, temperature=temperature, top_p=top_p, batch_size=2)
    for (c, x), g in zip(pairs, got):
        ref = _reference_logprobs(model, c, x, temperature, top_p)
        assert g.isinf().tolist() == ref.isinf().tolist()
        assert torch.allclose(g[~g.isinf()], ref[~ref.isinf()], atol=1e-4)


def test_generate_logprob_is_the_teacher_forced_sum(tiny):
    model, tok = tiny
    prompts = ["the cat sat", "a dog ran far"]
    out = generate(model, tok, prompts, n=2, temperature=0.8, top_p=0.9, max_new_tokens=6, seed=3, progress=False)
    ids = tok(prompts, add_special_tokens=False)["input_ids"]
    checked = 0
    for i, cs in enumerate(out):
        for c in cs:
            new = tok(c.text, add_special_tokens=False)["input_ids"]
            if len(new) != c.n_tokens: continue          # an EOS (skipped in the text) or a re-encoding that differs
            s = token_logprobs(model, [(ids[i], new)])[0]
            assert abs(float(s.sum()) - c.logprob) < 1e-3; checked += 1
    assert checked >= 1, "no completion re-encoded to its own ids"
    assert all(c.logprob < 0 for cs in out for c in cs)


def test_token_logprobs_rejects_greedy(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="greedy decoding has no density"): token_logprobs(model, [([1], [2])], temperature=0)
    with pytest.raises(ValueError, match="context is empty"): token_logprobs(model, [([], [2])])
