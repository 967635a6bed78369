"""The hint sentence and the token caps, chosen on the validation splits.

Measured with SmolLM2-135M-Instruct, on the CPU.

    HF_HUB_OFFLINE=1 python benchmarks/hint_wording.py [--n-hint 100] [--n-arc 100]

For `arithmetic` (all 500 validation problems) and ARC-Easy (the bundled validation sample):
1. the unhinted chain of thought, greedy, with a generous cap: accuracy; per candidate cap, the share of
   outputs that would be *cut* there (no answer within the cap although generation had not ended: a default
   cap must keep the base model's under 2 %) and the share with no answer within it at all (cut, or ended
   without one); and answer-only accuracy (the letter's log-likelihood with no rationale);
2. each hint wording of `em_tutorial.data.HINT_WORDING` (the unhinted prompt plus one sentence; `legacy` is
   the first version's different request), sampled as PPS samples it (T 0.7, top-p 0.95, one sample per
   question, seeded as the samplers seed it) on validation questions. The criterion, fixed before the numbers
   were seen: the share of hinted samples that are accepted *and* compute the answer (arithmetic: `faithful`;
   ARC, where a text cannot show that it computes: accepted and not restating the hint). Ties within 0.02 go
   to the plainer wording, in the order of HINT_WORDING. Writes benchmarks/results/hint-wording.json.
"""
import argparse, json, time
from dataclasses import replace
from pathlib import Path

from em_tutorial.arithmetic import faithful
from em_tutorial.data import HINT_WORDING, answer_stated, build_prompt, grade, load_questions
from em_tutorial.evaluate import loglik_accuracy
from em_tutorial.generate import generate
from em_tutorial.models import load_model
from em_tutorial.samplers import make_trace, question_seed

CAPS = {"arithmetic": (32, 48, 64, 96, 128), "arc_easy": (64, 96, 128, 192, 256)}

def no_answer_share(outs, cap: int) -> float:
    "The share of outputs with no answer statement within `cap` tokens."
    # cut there, or ended without one
    return round(sum(not answer_stated(c.text) or c.n_tokens > cap for c in outs) / len(outs), 4)

def cut_share(outs, cap: int) -> float:
    "The share of outputs a cap of `cap` tokens would cut."
    # still going at `cap` tokens with no answer stated by then
    return round(sum(c.n_tokens >= cap and not (answer_stated(c.text) and c.n_tokens <= cap) for c in outs)
                 / len(outs), 4)

def unhinted(model, tok, qs, dataset):
    t0, top = time.time(), max(CAPS[dataset])
    outs = [o[0] for o in generate(model, tok, [build_prompt(q, tok) for q in qs], max_new_tokens=top,
                                   stop=answer_stated, progress=False)]
    stated = sorted(c.n_tokens for c in outs if answer_stated(c.text))
    return dict(n=len(qs), accuracy=round(sum(grade(q, c.text).label == q.answer for q, c in zip(qs, outs))
                                          / len(qs), 4),
                stated=len(stated), tokens_p50=stated[len(stated) // 2] if stated else None,
                tokens_p98=stated[int(0.98 * (len(stated) - 1))] if stated else None,
                cut_share={cap: cut_share(outs, cap) for cap in CAPS[dataset]},
                no_answer_share={cap: no_answer_share(outs, cap) for cap in CAPS[dataset]},
                answer_only=round(
                    loglik_accuracy(model, tok, qs, method="letter", progress=False).accuracy, 4),
                seconds=round(time.time() - t0))

def hinted(model, tok, qs, dataset, style, cap):
    t0 = time.time()
    qs = [replace(q, hint_style=style) for q in qs]
    outs = [o[0] for o in generate(model, tok, [build_prompt(q, tok, hint=True) for q in qs],
                                   temperature=0.7, top_p=0.95, max_new_tokens=cap,
                                   seed=[question_seed(0, q.id, True) for q in qs], stop=answer_stated,
                                   progress=False)]
    traces = [make_trace(q, tok, c, True, 1, c.n_tokens) for q, c in zip(qs, outs)]
    computes = [t.accepted
                and (faithful(q.fact, t.rationale) if dataset == "arithmetic" else not t.restates_hint)
                for q, t in zip(qs, traces)]
    return dict(criterion=round(sum(computes) / len(qs), 4),
                accepted=round(sum(t.accepted for t in traces) / len(qs), 4),
                correct=round(sum(t.correct for t in traces) / len(qs), 4),
                restated=sum(t.restates_hint for t in traces),
                cut_share=cut_share(outs, cap), no_answer_share=no_answer_share(outs, cap),
                mean_tokens=round(sum(c.n_tokens for c in outs) / len(outs), 1),
                example=traces[0].rationale[:300], seconds=round(time.time() - t0))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-hint", type=int, default=100, help="validation problems per hint wording")
    ap.add_argument("--n-arc", type=int, default=100,
                    help="ARC-Easy validation questions (the bundled sample has 100)")
    ap.add_argument("--datasets", default="arithmetic,arc_easy",
                    help="which to measure; the others keep their recorded entry")
    args = ap.parse_args()
    model, tok = load_model("smollm2")
    dest = Path(__file__).parent/"results"/"hint-wording.json"
    out = json.loads(dest.read_text()) if dest.exists() else {}
    for dataset, n_all in (("arithmetic", None), ("arc_easy", args.n_arc)):
        if dataset not in args.datasets.split(","): continue
        qs = load_questions(dataset, "validation", n=n_all, seed=0)
        r = out[dataset] = {"unhinted": unhinted(model, tok, qs, dataset), "hints": {}}
        print(dataset, "unhinted", r["unhinted"], flush=True)
        cap = max(CAPS[dataset])
        sub = qs[:args.n_hint]
        for style in HINT_WORDING:
            r["hints"][style] = h = hinted(model, tok, sub, dataset, style, cap)
            print(dataset, style, {k: v for k, v in h.items() if k != "example"}, flush=True)
        best = max(h["criterion"] for s, h in r["hints"].items() if s != "legacy")
        r["chosen"] = next(s for s, h in r["hints"].items()
                           if s != "legacy" and h["criterion"] >= best - 0.02)
        r["hint_cap"], r["n_hint"] = cap, len(sub)
        dest.write_text(json.dumps(out, indent=1) + "\n"); print("wrote", dest, flush=True)

if __name__ == "__main__": main()
