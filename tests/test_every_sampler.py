"""Every sampler, end to end, on the real SmolLM2: one EM round on the bundled ARC-Easy
sample and on `arithmetic`, and scoring of rationales whose lengths differ by more than a prompt (what crashed
PPS and PPS-IW on ARC)."""
import json
import pytest, torch

import em_tutorial.models as M
from em_tutorial.data import load_questions
from em_tutorial.em import EMConfig, run_em
from em_tutorial.samplers import SAMPLERS
from em_tutorial.scoring import score_traces

from conftest import needs_smollm2
pytestmark = needs_smollm2
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def smollm2():
    return M.load_model("smollm2", verbose=False)


def test_scoring_rationales_of_very_different_lengths(smollm2):
    """One long rationale among short ones: prefill pieces narrower than the longest continuation must
    still join."""
    model, tok = smollm2
    qs = load_questions("arc_easy", "train", n=6)
    long = " ".join(["The question asks which choice is right, so I look at each choice in turn "
                     "and weigh it."] * 12)
    texts = [long + " The answer is (A).", *["The answer is (B)."] * 5]
    assert len(tok(long)["input_ids"]) > 2 * max(len(tok(q.question)["input_ids"]) for q in qs) + 100
    together = score_traces(model, tok, qs, texts, batch_size=16)
    alone = [score_traces(model, tok, [q], [t], batch_size=1)[0] for q, t in zip(qs, texts)]
    for a, b in zip(together, alone):
        assert a["n_rationale_tokens"] == b["n_rationale_tokens"]
        for k in ("logp_rationale", "logq_rationale", "logp_answer"):
            assert a[k] == pytest.approx(b[k], abs=2e-3)


@pytest.mark.parametrize("dataset", ["arc_easy", "arithmetic"])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_one_round_of_every_sampler(tmp_path, dataset, sampler):
    config = EMConfig(sampler=sampler, dataset=dataset, quantize="none", rounds=1, n_train=4, n_eval=4,
                      budget=2, max_new_tokens=48, warmup_ratio=0.0, chunk_size=4)
    rows = run_em(config, tmp_path/"run", progress=False)
    assert [r["round"] for r in rows] == [0, 1]
    traces = [json.loads(l) for l in (tmp_path/"run"/"round_1"/"traces.jsonl").read_text().splitlines()]
    assert sorted(t["qid"] for t in traces) == sorted(q.id for q in load_questions(dataset, "train", n=4))
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    for t in traces:
        # every accepted trace scored
        if t["accepted"] and sampler != "rejection": assert t["logp_rationale"] is not None
