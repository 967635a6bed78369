"Accounting of the samplers with a canned-text generator, and determinism with a tiny random model."
import json
import pytest, torch

import em_tutorial.samplers as S
from em_tutorial.data import build_prompt, make_question
from em_tutorial.generate import Completion
from em_tutorial.models import tiny_model
from em_tutorial.samplers import (Trace, SAMPLERS, get_sampler, question_seed, restates_hint, sampler_stats,
                                  rejection_sample, star_sample, prompt_posterior_sample)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok():
    return tiny_model("llama")[1]


def Q(i, answer="B"):
    return make_question(f"q{i}", f"Question number {i}?", "ABCD", ["w", "x", "y", "z"], answer, "arc_easy",
                         "train")


class CannedGenerate:
    """Stands in for `generate`: the text for (question, hinted, attempt) comes from `script`, identified
    through the per-question seeds the samplers pass; every completion of text t costs len(t.split())
    tokens. Records each call."""
    def __init__(self, questions, script, seed=0, wrong="I think so. The answer is (A)."):
        self.script, self.wrong, self.calls = script, wrong, []
        self.by_seed = {question_seed(seed, q.id, h, a): (q.id, h, a)
                        for q in questions for h in (False, True) for a in range(10)}

    def __call__(self, model, tokenizer, prompts, n=1, seed=0, on_done=None, **kw):
        keys = [self.by_seed[s] for s in seed]
        self.calls.append(keys)
        out = []
        for i, (qid, hinted, attempt) in enumerate(keys):
            text = self.script.get((qid, hinted, attempt), self.wrong)
            out.append([Completion(text + " trailing words", len(text.split()) + 2)])
            if on_done is not None: on_done(i, out[-1])   # as `generate` does, as each finishes
        return out


def cost(text): return len(text.split()) + 2


def test_rejection_accounting(tok, monkeypatch):
    qs = [Q(0), Q(1), Q(2)]
    right = "Because. The answer is (B)."
    fake = CannedGenerate(qs, {("q0", False, 0): right, ("q1", False, 2): right})
    monkeypatch.setattr(S, "generate", fake)
    handed = []
    tr = rejection_sample(None, tok, qs, budget=4, on_trace=handed.append)
    assert handed == tr   # each trace handed over once, when final: q0 at try 1, q1 at 3, q2 at 4
    assert [t.tries for t in tr] == [1, 3, 4]
    assert [t.accepted for t in tr] == [True, True, False]
    w = cost(fake.wrong)
    assert [t.tokens for t in tr] == [cost(right), 2 * w + cost(right), 4 * w]
    assert [len(c) for c in fake.calls] == [3, 2, 2, 1]   # rounds over unsolved questions
    assert all(not h for call in fake.calls for _, h, _ in call)
    for q, t in zip(qs, tr):
        assert not t.hinted and t.prompt == t.train_prompt == build_prompt(q, tok) and not t.restates_hint
    assert tr[0].rationale == right and tr[0].answer == "B" and tr[2].answer == "A"   # cut after the answer
    assert tr[0].rationale_tokens == cost(right)


def test_star_uses_the_hint_only_on_failure(tok, monkeypatch):
    qs = [Q(0), Q(1), Q(2), Q(3)]
    right, restated = "Because. The answer is (B).", "The correct answer is (B). The answer is (B)."
    fake = CannedGenerate(qs, {("q0", False, 0): right, ("q1", True, 0): right, ("q2", True, 0): restated})
    monkeypatch.setattr(S, "generate", fake)
    handed = []
    tr = star_sample(None, tok, qs, on_trace=handed.append)
    assert handed == tr   # q0 after the first pass, the others after their rationalization
    assert [t.hinted for t in tr] == [False, True, True, True]
    assert [t.tries for t in tr] == [1, 2, 2, 2]
    assert [t.correct for t in tr] == [True, True, True, False]
    assert [t.accepted for t in tr] == [True, True, False, False]               # the restatement is dropped
    assert [t.restates_hint for t in tr] == [False, False, True, False]
    w = cost(fake.wrong)
    assert [t.tokens for t in tr] == [cost(right), w + cost(right), w + cost(restated), 2 * w]
    assert [len(c) for c in fake.calls] == [4, 3]
    assert all(not h for _, h, _ in fake.calls[0]) and all(h for _, h, _ in fake.calls[1])
    for q, t in zip(qs, tr):
        assert t.train_prompt == build_prompt(q, tok) and t.prompt == build_prompt(q, tok, hint=t.hinted)
    assert star_sample(None, tok, qs, drop_restated=False)[2].accepted


def test_pps_is_always_hinted(tok, monkeypatch):
    qs = [Q(0), Q(1, answer="C")]
    fake = CannedGenerate(qs, {("q0", True, 0): "Because. The answer is (B).",
                               ("q1", True, 0): "We are told. The answer is (C)."})
    monkeypatch.setattr(S, "generate", fake)
    # rejection's option
    with pytest.raises(TypeError, match="budget"): prompt_posterior_sample(None, tok, qs, budget=4)
    tr = prompt_posterior_sample(None, tok, qs)
    assert len(fake.calls) == 1 and all(h for _, h, _ in fake.calls[0])
    assert all(t.hinted and t.tries == 1 for t in tr)
    assert [t.accepted for t in tr] == [True, False] and tr[1].restates_hint
    for q, t in zip(qs, tr):
        assert t.train_prompt == build_prompt(q, tok) != t.prompt == build_prompt(q, tok, hint=True)
    s = sampler_stats(tr)
    assert s == dict(n_questions=2, acceptance_rate=0.5, mean_tries=1.0, tokens=tr[0].tokens + tr[1].tokens,
                     tokens_per_accepted=float(tr[0].tokens + tr[1].tokens),
                     mean_rationale_tokens=float(tr[0].rationale_tokens), hinted_fraction=1.0,
                     restated_hint_count=1, hint_leakage=None, mean_ess=None)


def test_stats_with_nothing_accepted():
    t = Trace("q", "p", False, "r", None, False, False, 4, 40, "p", False, 10)
    s = sampler_stats([t, t])
    assert (s["acceptance_rate"] == 0 and s["tokens_per_accepted"] is None and s["mean_tries"] == 4
            and s["tokens"] == 80)


def test_trace_json_round_trip():
    t = Trace("q1", "prompt", True, "Because. The answer is (B).", "B", True, True, 2, 17, "train", False, 9)
    assert Trace.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_restates_hint():
    assert restates_hint("The correct answer is (B) iron. Iron is a metal.")
    assert restates_hint("Since the answer is given as (C), plants need light.")
    assert restates_hint("Metals conduct. As stated, it is (B).") and restates_hint("We are told it is B.")
    assert restates_hint("The hint says B.")
    assert not restates_hint("Iron conducts heat. So the correct answer is (B). The answer is (B).")
    assert not restates_hint("Plants need light to make sugar. The answer is (C).")


def test_interface_errors(tok):
    assert (set(SAMPLERS) == {"rejection", "star", "pps", "pps_iw"}
            and get_sampler("pps") is prompt_posterior_sample)
    with pytest.raises(ValueError, match="choose one of: rejection, star, pps"): get_sampler("grpo")
    with pytest.raises(TypeError, match="unexpected keyword argument 'temprature'"):
        star_sample(None, tok, [Q(0)], temprature=1.0)
    with pytest.raises(ValueError, match="budget"): rejection_sample(None, tok, [Q(0)], budget=0)
    with pytest.raises(ValueError, match="MCQuestion"): prompt_posterior_sample(None, tok, ["text"])


def test_real_generation_is_a_pure_function_of_the_seed():
    """With the real backend on a tiny random model: same seed, same traces; a question's trace ignores its
    neighbours."""
    model, tok = tiny_model("llama", seed=0)
    qs = [Q(i) for i in range(4)]
    kw = dict(max_new_tokens=8, progress=False, seed=3)
    for _name, sampler in SAMPLERS.items():
        a = sampler(model, tok, qs, **kw)
        assert [t.qid for t in a] == [q.id for q in qs]
        assert sampler(model, tok, qs, **kw) == a
        assert sampler(model, tok, qs[::-1], **kw) == a[::-1]
        assert sampler(model, tok, qs[2:3], **kw) == a[2:3]
    p1 = prompt_posterior_sample(model, tok, qs, **{**kw, "seed": 4})
    assert [t.rationale for t in p1] != [t.rationale for t in prompt_posterior_sample(model, tok, qs, **kw)]


def test_pps_iw_weights_on_a_uniform_model(monkeypatch):
    """Every logit 0: every token has probability 1/V under any prompt, so the importance weights are known
    in closed form."""
    model, tok = tiny_model("llama")
    # tied to the embeddings: all hidden states and logits are 0
    with torch.no_grad(): model.lm_head.weight.zero_()
    texts = ["Because five. The answer is (B).", "It is so. The answer is (C).",
             "The hint says (B). The answer is (B).", "no answer stated here"]
    monkeypatch.setattr(S, "generate", lambda model, tok, prompts, n=1, **kw:
                        [[Completion(t, len(t.split())) for t in texts[:n]] for _ in prompts])
    q = Q(0)
    [t] = S.importance_weighted_pps(model, tok, [q], budget=4, top_p=1.0)
    # log w = log pi(z|x) + log pi(y*|x,z) - log q(z|x,y*) = -(tokens of the gold answer's rest) log V,
    # the same for the two usable samples (the second stated (C): its rationale is still weighted, with the
    # gold statement after it); the restatement and the sample with no statement get weight 0
    assert t.accepted and t.correct and t.answer == "B" and t.ess == pytest.approx(2.0)
    assert t.rationale in ("Because five. The answer is (B).", "It is so. The answer is (B).")
    # no leakage on a model that ignores its prompt
    assert t.logp_rationale == pytest.approx(t.logq_rationale)
    [t3] = S.importance_weighted_pps(model, tok, [q], budget=4, top_p=1.0, drop_restated=False)
    assert t3.ess == pytest.approx(3.0)
    monkeypatch.setattr(S, "generate", lambda model, tok, prompts, n=1, **kw:
                        [[Completion("nothing", 1)] * n for _ in prompts])
    [none] = S.importance_weighted_pps(model, tok, [q], budget=2, top_p=1.0)
    assert not none.accepted and none.ess == 0.0
    with pytest.raises(ValueError, match="budget=0 must be a positive integer"):
        S.importance_weighted_pps(model, tok, [q], budget=0)


def test_pps_iw_resamples_by_weight():
    """Among the K samples, the kept one is drawn with the normalised weights: over many seeds, the
    frequencies follow them."""
    from collections import Counter
    import em_tutorial.samplers as S2
    w = torch.tensor([0.0, -1.0, -2.0]).double()
    p = (w - w.logsumexp(0)).exp().tolist()
    import random
    counts = Counter(random.Random(S2.question_seed(s, "q", True, 3)).choices(range(3), weights=p)[0]
                     for s in range(4000))
    for j in range(3): assert abs(counts[j] / 4000 - p[j]) < 0.03
