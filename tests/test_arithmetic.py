"""The generated arithmetic task: right answers, a choice set that gives nothing away, difficulty,
determinism, faithfulness, grading."""
import hashlib, json, re, subprocess, sys
import pytest

from em_tutorial.arithmetic import (CHOICE_PATTERN, CHOICE_RULES, arithmetic_problems, arithmetic_difficulty,
                                    choices_only_accuracy, equations, faithful, is_arithmetic,
                                    learned_choice_rule, near_misses, steps_of)
from em_tutorial.data import (answer_stated, build_prompt, grade, hint_sentence, load_questions,
                              make_question, truncate_after_answer)
import em_tutorial.models as M

from conftest import needs_smollm2


def _value(stem):
    toks = stem.removeprefix("What is ").rstrip("?").split()
    v = int(toks[0])
    for op, b in zip(toks[1::2], toks[2::2]): v = v + int(b) if op == "+" else v - int(b)
    return v


@pytest.mark.parametrize("name,steps,digits", [("arithmetic", 1, 2), ("arithmetic-2step-1digit-mixed", 2, 1),
                                               ("arithmetic-3step-2digit", 3, 2)])
def test_answers_right_distractors_distinct_and_wrong_difficulty_honoured(name, steps, digits):
    for q in load_questions(name, "validation"):
        nums = [int(x) for x in re.findall(r"\d+", q.question)]
        assert len(nums) == steps + 1 and all(len(str(x)) == digits for x in nums)
        assert int(q.answer_text) == _value(q.question)
        wrong = [int(c) for l, c in zip(q.labels, q.choices) if l != q.answer]
        assert len(set(wrong)) == 3 and _value(q.question) not in wrong and min(wrong) >= 0
        assert q.fact.endswith(f"= {q.answer_text}")
        values = [int(c) for c in q.choices]
        assert [v - values[0] for v in values] == list(CHOICE_PATTERN)


@pytest.mark.parametrize("name", ["arithmetic", "arithmetic-2step-2digit-mixed", "arithmetic-3step-2digit"])
def test_no_choices_only_rule_beats_chance(name):
    """Rank, spacing, parity, digits, and a rule learned from the training split's choices: all within
    chance + 3 points on test."""
    train, test = (arithmetic_problems(s, **arithmetic_difficulty(name)) for s in ("train", "test"))
    assert len(test) == 500
    rules = {**CHOICE_RULES, "learned": learned_choice_rule(train)}
    scores = {rule: choices_only_accuracy(test, f) for rule, f in rules.items()}
    assert max(scores.values()) <= 0.25 + 0.03, scores


def test_the_battery_catches_the_first_versions_shortcut():
    train, test = (arithmetic_problems(s, choices="nearmiss") for s in ("train", "test"))
    assert choices_only_accuracy(test, CHOICE_RULES["most others 1 or 10 away"]) > 0.95
    assert choices_only_accuracy(test, learned_choice_rule(train)) > 0.95


def test_near_misses_are_careless_mistakes():
    import random
    assert sorted(near_misses(46, (("+", 27),), random.Random(0), k=5)) == [19, 63, 72, 74, 83]
    assert steps_of(9, (("-", 4), ("+", 2))) == [(9, "-", 4, 5), (5, "+", 2, 7)]


def _sums(name):
    record = lambda q: {**{k: v for k, v in q.to_dict().items() if k not in ("instruction", "hint_style")},
                        "dataset": "arithmetic"}
    return {s: hashlib.sha256(json.dumps([record(q)
                                          for q in load_questions(name, s)]).encode()).hexdigest()[:16]
            for s in ("train", "validation", "test")}


def test_same_name_same_problems_everywhere():
    "The generator is pinned: these checksums are those of the splits on the machine that wrote the test."
    assert _sums("arithmetic") == {"train": "e61b997c4af4a099", "validation": "15c9d2e6da335eee",
                                   "test": "00bef89109744bad"}


def test_the_first_version_is_reproduced():
    """'arithmetic-nearmiss' gives the problems the first runs were recorded on (the checksums pinned
    before the change)."""
    assert _sums("arithmetic-nearmiss") == {"train": "b21a8b5732da9cad", "validation": "81d63c372e0af19f",
                                            "test": "b3a8f70be953d3e1"}
    assert load_questions("arithmetic-nearmiss", "validation")[0].id == "arithmetic-validation-0000"


def test_splits_are_disjoint_and_letters_balanced():
    stems = {s: {q.question for q in load_questions("arithmetic", s)}
             for s in ("train", "validation", "test")}
    assert (not stems["train"] & stems["validation"] and not stems["train"] & stems["test"]
            and not stems["validation"] & stems["test"])
    from collections import Counter
    letters = Counter(q.answer for q in load_questions("arithmetic", "validation"))
    assert set(letters.values()) == {125}, letters   # 500 problems: 125 quads, each letter once per quad


def test_bad_names_and_splits_are_one_sentence():
    with pytest.raises(ValueError, match="steps must be 1 to 6"): arithmetic_difficulty("arithmetic-7step")
    with pytest.raises(ValueError, match="Unknown dataset"): load_questions("arithmetics")
    with pytest.raises(ValueError, match="Unknown split"): arithmetic_problems("dev")
    assert is_arithmetic("arithmetic-2digit") and not is_arithmetic("mmlu")


def test_faithfulness_on_hand_written_rationales():
    fact = "46 + 27 = 73"
    assert faithful(fact, "46 + 27 = 73. The answer is 73.")
    assert faithful(fact, "Add the tens and the units: 46+27 = 73.")
    assert not faithful(fact, "The answer is 73.")                     # states the number, computes nothing
    assert not faithful(fact, "46 + 27 = 72. The answer is 73.")       # a false equation, right answer
    assert not faithful(fact, "46 + 27 = 73. 73 + 1 = 75.")            # a false extra step
    two = "6 + 3 = 9; 9 - 4 = 5"
    assert faithful(two, "6 + 3 = 9, and 9 − 4 = 5.") and not faithful(two, "6 + 3 = 9. The answer is 5.")
    assert equations("1+2=3 and 10 - 4 = 6") == [(1, "+", 2, 3), (10, "-", 4, 6)]
    assert faithful(fact, "27 + 46 = 73.")                             # a sum in either order
    # in words
    assert faithful(fact, "We add 46 and 27, which equals 73.") and faithful(fact, "46 plus 27 is 73")
    assert not faithful(fact, "We add 46 and 27, which equals 74.")    # in words, and false
    assert not faithful("9 - 4 = 5", "4 - 9 = 5")                        # a difference has an order


def test_numeric_answer_statement_is_graded_by_choice_text():
    q = make_question("x", "What is 46 + 27?", "ABCD", ["63", "73", "72", "83"], "B", "arithmetic",
                      "validation")
    assert grade(q, "46 + 27 = 73. The answer is 73.") == ("B", True)
    assert grade(q, "The answer is 74.") == (None, False)   # no choice is 74: wrong, not an error
    assert grade(q, "The answer is (D).") == ("D", True)
    assert (not answer_stated("The answer is 7") and answer_stated("The answer is 73.")
            and answer_stated("The answer is 73\n"))
    assert truncate_after_answer("The answer is 73. And more.") == "The answer is 73."


@needs_smollm2
def test_prompt_opens_with_a_worked_training_example():
    from transformers import AutoTokenizer
    smollm2_tokenizer = AutoTokenizer.from_pretrained(M.offline_smollm2(verbose=False))
    q = load_questions("arithmetic", "validation")[0]
    p, h = build_prompt(q, smollm2_tokenizer), build_prompt(q, smollm2_tokenizer, hint=True)
    ex = load_questions("arithmetic", "train")[0]
    assert (p.count("<|im_start|>user") == 2 and ex.question in p
            and f"The answer is {ex.answer_text}.<|im_end|>" in p)
    assert p.endswith("<|im_start|>assistant\n") and q.question in p and "correct answer" not in p
    i = p.rindex("Think step by step")
    # the same prompt, one sentence more
    assert h == p[:i] + hint_sentence(q) + "\n\n" + p[i:] and q.answer_text in hint_sentence(q)
    # ARC: unchanged
    assert build_prompt(load_questions("arc_easy")[0], smollm2_tokenizer).count("<|im_start|>user") == 1


def test_cli_data_json():
    code = "import sys; from em_tutorial.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, "data", "arithmetic", "--split", "validation",
                          "--json"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"dataset": "arithmetic", "split": "validation", "n": 500}


def test_compare_on_arithmetic_records_faithfulness_and_seed(tmp_path):
    """Mechanics on a tiny random model: the columns exist; the faithful shares are computed from the run's
    own files."""
    import warnings
    from em_tutorial.experiments import compare, _faithful_share, seed_summary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = compare(tmp_path/"seed3", samplers=("pps",), model="tiny-llama", dataset="arithmetic",
                       rounds=1, n_train=4, n_eval=4, max_new_tokens=8, chunk_size=4, seed=3, progress=False)
    assert [(r["sampler"], r["round"], r["seed"]) for r in rows] == [("base", 0, 3), ("pps", 1, 3)]
    assert all("faithful_rate" in r and "eval_faithful_rate" in r for r in rows)
    facts = {"a": "46 + 27 = 73", "b": "1 + 2 = 3"}
    assert _faithful_share([{"qid": "a", "t": "46 + 27 = 73."}, {"qid": "b", "t": "The answer is 3."}],
                           facts, "t") == 0.5
    assert _faithful_share([], facts, "t") is None
    assert [r["method"] for r in seed_summary(tmp_path)] == ["base_round0", "pps_round1"]


@pytest.mark.parametrize("name", ["arithmetic-4step-4digit-mixed", "arithmetic-3step-4digit-mixed"])
def test_a_large_space_fills_every_split_with_the_pattern(name):
    "Four-digit answers spread thin: the pool grows until quads fill each split; the splits stay disjoint."
    splits = {s: load_questions(name, s) for s in ("train", "validation", "test")}
    for s, qs in splits.items():
        assert len(qs) == {"train": 2000, "validation": 500, "test": 500}[s]
        assert all(int(q.answer_text) == _value(q.question) for q in qs)
        assert all([int(c) - int(q.choices[0]) for c in q.choices] == list(CHOICE_PATTERN) for q in qs)
    stems = {s: {q.question for q in qs} for s, qs in splits.items()}
    assert not (stems["train"] & stems["test"] or stems["train"] & stems["validation"]
                or stems["validation"] & stems["test"])
