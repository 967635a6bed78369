"""Tests for em_tutorial.evaluate: bootstrap intervals, batched log-likelihoods, CoT scoring that never
raises, run folders."""
import json
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

import em_tutorial.models as M
from em_tutorial.data import load_questions, make_question
from em_tutorial.evaluate import (EvalResult, bootstrap_ci, paired_bootstrap, wilson_ci, encode_pair,
                                  loglik_requests, loglikelihoods, loglik_accuracy, score_cot, evaluate_cot)
from em_tutorial.em import evaluate_run
from em_tutorial.runs import finished_rounds, mark_step
from em_tutorial.models import add_lora

from conftest import needs_smollm2



@pytest.fixture(scope="module")
def questions():
    return load_questions("arc_easy", "validation", n=3, seed=1)


def reference_loglik(model, tok, context, continuation):
    ctx, cont = encode_pair(tok, context, continuation)
    with torch.inference_mode():
        logp = model(torch.tensor([ctx + cont])).logits[0].float().log_softmax(-1)
    return sum(logp[len(ctx) - 1 + t, c].item() for t, c in enumerate(cont))


# --- bootstrap_ci -------------------------------------------------------------------------------------------

def test_bootstrap_degenerate_cases():
    assert bootstrap_ci([1] * 30) == (1.0, 1.0)
    assert bootstrap_ci([0] * 30) == (0.0, 0.0)
    assert bootstrap_ci([True, False] * 10)[0] < 0.5 < bootstrap_ci([True, False] * 10)[1]
    for bad in ([], [[1, 0]]):
        with pytest.raises(ValueError, match="non-empty flat"): bootstrap_ci(bad)
    with pytest.raises(ValueError, match="alpha"): bootstrap_ci([1, 0], alpha=1.5)


def test_bootstrap_deterministic_by_seed_and_ordered():
    x = np.random.default_rng(0).random(80) < 0.3
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(list(x), seed=3)
    lo, hi = bootstrap_ci(x)
    assert 0 <= lo <= x.mean() <= hi <= 1
    lo99, hi99 = bootstrap_ci(x, alpha=0.01)
    assert lo99 <= lo and hi <= hi99          # a higher confidence level gives a wider interval


def test_bootstrap_close_to_wilson_and_coverage_sane():
    rng, p, n, trials, covered = np.random.default_rng(1), 0.3, 100, 200, 0
    for t in range(trials):
        x = rng.random(n) < p
        lo, hi = bootstrap_ci(x, n_boot=1000, seed=t)
        covered += lo <= p <= hi
        if t < 20: np.testing.assert_allclose((lo, hi), wilson_ci(int(x.sum()), n), atol=0.035)
    assert 0.88 <= covered / trials <= 0.99, covered / trials


def test_wilson_known_value_and_errors():
    np.testing.assert_allclose(wilson_ci(50, 100), (0.4038, 0.5962), atol=1e-4)
    with pytest.raises(ValueError): wilson_ci(5, 0)


# --- log-likelihood scoring ---------------------------------------------------------------------------------

def test_encode_pair_moves_trailing_space(tiny):
    _, tok = tiny
    assert encode_pair(tok, "Answer: ", "water") == encode_pair(tok, "Answer:", " water")
    with pytest.raises(ValueError, match="context is empty"): encode_pair(tok, "", " water")


@pytest.mark.parametrize("method", ["choice_text", "letter"])
def test_loglik_batched_equals_unbatched_tiny(tiny, questions, method):
    model, tok = tiny
    reqs = [r for q in questions for r in loglik_requests(q, method)]
    want = [reference_loglik(model, tok, c, x) for c, x in reqs]
    for bs in (1, 3, 16):
        np.testing.assert_allclose(loglikelihoods(model, tok, reqs, batch_size=bs, progress=False), want,
                                   atol=1e-4)


@needs_smollm2
def test_loglik_batched_equals_unbatched_smollm2(questions):
    model, tok = M.load_model("smollm2", verbose=False)
    reqs = [r for q in questions for m in ("choice_text", "letter") for r in loglik_requests(q, m)]
    want = [reference_loglik(model, tok, c, x) for c, x in reqs]
    np.testing.assert_allclose(loglikelihoods(model, tok, reqs, batch_size=5, progress=False), want,
                               atol=1e-4)


def test_loglik_accuracy_record(tiny, questions):
    model, tok = tiny
    res = loglik_accuracy(model, tok, questions, method="choice_text", progress=False)
    assert res.kind == "loglik_choice_text" and res.n == 3 and res.accuracy_norm is not None
    assert [r["qid"] for r in res.rows] == [q.id for q in questions]
    assert all(len(r["logliks"]) == len(q.choices) for r, q in zip(res.rows, questions))
    assert EvalResult.from_dict(json.loads(json.dumps(res.to_dict()))) == res
    letter = loglik_accuracy(model, tok, questions, method="letter", progress=False)
    assert letter.accuracy_norm is None and "acc_norm" not in letter._repr_markdown_()
    with pytest.raises(ValueError, match="is not one of"):
        loglik_accuracy(model, tok, questions, method="letters")
    with pytest.raises(ValueError, match="No questions"): loglik_accuracy(model, tok, [])


# --- chain-of-thought scoring -------------------------------------------------------------------------------

def _q(i, answer="B"):
    return make_question(str(i), "Which is a metal?", "ABCD", ["wood", "iron", "glass", "salt"], answer,
                         "arc_easy", "toy")


def test_unparsable_outputs_counted_never_raise():
    texts = [None, "", "The answer is (Z).", "x" * 100_000, "\x00\ufffd", 42, "answer: b",
             "The answer is (B)."]
    outs = [NS(text=t, n_tokens=3) for t in texts]
    res = score_cot([_q(i) for i in range(len(texts))], outs)
    parsed = [r["parsed"] for r in res.rows]
    assert parsed[:6] == [None] * 6 and parsed[6:] == ["B", "B"]
    assert res.n_unparsable == 6
    assert (res.accuracy, res.accuracy_strict) == (0.25, 0.125)
    assert "unparsable | 6 / 8" in res._repr_markdown_()
    json.dumps(res.to_dict())


def test_strict_and_flexible_reported_apart():
    outs = [NS(text="The answer is (B).", n_tokens=4), NS(text="So the answer: B", n_tokens=6),
            NS(text="The answer is (A). But maybe (B)", n_tokens=8)]
    res = score_cot([_q(i) for i in range(3)], outs)
    assert ([(r["parsed"], r["strict"], r["correct"]) for r in res.rows]
            == [("B", True, True), ("B", False, True), ("A", True, False)])
    assert (res.accuracy == pytest.approx(2 / 3) and res.accuracy_strict == pytest.approx(1 / 3)
            and res.mean_tokens == 6)
    with pytest.raises(ValueError, match="one per question"): score_cot([_q(0)], outs)


def test_cut_outputs_counted():
    """An output that ran into the cap without an answer statement is cut; one that stated its answer, or
    stopped early, is not."""
    from em_tutorial.evaluate import is_cut, cut_share
    outs = [NS(text="Iron conducts. The answer is (B).", n_tokens=6), NS(text="First, iron is a", n_tokens=6),
            NS(text="So the answer: B", n_tokens=6), NS(text="I am not sure.", n_tokens=4)]
    res = score_cot([_q(i) for i in range(4)], outs, max_new_tokens=6)
    # a flexible parse at the cap is still cut
    assert [r["cut"] for r in res.rows] == [False, True, True, False]
    assert res.cut_share == 0.5 and "cut at the token cap, no answer | 2 / 4" in res._repr_markdown_()
    assert score_cot([_q(0)], outs[:1]).cut_share is None   # the cap unknown: not counted
    assert (is_cut(None, 6, 6), cut_share([], 6)) == (True, None)
    # a metrics.json written before the field
    old = {k: v for k, v in res.summary().items() if k != "cut_share"}
    assert EvalResult.from_dict(old).cut_share is None


def test_evaluate_cot_on_noise_model(tiny, questions):
    model, tok = tiny
    res = evaluate_cot(model, tok, questions, max_new_tokens=6, progress=False)
    assert res.n == 3 and res.n_unparsable == sum(r["parsed"] is None for r in res.rows)
    assert all(0 < r["n_tokens"] <= 6 for r in res.rows)
    assert res.accuracy_ci[0] <= res.accuracy <= res.accuracy_ci[1]
    from em_tutorial.data import answer_stated
    assert (res.cut_share == sum(r["cut"] for r in res.rows) / 3
            == sum(r["n_tokens"] == 6 and not answer_stated(r["text"]) for r in res.rows) / 3)
    # a resumed evaluation: completions already made are scored, not made again; new ones are handed over
    from em_tutorial.generate import Completion
    made = {r["qid"]: Completion(r["text"], r["n_tokens"]) for r in res.rows[:2]}
    handed = []
    again = evaluate_cot(model, tok, questions, max_new_tokens=6, progress=False, done=made,
                         on_completion=lambda q, c: handed.append((q.id, c.text)))
    assert handed == [(res.rows[2]["qid"], res.rows[2]["text"])] and again.rows == res.rows


# --- run folders --------------------------------------------------------------------------------------------

def _tiny_run(tmp_path, tiny):
    model, tok = tiny
    folder = tmp_path/"tiny"; model.save_pretrained(folder); tok.save_pretrained(folder)
    run = tmp_path/"run"; run.mkdir()
    (run/"config.json").write_text(json.dumps({"model": str(folder), "dataset": "arc_easy",
                                               "quantize": "none", "eval_split": "validation",
                                               "max_new_tokens": 4}))
    mark_step(run/"round_0", "evaluated", {})
    fresh, _ = M.load_model(str(folder), verbose=False)
    lora = add_lora(fresh, r=2, verbose=False)
    for k in (1, 2):
        lora.save_pretrained(run/f"round_{k}"/"adapter")
        (run/f"round_{k}"/"metrics.json").write_text("{}")     # both have metrics, but
        if k == 1: mark_step(run/f"round_{k}", "evaluated", {})  # only round 1 was marked finished
    return run


def test_evaluate_run(tmp_path, tiny, questions):
    run = _tiny_run(tmp_path, tiny)
    # round 2 has an adapter and metrics.json but no marker: not finished
    assert finished_rounds(run) == [1]
    res = evaluate_run(run, n=3, seed=1, method="letter", progress=False)
    assert (res.info["round"], res.info["adapter"], res.n) == (1, "round_1", 3)
    base = evaluate_run(run, round=0, n=3, seed=1, method="letter", progress=False)
    assert base.info["adapter"] is None
    # a fresh LoRA adapter computes the base model exactly
    np.testing.assert_allclose([x for r in res.rows for x in r["logliks"]],
                               [x for r in base.rows for x in r["logliks"]], atol=1e-3)
    cot = evaluate_run(run, n=2, method="cot", progress=False)
    assert cot.kind == "cot" and cot.info["max_new_tokens"] == 4
    with pytest.raises(ValueError, match="Round 2 .* is not finished"): evaluate_run(run, round=2)
    with pytest.raises(ValueError, match="method="): evaluate_run(run, method="greedy")
    with pytest.raises(FileNotFoundError, match="config.json"): evaluate_run(tmp_path/"nope")


def test_evaluate_run_uses_the_base_model_the_run_trained(tmp_path):
    """A tiny run with seed 3: evaluate_run must rebuild the same random base model the run used (it once
    used seed 0)."""
    import warnings
    from em_tutorial.em import EMConfig, run_em
    cfg = EMConfig(model="tiny-llama", seed=3, rounds=1, n_train=2, n_eval=3, budget=1, max_new_tokens=6,
                   chunk_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_em(cfg, tmp_path/"run", progress=False)
        res = evaluate_run(tmp_path/"run", round=1, n=cfg.n_eval, seed=cfg.seed, progress=False)
    recorded = {r["qid"]: r["text"]
                for r in map(json.loads, (tmp_path/"run"/"round_1"/"eval.jsonl").read_text().splitlines())}
    assert {r["qid"]: r["text"] for r in res.rows} == recorded
    # every round records the collapse diagnostics and the same model's answer-only accuracy
    m = json.loads((tmp_path/"run"/"round_1"/"metrics.json").read_text())
    assert (sum(m["eval"]["diagnostics"]["predicted"].values()) == cfg.n_eval
            and 0 <= m["answer_only"]["accuracy"] <= 1)
    header = (tmp_path/"run"/"metrics.csv").read_text().splitlines()[0].split(",")
    assert ({"answer_only_accuracy", "rationale_tokens", "early_answer_share", "top_letter_share"}
            <= set(header))



class _Stop(Exception):
    "Raised by the stand-ins below once evaluate_run has shown what it would load."


def _what_evaluate_run_loads(monkeypatch, run, method="letter", **kw):
    "The arguments evaluate_run passes to load_questions, load_model and evaluate_cot (no model is built)."
    import em_tutorial.em as E
    seen = {}
    def questions(dataset, split, **k): seen["questions"] = dict(dataset=dataset, split=split, **k); return []
    def model(name, **k):
        seen["model"] = dict(name=name, **k)
        if method != "cot": raise _Stop
        return None, None
    def cot(model, tok, qs, **k): seen["cot"] = k; raise _Stop
    monkeypatch.setattr(E, "load_questions", questions)
    monkeypatch.setattr(E, "load_model", model)
    monkeypatch.setattr(E, "evaluate_cot", cot)
    with pytest.raises(_Stop): evaluate_run(run, method=method, **kw)
    return seen


def test_evaluate_run_reads_the_config_as_an_emconfig(tmp_path, monkeypatch):
    """A config.json that names only the model: every other field is EMConfig's default (quantize 'auto',
    not 'none'), but the hinted prompt of the folders written before `hint_style` existed."""
    from em_tutorial.em import EMConfig
    d = EMConfig()
    run = tmp_path/"run"; run.mkdir()
    (run/"config.json").write_text(json.dumps({"model": "tiny-llama"}))
    seen = _what_evaluate_run_loads(monkeypatch, run, method="cot")
    assert (seen["model"] == dict(name="tiny-llama", adapter=None, quantize=d.quantize)
            and d.quantize == "auto")
    assert seen["questions"] == dict(dataset=d.dataset, split=d.eval_split, source=d.source, n=None, seed=0,
                                     instruction=d.instruction, hint_style="legacy")
    assert seen["cot"]["max_new_tokens"] == d.max_new_tokens
    # a run's own fields win, and the arguments win over them
    cfg = EMConfig(model="tiny-qwen2", dataset="openbookqa", source="hub", quantize="none", eval_split="test",
                   instruction="brief", max_new_tokens=7)
    (run/"config.json").write_text(json.dumps(cfg.to_dict()))
    seen = _what_evaluate_run_loads(monkeypatch, run, method="cot")
    assert seen["model"] == dict(name="tiny-qwen2", adapter=None, quantize="none")
    assert seen["questions"] == dict(dataset="openbookqa", split="test", source="hub", n=None, seed=0,
                                     instruction="brief", hint_style=cfg.hint_style)
    assert seen["cot"]["max_new_tokens"] == 7
    seen = _what_evaluate_run_loads(monkeypatch, run, method="cot", split="validation", source="local",
                                    max_new_tokens=9, model_kwargs={"quantize": "4bit"})
    assert (seen["questions"]["split"], seen["questions"]["source"], seen["model"]["quantize"],
            seen["cot"]["max_new_tokens"]) == ("validation", "local", "4bit", 9)


def test_evaluate_run_checks_the_config_as_run_em_does(tmp_path, monkeypatch):
    """An unknown or invalid field is an error naming the file, as in run_em; a folder that predates fields
    still loads."""
    import shutil
    from pathlib import Path
    run = tmp_path/"run"; run.mkdir()
    (run/"config.json").write_text(json.dumps({"model": "tiny-llama", "no_such_field": 1}))
    with pytest.raises(ValueError, match=r"config\.json: Unknown EMConfig field\(s\) no_such_field"):
        _what_evaluate_run_loads(monkeypatch, run)
    (run/"config.json").write_text(json.dumps({"model": "tiny-llama", "quantize": "8bit"}))
    with pytest.raises(ValueError, match="quantize='8bit' is not valid"):
        _what_evaluate_run_loads(monkeypatch, run)
    old = tmp_path/"old_run"   # written before `instruction` and `objective_k/_n` existed
    shutil.copytree(Path(__file__).parent/"fixtures"/"old_run", old)
    assert "instruction" not in json.loads((old/"config.json").read_text())
    seen = _what_evaluate_run_loads(monkeypatch, old, round=0)
    assert seen["model"] == dict(name="tiny-llama", adapter=None, quantize="auto")
    assert seen["questions"]["instruction"] == "step" and seen["questions"]["split"] == "validation"


def test_recorded_run_configs_still_load():
    """Every config.json of the recorded runs in results/ reads as an EMConfig (what evaluate_run and
    run_em do)."""
    from pathlib import Path
    from em_tutorial.em import EMConfig
    from em_tutorial.runs import read_config
    found = sorted((Path(__file__).parent.parent/"results").rglob("config.json"))
    if not found: pytest.skip("no recorded runs in results/")
    for p in found: EMConfig.from_dict(read_config(p.parent))

def test_collapse_stats():
    from em_tutorial.evaluate import collapse_stats
    tok = M.tiny_model("llama")[1]
    rows = [dict(gold="A", parsed="B", text="The answer is (B)."),
            dict(gold="B", parsed=None, text="Plants make sugar."),
            dict(gold="C", parsed="C",
                 text="Ice is the solid form of water; it melts when it gets warm. The answer is (C).")]
    d = collapse_stats(rows, tok)
    assert d["predicted"] == {"B": 1, "C": 1, "none": 1} and d["gold"] == {"A": 1, "B": 1, "C": 1}
    # only the bare statement; "none" never counts
    assert d["early_answer_share"] == pytest.approx(1 / 3)
    n = [len(tok(t, add_special_tokens=False)["input_ids"])
         for t in ("", "Plants make sugar.", "Ice is the solid form of water; it melts when it gets warm. ")]
    assert d["mean_rationale_tokens"] == pytest.approx(np.mean(n))


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    a, b = rng.random(150) < 0.3, rng.random(150) < 0.6
    diff, lo, hi = paired_bootstrap(a, b, n_boot=4000)
    assert diff == pytest.approx(b.mean() - a.mean()) and lo < diff < hi and lo > 0
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    # the reference: resample question indices one row at a time
    idx = np.random.default_rng(0).integers(0, 150, size=(4000, 150))
    ref = [(b[i].astype(float) - a[i]).mean() for i in idx]
    assert (lo, hi) == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])))
    with pytest.raises(ValueError, match="equal length"): paired_bootstrap([1, 0, 1], [1, 0])


def test_one_grading_policy_for_the_e_step_and_evaluation():
    """A rationale that only names the text of the right choice is not an answer: neither accepted nor
    counted correct."""
    from em_tutorial.generate import Completion
    from em_tutorial.samplers import make_trace
    q = make_question("Mercury_1", "Which is a metal?", ["A", "B", "C"], ["wood", "iron", "glass"], "B",
                      "arc_easy", "train")
    tok = M.tiny_model("llama")[1]
    for text, correct in [("Iron conducts electricity, so it is iron.", False),
                          ("Iron conducts. The answer is (B).", True),
                          ("Iron conducts, so the answer is B", True)]:
        trace = make_trace(q, tok, Completion(text, 5), hinted=False, tries=1, tokens=5)
        scored = score_cot([q], [Completion(text, 5)]).rows[0]
        assert trace.correct == trace.accepted == scored["correct"] == correct, text
