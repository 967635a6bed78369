"""Tests for em_tutorial.dependence: cut points, mistake sites and insertions (pure text), the
forced-answer readout, the summary, run folders, and SmolLM2 on arithmetic."""
import json

import pytest
import torch

import em_tutorial.dependence as D
import em_tutorial.models as M
from em_tutorial.core import write_jsonl
from em_tutorial.data import load_questions, make_question, build_prompt
from em_tutorial.dependence import (FRACTIONS, Site, answer_opener, cut_points, dependence_of_run,
                                    forced_answers, insert_mistake, mistake_site, rationale_dependence,
                                    summarise_dependence)
from em_tutorial.evaluate import encode_pair, evaluate_cot
from conftest import needs_smollm2

torch.set_num_threads(1)   # a busy 2-core machine: two threads fight each other and everything else


@pytest.fixture(scope="module")
def arith():
    return load_questions("arithmetic", "validation", n=3, seed=1)


@pytest.fixture(scope="module")
def ice():
    return make_question("ice", "Which word best describes the physical state of an ice cube?", "ABCD",
                         ["gas", "solid", "liquid", "plasma"], "B", "arc_easy", "validation")


def worked(q):
    "A rationale that writes `q`'s solution, then the answer statement."
    return f"{q.fact}. The answer is {q.answer_text}."


# --- pure text ----------------------------------------------------------------------------------------------

def test_answer_opener(arith, ice):
    assert answer_opener(arith[0]) == "The answer is"
    assert answer_opener(ice) == "The answer is ("


def test_cut_points_are_token_prefixes(tiny):
    _, tok = tiny
    z = "Plants use sunlight, water and carbon dioxide to make sugar."
    T = len(tok(z, add_special_tokens=False)["input_ids"])
    cuts = cut_points(z, tok)
    assert [k for k, _ in cuts] == [int(f * T) for f in FRACTIONS]
    assert cuts[0] == (0, 0) and cuts[-1] == (T, len(z))
    assert [c for _, c in cuts] == sorted(c for _, c in cuts)
    for k, c in cuts[1:]:                                  # the cut text is the text of the first k tokens
        assert tok.decode(tok(z, add_special_tokens=False)["input_ids"][:k]) == z[:c]
    assert cut_points("", tok) == [(0, 0)] * len(FRACTIONS)


def test_mistake_site_arithmetic(arith):
    q = arith[0]
    z = "First 2 + 3 = 5, then 5 + 4 = 9. So it is 9"
    # the last equation, not the last 9
    assert mistake_site(q, z) == Site(z.index("= 9") + 2, z.index("= 9") + 3, "9")
    assert mistake_site(q, "Two plus three.") is None
    assert mistake_site(q, worked(q)).original == q.answer_text


def test_mistake_site_arc(ice):
    copied = "A) gas\nB) solid\nC) liquid\nD) plasma"
    assert mistake_site(ice, copied) is None                           # a copied list names nothing
    z = copied + "\n\nThe correct answer is (B) solid. Ice is cold."
    assert mistake_site(ice, z) == Site(z.index("(B)"), z.index("solid.") + 5, "B")
    z = "Ice is frozen water, so D) is wrong and the answer is C)"
    assert mistake_site(ice, z) == Site(len(z) - 2, len(z), "C")       # the last mention, without a text
    # no label of this question
    assert mistake_site(ice, "Ice (solid water, not DNA) is option E) here.") is None


def test_insert_mistake(arith, ice):
    q = arith[0]
    z = worked(q)
    wrong = next(i for i, c in enumerate(q.choices) if c != q.answer_text)
    assert (insert_mistake(q, z, mistake_site(q, z), wrong)
            == q.fact.rsplit("=", 1)[0] + "= " + q.choices[wrong])
    z = "So the correct answer is (B) solid because it keeps its shape."
    assert insert_mistake(ice, z, mistake_site(ice, z), 2) == "So the correct answer is (C) liquid"
    z = "So the answer must be B), as ice is hard."
    assert insert_mistake(ice, z, mistake_site(ice, z), 0) == "So the answer must be A)"


# --- the readout and the test on a tiny random model --------------------------------------------------------

def test_forced_letter_is_the_likeliest_label(tiny, ice):
    model, tok = tiny
    leads = ["", "Ice keeps its shape. ", "Ice keeps its shape. "]
    said = forced_answers(model, tok, ice, leads)
    assert len(said) == 3 and said[1] == said[2]
    for lead, s in zip(leads, said):
        ctx = build_prompt(ice, tok) + lead + answer_opener(ice)
        ids, _ = encode_pair(tok, ctx, "A")
        with torch.inference_mode(): logp = model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
        letter = max(ice.labels, key=lambda l: logp[encode_pair(tok, ctx, l)[1][0]].item())
        assert s == f"The answer is ({letter})."


def test_rationale_dependence_shapes(tiny, arith, ice):
    model, tok = tiny
    qs = [*arith, ice]
    texts = [worked(q) for q in arith] + ["A) gas\nB) solid\n\n"
                                          "The correct answer is (B) solid. The answer is (B)."]
    out = rationale_dependence(model, tok, qs, texts, progress=False)
    assert out == rationale_dependence(model, tok, qs, texts, progress=False)         # greedy: deterministic
    rows, s = out["rows"], out["summary"]
    assert [r["qid"] for r in rows] == [q.id for q in qs]
    for _q, r in zip(qs, rows):
        assert len(r["cuts"]) == len(r["answers"]) == len(r["changed"]) == len(FRACTIONS)
        assert r["changed"][-1] is False and r["cuts"][0] == 0
        assert r["mistake"] is not None and len(r["mistake"]["inserted"]) == len(r["mistake"]["answers"]) == 3
        assert r["mistake"]["original"] not in r["mistake"]["inserted"]
    assert rows[-1]["mistake"]["original"] == "B" and rows[-1]["mistake"]["inserted"] == ["A", "C", "D"]
    assert s["n"] == 4 and s["mistake_applicable"] == 4 and 0 <= s["aoc"] <= 1 and s["changed"][-1] == 0


def test_rationale_dependence_rejects_bad_input(tiny, arith):
    model, tok = tiny
    with pytest.raises(ValueError, match="one text per question"):
        rationale_dependence(model, tok, arith, ["x"])
    for bad in [(0, 0.5), (0.5, 0.25, 1), (-0.5, 1), ()]:
        with pytest.raises(ValueError, match="end at 1"):
            rationale_dependence(model, tok, arith[:1], ["x"], fractions=bad)


def test_summarise_dependence_definitions():
    mk = lambda changed, noise, mistake: dict(gold="A", stated="A", full="A", n_tokens=4, changed=changed,
                                              noise=noise, mistake=mistake)
    rows = [mk([True, True, False, False, False], False,
               dict(control="A", inserted=["B", "C", "A"], answers=["B", "A", "A"])),
            mk([True, False, False, False, False], True, None)]
    s = summarise_dependence(rows)
    assert s["changed"] == [1.0, 0.5, 0.0, 0.0, 0.0]
    assert s["aoc"] == pytest.approx(0.25 * (1.0 + 0.5))                # the step curve's area on [0, 1)
    assert s["noise_floor"] == 0.5 and s["mistake_applicable"] == 1 and s["mistake_applicable_share"] == 0.5
    assert s["mistake_insertions"] == 2          # 'A' equals the control's answer: left out
    assert s["mistake_followed"] == 0.5 and s["mistake_stayed"] == 0.5


# --- run folders --------------------------------------------------------------------------------------------

def _run(tmp_path, qs, texts, dataset="arithmetic"):
    (tmp_path/"round_0").mkdir(parents=True)
    (tmp_path/"config.json").write_text(json.dumps(dict(model="tiny-llama", dataset=dataset,
                                                        eval_split="validation")))
    rows = [dict(qid=q.id, gold=q.answer, parsed=None, strict=False, correct=False, n_tokens=1, text=t)
            for q, t in zip(qs, texts)]
    write_jsonl(tmp_path/"round_0"/"eval.jsonl", rows)
    return tmp_path


def test_dependence_of_run_writes_then_reads(tmp_path, arith, monkeypatch):
    qs = load_questions("arithmetic", "validation")[:2]
    run = _run(tmp_path, qs, [worked(q) for q in qs])
    first = dependence_of_run(run, 0, progress=False)
    assert ((run/"round_0"/D.DEPENDENCE_FILE).is_file() and first["info"]["round"] == 0
            and first["summary"]["n"] == 2)
    monkeypatch.setattr(D, "load_model",
                        lambda *a, **k: pytest.fail("the recorded file should be read, not recomputed"))
    assert dependence_of_run(run, 0) == json.loads(json.dumps(first))


def test_dependence_of_run_errors(tmp_path):
    qs = load_questions("arithmetic", "validation")[:2]
    run = _run(tmp_path/"a", qs, ["x", "y"])
    (run/"round_1").mkdir(); (run/"round_1"/"eval.jsonl").write_text((run/"round_0"/"eval.jsonl").read_text())
    with pytest.raises(FileNotFoundError, match="adapters are not committed"): dependence_of_run(run, 1)
    with pytest.raises(FileNotFoundError, match="does not exist"): dependence_of_run(run, 2)
    lines = (run/"round_0"/"eval.jsonl").read_text().splitlines()
    bad = json.loads(lines[0]); bad["gold"] = next(l for l in "ABCD" if l != bad["gold"])
    (run/"round_0"/"eval.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="the dataset changed since the run"): dependence_of_run(run, 0)


def test_run_layout_is_the_one_runs_writes():
    "dependence (07b) may not import runs (08); the file names it reads must still be the ones runs writes."
    from em_tutorial.runs import ADAPTER_DIR, CONFIG_FILE, EVAL_FILE, round_dir
    assert D._RUN_FILES == dict(config=CONFIG_FILE, round=round_dir("", 7).name.replace("7", "{k}"),
                                eval=EVAL_FILE, adapter=ADAPTER_DIR)


# --- the real model -----------------------------------------------------------------------------------------

@needs_smollm2
def test_smollm2_arithmetic_reads_its_own_answer():
    """On 4 arithmetic problems: after the whole rationale the forced answer is the one SmolLM2 stated;
    every rationale writes a sum."""
    model, tok = M.load_model("smollm2", verbose=False)
    qs = load_questions("arithmetic", "validation", n=4, seed=3)
    ev = evaluate_cot(model, tok, qs, max_new_tokens=48, progress=False)
    out = rationale_dependence(model, tok, qs, [r["text"] for r in ev.rows], progress=False)
    s = out["summary"]
    assert s["agrees_with_stated"] >= 0.75 and s["mistake_applicable"] >= 3, (s, [r["text"] for r in ev.rows])
    assert s["n"] == 4 and s["changed"][-1] == 0 and len(out["rows"]) == 4
