"""The log-likelihood contexts of `loglik_requests`, written out by hand for one real question per dataset.

Each expected string is lm-evaluation-harness 0.4.x's zero-shot context for that dataset's task (its
`description` followed by its `doc_to_text`): `arc_easy`/`arc_challenge` ("Question: {{question}}\\nAnswer:"),
`openbookqa` (`doc_to_text: question_stem`), MMLU's `mmlu_{subject}_continuation` and default
`mmlu_{subject}`. Lettered choices on ARC/OpenBookQA and everything on arithmetic are not harness tasks and
keep the package's own formats."""
from functools import lru_cache

import pytest

from em_tutorial.data import load_questions, make_question
from em_tutorial.evaluate import loglik_requests


@lru_cache(maxsize=None)
def _split(dataset):
    return {q.id: q for q in load_questions(dataset, "validation")}   # the bundled sample


def _q(dataset, qid):
    return _split(dataset)[qid]


def _contexts(q, method):
    "The one context all of a question's requests share, and the continuations."
    reqs = loglik_requests(q, method)
    assert len(reqs) == len(q.choices) and len({c for c, _ in reqs}) == 1
    return reqs[0][0], [x for _, x in reqs]


# --- harness tasks ------------------------------------------------------------------------------------------

def test_arc_easy_choice_text_is_the_harness_arc_easy_task():
    q = _q("arc_easy", "NYSEDREGENTS_2014_8_22")
    assert _contexts(q, "choice_text") == ("Question: One example of matter is\nAnswer:",
                                           [" magnetism", " heat", " water", " radiation"])


def test_arc_challenge_choice_text_is_the_harness_arc_challenge_task():
    q = _q("arc_challenge", "NYSEDREGENTS_2014_4_20")
    assert _contexts(q, "choice_text") == ("Question: The main function of a tree's trunk is to provide\n"
                                           "Answer:", [" air", " fruit", " sunlight", " support"])


def test_openbookqa_choice_text_is_the_bare_question_stem():
    q = _q("openbookqa", "9-704")
    assert _contexts(q, "choice_text") == ("A flashlight emits", [" particles", " water", " bugs", " sound"])


def test_mmlu_choice_text_is_the_harness_continuation_task():
    q = _q("mmlu", "elementary_mathematics/276a197a65")
    # stored with underscores; the description reads them as spaces
    assert q.subject == "elementary_mathematics"
    assert _contexts(q, "choice_text") == (
        "The following are questions (with answers) about elementary mathematics.\n\n"
        "Question: What is the square of 15?\nAnswer:",
        [" 15", " 15-Jan", " 225", " 256"])


def test_mmlu_letter_is_the_harness_default_mmlu_task():
    q = _q("mmlu", "elementary_mathematics/276a197a65")
    assert _contexts(q, "letter") == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
        "What is the square of 15?\nA. 15\nB. 15-Jan\nC. 225\nD. 256\nAnswer:",
        [" A", " B", " C", " D"])


def test_mmlu_subject_with_several_underscores_and_a_stem_with_spaces():
    q = make_question("x", "  Which curve?  ", "ABCD", ["a", "b", "c", "d"], "A", "mmlu", "test",
                      subject="high_school_macroeconomics")
    ctx, _ = _contexts(q, "letter")
    assert ctx.startswith("The following are multiple choice questions (with answers) about "
                          "high school macroeconomics.\n\nWhich curve?\nA. a\n")
    ctx, _ = _contexts(q, "choice_text")
    assert ctx == ("The following are questions (with answers) about high school macroeconomics.\n\n"
                   "Question: Which curve?\nAnswer:")


# --- not harness tasks: the package's own formats -----------------------------------------------------------

def test_letter_on_arc_and_openbookqa_keeps_our_format():
    assert _contexts(_q("arc_easy", "NYSEDREGENTS_2014_8_22"), "letter") == (
        "Question: One example of matter is\n\nA) magnetism\nB) heat\nC) water\nD) radiation\nAnswer:",
        [" A", " B", " C", " D"])
    assert _contexts(_q("openbookqa", "9-704"), "letter")[0] == (
        "Question: A flashlight emits\n\nA) particles\nB) water\nC) bugs\nD) sound\nAnswer:")


@pytest.mark.parametrize("name", ["arithmetic", "arithmetic-2step-1digit-mixed"])
def test_arithmetic_keeps_the_arc_formats(name):
    q = make_question("x", "What is 38 + 72?", "ABCD", ["120", "111", "110", "100"], "C", name, "validation")
    assert _contexts(q, "choice_text") == ("Question: What is 38 + 72?\nAnswer:",
                                           [" 120", " 111", " 110", " 100"])
    assert _contexts(q, "letter")[0] == ("Question: What is 38 + 72?\n\n"
                                         "A) 120\nB) 111\nC) 110\nD) 100\nAnswer:")
