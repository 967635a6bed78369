"""em_tutorial.scoring on a tiny random model: teacher-forced log-probabilities against a token-by-token
reference, and against generate's own."""
import pytest, torch

from em_tutorial.generate import generate
from em_tutorial.models import tiny_model
from em_tutorial.data import build_prompt, make_question
from em_tutorial.scoring import (token_logprobs, score_traces, rationale_parts, summarise_objective,
                                 LOG_P_FLOOR)

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
    out = generate(model, tok, prompts, n=2, temperature=0.8, top_p=0.9, max_new_tokens=6, seed=3,
                   progress=False)
    ids = tok(prompts, add_special_tokens=False)["input_ids"]
    checked = 0
    for i, cs in enumerate(out):
        for c in cs:
            new = tok(c.text, add_special_tokens=False)["input_ids"]
            if len(new) != c.n_tokens: continue   # an EOS (skipped in the text) or a re-encoding that differs
            s = token_logprobs(model, [(ids[i], new)])[0]
            assert abs(float(s.sum()) - c.logprob) < 1e-3; checked += 1
    assert checked >= 1, "no completion re-encoded to its own ids"
    assert all(c.logprob < 0 for cs in out for c in cs)


def test_token_logprobs_rejects_greedy(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="greedy decoding has no density"):
        token_logprobs(model, [([1], [2])], temperature=0)
    with pytest.raises(ValueError, match="context is empty"): token_logprobs(model, [([], [2])])


def test_score_traces_match_reference(tiny):
    "The three densities of a trace, against token-by-token references on the unhinted and hinted prompts."
    model, tok = tiny
    q = make_question("q0", "What is 2 + 3?", "ABCD", ["4", "5", "6", "7"], "B", "arc_easy", "train")
    text = "two plus three is five. The answer is (B)."
    [s] = score_traces(model, tok, [q], [text], proposal=(0.7, 0.9))
    z, sep, stmt = rationale_parts(q, text)
    assert (z, sep, stmt) == ("two plus three is five.", " ", "The answer is (B).")
    ids = lambda t: tok(t, add_special_tokens=False)["input_ids"]
    plain, hinted = build_prompt(q, tok), build_prompt(q, tok, hint=True)
    whole = ids(plain + z + sep + stmt)
    P, O = len(ids(plain)), len(ids(plain + z + sep + "The answer is"))
    assert whole[:P] == ids(plain) and whole[:O] == ids(plain + z + sep + "The answer is")
    ref = _reference_logprobs(model, whole[:P], whole[P:], 1.0, 1.0)
    assert s["logp_rationale"] == pytest.approx(float(ref[:O - P].sum()), abs=1e-4)
    assert s["logp_answer"] == pytest.approx(float(ref[O - P:].sum()), abs=1e-4)
    h = ids(hinted)
    assert s["logq_rationale"] == pytest.approx(
        float(_reference_logprobs(model, h, whole[P:O], 1.0, 1.0).sum()), abs=1e-4)
    assert s["logq_proposal"] == pytest.approx(
        float(_reference_logprobs(model, h, whole[P:O], 0.7, 0.9).sum()), abs=1e-4)
    with pytest.raises(ValueError, match="one question per text"): score_traces(model, tok, [q], [text, text])


def test_rationale_parts_without_a_statement():
    q = make_question("q0", "Q?", "ABCD", ["a", "b", "c", "d"], "C", "arc_easy", "train")
    assert rationale_parts(q, "I am not sure ") == ("I am not sure", " ", "The answer is (C).")
    assert rationale_parts(q, "The answer is (A).") == ("", "", "The answer is (C).")


def test_summarise_objective_by_hand():
    import math
    rows = [dict(qid="a", k=2, mc_logp=math.log(0.5), mc_stated=2, mc_elbo=-1.0, mc_ess=2.0,
                 is_logp=math.log(0.25), is_stated=2, is_elbo=-2.0, is_ess=1.0),
            dict(qid="b", k=2, mc_logp=-math.inf, mc_stated=0, mc_elbo=None, mc_ess=0.0,
                 is_logp=math.log(0.75), is_stated=1, is_elbo=-0.5, is_ess=1.0)]
    s = summarise_objective(rows)
    assert s["mc_p"] == pytest.approx(0.25) and s["is_p"] == pytest.approx(0.5)
    assert s["mc_logp"] == pytest.approx((math.log(0.5) + LOG_P_FLOOR) / 2)   # the p-hat = 0 question clipped
    assert s["mc_elbo"] == pytest.approx(-1.0) and s["is_elbo"] == pytest.approx((-2.0 * 2 - 0.5) / 3)
    assert s["mc_stated"] == pytest.approx(0.5) and s["is_stated"] == pytest.approx(0.75)
    assert summarise_objective([]) == {}
