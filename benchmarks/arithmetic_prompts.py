"""How the arithmetic prompt was chosen: four candidates, SmolLM2-135M-Instruct, greedy.

Each of the four candidate prompts is run on validation problems.

    HF_HUB_OFFLINE=1 python benchmarks/arithmetic_prompts.py --n 200

The candidates cross two choices: how the answer is stated (the letter, "The answer is (B).", as for ARC; or
the number, "The answer is 73.", which names the choice whose text is 73) and whether the prompt opens with
one worked example as an earlier chat turn (the first training problem). The fourth is the package's
`build_prompt`. For each: accuracy under the package's one grading policy, parse rate, the share of the most
frequent letter, mean generated tokens, and the share whose last equation has the right value (whatever letter
followed). Then, for the chosen prompt, answer-only accuracy (each letter's log-likelihood right after the
question: no rationale) and the hinted prompt's acceptance (PPS) and hint-restatement count on as many
training problems. Validation only: the test split is kept for reporting. Writes
benchmarks/results/arithmetic-prompts.json.
"""
import argparse, json, time
from collections import Counter
from pathlib import Path
import torch

from em_tutorial.arithmetic import equations
from em_tutorial.data import (ANSWER_FORMAT, VALUE_FORMAT, answer_stated, build_prompt, example_turns, grade,
                              load_questions, question_text)
from em_tutorial.evaluate import loglik_accuracy
from em_tutorial.generate import generate
from em_tutorial.models import load_model
from em_tutorial.samplers import prompt_posterior_sample

LETTER = (f"Think step by step, then finish with \"{ANSWER_FORMAT.format(label='X')}\" "
          "where X is the letter of the correct choice.")
NUMBER = f"Think step by step, then finish with \"{VALUE_FORMAT.format(text='N')}\" where N is the number."

def _turns(q, instruction, example: bool, letter: bool) -> list[dict]:
    turns = []
    if example:
        [u, a] = example_turns(q.dataset)
        ex = load_questions(q.dataset, "train")[0]
        worked = a["content"] if not letter else a["content"].replace(
            VALUE_FORMAT.format(text=ex.answer_text),
            f"{ex.answer_text} is choice ({ex.answer}). {ANSWER_FORMAT.format(label=ex.answer)}")
        turns = [{"role": "user", "content": question_text(ex) + "\n\n" + instruction},
                 {"role": "assistant", "content": worked}]
    return turns + [{"role": "user", "content": question_text(q) + "\n\n" + instruction}]

CANDIDATES = {"letter, no example": (LETTER, False, True), "letter, worked example": (LETTER, True, True),
              "number, no example": (NUMBER, False, False), "number, worked example (build_prompt)": None}

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200,
                    help="validation problems (and training problems for the hint check)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = load_model("smollm2")
    val = load_questions("arithmetic", "validation", n=args.n, seed=0)
    out = {"n": len(val), "max_new_tokens": args.max_new_tokens, "candidates": {}}
    for name, spec in CANDIDATES.items():
        prompts = ([build_prompt(q, tok) for q in val] if spec is None else
                   [tok.apply_chat_template(_turns(q, *spec), tokenize=False, add_generation_prompt=True)
                    for q in val])
        t0 = time.time()
        outs = [c[0] for c in generate(model, tok, prompts, max_new_tokens=args.max_new_tokens,
                                       stop=answer_stated, progress=False)]
        g = [grade(q, c.text) for q, c in zip(val, outs)]
        letters = Counter(p.label for p in g if p.label)
        right_value = [bool(equations(c.text)) and equations(c.text)[-1][3] == int(q.answer_text)
                       for q, c in zip(val, outs)]
        out["candidates"][name] = r = dict(
            accuracy=round(sum(p.label == q.answer for p, q in zip(g, val)) / len(val), 3),
            parsed=round(sum(p.label is not None for p in g) / len(val), 3),
            top_letter_share=round(max(letters.values()) / max(sum(letters.values()), 1), 3),
            mean_tokens=round(sum(c.n_tokens for c in outs) / len(val), 1),
            right_value=round(sum(right_value) / len(val), 3),
            seconds=round(time.time() - t0), example_output=outs[0].text)
        print(f"{name:40s} " + " ".join(f"{k} {v}" for k, v in r.items() if k != "example_output"),
              flush=True)
    ao = loglik_accuracy(model, tok, val, method="letter", progress=False)
    out["answer_only"] = dict(accuracy=round(ao.accuracy, 3),
                              letters=dict(Counter(r["pred"] for r in ao.rows)))
    train = load_questions("arithmetic", "train", n=args.n, seed=0)
    pps = prompt_posterior_sample(model, tok, train, temperature=0.7, top_p=0.95,
                                  max_new_tokens=args.max_new_tokens, progress=False)
    out["hinted"] = dict(acceptance=round(sum(t.accepted for t in pps) / len(pps), 3),
                         restated=sum(t.restates_hint for t in pps))
    print("answer-only", out["answer_only"], "· hinted (PPS, T=0.7)", out["hinted"])
    dest = Path(__file__).parent/"results"/"arithmetic-prompts.json"
    dest.write_text(json.dumps(out, indent=1) + "\n"); print("wrote", dest)

if __name__ == "__main__": main()
