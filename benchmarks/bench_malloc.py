"""A first and a second `generate` call in a fresh process, under two `malloc` settings.

The settings are glibc's default `malloc` settings and `keep_freed_memory` (large blocks from the heap, freed
memory kept); the prompts and settings are the same as bench_sampling's.

    HF_HUB_OFFLINE=1 python benchmarks/bench_malloc.py

Each setting runs in its own child process (the setting is process-wide and cannot be undone); both print the
same samples. Writes benchmarks/results/cpu-malloc.json.
"""
import argparse, json, os, subprocess, sys
from pathlib import Path

CHILD = ("""
import json, sys, time
from em_tutorial.generate import generate
from em_tutorial.data import build_prompt, load_questions, answer_stated
from em_tutorial.models import load_model, add_lora
n, T = int(sys.argv[1]), int(sys.argv[2])
model, tok = load_model("smollm2", verbose=False); model = add_lora(model, r=16, verbose=False)
ps = [build_prompt(q, tok) for q in load_questions("arc_easy", "train", n=n, seed=0)]
times, texts = [], []
for _ in range(2):
    t0 = time.perf_counter()
    out = generate(model, tok, ps, temperature=0.7, top_p=0.95, max_new_tokens=T, seed=0, """
         """stop=answer_stated, progress=False)
    times.append(round(time.perf_counter() - t0, 1)); texts.append([c[0].text for c in out])
assert texts[0] == texts[1]
print(json.dumps(dict(first_s=times[0], second_s=times[1], tokens=sum(c[0].n_tokens for c in out), """
         """texts_hash=hash(tuple(texts[0])))))
""")

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-prompts", type=int, default=192)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    a = ap.parse_args()
    res = dict(n_prompts=a.n_prompts, max_new_tokens=a.max_new_tokens, runs={})
    for name, flag in (("glibc defaults", "0"), ("keep_freed_memory", "1")):
        env = {**os.environ, "EM_TUTORIAL_STEADY_MALLOC": flag, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
        r = subprocess.run([sys.executable, "-c", CHILD, str(a.n_prompts), str(a.max_new_tokens)], env=env,
                           capture_output=True, text=True, check=True)
        res["runs"][name] = json.loads(r.stdout.strip().splitlines()[-1])
        print(name, res["runs"][name], flush=True)
    hashes = {v.pop("texts_hash") for v in res["runs"].values()}
    assert len(hashes) == 1, "the malloc setting changed the samples"
    res["command"] = "python benchmarks/bench_malloc.py"
    out = Path(__file__).parent/"results"/"cpu-malloc.json"
    out.write_text(json.dumps(res, indent=1) + "\n"); print("wrote", out)

if __name__ == "__main__": main()
