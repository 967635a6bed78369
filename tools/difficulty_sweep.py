"""Choose a difficulty of `arithmetic` for a model on the validation split: at each difficulty asked for,
greedy chain-of-thought accuracy, answer-only accuracy, cut share and rationale length.

The sweep the 1.5B comparison starts from (a difficulty where the model's greedy accuracy lies between 0.4 and
0.7, its answer-only accuracy near chance and its rationales short). One JSON file, rewritten after each
difficulty; a difficulty already in it is not run again, so a killed sweep resumes.
Usage:
    HF_HUB_OFFLINE=1 python tools/difficulty_sweep.py --model $QWEN_GGUF --n 64 --max-new-tokens 128 \\
        --datasets arithmetic-2step-2digit-mixed arithmetic-3step-2digit-mixed --out results/x/sweep.json
"""
import argparse, json, time
from pathlib import Path

from em_tutorial.data import load_questions
from em_tutorial.evaluate import evaluate_cot, loglik_accuracy
from em_tutorial.models import load_model

def sweep_one(model, tok, dataset: str, args) -> dict:
    "One difficulty's numbers on `args.n` problems of `args.split`."
    qs = load_questions(dataset, args.split, n=args.n, seed=args.seed, instruction=args.instruction)
    cot = evaluate_cot(model, tok, qs, max_new_tokens=args.max_new_tokens, seed=args.seed, progress=False)
    t0 = time.time()
    only = loglik_accuracy(model, tok, qs, method="letter", seed=args.seed, progress=False)
    tokens = sum(r["n_tokens"] for r in cot.rows)
    # n: as asked (the resume key); n_problems: as found
    return dict(dataset=dataset, split=args.split, n=args.n, n_problems=cot.n, chance=round(cot.chance, 3),
                accuracy=cot.accuracy, accuracy_ci=list(cot.accuracy_ci), answer_only_accuracy=only.accuracy,
                cut_share=cot.cut_share, n_unparsable=cot.n_unparsable, mean_tokens=cot.mean_tokens,
                rationale_tokens=(cot.diagnostics or {}).get("mean_rationale_tokens"),
                cot_seconds=cot.seconds, cot_tok_s=round(tokens / max(cot.seconds, 0.1), 1),
                answer_only_seconds=round(time.time() - t0, 1))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="what load_model takes: smollm2, a GGUF, a folder")
    ap.add_argument("--datasets", nargs="+", required=True, help="difficulties, e.g. arithmetic-3step")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--n", type=int, default=64, help="problems per difficulty")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--instruction", default="step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="the JSON file (resumed if it exists)")
    args = ap.parse_args()
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else {"model": args.model, "rows": []}
    have = {(r["dataset"], r["split"], r["n"], r.get("max_new_tokens")) for r in done["rows"]}
    todo = [d for d in args.datasets if (d, args.split, args.n, args.max_new_tokens) not in have]
    if not todo: print(f"every difficulty is in {out}"); return
    model, tok = load_model(args.model, quantize="none", verbose=True)
    for d in todo:
        row = {**sweep_one(model, tok, d, args), "max_new_tokens": args.max_new_tokens}
        done["rows"].append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(done, indent=1) + "\n")
        print(f"{d}: CoT {row['accuracy']:.3f} [{row['accuracy_ci'][0]:.3f}, {row['accuracy_ci'][1]:.3f}], "
              f"answer-only {row['answer_only_accuracy']:.3f}, cut {row['cut_share']:.2f}, "
              f"{row['mean_tokens']:.0f} tokens, {row['cot_seconds']:.0f} s ({row['cot_tok_s']} tok/s)")

if __name__ == "__main__":
    main()
