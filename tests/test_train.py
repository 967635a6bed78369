"""Tests for em_tutorial.mstep and em_tutorial.em: the M-step loss, train_mstep, EMConfig validation,
zero-accepted rounds, run folders."""
import json, warnings

import pytest
import torch

from em_tutorial.data import load_questions, build_prompt
from em_tutorial.models import tiny_model, add_lora
from em_tutorial.samplers import Trace
from em_tutorial.mstep import (IGNORE_INDEX, end_of_turn, mstep_loss, read_train_log, sft_collate,
                               sft_example, trace_target, train_mstep)
from em_tutorial.em import EMConfig, run_em


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return tiny_model("llama", seed=0)


def _traces(tok, n=3, accepted=True):
    qs = load_questions("arc_easy", "train", n=n, seed=1)
    out = []
    for i, q in enumerate(qs):
        p = build_prompt(q, tok)
        rationale = "Plants use sunlight to make sugar." + (f" The answer is ({q.answer})." if i % 2 else "")
        out.append(Trace(qid=q.id, prompt=p, hinted=False, rationale=rationale, answer=q.answer,
                         correct=accepted, accepted=accepted, tries=1, tokens=0, train_prompt=p,
                         restates_hint=False))
    return out


def test_target_and_labels(tiny):
    model, tok = tiny
    t = _traces(tok)
    assert (trace_target(t[0]).endswith(f"The answer is ({t[0].answer}).")
            and trace_target(t[0]).count("The answer is") == 1)
    assert trace_target(t[1]).count("The answer is") == 1
    ex = sft_example(tok, t[0])
    n_prompt = ex["labels"].count(IGNORE_INDEX)
    assert n_prompt == len(tok(t[0].train_prompt, add_special_tokens=False)["input_ids"])
    assert tok.decode(ex["labels"][n_prompt:]).endswith(end_of_turn(tok))
    assert len(sft_example(tok, t[0], max_len=10)["input_ids"]) == 10
    batch = sft_collate([sft_example(tok, x) for x in t], tok.pad_token_id)
    pad = batch["attention_mask"] == 0
    assert pad.any() and (batch["labels"][pad] == IGNORE_INDEX).all()


def test_mstep_loss_equals_model_loss(tiny):
    model, tok = tiny
    batch = sft_collate([sft_example(tok, x) for x in _traces(tok)], tok.pad_token_id)
    with torch.no_grad():
        ours, hf = mstep_loss(model, batch).item(), model(**batch).loss.item()
    assert abs(ours - hf) < 1e-5, (ours, hf)


def test_train_mstep_logs_saves_and_is_deterministic(tiny, tmp_path):
    def train(folder):
        model, tok = tiny_model("llama", seed=0)
        torch.manual_seed(0)
        pm = add_lora(model, verbose=False)
        stats = train_mstep(pm, tok, _traces(tok, n=4), folder/"adapter", epochs=2, lr=1e-2, batch_size=2,
                            grad_accum=1, log_csv=folder/"log.csv", seed=5)
        return stats, {k: v.clone() for k, v in pm.state_dict().items() if "lora" in k}
    s1, w1 = train(tmp_path/"a")
    s2, w2 = train(tmp_path/"b")
    assert s1["steps"] == 4 and s1["n_examples"] == 4
    assert (tmp_path/"a"/"adapter"/"adapter_model.safetensors").exists()
    assert not list((tmp_path/"a").glob(".*"))                      # no temporary folders left
    log = read_train_log(tmp_path/"a"/"log.csv")
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(r["lr"] is not None for r in log)
    assert all(torch.equal(w1[k], w2[k]) for k in w1) and s1["last_loss"] == s2["last_loss"]


def test_zero_accepted_warns_and_skips(tiny, tmp_path):
    model, tok = tiny
    with pytest.warns(UserWarning, match="No accepted traces"):
        assert train_mstep(model, tok, _traces(tok, accepted=False), tmp_path/"adapter") is None
    assert not (tmp_path/"adapter").exists()


def test_zero_accepted_round_keeps_the_policy(tmp_path):
    """A random model's samples are never right: each round warns, skips the M-step and saves the unchanged
    adapter."""
    from safetensors.torch import load_file
    cfg = EMConfig(model="tiny-llama", rounds=2, n_train=2, n_eval=2, budget=1, max_new_tokens=4,
                   chunk_size=2)
    with pytest.warns(UserWarning, match="No accepted traces"):
        rows = run_em(cfg, tmp_path/"run", progress=False)
    assert [r["round"] for r in rows] == [0, 1, 2] and [r["n_accepted"] for r in rows[1:]] == [0, 0]
    a1, a2 = (load_file(str(tmp_path/"run"/f"round_{k}"/"adapter"/"adapter_model.safetensors"))
              for k in (1, 2))
    assert all(torch.equal(a1[k], a2[k]) for k in a1)
    m = json.loads((tmp_path/"run"/"round_1"/"metrics.json").read_text())
    assert m["train"] is None and m["n_sampled"] == 2


@pytest.mark.parametrize("bad, needle", [
    (dict(sampler="reinforce"), "choose one of: rejection, star, pps"),
    (dict(dataset="gsm8k"), "choose one of: arc_easy, arc_challenge, openbookqa, mmlu"),
    (dict(quantize="8bit"), "choose one of: auto, 4bit, none"),
    (dict(eval_split="dev2"), "choose one of: train, validation, test"),
    (dict(model="tiny-gpt2"), "choose one of: tiny-llama, tiny-qwen2"),
    (dict(rounds=0), "rounds=0 must be a positive integer"),
    (dict(budget=1.5), "budget=1.5 must be a positive integer"),
    (dict(temperature=0), "temperature=0 must be > 0"),
    (dict(top_p=1.5), "top_p=1.5 must be in (0, 1]"),
    (dict(lora_dropout=1), "lora_dropout=1 must be in [0, 1)"),
    (dict(lr=0), "lr=0 must be positive"),
    (dict(scheduler="step"), "choose one of: cosine, linear, constant, constant_with_warmup"),
    (dict(continue_adapter="yes"), "must be True or False"),
])
def test_config_validation(bad, needle):
    with pytest.raises(ValueError, match=None) as e: EMConfig(**bad)
    msg = str(e.value)
    assert needle in msg and msg.count(".") >= 1 and "\n" not in msg, msg


def test_config_round_trip_and_unknown_keys():
    c = EMConfig(sampler="pps", rounds=2, continue_adapter=False)
    assert EMConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match="learning_rate"): EMConfig.from_dict({"learning_rate": 1e-4})


def test_run_dir_with_other_config_is_refused(tmp_path):
    run = tmp_path/"run"
    cfg = EMConfig(model="tiny-llama", rounds=1, n_train=2, n_eval=2, budget=1, max_new_tokens=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_em(cfg, run, progress=False)
        other = EMConfig(**{**cfg.to_dict(), "lr": 1e-3, "rounds": 2})
        with pytest.raises(ValueError, match="differing keys: lr, rounds"): run_em(other, run, progress=False)
        rows = run_em(other, run, overwrite=True, progress=False)
    assert len(rows) == 3 and json.loads((run/"config.json").read_text())["lr"] == 1e-3
    (tmp_path/"junk").mkdir(); (tmp_path/"junk"/"x.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no config.json"): run_em(cfg, tmp_path/"junk", progress=False)


def test_manifest_and_metrics_csv(tmp_path):
    cfg = EMConfig(model="tiny-llama", rounds=1, n_train=2, n_eval=2, budget=1, max_new_tokens=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_em(cfg, tmp_path/"run", progress=False)
    m = json.loads((tmp_path/"run"/"manifest.json").read_text())
    assert ({"torch", "transformers", "peft", "em_tutorial", "python"} <= set(m["versions"])
            and m["seed"] == 0 and m["started"])
    lines = (tmp_path/"run"/"metrics.csv").read_text().splitlines()
    assert lines[0].startswith("round,accuracy") and len(lines) == 3
    assert {"eval_cut_share", "sample_cut_share"} <= set(lines[0].split(","))
    m1 = json.loads((tmp_path/"run"/"round_1"/"metrics.json").read_text())
    assert 0 <= m1["sample_cut_share"] <= 1 and 0 <= m1["eval"]["cut_share"] <= 1


def test_training_questions_are_the_same_every_round(tmp_path):
    "EM maximises one sum over a fixed training set: every round samples rationales for the same questions."
    cfg = EMConfig(model="tiny-llama", rounds=2, n_train=3, n_eval=2, budget=1, max_new_tokens=4,
                   chunk_size=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_em(cfg, tmp_path/"run", progress=False)
    qids = [[json.loads(l)["qid"]
             for l in (tmp_path/"run"/f"round_{k}"/"traces.jsonl").read_text().splitlines()]
            for k in (1, 2)]
    assert qids[0] == qids[1] and len(set(qids[0])) == 3
