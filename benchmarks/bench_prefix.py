"""Prefill: the shared prefix once and the prompts in pieces, each timed against its absence.

Both are timed in one run, and the outputs are checked equal.

    HF_HUB_OFFLINE=1 python benchmarks/bench_prefix.py --n 128

1. Shared prefix. `prefill` (`04a_kvcache`) runs a prefix that all the prompts of a piece share (at least
   `SHARED_PREFIX_MIN` tokens) once, then only each prompt's own tokens. This times greedy decoding of `--n`
   arithmetic validation prompts (a worked example turn makes ~80 of their ~110 tokens common) and `--n`
   ARC-Easy validation prompts from the bundled sample (only the chat header and instruction are common), with
   the prefix shared and with sharing switched off, and checks that both give the same texts.
2. Pieces. `prefill` cuts the prompts into pieces of at most `PREFILL_TOKENS` padded tokens. This times the
   prefill of `--n` ARC-Easy training prompts (longest first, as `generate` orders them) in pieces and in one
   forward, and checks that the last-position logits agree.
Writes benchmarks/results/<device>-prefix.json.
"""
import argparse, json, platform, time
from pathlib import Path
import torch
import em_tutorial.kvcache as KV
from em_tutorial.generate import generate
from em_tutorial.data import answer_stated, build_prompt, load_questions
from em_tutorial.models import load_model

def shared_prefix_job(model, tok, n, max_new_tokens) -> dict:
    out = {}
    for ds in ("arithmetic", "arc_easy"):
        ps = [build_prompt(q, tok) for q in load_questions(ds, "validation", n=n, seed=0)]
        ids = tok(ps, add_special_tokens=False)["input_ids"]
        times, texts = {}, {}
        for name, m in (("shared", KV.SHARED_PREFIX_MIN), ("full", 10**9)):
            old, KV.SHARED_PREFIX_MIN = KV.SHARED_PREFIX_MIN, m
            try:
                t0 = time.time()
                res = generate(model, tok, ps, max_new_tokens=max_new_tokens, stop=answer_stated,
                               progress=False)
                times[name] = round(time.time() - t0, 1); texts[name] = [c[0].text for c in res]
            finally: KV.SHARED_PREFIX_MIN = old
        assert texts["shared"] == texts["full"], f"{ds}: sharing the prefix changed the output"
        out[ds] = j = dict(prompts=len(ps), prompt_tokens=sum(map(len, ids)),
                           shared_prefix_tokens=KV.shared_prefix(ids),
                           seconds_shared=times["shared"], seconds_full=times["full"],
                           speedup=round(times["full"] / times["shared"], 2))
        print("shared prefix,", ds, j, flush=True)
    return out

def pieces_job(model, tok, n) -> dict:
    ps = [build_prompt(q, tok) for q in load_questions("arc_easy", "train", n=n, seed=0)]
    ids = sorted(tok(ps, add_special_tokens=False)["input_ids"], key=len, reverse=True)
    pad, times, logits = tok.pad_token_id, {}, {}
    with torch.inference_mode():
        KV.prefill(model, ids, range(8), pad)                                   # warm-up
        for name, budget in (("pieces", KV.PREFILL_TOKENS), ("one forward", 10**9)):
            old, KV.PREFILL_TOKENS = KV.PREFILL_TOKENS, budget
            try:
                t0 = time.time(); logits[name] = KV.prefill(model, ids, range(len(ids)), pad)[1]
                times[name] = round(time.time() - t0, 1)
            finally: KV.PREFILL_TOKENS = old
    torch.testing.assert_close(logits["pieces"], logits["one forward"], atol=1e-3, rtol=1e-3)
    j = dict(prompts=len(ids), prompt_tokens=sum(map(len, ids)), prefill_tokens=KV.PREFILL_TOKENS,
             n_pieces=len(KV.pieces([len(s) for s in ids], KV.PREFILL_TOKENS)),
             seconds_pieces=times["pieces"], seconds_one_forward=times["one forward"],
             speedup=round(times["one forward"] / times["pieces"], 2))
    print("pieces,", j, flush=True)
    return j

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=128); ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    model, tok = load_model("smollm2")
    res = dict(machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads", n=args.n,
               jobs=shared_prefix_job(model, tok, args.n, args.max_new_tokens),
               pieces=pieces_job(model, tok, args.n),
               command="python benchmarks/bench_prefix.py" + (f" --n {args.n}" if args.n != 128 else ""))
    dest = Path(__file__).parent/"results"/f"{'cuda' if torch.cuda.is_available() else 'cpu'}-prefix.json"
    dest.write_text(json.dumps(res, indent=1) + "\n"); print("wrote", dest)

if __name__ == "__main__": main()
