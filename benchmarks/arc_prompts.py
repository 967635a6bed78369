"""Chain-of-thought instruction and hint wording on ARC-Easy (SmolLM2-135M-Instruct).

Measured on the validation split.

    HF_HUB_OFFLINE=1 python benchmarks/arc_prompts.py --n 100 [--source $EM_TUTORIAL_DATA]

Instructions (greedy, unhinted): the package's ("... where X is the letter of the correct choice", with the
placeholder "(X)"), a concrete answer line with the allowed letters named, and that line after a one-shot
worked example turn. For each: accuracy under the package's grading policy, parse rate, the most frequent
letter's share, mean tokens. Hints (PPS, T=0.7, on as many training questions): the package's ("The correct
answer is (B) text. Explain ..."), STaR's (the gold choice tagged "(CORRECT)" in the list) and AdaSTaR's (the
gold letter right after the question): the acceptance rate, the number of rationales dropped for restating the
hint, and mean tokens. Validation and training splits only. Writes benchmarks/results/arc-prompts.json.
"""
import argparse, json, time
from collections import Counter
from pathlib import Path

from em_tutorial.data import ANSWER_FORMAT, answer_stated, grade, load_questions, question_text, user_prompt
from em_tutorial.generate import generate
from em_tutorial.models import load_model
from em_tutorial.samplers import make_trace, question_seed

LINE = (f"Think step by step, then finish with a line such as \"{ANSWER_FORMAT.format(label='B')}\", "
        "with the letter (A, B, C or D) of the correct choice.")
EXAMPLE = ("Which of these is a mammal?\n\nA) shark\nB) frog\nC) whale\nD) eagle",
           "A whale breathes air and feeds its young milk, so it is a mammal; "
           "sharks are fish, frogs amphibians and eagles birds. "
           + ANSWER_FORMAT.format(label="C"))

def instruction_turns(q, style):
    if style == "package": return [{"role": "user", "content": user_prompt(q)}]
    turns = ([{"role": "user", "content": EXAMPLE[0] + "\n\n" + LINE},
              {"role": "assistant", "content": EXAMPLE[1]}] if style == "one-shot" else [])
    return turns + [{"role": "user", "content": question_text(q) + "\n\n" + LINE}]

def hint_turns(q, style):
    if style == "package": return [{"role": "user", "content": user_prompt(q, hint=True)}]
    ask = (f"Explain step by step why this answer is correct, "
           f"then finish with \"{ANSWER_FORMAT.format(label=q.answer)}\"")
    if style == "star":     # the gold choice tagged in the list
        lines = "\n".join(f"{l}) {c}" + (" (CORRECT)" if l == q.answer else "")
                          for l, c in zip(q.labels, q.choices))
        return [{"role": "user", "content": q.question + "\n\n" + lines + "\n\n" + ask}]
    if style == "adastar":  # the gold letter right after the question
        return [{"role": "user", "content": q.question + f" ({q.answer})\n\n"
                 + "\n".join(f"{l}) {c}" for l, c in zip(q.labels, q.choices)) + "\n\n" + ask}]
    raise ValueError(style)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100); ap.add_argument("--source", default=None)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    args = ap.parse_args()
    model, tok = load_model("smollm2")
    val = load_questions("arc_easy", "validation", source=args.source, n=args.n, seed=0)
    train = load_questions("arc_easy", "train", source=args.source, n=args.n, seed=0)
    chat = lambda turns: tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    out = {"n": len(val), "source": "release files" if args.source else "bundled sample",
           "instructions": {}, "hints": {}}
    gold = Counter(q.answer for q in val); out["gold_letters"] = dict(gold)
    for style in ("package", "answer line", "one-shot"):
        t0 = time.time()
        outs = [c[0] for c in generate(model, tok, [chat(instruction_turns(q, style)) for q in val],
                                       max_new_tokens=args.max_new_tokens, stop=answer_stated,
                                       progress=False)]
        g = [grade(q, c.text) for q, c in zip(val, outs)]; letters = Counter(p.label for p in g if p.label)
        out["instructions"][style] = r = dict(
            accuracy=round(sum(p.label == q.answer for p, q in zip(g, val)) / len(val), 3),
            parsed=round(sum(p.label is not None for p in g) / len(val), 3), letters=dict(letters),
            top_letter_share=round(max(letters.values(), default=0) / max(sum(letters.values()), 1), 3),
            mean_tokens=round(sum(c.n_tokens for c in outs) / len(val), 1), seconds=round(time.time() - t0))
        print("instruction", style, {k: v for k, v in r.items() if k != "letters"}, flush=True)
    for style in ("package", "star", "adastar"):
        t0 = time.time()
        seeds = [question_seed(0, q.id, True) for q in train]
        outs = [c[0] for c in generate(model, tok, [chat(hint_turns(q, style)) for q in train],
                                       temperature=0.7, top_p=0.95, max_new_tokens=args.max_new_tokens,
                                       seed=seeds, stop=answer_stated, progress=False)]
        traces = [make_trace(q, tok, c, True, 1, c.n_tokens) for q, c in zip(train, outs)]
        out["hints"][style] = r = dict(acceptance=round(sum(t.accepted for t in traces) / len(traces), 3),
                                       correct=round(sum(t.correct for t in traces) / len(traces), 3),
                                       restated=sum(t.restates_hint for t in traces),
                                       mean_tokens=round(sum(c.n_tokens for c in outs) / len(outs), 1),
                                       seconds=round(time.time() - t0))
        print("hint", style, r, flush=True)
    dest = Path(__file__).parent/"results"/"arc-prompts.json"
    dest.write_text(json.dumps(out, indent=1) + "\n"); print("wrote", dest)

if __name__ == "__main__": main()
