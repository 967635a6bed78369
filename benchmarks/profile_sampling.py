"""Where the sampling backend's time goes: one `generate` call, its parts timed by wrappers.

No profiler is used, so the Python-heavy parts are not inflated. The call's wall time is split into the
prompts' prefill, the decode steps' forward passes (the output layer apart, timed by module hooks), sampling
(`next_tokens` and the log-probabilities), the answer-stop checks, the KV-cache bookkeeping (buffers re-placed
when their room runs out or after a row selection, refilled slots, trims, compactions), and the rest (Python,
tokenising, decoding text). Shares of one run, so they depend less on how busy the machine is than seconds do.
`bench_sampling.py` runs `profile` on its own prompts and settings and writes the result beside its speed-up
and roofline.

    # SmolLM2 with a LoRA adapter, 128 ARC prompts
    HF_HUB_OFFLINE=1 python benchmarks/profile_sampling.py
    HF_HUB_OFFLINE=1 python benchmarks/profile_sampling.py --samples 2 --batch-size 256 --out /tmp/p256.json
Writes benchmarks/results/cpu-smollm2-profile.json unless --out says otherwise.
"""
import argparse, json, sys, time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import em_tutorial.generate as G
import em_tutorial.kvcache as KV
from em_tutorial.data import load_questions, build_prompt, answer_stated
from em_tutorial.models import load_model, add_lora

@contextmanager
def _timed(spent: Counter, flags: dict):
    "Wrap the backend's parts so that `spent` collects seconds per part while the block runs."
    saved = []
    def wrap(owner, name, part, flag=None):
        f = getattr(owner, name); saved.append((owner, name, f))
        def w(*a, **k):
            if flag: flags[flag] = True
            t0 = time.perf_counter()
            try: return f(*a, **k)
            finally:
                spent[part(flags) if callable(part) else part] += time.perf_counter() - t0
                if flag: flags[flag] = False
        setattr(owner, name, w)
    wrap(G, "prefill", "prefill", flag="prefill")
    wrap(G, "next_tokens", "sampling")
    wrap(G.AnswerStop, "__call__", "stop checks")
    for n in ("write_rows", "trim", "select_rows"): wrap(G, n, "cache")
    wrap(KV.PreallocatedLayer, "_place",
         lambda fl: "prefill: placing" if fl.get("prefill") else "decode: placing")
    try: yield
    finally:
        for owner, name, f in saved: setattr(owner, name, f)

def profile(model, tok, prompts: list[str], **kw) -> dict:
    "Seconds and shares of one `generate(model, tok, prompts, **kw)` call by part."
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head, spent, flags, clock = base.get_output_embeddings(), Counter(), {}, {}
    def start(name): return lambda m, *rest: clock.__setitem__(name, time.perf_counter())
    # decode steps only: one new position per row, outside a prefill
    def stop(name, part, one_position):
        def f(m, *rest):
            if one_position(*rest) and not flags.get("prefill"):
                spent[part] += time.perf_counter() - clock[name]
        return f
    hooks = [head.register_forward_pre_hook(start("head")),
             head.register_forward_hook(stop("head", "output layer",
                                             lambda args, out: args[0].shape[-2] == 1)),
             base.register_forward_pre_hook(start("model"), with_kwargs=True),
             base.register_forward_hook(stop("model", "decode forward",
                                             lambda args, kw, out: kw["input_ids"].shape[-1] == 1),
                                        with_kwargs=True)]
    try:
        with _timed(spent, flags):
            t0 = time.perf_counter()
            outs = G.generate(model, tok, prompts, progress=False, **kw)
            total = time.perf_counter() - t0
    finally:
        for h in hooks: h.remove()
    parts = {"prefill (prompts, in pieces, shared prefix once)": spent["prefill"],
             "decode forward, output layer and cache placing excluded":
                 spent["decode forward"] - spent["output layer"] - spent["decode: placing"],
             "output layer (decode steps)": spent["output layer"],
             "sampling (next_tokens)": spent["sampling"], "stop checks": spent["stop checks"],
             "cache bookkeeping (placing buffers, refilling slots, trims, compactions)":
                 spent["cache"] + spent["decode: placing"]}
    parts["the rest (merging the adapter, Python, log-probabilities, tokenising, decoding text)"] = max(
        total - sum(parts.values()), 0.0)
    tokens = sum(c.n_tokens for cs in outs for c in cs)
    return dict(seconds=round(total, 2), tokens=tokens, tok_s=round(tokens / total, 1),
                seconds_by_part={k: round(v, 2) for k, v in parts.items()},
                share_by_part={k: round(v / total, 3) for k, v in parts.items()})

def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-prompts", type=int, default=128)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--samples", type=int, default=1, help="completions per prompt (generate's n)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="slots (default: generate's, 128 on the CPU)")
    ap.add_argument("--out", default=None, help="result file (default: results/cpu-smollm2-profile.json)")
    a = ap.parse_args(argv)
    model, tok = load_model("smollm2", verbose=False)
    policy = add_lora(model, verbose=False).eval()
    prompts = [build_prompt(q, tok) for q in load_questions("arc_easy", "train", n=a.n_prompts, seed=0)]
    res = dict(device="cpu", threads=torch.get_num_threads(), n_prompts=len(prompts), samples=a.samples,
               max_new_tokens=a.max_new_tokens, batch_size=a.batch_size or G.auto_batch_size(policy, 0),
               **profile(policy, tok, prompts, n=a.samples, temperature=0.7, top_p=0.95,
                         max_new_tokens=a.max_new_tokens, seed=0, stop=answer_stated,
                         batch_size=a.batch_size),
               command=" ".join(["python benchmarks/profile_sampling.py",
                                 *(argv if argv is not None else sys.argv[1:])]))
    print(json.dumps(res, indent=1))
    out = Path(a.out or Path(__file__).parent/"results"/"cpu-smollm2-profile.json")
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res

if __name__ == "__main__": main()
