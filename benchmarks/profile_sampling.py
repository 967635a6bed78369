"""Where the sampling backend's time goes, on the CPU: one `generate` call profiled with cProfile, its wall time split
into the model's forward passes (the output layer apart, timed by module hooks), the prompts' prefill, sampling
(`next_tokens`), the answer-stop checks, the KV-cache bookkeeping of continuous batching (joining, trimming), and the
rest (Python, tokenising, decoding). Shares of one run, so they do not depend on how busy the machine is as much as
seconds do.

    HF_HUB_OFFLINE=1 python benchmarks/profile_sampling.py          # SmolLM2 with a LoRA adapter, 128 ARC prompts
Writes benchmarks/results/cpu-smollm2-profile.json.
"""
import argparse, cProfile, json, pstats, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from em_tutorial.data import load_questions, build_prompt, answer_stated
from em_tutorial.generate import generate
from em_tutorial.models import load_model, add_lora

PARTS = {"prefill": ("generate.py", "_prefill"), "sampling": ("generate.py", "next_tokens"),
         "stop checks": ("generate.py", "__call__"), "cache: join": ("generate.py", "_join"), "cache: trim": ("generate.py", "_trim")}

def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-prompts", type=int, default=128)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    a = ap.parse_args(argv)
    model, tok = load_model("smollm2", verbose=False)
    policy = add_lora(model, verbose=False).eval()
    prompts = [build_prompt(q, tok) for q in load_questions("arc_easy", "train", n=a.n_prompts, seed=0)]
    head, spent = model.get_output_embeddings(), {"t": 0.0}
    def start(m, args): spent["t0"] = time.perf_counter()
    def stop(m, args, out):                                # decode steps only: one new position per row
        if args[0].shape[-2] == 1: spent["t"] += time.perf_counter() - spent["t0"]
    hooks = [head.register_forward_pre_hook(start), head.register_forward_hook(stop)]
    prof = cProfile.Profile()
    t0 = time.perf_counter(); prof.enable()
    outs = generate(policy, tok, prompts, temperature=0.7, top_p=0.95, max_new_tokens=a.max_new_tokens, seed=0,
                    stop=answer_stated, progress=False)
    prof.disable(); total = time.perf_counter() - t0
    for h in hooks: h.remove()
    stats = pstats.Stats(prof).stats                       # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    cum = lambda f, n: sum(v[3] for (file, _, name), v in stats.items() if file.endswith(f) and name == n)
    forward = max((v[3] for (file, _, name), v in stats.items() if "modeling_llama" in file and name == "forward"), default=0.0)
    parts = {k: cum(*fn) for k, fn in PARTS.items()}
    decode_forward = max(forward - parts["prefill"], 0.0)   # all forwards (the outermost one's cumulative time) minus the prefill's
    shares = {"prefill (forward of the prompts)": parts["prefill"],
              "decode forward, output layer excluded": max(decode_forward - spent["t"], 0.0),
              "output layer (decode steps)": spent["t"], "sampling (next_tokens)": parts["sampling"],
              "stop checks": parts["stop checks"], "cache bookkeeping (join, trim)": parts["cache: join"] + parts["cache: trim"]}
    shares["the rest (Python, tokenising, decoding text)"] = max(total - sum(shares.values()), 0.0)
    tokens = sum(c.n_tokens for [c] in outs)
    res = dict(device="cpu", threads=torch.get_num_threads(), n_prompts=len(prompts), max_new_tokens=a.max_new_tokens,
               seconds=round(total, 2), tokens=tokens, tok_s=round(tokens / total, 1),
               seconds_by_part={k: round(v, 2) for k, v in shares.items()},
               share_by_part={k: round(v / total, 3) for k, v in shares.items()},
               note="cProfile adds overhead to Python-heavy parts; the prefill includes its own output layer",
               command=" ".join(["python benchmarks/profile_sampling.py", *(argv if argv is not None else sys.argv[1:])]))
    print(json.dumps(res, indent=1))
    out = Path(__file__).parent/"results"/"cpu-smollm2-profile.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res

if __name__ == "__main__": main()
