"""Shared-prefix prefill: the same greedy evaluation with and without it, in one run, same outputs asserted.

    HF_HUB_OFFLINE=1 python benchmarks/bench_prefix.py --n 128

`generate` prefills the prompts it admits together; when they share at least `SHARED_PREFIX_MIN` leading tokens it
runs that prefix once and only each prompt's own tokens after it (`04_generate`). This times greedy decoding of `--n`
arithmetic validation prompts (a worked example turn makes ~80 of their ~110 tokens common) and `--n` ARC-Easy
validation prompts from the bundled sample (only the chat header and instruction are common), each with the prefix
shared and with it switched off, and checks that both give the same texts. Writes benchmarks/results/<device>-prefix.json.
"""
import argparse, json, platform, time
from pathlib import Path
import torch
import em_tutorial.generate as G
from em_tutorial.data import answer_stated, build_prompt, load_questions
from em_tutorial.models import load_model

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=128); ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    model, tok = load_model("smollm2")
    res = dict(machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads", n=args.n, jobs={})
    for ds in ("arithmetic", "arc_easy"):
        qs = load_questions(ds, "validation", n=args.n, seed=0)
        ps = [build_prompt(q, tok) for q in qs]
        ids = tok(ps, add_special_tokens=False)["input_ids"]
        times, texts = {}, {}
        for name, m in (("shared", G.SHARED_PREFIX_MIN), ("full", 10**9)):
            old, G.SHARED_PREFIX_MIN = G.SHARED_PREFIX_MIN, m
            try:
                t0 = time.time()
                out = G.generate(model, tok, ps, max_new_tokens=args.max_new_tokens, stop=answer_stated, progress=False)
                times[name] = round(time.time() - t0, 1); texts[name] = [c[0].text for c in out]
            finally: G.SHARED_PREFIX_MIN = old
        assert texts["shared"] == texts["full"], f"{ds}: sharing the prefix changed the output"
        res["jobs"][ds] = j = dict(prompts=len(ps), prompt_tokens=sum(map(len, ids)), shared_prefix_tokens=G._shared_prefix(ids),
                                   seconds_shared=times["shared"], seconds_full=times["full"],
                                   speedup=round(times["full"] / times["shared"], 2))
        print(ds, j, flush=True)
    dest = Path(__file__).parent/"results"/f"{'cuda' if torch.cuda.is_available() else 'cpu'}-prefix.json"
    dest.write_text(json.dumps(res, indent=1) + "\n"); print("wrote", dest)

if __name__ == "__main__": main()
